//! Owns how PostgreSQL and CockroachDB failures become `DatastoreError`s,
//! and which of them a transaction may retry. Connection trouble is
//! `Unavailable` (the API answers UNAVAILABLE and the client retries); a
//! missing table means the database was never migrated. CockroachDB's
//! retryable errors are 40001 ("restart transaction: …"); its ambiguous
//! result (40003) may have committed, so it is never retried.

use std::time::Duration;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::datastore::DatastoreError;

/// Attempts of a PostgreSQL write transaction that lost a serialization
/// race (CockroachDB's come from `--datastore-max-tx-retries`).
pub const MAX_ATTEMPTS: u32 = 10;

/// A database error, classified.
pub fn from_pg(context: &str, e: tokio_postgres::Error) -> DatastoreError {
    if let Some(code) = e.code() {
        let message = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string());
        if let Some(error) = cockroach_error(code, &message, context) {
            return error;
        }
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

/// CockroachDB's own failures: a retry error that reports no 40001, an
/// ambiguous commit, a read below the replica GC threshold (older than
/// `gc.ttlseconds`). `None` for everything PostgreSQL also reports.
fn cockroach_error(code: &SqlState, message: &str, context: &str) -> Option<DatastoreError> {
    if *code == SqlState::T_R_STATEMENT_COMPLETION_UNKNOWN {
        return Some(DatastoreError::Unavailable(format!(
            "{context}: the result is ambiguous (the write may have committed): {message}"
        )));
    }
    if message.contains("restart transaction") {
        return Some(DatastoreError::SerializationFailure(format!(
            "{context}: {message}"
        )));
    }
    if message.contains("GC threshold") {
        return Some(DatastoreError::RevisionOutOfRange(format!(
            "{context}: the revision is older than the database keeps history \
             (raise gc.ttlseconds to at least --datastore-gc-window): {message}"
        )));
    }
    None
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
