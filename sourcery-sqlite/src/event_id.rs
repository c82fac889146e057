//! Looking event ids up: where a batch's ids are stored (for the
//! idempotent-append rule, [`replay_of`](sourcery_core::store::replay_of))
//! and which positions a stream's ids have
//! ([`EventStore::event_positions`](sourcery_core::store::EventStore::event_positions)).
//!
//! One statement per [`CHUNK`] ids, through the unique index
//! `sourcery_events_event_id`: one probe per id, whatever the stream. The
//! `IN` lists come in a few sizes only, the ids padded with repeats of the
//! first (SQLite probes each distinct value once), so that the cached
//! statements stay few.

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{Connection, ToSql};
use sourcery_core::store::StoredId;

/// At most this many ids in one statement (SQLite allows 32,766 parameters).
const CHUNK: usize = 4_096;

/// The sizes of the `IN` lists, smallest first; the last is [`CHUNK`].
const SIZES: [usize; 3] = [16, 256, CHUNK];

/// The statement for each of [`SIZES`]: each id's position, and whether it
/// is in the stream `?1` / `?2`.
static STATEMENTS: LazyLock<[String; 3]> = LazyLock::new(|| SIZES.map(statement));

fn statement(size: usize) -> String {
    let mut sql = String::from(
        "SELECT event_id, position, aggregate_kind = ?1 AND aggregate_id = ?2 \
         FROM sourcery_events WHERE event_id IN (",
    );
    for index in 0..size {
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push('?');
        sql.push_str(&(index + 3).to_string());
    }
    sql.push(')');
    sql
}

/// Where each of `ids` is stored: in the stream `aggregate_kind` /
/// `aggregate_id` (at its position), in another stream, or nowhere.
///
/// Several statements (more than [`CHUNK`] ids) need no common snapshot:
/// stored events are never removed nor moved, so what one statement finds
/// stays true.
pub(crate) fn stored_ids(
    connection: &Connection,
    aggregate_kind: &str,
    aggregate_id: &str,
    ids: &[[u8; 16]],
) -> rusqlite::Result<Vec<StoredId<i64>>> {
    let mut found: HashMap<[u8; 16], StoredId<i64>> = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        let Some(first) = chunk.first() else {
            continue;
        };
        let (size, sql) = SIZES
            .iter()
            .zip(STATEMENTS.iter())
            .find(|(size, _)| **size >= chunk.len())
            .unwrap_or((&CHUNK, &STATEMENTS[SIZES.len() - 1]));
        let mut statement = connection.prepare_cached(sql)?;
        let mut parameters: Vec<&dyn ToSql> = Vec::with_capacity(size + 2);
        parameters.push(&aggregate_kind);
        parameters.push(&aggregate_id);
        parameters.extend((0..*size).map(|index| chunk.get(index).unwrap_or(first) as &dyn ToSql));
        let mut rows = statement.query(parameters.as_slice())?;
        while let Some(row) = rows.next()? {
            let id: [u8; 16] = row.get(0)?;
            let position: i64 = row.get(1)?;
            let in_stream: bool = row.get(2)?;
            found.insert(
                id,
                if in_stream {
                    StoredId::InStream(position)
                } else {
                    StoredId::Elsewhere
                },
            );
        }
    }
    Ok(ids
        .iter()
        .map(|id| found.get(id).copied().unwrap_or(StoredId::Missing))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_size_probes_the_event_id_index() {
        let connection = crate::schema::open_memory(Path::new(":memory:")).expect("an in-memory database");
        for sql in STATEMENTS.iter() {
            let mut statement = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("the query prepares");
            let nulls = std::iter::repeat_n(rusqlite::types::Null, statement.parameter_count());
            let plan: Vec<String> = statement
                .query_map(rusqlite::params_from_iter(nulls), |row| row.get(3))
                .expect("the plan")
                .collect::<Result<_, _>>()
                .expect("the plan's rows");
            assert_eq!(
                plan,
                ["SEARCH sourcery_events USING INDEX sourcery_events_event_id (event_id=?)"]
            );
        }
    }

    #[test]
    fn ids_are_found_in_their_stream_elsewhere_or_nowhere() {
        let connection = crate::schema::open_memory(Path::new(":memory:")).expect("an in-memory database");
        let id = |n: u8| [n; 16];
        for (n, stream) in [(1, "a"), (2, "b"), (3, "a")] {
            connection
                .execute(
                    "INSERT INTO sourcery_events \
                     (aggregate_kind, aggregate_id, event_kind, data, metadata, event_id) \
                     VALUES ('account', ?1, 'noted', x'', 'null', ?2)",
                    (stream, id(n)),
                )
                .expect("an event inserts");
        }
        let stored = stored_ids(&connection, "account", "a", &[id(3), id(9), id(2), id(1), id(3)])
            .expect("the ids are looked up");
        assert_eq!(
            stored,
            [
                StoredId::InStream(3),
                StoredId::Missing,
                StoredId::Elsewhere,
                StoredId::InStream(1),
                StoredId::InStream(3)
            ]
        );
        // More ids than one statement takes.
        let many: Vec<[u8; 16]> = (0..CHUNK + 20)
            .map(|n| {
                let mut bytes = [0xff; 16];
                bytes[..8].copy_from_slice(&u64::try_from(n).expect("a small number").to_be_bytes());
                bytes
            })
            .chain([id(1)])
            .collect();
        let stored = stored_ids(&connection, "account", "a", &many).expect("the ids are looked up");
        assert_eq!(stored.len(), many.len());
        assert_eq!(stored.last(), Some(&StoredId::InStream(1)));
        assert!(
            stored[..CHUNK + 20]
                .iter()
                .all(|found| *found == StoredId::Missing)
        );
    }
}
