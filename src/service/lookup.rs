//! LookupResources, LookupSubjects and ExpandPermissionTree: resolve the
//! revision (a cursor's, when resuming), validate names against the schema
//! there, run the graph walk, and turn memberships into permissionships
//! with the request's caveat context.
//!
//! Cursors are bound to the request (its fingerprint) and its revision, so
//! every page of one lookup reads the same snapshot. LookupResources
//! resumes by position, because its walk emits results in one order for a
//! given snapshot; LookupSubjects pages concrete subjects sorted by id.

use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::datastore::Datastore;
use crate::graph::expand::{self, ExpandNode};
use crate::graph::lookup_resources::{self, FoundResource, LookupResourcesRequest};
use crate::graph::lookup_subjects::{self, LookupSubjectsRequest};
use crate::graph::subject_set::{SubjectSet, WILDCARD};
use crate::model::{Consistency, ELLIPSIS, ObjectRef, Revision, SubjectRef};
use crate::schema::CompiledSchema;

use super::check::{check_error, permissionship};
use super::cursor;
use super::write_validation::{known_definition, unknown_relation};
use super::{Permissionship, ServiceError, Services};

/// Results buffered between the walk and a slow reader of the stream.
const LOOKUP_BUFFER: usize = 256;

type Context = serde_json::Map<String, serde_json::Value>;

#[derive(Debug, Clone)]
pub struct LookupResourcesParams {
    pub resource_type: String,
    pub permission: String,
    pub subject: SubjectRef,
    pub context: Context,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// One resource found, with the cursor that resumes after it.
#[derive(Debug, Clone, PartialEq)]
pub struct LookedUpResource {
    pub id: String,
    pub permissionship: Permissionship,
    pub cursor: String,
}

#[derive(Debug, Clone)]
pub struct LookupSubjectsParams {
    pub resource: ObjectRef,
    pub permission: String,
    pub subject_type: String,
    /// Empty for plain objects.
    pub subject_relation: String,
    pub context: Context,
    pub include_wildcard: bool,
    /// Concrete subjects per page.
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// One subject found: a concrete id, or `*` with the ids it excludes.
#[derive(Debug, Clone, PartialEq)]
pub struct LookedUpSubject {
    pub id: String,
    pub permissionship: Permissionship,
    /// Only for `*`: excluded ids, each always (`HasPermission`) or
    /// conditionally excluded.
    pub excluded: Vec<(String, Permissionship)>,
    pub cursor: String,
}

impl<D: Datastore> Services<D> {
    /// Streams the resources the subject can reach, as the walk finds them.
    pub async fn lookup_resources(
        &self,
        params: LookupResourcesParams,
        consistency: Consistency,
    ) -> Result<
        (
            Revision,
            BoxStream<'static, Result<LookedUpResource, ServiceError>>,
        ),
        ServiceError,
    > {
        let context_text = serde_json::Value::Object(params.context.clone()).to_string();
        let fingerprint = cursor::fingerprint(&[
            "lookup_resources",
            &params.resource_type,
            &params.permission,
            &params.subject.to_string(),
            &context_text,
        ]);
        let (resume, revision) = self
            .resume_position(params.cursor.as_deref(), &fingerprint, consistency)
            .await?;
        let skip: usize = match &resume {
            Some(c) => c.after.parse().map_err(|_| ServiceError::InvalidCursor {
                message: "the cursor is malformed".into(),
                other_request: false,
            })?,
            None => 0,
        };
        let (_, schema) = self
            .snapshot_with_schema(revision, &params.resource_type)
            .await?;
        validate_names(
            &schema,
            &params.resource_type,
            &params.permission,
            &params.subject,
        )?;

        let (tx, rx) = mpsc::channel::<FoundResource>(LOOKUP_BUFFER);
        let walk = tokio::spawn({
            let schema = Arc::clone(&schema);
            let dispatcher = Arc::clone(&self.dispatcher);
            let request = LookupResourcesRequest {
                resource_type: params.resource_type.clone(),
                permission: params.permission.clone(),
                subject: params.subject.clone(),
                revision,
                max_depth: self.limits.max_depth,
            };
            async move {
                lookup_resources::lookup_resources(&schema, dispatcher.as_ref(), &request, &tx)
                    .await
            }
        });

        let found = futures::stream::unfold((rx, Some(walk)), |(mut rx, walk)| async move {
            match rx.recv().await {
                Some(found) => Some((Ok(found), (rx, walk))),
                None => {
                    // The walk is over; report how it ended, once.
                    let outcome = match walk?.await {
                        Ok(Ok(())) => return None,
                        Ok(Err(e)) => check_error(e),
                        Err(join) => ServiceError::Internal {
                            message: format!("lookup task failed: {join}"),
                        },
                    };
                    Some((Err(outcome), (rx, None)))
                }
            }
        });
        let context = params.context;
        let resolved = found.filter_map(move |item| {
            let resolved = item.and_then(|f| {
                Ok(match permissionship(&schema, f.membership, &context)? {
                    Permissionship::NoPermission => None,
                    p => Some((f.id, p)),
                })
            });
            async move { resolved.transpose() }
        });
        let limit = params.limit.unwrap_or(usize::MAX);
        let paged = resolved
            .skip(skip)
            .take(limit)
            .enumerate()
            .map(move |(i, item)| {
                item.map(|(id, permissionship)| LookedUpResource {
                    id,
                    permissionship,
                    cursor: cursor::encode_position(
                        revision,
                        &fingerprint,
                        &(skip + i + 1).to_string(),
                    ),
                })
            });
        Ok((revision, paged.boxed()))
    }

    /// The subjects of one type in a resource's permission, concrete ones
    /// sorted by id (after the wildcard, which comes first).
    pub async fn lookup_subjects(
        &self,
        params: LookupSubjectsParams,
        consistency: Consistency,
    ) -> Result<(Revision, Vec<LookedUpSubject>), ServiceError> {
        let subject_relation = if params.subject_relation.is_empty() {
            ELLIPSIS.to_string()
        } else {
            params.subject_relation.clone()
        };
        let context_text = serde_json::Value::Object(params.context.clone()).to_string();
        let fingerprint = cursor::fingerprint(&[
            "lookup_subjects",
            &params.resource.to_string(),
            &params.permission,
            &params.subject_type,
            &subject_relation,
            &context_text,
            if params.include_wildcard { "*" } else { "" },
        ]);
        let (resume, revision) = self
            .resume_position(params.cursor.as_deref(), &fingerprint, consistency)
            .await?;
        let (_, schema) = self
            .snapshot_with_schema(revision, &params.resource.object_type)
            .await?;
        let subject = SubjectRef::set(params.subject_type.clone(), "", subject_relation.clone());
        validate_names(
            &schema,
            &params.resource.object_type,
            &params.permission,
            &subject,
        )?;
        let request = LookupSubjectsRequest {
            resource: params.resource.clone(),
            relation: params.permission.clone(),
            subject_type: params.subject_type.clone(),
            subject_relation,
            revision,
            max_depth: self.limits.max_depth,
        };
        let set = lookup_subjects::lookup_subjects(self.dispatcher.as_ref(), &schema, &request)
            .await
            .map_err(check_error)?;
        let after = resume.map(|c| c.after);
        let subjects = resolve_subjects(&schema, &set, &params, after.as_deref(), |after| {
            cursor::encode_position(revision, &fingerprint, after)
        })?;
        Ok((revision, subjects))
    }

    /// The one-level tree of a relation or permission.
    pub async fn expand(
        &self,
        resource: ObjectRef,
        permission: String,
        consistency: Consistency,
    ) -> Result<(Revision, ExpandNode), ServiceError> {
        let revision = self.revision_for(consistency).await?;
        let (reader, schema) = self
            .snapshot_with_schema(revision, &resource.object_type)
            .await?;
        let definition = known_definition(&schema, &resource.object_type)?;
        if definition.relation(&permission).is_none() {
            return Err(unknown_relation(&resource.object_type, &permission));
        }
        let tree = expand::expand(
            &reader,
            &schema,
            &resource,
            &permission,
            self.limits.max_depth,
        )
        .await
        .map_err(check_error)?;
        Ok((revision, tree))
    }
}

impl<D: Datastore> Services<D> {
    /// Where a page of a lookup resumes (its position cursor, which must
    /// belong to this request) and the revision it reads.
    async fn resume_position(
        &self,
        token: Option<&str>,
        fingerprint: &str,
        consistency: Consistency,
    ) -> Result<(Option<cursor::PositionCursor>, Revision), ServiceError> {
        let resume = token
            .map(|t| cursor::decode_position(t, fingerprint))
            .transpose()?;
        let revision = self
            .page_revision(resume.as_ref().map(|c| c.revision), consistency)
            .await?;
        Ok((resume, revision))
    }
}

/// The resource type and permission, and the subject's type (and relation,
/// unless it is the object itself) must exist.
pub(super) fn validate_names(
    schema: &CompiledSchema,
    resource_type: &str,
    permission: &str,
    subject: &SubjectRef,
) -> Result<(), ServiceError> {
    let definition = known_definition(schema, resource_type)?;
    if definition.relation(permission).is_none() {
        return Err(unknown_relation(resource_type, permission));
    }
    let subject_type = &subject.object.object_type;
    let subject_definition = known_definition(schema, subject_type)?;
    if !subject.is_object() && subject_definition.relation(&subject.relation).is_none() {
        return Err(unknown_relation(subject_type, &subject.relation));
    }
    Ok(())
}

/// A subject set as the API returns it: caveats evaluated with the
/// request's context (subjects that cannot be members dropped, exclusions
/// that cannot hold dropped), the wildcard first unless excluded by the
/// request, then one page of concrete subjects after `after`.
fn resolve_subjects(
    schema: &CompiledSchema,
    set: &SubjectSet,
    params: &LookupSubjectsParams,
    after: Option<&str>,
    cursor_after: impl Fn(&str) -> String,
) -> Result<Vec<LookedUpSubject>, ServiceError> {
    let mut out = Vec::new();
    // The wildcard belongs to the first page; a cursor means it was sent.
    if let (Some(w), true, None) = (set.wildcard(), params.include_wildcard, after) {
        let p = permissionship(schema, w.membership.clone(), &params.context)?;
        if p != Permissionship::NoPermission {
            let mut excluded = Vec::new();
            for (id, exclusion) in &w.excluded {
                match permissionship(schema, exclusion.clone(), &params.context)? {
                    Permissionship::NoPermission => {}
                    e => excluded.push((id.clone(), e)),
                }
            }
            out.push(LookedUpSubject {
                id: WILDCARD.to_string(),
                permissionship: p,
                excluded,
                cursor: cursor_after(""),
            });
        }
    }
    let limit = params.limit.unwrap_or(usize::MAX);
    let mut concrete = 0;
    for (id, membership) in set.concrete() {
        if concrete == limit {
            break;
        }
        if after.is_some_and(|a| id.as_str() <= a) {
            continue;
        }
        let p = permissionship(schema, membership.clone(), &params.context)?;
        if p == Permissionship::NoPermission {
            continue;
        }
        concrete += 1;
        out.push(LookedUpSubject {
            id: id.clone(),
            permissionship: p,
            excluded: Vec::new(),
            cursor: cursor_after(id),
        });
    }
    Ok(out)
}
