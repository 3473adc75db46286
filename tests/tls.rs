//! TLS end to end with certificates generated per run (rcgen): the public
//! port serves TLS clients and refuses plaintext ones; a rewritten
//! certificate reaches new connections (file watch, SIGHUP, or a direct
//! reload) and a bad one keeps the old; bad paths stop startup with the
//! flag's name; dispatch peers talk over TLS trusting
//! `--dispatch-upstream-ca-path`; the HTTP gateway serves TLS too; without
//! TLS a SIGHUP leaves the server running.

#[path = "common/server.rs"]
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use server::{KEY, authed};
use trellis::api::proto::v1;
use trellis::api::proto::v1::schema_service_client::SchemaServiceClient;
use trellis::config::Config;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};
use trellis::dispatch::settings::{ClusterSettings, DispatchSettings};
use trellis::model::{Consistency, ObjectRef, SubjectRef};
use trellis::service::{CheckParams, Permissionship};
use trellis::tls::{TlsAcceptor, TlsFiles};

const SCHEMA: &str = "definition user {}

definition document {
    relation viewer: user
    permission view = viewer
}";

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for localhost and 127.0.0.1, written as
    /// `dir/tls.crt` and `dir/tls.key`.
    fn issue_into(&self, dir: &Path) -> TlsFiles {
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        let files = files(dir);
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }
}

fn files(dir: &Path) -> TlsFiles {
    TlsFiles {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        flag: "grpc",
    }
}

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("trellis-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn datastore() -> Arc<MemoryDatastore> {
    Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ))
}

/// Serves the public API over TLS with `tls`; stops when the sender drops.
async fn start_tls_server(tls: TlsFiles) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
    let addr = listener.local_addr().expect("bound");
    let config = Config {
        preshared_keys: vec![KEY.into()],
        grpc_tls: Some(tls),
        ..Config::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(trellis::server::run(datastore(), config, listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// A new TLS connection to `addr` trusting `ca` for `localhost`.
async fn tls_channel(addr: SocketAddr, ca: &str) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(10), endpoint.connect())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("{e:?}"))
}

/// A call that needs the key: writing the schema.
async fn write_schema(channel: Channel) -> Result<(), tonic::Status> {
    SchemaServiceClient::new(channel)
        .write_schema(authed(v1::WriteSchemaRequest {
            schema: SCHEMA.into(),
        }))
        .await
        .map(|_| ())
}

/// A new connection and call trusting `ca`, retried until it works or
/// `limit` passes (the server reloads on its own schedule).
async fn eventually_served(addr: SocketAddr, ca: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if let Ok(channel) = tls_channel(addr, ca).await
            && write_schema(channel).await.is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn tls_clients_are_served_and_plaintext_clients_refused() {
    let dir = TempDir::new("serve");
    let ca = Ca::new("trellis test ca");
    let (addr, _stop) = start_tls_server(ca.issue_into(&dir.0)).await;

    let channel = tls_channel(addr, &ca.pem()).await.expect("TLS connects");
    write_schema(channel).await.expect("served over TLS");

    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        write_schema(channel).await.map_err(|e| e.to_string())
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), plaintext)
        .await
        .expect("refused promptly");
    assert!(refused.is_err(), "a plaintext client was served");

    let stranger = Ca::new("another ca");
    assert!(
        tls_channel(addr, &stranger.pem()).await.is_err(),
        "a client trusting another CA connected"
    );
}

#[tokio::test]
async fn a_rewritten_certificate_reaches_new_connections_and_old_ones_stay() {
    let dir = TempDir::new("watch");
    let first = Ca::new("first ca");
    let (addr, _stop) = start_tls_server(first.issue_into(&dir.0)).await;
    let established = tls_channel(addr, &first.pem()).await.expect("connects");
    write_schema(established.clone()).await.expect("served");

    let second = Ca::new("second ca");
    second.issue_into(&dir.0);
    assert!(
        eventually_served(addr, &second.pem(), Duration::from_secs(30)).await,
        "the rewritten certificate was never served"
    );
    assert!(
        tls_channel(addr, &first.pem()).await.is_err(),
        "new connections still get the old certificate"
    );
    write_schema(established)
        .await
        .expect("an open connection keeps working");
}

#[tokio::test]
async fn a_failed_reload_keeps_the_certificate_in_force() {
    let dir = TempDir::new("reload");
    let first = Ca::new("first ca");
    let acceptor = TlsAcceptor::load(first.issue_into(&dir.0), &[b"h2"]).expect("loads");
    // The acceptor serves any tonic server: here health alone.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
    let addr = listener.local_addr().expect("bound");
    let (_reporter, health) = tonic_health::server::health_reporter();
    let incoming = acceptor.clone().incoming(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let healthy = |channel: Channel| async move {
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok()
    };
    assert!(healthy(tls_channel(addr, &first.pem()).await.expect("connects")).await);

    std::fs::write(dir.0.join("tls.crt"), "not a certificate").expect("write");
    let error = acceptor
        .reload()
        .expect_err("garbage is refused")
        .to_string();
    assert!(error.contains("--grpc-tls-cert-path"), "{error}");
    assert!(
        healthy(
            tls_channel(addr, &first.pem())
                .await
                .expect("still the old one")
        )
        .await
    );

    // A certificate whose key is another's is refused too.
    let second = Ca::new("second ca");
    second.issue_into(&dir.0);
    let other = TempDir::new("reload-other");
    second.issue_into(&other.0);
    std::fs::copy(other.0.join("tls.key"), dir.0.join("tls.key")).expect("copy");
    let error = acceptor.reload().expect_err("mismatched pair").to_string();
    assert!(error.contains("does not match"), "{error}");

    second.issue_into(&dir.0);
    acceptor.reload().expect("a good pair loads");
    assert!(healthy(tls_channel(addr, &second.pem()).await.expect("the new one")).await);
}

/// `trellis serve` on `addr` with the test key and `args`, its stderr lines
/// sent to the returned channel as they come.
fn spawn_serve(
    addr: SocketAddr,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .arg("serve")
        .args(["--grpc-addr", &addr.to_string(), "--metrics-addr", ""])
        .args(["--grpc-preshared-key", KEY])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("trellis starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (child, received)
}

/// Waits (up to 30 s) for a line containing `text`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, text: &str) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Ends the child on drop, whatever the test's outcome.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGHUP to `child`.
fn hang_up(child: &std::process::Child) {
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());
}

#[tokio::test]
async fn sighup_reloads_the_certificate_of_a_running_server() {
    let dir = TempDir::new("sighup");
    let first = Ca::new("first ca");
    let tls = first.issue_into(&dir.0);
    let addr = server::free_addr().await;
    let (child, lines) = spawn_serve(
        addr,
        &[
            "--grpc-tls-cert-path",
            tls.cert.to_str().expect("utf-8"),
            "--grpc-tls-key-path",
            tls.key.to_str().expect("utf-8"),
        ],
    );
    let child = Killed(child);
    assert!(
        wait_for_line(&lines, "serving authzed.api.v1"),
        "never served"
    );
    assert!(eventually_served(addr, &first.pem(), Duration::from_secs(30)).await);

    let second = Ca::new("second ca");
    second.issue_into(&dir.0);
    hang_up(&child.0);
    assert!(
        wait_for_line(&lines, "SIGHUP: reloading the TLS certificate"),
        "SIGHUP not handled"
    );
    assert!(eventually_served(addr, &second.pem(), Duration::from_secs(30)).await);
}

#[tokio::test]
async fn sighup_does_not_stop_a_server_without_tls() {
    let addr = server::free_addr().await;
    let (child, lines) = spawn_serve(addr, &[]);
    let mut child = Killed(child);
    assert!(
        wait_for_line(&lines, "serving authzed.api.v1"),
        "never served"
    );
    hang_up(&child.0);
    assert!(wait_for_line(&lines, "SIGHUP"), "SIGHUP not handled");
    assert!(
        child.0.try_wait().expect("status").is_none(),
        "the server stopped on SIGHUP"
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("still serving");
    write_schema(channel).await.expect("still answering");
}

#[test]
fn bad_certificate_flags_stop_startup_naming_the_flag() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
            .arg("serve")
            .args(["--grpc-addr", "127.0.0.1:0", "--metrics-addr", ""])
            .args(args)
            .output()
            .expect("trellis runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&[
        "--grpc-tls-cert-path",
        "/no/such/tls.crt",
        "--grpc-tls-key-path",
        "/no/such/tls.key",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--grpc-tls-cert-path /no/such/tls.crt"),
        "{stderr}"
    );

    let (code, stderr) = run(&["--grpc-tls-cert-path", "/no/such/tls.crt"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--grpc-tls-key-path must be set too"),
        "{stderr}"
    );

    let (code, stderr) = run(&["--dispatch-upstream-ca-path", "/no/such/ca.pem"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--dispatch-upstream-ca-path"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_peers_talk_over_tls() {
    let dir = TempDir::new("cluster");
    let ca = Ca::new("cluster ca");
    let mut tls = ca.issue_into(&dir.0);
    tls.flag = "dispatch-cluster";
    let datastore = datastore();
    let mut listeners = Vec::new();
    for _ in 0..2 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("peer port"));
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").to_string())
        .collect();
    let mut stops = Vec::new();
    let mut nodes = Vec::new();
    for peer_listener in listeners {
        let peer_addr = peer_listener.local_addr().expect("bound");
        let config = Config {
            grpc_addr: "127.0.0.1:0".parse().expect("address"),
            preshared_keys: vec![KEY.into()],
            dispatch: DispatchSettings {
                cluster: ClusterSettings {
                    enabled: true,
                    addr: peer_addr,
                    preshared_key: Some(KEY.into()),
                    upstreams: addrs.clone(),
                    upstream_ca: Some(ca.pem().into_bytes()),
                    ..ClusterSettings::default()
                },
                ..DispatchSettings::default()
            },
            dispatch_cluster_tls: Some(tls.clone()),
            ..Config::default()
        };
        let node = trellis::server::node(datastore.clone(), &config, Some(peer_addr))
            .expect("a valid cluster");
        nodes.push((
            node.services.clone(),
            node.dispatch.remote.clone().expect("remote"),
        ));
        let public = TcpListener::bind("127.0.0.1:0").await.expect("API port");
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(trellis::server::run_node(
            node,
            datastore.clone(),
            config,
            public,
            Some(peer_listener),
            async {
                let _ = stopped.await;
            },
        ));
    }
    let (services, remote) = &nodes[0];
    services.write_schema(SCHEMA).await.expect("schema");
    let relationships: Vec<String> = (0..40)
        .map(|d| format!("document:d{d}#viewer@user:u{d}"))
        .collect();
    trellis::service::test_support::touch_all(services, &relationships)
        .await
        .expect("written");
    for d in 0..40 {
        let params = CheckParams {
            resource: ObjectRef::new("document", format!("d{d}")),
            permission: "view".into(),
            subject: SubjectRef::object("user", format!("u{d}").as_str()),
            context: Default::default(),
        };
        let outcome = services
            .check(params, Consistency::FullyConsistent)
            .await
            .expect("check");
        assert_eq!(outcome.permissionship, Permissionship::HasPermission);
    }
    let peer = &addrs[1];
    assert!(
        remote.answered_by(peer).unwrap_or(0) > 0,
        "no subproblem crossed to the TLS peer"
    );
    assert_eq!(
        remote.is_up(peer),
        Some(true),
        "the TLS peer was marked down"
    );
}

/// A raw HTTP/1.1 GET of `path` over TLS trusting `ca` for `localhost`;
/// the response as text.
async fn https_get(addr: SocketAddr, ca: &str, path: &str) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    // The server's provider (ring); rustls deprecates it only for lacking
    // post-quantum key exchange.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A peer that closes without TLS close_notify is fine here: the
    // response is complete once the connection ends.
    let _ = tls.read_to_end(&mut response).await;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn the_http_gateway_serves_tls_and_refuses_plaintext() {
    let dir = TempDir::new("gateway");
    let ca = Ca::new("gateway ca");
    let mut tls = ca.issue_into(&dir.0);
    tls.flag = "http";
    let gateway_listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
    let gateway_addr = gateway_listener.local_addr().expect("bound");
    // The gateway binds its own address: free this one for it.
    drop(gateway_listener);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("free port");
    let config = Config {
        preshared_keys: vec![KEY.into()],
        gateway: trellis::gateway::GatewaySettings {
            enabled: true,
            addr: gateway_addr,
        },
        http_tls: Some(tls),
        ..Config::default()
    };
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(trellis::server::run(datastore(), config, listener, async {
        let _ = stopped.await;
    }));

    let mut served = Err(String::new());
    for _ in 0..100 {
        served = https_get(gateway_addr, &ca.pem(), "/healthz").await;
        if served.as_ref().is_ok_and(|r| r.contains("SERVING")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = served.expect("served over TLS");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#"{"status":"SERVING"}"#), "{response}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plaintext = async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(gateway_addr).await?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        let _ = tcp.read_to_end(&mut response).await;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let answer = tokio::time::timeout(Duration::from_secs(15), plaintext)
        .await
        .expect("refused promptly")
        .unwrap_or_default();
    assert!(
        !answer.contains("SERVING"),
        "plaintext was served: {answer}"
    );

    assert!(
        https_get(gateway_addr, &Ca::new("stranger").pem(), "/healthz")
            .await
            .is_err(),
        "a client trusting another CA connected"
    );
}
