//! A real Trellis server on a free loopback port (memory datastore), for
//! tests that speak gRPC to it.

use std::sync::Arc;

use tonic::Request;
use tonic::transport::Channel;

use trellis::config::Config;
use trellis::datastore::memory::MemoryDatastore;
use trellis::datastore::{RevisionConfig, SystemClock};

/// Starts a server accepting `key`; it stops when the returned sender is
/// dropped.
pub async fn start(key: &str) -> (Channel, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let addr = listener.local_addr().expect("bound address");
    let config = Config {
        preshared_keys: vec![key.to_string()],
        ..Config::default()
    };
    let datastore = Arc::new(MemoryDatastore::new(
        RevisionConfig::default(),
        Arc::new(SystemClock),
    ));
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
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    (channel, stop)
}

/// `message` with the bearer token `key`.
pub fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request
}
