//! WriteRelationships, DeleteRelationships, ReadRelationships and bulk
//! import: validate against the schema at head, then one datastore
//! transaction (writes) or one snapshot (reads).

use std::collections::HashSet;

use crate::datastore::{
    Datastore, DatastoreError, DeleteByFilter, Page, Reader, TransactionMetadata, WriteBatch,
};
use crate::model::{
    Consistency, Precondition, Relationship, RelationshipFilter, RelationshipUpdate, Revision,
    UpdateOperation,
};
use crate::schema::CompiledSchema;

use super::cursor;
use super::write_validation::{validate_filter, validate_relationship};
use super::{FilteredPage, ServiceError, Services};

/// SpiceDB's hard limit on transaction metadata, as JSON.
const MAX_METADATA_BYTES: usize = 65_000;

#[derive(Debug, Clone, Default)]
pub struct WriteParams {
    pub updates: Vec<RelationshipUpdate>,
    pub preconditions: Vec<Precondition>,
    pub metadata: TransactionMetadata,
}

#[derive(Debug, Clone)]
pub struct DeleteParams {
    pub filter: RelationshipFilter,
    pub preconditions: Vec<Precondition>,
    pub limit: Option<usize>,
    pub allow_partial: bool,
    pub metadata: TransactionMetadata,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteOutcome {
    pub revision: Revision,
    pub deleted: usize,
    /// More matched than the limit and partial deletion was allowed.
    pub partial: bool,
}

#[derive(Debug, Clone)]
pub struct ReadParams {
    pub filter: RelationshipFilter,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// One page of relationships, each with the cursor that resumes after it.
#[derive(Debug, Clone)]
pub struct ReadPage {
    pub revision: Revision,
    pub relationships: Vec<(Relationship, String)>,
}

impl<D: Datastore> Services<D> {
    pub async fn write_relationships(&self, params: WriteParams) -> Result<Revision, ServiceError> {
        self.check_write_sizes(
            params.updates.len(),
            params.preconditions.len(),
            &params.metadata,
        )?;
        let schema = self.schema_for_write().await?;
        let mut seen = HashSet::new();
        for update in &params.updates {
            let key = update.relationship.key();
            if !seen.insert(key.clone()) {
                return Err(ServiceError::DuplicateUpdate {
                    relationship: Box::new(key),
                });
            }
            if update.operation == UpdateOperation::Delete {
                validate_filter(&schema, &filter_of(&update.relationship))?;
            } else {
                validate_relationship(
                    &schema,
                    &update.relationship,
                    self.limits.max_relationship_context_bytes,
                )?;
            }
        }
        validate_preconditions(&schema, &params.preconditions)?;
        let batch = WriteBatch {
            preconditions: params.preconditions,
            updates: params.updates,
            metadata: params.metadata,
            ..Default::default()
        };
        Ok(self.commit(batch).await?.revision)
    }

    pub async fn delete_relationships(
        &self,
        params: DeleteParams,
    ) -> Result<DeleteOutcome, ServiceError> {
        self.check_write_sizes(0, params.preconditions.len(), &params.metadata)?;
        if let Some(limit) = params.limit
            && limit > self.limits.max_delete_limit
        {
            return Err(ServiceError::ExceedsLimit {
                field: "optional_limit".into(),
                value: limit as u64,
                max: self.limits.max_delete_limit as u64,
            });
        }
        let schema = self.schema_for_write().await?;
        validate_filter(&schema, &params.filter)?;
        validate_preconditions(&schema, &params.preconditions)?;
        let batch = WriteBatch {
            preconditions: params.preconditions,
            delete_by_filter: Some(DeleteByFilter {
                filter: params.filter,
                limit: params.limit,
                allow_partial: params.allow_partial,
            }),
            metadata: params.metadata,
            ..Default::default()
        };
        let outcome = self.commit(batch).await?;
        Ok(DeleteOutcome {
            revision: outcome.revision,
            deleted: outcome.deleted_by_filter,
            partial: outcome.partial,
        })
    }

    /// ImportBulkRelationships: validated like CREATE, one transaction.
    pub async fn import_relationships(
        &self,
        relationships: Vec<Relationship>,
    ) -> Result<(Revision, usize), ServiceError> {
        let schema = self.schema_for_write().await?;
        for rel in &relationships {
            validate_relationship(&schema, rel, self.limits.max_relationship_context_bytes)?;
        }
        let count = relationships.len();
        let outcome = self
            .datastore
            .bulk_load(relationships, TransactionMetadata::new())
            .await?;
        Ok((outcome.revision, count))
    }

    pub async fn read_relationships(
        &self,
        params: ReadParams,
        consistency: Consistency,
    ) -> Result<ReadPage, ServiceError> {
        if let Some(limit) = params.limit
            && limit > self.limits.max_read_limit
        {
            return Err(ServiceError::ExceedsLimit {
                field: "optional_limit".into(),
                value: limit as u64,
                max: self.limits.max_read_limit as u64,
            });
        }
        let FilteredPage {
            fingerprint,
            after,
            revision,
        } = self
            .resume_filtered(
                cursor::Purpose::ReadRelationships,
                &params.filter,
                params.cursor.as_deref(),
                consistency,
            )
            .await?;
        let type_name = params.filter.resource_type.clone().unwrap_or_default();
        let (reader, schema) = self.snapshot_with_schema(revision, &type_name).await?;
        validate_filter(&schema, &params.filter)?;
        let page = Page {
            after,
            limit: params.limit,
            ..Default::default()
        };
        let relationships = reader
            .query(&params.filter, &page)
            .await?
            .into_iter()
            .map(|rel| {
                let token = cursor::encode(revision, &fingerprint, &rel.key());
                (rel, token)
            })
            .collect();
        Ok(ReadPage {
            revision,
            relationships,
        })
    }

    fn check_write_sizes(
        &self,
        updates: usize,
        preconditions: usize,
        metadata: &TransactionMetadata,
    ) -> Result<(), ServiceError> {
        if updates > self.limits.max_updates_per_write {
            return Err(ServiceError::TooManyUpdates {
                count: updates,
                max: self.limits.max_updates_per_write,
            });
        }
        if preconditions > self.limits.max_preconditions {
            return Err(ServiceError::TooManyPreconditions {
                count: preconditions,
                max: self.limits.max_preconditions,
            });
        }
        let size = serde_json::to_vec(metadata).map_or(0, |v| v.len());
        if size > MAX_METADATA_BYTES {
            return Err(ServiceError::MetadataTooLarge {
                size,
                max: MAX_METADATA_BYTES,
            });
        }
        Ok(())
    }

    /// The schema writes are validated against (head); none yet means no
    /// type is known.
    async fn schema_for_write(&self) -> Result<std::sync::Arc<CompiledSchema>, ServiceError> {
        self.head_schema()
            .await?
            .1
            .ok_or_else(|| ServiceError::UnknownDefinition {
                definition: String::new(),
            })
    }

    /// Commits a batch, naming the precondition that failed, if one did.
    pub(super) async fn commit(
        &self,
        batch: WriteBatch,
    ) -> Result<crate::datastore::WriteOutcome, ServiceError> {
        let preconditions = batch.preconditions.clone();
        self.datastore.write(batch).await.map_err(|e| match e {
            DatastoreError::PreconditionFailed { index } => {
                match preconditions.into_iter().nth(index) {
                    Some(precondition) => ServiceError::PreconditionFailed {
                        precondition: Box::new(precondition),
                    },
                    None => ServiceError::Internal {
                        message: format!("datastore reported unknown precondition {index}"),
                    },
                }
            }
            other => other.into(),
        })
    }
}

fn validate_preconditions(
    schema: &CompiledSchema,
    preconditions: &[Precondition],
) -> Result<(), ServiceError> {
    preconditions
        .iter()
        .try_for_each(|p| validate_filter(schema, &p.filter))
}

/// The filter that selects exactly one relationship's type and relation
/// (enough to validate a DELETE update's names).
fn filter_of(rel: &Relationship) -> RelationshipFilter {
    RelationshipFilter {
        resource_type: Some(rel.resource.object_type.clone()),
        relation: Some(rel.relation.clone()),
        ..Default::default()
    }
}
