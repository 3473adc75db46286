//! Owns the SQL write transactions: a `WriteBatch` (preconditions, counter
//! changes, the filter delete, updates, schema) and a bulk load (COPY on
//! PostgreSQL; chunked `INSERT … SELECT FROM unnest` on CockroachDB, which
//! has neither binary COPY nor temporary tables by default). Each runs in
//! one transaction that first takes its revision (PostgreSQL: the next one
//! from `revision_counter`, whose row lock orders commits; CockroachDB:
//! `cluster_logical_timestamp()`, which pins the commit timestamp), ends
//! (CockroachDB) by upserting its overlap keys, is retried with jittered
//! backoff on a serialization failure or deadlock, and is acknowledged
//! only after COMMIT returns.

use std::collections::HashMap;
use std::time::SystemTime;

use deadpool_postgres::Transaction;
use futures::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error as PgError, Row};

use super::dialect::{self, CLUSTER_TIMESTAMP, Dialect, UPSERT_OVERLAP_KEYS};
use super::error::{backoff, from_pg, is_retryable};
use super::sql::{self, KEY_COLUMNS, Rev, Statement};
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
/// `max_attempts` serialization races.
async fn retrying<T, F, Fut>(max_attempts: u32, mut attempt: F) -> DatastoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = DatastoreResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if is_retryable(&e) && tries < max_attempts => {
                tokio::time::sleep(backoff(tries)).await;
            }
            other => return other,
        }
    }
}

/// Applies a batch atomically at a new revision.
pub(super) async fn write(inner: &Inner, batch: WriteBatch) -> DatastoreResult<WriteOutcome> {
    let overlap = inner.cockroach.overlap.keys(&batch);
    let outcome = retrying(inner.max_attempts, || write_once(inner, &batch, &overlap)).await?;
    inner.saw_head(Rev(outcome.revision.0));
    Ok(outcome)
}

/// Inserts relationships that must all be new, through COPY.
pub(super) async fn bulk_load(
    inner: &Inner,
    relationships: Vec<Relationship>,
    metadata: TransactionMetadata,
) -> DatastoreResult<WriteOutcome> {
    let outcome = match inner.dialect {
        Dialect::Postgres => {
            let outcome = retrying(inner.max_attempts, || {
                bulk_load_once(inner, &relationships, &metadata)
            })
            .await?;
            if relationships.len() >= ANALYZE_AFTER {
                refresh_statistics(inner).await;
            }
            outcome
        }
        Dialect::Cockroach => {
            let overlap = inner.cockroach.overlap.keys_for_load(&relationships);
            retrying(inner.max_attempts, || {
                bulk_insert_once(inner, &relationships, &metadata, &overlap)
            })
            .await?
        }
    };
    inner.saw_head(Rev(outcome.revision.0));
    Ok(outcome)
}

/// A bulk load at least this large refreshes the table's statistics.
const ANALYZE_AFTER: usize = 10_000;

/// Has PostgreSQL re-sample the relationships table, so that reads right
/// after a large load are planned on its new size (autovacuum would, but
/// only a minute or so later; until then a point read can be planned as a
/// scan of what the statistics still call a small table). Best effort: the
/// load has committed whatever happens here.
async fn refresh_statistics(inner: &Inner) {
    let analyzed = match inner.write_client().await {
        Ok(client) => client
            .batch_execute("ANALYZE relation_tuple")
            .await
            .map_err(|e| from_pg("analyzing relation_tuple", e)),
        Err(e) => Err(e),
    };
    if let Err(e) = analyzed {
        tracing::warn!(error = %e, "could not refresh statistics after a bulk load");
    }
}

/// The revision a transaction writes, when it commits, and the keys it
/// upserts last (CockroachDB's overlap keys; none on PostgreSQL).
struct Stamp<'k> {
    revision: Rev,
    committed_at: SystemTime,
    overlap: &'k [String],
}

/// Takes the transaction's revision in the engine's way.
async fn stamp<'k>(
    inner: &Inner,
    tx: &Transaction<'_>,
    now: SystemTime,
    overlap: &'k [String],
) -> DatastoreResult<Stamp<'k>> {
    match inner.dialect {
        Dialect::Postgres => next_revision(tx, now).await,
        Dialect::Cockroach => commit_timestamp(tx, overlap).await,
    }
}

/// Pins the CockroachDB transaction's commit timestamp and takes it as the
/// revision: the transaction commits exactly there or fails with a
/// retryable error (40001), never elsewhere, so rows stamped with it are
/// stamped with their commit timestamp.
async fn commit_timestamp<'k>(
    tx: &Transaction<'_>,
    overlap: &'k [String],
) -> DatastoreResult<Stamp<'k>> {
    let row = tx
        .query_one(CLUSTER_TIMESTAMP, &[])
        .await
        .map_err(|e| from_pg("taking a revision", e))?;
    let text: String = row
        .try_get(0)
        .map_err(|e| DatastoreError::Internal(format!("reading the commit timestamp: {e}")))?;
    let revision = dialect::parse_hlc(&text).map_err(DatastoreError::Internal)?;
    Ok(Stamp {
        revision,
        committed_at: dialect::wall_time(revision),
        overlap,
    })
}

/// Takes the next revision. The row lock this takes is held to COMMIT, so
/// writers commit one at a time and in revision order; commit times never
/// decrease, whatever the writers' clocks say.
async fn next_revision(tx: &Transaction<'_>, now: SystemTime) -> DatastoreResult<Stamp<'static>> {
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
        overlap: &[],
    })
}

/// Records the revision in the log, upserts the overlap keys (the last
/// statement, as new-enemy safety needs on CockroachDB) and commits.
async fn finish(
    tx: Transaction<'_>,
    stamp: &Stamp<'_>,
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
    if !stamp.overlap.is_empty() {
        tx.execute(UPSERT_OVERLAP_KEYS, &[&stamp.overlap, &stamp.revision])
            .await
            .map_err(|e| from_pg("upserting the overlap keys", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| from_pg("committing the write", e))
}

async fn write_once(
    inner: &Inner,
    batch: &WriteBatch,
    overlap: &[String],
) -> DatastoreResult<WriteOutcome> {
    let mut client = inner.write_client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| from_pg("starting a write", e))?;
    let now = inner.clock.now();
    let stamp = stamp(inner, &tx, now, overlap).await?;
    let dialect = inner.dialect;
    check_preconditions(&tx, dialect, &batch.preconditions, now).await?;
    let counters = if batch.counters.is_empty() {
        None
    } else {
        let registered = registered_counters(&tx).await?;
        Some(apply_counter_changes(&registered, batch.counters.clone())?)
    };
    let mut seq = 0;
    let (deleted_by_filter, partial) = match &batch.delete_by_filter {
        Some(delete) => delete_by_filter(&tx, dialect, delete, &stamp, now, &mut seq).await?,
        None => (0, false),
    };
    apply_updates(&tx, dialect, &batch.updates, &stamp, now, &mut seq).await?;
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
    stamp: &Stamp<'_>,
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
    dialect: Dialect,
    preconditions: &[Precondition],
    now: SystemTime,
) -> DatastoreResult<()> {
    for (index, precondition) in preconditions.iter().enumerate() {
        let mut statement =
            Statement::in_dialect(dialect, "SELECT 1 FROM relation_tuple WHERE TRUE");
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
    dialect: Dialect,
    delete: &DeleteByFilter,
    stamp: &Stamp<'_>,
    now: SystemTime,
    seq: &mut i32,
) -> DatastoreResult<(usize, bool)> {
    let limit = delete
        .limit
        .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut statement = Statement::in_dialect(
        dialect,
        &format!(
            "WITH victims AS (SELECT {KEY_COLUMNS}, created_revision, \
             row_number() OVER (ORDER BY {KEY_COLUMNS}) AS n FROM relation_tuple WHERE TRUE"
        ),
    );
    statement.alive_at(now);
    statement.filter(&delete.filter);
    let probe = statement.bind(limit.saturating_add(1));
    let limit_param = statement.bind(limit);
    let revision = statement.bind(stamp.revision);
    let first_seq = statement.bind(*seq);
    statement.push(&format!(
        " ORDER BY {KEY_COLUMNS} LIMIT {probe}), \
         deleted AS (UPDATE relation_tuple t SET deleted_revision = {revision}, \
           deleted_seq = {first_seq}::INT4 + v.n::INT4 - 1 \
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
        .map(|c| format!("{}::TEXT[]", statement.bind(c)))
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
    dialect: Dialect,
    keys: &[RelationshipKey],
    now: SystemTime,
) -> DatastoreResult<HashMap<RelationshipKey, bool>> {
    let mut statement = Statement::in_dialect(dialect, "SELECT ");
    let source = bind_keys(&mut statement, key_arrays(keys.iter()), Vec::new());
    let now = statement.bind(now);
    statement.push(&format!(
        "{}, (t.expiration IS NOT NULL AND t.expiration <= {now}) FROM {source} \
         JOIN relation_tuple t ON {} AND t.deleted_revision = {}",
        prefixed("t", KEY_COLUMNS),
        keys_join(),
        dialect.alive(),
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
    dialect: Dialect,
    updates: &[RelationshipUpdate],
    stamp: &Stamp<'_>,
    now: SystemTime,
    seq: &mut i32,
) -> DatastoreResult<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let keys: Vec<RelationshipKey> = updates.iter().map(|u| u.relationship.key()).collect();
    let living = living_versions(tx, dialect, &keys, now).await?;
    let plan = plan_updates(updates, &living, seq)?;
    retire(tx, dialect, &plan.retire, stamp).await?;
    let inserts: Vec<(&Relationship, i32)> = plan.insert;
    insert(tx, dialect, &inserts, stamp).await
}

/// Marks living versions deleted at this revision.
async fn retire(
    tx: &Transaction<'_>,
    dialect: Dialect,
    retire: &[(RelationshipKey, Option<i32>)],
    stamp: &Stamp<'_>,
) -> DatastoreResult<()> {
    if retire.is_empty() {
        return Ok(());
    }
    let seqs: Vec<Option<i32>> = retire.iter().map(|(_, s)| *s).collect();
    let mut statement = Statement::in_dialect(dialect, "UPDATE relation_tuple t SET ");
    let source = bind_keys(
        &mut statement,
        key_arrays(retire.iter().map(|(k, _)| k)),
        vec![(Box::new(seqs), "INT4[]", "seq")],
    );
    let revision = statement.bind(stamp.revision);
    statement.push(&format!(
        "deleted_revision = {revision}, deleted_seq = k.seq FROM {source} \
         WHERE {} AND t.deleted_revision = {}",
        keys_join(),
        dialect.alive(),
    ));
    tx.cached_execute(&statement.sql, &statement.params())
        .await
        .map_err(|e| from_pg("retiring relationships", e))?;
    Ok(())
}

/// Inserts new versions created at this revision.
async fn insert(
    tx: &Transaction<'_>,
    dialect: Dialect,
    inserts: &[(&Relationship, i32)],
    stamp: &Stamp<'_>,
) -> DatastoreResult<()> {
    if inserts.is_empty() {
        return Ok(());
    }
    let keys: Vec<RelationshipKey> = inserts.iter().map(|(r, _)| r.key()).collect();
    let caveats: Vec<Option<String>> = inserts
        .iter()
        .map(|(r, _)| r.caveat.as_ref().map(|c| c.name.clone()))
        .collect();
    let contexts = caveat_contexts(dialect, inserts.iter().map(|(r, _)| *r));
    let expirations: Vec<Option<SystemTime>> = inserts.iter().map(|(r, _)| r.expires_at).collect();
    let seqs: Vec<i32> = inserts.iter().map(|(_, s)| *s).collect();
    let mut statement = Statement::in_dialect(
        dialect,
        &format!(
            "INSERT INTO relation_tuple ({KEY_COLUMNS}, caveat_name, caveat_context, expiration, \
             created_revision, created_seq) SELECT "
        ),
    );
    let (context_array, context) = dialect.json_array();
    let source = bind_keys(
        &mut statement,
        key_arrays(keys.iter()),
        vec![
            (Box::new(caveats), "TEXT[]", "caveat_name"),
            (contexts, context_array, "caveat_context"),
            (Box::new(expirations), "TIMESTAMPTZ[]", "expiration"),
            (Box::new(seqs), "INT4[]", "seq"),
        ],
    );
    let revision = dialect.revision_param(&statement.bind(stamp.revision));
    statement.push(&format!(
        "{}, caveat_name, {context}, expiration, {revision}, seq FROM {source}",
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

/// The caveat contexts of `relationships` bound as the dialect's array
/// (`Dialect::json_array`): JSONB values, or their text on CockroachDB.
fn caveat_contexts<'r>(
    dialect: Dialect,
    relationships: impl Iterator<Item = &'r Relationship>,
) -> sql::Param {
    let contexts = relationships.map(sql::caveat_context);
    match dialect {
        Dialect::Postgres => Box::new(contexts.collect::<Vec<_>>()),
        Dialect::Cockroach => Box::new(
            contexts
                .map(|c| c.map(|value| value.to_string()))
                .collect::<Vec<Option<String>>>(),
        ),
    }
}

/// Relationships per statement of a CockroachDB bulk load: large enough
/// that round trips do not dominate, small enough for one statement's
/// arrays to stay far below CockroachDB's message limits.
const BULK_CHUNK: usize = 1_000;

/// A bulk load on CockroachDB, in one transaction: the first relationship
/// (in key order) loaded twice or already living fails it as on
/// PostgreSQL; living but expired versions are retired; the rest is
/// inserted in chunks of `BULK_CHUNK` through `unnest`.
async fn bulk_insert_once(
    inner: &Inner,
    relationships: &[Relationship],
    metadata: &TransactionMetadata,
    overlap: &[String],
) -> DatastoreResult<WriteOutcome> {
    if let Some(twice) = first_duplicate(relationships) {
        return Err(DatastoreError::AlreadyExists(Box::new(twice)));
    }
    let dialect = inner.dialect;
    let mut client = inner.write_client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| from_pg("starting a bulk load", e))?;
    let now = inner.clock.now();
    let stamp = stamp(inner, &tx, now, overlap).await?;
    let mut expired = Vec::new();
    let mut existing: Option<RelationshipKey> = None;
    for chunk in relationships.chunks(BULK_CHUNK) {
        let keys: Vec<RelationshipKey> = chunk.iter().map(Relationship::key).collect();
        for (key, expired_now) in living_versions(&tx, dialect, &keys, now).await? {
            if expired_now {
                expired.push((key, None));
            } else if existing.as_ref().is_none_or(|first| key < *first) {
                existing = Some(key);
            }
        }
    }
    if let Some(key) = existing {
        return Err(DatastoreError::AlreadyExists(Box::new(key)));
    }
    for chunk in expired.chunks(BULK_CHUNK) {
        retire(&tx, dialect, chunk, &stamp).await?;
    }
    let numbered: Vec<(&Relationship, i32)> = relationships.iter().zip(0..).collect();
    for chunk in numbered.chunks(BULK_CHUNK) {
        insert(&tx, dialect, chunk, &stamp).await?;
    }
    finish(tx, &stamp, metadata, false).await?;
    Ok(WriteOutcome {
        revision: from_db(stamp.revision),
        deleted_by_filter: 0,
        partial: false,
    })
}

/// The first key (in key order) that occurs twice.
fn first_duplicate(relationships: &[Relationship]) -> Option<RelationshipKey> {
    let mut keys: Vec<RelationshipKey> = relationships.iter().map(Relationship::key).collect();
    keys.sort_unstable();
    keys.windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0].clone())
}

/// Column types of a COPY of relationships, in `copy_relationships`'s
/// order; the staging table has all but the last (the revision).
const COPY_TYPES: [Type; 11] = [
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
    Type::INT8,
];

/// A bulk load on PostgreSQL. The fast way COPYs straight into the
/// relationships table and lets its unique index of living versions catch
/// a relationship that exists or comes twice; only then does the load run
/// again the slow way, through a staging table, to name the first such
/// relationship (in key order) in `AlreadyExists`.
async fn bulk_load_once(
    inner: &Inner,
    relationships: &[Relationship],
    metadata: &TransactionMetadata,
) -> DatastoreResult<WriteOutcome> {
    match copy_directly(inner, relationships, metadata).await? {
        Some(outcome) => Ok(outcome),
        None => copy_through_staging(inner, relationships, metadata).await,
    }
}

/// The fast way; `None` when a relationship exists or comes twice (the
/// transaction rolled back).
async fn copy_directly(
    inner: &Inner,
    relationships: &[Relationship],
    metadata: &TransactionMetadata,
) -> DatastoreResult<Option<WriteOutcome>> {
    let mut client = inner.write_client().await?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| from_pg("starting a bulk load", e))?;
    let now = inner.clock.now();
    let stamp = stamp(inner, &tx, now, &[]).await?;
    // Expired versions still hold their key in the unique index. Retiring
    // every expired one is invisible (an expired version is invisible at
    // any revision) and reports no change, as the memory engine's load
    // does for the ones it replaces.
    let retire_expired = format!(
        "UPDATE relation_tuple SET deleted_revision = $1 \
         WHERE deleted_revision = {} AND expiration <= $2",
        Dialect::Postgres.alive(),
    );
    tx.cached_execute(&retire_expired, &[&stamp.revision, &now])
        .await
        .map_err(|e| from_pg("retiring expired relationships", e))?;
    let copy = format!(
        "COPY relation_tuple ({KEY_COLUMNS}, caveat_name, caveat_context, expiration, \
         created_seq, created_revision) FROM STDIN (FORMAT binary)"
    );
    match copy_relationships(&tx, &copy, relationships, Some(&stamp.revision)).await {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Ok(None),
        Err(e) => return Err(from_pg("copying relationships", e)),
        Ok(()) => {}
    }
    finish(tx, &stamp, metadata, false).await?;
    Ok(Some(WriteOutcome {
        revision: from_db(stamp.revision),
        deleted_by_filter: 0,
        partial: false,
    }))
}

/// The slow way: COPY into a staging table, name the first relationship
/// that exists or comes twice, else retire the expired versions the load
/// replaces and insert from the staging table.
async fn copy_through_staging(
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
    let stamp = stamp(inner, &tx, now, &[]).await?;
    tx.batch_execute(
        "CREATE TEMPORARY TABLE bulk_staging (\
           namespace TEXT COLLATE \"C\", object_id TEXT COLLATE \"C\", relation TEXT COLLATE \"C\", \
           userset_namespace TEXT COLLATE \"C\", userset_object_id TEXT COLLATE \"C\", \
           userset_relation TEXT COLLATE \"C\", caveat_name TEXT, caveat_context JSONB, \
           expiration TIMESTAMPTZ, seq INTEGER) ON COMMIT DROP",
    )
    .await
    .map_err(|e| from_pg("preparing a bulk load", e))?;
    copy_relationships(
        &tx,
        "COPY bulk_staging FROM STDIN (FORMAT binary)",
        relationships,
        None,
    )
    .await
    .map_err(|e| from_pg("copying relationships", e))?;
    reject_existing(&tx, now).await?;
    let staged = prefixed("s", KEY_COLUMNS);
    let retire_expired = format!(
        "UPDATE relation_tuple t SET deleted_revision = $1 FROM bulk_staging s \
         WHERE ({}) = ({staged}) AND t.deleted_revision = {}",
        prefixed("t", KEY_COLUMNS),
        Dialect::Postgres.alive(),
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

/// Streams relationships with binary COPY (`copy` names the table and its
/// columns): the identity, caveat, context, expiration and change-feed
/// position, then `revision` when given.
async fn copy_relationships(
    tx: &Transaction<'_>,
    copy: &str,
    relationships: &[Relationship],
    revision: Option<&Rev>,
) -> Result<(), tokio_postgres::Error> {
    let sink = tx.copy_in(copy).await?;
    let types = match revision {
        Some(_) => &COPY_TYPES[..],
        None => &COPY_TYPES[..COPY_TYPES.len() - 1],
    };
    let writer = BinaryCopyInWriter::new(sink, types);
    pin_mut!(writer);
    for (seq, rel) in relationships.iter().enumerate() {
        let seq = i32::try_from(seq).unwrap_or(i32::MAX);
        let caveat = rel.caveat.as_ref().map(|c| c.name.as_str());
        let context = sql::caveat_context(rel);
        let mut row: Vec<&(dyn ToSql + Sync)> = vec![
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
        ];
        if let Some(revision) = revision {
            row.push(revision);
        }
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
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
         AND t.deleted_revision = {} AND (t.expiration IS NULL OR t.expiration > $1) \
         ORDER BY {} LIMIT 1",
        prefixed("s", KEY_COLUMNS),
        prefixed("t", KEY_COLUMNS),
        prefixed("s", KEY_COLUMNS),
        Dialect::Postgres.alive(),
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
