//! [`Timestamp`]: a `DateTime<Utc>` as PostgreSQL's `timestamptz`.
//!
//! Encoded here rather than by sqlx's `chrono` feature, which turns on
//! chrono's `clock` (and the local time zone crates) for the whole graph.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::types::Oid;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Encode, Postgres};

/// `timestamptz`'s type oid.
const TIMESTAMPTZ: Oid = Oid(1184);

/// `timestamptz[]`'s type oid.
const TIMESTAMPTZ_ARRAY: Oid = Oid(1185);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC), which
/// its binary format counts from.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A time as `timestamptz` holds it: microseconds, so a time in whole
/// microseconds (or milliseconds) comes back exactly; nanoseconds are
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp(pub(crate) DateTime<Utc>);

impl sqlx::Type<Postgres> for Timestamp {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ)
    }
}

impl PgHasArrayType for Timestamp {
    fn array_type_info() -> PgTypeInfo {
        PgTypeInfo::with_oid(TIMESTAMPTZ_ARRAY)
    }
}

impl Encode<'_, Postgres> for Timestamp {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        // `timestamp_micros` drops the nanoseconds (towards the past).
        let micros = self
            .0
            .timestamp_micros()
            .checked_sub(POSTGRES_EPOCH_MICROS)
            .ok_or_else(|| format!("{} is out of range for timestamptz", self.0))?;
        buf.extend_from_slice(&micros.to_be_bytes());
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        size_of::<i64>()
    }
}

impl<'r> Decode<'r, Postgres> for Timestamp {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.format() != PgValueFormat::Binary {
            return Err("a timestamptz in text format (the store reads the binary one)".into());
        }
        let bytes: [u8; 8] = value
            .as_bytes()?
            .try_into()
            .map_err(|_| "a timestamptz of other than 8 bytes")?;
        let micros = i64::from_be_bytes(bytes);
        // `infinity` and `-infinity` are i64::MAX and i64::MIN: out of range.
        micros
            .checked_add(POSTGRES_EPOCH_MICROS)
            .and_then(DateTime::from_timestamp_micros)
            .map(Self)
            .ok_or_else(|| {
                format!("the timestamptz {micros} (microseconds from 2000) is out of range").into()
            })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn microseconds_count_from_postgres_epoch() {
        let epoch = DateTime::from_timestamp(946_684_800, 0).unwrap();
        assert_eq!(epoch.timestamp_micros(), POSTGRES_EPOCH_MICROS);
        let later = epoch + TimeDelta::microseconds(1_234_567) + TimeDelta::nanoseconds(999);
        assert_eq!(later.timestamp_micros() - POSTGRES_EPOCH_MICROS, 1_234_567);
    }
}
