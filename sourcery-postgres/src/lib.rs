//! The postgres event store for Sourcery (in progress).
