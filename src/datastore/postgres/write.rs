//! Owns the PostgreSQL write transactions: a `WriteBatch` (preconditions,
//! counter changes, the filter delete, updates, schema) and a bulk load
//! through COPY. Each runs in one transaction that first takes the next
//! revision from `revision_counter` (its row lock orders commits), is
//! retried with jittered backoff when PostgreSQL reports a serialization
//! failure or deadlock, and is acknowledged only after COMMIT returns.

use std::collections::HashMap;
use std::time::SystemTime;

use deadpool_postgres::Transaction;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error as PgError, Row};

use super::error::{MAX_ATTEMPTS, backoff, from_pg, is_retryable};
use super::sql::{self, ALIVE, KEY_COLUMNS, Statement};
use super::{Inner, from_db};
use crate::datastore::update_plan::{self, Change, Living};
use crate::datastore::{
    DatastoreError, DatastoreResult, DeleteByFilter, RelationshipCounter, StoredSchema,
    TransactionMetadata, WriteBatch, WriteOutcome, apply_counter_changes,
};
use crate::model::{
    Precondition, PreconditionKind, Relationship, RelationshipKey, RelationshipUpdate,
};

/// The transaction's statements, each prepared once per connection
/// (deadpool keeps the cache), so a write costs one round trip per
/// statement rather than two.
trait CachedStatements {
    async fn cached_query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError>;

    async fn cached_query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError>;

    async fn cached_query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError>;

    async fn cached_execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError>;
}

impl CachedStatements for Transaction<'_> {
    async fn cached_query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        let statement = self.prepare_cached(sql).await?;
        self.query(&statement, params).await
    }

    async fn cached_query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PgError> {
        let statement = self.prepare_cached(sql).await?;
        self.query_one(&statement, params).await
    }

    async fn cached_query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PgError> {
        let statement = self.prepare_cached(sql).await?;
        self.query_opt(&statement, params).await
    }

    async fn cached_execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PgError> {
        let statement = self.prepare_cached(sql).await?;
        self.execute(&statement, params).await
    }
}

/// Runs `attempt` until it succeeds, fails for good, or loses
/// `MAX_ATTEMPTS` serialization races.
async fn retrying<T, F, Fut>(mut attempt: F) -> DatastoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = DatastoreResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if is_retryable(&e) && tries < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(tries)).await;
            }
            other => return other,
        }
    }
}

/// Applies a batch atomically at a new revision.
pub(super) async fn write(inner: &Inner, batch: WriteBatch) -> DatastoreResult<WriteOutcome> {
    let outcome = retrying(|| write_once(inner, &batch)).await?;
    inner.saw_head(i64::try_from(outcome.revision.0).unwrap_or(i64::MAX));
    Ok(outcome)
}

/// Inserts relationships that must all be new, through COPY.
pub(super) async fn bulk_load(
    inner: &Inner,
    relationships: Vec<Relationship>,
    metadata: TransactionMetadata,
) -> DatastoreResult<WriteOutcome> {
    let outcome = retrying(|| bulk_load_once(inner, &relationships, &metadata)).await?;
    inner.saw_head(i64::try_from(outcome.revision.0).unwrap_or(i64::MAX));
    Ok(outcome)
}

/// The revision a transaction writes, and when it commits.
struct Stamp {
    revision: i64,
    committed_at: SystemTime,
}

/// Takes the next revision. The row lock this takes is held to COMMIT, so
/// writers commit one at a time and in revision order; commit times never
/// decrease, whatever the writers' clocks say.
async fn next_revision(tx: &Transaction<'_>, now: SystemTime) -> DatastoreResult<Stamp> {
    let row = tx
        .cached_query_one(
            "UPDATE revision_counter SET revision = revision + 1, \
             committed_at = greatest(committed_at, $1) RETURNING revision, committed_at",
            &[&now],
        )
        .await
        .map_err(|e| from_pg("taking a revision", e))?;
    Ok(Stamp {
        revision: row.get(0),
        committed_at: row.get(1),
    })
}

/// Records the revision in the log and commits.
async fn finish(
    tx: Transaction<'_>,
    stamp: &Stamp,
    metadata: &TransactionMetadata,
    schema_changed: bool,
) -> DatastoreResult<()> {
    let metadata = serde_json::Value::Object(metadata.clone());
    tx.cached_execute(
        "INSERT INTO transactions (revision, committed_at, metadata, schema_changed) \
         VALUES ($1, $2, $3, $4)",
        &[
            &stamp.revision,
            &stamp.committed_at,
            &metadata,
            &schema_changed,
        ],
    )
    .await
    .map_err(|e| from_pg("logging the transaction", e))?;
    tx.commit()
        .await
        .map_err(|e| from_pg("committing the write", e))
}

async fn write_once(inner: &Inner, batch: &WriteBatch) -> DatastoreResult<WriteOutcome> {
    let mut client = inner.write_client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| from_pg("starting a write", e))?;
    let now = inner.clock.now();
    let stamp = next_revision(&tx, now).await?;
    check_preconditions(&tx, &batch.preconditions, now).await?;
    let counters = if batch.counters.is_empty() {
        None
    } else {
        let registered = registered_counters(&tx).await?;
        Some(apply_counter_changes(&registered, batch.counters.clone())?)
    };
    let mut seq = 0;
    let (deleted_by_filter, partial) = match &batch.delete_by_filter {
        Some(delete) => delete_by_filter(&tx, delete, &stamp, now, &mut seq).await?,
        None => (0, false),
    };
    apply_updates(&tx, &batch.updates, &stamp, now, &mut seq).await?;
    if let Some(counters) = &counters {
        tx.cached_execute(
            "INSERT INTO counter_history (revision, counters) VALUES ($1, $2)",
            &[&stamp.revision, &sql::encode_counters(counters)],
        )
        .await
        .map_err(|e| from_pg("recording the counters", e))?;
    }
    if let Some(schema) = &batch.schema {
        write_schema(&tx, &stamp, schema).await?;
    }
    finish(tx, &stamp, &batch.metadata, batch.schema.is_some()).await?;
    Ok(WriteOutcome {
        revision: from_db(stamp.revision),
        deleted_by_filter,
        partial,
    })
}

async fn write_schema(
    tx: &Transaction<'_>,
    stamp: &Stamp,
    schema: &StoredSchema,
) -> DatastoreResult<()> {
    tx.cached_execute(
        "INSERT INTO schema_history (revision, text, hash) VALUES ($1, $2, $3)",
        &[&stamp.revision, &schema.text, &schema.hash.as_slice()],
    )
    .await
    .map_err(|e| from_pg("writing the schema", e))?;
    Ok(())
}

/// The counters registered at head.
async fn registered_counters(tx: &Transaction<'_>) -> DatastoreResult<Vec<RelationshipCounter>> {
    let row = tx
        .cached_query_opt(
            "SELECT counters FROM counter_history ORDER BY revision DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| from_pg("reading the counters", e))?;
    match row {
        Some(row) => sql::decode_counters(row.get(0)),
        None => Ok(Vec::new()),
    }
}

/// The first failing precondition (by position) fails the write.
async fn check_preconditions(
    tx: &Transaction<'_>,
    preconditions: &[Precondition],
    now: SystemTime,
) -> DatastoreResult<()> {
    for (index, precondition) in preconditions.iter().enumerate() {
        let mut statement = Statement::new("SELECT 1 FROM relation_tuple WHERE TRUE");
        statement.alive_at(now);
        statement.filter(&precondition.filter);
        statement.push(" LIMIT 1");
        let found = !tx
            .cached_query(&statement.sql, &statement.params())
            .await
            .map_err(|e| from_pg("checking a precondition", e))?
            .is_empty();
        let holds = match precondition.kind {
            PreconditionKind::MustMatch => found,
            PreconditionKind::MustNotMatch => !found,
        };
        if !holds {
            return Err(DatastoreError::PreconditionFailed { index });
        }
    }
    Ok(())
}

/// Deletes what the filter matches at head, in key order, up to its limit;
/// one statement counts one past the limit and deletes up to it.
async fn delete_by_filter(
    tx: &Transaction<'_>,
    delete: &DeleteByFilter,
    stamp: &Stamp,
    now: SystemTime,
    seq: &mut i32,
) -> DatastoreResult<(usize, bool)> {
    let limit = delete
        .limit
        .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut statement = Statement::new(&format!(
        "WITH victims AS (SELECT {KEY_COLUMNS}, created_revision, \
         row_number() OVER (ORDER BY {KEY_COLUMNS}) AS n FROM relation_tuple WHERE TRUE"
    ));
    statement.alive_at(now);
    statement.filter(&delete.filter);
    let probe = statement.bind(limit.saturating_add(1));
    let limit_param = statement.bind(limit);
    let revision = statement.bind(stamp.revision);
    let first_seq = statement.bind(*seq);
    statement.push(&format!(
        " ORDER BY {KEY_COLUMNS} LIMIT {probe}), \
         deleted AS (UPDATE relation_tuple t SET deleted_revision = {revision}, \
           deleted_seq = {first_seq} + v.n::integer - 1 \
           FROM victims v WHERE v.n <= {limit_param} \
           AND ({}) = ({}) AND t.created_revision = v.created_revision \
           RETURNING 1) \
         SELECT (SELECT count(*) FROM victims), (SELECT count(*) FROM deleted)",
        prefixed("t", KEY_COLUMNS),
        prefixed("v", KEY_COLUMNS),
    ));
    let row = tx
        .cached_query_one(&statement.sql, &statement.params())
        .await
        .map_err(|e| from_pg("deleting by filter", e))?;
    let (matched, deleted): (i64, i64) = (row.get(0), row.get(1));
    if matched > limit && !delete.allow_partial {
        return Err(DatastoreError::TooManyToDelete {
            limit: delete.limit.unwrap_or(usize::MAX),
        });
    }
    *seq += i32::try_from(deleted).unwrap_or(i32::MAX);
    Ok((
        usize::try_from(deleted).unwrap_or(usize::MAX),
        matched > limit,
    ))
}

/// `a, b` as `p.a, p.b`.
fn prefixed(prefix: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{prefix}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a write does to the relationships table, in change-feed order.
#[derive(Default)]
struct UpdatePlan<'b> {
    /// Living versions to retire, with their change-feed position (none
    /// when the retirement is no change of its own).
    retire: Vec<(RelationshipKey, Option<i32>)>,
    /// New versions with their change-feed position.
    insert: Vec<(&'b Relationship, i32)>,
}

/// Plans the updates with the engines' shared rules (`update_plan`),
/// numbering the change-feed entries from `seq` on.
fn plan_updates<'b>(
    updates: &'b [RelationshipUpdate],
    living: &HashMap<RelationshipKey, bool>,
    seq: &mut i32,
) -> DatastoreResult<UpdatePlan<'b>> {
    let outcomes = update_plan::plan(updates, |rel| {
        let key = rel.key();
        let found = living.get(&key).map(|&expired| Living {
            version: key.clone(),
            expired,
        });
        Ok((key, found))
    })?;
    let mut plan = UpdatePlan::default();
    for outcome in outcomes {
        let position = outcome.change.map(|_| {
            *seq += 1;
            *seq - 1
        });
        match (outcome.change, position) {
            (Some(Change::Touch(new)), Some(at)) => {
                plan.retire.extend(outcome.retire.map(|old| (old, None)));
                plan.insert.push((new, at));
            }
            _ => plan
                .retire
                .extend(outcome.retire.map(|old| (old, position))),
        }
    }
    Ok(plan)
}

/// Six text arrays, one per key column, for `unnest`.
fn key_arrays<'k>(keys: impl Iterator<Item = &'k RelationshipKey>) -> [Vec<String>; 6] {
    let mut columns: [Vec<String>; 6] = Default::default();
    for key in keys {
        for (column, value) in columns.iter_mut().zip(sql::key_strings(key)) {
            column.push(value.to_string());
        }
    }
    columns
}

/// `unnest($a::text[], …) AS k(c1, …)` over the six key arrays, bound into
/// `statement`, followed by `extra` typed arrays named as given.
fn bind_keys(
    statement: &mut Statement,
    columns: [Vec<String>; 6],
    extra: Vec<(sql::Param, &str, &str)>,
) -> String {
    let mut arrays: Vec<String> = columns
        .into_iter()
        .map(|c| format!("{}::text[]", statement.bind(c)))
        .collect();
    let mut names: Vec<String> = KEY_COLUMNS.split(", ").map(|c| format!("k_{c}")).collect();
    for (param, ty, name) in extra {
        arrays.push(format!("{}::{ty}", statement.bind_boxed(param)));
        names.push(name.to_string());
    }
    format!("unnest({}) AS k({})", arrays.join(", "), names.join(", "))
}

/// `t.namespace = k.k_namespace AND …` for the six key columns.
fn keys_join() -> String {
    KEY_COLUMNS
        .split(", ")
        .map(|c| format!("t.{c} = k.k_{c}"))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The living versions (at head) of the keys the updates touch, and
/// whether each has expired.
async fn living_versions(
    tx: &Transaction<'_>,
    updates: &[RelationshipUpdate],
    now: SystemTime,
) -> DatastoreResult<HashMap<RelationshipKey, bool>> {
    let keys: Vec<RelationshipKey> = updates.iter().map(|u| u.relationship.key()).collect();
    let mut statement = Statement::new("SELECT ");
    let source = bind_keys(&mut statement, key_arrays(keys.iter()), Vec::new());
    let now = statement.bind(now);
    statement.push(&format!(
        "{}, (t.expiration IS NOT NULL AND t.expiration <= {now}) FROM {source} \
         JOIN relation_tuple t ON {} AND t.deleted_revision = {ALIVE}",
        prefixed("t", KEY_COLUMNS),
        keys_join(),
    ));
    let rows = tx
        .cached_query(&statement.sql, &statement.params())
        .await
        .map_err(|e| from_pg("reading the relationships a write changes", e))?;
    Ok(rows
        .iter()
        .map(|row| (sql::key(row), row.get::<_, bool>(6)))
        .collect())
}

async fn apply_updates(
    tx: &Transaction<'_>,
    updates: &[RelationshipUpdate],
    stamp: &Stamp,
    now: SystemTime,
    seq: &mut i32,
) -> DatastoreResult<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let living = living_versions(tx, updates, now).await?;
    let plan = plan_updates(updates, &living, seq)?;
    retire(tx, &plan.retire, stamp).await?;
    let inserts: Vec<(&Relationship, i32)> = plan.insert;
    insert(tx, &inserts, stamp).await
}

/// Marks living versions deleted at this revision.
async fn retire(
    tx: &Transaction<'_>,
    retire: &[(RelationshipKey, Option<i32>)],
    stamp: &Stamp,
) -> DatastoreResult<()> {
    if retire.is_empty() {
        return Ok(());
    }
    let seqs: Vec<Option<i32>> = retire.iter().map(|(_, s)| *s).collect();
    let mut statement = Statement::new("UPDATE relation_tuple t SET ");
    let source = bind_keys(
        &mut statement,
        key_arrays(retire.iter().map(|(k, _)| k)),
        vec![(Box::new(seqs), "integer[]", "seq")],
    );
    let revision = statement.bind(stamp.revision);
    statement.push(&format!(
        "deleted_revision = {revision}, deleted_seq = k.seq FROM {source} \
         WHERE {} AND t.deleted_revision = {ALIVE}",
        keys_join()
    ));
    tx.cached_execute(&statement.sql, &statement.params())
        .await
        .map_err(|e| from_pg("retiring relationships", e))?;
    Ok(())
}

/// Inserts new versions created at this revision.
async fn insert(
    tx: &Transaction<'_>,
    inserts: &[(&Relationship, i32)],
    stamp: &Stamp,
) -> DatastoreResult<()> {
    if inserts.is_empty() {
        return Ok(());
    }
    let keys: Vec<RelationshipKey> = inserts.iter().map(|(r, _)| r.key()).collect();
    let caveats: Vec<Option<String>> = inserts
        .iter()
        .map(|(r, _)| r.caveat.as_ref().map(|c| c.name.clone()))
        .collect();
    let contexts: Vec<Option<serde_json::Value>> = inserts
        .iter()
        .map(|(r, _)| sql::caveat_context(r))
        .collect();
    let expirations: Vec<Option<SystemTime>> = inserts.iter().map(|(r, _)| r.expires_at).collect();
    let seqs: Vec<i32> = inserts.iter().map(|(_, s)| *s).collect();
    let mut statement = Statement::new(&format!(
        "INSERT INTO relation_tuple ({KEY_COLUMNS}, caveat_name, caveat_context, expiration, \
         created_revision, created_seq) SELECT "
    ));
    let source = bind_keys(
        &mut statement,
        key_arrays(keys.iter()),
        vec![
            (Box::new(caveats), "text[]", "caveat_name"),
            (Box::new(contexts), "jsonb[]", "caveat_context"),
            (Box::new(expirations), "timestamptz[]", "expiration"),
            (Box::new(seqs), "integer[]", "seq"),
        ],
    );
    let revision = statement.bind(stamp.revision);
    statement.push(&format!(
        "{}, caveat_name, caveat_context, expiration, {revision}, seq FROM {source}",
        KEY_COLUMNS
            .split(", ")
            .map(|c| format!("k_{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    tx.cached_execute(&statement.sql, &statement.params())
        .await
        .map_err(|e| from_pg("inserting relationships", e))?;
    Ok(())
}

/// Column types of the COPY staging table, in its column order.
const STAGING_TYPES: [Type; 10] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TIMESTAMPTZ,
    Type::INT4,
];

async fn bulk_load_once(
    inner: &Inner,
    relationships: &[Relationship],
    metadata: &TransactionMetadata,
) -> DatastoreResult<WriteOutcome> {
    let mut client = inner.write_client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| from_pg("starting a bulk load", e))?;
    let now = inner.clock.now();
    let stamp = next_revision(&tx, now).await?;
    tx.batch_execute(
        "CREATE TEMPORARY TABLE bulk_staging (\
           namespace TEXT COLLATE \"C\", object_id TEXT COLLATE \"C\", relation TEXT COLLATE \"C\", \
           userset_namespace TEXT COLLATE \"C\", userset_object_id TEXT COLLATE \"C\", \
           userset_relation TEXT COLLATE \"C\", caveat_name TEXT, caveat_context JSONB, \
           expiration TIMESTAMPTZ, seq INTEGER) ON COMMIT DROP",
    )
    .await
    .map_err(|e| from_pg("preparing a bulk load", e))?;
    copy_into_staging(&tx, relationships).await?;
    reject_existing(&tx, now).await?;
    let staged = prefixed("s", KEY_COLUMNS);
    let retire_expired = format!(
        "UPDATE relation_tuple t SET deleted_revision = $1 FROM bulk_staging s \
         WHERE ({}) = ({staged}) AND t.deleted_revision = {ALIVE}",
        prefixed("t", KEY_COLUMNS)
    );
    tx.execute(&retire_expired, &[&stamp.revision])
        .await
        .map_err(|e| from_pg("retiring expired relationships", e))?;
    let insert = format!(
        "INSERT INTO relation_tuple ({KEY_COLUMNS}, caveat_name, caveat_context, expiration, \
         created_revision, created_seq) \
         SELECT {KEY_COLUMNS}, caveat_name, caveat_context, expiration, $1, seq FROM bulk_staging"
    );
    tx.execute(&insert, &[&stamp.revision])
        .await
        .map_err(|e| from_pg("inserting the bulk load", e))?;
    finish(tx, &stamp, metadata, false).await?;
    Ok(WriteOutcome {
        revision: from_db(stamp.revision),
        deleted_by_filter: 0,
        partial: false,
    })
}

/// Streams the relationships into the staging table with binary COPY.
async fn copy_into_staging(
    tx: &Transaction<'_>,
    relationships: &[Relationship],
) -> DatastoreResult<()> {
    let sink = tx
        .copy_in("COPY bulk_staging FROM STDIN (FORMAT binary)")
        .await
        .map_err(|e| from_pg("starting COPY", e))?;
    let writer = BinaryCopyInWriter::new(sink, &STAGING_TYPES);
    pin_mut!(writer);
    for (seq, rel) in relationships.iter().enumerate() {
        let seq = i32::try_from(seq).unwrap_or(i32::MAX);
        let caveat = rel.caveat.as_ref().map(|c| c.name.as_str());
        let context = sql::caveat_context(rel);
        writer
            .as_mut()
            .write(&[
                &rel.resource.object_type,
                &rel.resource.object_id,
                &rel.relation,
                &rel.subject.object.object_type,
                &rel.subject.object.object_id,
                &rel.subject.relation,
                &caveat,
                &context,
                &rel.expires_at,
                &seq,
            ])
            .await
            .map_err(|e| from_pg("copying relationships", e))?;
    }
    writer
        .finish()
        .await
        .map_err(|e| from_pg("finishing COPY", e))?;
    Ok(())
}

/// `AlreadyExists` for the first relationship loaded twice, or already
/// living (and not expired) in the table.
// The staging table is new in every bulk load, so its statements are not
// kept prepared.
async fn reject_existing(tx: &Transaction<'_>, now: SystemTime) -> DatastoreResult<()> {
    let twice = format!(
        "SELECT {KEY_COLUMNS} FROM bulk_staging GROUP BY {KEY_COLUMNS} \
         HAVING count(*) > 1 ORDER BY {KEY_COLUMNS} LIMIT 1"
    );
    let living = format!(
        "SELECT {} FROM bulk_staging s JOIN relation_tuple t ON ({}) = ({}) \
         AND t.deleted_revision = {ALIVE} AND (t.expiration IS NULL OR t.expiration > $1) \
         ORDER BY {} LIMIT 1",
        prefixed("s", KEY_COLUMNS),
        prefixed("t", KEY_COLUMNS),
        prefixed("s", KEY_COLUMNS),
        prefixed("s", KEY_COLUMNS),
    );
    let duplicate = tx
        .query_opt(&twice, &[])
        .await
        .map_err(|e| from_pg("checking the bulk load for duplicates", e))?;
    let existing = match duplicate {
        Some(row) => Some(row),
        None => tx
            .query_opt(&living, &[&now])
            .await
            .map_err(|e| from_pg("checking the bulk load against the table", e))?,
    };
    match existing {
        Some(row) => Err(DatastoreError::AlreadyExists(Box::new(sql::key(&row)))),
        None => Ok(()),
    }
}
