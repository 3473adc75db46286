//! The public port's limits and guards with real servers: every method of
//! every public service refuses a call without the key; undecodable and
//! oversized messages get INTERNAL and OUT_OF_RANGE; calls past the
//! concurrency limit are shed with RESOURCE_EXHAUSTED (health never is) and
//! the rest succeed; deadlines (the client's and the server's maximum) end
//! calls with DEADLINE_EXCEEDED. Calls are held in flight by import streams
//! the test keeps open, so nothing depends on timing.

#[path = "common/server.rs"]
mod server;

use std::time::Duration;

use bytes::{Buf as _, BufMut as _};
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use server::{TestServer, authed};
use trellis::api::limits::GrpcLimits;
use trellis::api::proto::v1;
use trellis::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use trellis::config::Config;
use trellis::datastore::RevisionConfig;

/// Sends and receives message bytes as they are, so a test can send what
/// no generated client would.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut bytes = vec![0; src.remaining()];
        src.copy_to_slice(&mut bytes);
        Ok(Some(bytes))
    }
}

/// One unary call of `path` with `body` as the message bytes.
async fn raw_call(
    channel: Channel,
    path: &str,
    body: Vec<u8>,
    key: bool,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = PathAndQuery::try_from(path.to_string()).expect("a valid path");
    let request = if key {
        authed(body)
    } else {
        tonic::Request::new(body)
    };
    grpc.unary(request, path, RawCodec)
        .await
        .map(|r| r.into_inner())
}

/// Every method of every public service, as `/package.Service/Method`,
/// from the descriptors the server registers for reflection.
fn public_methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(trellis::api::proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut methods = Vec::new();
    for file in set.file {
        let package = file.package();
        if package != "authzed.api.v1" {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                methods.push(format!("/{package}.{}/{}", service.name(), method.name()));
            }
        }
    }
    methods
}

async fn start(limits: GrpcLimits) -> TestServer {
    let config = Config {
        grpc_limits: limits,
        ..Config::default()
    };
    TestServer::start(config, RevisionConfig::default()).await
}

#[tokio::test]
async fn every_public_method_refuses_calls_without_the_key() {
    let server = start(GrpcLimits::default()).await;
    let methods = public_methods();
    assert!(methods.len() >= 20, "too few methods found: {methods:?}");
    for method in &methods {
        let status = raw_call(server.channel.clone(), method, Vec::new(), false)
            .await
            .expect_err("refused");
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{method}: {}",
            status.message()
        );
    }
}

#[tokio::test]
async fn undecodable_and_oversized_messages_get_their_codes() {
    let server = start(GrpcLimits {
        max_message_size: 1024,
        ..GrpcLimits::default()
    })
    .await;
    let check = "/authzed.api.v1.PermissionsService/CheckPermission";
    let garbage = vec![0xff; 16];
    let status = raw_call(server.channel.clone(), check, garbage, true)
        .await
        .expect_err("not protobuf");
    assert_eq!(status.code(), Code::Internal, "{}", status.message());

    let updates = (0..64)
        .map(|i| {
            server::update(
                v1::relationship_update::Operation::Touch,
                &format!("document:a-rather-long-document-id-{i}#viewer@user:someone-{i}"),
            )
        })
        .collect();
    let request = v1::WriteRelationshipsRequest {
        updates,
        ..Default::default()
    };
    assert!(request.encoded_len() > 1024);
    let status = PermissionsServiceClient::new(server.channel.clone())
        .write_relationships(authed(request))
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());

    // A message that decodes but names nothing valid is the API's to refuse.
    let status = PermissionsServiceClient::new(server.channel.clone())
        .check_permission(authed(v1::CheckPermissionRequest::default()))
        .await
        .expect_err("no resource");
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
}

/// An ImportBulkRelationships call held open (its stream not ended) until
/// the returned sender is dropped; it holds one concurrency permit.
async fn held_import(
    channel: Channel,
    timeout: Option<Duration>,
) -> (
    mpsc::Sender<v1::ImportBulkRelationshipsRequest>,
    tokio::task::JoinHandle<Result<u64, tonic::Status>>,
) {
    let (sender, receiver) = mpsc::channel(1);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let call = tokio::spawn(async move {
        let mut request = authed(tokio_stream::wrappers::ReceiverStream::new(receiver));
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        let mut client = PermissionsServiceClient::new(channel);
        let call = client.import_bulk_relationships(request);
        let _ = started_tx.send(());
        call.await.map(|r| r.into_inner().num_loaded)
    });
    let _ = started_rx.await;
    (sender, call)
}

/// A held import that was admitted before this returns: `held_import`
/// returns once the call is made, not once the server has taken a permit
/// for it, and a call shed at once (a permit still on its way back from an
/// earlier call) is started again.
async fn admitted_import(
    channel: Channel,
) -> (
    mpsc::Sender<v1::ImportBulkRelationshipsRequest>,
    tokio::task::JoinHandle<Result<u64, tonic::Status>>,
) {
    for _ in 0..50 {
        let (sender, call) = held_import(channel.clone(), None).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !call.is_finished() {
            return (sender, call);
        }
        let outcome = call.await.expect("the call's task does not panic");
        let code = outcome.map(|_| Code::Ok).unwrap_or_else(|s| s.code());
        assert_eq!(code, Code::ResourceExhausted, "a held import ended");
    }
    panic!("no import was admitted in 50 tries");
}

async fn check_code(channel: Channel) -> Code {
    let request = v1::CheckPermissionRequest {
        consistency: server::fully_consistent(),
        resource: Some(v1::ObjectReference {
            object_type: "document".into(),
            object_id: "d".into(),
        }),
        permission: "view".into(),
        subject: Some(v1::SubjectReference {
            object: Some(v1::ObjectReference {
                object_type: "user".into(),
                object_id: "u".into(),
            }),
            optional_relation: String::new(),
        }),
        ..Default::default()
    };
    match PermissionsServiceClient::new(channel)
        .check_permission(authed(request))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Calls until one is shed: the held imports are admitted once the server
/// reads their headers, which the client does not see.
async fn until_shed(channel: &Channel) -> bool {
    for _ in 0..200 {
        if check_code(channel.clone()).await == Code::ResourceExhausted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_over_the_concurrency_limit_are_shed_and_health_never_is() {
    let server = start(GrpcLimits {
        max_concurrent_requests: 3,
        ..GrpcLimits::default()
    })
    .await;
    let schema = v1::WriteSchemaRequest {
        schema: "definition user {}\ndefinition document {\n relation viewer: user\n permission view = viewer\n}".into(),
    };
    v1::schema_service_client::SchemaServiceClient::new(server.channel.clone())
        .write_schema(authed(schema))
        .await
        .expect("schema");

    // Two of three permits held: a burst gets some answers and sheds the
    // rest; nothing else.
    let (first, first_call) = admitted_import(server.channel.clone()).await;
    let (second, second_call) = admitted_import(server.channel.clone()).await;
    let burst: Vec<Code> =
        futures::future::join_all((0..40).map(|_| check_code(server.channel.clone()))).await;
    assert!(
        burst
            .iter()
            .all(|c| matches!(c, Code::Ok | Code::ResourceExhausted)),
        "{burst:?}"
    );
    assert!(burst.contains(&Code::Ok), "{burst:?}");

    // All three held: every call is shed at once, health still answers.
    let (third, third_call) = admitted_import(server.channel.clone()).await;
    assert!(until_shed(&server.channel).await, "never shed");
    let shed: Vec<Code> =
        futures::future::join_all((0..20).map(|_| check_code(server.channel.clone()))).await;
    assert!(
        shed.iter().all(|c| *c == Code::ResourceExhausted),
        "{shed:?}"
    );
    let health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is never shed")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Released: every call succeeds again.
    drop((first, second, third));
    for call in [first_call, second_call, third_call] {
        assert_eq!(call.await.expect("joined").expect("import ends"), 0);
    }
    for _ in 0..10 {
        assert_eq!(check_code(server.channel.clone()).await, Code::Ok);
    }
}

#[tokio::test]
async fn deadlines_end_calls_with_deadline_exceeded() {
    let server = start(GrpcLimits {
        max_request_duration: Some(Duration::from_millis(300)),
        ..GrpcLimits::default()
    })
    .await;
    // The server's maximum, with no client deadline.
    let (_held, call) = held_import(server.channel.clone(), None).await;
    let status = call
        .await
        .expect("joined")
        .expect_err("ended by the server");
    assert_eq!(
        status.code(),
        Code::DeadlineExceeded,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("--grpc-max-request-duration"),
        "{}",
        status.message()
    );

    // The client's shorter deadline ends the call too. tonic's client times
    // the same `grpc-timeout` itself and reports CANCELLED when its timer
    // wins the race with the server's DEADLINE_EXCEEDED, so either is the
    // deadline at work (the server's side is pinned in `api::limits`).
    let (_held, call) = held_import(server.channel.clone(), Some(Duration::from_millis(100))).await;
    let status = call
        .await
        .expect("joined")
        .expect_err("ended at the deadline");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(
        !status.message().contains("--grpc-max-request-duration"),
        "the server's maximum ended it: {}",
        status.message()
    );
}

/// A raw HTTP/1.1 POST of `{}` to the gateway at `addr`; the status line
/// and body.
async fn gateway_post(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the gateway accepts");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        server::KEY
    );
    tcp.write_all(request.as_bytes()).await.expect("sent");
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_calls_count_against_the_same_concurrency_limit() {
    let free = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let gateway = free.local_addr().expect("bound");
    drop(free);
    let server = TestServer::start(
        Config {
            grpc_limits: GrpcLimits {
                max_concurrent_requests: 1,
                ..GrpcLimits::default()
            },
            gateway: trellis::gateway::GatewaySettings {
                enabled: true,
                addr: gateway,
            },
            ..Config::default()
        },
        RevisionConfig::default(),
    )
    .await;
    // The one permit held by a gRPC call: the gateway's call is shed, as
    // grpc-gateway maps RESOURCE_EXHAUSTED (429, code 8).
    let (held, held_call) = admitted_import(server.channel.clone()).await;
    let shed = gateway_post(gateway, "/v1/schema/read").await;
    assert!(shed.starts_with("HTTP/1.1 429"), "{shed}");
    assert!(shed.contains(r#""code":8"#), "{shed}");

    // Released, the gateway's call runs (no schema yet: NOT_FOUND, 404).
    drop(held);
    let _ = held_call.await;
    let mut answered = String::new();
    for _ in 0..50 {
        answered = gateway_post(gateway, "/v1/schema/read").await;
        if !answered.starts_with("HTTP/1.1 429") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered.starts_with("HTTP/1.1 404"), "{answered}");
}
