//! Owns garbage collection for the SQL datastore: removes what no revision
//! inside the GC window can see (versions deleted at or before the oldest
//! readable revision, expired relationships written by then, older
//! transaction log rows, superseded schemas and counter lists). One node at
//! a time works: under a session advisory lock on PostgreSQL, under a lease
//! row on CockroachDB (which has no advisory locks). Rows go in bounded
//! batches so no transaction grows with the backlog.
//!
//! On CockroachDB the horizon is the server's clock less the window, and
//! CockroachDB's own MVCC garbage (`gc.ttlseconds`) is its business: it must
//! be at least the GC window, or old `AS OF SYSTEM TIME` reads fail.

use std::time::SystemTime;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use super::error::from_pg;
use super::sql::Rev;
use super::{Dialect, Inner, dialect, revisions};
use crate::datastore::DatastoreResult;

/// Arbitrary but fixed: the advisory lock key that elects the collector.
const GC_LOCK: i64 = 0x7472_656c_6c69_7302;

/// Rows removed per statement.
const BATCH: i64 = 10_000;

/// How long a CockroachDB GC lease lasts if its holder dies mid-run
/// (five times SpiceDB's one-minute bound on a GC run).
const LEASE_SECONDS: i64 = 300;

/// Reclaims what the window no longer needs; returns how many relationship
/// versions went. Another node collecting at the same time makes this a
/// no-op (0).
pub(super) async fn collect_garbage(inner: &Inner) -> DatastoreResult<usize> {
    let now = inner.clock.now();
    match inner.dialect {
        Dialect::Postgres => {
            let (_, horizon) = inner.revision_range(now).await?;
            collect_under_advisory_lock(inner, horizon, now).await
        }
        Dialect::Cockroach => {
            let server_now = revisions::server_now(inner).await?;
            let horizon = dialect::oldest_readable_hlc(server_now, inner.config.gc_window);
            collect_under_lease(inner, horizon, now).await
        }
    }
}

async fn collect_under_advisory_lock(
    inner: &Inner,
    horizon: Rev,
    now: SystemTime,
) -> DatastoreResult<usize> {
    let client = inner.write_client().await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&GC_LOCK])
        .await
        .map_err(|e| from_pg("taking the GC lock", e))?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let result = collect(&client, inner.dialect, horizon, now).await;
    // On a broken connection the lock went with it; otherwise release it.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&GC_LOCK])
        .await;
    result
}

async fn collect_under_lease(
    inner: &Inner,
    horizon: Rev,
    now: SystemTime,
) -> DatastoreResult<usize> {
    let client = inner.write_client().await?;
    let held = client
        .query_opt(dialect::TAKE_GC_LEASE, &[&inner.gc_holder, &LEASE_SECONDS])
        .await
        .map_err(|e| from_pg("taking the GC lease", e))?
        .is_some();
    if !held {
        return Ok(0);
    }
    let result = collect(&client, inner.dialect, horizon, now).await;
    // Recorded only after a complete run: the feed below it is gone.
    let recorded = if result.is_ok() { horizon } else { Rev(0) };
    client
        .execute(dialect::RELEASE_GC_LEASE, &[&inner.gc_holder, &recorded])
        .await
        .map_err(|e| from_pg("releasing the GC lease", e))?;
    result
}

async fn collect(
    client: &Object,
    dialect: Dialect,
    horizon: Rev,
    now: SystemTime,
) -> DatastoreResult<usize> {
    let [dead, expired] = dialect.gc_deletes(BATCH);
    let mut reclaimed = delete_in_batches(client, &dead, &[&horizon]).await?;
    reclaimed += delete_in_batches(client, &expired, &[&now, &horizon]).await?;
    for statement in [
        "DELETE FROM transactions WHERE revision < $1",
        "DELETE FROM schema_history WHERE revision < \
           (SELECT max(revision) FROM schema_history WHERE revision <= $1)",
        "DELETE FROM counter_history WHERE revision < \
           (SELECT max(revision) FROM counter_history WHERE revision <= $1)",
    ] {
        client
            .execute(statement, &[&horizon])
            .await
            .map_err(|e| from_pg("collecting history", e))?;
    }
    Ok(reclaimed)
}

/// Runs a batched DELETE until it removes nothing; returns the total.
async fn delete_in_batches(
    client: &Object,
    statement: &str,
    params: &[&(dyn ToSql + Sync)],
) -> DatastoreResult<usize> {
    let mut total = 0usize;
    loop {
        let removed = client
            .execute(statement, params)
            .await
            .map_err(|e| from_pg("collecting relationships", e))?;
        total += usize::try_from(removed).unwrap_or(usize::MAX);
        if removed < BATCH as u64 {
            return Ok(total);
        }
    }
}
