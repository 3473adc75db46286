//! Owns CockroachDB's revision policy: head is the gateway's HLC
//! (`cluster_logical_timestamp()` outside a transaction: a read at it sees
//! every write acknowledged before), the GC window and the optimized
//! revision are measured on that server clock, never on this process's,
//! and the last HLC read is remembered with a monotonic `Instant` so most
//! calls estimate the server time without a round trip. The arithmetic
//! lives in `dialect`; this module adds the I/O. PostgreSQL's policy (a
//! commit sequence) stays in `mod.rs`.

use std::time::Instant;

use super::dialect::{self, CLUSTER_TIMESTAMP};
use super::reader::read_retrying;
use super::sql::Rev;
use super::{Inner, lock};
use crate::datastore::{DatastoreError, DatastoreResult};
use crate::model::Revision;

/// The gateway's HLC now, one round trip; remembered for estimates.
pub(super) async fn server_now(inner: &Inner) -> DatastoreResult<Rev> {
    let row = read_retrying(
        inner,
        "reading the cluster timestamp",
        |client| async move {
            let statement = client.prepare_cached(CLUSTER_TIMESTAMP).await?;
            client.query_one(&statement, &[]).await
        },
    )
    .await?;
    let text: String = row
        .try_get(0)
        .map_err(|e| DatastoreError::Internal(format!("reading the cluster timestamp: {e}")))?;
    let now = dialect::parse_hlc(&text).map_err(DatastoreError::Internal)?;
    inner.saw_head(now);
    let mut clock = lock(&inner.server_clock);
    if clock.is_none_or(|(seen, _)| seen <= now) {
        *clock = Some((now, Instant::now()));
    }
    Ok(now)
}

/// The server time estimated from the last HLC read plus the time elapsed
/// here since (both clocks run at the same rate to well under the margins
/// this is used with: the follower-read delay and the GC window); a round
/// trip when nothing was read yet.
async fn server_now_estimate(inner: &Inner) -> DatastoreResult<Rev> {
    let seen = *lock(&inner.server_clock);
    match seen {
        Some((hlc, at)) => {
            Ok(dialect::at_wall_time(dialect::wall_time(hlc) + at.elapsed()).max(hlc))
        }
        None => server_now(inner).await,
    }
}

/// The shared, quantized revision behind the follower-read delay.
pub(super) async fn optimized(inner: &Inner) -> DatastoreResult<Rev> {
    let now = server_now_estimate(inner).await?;
    Ok(dialect::optimized_hlc(
        now,
        inner.cockroach.follower_read_delay,
        &inner.config,
    ))
}

/// Ok when `revision` is not newer than the server's clock and not older
/// than the GC window on it.
pub(super) async fn check(inner: &Inner, revision: Revision) -> DatastoreResult<()> {
    let wanted = Rev(revision.0);
    let known = inner.known_head();
    let now = if wanted <= known {
        server_now_estimate(inner).await?.max(known)
    } else {
        server_now(inner).await?
    };
    if wanted > now {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {revision} is newer than the head revision {}",
            now.0
        )));
    }
    if wanted < dialect::oldest_readable_hlc(now, inner.config.gc_window) {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {revision} is older than the garbage collection window"
        )));
    }
    Ok(())
}
