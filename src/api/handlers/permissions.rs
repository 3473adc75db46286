//! PermissionsService: checks, relationship reads and writes, bulk import
//! and export (whose stream handling lives in `bulk`).

use futures::StreamExt as _;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    Api, CACHED_DISPATCH_COUNT_KEY, DISPATCH_COUNT_KEY, bulk, check_params, context,
    permissionship_fields,
};
use crate::api::proto::v1;
use crate::api::proto::v1::permissions_service_server::PermissionsService;
use crate::api::{convert, status, validate};
use crate::datastore::Datastore;
use crate::graph::expand::{ExpandKind, ExpandNode, SetOperation};
use crate::service::{
    DeleteParams, LookedUpSubject, LookupResourcesParams, LookupSubjectsParams, Permissionship,
    ReadParams, WriteParams,
};

#[tonic::async_trait]
impl<D: Datastore> PermissionsService for Api<D> {
    async fn check_permission(
        &self,
        request: Request<v1::CheckPermissionRequest>,
    ) -> Result<Response<v1::CheckPermissionResponse>, Status> {
        let traced = wants_debug_trace(request.metadata());
        let req = request.into_inner();
        validate::check_permission(&req, self.limits())?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let params = check_params(
            req.resource.as_ref(),
            &req.permission,
            req.subject.as_ref(),
            req.context.as_ref(),
            "",
        )?;
        let (outcome, debug_trace) = if req.with_tracing || traced {
            let (outcome, trace) = self.services.check_traced(params, consistency).await?;
            (outcome, Some(v1::DebugInformation::from(&trace)))
        } else {
            (self.services.check(params, consistency).await?, None)
        };
        let (permissionship, partial_caveat_info) = permissionship_fields(&outcome.permissionship);
        let mut response = Response::new(v1::CheckPermissionResponse {
            checked_at: Some(self.token(outcome.revision)),
            permissionship,
            partial_caveat_info,
            debug_trace,
            optional_expires_at: None,
        });
        if let Ok(value) = outcome.dispatch_count.to_string().parse() {
            response.metadata_mut().insert(DISPATCH_COUNT_KEY, value);
        }
        if let Ok(value) = outcome.cached_dispatch_count.to_string().parse() {
            response
                .metadata_mut()
                .insert(CACHED_DISPATCH_COUNT_KEY, value);
        }
        Ok(response)
    }

    async fn check_bulk_permissions(
        &self,
        request: Request<v1::CheckBulkPermissionsRequest>,
    ) -> Result<Response<v1::CheckBulkPermissionsResponse>, Status> {
        let req = request.into_inner();
        validate::check_bulk_permissions(&req, self.limits())?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        // Items that fail validation answer with their own error; the rest are checked.
        let mut params = Vec::new();
        let mut slots = Vec::with_capacity(req.items.len());
        for (i, item) in req.items.iter().enumerate() {
            let converted = match validate::check_bulk_item(item) {
                Some(e) => Err(e),
                None => check_params(
                    item.resource.as_ref(),
                    &item.permission,
                    item.subject.as_ref(),
                    item.context.as_ref(),
                    &format!("items[{i}]"),
                ),
            };
            slots.push(converted.map(|p| {
                params.push(p);
                params.len() - 1
            }));
        }
        let (revision, results) = self.services.check_bulk(params, consistency).await?;
        let pairs = req
            .items
            .into_iter()
            .zip(slots)
            .map(|(item, slot)| {
                let result = slot.and_then(|index| results[index].clone());
                let response = match result {
                    Ok(p) => {
                        let (permissionship, partial_caveat_info) = permissionship_fields(&p);
                        v1::check_bulk_permissions_pair::Response::Item(
                            v1::CheckBulkPermissionsResponseItem {
                                permissionship,
                                partial_caveat_info,
                                debug_trace: None,
                            },
                        )
                    }
                    Err(e) => {
                        v1::check_bulk_permissions_pair::Response::Error(status::to_rpc_status(&e))
                    }
                };
                v1::CheckBulkPermissionsPair {
                    request: Some(item),
                    response: Some(response),
                }
            })
            .collect();
        Ok(Response::new(v1::CheckBulkPermissionsResponse {
            checked_at: Some(self.token(revision)),
            pairs,
        }))
    }

    async fn write_relationships(
        &self,
        request: Request<v1::WriteRelationshipsRequest>,
    ) -> Result<Response<v1::WriteRelationshipsResponse>, Status> {
        let req = request.into_inner();
        validate::write_relationships(&req, self.limits())?;
        let params = WriteParams {
            updates: convert::relationship_updates(&req.updates)?,
            preconditions: convert::preconditions(&req.optional_preconditions)?,
            metadata: context(
                req.optional_transaction_metadata.as_ref(),
                "optional_transaction_metadata",
            )?,
        };
        let revision = self.services.write_relationships(params).await?;
        Ok(Response::new(v1::WriteRelationshipsResponse {
            written_at: Some(self.token(revision)),
        }))
    }

    async fn delete_relationships(
        &self,
        request: Request<v1::DeleteRelationshipsRequest>,
    ) -> Result<Response<v1::DeleteRelationshipsResponse>, Status> {
        let req = request.into_inner();
        validate::delete_relationships(&req, self.limits())?;
        let params = DeleteParams {
            filter: convert::relationship_filter(
                req.relationship_filter.as_ref(),
                "relationship_filter",
            )?,
            preconditions: convert::preconditions(&req.optional_preconditions)?,
            limit: (req.optional_limit > 0).then_some(req.optional_limit as usize),
            allow_partial: req.optional_allow_partial_deletions,
            metadata: context(
                req.optional_transaction_metadata.as_ref(),
                "optional_transaction_metadata",
            )?,
        };
        let outcome = self.services.delete_relationships(params).await?;
        let progress = if outcome.partial {
            v1::delete_relationships_response::DeletionProgress::Partial
        } else {
            v1::delete_relationships_response::DeletionProgress::Complete
        };
        Ok(Response::new(v1::DeleteRelationshipsResponse {
            deleted_at: Some(self.token(outcome.revision)),
            deletion_progress: progress as i32,
            relationships_deleted_count: outcome.deleted as u64,
        }))
    }

    async fn read_relationships(
        &self,
        request: Request<v1::ReadRelationshipsRequest>,
    ) -> Result<Response<BoxStream<v1::ReadRelationshipsResponse>>, Status> {
        let req = request.into_inner();
        validate::read_relationships(&req, self.limits())?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let params = ReadParams {
            filter: convert::relationship_filter(
                req.relationship_filter.as_ref(),
                "relationship_filter",
            )?,
            limit: (req.optional_limit > 0).then_some(req.optional_limit as usize),
            cursor: req.optional_cursor.map(|c| c.token),
        };
        let page = self
            .services
            .read_relationships(params, consistency)
            .await?;
        let read_at = self.token(page.revision);
        let responses: Vec<Result<v1::ReadRelationshipsResponse, Status>> = page
            .relationships
            .into_iter()
            .map(|(relationship, cursor)| {
                Ok(v1::ReadRelationshipsResponse {
                    read_at: Some(read_at.clone()),
                    relationship: Some((&relationship).into()),
                    after_result_cursor: Some(v1::Cursor { token: cursor }),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(responses))))
    }

    async fn import_bulk_relationships(
        &self,
        request: Request<Streaming<v1::ImportBulkRelationshipsRequest>>,
    ) -> Result<Response<v1::ImportBulkRelationshipsResponse>, Status> {
        let num_loaded = bulk::import_relationships(&self.services, request.into_inner()).await?;
        Ok(Response::new(v1::ImportBulkRelationshipsResponse {
            num_loaded,
        }))
    }

    async fn export_bulk_relationships(
        &self,
        request: Request<v1::ExportBulkRelationshipsRequest>,
    ) -> Result<Response<BoxStream<v1::ExportBulkRelationshipsResponse>>, Status> {
        let pages = bulk::export_relationships(&self.services, request.get_ref()).await?;
        Ok(Response::new(pages))
    }

    async fn lookup_resources(
        &self,
        request: Request<v1::LookupResourcesRequest>,
    ) -> Result<Response<BoxStream<v1::LookupResourcesResponse>>, Status> {
        let req = request.into_inner();
        validate::lookup_resources(&req, self.limits())?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let params = LookupResourcesParams {
            resource_type: req.resource_object_type,
            permission: req.permission,
            subject: convert::subject_ref(req.subject.as_ref(), "subject")?,
            context: context(req.context.as_ref(), "context")?,
            limit: (req.optional_limit > 0).then_some(req.optional_limit as usize),
            cursor: req.optional_cursor.map(|c| c.token),
        };
        let (revision, found) = self.services.lookup_resources(params, consistency).await?;
        let looked_up_at = self.token(revision);
        let responses = found.map(move |item| {
            let found = item.map_err(Status::from)?;
            let (permissionship, partial_caveat_info) =
                lookup_permissionship(&found.permissionship);
            Ok(v1::LookupResourcesResponse {
                looked_up_at: Some(looked_up_at.clone()),
                resource_object_id: found.id,
                permissionship,
                partial_caveat_info,
                after_result_cursor: Some(v1::Cursor {
                    token: found.cursor,
                }),
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lookup_subjects(
        &self,
        request: Request<v1::LookupSubjectsRequest>,
    ) -> Result<Response<BoxStream<v1::LookupSubjectsResponse>>, Status> {
        let req = request.into_inner();
        validate::lookup_subjects(&req, self.limits())?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let params = LookupSubjectsParams {
            resource: convert::object_ref(req.resource.as_ref(), "resource")?,
            permission: req.permission,
            subject_type: req.subject_object_type,
            subject_relation: req.optional_subject_relation,
            context: context(req.context.as_ref(), "context")?,
            include_wildcard: req.wildcard_option
                != v1::lookup_subjects_request::WildcardOption::ExcludeWildcards as i32,
            limit: (req.optional_concrete_limit > 0)
                .then_some(req.optional_concrete_limit as usize),
            cursor: req.optional_cursor.map(|c| c.token),
        };
        let (revision, subjects) = self.services.lookup_subjects(params, consistency).await?;
        let looked_up_at = self.token(revision);
        let responses: Vec<Result<v1::LookupSubjectsResponse, Status>> = subjects
            .into_iter()
            .map(|found| Ok(lookup_subjects_response(found, &looked_up_at)))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(responses))))
    }

    async fn expand_permission_tree(
        &self,
        request: Request<v1::ExpandPermissionTreeRequest>,
    ) -> Result<Response<v1::ExpandPermissionTreeResponse>, Status> {
        let req = request.into_inner();
        validate::expand_permission_tree(&req)?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let resource = convert::object_ref(req.resource.as_ref(), "resource")?;
        let (revision, tree) = self
            .services
            .expand(resource, req.permission, consistency)
            .await?;
        Ok(Response::new(v1::ExpandPermissionTreeResponse {
            expanded_at: Some(self.token(revision)),
            tree_root: Some(relationship_tree(&tree)),
        }))
    }
}

/// The lookup enum value and caveat info of a permissionship.
fn lookup_permissionship(p: &Permissionship) -> (i32, Option<v1::PartialCaveatInfo>) {
    use v1::LookupPermissionship as L;
    match p {
        Permissionship::Conditional { missing_context } => (
            L::ConditionalPermission as i32,
            Some(v1::PartialCaveatInfo {
                missing_required_context: missing_context.clone(),
            }),
        ),
        _ => (L::HasPermission as i32, None),
    }
}

// SpiceDB still fills the deprecated mirror fields, which older clients read.
#[allow(deprecated)]
fn lookup_subjects_response(
    found: LookedUpSubject,
    looked_up_at: &v1::ZedToken,
) -> v1::LookupSubjectsResponse {
    let (permissionship, partial_caveat_info) = lookup_permissionship(&found.permissionship);
    v1::LookupSubjectsResponse {
        looked_up_at: Some(looked_up_at.clone()),
        subject_object_id: found.id.clone(),
        excluded_subject_ids: found.excluded.iter().map(|(id, _)| id.clone()).collect(),
        permissionship,
        partial_caveat_info: partial_caveat_info.clone(),
        subject: Some(v1::ResolvedSubject {
            subject_object_id: found.id,
            permissionship,
            partial_caveat_info,
        }),
        excluded_subjects: found
            .excluded
            .iter()
            .map(|(id, p)| resolved_subject(id, p))
            .collect(),
        after_result_cursor: Some(v1::Cursor {
            token: found.cursor,
        }),
    }
}

fn resolved_subject(id: &str, p: &Permissionship) -> v1::ResolvedSubject {
    let (permissionship, partial_caveat_info) = lookup_permissionship(p);
    v1::ResolvedSubject {
        subject_object_id: id.to_string(),
        permissionship,
        partial_caveat_info,
    }
}

/// An expansion as SpiceDB's v1 tree: every node labelled with what it
/// expands.
fn relationship_tree(node: &ExpandNode) -> v1::PermissionRelationshipTree {
    use v1::algebraic_subject_set::Operation;
    let tree_type = match &node.kind {
        ExpandKind::Set {
            operation,
            children,
        } => {
            let operation = match operation {
                SetOperation::Union => Operation::Union,
                SetOperation::Intersection => Operation::Intersection,
                SetOperation::Exclusion => Operation::Exclusion,
            };
            v1::permission_relationship_tree::TreeType::Intermediate(v1::AlgebraicSubjectSet {
                operation: operation as i32,
                children: children.iter().map(relationship_tree).collect(),
            })
        }
        ExpandKind::Leaf(subjects) => {
            v1::permission_relationship_tree::TreeType::Leaf(v1::DirectSubjectSet {
                subjects: subjects.iter().map(v1::SubjectReference::from).collect(),
            })
        }
    };
    v1::PermissionRelationshipTree {
        tree_type: Some(tree_type),
        expanded_object: Some((&node.object).into()),
        expanded_relation: node.relation.clone(),
    }
}

/// Whether the caller asked for a debug trace through SpiceDB's request
/// header rather than `with_tracing` (clients that cannot set the field).
fn wants_debug_trace(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata
        .get(DEBUG_INFO_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// SpiceDB's request header asking for the debug trace of a check.
const DEBUG_INFO_HEADER: &str = "io.spicedb.requestdebuginfo";
