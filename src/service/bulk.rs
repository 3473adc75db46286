//! Bulk import and export of relationships (ImportBulkRelationships,
//! ExportBulkRelationships and their deprecated experimental aliases).
//!
//! An import is a session: it reads the schema at head when it begins,
//! validates each batch as it arrives (like CREATE, so a bad relationship
//! fails the import before the client has sent everything), and commits
//! everything in one datastore transaction at the end, which fails with
//! ALREADY_EXISTS, changing nothing, if any relationship exists.
//!
//! An export walks the schema's definitions sorted by name and, within
//! each, relationships in key (resource) order, at one revision, in pages;
//! each page carries a cursor (`cursor.rs`) bound to the request and the
//! revision, which resumes after the page's last relationship.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::datastore::schema_cache::SchemaLoadError;
use crate::datastore::{Datastore, Page, Reader, TransactionMetadata};
use crate::model::{Consistency, Relationship, RelationshipFilter, RelationshipKey, Revision};
use crate::schema::CompiledSchema;

use super::cursor::{self, Purpose};
use super::write_validation::validate_relationship;
use super::{FilteredPage, ServiceError, Services};

/// How often a long import logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// An import in progress: everything received so far, validated.
pub struct Import<D: Datastore> {
    datastore: Arc<D>,
    /// The schema at head when the import began; `None` if none exists,
    /// so every relationship names an unknown definition.
    schema: Option<Arc<CompiledSchema>>,
    max_context_bytes: usize,
    relationships: Vec<Relationship>,
    started: Instant,
    last_progress: Instant,
}

impl<D: Datastore> Services<D> {
    /// Begins an import (on the stream's first message).
    pub async fn begin_import(&self) -> Result<Import<D>, ServiceError> {
        let (_, schema) = self.head_schema().await?;
        let now = Instant::now();
        Ok(Import {
            datastore: self.datastore.clone(),
            schema,
            max_context_bytes: self.limits.max_relationship_context_bytes,
            relationships: Vec::new(),
            started: now,
            last_progress: now,
        })
    }
}

impl<D: Datastore> Import<D> {
    /// Validates one batch like CREATE and keeps it for the commit.
    pub fn add(&mut self, batch: Vec<Relationship>) -> Result<(), ServiceError> {
        for rel in &batch {
            let Some(schema) = &self.schema else {
                return Err(ServiceError::UnknownDefinition {
                    definition: rel.resource.object_type.clone(),
                });
            };
            validate_relationship(schema, rel, self.max_context_bytes)?;
        }
        self.relationships.extend(batch);
        if self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = Instant::now();
            tracing::info!(
                received = self.relationships.len(),
                elapsed = ?self.started.elapsed(),
                "importing relationships"
            );
        }
        Ok(())
    }

    /// Writes everything received in one transaction; returns its revision
    /// (`None` when nothing was received, and nothing is written) and the
    /// number loaded.
    pub async fn commit(self) -> Result<(Option<Revision>, usize), ServiceError> {
        let count = self.relationships.len();
        if count == 0 {
            return Ok((None, 0));
        }
        let long = self.started.elapsed() >= PROGRESS_EVERY;
        let outcome = self
            .datastore
            .bulk_load(self.relationships, TransactionMetadata::new())
            .await?;
        if long {
            tracing::info!(
                loaded = count,
                elapsed = ?self.started.elapsed(),
                revision = %outcome.revision,
                "imported relationships"
            );
        }
        Ok((Some(outcome.revision), count))
    }
}

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportParams {
    /// Only relationships matching this filter; its resource type, if any,
    /// picks the one definition to walk.
    pub filter: Option<RelationshipFilter>,
    /// Page size; `None` is the server's maximum.
    pub limit: Option<usize>,
    /// Resume after this cursor (its revision overrides the consistency).
    pub cursor: Option<String>,
}

/// One page of an export.
#[derive(Debug, Clone)]
pub struct ExportPage {
    pub relationships: Vec<Relationship>,
    /// Resumes after the page's last relationship.
    pub cursor: String,
}

/// An export in progress at one revision.
pub struct Export<R: Reader> {
    reader: R,
    revision: Revision,
    fingerprint: String,
    filter: RelationshipFilter,
    /// Definitions still to walk, sorted by name; the first is current.
    types: std::collections::VecDeque<String>,
    /// The last key returned, inside the current definition.
    after: Option<RelationshipKey>,
    limit: usize,
}

impl<D: Datastore> Services<D> {
    /// Starts (or resumes) an export. Relationships are read at the
    /// cursor's revision when resuming, else at the consistency's.
    pub async fn export_relationships(
        &self,
        params: ExportParams,
        consistency: Consistency,
    ) -> Result<Export<D::Reader>, ServiceError> {
        let max = self.limits.max_export_batch;
        let limit = match params.limit {
            Some(limit) if limit > max => {
                return Err(ServiceError::ExceedsLimit {
                    field: "optional_limit".into(),
                    value: limit as u64,
                    max: max as u64,
                });
            }
            Some(limit) if limit > 0 => limit,
            _ => max,
        };
        let filter = params.filter.unwrap_or_default();
        let FilteredPage {
            fingerprint,
            after,
            revision,
        } = self
            .resume_filtered(
                Purpose::ExportRelationships,
                &filter,
                params.cursor.as_deref(),
                consistency,
            )
            .await?;
        let reader = self.datastore.snapshot(revision);
        // As SpiceDB: only definitions of the schema are walked, and none
        // at all before a schema exists (the export is empty, not an error).
        let mut types: Vec<String> = match self.schemas.at(&reader).await {
            Ok(schema) => schema
                .definitions()
                .iter()
                .map(|d| d.name.clone())
                .collect(),
            Err(SchemaLoadError::NoSchema) => Vec::new(),
            Err(SchemaLoadError::Datastore(e)) => return Err(e.into()),
        };
        types.sort_unstable();
        if let Some(only) = &filter.resource_type {
            types.retain(|t| t == only);
        }
        if let Some(after) = &after {
            // Definitions before the cursor's were exported in full.
            types.retain(|t| *t >= after.resource.object_type);
        }
        Ok(Export {
            reader,
            revision,
            fingerprint,
            filter,
            types: types.into(),
            after,
            limit,
        })
    }
}

impl<R: Reader> Export<R> {
    /// The revision the export reads at.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The next page, or `None` when the export is complete. Every page
    /// but the last is full: a page continues into the next definition.
    pub async fn next_page(&mut self) -> Result<Option<ExportPage>, ServiceError> {
        let mut relationships: Vec<Relationship> = Vec::new();
        while relationships.len() < self.limit {
            let Some(resource_type) = self.types.front() else {
                break;
            };
            let filter = RelationshipFilter {
                resource_type: Some(resource_type.clone()),
                ..self.filter.clone()
            };
            // A cursor in an earlier definition does not apply here.
            let after = self
                .after
                .take()
                .filter(|key| key.resource.object_type == *resource_type);
            let want = self.limit - relationships.len();
            let page = Page {
                after,
                limit: Some(want),
                ..Page::default()
            };
            let read = self.reader.query(&filter, &page).await?;
            let exhausted = read.len() < want;
            relationships.extend(read);
            self.after = relationships.last().map(Relationship::key);
            if exhausted {
                self.types.pop_front();
            }
        }
        let Some(last) = relationships.last() else {
            return Ok(None);
        };
        let cursor = cursor::encode(self.revision, &self.fingerprint, &last.key());
        Ok(Some(ExportPage {
            relationships,
            cursor,
        }))
    }
}
