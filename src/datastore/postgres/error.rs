//! Owns how PostgreSQL failures become `DatastoreError`s, and which of them
//! a transaction may retry. Connection trouble is `Unavailable` (the API
//! answers UNAVAILABLE and the client retries); a missing table means the
//! database was never migrated.

use std::time::Duration;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::datastore::DatastoreError;

/// Attempts of a write transaction that lost a serialization race.
pub const MAX_ATTEMPTS: u32 = 10;

/// A database error, classified.
pub fn from_pg(context: &str, e: tokio_postgres::Error) -> DatastoreError {
    if let Some(code) = e.code() {
        return match *code {
            SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED => {
                DatastoreError::SerializationFailure(format!("{context}: {e}"))
            }
            SqlState::UNDEFINED_TABLE => DatastoreError::NotMigrated(format!(
                "{context}: the database has not been migrated; run `trellis datastore migrate head`"
            )),
            SqlState::ADMIN_SHUTDOWN
            | SqlState::CRASH_SHUTDOWN
            | SqlState::CANNOT_CONNECT_NOW
            | SqlState::TOO_MANY_CONNECTIONS
            | SqlState::QUERY_CANCELED => DatastoreError::Unavailable(format!(
                "{context}: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string())
            )),
            _ => DatastoreError::Internal(format!("{context}: {e}")),
        };
    }
    // No SQLSTATE: the connection broke, timed out or never opened.
    DatastoreError::Unavailable(format!("{context}: {e}"))
}

/// A pool failure: no connection could be had in time.
pub fn from_pool(e: PoolError) -> DatastoreError {
    match e {
        PoolError::Backend(e) => from_pg("connecting to PostgreSQL", e),
        other => DatastoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
    }
}

/// Whether a failed attempt changed nothing and may run again.
pub fn is_retryable(e: &DatastoreError) -> bool {
    matches!(e, DatastoreError::SerializationFailure(_))
}

/// Whether a read failed because its connection broke, so that the same
/// read on a fresh connection may succeed (reads are idempotent).
pub fn is_broken_connection(e: &DatastoreError) -> bool {
    matches!(e, DatastoreError::Unavailable(_))
}

/// Backoff before retry `attempt` (1-based): exponential from 2 ms, capped
/// at 200 ms, with full jitter so that racing writers spread out.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (2u64 << attempt.min(7)).min(200);
    let jitter = crate::datastore::random_u64() % cap_ms.max(1);
    Duration::from_millis(jitter + 1)
}
