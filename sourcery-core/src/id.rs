//! Event ids and command ids: what makes a retry safe.
//!
//! Every event carries an [`EventId`] chosen by the client before the append
//! (a time-ordered UUID v7 unless the caller picks one). Stores keep ids
//! unique and apply one rule (invariant 7 of the [store
//! contract](crate::store)): a batch whose ids are all stored already, in
//! the same stream and order, is a replay. It writes nothing and returns the
//! first append's outcome, whatever the expected version says now. So a
//! caller that lost the acknowledgement of a commit (the connection dropped
//! during `COMMIT`) retries with the same ids and learns what happened,
//! without duplicating the events or conflicting with its own write.
//!
//! A [`CommandId`] is an idempotency key for a command: the repository
//! derives the ids of the events the command produces from it
//! ([`EventId::derived`]), so the same command id executed twice applies once.
//!
//! ```
//! use sourcery_core::id::{CommandId, EventId};
//!
//! let command = CommandId::from_key("invoice-42/pay");
//! assert_eq!(command, CommandId::from_key("invoice-42/pay"));
//! assert_eq!(EventId::derived(command, 0), EventId::derived(command, 0));
//! assert_ne!(EventId::derived(command, 0), EventId::derived(command, 1));
//! assert_ne!(EventId::new(), EventId::new());
//! ```

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The unique id of an event, chosen by the client before the append.
///
/// [`EventId::new`] gives a time-ordered UUID v7 (what
/// [`Transaction::append`](crate::store::Transaction::append) and
/// [`PersistableEvent::new`](crate::store::PersistableEvent::new) use);
/// [`EventId::derived`] a deterministic one from a command id and the
/// event's index among the command's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh id: a UUID v7 (time-ordered: the Unix time in milliseconds,
    /// then 74 random bits).
    #[must_use]
    pub fn new() -> Self {
        Self(fresh_v7())
    }

    /// The id of event `index` (from 0) of the command `command`: a name-based
    /// UUID (v5) of the command id and the index, the same in every process
    /// and release.
    #[must_use]
    pub fn derived(command: CommandId, index: u32) -> Self {
        Self(Uuid::new_v5(&command.0, &index.to_be_bytes()))
    }

    /// The id as a UUID.
    #[must_use]
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 bytes of the UUID, as stores without a UUID type keep them.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id from 16 bytes written by [`as_bytes`](Self::as_bytes).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for EventId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl From<EventId> for Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for EventId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

/// An idempotency key for a command: executing the same command id twice,
/// from two processes or after a crash, applies the command once (see
/// [`Repository::execute_with`](crate::repository::Repository::execute_with)).
///
/// Take it from the request (an `Idempotency-Key` header, a message id) with
/// [`from_key`](Self::from_key), or from a UUID the caller already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(Uuid);

/// The namespace of [`CommandId::from_key`]'s name-based UUIDs.
const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_e7a1_3c2d_4b8e_9a61_0d2e_7b4c_1a93);

impl CommandId {
    /// A fresh command id (a UUID v7), for a caller that keeps it to retry.
    #[must_use]
    pub fn new() -> Self {
        Self(fresh_v7())
    }

    /// The command id of an idempotency key: a name-based UUID (v5) of the
    /// key's bytes, the same in every process and release.
    #[must_use]
    pub fn from_key(key: impl AsRef<[u8]>) -> Self {
        Self(Uuid::new_v5(&KEY_NAMESPACE, key.as_ref()))
    }

    /// The command id of a UUID the caller already has (a message id).
    #[must_use]
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    #[must_use]
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The id of the command's event `index` ([`EventId::derived`]).
    #[must_use]
    pub fn event_id(self, index: u32) -> EventId {
        EventId::derived(self, index)
    }
}

impl Default for CommandId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for CommandId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The 74 bits of a v7 UUID after its timestamp (`rand_a` and `rand_b`).
const TAIL_BITS: u32 = 74;
const TAIL_MASK: u128 = (1 << TAIL_BITS) - 1;

/// One thread's generator of v7 ids: the millisecond of its last id, that
/// id's 74-bit tail, and the state of its random bits.
#[derive(Debug, Clone, Copy)]
struct Generator {
    millis: u64,
    tail: u128,
    random: u64,
}

thread_local! {
    /// Seeded from `std`'s randomly keyed hasher (keys drawn from the
    /// operating system, different for every thread).
    static GENERATOR: Cell<Generator> = Cell::new(Generator {
        millis: 0,
        tail: 0,
        random: seed(),
    });
}

fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0x9e37_79b9_7f4a_7c15);
    hasher.finish()
}

impl Generator {
    /// The next 64 random bits (`SplitMix64`).
    fn next_random(&mut self) -> u64 {
        self.random = self.random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random tail with its top bit clear, so a millisecond's ids have
    /// room to count up from it.
    fn random_tail(&mut self) -> u128 {
        let tail = (u128::from(self.next_random()) << 64) | u128::from(self.next_random());
        tail & (TAIL_MASK >> 1)
    }

    /// The next id at `now` (milliseconds since the Unix epoch).
    ///
    /// The first id of a millisecond has a random tail; the next ones of
    /// the same thread count up from it by a random step of up to 2^32
    /// (RFC 9562, section 6.2, method 2), so one thread's ids ascend — a
    /// batch's ids land in order at the right edge of a store's index —
    /// while ids of different threads and processes stay apart by their
    /// random tails. A clock that goes back, or a millisecond whose tail
    /// space runs out, borrows the next millisecond: ids never repeat and
    /// never descend.
    fn next(&mut self, now: u64) -> Uuid {
        if now > self.millis {
            self.millis = now;
            self.tail = self.random_tail();
        } else {
            let step = 1 + u128::from(self.next_random() >> 32);
            self.tail += step;
            if self.tail > TAIL_MASK {
                self.millis += 1;
                self.tail = self.random_tail();
            }
        }
        let rand_a = (self.tail >> 62) & 0xfff;
        let rand_b = self.tail & ((1 << 62) - 1);
        let bits = (u128::from(self.millis & 0xffff_ffff_ffff) << 80)
            | (0x7 << 76)
            | (rand_a << 64)
            | (0b10 << 62)
            | rand_b;
        Uuid::from_u128(bits)
    }
}

/// A UUID v7: the current time in milliseconds, then 74 bits that are
/// random for a millisecond's first id and count up for the next ones of
/// the same thread (see `Generator::next`).
///
/// `Uuid::now_v7` asks the operating system for randomness on every call
/// (about 0.5 µs here, a system call each); an append of ten events would
/// spend more on its ids than the in-memory store spends on the append.
/// A generator per thread, seeded once from the operating system, gives
/// the same uniqueness in nanoseconds. Ids need to be unique, not
/// unguessable.
pub(crate) fn fresh_v7() -> Uuid {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
    GENERATOR.with(|cell| {
        let mut generator = cell.get();
        let id = generator.next(now);
        cell.set(generator);
        id
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_across_releases() {
        // Changing the derivation would make a retry after an upgrade write
        // its command twice: these values must never change. They are RFC
        // 9562 name-based UUIDs (SHA-1), computed apart from this crate
        // (Python's hashlib over the namespace's bytes and the name).
        let command = CommandId::from_key("order-7/place");
        assert_eq!(command.to_string(), "cb8eea03-1942-5d18-a3fe-31afdc0a86f2");
        assert_eq!(
            EventId::derived(command, 0).to_string(),
            "ae28531b-280a-5b8c-8270-6b4d85277dfb"
        );
        assert_eq!(
            EventId::derived(command, 1).to_string(),
            "ac55f53d-34c7-55e9-a4ad-c0a012ba407c"
        );
    }

    #[test]
    fn one_threads_fresh_ids_are_v7_and_strictly_ascend() {
        let ids: Vec<EventId> = (0..10_000).map(|_| EventId::new()).collect();
        assert!(ids.iter().all(|id| id.as_uuid().get_version_num() == 7));
        assert!(
            ids.iter()
                .all(|id| id.as_uuid().get_variant() == uuid::Variant::RFC4122)
        );
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "ascending, hence distinct"
        );
        let now = u128::from(
            u64::try_from(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("after 1970")
                    .as_millis(),
            )
            .expect("fits"),
        );
        let millis = ids[0].as_uuid().as_u128() >> 80;
        assert!(
            millis <= now && now - millis < 60_000,
            "{millis} is the time, {now} now"
        );
        let other_thread = std::thread::spawn(EventId::new).join().expect("the thread runs");
        assert!(!ids.contains(&other_thread));
    }

    #[test]
    fn a_clock_going_back_or_a_full_millisecond_never_repeats_an_id() {
        let mut generator = Generator {
            millis: 0,
            tail: 0,
            random: 7,
        };
        let first = generator.next(1_000);
        let back = generator.next(900);
        assert!(back > first, "a clock that went back still ascends");
        generator.tail = TAIL_MASK - 1;
        let full = generator.next(1_000);
        assert!(full > back);
        assert_eq!(full.as_u128() >> 80, 1_001, "a full millisecond borrows the next");
        let fresh = generator.next(5_000);
        assert_eq!(fresh.as_u128() >> 80, 5_000);
        assert_eq!(fresh.get_version_num(), 7);
    }

    #[test]
    fn ids_round_trip_through_text_and_bytes() {
        let id = EventId::new();
        assert_eq!(id.to_string().parse::<EventId>().ok(), Some(id));
        assert_eq!(EventId::from_bytes(*id.as_bytes()), id);
        assert_eq!(Uuid::from(id), *id.as_uuid());
    }
}
