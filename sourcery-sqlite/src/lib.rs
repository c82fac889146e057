//! The sqlite event store for Sourcery (in progress).
