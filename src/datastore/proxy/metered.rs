//! Owns `Metered`: a datastore (and its readers) that records each call's
//! latency and failures (`datastore::metrics`), runs it in a `datastore`
//! tracing span named by its operation (debug level, inside the call's
//! `grpc` span), and forwards it unchanged.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument as _;

use crate::datastore::metrics::{ERRORS_TOTAL, QUERY_SECONDS};
use crate::datastore::{
    Datastore, DatastoreError, DatastoreResult, Page, Reader, RelationshipCounter, ReverseQuery,
    RevisionChanges, StoredSchema, TransactionMetadata, WriteBatch, WriteOutcome,
};
use crate::model::{Relationship, RelationshipFilter, Revision};

/// Any datastore, metered.
#[derive(Debug, Clone)]
pub struct Metered<D> {
    inner: D,
}

impl<D> Metered<D> {
    pub fn new(inner: D) -> Self {
        Self { inner }
    }

    /// The datastore underneath (for what only it offers, like its pools).
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

/// A reader of a metered datastore.
#[derive(Debug, Clone)]
pub struct MeteredReader<R> {
    inner: R,
}

/// The error's kind, as a label.
fn kind(error: &DatastoreError) -> &'static str {
    match error {
        DatastoreError::RevisionOutOfRange(_) => "revision_out_of_range",
        DatastoreError::PreconditionFailed { .. } => "precondition_failed",
        DatastoreError::AlreadyExists(_) => "already_exists",
        DatastoreError::TooManyToDelete { .. } => "too_many_to_delete",
        DatastoreError::InvalidCursor(_) => "invalid_cursor",
        DatastoreError::Unavailable(_) => "unavailable",
        DatastoreError::SerializationFailure(_) => "serialization_failure",
        DatastoreError::NotMigrated(_) => "not_migrated",
        DatastoreError::CounterAlreadyRegistered(_) => "counter_already_registered",
        DatastoreError::CounterNotRegistered(_) => "counter_not_registered",
        DatastoreError::Internal(_) => "internal",
    }
}

/// Awaits `call` in its span, recording its latency under `operation`, and
/// its error.
async fn timed<T>(
    operation: &'static str,
    call: impl Future<Output = DatastoreResult<T>>,
) -> DatastoreResult<T> {
    let started = Instant::now();
    let result = call
        .instrument(tracing::debug_span!("datastore", operation))
        .await;
    metrics::histogram!(QUERY_SECONDS, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    if let Err(error) = &result {
        metrics::counter!(ERRORS_TOTAL, "operation" => operation, "kind" => kind(error))
            .increment(1);
    }
    result
}

impl<R: Reader> Reader for MeteredReader<R> {
    fn revision(&self) -> Revision {
        self.inner.revision()
    }

    async fn query(
        &self,
        filter: &RelationshipFilter,
        page: &Page,
    ) -> DatastoreResult<Vec<Relationship>> {
        timed("query", self.inner.query(filter, page)).await
    }

    async fn query_resources(
        &self,
        resource_type: &str,
        resource_ids: &[&str],
        relation: &str,
        subject_types: &[&str],
    ) -> DatastoreResult<Vec<Relationship>> {
        let call = self
            .inner
            .query_resources(resource_type, resource_ids, relation, subject_types);
        timed("query_resources", call).await
    }

    async fn query_subjects(
        &self,
        query: &ReverseQuery,
        page: &Page,
    ) -> DatastoreResult<Vec<Relationship>> {
        timed("query_subjects", self.inner.query_subjects(query, page)).await
    }

    async fn schema(&self) -> DatastoreResult<Option<Arc<StoredSchema>>> {
        timed("schema", self.inner.schema()).await
    }

    async fn counters(&self) -> DatastoreResult<Vec<RelationshipCounter>> {
        timed("counters", self.inner.counters()).await
    }
}

impl<D: Datastore> Datastore for Metered<D> {
    type Reader = MeteredReader<D::Reader>;

    fn unique_id(&self) -> &str {
        self.inner.unique_id()
    }

    async fn head_revision(&self) -> DatastoreResult<Revision> {
        timed("head_revision", self.inner.head_revision()).await
    }

    async fn optimized_revision(&self) -> DatastoreResult<Revision> {
        timed("optimized_revision", self.inner.optimized_revision()).await
    }

    async fn check_revision(&self, revision: Revision) -> DatastoreResult<()> {
        timed("check_revision", self.inner.check_revision(revision)).await
    }

    fn snapshot(&self, revision: Revision) -> Self::Reader {
        MeteredReader {
            inner: self.inner.snapshot(revision),
        }
    }

    async fn write(&self, batch: WriteBatch) -> DatastoreResult<WriteOutcome> {
        timed("write", self.inner.write(batch)).await
    }

    async fn bulk_load(
        &self,
        relationships: Vec<Relationship>,
        metadata: TransactionMetadata,
    ) -> DatastoreResult<WriteOutcome> {
        timed("bulk_load", self.inner.bulk_load(relationships, metadata)).await
    }

    async fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> DatastoreResult<Vec<RevisionChanges>> {
        timed("changes_since", self.inner.changes_since(after, limit)).await
    }

    /// Not timed: it waits for the next commit, however long that takes.
    async fn wait_for_commit(&self, after: Revision) -> DatastoreResult<Revision> {
        self.inner.wait_for_commit(after).await
    }

    async fn ready(&self) -> DatastoreResult<()> {
        self.inner.ready().await
    }

    async fn collect_garbage(&self) -> DatastoreResult<usize> {
        timed("collect_garbage", self.inner.collect_garbage()).await
    }
}
