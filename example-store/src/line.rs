//! The file format: one line of JSON per committed batch.
//!
//! A batch is the unit that must be all there or not there at all, so it
//! is also the unit the file is written in: one `write` of one line, then
//! an `fsync`. A crash during the write leaves a partial last line (no
//! newline yet), which [`read`] reports so that opening can remove it.
//! Compact JSON never holds a raw newline (the ones inside strings are
//! escaped), so a newline always ends a line.
//!
//! ```text
//! {"position":7,"aggregate_kind":"account","aggregate_id":"ACC-1","events":[
//!   {"id":"01972f3c-5b7e-7a10-9d2e-3f4a5b6c7d8e","kind":"account.deposited",
//!    "schema_version":1,"data":"7b22616d6f756e74223a357d","metadata":null}]}
//! ```
//!
//! (one line in the file). `position` is the position of the batch's first
//! event; the others follow it, one apart. `id` is the event's id, as its
//! writer chose it. `data` is the event's bytes in hexadecimal, since a
//! codec may write any bytes.
//!
//! Files written before the store kept ids have lines without `id`. They
//! still read: such an event gets the id [`legacy_id`] derives from its
//! position, the same at every open (the file is append-only, so positions
//! never change), and unlike any id a writer draws.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sourcery::store::{EventId, StoredEvent};

use crate::error::Corruption;

/// An event as the store keeps it in memory: its metadata stays JSON until
/// a load decodes it into the store's metadata type.
pub(crate) type Event = StoredEvent<String, u64, Value>;

// ANCHOR: line_format
/// A batch as written: borrowed from the events it describes.
#[derive(Serialize)]
struct BatchOut<'a> {
    position: u64,
    aggregate_kind: &'a str,
    aggregate_id: &'a str,
    events: Vec<EventOut<'a>>,
}

#[derive(Serialize)]
struct EventOut<'a> {
    id: EventId,
    kind: &'a str,
    schema_version: u32,
    data: String,
    metadata: &'a Value,
}

/// The same batch as read back.
#[derive(Deserialize)]
struct BatchIn {
    position: u64,
    aggregate_kind: String,
    aggregate_id: String,
    events: Vec<EventIn>,
}

#[derive(Deserialize)]
struct EventIn {
    /// Absent from lines written before the store kept ids.
    #[serde(default)]
    id: Option<EventId>,
    kind: String,
    schema_version: u32,
    data: String,
    metadata: Value,
}
// ANCHOR_END: line_format

/// The line, newline included, that records `batch`: events of one
/// stream, at consecutive positions. An empty batch is no line at all.
pub(crate) fn encode(batch: &[Event]) -> Result<Vec<u8>, serde_json::Error> {
    let Some(first) = batch.first() else {
        return Ok(Vec::new());
    };
    let events = batch
        .iter()
        .map(|event| EventOut {
            id: event.id,
            kind: &event.kind,
            schema_version: event.schema_version,
            data: to_hex(&event.data),
            metadata: &event.metadata,
        })
        .collect();
    let mut line = serde_json::to_vec(&BatchOut {
        position: first.position,
        aggregate_kind: &first.aggregate_kind,
        aggregate_id: &first.aggregate_id,
        events,
    })?;
    line.push(b'\n');
    Ok(line)
}

/// What a log file holds.
pub(crate) struct Contents {
    /// Every event of the complete lines, in position order.
    pub(crate) events: Vec<Event>,
    /// Where the last complete line ends: anything after it is a partial
    /// line that a crash cut short.
    pub(crate) complete_len: usize,
}

// ANCHOR: read
/// Reads a whole log file. Every complete line must be a valid batch that
/// starts where the previous one ended, and no event id may be there twice;
/// the error names the first line (from 1) that breaks this. Bytes after
/// the last newline are not a line yet: they are left out and reported
/// through `complete_len`.
pub(crate) fn read(bytes: &[u8]) -> Result<Contents, (usize, Corruption)> {
    let complete_len = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let mut events = Vec::new();
    let mut ids = HashSet::new();
    let mut next_position = 1;
    for (line_number, line) in (1..).zip(bytes[..complete_len].split_inclusive(|&byte| byte == b'\n')) {
        let batch: BatchIn =
            serde_json::from_slice(line).map_err(|error| (line_number, Corruption::Json(error)))?;
        check(&batch, next_position).map_err(|reason| (line_number, reason))?;
        for (index, event) in batch.events.into_iter().enumerate() {
            let data = from_hex(&event.data).ok_or((line_number, Corruption::Data { index }))?;
            let id = event.id.unwrap_or_else(|| legacy_id(next_position));
            if !ids.insert(id) {
                return Err((line_number, Corruption::DuplicateId { index, id }));
            }
            events.push(Event {
                id,
                aggregate_kind: batch.aggregate_kind.clone(),
                aggregate_id: batch.aggregate_id.clone(),
                kind: event.kind,
                position: next_position,
                schema_version: event.schema_version,
                data,
                metadata: event.metadata,
            });
            next_position += 1;
        }
    }
    Ok(Contents { events, complete_len })
}

/// The id of the event at `position` in a line written before the store
/// kept ids: a UUID of version 8 (the version RFC 9562 leaves to
/// applications, which `EventId::new`'s version 7 and `EventId::derived`'s
/// version 5 never collide with), `jsonl-` then the position.
pub(crate) fn legacy_id(position: u64) -> EventId {
    let position = position.to_be_bytes();
    let mut bytes = [0; 16];
    bytes[..6].copy_from_slice(b"jsonl-");
    // The version (8) and variant (binary 10) bits, around the position.
    bytes[6] = 0x80;
    bytes[7] = position[0];
    bytes[8] = 0x80;
    bytes[9..].copy_from_slice(&position[1..]);
    EventId::from_bytes(bytes)
}
// ANCHOR_END: read

/// Whether the batch holds events and starts at `expected`.
fn check(batch: &BatchIn, expected: u64) -> Result<(), Corruption> {
    if batch.events.is_empty() {
        return Err(Corruption::Empty);
    }
    if batch.position != expected {
        return Err(Corruption::Position {
            found: batch.position,
            expected,
        });
    }
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |byte: u8| {
        char::from(byte)
            .to_digit(16)
            .and_then(|value| u8::try_from(value).ok())
    };
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: u64, data: &[u8]) -> Event {
        Event {
            id: EventId::new(),
            aggregate_kind: "account".into(),
            aggregate_id: "ACC-1".into(),
            kind: "account.deposited".into(),
            position,
            schema_version: 2,
            data: data.to_vec(),
            metadata: serde_json::json!({ "actor": "line\nbreak" }),
        }
    }

    #[test]
    fn a_batch_is_one_line_and_reads_back() -> Result<(), Box<dyn std::error::Error>> {
        let batch = [event(1, b"\0\xff{}"), event(2, b"")];
        let line = encode(&batch)?;
        // The newline in the metadata is escaped: the only one ends the line.
        assert_eq!(line.iter().position(|&byte| byte == b'\n'), Some(line.len() - 1));
        let contents = read(&line).map_err(|(line, reason)| format!("line {line}: {reason}"))?;
        assert_eq!(contents.events, batch);
        assert_eq!(contents.complete_len, line.len());
        Ok(())
    }

    #[test]
    fn bytes_after_the_last_newline_are_left_out() -> Result<(), Box<dyn std::error::Error>> {
        let first = event(1, b"a");
        let mut file = encode(std::slice::from_ref(&first))?;
        let first_line = file.len();
        let second = encode(&[event(2, b"b")])?;
        file.extend_from_slice(&second[..second.len() - 1]);
        let contents = read(&file).map_err(|(line, reason)| format!("line {line}: {reason}"))?;
        assert_eq!(contents.events, [first]);
        assert_eq!(contents.complete_len, first_line);
        Ok(())
    }

    #[test]
    fn a_gap_in_positions_is_corruption() -> Result<(), Box<dyn std::error::Error>> {
        let mut file = encode(&[event(1, b"a")])?;
        file.extend(encode(&[event(3, b"c")])?);
        assert!(matches!(
            read(&file),
            Err((
                2,
                Corruption::Position {
                    found: 3,
                    expected: 2
                }
            ))
        ));
        Ok(())
    }

    #[test]
    fn data_that_is_not_hexadecimal_is_corruption() {
        let line = br#"{"position":1,"aggregate_kind":"a","aggregate_id":"b","events":[{"kind":"k","schema_version":1,"data":"0g","metadata":null}]}
"#;
        assert!(matches!(read(line), Err((1, Corruption::Data { index: 0 }))));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("00ff7F"), Some(vec![0x00, 0xff, 0x7f]));
    }

    #[test]
    fn a_line_without_ids_reads_with_ids_from_positions() -> Result<(), Box<dyn std::error::Error>> {
        let old = br#"{"position":1,"aggregate_kind":"a","aggregate_id":"b","events":[{"kind":"k","schema_version":1,"data":"","metadata":null},{"kind":"k","schema_version":1,"data":"","metadata":null}]}
"#;
        let mut file = old.to_vec();
        let new = event(3, b"");
        file.extend(encode(std::slice::from_ref(&new))?);
        let contents = read(&file).map_err(|(line, reason)| format!("line {line}: {reason}"))?;
        let ids: Vec<EventId> = contents.events.iter().map(|event| event.id).collect();
        assert_eq!(ids, [legacy_id(1), legacy_id(2), new.id]);
        assert_eq!(legacy_id(2).to_string(), "6a736f6e-6c2d-8000-8000-000000000002");
        assert_eq!(legacy_id(u64::MAX).as_uuid().get_version_num(), 8);
        Ok(())
    }

    #[test]
    fn an_id_written_twice_is_corruption() -> Result<(), Box<dyn std::error::Error>> {
        let first = event(1, b"a");
        let mut again = event(2, b"b");
        again.id = first.id;
        let mut file = encode(&[first])?;
        file.extend(encode(&[event(2, b"c")])?);
        again.position = 3;
        file.extend(encode(&[again])?);
        assert!(matches!(
            read(&file),
            Err((3, Corruption::DuplicateId { index: 0, .. }))
        ));
        Ok(())
    }

    #[test]
    fn an_empty_batch_is_corruption() {
        let line = b"{\"position\":1,\"aggregate_kind\":\"a\",\"aggregate_id\":\"b\",\"events\":[]}\n";
        assert!(matches!(read(line), Err((1, Corruption::Empty))));
    }
}
