//! What is recorded beside each event.
//!
//! Stores are generic over their metadata type; any `Clone` type works once
//! it implements [`Metadata`] (one line: `impl Metadata for MyMetadata {}`).
//! [`EventMetadata`] is a ready choice: event id, correlation and causation
//! ids, the time it was recorded and an optional actor.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

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

/// Ready-made metadata: who and what caused an event, and when.
///
/// - `event_id`: unique per event (time-ordered UUID v7).
/// - `correlation_id`: shared by everything one request set off.
/// - `causation_id`: the event (or command) that directly caused this one.
/// - `recorded_at`: when the event was recorded.
/// - `actor`: who acted, if known.
///
/// ```
/// use sourcery_core::metadata::{EventMetadata, Metadata};
///
/// let request = EventMetadata::new().with_actor("ada");
/// let follow_up = EventMetadata::caused_by(&request);
/// assert_eq!(follow_up.correlation_id, request.correlation_id);
/// assert_eq!(follow_up.causation_id, Some(request.event_id));
/// assert_eq!(follow_up.actor.as_deref(), Some("ada"));
///
/// // Each event of a batch gets its own id and keeps the rest.
/// let second = request.next_in_batch();
/// assert_ne!(second.event_id, request.event_id);
/// assert_eq!(second.correlation_id, request.correlation_id);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventMetadata {
    /// This event's unique id.
    pub event_id: Uuid,
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
    /// Metadata for an event that starts a new chain: a fresh event id that
    /// is also the correlation id, no causation, recorded now.
    #[must_use]
    pub fn new() -> Self {
        let event_id = Uuid::now_v7();
        Self {
            event_id,
            correlation_id: event_id,
            causation_id: None,
            recorded_at: Utc::now(),
            actor: None,
        }
    }

    /// Metadata for an event caused by the event (or command) described by
    /// `cause`: same correlation and actor, causation set to `cause`'s id.
    #[must_use]
    pub fn caused_by(cause: &Self) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.event_id),
            recorded_at: Utc::now(),
            actor: cause.actor.clone(),
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

impl Metadata for EventMetadata {
    /// A fresh event id and time; correlation, causation and actor stay.
    fn next_in_batch(&self) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            recorded_at: Utc::now(),
            ..self.clone()
        }
    }
}
