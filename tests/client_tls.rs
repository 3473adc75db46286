//! The client commands over TLS: a server whose certificate is made for
//! this run (rcgen, self-signed for `localhost`) is trusted with
//! `--certificate-path`, and refused without it (the system's roots do not
//! know it) or in plaintext.

use std::process::Command;
use std::sync::Arc;

use tonic::transport::{Identity, Server, ServerTlsConfig};
use trellis::api::handlers::Api;
use trellis::api::proto::v1::schema_service_server::SchemaServiceServer;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::service::Limits;

/// Serves SchemaService over TLS on a free port; the certificate's PEM and
/// the `localhost:PORT` endpoint.
async fn tls_server() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("a self-signed certificate");
    let cert_pem = certified.cert.pem();
    let identity = Identity::from_pem(&cert_pem, certified.signing_key.serialize_pem());
    let datastore = Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ));
    let services = trellis::server::services(datastore, Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let port = listener.local_addr().expect("bound").port();
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(identity))
        .expect("TLS config")
        .add_service(SchemaServiceServer::new(Api::new(services)))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    (cert_pem, format!("localhost:{port}"))
}

fn trellis(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .env_remove("TRELLIS_TOKEN")
        .output()
        .expect("trellis runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_verify_the_server_with_the_given_ca() {
    let (cert_pem, endpoint) = tls_server().await;
    let dir = std::env::temp_dir().join(format!("trellis-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, cert_pem).expect("CA written");
    let schema = dir.join("schema.zed");
    std::fs::write(&schema, "definition user {}\n").expect("schema written");
    let ca = ca.display().to_string();
    let schema = schema.display().to_string();

    let (code, token, stderr) = trellis(&[
        "schema",
        "write",
        &schema,
        "--endpoint",
        &endpoint,
        "--certificate-path",
        &ca,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!token.trim().is_empty());
    let (code, text, stderr) = trellis(&[
        "schema",
        "read",
        "--endpoint",
        &endpoint,
        "--certificate-path",
        &ca,
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(text, "definition user {}\n");

    // The system's roots do not know this certificate.
    let (code, _, stderr) = trellis(&["schema", "read", "--endpoint", &endpoint]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains(&format!("connecting to {endpoint}")),
        "{stderr}"
    );
    // A plaintext client cannot talk to a TLS server.
    let (code, _, stderr) = trellis(&["schema", "read", "--endpoint", &endpoint, "--insecure"]);
    assert_ne!(code, Some(0), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
