//! ExperimentalService: the relationship counters, and the deprecated
//! aliases of stable RPCs. The aliases' `Exp*` and `BulkCheckPermission*`
//! messages are the stable messages under older names, field for field (a
//! test below checks the descriptors), so an alias re-encodes its request as
//! the stable one, calls the stable handler, and re-encodes the answer: one
//! implementation, validation and errors included. The streaming bulk
//! aliases transcode message by message around `bulk`.

use futures::StreamExt as _;
use prost::Message;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Api, bulk};
use crate::api::proto::v1;
use crate::api::proto::v1::experimental_service_server::ExperimentalService;
use crate::api::proto::v1::permissions_service_server::PermissionsService;
use crate::api::proto::v1::schema_service_server::SchemaService;
use crate::api::{convert, validate};
use crate::datastore::Datastore;
use crate::service::ServiceError;

/// Re-encodes a message as another with the same wire shape.
fn transcode<A: Message, B: Message + Default>(message: &A) -> Result<B, Status> {
    B::decode(message.encode_to_vec().as_slice()).map_err(|e| {
        Status::from(ServiceError::Internal {
            message: format!("re-encoding an experimental message: {e}"),
        })
    })
}

/// Calls a stable handler with an alias's request and returns its answer
/// as the alias's response type.
async fn alias<Req, StableReq, StableResp, Resp, F, Fut>(
    request: Request<Req>,
    stable: F,
) -> Result<Response<Resp>, Status>
where
    Req: Message,
    StableReq: Message + Default,
    StableResp: Message,
    Resp: Message + Default,
    F: FnOnce(Request<StableReq>) -> Fut,
    Fut: Future<Output = Result<Response<StableResp>, Status>>,
{
    let request = Request::new(transcode(request.get_ref())?);
    let response = stable(request).await?;
    Ok(Response::new(transcode(response.get_ref())?))
}

#[tonic::async_trait]
impl<D: Datastore> ExperimentalService for Api<D> {
    async fn bulk_import_relationships(
        &self,
        request: Request<Streaming<v1::BulkImportRelationshipsRequest>>,
    ) -> Result<Response<v1::BulkImportRelationshipsResponse>, Status> {
        let messages = request.into_inner().map(|message| {
            message.and_then(|m| transcode::<_, v1::ImportBulkRelationshipsRequest>(&m))
        });
        let num_loaded = bulk::import_relationships(&self.services, messages).await?;
        Ok(Response::new(v1::BulkImportRelationshipsResponse {
            num_loaded,
        }))
    }

    async fn bulk_export_relationships(
        &self,
        request: Request<v1::BulkExportRelationshipsRequest>,
    ) -> Result<Response<BoxStream<v1::BulkExportRelationshipsResponse>>, Status> {
        let stable: v1::ExportBulkRelationshipsRequest = transcode(request.get_ref())?;
        let pages = bulk::export_relationships(&self.services, &stable).await?;
        let pages = pages.map(|page| page.and_then(|p| transcode(&p)));
        Ok(Response::new(Box::pin(pages)))
    }

    async fn bulk_check_permission(
        &self,
        request: Request<v1::BulkCheckPermissionRequest>,
    ) -> Result<Response<v1::BulkCheckPermissionResponse>, Status> {
        alias(request, |r: Request<v1::CheckBulkPermissionsRequest>| {
            PermissionsService::check_bulk_permissions(self, r)
        })
        .await
    }

    async fn experimental_reflect_schema(
        &self,
        request: Request<v1::ExperimentalReflectSchemaRequest>,
    ) -> Result<Response<v1::ExperimentalReflectSchemaResponse>, Status> {
        alias(request, |r: Request<v1::ReflectSchemaRequest>| {
            SchemaService::reflect_schema(self, r)
        })
        .await
    }

    async fn experimental_computable_permissions(
        &self,
        request: Request<v1::ExperimentalComputablePermissionsRequest>,
    ) -> Result<Response<v1::ExperimentalComputablePermissionsResponse>, Status> {
        alias(request, |r: Request<v1::ComputablePermissionsRequest>| {
            SchemaService::computable_permissions(self, r)
        })
        .await
    }

    async fn experimental_dependent_relations(
        &self,
        request: Request<v1::ExperimentalDependentRelationsRequest>,
    ) -> Result<Response<v1::ExperimentalDependentRelationsResponse>, Status> {
        alias(request, |r: Request<v1::DependentRelationsRequest>| {
            SchemaService::dependent_relations(self, r)
        })
        .await
    }

    async fn experimental_diff_schema(
        &self,
        request: Request<v1::ExperimentalDiffSchemaRequest>,
    ) -> Result<Response<v1::ExperimentalDiffSchemaResponse>, Status> {
        alias(request, |r: Request<v1::DiffSchemaRequest>| {
            SchemaService::diff_schema(self, r)
        })
        .await
    }

    async fn experimental_register_relationship_counter(
        &self,
        request: Request<v1::ExperimentalRegisterRelationshipCounterRequest>,
    ) -> Result<Response<v1::ExperimentalRegisterRelationshipCounterResponse>, Status> {
        let req = request.into_inner();
        validate::register_relationship_counter(&req)?;
        let filter =
            convert::relationship_filter(req.relationship_filter.as_ref(), "relationship_filter")?;
        self.services.register_counter(&req.name, filter).await?;
        Ok(Response::new(
            v1::ExperimentalRegisterRelationshipCounterResponse {},
        ))
    }

    async fn experimental_count_relationships(
        &self,
        request: Request<v1::ExperimentalCountRelationshipsRequest>,
    ) -> Result<Response<v1::ExperimentalCountRelationshipsResponse>, Status> {
        use v1::experimental_count_relationships_response::CounterResult;
        let req = request.into_inner();
        validate::count_relationships(&req)?;
        let (count, revision) = self.services.count_relationships(&req.name).await?;
        Ok(Response::new(v1::ExperimentalCountRelationshipsResponse {
            counter_result: Some(CounterResult::ReadCounterValue(v1::ReadCounterValue {
                relationship_count: count,
                read_at: Some(self.token(revision)),
            })),
        }))
    }

    async fn experimental_unregister_relationship_counter(
        &self,
        request: Request<v1::ExperimentalUnregisterRelationshipCounterRequest>,
    ) -> Result<Response<v1::ExperimentalUnregisterRelationshipCounterResponse>, Status> {
        let req = request.into_inner();
        validate::unregister_relationship_counter(&req)?;
        self.services.unregister_counter(&req.name).await?;
        Ok(Response::new(
            v1::ExperimentalUnregisterRelationshipCounterResponse {},
        ))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use prost_types::{DescriptorProto, FileDescriptorSet};

    use crate::api::proto::FILE_DESCRIPTOR_SET;

    /// Each alias message and the stable message it is re-encoded as.
    const PAIRS: &[(&str, &str)] = &[
        ("BulkCheckPermissionRequest", "CheckBulkPermissionsRequest"),
        (
            "BulkCheckPermissionRequestItem",
            "CheckBulkPermissionsRequestItem",
        ),
        (
            "BulkCheckPermissionResponse",
            "CheckBulkPermissionsResponse",
        ),
        ("BulkCheckPermissionPair", "CheckBulkPermissionsPair"),
        (
            "BulkCheckPermissionResponseItem",
            "CheckBulkPermissionsResponseItem",
        ),
        ("ExperimentalReflectSchemaRequest", "ReflectSchemaRequest"),
        ("ExperimentalReflectSchemaResponse", "ReflectSchemaResponse"),
        ("ExpSchemaFilter", "ReflectionSchemaFilter"),
        ("ExpDefinition", "ReflectionDefinition"),
        ("ExpCaveat", "ReflectionCaveat"),
        ("ExpCaveatParameter", "ReflectionCaveatParameter"),
        ("ExpRelation", "ReflectionRelation"),
        ("ExpTypeReference", "ReflectionTypeReference"),
        ("ExpPermission", "ReflectionPermission"),
        (
            "ExperimentalComputablePermissionsRequest",
            "ComputablePermissionsRequest",
        ),
        ("ExpRelationReference", "ReflectionRelationReference"),
        (
            "ExperimentalComputablePermissionsResponse",
            "ComputablePermissionsResponse",
        ),
        (
            "ExperimentalDependentRelationsRequest",
            "DependentRelationsRequest",
        ),
        (
            "ExperimentalDependentRelationsResponse",
            "DependentRelationsResponse",
        ),
        ("ExperimentalDiffSchemaRequest", "DiffSchemaRequest"),
        ("ExperimentalDiffSchemaResponse", "DiffSchemaResponse"),
        (
            "ExpRelationSubjectTypeChange",
            "ReflectionRelationSubjectTypeChange",
        ),
        (
            "ExpCaveatParameterTypeChange",
            "ReflectionCaveatParameterTypeChange",
        ),
        ("ExpSchemaDiff", "ReflectionSchemaDiff"),
    ];

    fn message<'a>(fds: &'a FileDescriptorSet, name: &str) -> &'a DescriptorProto {
        fds.file
            .iter()
            .filter(|f| f.package() == "authzed.api.v1")
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{name} is in the descriptor set"))
    }

    /// A field's message type with alias names replaced by stable ones.
    fn stable_type_name(type_name: &str) -> String {
        PAIRS
            .iter()
            .find(|(alias, _)| type_name == format!(".authzed.api.v1.{alias}"))
            .map_or(type_name.to_string(), |(_, stable)| {
                format!(".authzed.api.v1.{stable}")
            })
    }

    /// Every field of an alias message is a field of the stable message with
    /// the same number, type, label and oneof, so re-encoding loses nothing.
    #[test]
    fn alias_messages_have_the_stable_wire_shape() {
        let fds = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        for (alias, stable) in PAIRS {
            let (a, s) = (message(&fds, alias), message(&fds, stable));
            for field in &a.field {
                let twin = s
                    .field
                    .iter()
                    .find(|f| f.number() == field.number())
                    .unwrap_or_else(|| panic!("{stable} lacks field {} of {alias}", field.name()));
                assert_eq!(twin.name(), field.name(), "{alias}.{}", field.name());
                assert_eq!(twin.r#type(), field.r#type(), "{alias}.{}", field.name());
                assert_eq!(twin.label(), field.label(), "{alias}.{}", field.name());
                assert_eq!(
                    twin.oneof_index,
                    field.oneof_index,
                    "{alias}.{}",
                    field.name()
                );
                assert_eq!(
                    twin.type_name(),
                    stable_type_name(field.type_name()),
                    "{alias}.{}",
                    field.name()
                );
            }
        }
    }
}
