//! `--otel-endpoint` (cargo feature `otel`): a real `trellis serve` exports
//! its spans over OTLP/gRPC to a collector this test runs; after a call and
//! a graceful stop (which flushes the batch), the collector holds the
//! call's `grpc` span with its method. Run with
//! `cargo test --features otel --test otel`.

#![cfg(feature = "otel")]

#[path = "common/server.rs"]
mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// Spans received: name and string attributes.
type Received = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

struct Collector {
    received: Received,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.received.lock().expect("not poisoned");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let attributes = span
                        .attributes
                        .iter()
                        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            Value::StringValue(text) => Some((kv.key.clone(), text.clone())),
                            _ => None,
                        })
                        .collect();
                    received.push((span.name, attributes));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector() {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("collector port");
    let collector_addr = listener.local_addr().expect("bound");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector {
                received: received.clone(),
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let addr = server::free_addr().await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args([
            "serve",
            "--metrics-addr",
            "",
            "--grpc-preshared-key",
            server::KEY,
        ])
        .args(["--grpc-addr", &addr.to_string()])
        .args(["--otel-endpoint", &format!("http://{collector_addr}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("trellis starts");
    let mut child = Killed(child);
    let channel = loop {
        match tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
        {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    trellis::api::proto::v1::schema_service_client::SchemaServiceClient::new(channel)
        .write_schema(server::authed(
            trellis::api::proto::v1::WriteSchemaRequest {
                schema: "definition user {}".into(),
            },
        ))
        .await
        .expect("served");

    let pid = child.0.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || child.0.wait().expect("exit status"))
        .await
        .expect("joined");
    assert!(status.success(), "{status}");

    let received = received.lock().expect("not poisoned");
    assert!(
        received.iter().any(|(name, attributes)| name == "grpc"
            && attributes.iter().any(|(key, value)| key == "method"
                && value == "/authzed.api.v1.SchemaService/WriteSchema")),
        "{received:?}"
    );
}

/// Ends the child if the test fails before it does.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
