//! What is recorded beside each event.
//!
//! Stores are generic over their metadata type; any `Clone` type works once
//! it implements [`Metadata`] (one line: `impl Metadata for MyMetadata {}`).
//! [`EventMetadata`] is a ready choice: correlation and causation ids, the
//! time it was recorded and an optional actor.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::id::{CommandId, EventId};

/// Metadata a repository records with the events of a command.
///
/// A command may produce several events; the repository records `metadata`
/// with the first and [`next_in_batch`](Self::next_in_batch) of the previous
/// one with each following event.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be recorded as event metadata by the repository",
    note = "add `impl sourcery::metadata::Metadata for {Self} {{}}` (it must be `Clone`)"
)]
pub trait Metadata: Clone + Send + Sync + 'static {
    /// The metadata of the next event of the same batch. Clones by default.
    #[must_use]
    fn next_in_batch(&self) -> Self {
        self.clone()
    }
}

impl Metadata for () {}
impl Metadata for String {}
impl Metadata for serde_json::Value {}

/// Metadata that can record what caused an event: what a reactor gives the
/// events of the commands it runs because of an event (see
/// [`reactor`](crate::reactor)).
pub trait CausedBy: Metadata {
    /// The metadata of an event caused by the stored event `cause` whose
    /// metadata is `metadata`.
    #[must_use]
    fn caused_by(cause: EventId, metadata: &Self) -> Self;
}

/// No metadata: nothing to record.
impl CausedBy for () {
    fn caused_by(_: EventId, (): &Self) -> Self {}
}

/// JSON metadata: the cause's object (its correlation id and the rest),
/// with `causation_id` set to the cause's id; other values are replaced by
/// such an object.
impl CausedBy for serde_json::Value {
    fn caused_by(cause: EventId, metadata: &Self) -> Self {
        let mut object = match metadata {
            serde_json::Value::Object(object) => object.clone(),
            _ => serde_json::Map::new(),
        };
        object.insert(
            "causation_id".to_owned(),
            serde_json::Value::String(cause.to_string()),
        );
        serde_json::Value::Object(object)
    }
}

/// Same correlation id and actor as the cause, causation set to the
/// cause's id, recorded now ([`EventMetadata::caused_by`]).
impl CausedBy for EventMetadata {
    fn caused_by(cause: EventId, metadata: &Self) -> Self {
        EventMetadata::caused_by(cause, metadata)
    }
}

/// Ready-made metadata: who and what caused an event, and when.
///
/// - `correlation_id`: shared by everything one request set off.
/// - `causation_id`: the event (or command) that directly caused this one.
/// - `recorded_at`: when the event was recorded.
/// - `actor`: who acted, if known.
///
/// The event's own id is not metadata: it is part of every event's envelope
/// ([`StoredEvent::id`](crate::store::StoredEvent::id)), for every metadata
/// type. Metadata stored by earlier releases with an `event_id` field still
/// loads (the field is ignored; the stores moved it into the envelope).
///
/// ```
/// use sourcery_core::id::EventId;
/// use sourcery_core::metadata::{EventMetadata, Metadata};
///
/// let request = EventMetadata::new().with_actor("ada");
/// // An event caused by the stored event `cause` (its id and metadata):
/// let cause = EventId::new();
/// let follow_up = EventMetadata::caused_by(cause, &request);
/// assert_eq!(follow_up.correlation_id, request.correlation_id);
/// assert_eq!(follow_up.causation_id, Some(*cause.as_uuid()));
/// assert_eq!(follow_up.actor.as_deref(), Some("ada"));
///
/// // The events of one batch share their metadata.
/// assert_eq!(request.next_in_batch(), request);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The id shared by everything one request set off.
    pub correlation_id: Uuid,
    /// The id of the event or command that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// When the event was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Who acted, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl EventMetadata {
    /// Metadata for an event that starts a new chain: a fresh correlation id
    /// (a UUID v7), no causation, recorded now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            correlation_id: crate::id::fresh_v7(),
            causation_id: None,
            recorded_at: Utc::now(),
            actor: None,
        }
    }

    /// Metadata for an event caused by the event `cause` whose metadata is
    /// `metadata`: same correlation and actor, causation set to `cause`,
    /// recorded now.
    #[must_use]
    pub fn caused_by(cause: EventId, metadata: &Self) -> Self {
        Self {
            correlation_id: metadata.correlation_id,
            causation_id: Some(*cause.as_uuid()),
            recorded_at: Utc::now(),
            actor: metadata.actor.clone(),
        }
    }

    /// Metadata for an event caused by the command `command`: a fresh
    /// correlation id unless one is set later, causation set to the command
    /// id, recorded now.
    #[must_use]
    pub fn for_command(command: CommandId) -> Self {
        Self {
            causation_id: Some(*command.as_uuid()),
            ..Self::new()
        }
    }

    /// Sets the correlation id, e.g. from an incoming request's id.
    #[must_use]
    pub fn correlated_with(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// Sets the actor.
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
}

impl Default for EventMetadata {
    fn default() -> Self {
        Self::new()
    }
}

/// The events of one batch share their metadata (they were recorded
/// together); each has its own id in its envelope.
impl Metadata for EventMetadata {}
