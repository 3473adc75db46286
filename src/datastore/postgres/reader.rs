//! Owns `PostgresReader`: reads pinned to one revision. Every read is one
//! statement with the revision's visibility rule (on CockroachDB also run
//! `AS OF SYSTEM TIME` that revision), so it needs no transaction and sees
//! the same rows whenever it runs. A read whose pooled
//! connection turns out broken (the database restarted) runs once more on a
//! fresh one. Depends on `sql`, `error` and the port's types.

use std::future::Future;
use std::sync::{Arc, Mutex};

use deadpool_postgres::Object;

use super::error::{from_pg, is_broken_connection};
use super::sql::{self, RELATIONSHIP_COLUMNS, Rev, Statement};
use super::{Inner, lock};
use crate::datastore::{
    DatastoreResult, Page, Reader, RelationshipCounter, ReverseQuery, StoredSchema,
};
use crate::model::{Relationship, RelationshipFilter, Revision};

/// A reader at one revision. Clones share the datastore.
#[derive(Clone)]
pub struct PostgresReader {
    inner: Arc<Inner>,
    revision: Rev,
    requested: Revision,
}

impl std::fmt::Debug for PostgresReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReader")
            .field("revision", &self.requested)
            .finish_non_exhaustive()
    }
}

/// Runs a read on a pooled connection, and once more on a fresh one if the
/// first connection was broken.
pub(super) async fn read_retrying<T, F, Fut>(
    inner: &Inner,
    context: &str,
    read: F,
) -> DatastoreResult<T>
where
    F: Fn(Object) -> Fut,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let client = inner.read_client().await?;
        match read(client).await {
            Ok(value) => return Ok(value),
            Err(e) => {
                let error = from_pg(context, e);
                if attempt >= 2 || !is_broken_connection(&error) {
                    return Err(error);
                }
            }
        }
    }
}

impl PostgresReader {
    pub(super) fn new(inner: Arc<Inner>, revision: Revision) -> Self {
        Self {
            // Revisions past the newest storable do not exist; they read as
            // the newest.
            revision: inner
                .to_db(revision)
                .unwrap_or(inner.dialect.newest_revision()),
            inner,
            requested: revision,
        }
    }

    /// Runs a built statement and decodes relationship rows.
    async fn relationships(
        &self,
        context: &str,
        statement: Statement,
    ) -> DatastoreResult<Vec<Relationship>> {
        let statement = &statement;
        let inner = &self.inner;
        let rows = read_retrying(inner, context, |client| async move {
            let prepared = inner.prepare_read(&client, &statement.sql).await?;
            client.query(&prepared, &statement.params()).await
        })
        .await?;
        sql::relationships(&rows)
    }

    fn select(&self) -> Statement {
        let as_of = self.as_of();
        let mut statement = Statement::in_dialect(
            self.inner.dialect,
            &format!("SELECT {RELATIONSHIP_COLUMNS} FROM relation_tuple{as_of} WHERE TRUE"),
        );
        statement.visible_at(self.revision, self.inner.clock.now());
        statement
    }

    /// The dialect's clause pinning a statement's timestamp to this
    /// reader's revision (empty on PostgreSQL).
    fn as_of(&self) -> String {
        self.inner.dialect.as_of(self.revision)
    }
}

impl Reader for PostgresReader {
    fn revision(&self) -> Revision {
        self.requested
    }

    async fn query(
        &self,
        filter: &RelationshipFilter,
        page: &Page,
    ) -> DatastoreResult<Vec<Relationship>> {
        let mut statement = self.select();
        statement.filter(filter);
        if let Some(after) = &page.after {
            statement.after(after);
        }
        statement.order_and_limit(page.limit);
        self.relationships("reading relationships", statement).await
    }

    async fn query_resources(
        &self,
        resource_type: &str,
        resource_ids: &[&str],
        relation: &str,
        subject_types: &[&str],
    ) -> DatastoreResult<Vec<Relationship>> {
        let mut statement = self.select();
        statement.equal("namespace", Some(resource_type));
        let ids = statement.bind(to_strings(resource_ids));
        statement.push(&format!(" AND object_id = ANY({ids})"));
        statement.equal("relation", Some(relation));
        if !subject_types.is_empty() {
            let types = statement.bind(to_strings(subject_types));
            statement.push(&format!(" AND userset_namespace = ANY({types})"));
        }
        statement.order_and_limit(None);
        self.relationships("reading relationships by resource", statement)
            .await
    }

    async fn query_subjects(
        &self,
        query: &ReverseQuery,
        page: &Page,
    ) -> DatastoreResult<Vec<Relationship>> {
        let mut statement = self.select();
        statement.equal("userset_namespace", Some(&query.subject_type));
        let ids = statement.bind(query.subject_ids.clone());
        statement.push(&format!(" AND userset_object_id = ANY({ids})"));
        statement.equal("userset_relation", query.subject_relation.as_deref());
        statement.equal("namespace", Some(&query.resource_type));
        statement.equal("relation", Some(&query.resource_relation));
        if let Some(after) = &page.after {
            statement.after(after);
        }
        // Key order even when any order would do: one fixed order per
        // snapshot whatever plan PostgreSQL picks.
        statement.order_and_limit(page.limit);
        self.relationships("reading relationships by subject", statement)
            .await
    }

    async fn schema(&self) -> DatastoreResult<Option<Arc<StoredSchema>>> {
        if let Some(found) = self.inner.schema.get(self.revision) {
            return Ok(found);
        }
        let revision = self.revision;
        let (inner, sql) = (
            &self.inner,
            &format!(
                "SELECT revision, text, hash FROM schema_history{} WHERE revision <= $1 \
                 ORDER BY revision DESC LIMIT 1",
                self.as_of()
            ),
        );
        let row = read_retrying(inner, "reading the schema", |client| async move {
            let statement = inner.prepare_read(&client, sql).await?;
            client.query_opt(&statement, &[&revision]).await
        })
        .await?;
        let (from, schema) = match row {
            Some(row) => {
                let hash: Vec<u8> = row.get(2);
                let schema = StoredSchema {
                    text: row.get(1),
                    hash: hash.try_into().unwrap_or([0; 32]),
                };
                (row.get::<_, Rev>(0), Some(Arc::new(schema)))
            }
            None => (Rev(0), None),
        };
        if revision <= self.inner.known_head() {
            self.inner.schema.remember(from, revision, schema.clone());
        }
        Ok(schema)
    }

    async fn counters(&self) -> DatastoreResult<Vec<RelationshipCounter>> {
        let revision = self.revision;
        let (inner, sql) = (
            &self.inner,
            &format!(
                "SELECT counters FROM counter_history{} WHERE revision <= $1 \
                 ORDER BY revision DESC LIMIT 1",
                self.as_of()
            ),
        );
        let row = read_retrying(inner, "reading the counters", |client| async move {
            let statement = inner.prepare_read(&client, sql).await?;
            client.query_opt(&statement, &[&revision]).await
        })
        .await?;
        match row {
            Some(row) => sql::decode_counters(row.get(0)),
            None => Ok(Vec::new()),
        }
    }
}

fn to_strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The schema in force over a span of committed revisions, so that the
/// engine's per-dispatch schema read costs no round trip.
#[derive(Default)]
pub(super) struct SchemaMemo {
    span: Mutex<Option<SchemaSpan>>,
}

struct SchemaSpan {
    /// The schema row's revision (0 when none was written).
    from: Rev,
    /// A committed revision at which this schema was still in force.
    through: Rev,
    schema: Option<Arc<StoredSchema>>,
}

impl SchemaMemo {
    /// The schema at `revision`, when the memo covers it.
    fn get(&self, revision: Rev) -> Option<Option<Arc<StoredSchema>>> {
        let span = lock(&self.span);
        let span = span.as_ref()?;
        (span.from <= revision && revision <= span.through).then(|| span.schema.clone())
    }

    /// Records that the schema written at `from` was in force at the
    /// committed revision `through`; keeps the newest span.
    fn remember(&self, from: Rev, through: Rev, schema: Option<Arc<StoredSchema>>) {
        let mut span = lock(&self.span);
        if span.as_ref().is_none_or(|s| through >= s.through) {
            *span = Some(SchemaSpan {
                from,
                through,
                schema,
            });
        }
    }
}
