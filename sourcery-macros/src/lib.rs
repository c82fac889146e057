//! Derive macros for Sourcery (in progress).
