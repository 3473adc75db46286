//! Owns garbage collection for PostgreSQL: removes what no revision inside
//! the GC window can see (versions deleted at or before the oldest readable
//! revision, expired relationships written by then, older transaction log
//! rows, superseded schemas and counter lists). One node at a time works,
//! under a session advisory lock; rows go in bounded batches so no
//! transaction grows with the backlog.

use std::time::SystemTime;

use deadpool_postgres::Object;

use super::Inner;
use super::error::from_pg;
use super::sql::ALIVE;
use crate::datastore::DatastoreResult;

/// Arbitrary but fixed: the advisory lock key that elects the collector.
const GC_LOCK: i64 = 0x7472_656c_6c69_7302;

/// Rows removed per statement.
const BATCH: i64 = 10_000;

/// Reclaims what the window no longer needs; returns how many relationship
/// versions went. Another node collecting at the same time makes this a
/// no-op (0).
pub(super) async fn collect_garbage(inner: &Inner) -> DatastoreResult<usize> {
    let now = inner.clock.now();
    let (_, horizon) = inner.revision_range(now).await?;
    let client = inner.write_client().await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&GC_LOCK])
        .await
        .map_err(|e| from_pg("taking the GC lock", e))?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let result = collect(&client, horizon, now).await;
    // On a broken connection the lock went with it; otherwise release it.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&GC_LOCK])
        .await;
    result
}

async fn collect(client: &Object, horizon: i64, now: SystemTime) -> DatastoreResult<usize> {
    let dead = format!(
        "DELETE FROM relation_tuple WHERE ctid = ANY(ARRAY(\
           SELECT ctid FROM relation_tuple WHERE deleted_revision <= $1 \
           AND deleted_revision < {ALIVE} LIMIT {BATCH}))"
    );
    let mut reclaimed = delete_in_batches(client, &dead, &[&horizon]).await?;
    let expired = format!(
        "DELETE FROM relation_tuple WHERE ctid = ANY(ARRAY(\
           SELECT ctid FROM relation_tuple WHERE expiration <= $1 \
           AND deleted_revision = {ALIVE} AND created_revision <= $2 LIMIT {BATCH}))"
    );
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
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
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
