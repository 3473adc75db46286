//! Calls the gRPC handlers for the gateway: the same service objects the
//! gRPC server runs (`api::handlers`, behind their tonic service traits),
//! handed encoded request messages and the request's metadata, so
//! validation, errors and semantics are the gRPC API's, not a copy of them.
//! Messages cross as protobuf bytes; `gateway::json` maps them to JSON.

use std::future::Future;
use std::sync::Arc;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::StreamExt as _;
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::api::proto::v1::experimental_service_server::ExperimentalService;
use crate::api::proto::v1::permissions_service_server::PermissionsService;
use crate::api::proto::v1::schema_service_server::SchemaService;
use crate::api::proto::v1::watch_service_server::WatchService;

/// The four public services, as the gRPC server serves them.
#[derive(Clone)]
pub struct Handlers {
    pub permissions: Arc<dyn PermissionsService>,
    pub schema: Arc<dyn SchemaService>,
    pub watch: Arc<dyn WatchService>,
    pub experimental: Arc<dyn ExperimentalService>,
}

/// The request messages of one call, encoded.
pub enum Input {
    /// Unary and server-streaming RPCs: one message.
    One(Vec<u8>),
    /// Client-streaming RPCs: the messages of the stream, in order.
    Stream(Vec<Vec<u8>>),
}

/// What a handler answered, encoded, with its response metadata.
pub enum Reply {
    Unary(Vec<u8>, MetadataMap),
    Stream(BoxStream<Vec<u8>>, MetadataMap),
}

/// Runs an RPC by its gRPC path, as the generated tonic server would.
macro_rules! dispatch {
    ($rpc:expr, $input:expr, $metadata:expr, {
        $( $path:literal => $kind:ident($service:expr, $method:ident), )*
    }) => {
        match $rpc {
            $( $path => $kind($input, $metadata, |request| $service.$method(request)).await, )*
            other => Err(Status::unimplemented(format!("unknown method {other}"))),
        }
    };
}

impl Handlers {
    /// Calls `rpc` (`/authzed.api.v1.PermissionsService/CheckPermission`)
    /// with `input` and the caller's `metadata` (authorization, request id).
    pub async fn call(
        &self,
        rpc: &str,
        input: Input,
        metadata: MetadataMap,
    ) -> Result<Reply, Status> {
        let permissions = &self.permissions;
        let schema = &self.schema;
        let watch = &self.watch;
        let experimental = &self.experimental;
        dispatch!(rpc, input, metadata, {
            "/authzed.api.v1.PermissionsService/ReadRelationships" => server_stream(permissions, read_relationships),
            "/authzed.api.v1.PermissionsService/WriteRelationships" => unary(permissions, write_relationships),
            "/authzed.api.v1.PermissionsService/DeleteRelationships" => unary(permissions, delete_relationships),
            "/authzed.api.v1.PermissionsService/CheckPermission" => unary(permissions, check_permission),
            "/authzed.api.v1.PermissionsService/CheckBulkPermissions" => unary(permissions, check_bulk_permissions),
            "/authzed.api.v1.PermissionsService/ExpandPermissionTree" => unary(permissions, expand_permission_tree),
            "/authzed.api.v1.PermissionsService/LookupResources" => server_stream(permissions, lookup_resources),
            "/authzed.api.v1.PermissionsService/LookupSubjects" => server_stream(permissions, lookup_subjects),
            "/authzed.api.v1.PermissionsService/ImportBulkRelationships" => client_stream(permissions, import_bulk_relationships),
            "/authzed.api.v1.PermissionsService/ExportBulkRelationships" => server_stream(permissions, export_bulk_relationships),
            "/authzed.api.v1.SchemaService/ReadSchema" => unary(schema, read_schema),
            "/authzed.api.v1.SchemaService/WriteSchema" => unary(schema, write_schema),
            "/authzed.api.v1.SchemaService/ReflectSchema" => unary(schema, reflect_schema),
            "/authzed.api.v1.SchemaService/ComputablePermissions" => unary(schema, computable_permissions),
            "/authzed.api.v1.SchemaService/DependentRelations" => unary(schema, dependent_relations),
            "/authzed.api.v1.SchemaService/DiffSchema" => unary(schema, diff_schema),
            "/authzed.api.v1.WatchService/Watch" => server_stream(watch, watch),
            "/authzed.api.v1.ExperimentalService/BulkImportRelationships" => client_stream(experimental, bulk_import_relationships),
            "/authzed.api.v1.ExperimentalService/BulkExportRelationships" => server_stream(experimental, bulk_export_relationships),
            "/authzed.api.v1.ExperimentalService/BulkCheckPermission" => unary(experimental, bulk_check_permission),
            "/authzed.api.v1.ExperimentalService/ExperimentalReflectSchema" => unary(experimental, experimental_reflect_schema),
            "/authzed.api.v1.ExperimentalService/ExperimentalComputablePermissions" => unary(experimental, experimental_computable_permissions),
            "/authzed.api.v1.ExperimentalService/ExperimentalDependentRelations" => unary(experimental, experimental_dependent_relations),
            "/authzed.api.v1.ExperimentalService/ExperimentalDiffSchema" => unary(experimental, experimental_diff_schema),
            "/authzed.api.v1.ExperimentalService/ExperimentalRegisterRelationshipCounter" => unary(experimental, experimental_register_relationship_counter),
            "/authzed.api.v1.ExperimentalService/ExperimentalCountRelationships" => unary(experimental, experimental_count_relationships),
            "/authzed.api.v1.ExperimentalService/ExperimentalUnregisterRelationshipCounter" => unary(experimental, experimental_unregister_relationship_counter),
        })
    }
}

/// The request a handler gets: the decoded message and the caller's
/// metadata.
fn request<T: prost::Message + Default>(
    encoded: &[u8],
    metadata: MetadataMap,
) -> Result<Request<T>, Status> {
    let message = T::decode(encoded)
        .map_err(|e| Status::internal(format!("re-decoding the request: {e}")))?;
    Ok(Request::from_parts(metadata, Default::default(), message))
}

fn single(input: Input) -> Result<Vec<u8>, Status> {
    match input {
        Input::One(encoded) => Ok(encoded),
        Input::Stream(_) => Err(Status::internal("a streamed body for a unary request")),
    }
}

async fn unary<Req, Resp, F, Fut>(
    input: Input,
    metadata: MetadataMap,
    call: F,
) -> Result<Reply, Status>
where
    Req: prost::Message + Default,
    Resp: prost::Message,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let response = call(request(&single(input)?, metadata)?).await?;
    let (metadata, message, _) = response.into_parts();
    Ok(Reply::Unary(message.encode_to_vec(), metadata))
}

async fn server_stream<Req, Resp, F, Fut>(
    input: Input,
    metadata: MetadataMap,
    call: F,
) -> Result<Reply, Status>
where
    Req: prost::Message + Default,
    Resp: prost::Message + 'static,
    F: FnOnce(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<BoxStream<Resp>>, Status>>,
{
    let response = call(request(&single(input)?, metadata)?).await?;
    let (metadata, stream, _) = response.into_parts();
    let encoded = stream.map(|item| item.map(|message| message.encode_to_vec()));
    Ok(Reply::Stream(Box::pin(encoded), metadata))
}

async fn client_stream<Req, Resp, F, Fut>(
    input: Input,
    metadata: MetadataMap,
    call: F,
) -> Result<Reply, Status>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message,
    F: FnOnce(Request<tonic::Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<Response<Resp>, Status>>,
{
    let messages = match input {
        Input::Stream(messages) => messages,
        Input::One(message) => vec![message],
    };
    let body = http_body_util::Full::new(grpc_frames(&messages));
    let stream = tonic::Streaming::new_request(
        tonic_prost::ProstDecoder::<Req>::default(),
        body,
        None,
        None,
    );
    let response = call(Request::from_parts(metadata, Default::default(), stream)).await?;
    let (metadata, message, _) = response.into_parts();
    Ok(Reply::Unary(message.encode_to_vec(), metadata))
}

/// Messages in gRPC's length-prefixed framing (uncompressed), as a client
/// stream's body carries them.
fn grpc_frames(messages: &[Vec<u8>]) -> Bytes {
    let mut body = BytesMut::with_capacity(messages.iter().map(|m| m.len() + 5).sum());
    for message in messages {
        body.put_u8(0);
        // A message over 4 GiB cannot have been read into memory as one
        // JSON body within the gateway's body limit.
        body.put_u32(u32::try_from(message.len()).expect("a message within the body limit"));
        body.put_slice(message);
    }
    body.freeze()
}
