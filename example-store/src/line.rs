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
//!   {"kind":"account.deposited","schema_version":1,"data":"7b22616d6f756e74223a357d","metadata":null}]}
//! ```
//!
//! (one line in the file). `position` is the position of the batch's first
//! event; the others follow it, one apart. `data` is the event's bytes in
//! hexadecimal, since a codec may write any bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sourcery::store::StoredEvent;

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
/// starts where the previous one ended; the error names the first line
/// (from 1) that is not. Bytes after the last newline are not a line yet:
/// they are left out and reported through `complete_len`.
pub(crate) fn read(bytes: &[u8]) -> Result<Contents, (usize, Corruption)> {
    let complete_len = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let mut events = Vec::new();
    let mut next_position = 1;
    for (line_number, line) in (1..).zip(bytes[..complete_len].split_inclusive(|&byte| byte == b'\n')) {
        let batch: BatchIn =
            serde_json::from_slice(line).map_err(|error| (line_number, Corruption::Json(error)))?;
        check(&batch, next_position).map_err(|reason| (line_number, reason))?;
        for (index, event) in batch.events.into_iter().enumerate() {
            let data = from_hex(&event.data).ok_or((line_number, Corruption::Data { index }))?;
            events.push(Event {
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
    if digits.len() % 2 != 0 {
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
        let mut file = encode(&[event(1, b"a")])?;
        let first_line = file.len();
        let second = encode(&[event(2, b"b")])?;
        file.extend_from_slice(&second[..second.len() - 1]);
        let contents = read(&file).map_err(|(line, reason)| format!("line {line}: {reason}"))?;
        assert_eq!(contents.events, [event(1, b"a")]);
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
    fn an_empty_batch_is_corruption() {
        let line = b"{\"position\":1,\"aggregate_kind\":\"a\",\"aggregate_id\":\"b\",\"events\":[]}\n";
        assert!(matches!(read(line), Err((1, Corruption::Empty))));
    }
}
