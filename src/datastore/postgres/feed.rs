//! Owns the PostgreSQL change feed: the committed revisions after a given
//! one, each with its relationship changes in the order the write made
//! them. Revisions are gap-free and commit in order, so reading the
//! consecutive revisions after the last one seen can miss no transaction.

use std::collections::BTreeMap;

use super::reader::read_retrying;
use super::sql::{self, ALIVE, RELATIONSHIP_COLUMNS};
use super::{Inner, from_db, to_db};
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
    let Some(after) = to_db(after) else {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {after} is newer than the head revision"
        )));
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
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
    let (oldest, head): (Option<i64>, i64) = (first.get(0), first.get(1));
    if after < oldest.unwrap_or(0) {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {after} is older than the change history kept"
        )));
    }
    if after > head {
        return Err(DatastoreError::RevisionOutOfRange(format!(
            "revision {after} is newer than the head revision {head}"
        )));
    }
    let mut feed: BTreeMap<i64, RevisionChanges> = BTreeMap::new();
    for row in &transactions {
        let Some(revision) = row.get::<_, Option<i64>>(2) else {
            continue;
        };
        let metadata = match row.get::<_, Option<serde_json::Value>>(3) {
            Some(serde_json::Value::Object(map)) => map,
            _ => TransactionMetadata::new(),
        };
        feed.insert(
            revision,
            RevisionChanges {
                revision: from_db(revision),
                changes: Vec::new(),
                schema_changed: row.get::<_, Option<bool>>(4).unwrap_or(false),
                metadata,
            },
        );
    }
    if let (Some(&low), Some(&high)) = (feed.keys().next(), feed.keys().next_back()) {
        fill_changes(inner, low, high, &mut feed).await?;
    }
    Ok(feed.into_values().collect())
}

/// Adds the relationship changes of revisions `low..=high`, in write order.
async fn fill_changes(
    inner: &Inner,
    low: i64,
    high: i64,
    feed: &mut BTreeMap<i64, RevisionChanges>,
) -> DatastoreResult<()> {
    let rows = read_retrying(
        inner,
        "reading the changed relationships",
        |client| async move {
            let statement = client
            .prepare_cached(&format!(
                "SELECT {RELATIONSHIP_COLUMNS}, created_revision AS revision, created_seq AS seq, \
                        FALSE AS deleted \
                 FROM relation_tuple WHERE created_revision BETWEEN $1 AND $2 \
                 UNION ALL \
                 SELECT {RELATIONSHIP_COLUMNS}, deleted_revision, deleted_seq, TRUE \
                 FROM relation_tuple WHERE deleted_revision BETWEEN $1 AND $2 \
                   AND deleted_revision < {ALIVE} AND deleted_seq IS NOT NULL \
                 ORDER BY revision, seq"
            ))
            .await?;
            client.query(&statement, &[&low, &high]).await
        },
    )
    .await?;
    for row in &rows {
        let relationship = sql::relationship(row)?;
        let revision: i64 = row.get(9);
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
