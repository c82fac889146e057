//! Loading events: one `SELECT` for any set of filters.
//!
//! Filters on the same stream with the same `after` become one predicate
//! with `event_kind IN (...)`, and so do filters on event kinds alone with
//! the same `after`. Whole-stream filters ([`EventFilter::for_stream`]) on
//! one stream become one predicate without an event kind, keeping the
//! smallest `after`, which the stream index serves alone; the stream's
//! filters on event kinds that it covers (from the same position or later)
//! are dropped. The predicates are joined with `OR` in one statement
//! ordered by position, so each event comes once and in order. Only a set of
//! filters too large for one statement's parameters is split into several
//! statements, run in one read transaction (one snapshot) and merged.
//!
//! A reader thread copies the rows' bytes out of SQLite and sends them in
//! parts of a few hundred kilobytes; the caller's task builds the events of
//! each part while the reader reads the next ([`load`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};
use serde::de::DeserializeOwned;
use sourcery_core::store::after::{covers, looser};
use sourcery_core::store::{EventFilter, EventId, StoredEvent, TextId};

use tokio::sync::mpsc::UnboundedSender;

use crate::Error;
use crate::schema::At;
use crate::worker::Worker;

/// At most this many kinds in one `IN (...)` list.
const KINDS_PER_PREDICATE: usize = 500;
/// At most this many parameters in one statement (SQLite allows 32,766).
const PARAMETERS_PER_STATEMENT: usize = 30_000;

const SELECT: &str = "SELECT position, aggregate_kind, aggregate_id, event_kind, data, metadata, schema_version, \
                      event_id FROM sourcery_events";

/// A stream as stored (aggregate kind, aggregate id as text), or `None` for
/// every stream.
type Stream = Option<(String, String)>;

/// One predicate: some event kinds (or, in a stream, every kind),
/// optionally in one stream, optionally after a position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Predicate {
    stream: Stream,
    after: Option<i64>,
    /// `None`: every kind (a whole stream; `stream` is then `Some`).
    kinds: Option<Vec<String>>,
}

impl Predicate {
    fn parameters(&self) -> usize {
        self.kinds.as_ref().map_or(0, Vec::len)
            + 2 * usize::from(self.stream.is_some())
            + usize::from(self.after.is_some())
    }

    fn write(&self, sql: &mut String, parameters: &mut Vec<Value>) {
        sql.push('(');
        if let Some((kind, id)) = &self.stream {
            sql.push_str("aggregate_kind = ? AND aggregate_id = ?");
            parameters.push(Value::Text(kind.clone()));
            parameters.push(Value::Text(id.clone()));
        }
        if let Some(kinds) = &self.kinds {
            // In a stream's predicate, `+event_kind` keeps the planner on the
            // stream index (the unary plus makes the kind index unusable
            // there): a stream is a few events, a kind may be most of the log.
            if self.stream.is_some() {
                sql.push_str(" AND +");
            }
            if let [kind] = kinds.as_slice() {
                sql.push_str("event_kind = ?");
                parameters.push(Value::Text(kind.clone()));
            } else {
                sql.push_str("event_kind IN (");
                for (index, kind) in kinds.iter().enumerate() {
                    sql.push_str(if index == 0 { "?" } else { ", ?" });
                    parameters.push(Value::Text(kind.clone()));
                }
                sql.push(')');
            }
        }
        if let Some(after) = self.after {
            sql.push_str(" AND position > ?");
            parameters.push(Value::Integer(after));
        }
        sql.push(')');
    }
}

/// The statements (SQL and parameters) that load what `filters` select.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    statements: Vec<(String, Vec<Value>)>,
    limit: Option<usize>,
}

impl Query {
    /// Builds the query; no filters give no statement.
    pub(crate) fn new<Id: TextId>(filters: &[EventFilter<Id, i64>]) -> Self {
        Self::build(filters, None)
    }

    /// Builds the query for the first `limit` events only (a subscription's
    /// page): each statement ends with `LIMIT`, so SQLite stops reading
    /// there.
    pub(crate) fn page<Id: TextId>(filters: &[EventFilter<Id, i64>], limit: usize) -> Self {
        Self::build(filters, Some(limit))
    }

    fn build<Id: TextId>(filters: &[EventFilter<Id, i64>], limit: Option<usize>) -> Self {
        // Whole streams first: stream -> the smallest `after`, in the
        // filters' order.
        let mut wholes: Vec<((String, String), Option<i64>)> = Vec::new();
        for filter in filters {
            if let (Some((kind, id)), None) = (filter.aggregate(), filter.event_kind()) {
                let stream = (kind.to_owned(), id.to_text());
                let after = filter.after_position();
                match wholes.iter_mut().find(|(known, _)| *known == stream) {
                    Some((_, bound)) => *bound = looser(*bound, after),
                    None => wholes.push((stream, after)),
                }
            }
        }
        let whole_after: HashMap<&(String, String), Option<i64>> =
            wholes.iter().map(|(stream, after)| (stream, *after)).collect();
        let mut predicates: Vec<Predicate> = Vec::new();
        // Where each (stream, after) pair's predicate of event kinds sits in
        // `predicates`.
        let mut index: HashMap<(Stream, Option<i64>), usize> = HashMap::new();
        for filter in filters {
            // A filter without a stream has a kind (`EventFilter`'s
            // constructors see to it); whole streams are done above.
            let Some(kind) = filter.event_kind() else {
                continue;
            };
            let stream = filter
                .aggregate()
                .map(|(kind, id)| (kind.to_owned(), id.to_text()));
            let after = filter.after_position();
            let covered = stream
                .as_ref()
                .and_then(|stream| whole_after.get(stream))
                .is_some_and(|&cover| covers(cover, after));
            if covered {
                continue;
            }
            let slot = *index.entry((stream.clone(), after)).or_insert_with(|| {
                predicates.push(Predicate {
                    stream,
                    after,
                    kinds: Some(Vec::new()),
                });
                predicates.len() - 1
            });
            if let Some(kinds) = &mut predicates[slot].kinds
                && !kinds.iter().any(|known| known == kind)
            {
                kinds.push(kind.to_owned());
            }
        }
        let wholes = wholes.into_iter().map(|(stream, after)| Predicate {
            stream: Some(stream),
            after,
            kinds: None,
        });
        // Keep each `IN` list and each statement within SQLite's limits.
        let predicates = wholes.chain(predicates.into_iter().flat_map(|predicate| {
            let Predicate { stream, after, kinds } = predicate;
            kinds
                .unwrap_or_default()
                .chunks(KINDS_PER_PREDICATE)
                .map(|kinds| Predicate {
                    stream: stream.clone(),
                    after,
                    kinds: Some(kinds.to_vec()),
                })
                .collect::<Vec<_>>()
        }));
        let mut statements = Vec::new();
        let mut batch: Vec<Predicate> = Vec::new();
        let mut batch_parameters = 0;
        for predicate in predicates {
            if !batch.is_empty() && batch_parameters + predicate.parameters() > PARAMETERS_PER_STATEMENT {
                statements.push(statement(&batch, limit));
                batch.clear();
                batch_parameters = 0;
            }
            batch_parameters += predicate.parameters();
            batch.push(predicate);
        }
        if !batch.is_empty() {
            statements.push(statement(&batch, limit));
        }
        Self { statements, limit }
    }

    /// Whether the query selects nothing (no filters).
    pub(crate) fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Runs the query on `connection` and sends its rows, undecoded, on
    /// `parts`: a single statement's rows in parts of about [`PART_BYTES`]
    /// as they are read, several statements' rows (merged, so all read
    /// first) in one part; then [`Part::End`], or [`Part::Failed`]. Stops
    /// early if the receiver is gone.
    pub(crate) fn send(&self, connection: &mut Connection, path: &Path, parts: &UnboundedSender<Part>) {
        match self.read(connection, path, parts) {
            Ok(Some(rows)) => {
                let _ = parts.send(Part::Rows(rows)).and_then(|()| parts.send(Part::End));
            }
            // The receiver is gone.
            Ok(None) => {}
            Err(error) => {
                let _ = parts.send(Part::Failed(error));
            }
        }
    }

    /// Reads the rows, sends full parts of a single statement's; returns the
    /// rows left to send, `None` if the receiver is gone.
    fn read(
        &self,
        connection: &mut Connection,
        path: &Path,
        parts: &UnboundedSender<Part>,
    ) -> Result<Option<Rows>, Error> {
        let mut rows = Rows::default();
        match self.statements.as_slice() {
            [] => {}
            [(sql, parameters)] => {
                if !select(connection, path, sql, parameters, &mut rows, Some(parts))? {
                    return Ok(None);
                }
            }
            statements => {
                // One read transaction: every statement sees the same snapshot.
                let transaction = connection.transaction().at(path)?;
                for (sql, parameters) in statements {
                    select(&transaction, path, sql, parameters, &mut rows, None)?;
                }
                transaction.commit().at(path)?;
                rows.rows.sort_by_key(|row| row.position);
                rows.rows.dedup_by_key(|row| row.position);
                // Each statement's first `limit` rows hold the union's first
                // `limit`.
                if let Some(limit) = self.limit {
                    rows.rows.truncate(limit);
                }
            }
        }
        Ok(Some(rows))
    }
}

/// What a reader thread sends while it runs a [`Query`].
#[derive(Debug)]
pub(crate) enum Part {
    /// The next rows, in order.
    Rows(Rows),
    /// Every row was sent.
    End,
    /// The query failed; nothing follows.
    Failed(Error),
}

/// About how many bytes of rows a reader thread sends at a time.
///
/// The caller builds the events of one part while the reader thread reads
/// the next, so a long load costs about the reading plus the decoding of its
/// last part (on a second core). Parts are few (a 10,000-event load of
/// ~300-byte rows sends about a dozen), so waking the caller for each costs
/// little.
const PART_BYTES: usize = 256 * 1024;

/// Runs `query` on one of `readers`' connections and builds its events on
/// the caller's task, part by part as the reader thread reads them.
pub(crate) async fn load<Id, M>(
    readers: &Worker,
    error_path: &Path,
    query: Query,
) -> Result<Vec<StoredEvent<Id, i64, M>>, Error>
where
    Id: TextId + Clone,
    M: DeserializeOwned,
{
    let mut parts = readers.stream(move |connection, path, parts| query.send(connection, path, parts))?;
    let mut events = Vec::new();
    while let Some(part) = parts.recv().await {
        match part {
            Part::Rows(rows) => rows.decode_into(error_path, &mut events)?,
            Part::End => return Ok(events),
            Part::Failed(error) => return Err(error),
        }
    }
    // The reader thread panicked.
    Err(Error::Stopped)
}

/// Rows as a reader thread hands them over (a [`Part`] of a load): every
/// column's bytes in one buffer, and where each row's columns end.
///
/// The reader thread only copies bytes out of SQLite; the caller builds the
/// `StoredEvent`s, one part while the reader thread reads the next. So the many small allocations of the result are made (and
/// later freed) on the caller's thread, as hand-written code would make
/// them: freeing memory that another thread allocated costs the allocator
/// far more, and it made loads about 25% slower when the reader thread built
/// the events.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    bytes: Vec<u8>,
    rows: Vec<RawRow>,
}

/// One row: its position, its schema version as stored, its event id (or
/// the length of a stored id that is not 16 bytes), and where its other
/// columns end in [`Rows::bytes`] (aggregate kind, aggregate id, event kind,
/// data, metadata; each starts where the previous one ends).
#[derive(Debug, Clone, Copy)]
struct RawRow {
    position: i64,
    schema_version: i64,
    event_id: Result<[u8; 16], usize>,
    start: usize,
    ends: [usize; 5],
}

impl Rows {
    /// Builds the events (parses ids, decodes metadata) at the end of
    /// `events`.
    fn decode_into<Id, M>(&self, path: &Path, events: &mut Vec<StoredEvent<Id, i64, M>>) -> Result<(), Error>
    where
        Id: TextId + Clone,
        M: DeserializeOwned,
    {
        events.reserve(self.rows.len());
        // Consecutive rows mostly share their stream: reuse its parsed id.
        let mut previous: Option<(&str, &str, Id)> = None;
        for row in &self.rows {
            let [kind_end, id_end, event_kind_end, data_end, metadata_end] = row.ends;
            let text = |start: usize, end: usize| {
                std::str::from_utf8(&self.bytes[start..end])
                    .map_err(|error| Error::from_sqlite(path, rusqlite::Error::Utf8Error(error)))
            };
            let aggregate_kind = text(row.start, kind_end)?;
            let id_text = text(kind_end, id_end)?;
            let kind = text(id_end, event_kind_end)?;
            let data = &self.bytes[event_kind_end..data_end];
            let metadata_text = text(data_end, metadata_end)?;
            let position = row.position;

            let aggregate_id = match &previous {
                Some((known_kind, known_text, known_id))
                    if *known_kind == aggregate_kind && *known_text == id_text =>
                {
                    known_id.clone()
                }
                _ => {
                    let aggregate_id = Id::from_text(id_text).map_err(|source| Error::DecodeAggregateId {
                        event_kind: kind.to_owned(),
                        aggregate_kind: aggregate_kind.to_owned(),
                        position,
                        source,
                    })?;
                    previous = Some((aggregate_kind, id_text, aggregate_id.clone()));
                    aggregate_id
                }
            };
            let schema_version =
                u32::try_from(row.schema_version).map_err(|source| Error::DecodeSchemaVersion {
                    event_kind: kind.to_owned(),
                    aggregate_kind: aggregate_kind.to_owned(),
                    aggregate_id: id_text.to_owned(),
                    position,
                    found: row.schema_version,
                    source,
                })?;
            let metadata = serde_json::from_str(metadata_text).map_err(|source| Error::DecodeMetadata {
                event_kind: kind.to_owned(),
                aggregate_kind: aggregate_kind.to_owned(),
                aggregate_id: id_text.to_owned(),
                position,
                source,
            })?;
            let id = row.event_id.map_err(|length| Error::DecodeEventId {
                event_kind: kind.to_owned(),
                aggregate_kind: aggregate_kind.to_owned(),
                aggregate_id: id_text.to_owned(),
                position,
                length,
            })?;
            events.push(StoredEvent {
                id: EventId::from_bytes(id),
                aggregate_kind: aggregate_kind.to_owned(),
                aggregate_id,
                kind: kind.to_owned(),
                position,
                schema_version,
                data: data.to_vec(),
                metadata,
            });
        }
        Ok(())
    }
}

fn statement(predicates: &[Predicate], limit: Option<usize>) -> (String, Vec<Value>) {
    let mut sql = String::with_capacity(SELECT.len() + 64 * predicates.len() + 32);
    let mut parameters = Vec::new();
    sql.push_str(SELECT);
    sql.push_str(" WHERE ");
    for (index, predicate) in predicates.iter().enumerate() {
        if index > 0 {
            sql.push_str(" OR ");
        }
        predicate.write(&mut sql, &mut parameters);
    }
    let _ = write!(sql, " ORDER BY position");
    if let Some(limit) = limit {
        sql.push_str(" LIMIT ?");
        parameters.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    }
    (sql, parameters)
}

/// Runs one `SELECT` and copies its rows into `rows`; with `parts`, sends
/// them there every [`PART_BYTES`] or so. `false` if the receiver is gone.
fn select(
    connection: &Connection,
    path: &Path,
    sql: &str,
    parameters: &[Value],
    rows: &mut Rows,
    parts: Option<&UnboundedSender<Part>>,
) -> Result<bool, Error> {
    let mut statement = connection.prepare_cached(sql).at(path)?;
    let mut results = statement.query(params_from_iter(parameters)).at(path)?;
    if parts.is_some() {
        rows.bytes.reserve(PART_BYTES + PART_BYTES / 4);
    }
    while let Some(row) = results.next().at(path)? {
        let position: i64 = row.get(0).at(path)?;
        let start = rows.bytes.len();
        let mut ends = [0; 5];
        for (column, end) in (1..).zip(&mut ends) {
            let bytes = row
                .get_ref(column)
                .and_then(|value| Ok(value.as_bytes()?))
                .at(path)?;
            rows.bytes.extend_from_slice(bytes);
            *end = rows.bytes.len();
        }
        let schema_version: i64 = row.get(6).at(path)?;
        // 16 bytes, unless written past the column's check.
        let event_id = row.get_ref(7).and_then(|value| Ok(value.as_blob()?)).at(path)?;
        let event_id = <[u8; 16]>::try_from(event_id).map_err(|_| event_id.len());
        rows.rows.push(RawRow {
            position,
            schema_version,
            event_id,
            start,
            ends,
        });
        if let Some(parts) = parts
            && rows.bytes.len() >= PART_BYTES
        {
            let full = std::mem::take(rows);
            rows.bytes.reserve(PART_BYTES + PART_BYTES / 4);
            if parts.send(Part::Rows(full)).is_err() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(query: &Query) -> Vec<&str> {
        query.statements.iter().map(|(sql, _)| sql.as_str()).collect()
    }

    #[test]
    fn filters_on_one_stream_become_one_predicate() {
        let id = "a".to_owned();
        let query = Query::new(&[
            EventFilter::<String, i64>::for_aggregate("opened", "account", id.clone()),
            EventFilter::for_aggregate("noted", "account", id.clone()),
            EventFilter::for_aggregate("noted", "account", id),
        ]);
        assert_eq!(
            sql(&query),
            [format!(
                "{SELECT} WHERE (aggregate_kind = ? AND aggregate_id = ? AND +event_kind IN (?, ?)) ORDER BY position"
            )]
        );
        assert_eq!(query.statements[0].1.len(), 4);
    }

    #[test]
    fn a_whole_stream_is_one_predicate_without_an_event_kind() {
        let id = "a".to_owned();
        let query = Query::new(&[
            EventFilter::<String, i64>::for_stream("account", id.clone()).after(9),
            EventFilter::for_stream("account", id.clone()).after(4),
        ]);
        assert_eq!(
            sql(&query),
            [format!(
                "{SELECT} WHERE (aggregate_kind = ? AND aggregate_id = ? AND position > ?) ORDER BY position"
            )],
            "whole-stream filters on one stream merge, keeping the smallest `after`"
        );
        assert_eq!(
            query.statements[0].1,
            [Value::Text("account".into()), Value::Text(id), Value::Integer(4)]
        );
    }

    #[test]
    fn a_whole_stream_covers_the_kind_filters_on_it_that_start_no_earlier() {
        let a = || "a".to_owned();
        let query = Query::new(&[
            EventFilter::<String, i64>::for_aggregate("opened", "account", a()).after(5),
            EventFilter::for_stream("account", a()).after(5),
            EventFilter::for_aggregate("noted", "account", a()).after(8),
            // Not covered: from the start, and other streams.
            EventFilter::for_aggregate("closed", "account", a()),
            EventFilter::for_aggregate("opened", "account", "b".to_owned()),
            EventFilter::for_aggregate("opened", "ledger", a()),
        ]);
        assert_eq!(
            sql(&query),
            [format!(
                "{SELECT} WHERE (aggregate_kind = ? AND aggregate_id = ? AND position > ?) \
                 OR (aggregate_kind = ? AND aggregate_id = ? AND +event_kind = ?) \
                 OR (aggregate_kind = ? AND aggregate_id = ? AND +event_kind = ?) \
                 OR (aggregate_kind = ? AND aggregate_id = ? AND +event_kind = ?) ORDER BY position"
            )]
        );
        assert_eq!(query.statements[0].1[5], Value::Text("closed".into()));
    }

    #[test]
    fn kinds_and_positions_group_separately() {
        let query = Query::new(&[
            EventFilter::<String, i64>::for_event("opened").after(3),
            EventFilter::for_event("noted").after(3),
            EventFilter::for_event("closed"),
        ]);
        assert_eq!(
            sql(&query),
            [format!(
                "{SELECT} WHERE (event_kind IN (?, ?) AND position > ?) OR (event_kind = ?) ORDER BY position"
            )]
        );
    }

    #[test]
    fn a_page_ends_with_a_limit() {
        let query = Query::page(&[EventFilter::<String, i64>::for_event("opened").after(3)], 1_000);
        assert_eq!(
            sql(&query),
            [format!(
                "{SELECT} WHERE (event_kind = ? AND position > ?) ORDER BY position LIMIT ?"
            )]
        );
        assert_eq!(query.statements[0].1.last(), Some(&Value::Integer(1_000)));
    }

    #[test]
    fn no_filters_no_statement() {
        assert!(Query::new::<String>(&[]).statements.is_empty());
    }

    #[test]
    fn many_filters_split_within_the_parameter_limit() {
        let filters: Vec<EventFilter<String, i64>> = (0..20_000)
            .map(|n| EventFilter::for_aggregate("noted", "account", n.to_string()))
            .collect();
        let query = Query::new(&filters);
        assert!(query.statements.len() > 1);
        assert!(
            query
                .statements
                .iter()
                .all(|(_, parameters)| parameters.len() <= PARAMETERS_PER_STATEMENT)
        );
        let total: usize = query
            .statements
            .iter()
            .map(|(_, parameters)| parameters.len())
            .sum();
        assert_eq!(total, 20_000 * 3);
    }

    /// The plan SQLite picks for each load shape, on an empty store (no
    /// statistics, so the plan is the schema's doing, not the data's).
    fn plans(filters: &[EventFilter<String, i64>]) -> Vec<String> {
        let connection = crate::schema::open_memory(Path::new(":memory:")).expect("an in-memory database");
        let query = Query::new(filters);
        let (sql, parameters) = &query.statements[0];
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("the query prepares");
        statement
            .query_map(params_from_iter(parameters), |row| row.get::<_, String>(3))
            .expect("the plan")
            .collect::<Result<_, _>>()
            .expect("the plan's rows")
    }

    #[test]
    fn indexes_serve_every_load_shape() {
        let id = || "a".to_owned();
        let stream = plans(&[
            EventFilter::for_aggregate("opened", "account", id()),
            EventFilter::for_aggregate("noted", "account", id()),
        ]);
        assert_eq!(
            stream,
            [
                "SEARCH sourcery_events USING INDEX sourcery_events_stream (aggregate_kind=? AND aggregate_id=?)"
            ],
            "one stream: the stream index, already in position order"
        );
        let stream_tail = plans(&[EventFilter::for_aggregate("opened", "account", id()).after(5)]);
        assert_eq!(
            stream_tail,
            [
                "SEARCH sourcery_events USING INDEX sourcery_events_stream (aggregate_kind=? AND aggregate_id=? AND rowid>?)"
            ],
            "one stream after a position (a snapshot's tail)"
        );
        let whole = plans(&[EventFilter::for_stream("account", id())]);
        assert_eq!(
            whole,
            [
                "SEARCH sourcery_events USING INDEX sourcery_events_stream (aggregate_kind=? AND aggregate_id=?)"
            ],
            "a whole stream: the stream index, already in position order"
        );
        let whole_tail = plans(&[EventFilter::for_stream("account", id()).after(5)]);
        assert_eq!(
            whole_tail,
            [
                "SEARCH sourcery_events USING INDEX sourcery_events_stream (aggregate_kind=? AND aggregate_id=? AND rowid>?)"
            ],
            "a whole stream after a position (a snapshot's tail)"
        );
        let kind_tail = plans(&[EventFilter::for_event("opened").after(5)]);
        assert_eq!(
            kind_tail,
            ["SEARCH sourcery_events USING INDEX sourcery_events_kind (event_kind=? AND rowid>?)"],
            "one kind after a position"
        );
        let mixed = plans(&[
            EventFilter::for_event("opened").after(5),
            EventFilter::for_aggregate("noted", "account", id()),
        ]);
        assert!(
            mixed.iter().all(|step| !step.starts_with("SCAN")),
            "several filters: each through its index, no table scan: {mixed:?}"
        );
    }

    #[test]
    fn the_stream_version_reads_one_index_entry() {
        let connection = crate::schema::open_memory(Path::new(":memory:")).expect("an in-memory database");
        let plan: String = connection
            .query_row(
                &format!("EXPLAIN QUERY PLAN {}", crate::append::STREAM_VERSION),
                ("account", "a"),
                |row| row.get(3),
            )
            .expect("the plan");
        assert_eq!(
            plan,
            "SEARCH sourcery_events USING COVERING INDEX sourcery_events_stream (aggregate_kind=? AND aggregate_id=?)"
        );
    }
}
