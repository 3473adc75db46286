//! Transport-free use cases: pick the revision a request reads at, validate
//! requests against the schema, and call the engine and the datastore. The
//! API layer converts protobuf to these calls and back; nothing here knows
//! about gRPC.

mod bulk;
mod check;
mod counters;
pub mod cursor;
pub mod error;
mod lookup;
pub mod metrics;
mod reflection;
mod relationships;
mod schema;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod validation_file;
mod watch;
mod write_validation;

use std::sync::Arc;

pub use bulk::{Export, ExportPage, ExportParams, Import};
pub use check::{
    BulkCheckItem, CaveatEvaluation, CaveatTrace, CheckOutcome, CheckParams, CheckTrace,
    Permissionship, Resolution, TraceNode, TraceResult,
};
pub use error::ServiceError;
pub use lookup::{LookedUpResource, LookedUpSubject, LookupResourcesParams, LookupSubjectsParams};
pub use reflection::{
    ReflectedCaveat, ReflectedDefinition, ReflectedParameter, ReflectedPermission,
    ReflectedRelation, ReflectedSchema, ReflectedSubjectType, RelationReference, SchemaDiff,
    SchemaFilter,
};
pub use relationships::{DeleteOutcome, DeleteParams, ReadPage, ReadParams, WriteParams};
pub use watch::{WatchEvent, WatchParams, WatchSettings, WatchStream};

use crate::datastore::Datastore;
use crate::datastore::schema_cache::{SchemaCache, SchemaLoadError};
use crate::dispatch::{DEFAULT_MAX_DEPTH, Dispatcher};
use crate::model::{Consistency, Revision};
use crate::schema::CompiledSchema;

/// Request limits, with SpiceDB's defaults (inventory §2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_updates_per_write: usize,
    pub max_preconditions: usize,
    pub max_read_limit: usize,
    pub max_delete_limit: usize,
    pub max_lookup_resources_limit: usize,
    /// Export page size (`--max-bulk-export-relationships-limit`).
    pub max_export_batch: usize,
    pub max_bulk_checks: usize,
    pub max_relationship_context_bytes: usize,
    pub max_request_context_bytes: usize,
    pub max_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_updates_per_write: 1000,
            max_preconditions: 1000,
            max_read_limit: 1000,
            max_delete_limit: 1000,
            max_lookup_resources_limit: 1000,
            max_export_batch: 10_000,
            max_bulk_checks: 10_000,
            max_relationship_context_bytes: 25_000,
            max_request_context_bytes: 4096,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Where one page of a filtered read starts.
struct FilteredPage {
    /// Binds the page's cursors to the request.
    fingerprint: String,
    /// Resume strictly after this key.
    after: Option<crate::model::RelationshipKey>,
    revision: Revision,
}

/// The use cases over one datastore and one dispatcher chain.
pub struct Services<D: Datastore> {
    datastore: Arc<D>,
    schemas: Arc<SchemaCache>,
    dispatcher: Arc<dyn Dispatcher>,
    limits: Limits,
}

impl<D: Datastore> Services<D> {
    pub fn new(
        datastore: Arc<D>,
        schemas: Arc<SchemaCache>,
        dispatcher: Arc<dyn Dispatcher>,
        limits: Limits,
    ) -> Self {
        Self {
            datastore,
            schemas,
            dispatcher,
            limits,
        }
    }

    pub fn datastore(&self) -> &Arc<D> {
        &self.datastore
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The revision a read with this consistency happens at (inventory §2.2).
    pub async fn revision_for(&self, consistency: Consistency) -> Result<Revision, ServiceError> {
        Ok(match consistency {
            Consistency::MinimizeLatency => self.datastore.optimized_revision().await?,
            Consistency::AtLeastAsFresh(token) => {
                let optimized = self.datastore.optimized_revision().await?;
                optimized.max(token)
            }
            Consistency::AtExactSnapshot(revision) => {
                self.datastore.check_revision(revision).await?;
                revision
            }
            Consistency::FullyConsistent => self.datastore.head_revision().await?,
        })
    }

    /// The revision a page of a paged read happens at: the one its cursor
    /// was issued at (if still readable), so every page reads one snapshot;
    /// else the one `consistency` picks.
    async fn page_revision(
        &self,
        cursor_revision: Option<Revision>,
        consistency: Consistency,
    ) -> Result<Revision, ServiceError> {
        match cursor_revision {
            Some(revision) => {
                self.datastore.check_revision(revision).await?;
                Ok(revision)
            }
            None => self.revision_for(consistency).await,
        }
    }

    /// Where a page of a filtered read (ReadRelationships, export) resumes:
    /// its cursor, which must belong to this RPC and filter, and the
    /// revision the page reads at.
    async fn resume_filtered(
        &self,
        purpose: cursor::Purpose,
        filter: &crate::model::RelationshipFilter,
        token: Option<&str>,
        consistency: Consistency,
    ) -> Result<FilteredPage, ServiceError> {
        let fingerprint = cursor::filter_fingerprint(purpose, filter);
        let resume = token.map(|t| cursor::decode(t, &fingerprint)).transpose()?;
        let revision = self
            .page_revision(resume.as_ref().map(|c| c.revision), consistency)
            .await?;
        Ok(FilteredPage {
            fingerprint,
            after: resume.map(|c| c.after),
            revision,
        })
    }

    /// A reader at `revision` and the schema in force there; a missing
    /// schema reads as "no definitions", so `type_name` is unknown.
    async fn snapshot_with_schema(
        &self,
        revision: Revision,
        type_name: &str,
    ) -> Result<(D::Reader, Arc<CompiledSchema>), ServiceError> {
        let reader = self.datastore.snapshot(revision);
        let schema = self.schemas.at(&reader).await.map_err(|e| match e {
            SchemaLoadError::NoSchema => ServiceError::UnknownDefinition {
                definition: type_name.to_string(),
            },
            SchemaLoadError::Datastore(d) => d.into(),
        })?;
        Ok((reader, schema))
    }

    /// The schema at head, if any (writes validate against it).
    async fn head_schema(&self) -> Result<(Revision, Option<Arc<CompiledSchema>>), ServiceError> {
        let head = self.datastore.head_revision().await?;
        let reader = self.datastore.snapshot(head);
        match self.schemas.at(&reader).await {
            Ok(schema) => Ok((head, Some(schema))),
            Err(SchemaLoadError::NoSchema) => Ok((head, None)),
            Err(SchemaLoadError::Datastore(d)) => Err(d.into()),
        }
    }
}
