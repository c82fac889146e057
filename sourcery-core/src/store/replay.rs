//! The idempotent-append rule (invariant 7 of the [contract](super)), as one
//! function every store calls: [`replay_of`].

use crate::id::EventId;

/// Why a batch was refused: some of its event ids are stored already, but
/// the batch is not a replay of stored events (some of its ids are new, or
/// they are stored in another stream or in another order). Nothing was
/// written. A retry with the same ids cannot succeed: the caller mixed up
/// its ids.
///
/// ```
/// use sourcery_core::id::EventId;
/// use sourcery_core::store::{IdReuse, IdReused};
///
/// let id = EventId::from_uuid(uuid::Uuid::nil());
/// let refused = IdReused::new(id, 1, IdReuse::Partial);
/// assert_eq!(
///     refused.to_string(),
///     "event 1 of the batch reuses the id 00000000-0000-0000-0000-000000000000 of a stored event, \
///      but the batch holds new ids too; nothing was written"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error(
    "event {index} of the batch reuses the id {event_id} of a stored event, but {reason}; nothing was written"
)]
#[non_exhaustive]
pub struct IdReused {
    /// The first reused id the store found.
    pub event_id: EventId,
    /// Its index in the batch, from 0.
    pub index: usize,
    /// How the batch differs from a replay. When several reasons hold (ids
    /// of another stream and new ids in one batch, say), stores may name any
    /// of them.
    pub reason: IdReuse,
}

impl IdReused {
    /// The refusal of the batch whose event `index` reuses `event_id`.
    #[must_use]
    pub fn new(event_id: EventId, index: usize, reason: IdReuse) -> Self {
        Self {
            event_id,
            index,
            reason,
        }
    }
}

/// How a batch that reuses stored ids differs from a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdReuse {
    /// Some ids of the batch are stored, others are not.
    Partial,
    /// The id is stored in another stream.
    OtherStream,
    /// The ids are stored in this stream, in another order.
    Order,
}

impl std::fmt::Display for IdReuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Partial => "the batch holds new ids too",
            Self::OtherStream => "that event is in another stream",
            Self::Order => "the stored events are in another order",
        })
    }
}

/// Where a store found one id of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredId<Pos> {
    /// Not stored.
    Missing,
    /// Stored in the batch's stream, at this position.
    InStream(Pos),
    /// Stored in another stream.
    Elsewhere,
}

/// The idempotent-append rule, given where each event id of a batch is
/// stored (`stored[i]` for event `i`, as the store looked them up):
///
/// - `Ok(None)`: no id is stored; the batch is new, append it (version
///   check included).
/// - `Ok(Some(last))`: every id is stored in this stream, in the batch's
///   order; the batch is a replay: write nothing and return `last` (the
///   position of the batch's last event) as the append's outcome, whatever
///   the expected version says now.
/// - `Err(IdReused)`: anything else; refuse the batch.
///
/// Stores call it when the batch's ids may be stored: before the version
/// check when they look ids up first, or after a unique-index violation on
/// the event id or a version conflict when they look them up only then
/// (an id check comes before the version check: a reused id is reported as
/// such, not as a conflict).
///
/// ```
/// use sourcery_core::id::EventId;
/// use sourcery_core::store::{IdReuse, StoredId, replay_of};
///
/// let ids = [EventId::new(), EventId::new()];
/// assert_eq!(replay_of(&ids, &[StoredId::<u64>::Missing, StoredId::Missing]), Ok(None));
/// assert_eq!(replay_of(&ids, &[StoredId::InStream(4_u64), StoredId::InStream(5)]), Ok(Some(5)));
/// let partial = replay_of(&ids, &[StoredId::InStream(4_u64), StoredId::Missing]);
/// assert_eq!(partial.map_err(|refused| refused.reason), Err(IdReuse::Partial));
/// ```
///
/// # Errors
///
/// [`IdReused`] naming the first id that keeps the batch from being a
/// replay.
///
/// # Panics
///
/// Never for a well-formed call; `stored` must hold one entry per id (a
/// shorter `stored` counts the rest as missing).
pub fn replay_of<Pos: Copy + Ord>(
    ids: &[EventId],
    stored: &[StoredId<Pos>],
) -> Result<Option<Pos>, IdReused> {
    let at = |index: usize| stored.get(index).copied().unwrap_or(StoredId::Missing);
    let first_stored = (0..ids.len()).find(|&index| at(index) != StoredId::Missing);
    let Some(first_stored) = first_stored else {
        return Ok(None);
    };
    let mut last: Option<Pos> = None;
    for (index, &event_id) in ids.iter().enumerate() {
        match at(index) {
            StoredId::Missing => {
                let (event_id, index) = (ids[first_stored], first_stored);
                return Err(IdReused::new(event_id, index, IdReuse::Partial));
            }
            StoredId::Elsewhere => return Err(IdReused::new(event_id, index, IdReuse::OtherStream)),
            StoredId::InStream(position) => {
                if last.is_some_and(|last| position <= last) {
                    return Err(IdReused::new(event_id, index, IdReuse::Order));
                }
                last = Some(position);
            }
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_needs_every_id_in_this_stream_in_order() {
        let ids = [EventId::new(), EventId::new(), EventId::new()];
        let same = [
            StoredId::InStream(3_u64),
            StoredId::InStream(4),
            StoredId::InStream(9),
        ];
        assert_eq!(replay_of(&ids, &same), Ok(Some(9)));
        let swapped = [
            StoredId::InStream(4_u64),
            StoredId::InStream(3),
            StoredId::InStream(9),
        ];
        assert_eq!(
            replay_of(&ids, &swapped),
            Err(IdReused::new(ids[1], 1, IdReuse::Order))
        );
        let elsewhere = [
            StoredId::InStream(3_u64),
            StoredId::Elsewhere,
            StoredId::InStream(9),
        ];
        assert_eq!(
            replay_of(&ids, &elsewhere),
            Err(IdReused::new(ids[1], 1, IdReuse::OtherStream))
        );
        let partial = [StoredId::Missing, StoredId::Missing, StoredId::InStream(9_u64)];
        assert_eq!(
            replay_of(&ids, &partial),
            Err(IdReused::new(ids[2], 2, IdReuse::Partial))
        );
    }
}
