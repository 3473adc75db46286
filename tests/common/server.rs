//! A real `trellis` server on a free loopback port for integration tests,
//! with the config and datastore revision settings a test chooses, and the
//! request helpers the streaming tests share. Included by path
//! (`#[path = "common/server.rs"] mod server;`) where needed.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Request;
use tonic::transport::Channel;

use trellis::api::proto::v1;
use trellis::config::Config;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{Datastore, RevisionConfig, SystemClock};

/// The preshared key every test server requires.
pub const KEY: &str = "integration-test-key";

/// A running server and a channel to it; the server begins shutting down
/// when `stop` is called or this is dropped.
pub struct TestServer {
    pub channel: Channel,
    /// Where it listens, for clients that dial it themselves.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    /// Starts a server with `config` (its key replaced by `KEY`) over a
    /// memory datastore with `revisions`.
    pub async fn start(config: Config, revisions: RevisionConfig) -> Self {
        let datastore = Arc::new(MemoryDatastore::new(revisions, Arc::new(SystemClock)));
        Self::start_with(datastore, config).await
    }

    /// Starts a server with `config` (its key replaced by `KEY`) over
    /// `datastore`.
    pub async fn start_with<D: Datastore>(datastore: Arc<D>, config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("free port");
        let addr = listener.local_addr().expect("bound address");
        let config = Config {
            preshared_keys: vec![KEY.to_string()],
            ..config
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(trellis::server::run(datastore, config, listener, async {
            let _ = stopped.await;
        }));
        let endpoint = format!("http://{addr}");
        let channel = loop {
            match Channel::from_shared(endpoint.clone())
                .expect("valid uri")
                .connect()
                .await
            {
                Ok(channel) => break channel,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        Self {
            channel,
            addr,
            stop: Some(stop),
        }
    }

    /// A server with default settings.
    pub async fn start_default() -> Self {
        Self::start(Config::default(), RevisionConfig::default()).await
    }

    /// Begins a graceful shutdown (in-flight calls drain).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `message` with the test key attached.
pub fn authed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {KEY}").parse().expect("ascii"),
    );
    request
}

/// A relationship from SpiceDB's text form (`doc:1#viewer@user:tom`), as
/// the API sends it.
pub fn relationship(text: &str) -> v1::Relationship {
    let parsed = trellis::model::parse_relationship(text)
        .unwrap_or_else(|e| panic!("test relationship `{text}`: {e}"));
    (&parsed).into()
}

/// The text form of an API relationship (for comparing sets).
pub fn text(rel: &v1::Relationship) -> String {
    let resource = rel.resource.as_ref().expect("resource");
    let subject = rel.subject.as_ref().expect("subject");
    let object = subject.object.as_ref().expect("subject object");
    let mut s = format!(
        "{}:{}#{}@{}:{}",
        resource.object_type,
        resource.object_id,
        rel.relation,
        object.object_type,
        object.object_id
    );
    if !subject.optional_relation.is_empty() {
        s.push('#');
        s.push_str(&subject.optional_relation);
    }
    s
}

/// An update of `operation` for the relationship in text form.
pub fn update(operation: v1::relationship_update::Operation, text: &str) -> v1::RelationshipUpdate {
    v1::RelationshipUpdate {
        operation: operation as i32,
        relationship: Some(relationship(text)),
    }
}

/// The revision a token stands for.
pub fn revision(token: &v1::ZedToken) -> u128 {
    trellis::api::zedtoken::decode(token)
        .expect("a token this server issued")
        .revision
        .0
}

/// The social network of `workload::social_network(n, seed)` as
/// ImportBulkRelationships messages of `batch` relationships each, as
/// `zed import` sends them.
pub fn import_messages(
    n: usize,
    seed: u64,
    batch: usize,
) -> Vec<v1::ImportBulkRelationshipsRequest> {
    let relationships: Vec<v1::Relationship> = trellis::workload::social_network(n, seed)
        .iter()
        .map(Into::into)
        .collect();
    relationships
        .chunks(batch)
        .map(|chunk| v1::ImportBulkRelationshipsRequest {
            relationships: chunk.to_vec(),
        })
        .collect()
}

/// One ImportBulkRelationships call of `messages`; returns how many were
/// loaded.
pub async fn import(channel: Channel, messages: Vec<v1::ImportBulkRelationshipsRequest>) -> u64 {
    v1::permissions_service_client::PermissionsServiceClient::new(channel)
        .import_bulk_relationships(authed(tokio_stream::iter(messages)))
        .await
        .expect("import succeeds")
        .into_inner()
        .num_loaded
}

/// Reads at head.
pub fn fully_consistent() -> Option<v1::Consistency> {
    Some(v1::Consistency {
        requirement: Some(v1::consistency::Requirement::FullyConsistent(true)),
    })
}

/// Reads at least as fresh as `token` (minimize_latency without one).
pub fn at_least_as_fresh(token: Option<v1::ZedToken>) -> Option<v1::Consistency> {
    token.map(|t| v1::Consistency {
        requirement: Some(v1::consistency::Requirement::AtLeastAsFresh(t)),
    })
}

/// May `user:{user}` `view` `doc:{doc}`? (The schema the PostgreSQL tests
/// share.)
pub fn check_doc_view(
    doc: &str,
    user: &str,
    consistency: Option<v1::Consistency>,
) -> v1::CheckPermissionRequest {
    v1::CheckPermissionRequest {
        consistency,
        resource: Some(v1::ObjectReference {
            object_type: "doc".into(),
            object_id: doc.into(),
        }),
        permission: "view".into(),
        subject: Some(v1::SubjectReference {
            object: Some(v1::ObjectReference {
                object_type: "user".into(),
                object_id: user.into(),
            }),
            optional_relation: String::new(),
        }),
        ..Default::default()
    }
}

/// A free loopback port: bound, read and released. The metrics server
/// binds its address itself, so the test cannot hand it a listener.
pub async fn free_addr() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    listener.local_addr().expect("bound address")
}

/// The status line and body of `GET path`, retrying while the endpoint is
/// not listening yet.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("a response within 10s")
    .expect("readable response");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.lines().next().expect("status line").to_string();
    (status, body.to_string())
}
