//! The gateway's HTTP side: one hyper service per connection (HTTP/1.1 and
//! h2c on one port) that routes a request, authenticates it, maps its JSON
//! body to the RPC's request, calls the handler and writes the answer as
//! grpc-gateway does; and `serve`, which takes any stream of connections (a
//! TCP listener today, a TLS acceptor later) and drains them on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost_reflect::MessageDescriptor;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Status;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic_health::pb::health_server::Health as _;

use super::calls::{Handlers, Input, Reply};
use super::errors::{http_status, status_json};
use super::json;
use super::routes::{self, Lookup, Route};
use crate::api::auth::PresharedKeys;
use crate::api::limits::LimitsLayer;
use crate::api::metrics::RecordedCall;

/// The largest request body read: a 4 MiB message (the gRPC default, and
/// WriteSchema's limit) takes more room as JSON.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A response body: one JSON document, or NDJSON as a stream yields it.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The gateway's state, shared by every connection.
pub struct Gateway {
    handlers: Handlers,
    keys: Option<PresharedKeys>,
    /// The gRPC port's concurrency limit, shared: a gateway call holds one
    /// of the same permits while it runs.
    limits: LimitsLayer,
    health: tonic_health::server::HealthService,
}

impl Gateway {
    /// A gateway over the gRPC server's `handlers`, admitting the same
    /// `keys` (none: every call) within the same concurrency `limits`, and
    /// answering `/healthz` from the same health reporter.
    pub fn new(
        handlers: Handlers,
        keys: Option<PresharedKeys>,
        limits: LimitsLayer,
        health: tonic_health::server::HealthReporter,
    ) -> Self {
        Self {
            handlers,
            keys,
            limits,
            health: tonic_health::server::HealthService::from_health_reporter(health),
        }
    }

    /// Answers one HTTP request; every failure is an HTTP answer.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let request_id = request_id(request.headers());
        let mut response = match routes::find(request.method(), request.uri().path()) {
            Lookup::Rpc(route) => self.call(route, request).await,
            Lookup::Healthz => self.healthz(request.uri().query()).await,
            Lookup::WrongVerb => error_response(&Status::unimplemented("Method Not Allowed")),
            Lookup::NotFound => error_response(&Status::not_found("Not Found")),
        };
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), request_id);
        response
    }

    /// Maps the body, then calls the handler as grpc-gateway would call the
    /// gRPC server: a body that is not JSON of the request type is refused
    /// before the call (and before authentication, as there), and the call
    /// counts in the gRPC metrics.
    async fn call(&self, route: &Route, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let input = match read_input(route, body).await {
            Ok(input) => input,
            Err(status) => return error_response(&status),
        };
        let metadata = forwarded_metadata(&parts.headers);
        let call = RecordedCall::start(route.rpc);
        if let Some(keys) = &self.keys
            && let Err(status) = keys.check(tonic::Request::from_parts(
                metadata.clone(),
                Default::default(),
                (),
            ))
        {
            call.finish(status.code());
            return error_response(&status);
        }
        // Held until the reply (for a stream, its start), as on the gRPC port.
        let _permit = match self.limits.admit() {
            Ok(permit) => permit,
            Err(status) => {
                call.finish(status.code());
                return error_response(&status);
            }
        };
        let reply = self.handlers.call(route.rpc, input, metadata).await;
        match reply {
            Ok(Reply::Unary(encoded, metadata)) => {
                match json::to_json(&encoded, &route.method.output()) {
                    Ok(json) => {
                        call.finish(tonic::Code::Ok);
                        with_metadata(json_response(StatusCode::OK, &json), metadata)
                    }
                    Err(status) => {
                        call.finish(status.code());
                        error_response(&status)
                    }
                }
            }
            Ok(Reply::Stream(stream, metadata)) => with_metadata(
                stream_response(stream, route.method.output(), call).await,
                metadata,
            ),
            Err(status) => {
                call.finish(status.code());
                error_response(&status)
            }
        }
    }

    /// grpc-gateway's `/healthz`: the gRPC health check of `?service=`
    /// (the whole server without one); SERVING is 200 `{"status":
    /// "SERVING"}`, NOT_SERVING 503, an unknown service 404.
    async fn healthz(&self, query: Option<&str>) -> Response<Body> {
        let service = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("service="))
            .unwrap_or_default()
            .to_string();
        let request = tonic::Request::new(tonic_health::pb::HealthCheckRequest { service });
        match self.health.check(request).await {
            Ok(response) => {
                let status = response.into_inner().status();
                if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
                    json_response(
                        StatusCode::OK,
                        &serde_json::json!({ "status": status.as_str_name() }),
                    )
                } else {
                    error_response(&Status::unavailable(format!(
                        "status:{}",
                        status.as_str_name()
                    )))
                }
            }
            Err(status) => error_response(&status),
        }
    }
}

/// Reads and maps the body: one message, or for a client-streaming RPC the
/// newline-delimited messages of the stream.
async fn read_input(route: &Route, body: Incoming) -> Result<Input, Status> {
    let bytes = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Status::resource_exhausted(format!(
                    "request body larger than {MAX_BODY_BYTES} bytes"
                ))
            } else {
                Status::invalid_argument(format!("reading the request body: {e}"))
            }
        })?
        .to_bytes();
    let input_type = route.method.input();
    let invalid = |e: json::BodyError| Status::invalid_argument(e.to_string());
    if route.method.is_client_streaming() {
        json::decode_messages(&bytes, &input_type)
            .map(Input::Stream)
            .map_err(invalid)
    } else {
        json::decode_message(&bytes, &input_type)
            .map(Input::One)
            .map_err(invalid)
    }
}

/// A server stream as NDJSON: `{"result": …}` per message; an error ends
/// it with `{"error": …}`. An error before the first message is answered
/// as a failed call (its HTTP status and error body), as grpc-gateway sees
/// a gRPC server that fails before sending anything. `call` is recorded
/// when the stream ends (or as canceled if the client leaves first).
async fn stream_response(
    mut stream: tonic::codegen::BoxStream<Vec<u8>>,
    output: MessageDescriptor,
    call: RecordedCall,
) -> Response<Body> {
    let first = match stream.next().await {
        None => {
            call.finish(tonic::Code::Ok);
            return body_response(StatusCode::OK, None, Full::new(Bytes::new()).boxed_unsync());
        }
        Some(Err(status)) => {
            call.finish(status.code());
            return error_response(&status);
        }
        Some(Ok(first)) => first,
    };
    let lines = NdjsonLines {
        stream,
        first: Some(first),
        output,
        call: Some(call),
    };
    let frames = futures::stream::unfold(lines, |mut lines| async move {
        let line = lines.next_line().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), lines))
    });
    body_response(
        StatusCode::OK,
        Some(HeaderValue::from_static("application/json")),
        StreamBody::new(frames).boxed_unsync(),
    )
}

/// The lines of an NDJSON answer, read from the handler's stream.
struct NdjsonLines {
    stream: tonic::codegen::BoxStream<Vec<u8>>,
    /// The message read before the answer began.
    first: Option<Vec<u8>>,
    output: MessageDescriptor,
    /// `None` once the stream has ended (and the call is recorded).
    call: Option<RecordedCall>,
}

impl NdjsonLines {
    async fn next_line(&mut self) -> Option<Bytes> {
        let call = self.call.take()?;
        let next = match self.first.take() {
            Some(first) => Some(Ok(first)),
            None => self.stream.next().await,
        };
        let outcome = match next {
            None => {
                call.finish(tonic::Code::Ok);
                return None;
            }
            Some(item) => item.and_then(|encoded| json::to_json(&encoded, &self.output)),
        };
        let line = match outcome {
            Ok(result) => {
                self.call = Some(call);
                serde_json::json!({ "result": result })
            }
            Err(status) => {
                call.finish(status.code());
                serde_json::json!({ "error": status_json(&status) })
            }
        };
        Some(ndjson_line(&line))
    }
}

fn ndjson_line(value: &serde_json::Value) -> Bytes {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    Bytes::from(line)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    body_response(
        status,
        Some(HeaderValue::from_static("application/json")),
        Full::new(Bytes::from(value.to_string())).boxed_unsync(),
    )
}

fn body_response(
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Body,
) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}

/// A failed call as grpc-gateway writes it (UNAUTHENTICATED also names the
/// problem in `WWW-Authenticate`).
fn error_response(status: &Status) -> Response<Body> {
    let mut response = json_response(http_status(status.code()), &status_json(status));
    if status.code() == tonic::Code::Unauthenticated
        && let Ok(value) = HeaderValue::from_str(status.message())
    {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// The metadata a call carries, as grpc-gateway forwards it:
/// `Authorization` and `X-Request-Id` as they are, `Grpc-Metadata-KEY` as
/// `KEY`; other headers stay behind.
fn forwarded_metadata(headers: &HeaderMap) -> MetadataMap {
    let mut metadata = MetadataMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let key = match name {
            "authorization" | "x-request-id" => name,
            _ => match name.strip_prefix("grpc-metadata-") {
                Some(key) => key,
                None => continue,
            },
        };
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) {
            metadata.append(key, value);
        }
    }
    metadata
}

/// The handler's response metadata as `Grpc-Metadata-KEY` headers, as
/// grpc-gateway forwards gRPC headers.
fn with_metadata(mut response: Response<Body>, metadata: MetadataMap) -> Response<Body> {
    for (name, value) in metadata.into_headers() {
        let Some(name) = name else { continue };
        if let Ok(header) = HeaderName::from_bytes(format!("grpc-metadata-{name}").as_bytes()) {
            response.headers_mut().append(header, value);
        }
    }
    response
}

/// The caller's `X-Request-Id` (bounded), or a fresh one, echoed back.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .cloned()
        .unwrap_or_else(crate::api::request_id::fresh_id)
}

/// Serves `gateway` on every connection `incoming` yields until `shutdown`
/// resolves; then stops accepting, lets each connection finish its
/// in-flight requests (HTTP/1 keep-alive and HTTP/2 connections are told to
/// close) and returns when they have. Any byte stream works, so a TLS
/// acceptor can be put in front of the listener without changing this.
pub async fn serve<I, IO, E>(gateway: Arc<Gateway>, incoming: I, shutdown: impl Future<Output = ()>)
where
    I: Stream<Item = Result<IO, E>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: std::fmt::Display,
{
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut incoming = pin!(incoming);
    let mut shutdown = pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = incoming.next() => match next {
                None => break,
                Some(Ok(io)) => {
                    connections.spawn(serve_connection(gateway.clone(), io, stopping.clone()));
                }
                Some(Err(e)) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin on the failing accept.
                    tracing::warn!(error = %e, "accepting an HTTP gateway connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    stop.send_replace(true);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection<IO>(
    gateway: Arc<Gateway>,
    io: IO,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(gateway.handle(request).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut connection = pin!(builder.serve_connection(TokioIo::new(io), service));
    let finished = tokio::select! {
        result = connection.as_mut() => Some(result),
        _ = stopping.wait_for(|stop| *stop) => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP gateway connection ended with an error");
    }
}
