//! Request ids, as SpiceDB handles them: the caller's `x-request-id` (or a
//! fresh one) is logged with the call and returned in the response metadata
//! under `io.spicedb.respmeta.requestid`. One tower layer for every service,
//! which also opens the call's `tracing` span (`grpc` with `method` and
//! `request_id`), so every event logged while handling it carries both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tracing::Instrument as _;

const REQUEST_HEADER: &str = "x-request-id";
const RESPONSE_HEADER: &str = "io.spicedb.respmeta.requestid";

/// Wraps a service so every response carries its request id.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower_layer::Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B, RB> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(REQUEST_HEADER)
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .cloned()
            .unwrap_or_else(fresh_id);
        let span = tracing::info_span!(
            "grpc",
            method = %request.uri().path(),
            request_id = id.to_str().unwrap_or("non-ascii"),
        );
        let call = span.in_scope(|| {
            tracing::debug!("request");
            self.inner.call(request)
        });
        Box::pin(
            async move {
                let mut response = call.await?;
                response.headers_mut().insert(RESPONSE_HEADER, id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// A process-unique id: start time and a counter, in hex.
pub(crate) fn fresh_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{start:016x}{n:08x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}
