//! What every store refuses before it writes anything: a NUL character in
//! a text of the batch, schema version 0, or an event id twice.
//!
//! PostgreSQL's `text` and `jsonb` cannot hold the character U+0000 at all,
//! so no store keeps it: the stores agree by refusing it, each with the same
//! typed error ([`AppendError::Invalid`](super::AppendError::Invalid)), and
//! because nothing holding it is ever written, a read that names it finds
//! nothing ([`EventFilter::holds_nul`]).

use std::fmt::{self, Display, Write as _};
use std::io;

use serde::Serialize;

use super::{EventFilter, PersistableEvent, TextId};
use crate::id::EventId;

/// A text of an append, as [`InvalidBatch::Nul`] names it.
///
/// `index` is the event's place in the batch, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TextField {
    /// The stream's aggregate kind.
    AggregateKind,
    /// The stream's aggregate id, as text (its `Display`, which is what the
    /// SQL stores keep through [`TextId`](super::TextId)).
    AggregateId,
    /// An event's kind.
    EventKind {
        /// The event's index in the batch, from 0.
        index: usize,
    },
    /// An event's metadata, as JSON (a string anywhere in it, a map key
    /// included).
    Metadata {
        /// The event's index in the batch, from 0.
        index: usize,
    },
}

impl TextField {
    /// The index in the batch of the event the field belongs to; `None` for
    /// the stream's fields.
    #[must_use]
    pub fn event_index(&self) -> Option<usize> {
        match self {
            Self::AggregateKind | Self::AggregateId => None,
            Self::EventKind { index } | Self::Metadata { index } => Some(*index),
        }
    }
}

impl Display for TextField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AggregateKind => f.write_str("the aggregate kind"),
            Self::AggregateId => f.write_str("the aggregate id"),
            Self::EventKind { index } => write!(f, "the kind of event {index} of the batch"),
            Self::Metadata { index } => write!(f, "the metadata of event {index} of the batch"),
        }
    }
}

/// Why a store refused a batch without writing any of it: the batch holds
/// something no store keeps. Unlike a conflict, retrying cannot help; unlike
/// a store failure, the store is fine.
///
/// ```
/// use sourcery_core::store::{InvalidBatch, TextField};
///
/// let refused = InvalidBatch::Nul { field: TextField::EventKind { index: 2 } };
/// assert_eq!(
///     refused.to_string(),
///     "the kind of event 2 of the batch holds a NUL character (U+0000), which no event store keeps"
/// );
/// assert_eq!(refused.field(), Some(TextField::EventKind { index: 2 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidBatch {
    /// A text of the batch holds the character U+0000.
    #[error("{field} holds a NUL character (U+0000), which no event store keeps")]
    Nul {
        /// Which text.
        field: TextField,
    },
    /// An event has schema version 0; versions start at 1 (see
    /// [`PersistableEvent::schema_version`]).
    #[error("event {index} of the batch has schema version 0; schema versions start at 1")]
    SchemaVersionZero {
        /// The event's index in the batch, from 0.
        index: usize,
    },
    /// Two events of the batch have the same event id (see
    /// [`PersistableEvent::id`]); ids are unique per event.
    #[error("events {first} and {second} of the batch have the same event id")]
    DuplicateId {
        /// The index of the first, from 0.
        first: usize,
        /// The index of the second.
        second: usize,
    },
}

impl InvalidBatch {
    /// The text holding a NUL character, if that is what this is.
    #[must_use]
    pub fn field(&self) -> Option<TextField> {
        match self {
            Self::Nul { field } => Some(*field),
            Self::SchemaVersionZero { .. } | Self::DuplicateId { .. } => None,
        }
    }
}

/// Checks the batch `events` for the stream `aggregate_kind` /
/// `aggregate_id` before a store writes it: no NUL character in the
/// aggregate kind, the aggregate id's text or an event's kind, no schema
/// version 0, and no event id twice. Every store calls it first, before touching its
/// storage (so an invalid batch is refused as such whatever the stream's
/// version); the metadata is checked beside it, with [`check_metadata`] or,
/// by a store that encodes metadata as JSON itself, [`check_metadata_json`].
///
/// The fields are checked in that order, event by event; the first that
/// fails is reported.
///
/// ```
/// use sourcery_core::store::{InvalidBatch, PersistableEvent, TextField, check_batch};
///
/// let batch = [
///     PersistableEvent::new("account.opened", Vec::new(), ()),
///     PersistableEvent::new("account.\0noted", Vec::new(), ()),
/// ];
/// assert_eq!(check_batch("account", &"ACC-1", &batch[..1]), Ok(()));
/// assert_eq!(
///     check_batch("account", &"ACC-1", &batch),
///     Err(InvalidBatch::Nul { field: TextField::EventKind { index: 1 } })
/// );
/// assert_eq!(
///     check_batch("account", &"ACC\u{0}1", &batch[..1]),
///     Err(InvalidBatch::Nul { field: TextField::AggregateId })
/// );
/// // A backslash followed by `0` is two ordinary characters.
/// assert_eq!(check_batch("account", &r"ACC\0", &batch[..1]), Ok(()));
/// ```
///
/// # Errors
///
/// The [`InvalidBatch`] naming the first field that no store keeps.
pub fn check_batch<M>(
    aggregate_kind: &str,
    aggregate_id: &(impl Display + ?Sized),
    events: &[PersistableEvent<M>],
) -> Result<(), InvalidBatch> {
    if aggregate_kind.contains('\0') {
        return Err(InvalidBatch::Nul {
            field: TextField::AggregateKind,
        });
    }
    if displays_nul(aggregate_id) {
        return Err(InvalidBatch::Nul {
            field: TextField::AggregateId,
        });
    }
    check_events(events)
}

/// [`check_batch`] without the stream's texts: the events' kinds, schema
/// versions and ids.
pub(crate) fn check_events<M>(events: &[PersistableEvent<M>]) -> Result<(), InvalidBatch> {
    for (index, event) in events.iter().enumerate() {
        if event.kind.contains('\0') {
            return Err(InvalidBatch::Nul {
                field: TextField::EventKind { index },
            });
        }
        if event.schema_version == 0 {
            return Err(InvalidBatch::SchemaVersionZero { index });
        }
    }
    check_ids(events)
}

/// No event id twice in the batch: a quadratic scan for the usual few
/// events, a sort beyond.
fn check_ids<M>(events: &[PersistableEvent<M>]) -> Result<(), InvalidBatch> {
    const SCAN: usize = 16;
    if events.len() <= SCAN {
        for (second, event) in events.iter().enumerate() {
            if let Some(first) = events[..second].iter().position(|earlier| earlier.id == event.id) {
                return Err(InvalidBatch::DuplicateId { first, second });
            }
        }
        return Ok(());
    }
    let mut ids: Vec<(EventId, usize)> = events.iter().map(|event| event.id).zip(0..).collect();
    ids.sort_unstable();
    let duplicate = ids
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .map(|pair| (pair[0].1, pair[1].1))
        .min_by_key(|&(_, second)| second);
    match duplicate {
        Some((first, second)) => Err(InvalidBatch::DuplicateId { first, second }),
        None => Ok(()),
    }
}

/// Checks the metadata of event `index` of a batch: its JSON (as
/// `serde_json` writes it) must not hold a NUL character in any string or
/// key. For stores that keep metadata in another form; a store that encodes
/// metadata as JSON itself checks its text with [`check_metadata_json`]
/// instead, which gives the same answer.
///
/// Nothing is kept: the JSON is scanned as it is written. Metadata that
/// `serde_json` cannot write (a map with keys that are not strings, say)
/// passes as far as it was written: a store that needs JSON reports that
/// failure when it encodes the metadata.
///
/// ```
/// use sourcery_core::store::{InvalidBatch, TextField, check_metadata};
///
/// assert_eq!(check_metadata(0, &serde_json::json!({ "actor": "ada" })), Ok(()));
/// assert_eq!(
///     check_metadata(3, &serde_json::json!({ "actor": "a\u{0}da" })),
///     Err(InvalidBatch::Nul { field: TextField::Metadata { index: 3 } })
/// );
/// // A backslash followed by `u0000` is text, not the character.
/// assert_eq!(check_metadata(0, &r"\u0000".to_string()), Ok(()));
/// ```
///
/// # Errors
///
/// [`InvalidBatch::Nul`] with [`TextField::Metadata`] when the metadata
/// holds a NUL character.
pub fn check_metadata<M: Serialize + ?Sized>(index: usize, metadata: &M) -> Result<(), InvalidBatch> {
    let mut scanner = JsonScanner::default();
    // An error is either the scanner stopping at a NUL (it says so) or the
    // metadata not writing as JSON, which is not this check's to report.
    let _written = serde_json::to_writer(&mut scanner, metadata);
    if scanner.found {
        return Err(InvalidBatch::Nul {
            field: TextField::Metadata { index },
        });
    }
    Ok(())
}

/// Checks the metadata of event `index` of a batch, already encoded as the
/// JSON text `json`: no string or key in it may hold a NUL character,
/// written as the escape `\u0000` (or, invalid in JSON, raw). The escapes
/// are read as JSON reads them: `\\u0000` is a backslash followed by
/// `u0000`, and passes.
///
/// ```
/// use sourcery_core::store::{InvalidBatch, TextField, check_metadata_json};
///
/// assert_eq!(check_metadata_json(0, r#"{"note":"\\u0000"}"#), Ok(()));
/// assert_eq!(
///     check_metadata_json(1, r#"{"note":"\\\u0000"}"#),
///     Err(InvalidBatch::Nul { field: TextField::Metadata { index: 1 } })
/// );
/// ```
///
/// # Errors
///
/// [`InvalidBatch::Nul`] with [`TextField::Metadata`] when the JSON holds a
/// NUL character.
pub fn check_metadata_json(index: usize, json: &str) -> Result<(), InvalidBatch> {
    let mut scanner = JsonScanner::default();
    scanner.scan(json.as_bytes());
    if scanner.found {
        return Err(InvalidBatch::Nul {
            field: TextField::Metadata { index },
        });
    }
    Ok(())
}

impl<Id: TextId, Pos> EventFilter<Id, Pos> {
    /// Whether the filter names a text holding a NUL character (its event
    /// kind, aggregate kind or the aggregate id's text, as [`TextId`] gives
    /// it). No store writes such a text ([`check_batch`]), so the filter
    /// selects nothing; a store whose database refuses the character in a
    /// query (PostgreSQL) skips the filter instead of sending it.
    ///
    /// ```
    /// use sourcery_core::store::EventFilter;
    ///
    /// assert!(EventFilter::<String, u64>::for_event("k\0").holds_nul());
    /// assert!(EventFilter::<String, u64>::for_stream("account", "a\0b".into()).holds_nul());
    /// assert!(!EventFilter::<String, u64>::for_stream("account", r"a\0b".into()).holds_nul());
    /// ```
    #[must_use]
    pub fn holds_nul(&self) -> bool {
        self.event_kind().is_some_and(|kind| kind.contains('\0'))
            || self
                .aggregate()
                .is_some_and(|(kind, id)| kind.contains('\0') || id.to_text().contains('\0'))
    }
}

/// Whether `value`'s `Display` text holds a NUL character, without keeping
/// the text.
fn displays_nul(value: &(impl Display + ?Sized)) -> bool {
    /// Stops the formatting at the first NUL.
    struct Finder;

    impl fmt::Write for Finder {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            if text.contains('\0') {
                Err(fmt::Error)
            } else {
                Ok(())
            }
        }
    }

    // An error is a NUL found, or the value's `Display` failing, which
    // `to_string` would turn into a panic; neither is a text to store.
    write!(Finder, "{value}").is_err()
}

/// Reads JSON text as it is written, looking for a NUL character: the escape
/// `\u0000` (what `serde_json` writes for it) or a raw NUL byte. A `\`
/// always starts an escape in valid JSON (it only occurs in strings), so the
/// scanner needs no other state than where it is in an escape.
#[derive(Debug, Default)]
struct JsonScanner {
    escape: Escape,
    found: bool,
}

/// Where the scanner is in an escape sequence.
#[derive(Debug, Default, Clone, Copy)]
enum Escape {
    /// Not in one.
    #[default]
    None,
    /// Just after the backslash.
    Started,
    /// After `\u` and this many hex digits, all `0` so far.
    Zeros(u8),
}

impl JsonScanner {
    fn scan(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.found {
                return;
            }
            self.escape = match (self.escape, byte) {
                // A raw NUL, or the fourth `0` of `\u0000`.
                (_, 0) | (Escape::Zeros(3), b'0') => {
                    self.found = true;
                    Escape::None
                }
                (Escape::None, b'\\') => Escape::Started,
                (Escape::Started, b'u') => Escape::Zeros(0),
                (Escape::Zeros(digits), b'0') => Escape::Zeros(digits + 1),
                // Another one-character escape (`\\`, `\"`, `\n`, ...), a
                // `\u` escape of another character, or no escape at all.
                _ => Escape::None,
            };
        }
    }
}

impl io::Write for JsonScanner {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.scan(bytes);
        if self.found {
            // Stop the encoder: the answer is known.
            return Err(io::Error::other("a NUL character"));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn nul_in_metadata(index: usize) -> Result<(), InvalidBatch> {
        Err(InvalidBatch::Nul {
            field: TextField::Metadata { index },
        })
    }

    #[test]
    fn escapes_are_read_as_json_reads_them() {
        let cases: [(&str, bool); 12] = [
            (r#""\u0000""#, true),
            (r#""a\u0000b""#, true),
            (r#""\\u0000""#, false),
            (r#""\\\u0000""#, true),
            (r#""\\\\u0000""#, false),
            (r#""\u00001""#, true),
            (r#""\u0001""#, false),
            (r#""\u1000""#, false),
            (r#""\u000a""#, false),
            (r#""\\0""#, false),
            (r#""\"u0000""#, false),
            ("\"raw\0\"", true),
        ];
        for (json, nul) in cases {
            let expected = if nul { nul_in_metadata(0) } else { Ok(()) };
            assert_eq!(check_metadata_json(0, json), expected, "in {json}");
        }
    }

    #[test]
    fn serialized_metadata_gets_the_same_answer_as_its_json() {
        let values = [
            serde_json::json!({ "a": "\0" }),
            serde_json::json!({ "a\0": 1 }),
            serde_json::json!(["x", ["y", "z\0"]]),
            serde_json::json!({ "a": "\\u0000", "b": "\\0", "c": "\u{1}" }),
            serde_json::json!(null),
        ];
        for value in values {
            let json = value.to_string();
            assert_eq!(
                check_metadata(4, &value),
                check_metadata_json(4, &json),
                "for {json}"
            );
        }
        assert_eq!(
            check_metadata(4, &serde_json::json!({ "a\0": 1 })),
            nul_in_metadata(4)
        );
    }

    #[test]
    fn an_escape_split_across_writes_is_still_found() {
        let mut scanner = JsonScanner::default();
        for part in [r#"{"a":"x\"#, "u00", "0", r#"0"}"#] {
            scanner.scan(part.as_bytes());
        }
        assert!(scanner.found);
    }

    #[test]
    fn metadata_that_is_not_json_is_not_this_checks_to_refuse() {
        let mut map = BTreeMap::new();
        map.insert((1_u8, 2_u8), "\0");
        assert!(serde_json::to_string(&map).is_err());
        assert_eq!(check_metadata(0, &map), Ok(()));
    }

    #[test]
    fn the_first_invalid_field_is_reported() {
        let events = [
            PersistableEvent::new("ok", Vec::new(), ()).with_schema_version(0),
            PersistableEvent::new("k\0", Vec::new(), ()),
        ];
        assert_eq!(
            check_batch("kind\0", &"id\0", &events),
            Err(InvalidBatch::Nul {
                field: TextField::AggregateKind
            })
        );
        assert_eq!(
            check_batch("kind", &"id\0", &events),
            Err(InvalidBatch::Nul {
                field: TextField::AggregateId
            })
        );
        assert_eq!(
            check_batch("kind", &"id", &events),
            Err(InvalidBatch::SchemaVersionZero { index: 0 })
        );
        assert_eq!(
            check_batch("kind", &"id", &events[1..]),
            Err(InvalidBatch::Nul {
                field: TextField::EventKind { index: 0 }
            })
        );
        assert_eq!(check_batch("kind", &42_u64, &events[..0]), Ok(()));
    }

    #[test]
    fn filters_naming_nul_are_told_apart() {
        type Filter = EventFilter<String, u64>;
        assert!(Filter::for_aggregate("k", "a\0", "id".into()).holds_nul());
        assert!(Filter::for_aggregate("k", "a", "\0".into()).holds_nul());
        assert!(Filter::for_event("\0").after(3).holds_nul());
        assert!(!Filter::for_aggregate("k", "a", "id".into()).holds_nul());
        assert!(!Filter::for_event(r"\u0000").holds_nul());
    }
}
