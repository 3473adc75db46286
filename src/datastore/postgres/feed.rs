//! Owns the SQL datastore's change feed: the committed revisions after a
//! given one, each with its relationship changes in the order the write
//! made them.
//!
//! PostgreSQL: revisions are gap-free and commit in order, so reading the
//! consecutive revisions after the last one seen can miss no transaction.
//!
//! CockroachDB: revisions are commit timestamps, neither gap-free nor
//! committed in order, so the feed is read `AS OF SYSTEM TIME` a bound
//! (the server's clock less the follower-read delay) and lists only
//! revisions at or below it. A read at a timestamp makes that span final
//! there (a commit below it in the span read is impossible afterwards, the
//! serializable order forbids it), so a revision the feed has passed can
//! never appear later; and a bound that far behind is closed, so the read
//! conflicts with no writer and any replica may serve it. A Watch thus
//! lags by the delay, as SpiceDB's, which emits at resolved timestamps.

use std::collections::BTreeMap;

use deadpool_postgres::Object;
use tokio_postgres::Row;

use super::dialect::{self, CLUSTER_TIMESTAMP};
use super::reader::read_retrying;
use super::sql::{self, RELATIONSHIP_COLUMNS, Rev};
use super::{Dialect, Inner, from_db};
use crate::datastore::{
    Change, DatastoreError, DatastoreResult, RevisionChanges, TransactionMetadata,
};
use crate::model::Revision;

/// Committed changes strictly after `after`, oldest first, at most `limit`
/// revisions.
pub(super) async fn changes_since(
    inner: &Inner,
    after: Revision,
    limit: usize,
) -> DatastoreResult<Vec<RevisionChanges>> {
    let Some(after) = inner.to_db(after) else {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {after} is newer than the head revision"
        )));
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match inner.dialect {
        Dialect::Postgres => sequence_changes(inner, after, limit).await,
        Dialect::Cockroach => bounded_changes(inner, after, limit).await,
    }
}

/// PostgreSQL's feed: the consecutive revisions after `after`.
async fn sequence_changes(
    inner: &Inner,
    after: Rev,
    limit: i64,
) -> DatastoreResult<Vec<RevisionChanges>> {
    let transactions = read_retrying(inner, "reading the change feed", |client| async move {
        let statement = client
            .prepare_cached(
                "SELECT (SELECT min(revision) FROM transactions), \
                        (SELECT revision FROM revision_counter), \
                        revision, metadata, schema_changed \
                 FROM (SELECT 1) AS one LEFT JOIN LATERAL (\
                   SELECT revision, metadata, schema_changed FROM transactions \
                   WHERE revision > $1 ORDER BY revision LIMIT $2) AS t ON TRUE",
            )
            .await?;
        client.query(&statement, &[&after, &limit]).await
    })
    .await?;
    let Some(first) = transactions.first() else {
        return Ok(Vec::new());
    };
    let (oldest, head): (Option<Rev>, Rev) = (first.get(0), first.get(1));
    if after < oldest.unwrap_or_default() {
        return Err(older_than_history(after));
    }
    if after > head {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {} is newer than the head revision {}",
            after.0, head.0
        )));
    }
    let mut feed = revisions(&transactions, 2);
    if let (Some(&low), Some(&high)) = (feed.keys().next(), feed.keys().next_back()) {
        let rows = read_retrying(
            inner,
            "reading the changed relationships",
            |client| async move {
                let statement = client
                    .prepare_cached(&changes_sql(Dialect::Postgres))
                    .await?;
                client.query(&statement, &[&low, &high]).await
            },
        )
        .await?;
        add_changes(&rows, &mut feed)?;
    }
    Ok(feed.into_values().collect())
}

/// CockroachDB's feed: the revisions after `after` up to the closed bound.
async fn bounded_changes(
    inner: &Inner,
    after: Rev,
    limit: i64,
) -> DatastoreResult<Vec<RevisionChanges>> {
    let (now, horizon) = clock_and_horizon(inner).await?;
    if after < horizon {
        return Err(older_than_history(after));
    }
    if after > now {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {} is newer than the head revision {}",
            after.0, now.0
        )));
    }
    let bound = dialect::hlc_before(now, inner.cockroach.follower_read_delay);
    if after >= bound {
        return Ok(Vec::new());
    }
    let (transactions, rows) =
        read_retrying(inner, "reading the change feed", |client| async move {
            read_as_of(&client, bound, after, limit).await
        })
        .await?;
    let mut feed = revisions(&transactions, 0);
    add_changes(&rows, &mut feed)?;
    Ok(feed.into_values().collect())
}

/// The newest revision the feed can list now (CockroachDB; `wait_for_commit`
/// polls it): the newest commit at or below the bound, `after` none.
pub(super) async fn newest_commit(inner: &Inner) -> DatastoreResult<Revision> {
    let (now, _) = clock_and_horizon(inner).await?;
    let bound = dialect::hlc_before(now, inner.cockroach.follower_read_delay);
    let sql = format!(
        "SELECT max(revision) FROM transactions{} WHERE revision <= $1",
        Dialect::Cockroach.as_of(bound)
    );
    let sql = &sql;
    let row = read_retrying(inner, "reading the newest commit", |client| async move {
        client.query_one(sql.as_str(), &[&bound]).await
    })
    .await?;
    let newest: Option<Rev> = row.get(0);
    Ok(from_db(newest.unwrap_or_default()))
}

/// The server's clock and the GC horizon (below which the feed was
/// collected), in one round trip.
async fn clock_and_horizon(inner: &Inner) -> DatastoreResult<(Rev, Rev)> {
    let sql = format!("{CLUSTER_TIMESTAMP}, (SELECT horizon FROM gc_lease)");
    let sql = &sql;
    let row = read_retrying(
        inner,
        "reading the cluster timestamp",
        |client| async move {
            let statement = client.prepare_cached(sql).await?;
            client.query_one(&statement, &[]).await
        },
    )
    .await?;
    let text: String = row.get(0);
    let now = dialect::parse_hlc(&text).map_err(DatastoreError::Internal)?;
    inner.saw_head(now);
    Ok((now, row.get(1)))
}

/// The transactions in `(after, bound]` (at most `limit`) and their
/// changed rows, both read at `bound` in one read-only transaction.
async fn read_as_of(
    client: &Object,
    bound: Rev,
    after: Rev,
    limit: i64,
) -> Result<(Vec<Row>, Vec<Row>), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN AS OF SYSTEM TIME '{}'",
            dialect::format_hlc(bound)
        ))
        .await?;
    let result = async {
        let transactions = client
            .query(
                "SELECT revision, metadata, schema_changed FROM transactions \
                 WHERE revision > $1 AND revision <= $2 ORDER BY revision LIMIT $3",
                &[&after, &bound, &limit],
            )
            .await?;
        let high: Option<Rev> = transactions.last().map(|row| row.get(0));
        let rows = match high {
            Some(high) => {
                client
                    .query(&changes_sql(Dialect::Cockroach), &[&after, &high])
                    .await?
            }
            None => Vec::new(),
        };
        client.batch_execute("COMMIT").await?;
        Ok((transactions, rows))
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

fn older_than_history(after: Rev) -> DatastoreError {
    DatastoreError::RevisionOutOfRange(format!(
        "revision {} is older than the change history kept",
        after.0
    ))
}

/// The feed's revisions from transaction rows whose revision, metadata and
/// schema flag start at column `first`.
fn revisions(rows: &[Row], first: usize) -> BTreeMap<Rev, RevisionChanges> {
    let mut feed = BTreeMap::new();
    for row in rows {
        let Some(revision) = row.get::<_, Option<Rev>>(first) else {
            continue;
        };
        let metadata = match row.get::<_, Option<serde_json::Value>>(first + 1) {
            Some(serde_json::Value::Object(map)) => map,
            _ => TransactionMetadata::new(),
        };
        feed.insert(
            revision,
            RevisionChanges {
                revision: from_db(revision),
                changes: Vec::new(),
                schema_changed: row.get::<_, Option<bool>>(first + 2).unwrap_or(false),
                metadata,
            },
        );
    }
    feed
}

/// The relationship changes of the revisions in `[$1, $2]` (PostgreSQL)
/// or `($1, $2]` (CockroachDB, whose `$1` is the last revision seen), in
/// write order.
fn changes_sql(dialect: Dialect) -> String {
    let alive = dialect.alive();
    let range = |column: &str| match dialect {
        Dialect::Postgres => format!("{column} BETWEEN $1 AND $2"),
        Dialect::Cockroach => format!("{column} > $1 AND {column} <= $2"),
    };
    format!(
        "SELECT {RELATIONSHIP_COLUMNS}, created_revision AS revision, created_seq AS seq, \
                FALSE AS deleted \
         FROM relation_tuple WHERE {} \
         UNION ALL \
         SELECT {RELATIONSHIP_COLUMNS}, deleted_revision, deleted_seq, TRUE \
         FROM relation_tuple WHERE {} \
           AND deleted_revision < {alive} AND deleted_seq IS NOT NULL \
         ORDER BY revision, seq",
        range("created_revision"),
        range("deleted_revision"),
    )
}

/// Adds changed rows to the revisions they belong to, in row order.
fn add_changes(rows: &[Row], feed: &mut BTreeMap<Rev, RevisionChanges>) -> DatastoreResult<()> {
    for row in rows {
        let relationship = sql::relationship(row)?;
        let revision: Rev = row.get(9);
        let change = if row.get::<_, bool>(11) {
            Change::Delete(relationship)
        } else {
            Change::Touch(relationship)
        };
        if let Some(entry) = feed.get_mut(&revision) {
            entry.changes.push(change);
        }
    }
    Ok(())
}
