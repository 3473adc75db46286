//! WriteSchema and ReadSchema. The schema is stored as written (its doc
//! comments are reported as written) and read back compiled; ReadSchema
//! prints it canonically. A new schema replaces the old one atomically, and
//! is refused if it would orphan stored relationships: every relation,
//! definition or allowed subject type it removes becomes a MUST_NOT_MATCH
//! precondition of the same transaction, so the check and the write cannot
//! race with a concurrent relationship write.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::datastore::{Datastore, StoredSchema, WriteBatch};
use crate::model::{
    ELLIPSIS, Precondition, PreconditionKind, RelationshipFilter, Revision, SubjectFilter,
};
use crate::schema::{self, CompiledSchema, SchemaErrors, SubjectTarget};

use super::{ServiceError, Services};

impl<D: Datastore> Services<D> {
    pub async fn write_schema(&self, text: &str) -> Result<Revision, ServiceError> {
        let compiled = schema::compile(text).map_err(|errors| schema_error(errors, text))?;
        let (_, current) = self.head_schema().await?;
        let orphan_checks = current
            .as_deref()
            .map(|old| orphan_preconditions(old, &compiled))
            .unwrap_or_default();
        let (preconditions, reasons): (Vec<Precondition>, Vec<String>) =
            orphan_checks.into_iter().unzip();
        let stored = StoredSchema {
            text: text.to_string(),
            hash: Sha256::digest(text.as_bytes()).into(),
        };
        self.schemas.insert(stored.hash, Arc::new(compiled));
        let batch = WriteBatch {
            preconditions,
            schema: Some(stored),
            ..Default::default()
        };
        match self.commit(batch).await {
            Ok(outcome) => Ok(outcome.revision),
            Err(ServiceError::PreconditionFailed { precondition }) => {
                let message = reasons
                    .into_iter()
                    .find(|_| true)
                    .map(|first| describe_orphan(&precondition).unwrap_or(first))
                    .unwrap_or_default();
                Err(ServiceError::SchemaWouldOrphan { message })
            }
            Err(e) => Err(e),
        }
    }

    /// The canonical text of the schema at head, and that revision.
    pub async fn read_schema(&self) -> Result<(String, Revision), ServiceError> {
        let (head, schema) = self.head_schema().await?;
        let schema = schema.ok_or(ServiceError::SchemaNotFound)?;
        Ok((schema::format(&schema), head))
    }
}

/// A schema that does not compile, as SpiceDB reports it: what its parser
/// and translator refuse is a parse error, what its type system refuses a
/// type error.
pub(super) fn schema_error(errors: SchemaErrors, text: &str) -> ServiceError {
    let source_text = text.to_string();
    if errors.first().kind.is_parse_error() {
        ServiceError::SchemaParse {
            errors,
            source_text,
        }
    } else {
        ServiceError::SchemaType {
            errors,
            source_text,
        }
    }
}

/// What the new schema no longer allows that the old one stored, each as a
/// filter that must match no relationship, with the message to give if one
/// does.
fn orphan_preconditions(old: &CompiledSchema, new: &CompiledSchema) -> Vec<(Precondition, String)> {
    let mut out = Vec::new();
    let must_not_match = |filter: RelationshipFilter| Precondition {
        kind: PreconditionKind::MustNotMatch,
        filter,
    };
    for def in old.definitions() {
        let Some(new_def) = new.definition(&def.name) else {
            out.push((
                must_not_match(RelationshipFilter {
                    resource_type: Some(def.name.clone()),
                    ..Default::default()
                }),
                format!(
                    "cannot delete definition `{}`, as at least one relationship exists under it",
                    def.name
                ),
            ));
            continue;
        };
        for relation in def.relations.iter().filter(|r| !r.is_permission()) {
            let kept = new_def
                .relation(&relation.name)
                .filter(|r| !r.is_permission());
            let Some(kept) = kept else {
                out.push((
                    must_not_match(RelationshipFilter {
                        resource_type: Some(def.name.clone()),
                        relation: Some(relation.name.clone()),
                        ..Default::default()
                    }),
                    format!(
                        "cannot delete relation `{}` in object definition `{}`, as at least one relationship exists under it",
                        relation.name, def.name
                    ),
                ));
                continue;
            };
            for allowed in relation.allowed_types() {
                let still_allowed = kept
                    .allowed_types()
                    .iter()
                    .any(|t| t.type_name == allowed.type_name && t.target == allowed.target);
                if still_allowed {
                    continue;
                }
                let (subject_id, subject_relation) = match &allowed.target {
                    SubjectTarget::Object => (None, Some(ELLIPSIS.to_string())),
                    SubjectTarget::Wildcard => (Some("*".to_string()), Some(ELLIPSIS.to_string())),
                    SubjectTarget::Relation(r) => (None, Some(r.clone())),
                };
                out.push((
                    must_not_match(RelationshipFilter {
                        resource_type: Some(def.name.clone()),
                        relation: Some(relation.name.clone()),
                        subject: Some(SubjectFilter {
                            subject_type: allowed.type_name.clone(),
                            subject_id,
                            relation: subject_relation,
                        }),
                        ..Default::default()
                    }),
                    format!(
                        "cannot remove allowed type `{}` from relation `{}` in object definition `{}`, as a relationship exists with it",
                        schema::print::allowed_type_text(allowed),
                        relation.name,
                        def.name
                    ),
                ));
            }
        }
    }
    out
}

/// The message for a failed orphan precondition, rebuilt from its filter.
fn describe_orphan(p: &Precondition) -> Option<String> {
    let f = &p.filter;
    let resource_type = f.resource_type.as_deref()?;
    Some(match (&f.relation, &f.subject) {
        (None, _) => format!(
            "cannot delete definition `{resource_type}`, as at least one relationship exists under it"
        ),
        (Some(relation), None) => format!(
            "cannot delete relation `{relation}` in object definition `{resource_type}`, as at least one relationship exists under it"
        ),
        (Some(relation), Some(subject)) => format!(
            "cannot remove allowed type `{}` from relation `{relation}` in object definition `{resource_type}`, as a relationship exists with it",
            subject.subject_type
        ),
    })
}
