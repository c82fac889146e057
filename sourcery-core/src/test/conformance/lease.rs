//! `lease`, for a [`Lease`]: one holder at a time per name, released when
//! the holder drops it, taken over when the holder's connection dies, the
//! old holder told it lost the lease, and each new holder fenced above the
//! previous one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::support::{Check, call_timeout};
use crate::checkpoint::Fence;
use crate::runner::{Lease, LeaseGuard};

/// What the lease rules need to play several processes: a lease handle as a
/// separate process would hold it, and a way to kill a holder's connection.
///
/// The PostgreSQL store's fixture gives each contender its own connection
/// pool and severs a holder with `pg_terminate_backend`.
pub trait LeaseFixture: Send + Sync + 'static {
    /// The lease under test.
    type Lease: Lease;

    /// A lease handle of its own, as another application server would have.
    fn contender(&self) -> impl Future<Output = Self::Lease> + Send + '_;

    /// Ends the connection or session that backs `guard`'s lease, as a
    /// crash of its holder would.
    fn sever<'a>(
        &'a self,
        guard: &'a mut <Self::Lease as Lease>::Guard,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// How long a second contender is watched, to see that it does not get a
/// held lease.
const HELD_FOR: Duration = Duration::from_millis(300);

/// A lease name no other rule or test process uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "conformance.{prefix}.{}.{nanos}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn acquire<L: Lease>(rule: Check, lease: &L, name: &str, what: &str) -> L::Guard {
    rule.ok(what, lease.acquire(name)).await
}

/// The fence of `guard`, which a lease coordinating processes must give.
fn fence_of<G: LeaseGuard>(rule: Check, guard: &G, holder: &str) -> Fence {
    match guard.fence() {
        Some(fence) => fence,
        None => rule.fail(format_args!("{holder} to have a fence"), "None"),
    }
}

/// While one contender holds a lease, another does not get it.
///
/// # Panics
///
/// When the lease breaks the rule.
pub async fn one_holder<F: LeaseFixture>(fixture: F) {
    let rule = Check("lease.one_holder");
    let name = unique("one");
    let first = fixture.contender().await;
    let second = fixture.contender().await;
    let held = acquire(rule, &first, &name, "the first contender to acquire a free lease").await;
    let other = tokio::time::timeout(HELD_FOR, second.acquire(&name)).await;
    rule.ensure(
        other.is_err(),
        format_args!("a second contender not to get a held lease within {HELD_FOR:?}"),
        || match &other {
            Ok(Ok(_)) => "the lease".to_owned(),
            Ok(Err(error)) => format!("an error: {error}"),
            Err(_) => String::new(),
        },
    );
    drop(held);
}

/// A lease dropped by its holder goes to a contender waiting for it.
///
/// # Panics
///
/// When the lease breaks the rule.
pub async fn released_on_drop<F: LeaseFixture>(fixture: F) {
    let rule = Check("lease.released_on_drop");
    let name = unique("release");
    let first = fixture.contender().await;
    let second = fixture.contender().await;
    let held = acquire(rule, &first, &name, "the first contender to acquire a free lease").await;
    let waiting = second.acquire(&name);
    drop(held);
    rule.ok(
        "the waiting contender to acquire the lease its holder dropped",
        waiting,
    )
    .await;
}

/// When the holder's connection dies, a waiting contender takes over.
///
/// # Panics
///
/// When the lease breaks the rule.
pub async fn takeover_after_holder_dies<F: LeaseFixture>(fixture: F) {
    let rule = Check("lease.takeover_after_holder_dies");
    let name = unique("takeover");
    let first = fixture.contender().await;
    let second = fixture.contender().await;
    let mut held = acquire(rule, &first, &name, "the first contender to acquire a free lease").await;
    fixture.sever(&mut held).await;
    rule.ok(
        "a contender to acquire the lease after its holder's connection died",
        second.acquire(&name),
    )
    .await;
    drop(held);
}

/// A holder whose connection dies is told: its guard's `lost` resolves.
///
/// # Panics
///
/// When the lease breaks the rule.
pub async fn lost_when_severed<F: LeaseFixture>(fixture: F) {
    let rule = Check("lease.lost_when_severed");
    let name = unique("lost");
    let first = fixture.contender().await;
    let mut held = acquire(rule, &first, &name, "a contender to acquire a free lease").await;
    fixture.sever(&mut held).await;
    let limit = call_timeout();
    let lost = tokio::time::timeout(limit, held.lost()).await;
    rule.ensure(
        lost.is_ok(),
        "the guard's `lost` to resolve once its connection died",
        || format!("nothing within {limit:?}"),
    );
}

/// Leases of different names are independent.
///
/// # Panics
///
/// When the lease breaks the rule.
pub async fn names_apart<F: LeaseFixture>(fixture: F) {
    let rule = Check("lease.names_apart");
    let first = fixture.contender().await;
    let second = fixture.contender().await;
    let one = unique("apart-a");
    let other = unique("apart-b");
    let held = acquire(rule, &first, &one, "a contender to acquire a free lease").await;
    let also = acquire(
        rule,
        &second,
        &other,
        "another contender to acquire a lease of another name while the first is held",
    )
    .await;
    drop((held, also));
}

/// Each new holder of a name gets a fence above the previous holder's,
/// after a release and after a takeover.
///
/// # Panics
///
/// When the lease breaks the rule.
pub async fn fence_grows<F: LeaseFixture>(fixture: F) {
    let rule = Check("lease.fence_grows");
    let name = unique("fence");
    let first = fixture.contender().await;
    let second = fixture.contender().await;
    let held = acquire(rule, &first, &name, "a contender to acquire a free lease").await;
    let fence = fence_of(rule, &held, "the first holder of a lease");
    drop(held);
    let mut held = acquire(
        rule,
        &second,
        &name,
        "another contender to acquire the lease its holder dropped",
    )
    .await;
    let fence = grown(rule, fence, &held, "after a release");
    fixture.sever(&mut held).await;
    let taken = acquire(
        rule,
        &first,
        &name,
        "a contender to acquire the lease after its holder's connection died",
    )
    .await;
    grown(rule, fence, &taken, "after a takeover");
    drop((held, taken));
}

/// The fence of `guard`, the holder `when`, which must be above `previous`.
fn grown<G: LeaseGuard>(rule: Check, previous: Fence, guard: &G, when: &str) -> Fence {
    let fence = fence_of(rule, guard, &format!("the holder {when}"));
    rule.ensure(
        fence > previous,
        format_args!("the fence of the holder {when} to be above the previous holder's ({previous})"),
        || fence.to_string(),
    );
    fence
}
