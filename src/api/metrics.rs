//! gRPC server metrics under the names SpiceDB (go-grpc-prometheus) uses,
//! so existing dashboards work: `grpc_server_handled_total` and
//! `grpc_server_handling_seconds`, labelled by `grpc_service`,
//! `grpc_method`, `grpc_type` and `grpc_code`. One tower layer records them
//! for every service; plus the gauge of open Watch streams.
//!
//! A call is recorded once, when its status is known: from the
//! `grpc-status` response header (trailers-only responses, which is how
//! every error returned by a handler is sent) or else from the trailers at
//! the end of the response body, so a stream's handling time runs until it
//! ends. A body dropped before its trailers (the client went away) counts as
//! `Canceled`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Frame, SizeHint};
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::codegen::{BoxFuture, Service};

/// Counter of finished calls.
pub const HANDLED_TOTAL: &str = "grpc_server_handled_total";
/// Histogram of call durations, start to status.
pub const HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
/// go-grpc-prometheus's default buckets (Prometheus' `DefBuckets`).
pub const HANDLING_SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Gauge of Watch streams currently open.
pub const WATCH_STREAMS_OPEN: &str = "trellis_watch_streams_open";

/// Registers help text for the metrics declared here.
pub fn describe() {
    metrics::describe_counter!(
        HANDLED_TOTAL,
        "Total number of RPCs completed on the server, regardless of success or failure."
    );
    metrics::describe_histogram!(
        HANDLING_SECONDS,
        metrics::Unit::Seconds,
        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."
    );
    metrics::describe_gauge!(
        WATCH_STREAMS_OPEN,
        "Number of Watch streams currently open."
    );
}

/// Counts one open Watch stream for as long as it is alive.
#[derive(Debug)]
pub struct OpenWatchStream(());

impl OpenWatchStream {
    pub fn open() -> Self {
        metrics::gauge!(WATCH_STREAMS_OPEN).increment(1.0);
        Self(())
    }
}

impl Drop for OpenWatchStream {
    fn drop(&mut self) {
        metrics::gauge!(WATCH_STREAMS_OPEN).decrement(1.0);
    }
}

/// Wraps a service so every call is counted and timed.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for GrpcMetrics<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<MeteredBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut call = Call::start(request.uri().path());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(e) => {
                    // The transport failed the call before any status.
                    call.finish("Unknown");
                    return Err(e);
                }
            };
            if let Some(code) = status_code(response.headers()) {
                call.finish(code);
            }
            Ok(response.map(|body| MeteredBody { inner: body, call }))
        })
    }
}

/// A call that reaches the handlers by another transport (the HTTP
/// gateway), recorded under the gRPC metrics as if it had come over gRPC,
/// as SpiceDB's gateway (a gRPC client of its own server) is. Dropped
/// before `finish`, it counts as `Canceled` (the client went away).
#[derive(Debug)]
pub struct RecordedCall(Call);

impl RecordedCall {
    /// Starts timing a call of `path`, `/package.Service/Method`.
    pub fn start(path: &str) -> Self {
        Self(Call::start(path))
    }

    /// Records the call as ended with `code`.
    pub fn finish(mut self, code: tonic::Code) {
        self.0.finish(code_name(code));
    }
}

impl Drop for RecordedCall {
    fn drop(&mut self) {
        self.0.finish("Canceled");
    }
}

/// One call being measured; records itself at most once.
#[derive(Debug)]
struct Call {
    service: String,
    method: String,
    started: Instant,
    recorded: bool,
}

impl Call {
    /// `path` is `/package.Service/Method`.
    fn start(path: &str) -> Self {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        Self {
            service: service.to_string(),
            method: method.to_string(),
            started: Instant::now(),
            recorded: false,
        }
    }

    fn finish(&mut self, code: &'static str) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let labels = [
            ("grpc_service", self.service.clone()),
            ("grpc_method", self.method.clone()),
            (
                "grpc_type",
                call_type(&self.service, &self.method).to_string(),
            ),
            ("grpc_code", code.to_string()),
        ];
        metrics::counter!(HANDLED_TOTAL, &labels).increment(1);
        metrics::histogram!(HANDLING_SECONDS, &labels).record(self.started.elapsed());
    }
}

/// go-grpc-prometheus's `grpc_type`, from the protos' `stream` markers.
fn call_type(service: &str, method: &str) -> &'static str {
    if service.starts_with("grpc.reflection.") {
        return "bidi_stream";
    }
    let server_stream = matches!(
        (service, method),
        (
            "authzed.api.v1.PermissionsService",
            "ReadRelationships" | "LookupResources" | "LookupSubjects" | "ExportBulkRelationships"
        ) | ("authzed.api.v1.WatchService", "Watch")
            | (
                "authzed.api.v1.ExperimentalService",
                "BulkExportRelationships"
            )
            | ("grpc.health.v1.Health", "Watch")
    );
    let client_stream = matches!(
        (service, method),
        (
            "authzed.api.v1.PermissionsService",
            "ImportBulkRelationships"
        ) | (
            "authzed.api.v1.ExperimentalService",
            "BulkImportRelationships"
        )
    );
    match (client_stream, server_stream) {
        (true, _) => "client_stream",
        (false, true) => "server_stream",
        (false, false) => "unary",
    }
}

/// The status name of the `grpc-status` entry, as go-grpc-prometheus
/// writes it (`OK`, `FailedPrecondition`, ...).
fn status_code(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    Some(code_name(code))
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A response body that records its call when the trailers go by, or when
/// it is dropped unfinished.
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    call: Call,
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_code) {
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish("Unknown"),
            // A gRPC body always ends with a status; without one the
            // client cannot tell what happened either.
            Poll::Ready(None) => this.call.finish("Unknown"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.call.finish("Canceled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_types() {
        let call = Call::start("/authzed.api.v1.PermissionsService/CheckPermission");
        assert_eq!(call.service, "authzed.api.v1.PermissionsService");
        assert_eq!(call.method, "CheckPermission");
        assert_eq!(call_type(&call.service, &call.method), "unary");
        assert_eq!(
            call_type("authzed.api.v1.WatchService", "Watch"),
            "server_stream"
        );
        assert_eq!(
            call_type(
                "authzed.api.v1.PermissionsService",
                "ImportBulkRelationships"
            ),
            "client_stream"
        );
    }

    #[test]
    fn status_names() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_code(&headers), None);
        headers.insert("grpc-status", "9".parse().expect("ascii"));
        assert_eq!(status_code(&headers), Some("FailedPrecondition"));
        headers.insert("grpc-status", "junk".parse().expect("ascii"));
        assert_eq!(status_code(&headers), Some("Unknown"));
    }
}
