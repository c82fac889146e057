//! Optimistic concurrency: a stale write is refused with a conflict, and
//! the retry helper reloads and runs the command again.
//!
//! Run with `cargo run --example optimistic_concurrency`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sourcery::repository::CommandError;
use sourcery::store::inmemory;
use sourcery::test::RepositoryTestExt;
use sourcery::{Aggregate, Apply, DomainEvent, Handle, HandleCreate, Repository};

// ANCHOR: aggregate
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeatsReleased {
    seats: u32,
}

impl DomainEvent for SeatsReleased {
    const KIND: &'static str = "flight.seats-released";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeatBooked {
    passenger: String,
}

impl DomainEvent for SeatBooked {
    const KIND: &'static str = "flight.seat-booked";
}

#[derive(Debug, thiserror::Error)]
#[error("the flight is full")]
struct FlightFull;

#[derive(Debug, Default, Aggregate)]
#[aggregate(id = String, error = FlightFull, events(SeatsReleased, SeatBooked))]
struct Flight {
    free: u32,
}

impl Apply<SeatsReleased> for Flight {
    fn apply(&mut self, event: &SeatsReleased) {
        self.free += event.seats;
    }
}

impl Apply<SeatBooked> for Flight {
    fn apply(&mut self, _: &SeatBooked) {
        self.free -= 1;
    }
}

struct Release(u32);
struct Book(String);

impl HandleCreate<Release> for Flight {
    fn handle_create(command: &Release) -> Result<Vec<FlightEvent>, FlightFull> {
        Ok(vec![SeatsReleased { seats: command.0 }.into()])
    }
}

impl Handle<Book> for Flight {
    fn handle(&self, command: &Book) -> Result<Vec<FlightEvent>, FlightFull> {
        if self.free == 0 {
            return Err(FlightFull);
        }
        Ok(vec![
            SeatBooked {
                passenger: command.0.clone(),
            }
            .into(),
        ])
    }
}
// ANCHOR_END: aggregate

// ANCHOR: main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repository = Arc::new(Repository::new(inmemory::Store::<String, ()>::new()));
    let flight = "SC-042".to_string();
    repository.create::<Flight, _>(&flight, &Release(8), ()).await?;

    // ANCHOR: conflict
    // 1. Another writer books the seat between our read and our commit.
    let stale = repository
        .execute_with_concurrent_event::<Flight, _, _>(
            &flight,
            &Book("ada".into()),
            (),
            SeatBooked {
                passenger: "bob".into(),
            },
        )
        .await;
    match &stale {
        Err(CommandError::Conflict(conflict)) => println!("stale write refused: {conflict}"),
        other => println!("unexpected: {other:?}"),
    }
    assert!(stale.as_ref().is_err_and(CommandError::is_conflict));
    // ANCHOR_END: conflict

    // ANCHOR: retry
    // 2. Ten passengers book at once; each retries on conflict.
    let mut tasks = Vec::new();
    for n in 0..10 {
        let repository = Arc::clone(&repository);
        let flight = flight.clone();
        tasks.push(tokio::spawn(async move {
            repository
                .execute_with_retry::<Flight, _>(&flight, &Book(format!("passenger-{n}")), (), 20)
                .await
        }));
    }
    let (mut booked, mut full, mut attempts) = (0, 0, 0);
    for task in tasks {
        match task.await? {
            Ok(outcome) => {
                booked += 1;
                attempts += outcome.attempts;
            }
            Err(CommandError::Rejected(FlightFull)) => full += 1,
            Err(other) => return Err(other.into()),
        }
    }
    // ANCHOR_END: retry
    println!("{booked} booked in {attempts} attempts, {full} turned away: the flight is full");
    let left = repository.load::<Flight>(&flight).await?.free;
    println!("seats left: {left}");
    assert_eq!((booked, full, left), (7, 3, 0), "8 seats: bob and 7 of the 10");
    Ok(())
}
// ANCHOR_END: main
