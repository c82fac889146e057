//! A read model kept as a SQL table, exactly once, while commands run; then
//! a new version rebuilt beside it, with a progress bar, and switched to.
//!
//! The table `balances` lives in the events' SQLite file. Each batch of
//! events is written by the projection's handlers in the write transaction
//! that also advances its checkpoint, so a crash never applies an event
//! twice or loses one. Version 2 adds a column: it is built from the start
//! of the log into `balances_v2` while readers keep querying `balances`
//! (a view of version 1), which switches to version 2 once it has caught up.
//!
//! Run with `cargo run --example read_model_sql`.

use std::io::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sourcery::runner::ReadModelRunner;
use sourcery::runner::read_model::{Delivery, Tables};
use sourcery::store::sqlite::{self, ApplySql, ReadModel, SqlEvents, SqlProjection};
use sourcery::{Aggregate, Apply, DomainEvent, Handle, HandleCreate, Repository};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AccountOpened;

impl DomainEvent for AccountOpened {
    const KIND: &'static str = "account.opened";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FundsDeposited {
    amount: i64,
}

impl DomainEvent for FundsDeposited {
    const KIND: &'static str = "account.deposited";
}

#[derive(Debug, thiserror::Error)]
#[error("amounts must be positive")]
struct NotPositive;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = NotPositive, events(AccountOpened, FundsDeposited))]
struct Account;

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, _: &AccountOpened) {}
}

impl Apply<FundsDeposited> for Account {
    fn apply(&mut self, _: &FundsDeposited) {}
}

struct Open;
struct Deposit(i64);

impl HandleCreate<Open> for Account {
    fn handle_create(_: &Open) -> Result<Vec<AccountEvent>, NotPositive> {
        Ok(vec![AccountOpened.into()])
    }
}

impl Handle<Deposit> for Account {
    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, NotPositive> {
        if command.0 <= 0 {
            return Err(NotPositive);
        }
        Ok(vec![FundsDeposited { amount: command.0 }.into()])
    }
}

// ANCHOR: version_1
/// Version 1: one row per account with its balance.
struct Balances;

impl SqlProjection for Balances {
    const KIND: &'static str = "balances";
    const TABLES: &'static [&'static str] = &["balances"];
    type Id = String;
    type Metadata = ();
    type Error = rusqlite::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<FundsDeposited>()
    }

    fn setup(&self, tx: &rusqlite::Transaction<'_>, tables: &Tables) -> rusqlite::Result<()> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} (account TEXT PRIMARY KEY, balance INTEGER NOT NULL)",
            tables.name("balances")
        ))
    }
}

impl ApplySql<FundsDeposited> for Balances {
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        event: &FundsDeposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(&format!(
            "INSERT INTO {} (account, balance) VALUES (?1, ?2) \
             ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance",
            delivery.table("balances")
        ))?
        .execute((delivery.aggregate_id(), event.amount))?;
        Ok(())
    }
}
// ANCHOR_END: version_1

// ANCHOR: version_2
/// Version 2: the balance and the number of deposits.
struct BalancesV2;

impl SqlProjection for BalancesV2 {
    const KIND: &'static str = "balances";
    const VERSION: u32 = 2;
    const TABLES: &'static [&'static str] = &["balances"];
    type Id = String;
    type Metadata = ();
    type Error = rusqlite::Error;

    fn declare(events: SqlEvents<Self>) -> SqlEvents<Self> {
        events.event::<FundsDeposited>()
    }

    fn setup(&self, tx: &rusqlite::Transaction<'_>, tables: &Tables) -> rusqlite::Result<()> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {} \
             (account TEXT PRIMARY KEY, balance INTEGER NOT NULL, deposits INTEGER NOT NULL)",
            tables.name("balances")
        ))
    }
}

impl ApplySql<FundsDeposited> for BalancesV2 {
    fn apply(
        &self,
        tx: &rusqlite::Transaction<'_>,
        event: &FundsDeposited,
        delivery: Delivery<'_, String, i64, ()>,
    ) -> rusqlite::Result<()> {
        tx.prepare_cached(&format!(
            "INSERT INTO {} (account, balance, deposits) VALUES (?1, ?2, 1) \
             ON CONFLICT (account) DO UPDATE \
             SET balance = balance + excluded.balance, deposits = deposits + 1",
            delivery.table("balances")
        ))?
        .execute((delivery.aggregate_id(), event.amount))?;
        Ok(())
    }
}
// ANCHOR_END: version_2

const WAIT: Duration = Duration::from_secs(30);
const ACCOUNTS: usize = 20;
const DEPOSITS: i64 = 2_000;

/// The three largest balances, read with plain SQL through the view.
fn top_three(path: &std::path::Path) -> rusqlite::Result<Vec<(String, i64)>> {
    let connection = rusqlite::Connection::open(path)?;
    let mut statement =
        connection.prepare("SELECT account, balance FROM balances ORDER BY balance DESC, account LIMIT 3")?;
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect()
}

/// One line of progress: a bar, events per second and the time left.
fn progress(status: &sourcery::runner::RunnerStatus<i64>) -> String {
    const WIDTH: u64 = 30;
    let Some(head) = status.head.filter(|head| *head > 0) else {
        return "(reading the head of the log)".to_owned();
    };
    let done = status.position.unwrap_or(0).min(head);
    let filled = u64::try_from(done).unwrap_or(0) * WIDTH / u64::try_from(head).unwrap_or(1);
    let bar: String = (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect();
    let left = status
        .estimated_time_left()
        .map_or_else(|| "-".to_owned(), |left| format!("{:.1}s", left.as_secs_f64()));
    format!(
        "[{bar}] {done}/{head}  {} applied  {:.0} events/s  {left} left",
        status.applied,
        status.events_per_second()
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("events.db");
    let store = sqlite::Store::<String, ()>::open(&path).await?;
    let repository = Repository::new(store.clone());
    println!("store: SQLite file {}", path.display());

    // ANCHOR: live
    // 1. Version 1 follows the log while commands run.
    let v1 = ReadModelRunner::new(store.clone()).start(ReadModel::new(&store, Balances))?;
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("ACC-{i:02}")).collect();
    for account in &accounts {
        repository.create::<Account, _>(account, &Open, ()).await?;
    }
    let mut last = 0;
    for n in 1..=DEPOSITS {
        let account = &accounts[usize::try_from(n).unwrap_or(0) % ACCOUNTS];
        let outcome = repository.execute::<Account, _>(account, &Deposit(n), ()).await?;
        last = outcome.last_position.unwrap_or(last);
    }
    // Read your writes: once the runner has committed the last position,
    // the table shows it.
    v1.wait_for(last, WAIT).await?;
    println!("version 1, top three: {:?}", top_three(&path)?);
    // ANCHOR_END: live

    // ANCHOR: rebuild
    // 2. Version 2 is built from the start of the log beside version 1,
    //    which keeps serving `balances` until version 2 has caught up.
    let v2 = ReadModelRunner::new(store.clone())
        .batch_size(std::num::NonZeroUsize::new(100).unwrap_or(std::num::NonZeroUsize::MIN))
        .start(ReadModel::new(&store, BalancesV2))?;
    let mut status = v2.status();
    while !(status.caught_up && status.position >= Some(last)) {
        print!("\rrebuilding version 2 {}", progress(&status));
        std::io::stdout().flush()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = v2.status();
        if !status.running {
            break;
        }
    }
    println!("\rrebuilt version 2    {}", progress(&status));
    v2.wait_for(last, WAIT).await?;
    let read_model = ReadModel::new(&store, BalancesV2);
    println!("live version: {:?}", read_model.live_version().await?);
    let connection = rusqlite::Connection::open(&path)?;
    let (accounts_seen, deposits): (i64, i64) =
        connection.query_row("SELECT count(*), sum(deposits) FROM balances", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
    println!(
        "version 2: {accounts_seen} accounts, {deposits} deposits, top three: {:?}",
        top_three(&path)?
    );
    assert_eq!(deposits, DEPOSITS, "every deposit once");

    // 3. Version 1 is retired: stop its runner, drop its table.
    v1.stop().await?;
    read_model.drop_version(1).await?;
    v2.stop().await?;
    println!("version 1 dropped; `balances` reads version 2");
    // ANCHOR_END: rebuild
    Ok(())
}
