//! The tonic handlers of PermissionsService and SchemaService: each one
//! validates the request, converts it to a service call, and converts the
//! result back. RPCs not implemented yet answer UNIMPLEMENTED through the
//! generated default stubs.

use std::sync::Arc;

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::proto::v1;
use super::proto::v1::permissions_service_server::PermissionsService;
use super::proto::v1::schema_service_server::SchemaService;
use super::{convert, status, validate};
use crate::datastore::Datastore;
use crate::model::{Consistency, Revision};
use crate::service::{
    CheckParams, DeleteParams, Permissionship, ReadParams, ServiceError, Services, WriteParams,
};

/// Response metadata key SpiceDB uses for the dispatch count of a check.
const DISPATCH_COUNT_KEY: &str = "io.spicedb.respmeta.dispatchedoperationscount";

/// The public API over one set of services.
pub struct Api<D: Datastore> {
    services: Arc<Services<D>>,
}

impl<D: Datastore> Api<D> {
    pub fn new(services: Arc<Services<D>>) -> Self {
        Self { services }
    }

    fn limits(&self) -> &validate::Limits {
        self.services.limits()
    }

    fn token(&self, revision: Revision) -> v1::ZedToken {
        convert::zed_token(revision, self.services.datastore().unique_id(), &[])
    }

    fn consistency(
        &self,
        consistency: Option<&v1::Consistency>,
    ) -> Result<Consistency, ServiceError> {
        convert::consistency(consistency, self.services.datastore().unique_id())
    }
}

fn context(
    s: Option<&prost_types::Struct>,
    path: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ServiceError> {
    s.map_or_else(
        || Ok(serde_json::Map::new()),
        |s| convert::struct_to_json(s, path),
    )
}

fn check_params(
    resource: Option<&v1::ObjectReference>,
    permission: &str,
    subject: Option<&v1::SubjectReference>,
    ctx: Option<&prost_types::Struct>,
    path: &str,
) -> Result<CheckParams, ServiceError> {
    let field = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    Ok(CheckParams {
        resource: convert::object_ref(resource, &field("resource"))?,
        permission: permission.to_string(),
        subject: convert::subject_ref(subject, &field("subject"))?,
        context: context(ctx, &field("context"))?,
    })
}

/// The proto enum value and caveat info of a permissionship.
fn permissionship_fields(p: &Permissionship) -> (i32, Option<v1::PartialCaveatInfo>) {
    use v1::check_permission_response::Permissionship as P;
    match p {
        Permissionship::NoPermission => (P::NoPermission as i32, None),
        Permissionship::HasPermission => (P::HasPermission as i32, None),
        Permissionship::Conditional { missing_context } => (
            P::ConditionalPermission as i32,
            Some(v1::PartialCaveatInfo {
                missing_required_context: missing_context.clone(),
            }),
        ),
    }
}

#[tonic::async_trait]
impl<D: Datastore> PermissionsService for Api<D> {
    async fn check_permission(
        &self,
        request: Request<v1::CheckPermissionRequest>,
    ) -> Result<Response<v1::CheckPermissionResponse>, Status> {
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
        let outcome = self.services.check(params, consistency).await?;
        let (permissionship, partial_caveat_info) = permissionship_fields(&outcome.permissionship);
        let mut response = Response::new(v1::CheckPermissionResponse {
            checked_at: Some(self.token(outcome.revision)),
            permissionship,
            partial_caveat_info,
            debug_trace: None,
            optional_expires_at: None,
        });
        if let Ok(value) = outcome.dispatch_count.to_string().parse() {
            response.metadata_mut().insert(DISPATCH_COUNT_KEY, value);
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
}

#[tonic::async_trait]
impl<D: Datastore> SchemaService for Api<D> {
    async fn read_schema(
        &self,
        request: Request<v1::ReadSchemaRequest>,
    ) -> Result<Response<v1::ReadSchemaResponse>, Status> {
        validate::read_schema(request.get_ref())?;
        let (schema_text, revision) = self.services.read_schema().await?;
        Ok(Response::new(v1::ReadSchemaResponse {
            schema_text,
            read_at: Some(self.token(revision)),
        }))
    }

    async fn write_schema(
        &self,
        request: Request<v1::WriteSchemaRequest>,
    ) -> Result<Response<v1::WriteSchemaResponse>, Status> {
        let req = request.into_inner();
        validate::write_schema(&req)?;
        let revision = self.services.write_schema(&req.schema).await?;
        Ok(Response::new(v1::WriteSchemaResponse {
            written_at: Some(self.token(revision)),
        }))
    }
}
