//! The PostgreSQL schema a store lives in: its name, quoted for SQL, and the
//! advisory lock keys derived from it.

use crate::Error;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1` bytes).
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A validated schema name and everything derived from it.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    name: String,
    quoted: String,
}

impl Schema {
    /// Checks `name` and quotes it as an SQL identifier.
    ///
    /// Names are restricted to ASCII letters, digits and `_` (not first), so
    /// that the name is safe in every place migrations put it: identifiers,
    /// `regclass` literals and function bodies. It is quoted, so case is kept.
    pub(crate) fn new(name: String) -> Result<Self, Error> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_IDENTIFIER_BYTES {
            Some("PostgreSQL identifiers are at most 63 bytes")
        } else if name.starts_with(|c: char| c.is_ascii_digit()) {
            Some("it starts with a digit")
        } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Some("only ASCII letters, digits and `_` are allowed")
        } else if name.starts_with("pg_") {
            // `CREATE SCHEMA` refuses it: the prefix is the system's.
            Some("PostgreSQL reserves the prefix `pg_` for system schemas")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidSchemaName { name, reason });
        }
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        Ok(Self { name, quoted })
    }

    /// The `public` schema.
    pub(crate) fn public() -> Self {
        Self {
            name: "public".to_owned(),
            quoted: "\"public\"".to_owned(),
        }
    }

    /// The name as given.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The name as an SQL identifier, quoted.
    pub(crate) fn quoted(&self) -> &str {
        &self.quoted
    }

    /// The session advisory lock that makes drawing a transaction id and
    /// positions one critical section. Non-negative, so that `pg_locks` shows
    /// it as two plain 32-bit halves.
    pub(crate) fn order_lock(&self) -> i64 {
        i64::try_from(fnv1a(&["sourcery-postgres/global-order", &self.name]) >> 1).unwrap_or(0)
    }

    /// The high half of the shared transaction advisory lock every append
    /// takes before it draws positions, and holds until its transaction
    /// ends: the key is `(class << 32) | the low 32 bits of its transaction
    /// id`. `pg_locks` shows it as `classid` = this class, `objid` = the
    /// transaction id, `objsubid` = 1, so the frontier can tell this
    /// schema's appends from every other running transaction. Below 2³¹, so
    /// the key is a non-negative `bigint`.
    pub(crate) fn appender_lock_class(&self) -> i64 {
        i64::try_from(fnv1a(&["sourcery-postgres/appenders", &self.name]) >> 33).unwrap_or(0)
    }

    /// The seed of the per-stream transaction advisory locks.
    pub(crate) fn stream_lock_seed(&self) -> i64 {
        i64::from_ne_bytes(fnv1a(&["sourcery-postgres/stream", &self.name]).to_ne_bytes())
    }

    /// The session advisory lock every `LISTEN` connection of a store holds
    /// (shared), so that writers can tell whether anyone listens before they
    /// send a `NOTIFY`.
    pub(crate) fn listener_lock(&self) -> i64 {
        i64::from_ne_bytes(fnv1a(&["sourcery-postgres/listeners", &self.name]).to_ne_bytes())
    }

    /// The transaction advisory lock `migrate` holds.
    pub(crate) fn migration_lock(&self) -> i64 {
        i64::from_ne_bytes(fnv1a(&["sourcery-postgres/migrate", &self.name]).to_ne_bytes())
    }

    /// A table or function of the store, schema-qualified.
    pub(crate) fn qualify(&self, object: &str) -> String {
        format!("{}.{object}", self.quoted)
    }
}

/// 64-bit FNV-1a over the parts, each followed by a 0 byte: stable across
/// processes, platforms and releases (advisory lock keys and migration
/// checksums must be).
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for &byte in part.as_bytes().iter().chain(&[0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_identifiers() {
        let schema = Schema::new("Tenant_1".to_owned()).unwrap();
        assert_eq!(schema.quoted(), "\"Tenant_1\"");
        assert_eq!(schema.qualify("sourcery_events"), "\"Tenant_1\".sourcery_events");
    }

    #[test]
    fn bad_names_are_refused() {
        for name in [
            "",
            "a\0b",
            "it's",
            "a\"b",
            "1abc",
            "a-b",
            "ünï",
            &"x".repeat(64),
            "pg_x",
            "pg_catalog",
            "pg_",
        ] {
            assert!(matches!(
                Schema::new(name.to_owned()),
                Err(Error::InvalidSchemaName { .. })
            ));
        }
        assert!(Schema::new("x".repeat(63)).is_ok());
        // The reserved prefix is lowercase `pg_` only: names are quoted, so
        // these are other names, which PostgreSQL accepts.
        for name in ["PG_x", "Pg_x", "pgx", "x_pg_"] {
            assert!(Schema::new(name.to_owned()).is_ok(), "{name}");
        }
    }

    #[test]
    fn lock_keys_are_stable_and_distinct_per_schema() {
        let a = Schema::new("a".to_owned()).unwrap();
        let b = Schema::new("b".to_owned()).unwrap();
        assert!(a.order_lock() >= 0);
        assert_ne!(a.order_lock(), b.order_lock());
        assert_ne!(a.stream_lock_seed(), b.stream_lock_seed());
        assert!((0..1 << 31).contains(&a.appender_lock_class()));
        assert_ne!(a.appender_lock_class(), b.appender_lock_class());
        // FNV-1a is fixed: these values must never change between releases.
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&["a"]), fnv1a(&["a"]));
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
    }
}
