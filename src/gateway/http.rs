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

/// The largest request body read: a 4 MiB message (the gRPC default, and
/// WriteSchema's limit) takes more room as JSON.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A response body: one JSON document, or NDJSON as a stream yields it.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The gateway's state, shared by every connection.
pub struct Gateway {
    handlers: Handlers,
    keys: Option<PresharedKeys>,
    health: tonic_health::server::HealthService,
}

impl Gateway {
    /// A gateway over the gRPC server's `handlers`, admitting the same
    /// `keys` (none: every call), and answering `/healthz` from the same
    /// health reporter.
    pub fn new(
        handlers: Handlers,
        keys: Option<PresharedKeys>,
        health: tonic_health::server::HealthReporter,
    ) -> Self {
        Self {
            handlers,
            keys,
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

    async fn call(&self, route: &Route, request: Request<Incoming>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let metadata = forwarded_metadata(&parts.headers);
        if let Some(keys) = &self.keys
            && let Err(status) = keys.check(tonic::Request::from_parts(
                metadata.clone(),
                Default::default(),
                (),
            ))
        {
            return error_response(&status);
        }
        let input = match read_input(route, body).await {
            Ok(input) => input,
            Err(status) => return error_response(&status),
        };
        match self.handlers.call(route.rpc, input, metadata).await {
            Ok(Reply::Unary(encoded, metadata)) => {
                match json::to_json(&encoded, &route.method.output()) {
                    Ok(json) => with_metadata(json_response(StatusCode::OK, &json), metadata),
                    Err(status) => error_response(&status),
                }
            }
            Ok(Reply::Stream(stream, metadata)) => with_metadata(
                stream_response(stream, route.method.output()).await,
                metadata,
            ),
            Err(status) => error_response(&status),
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
/// a gRPC server that fails before sending anything.
async fn stream_response(
    mut stream: tonic::codegen::BoxStream<Vec<u8>>,
    output: MessageDescriptor,
) -> Response<Body> {
    let first = match stream.next().await {
        None => return body_response(StatusCode::OK, None, Full::new(Bytes::new()).boxed_unsync()),
        Some(Err(status)) => return error_response(&status),
        Some(Ok(first)) => first,
    };
    let lines = futures::stream::once(async move { Ok(first) })
        .chain(stream)
        .scan(false, move |ended, item| {
            let line = if *ended {
                None
            } else {
                let line = item
                    .and_then(|encoded| json::to_json(&encoded, &output))
                    .map(|result| serde_json::json!({ "result": result }))
                    .unwrap_or_else(|status| {
                        *ended = true;
                        serde_json::json!({ "error": status_json(&status) })
                    });
                Some(ndjson_line(&line))
            };
            futures::future::ready(line.map(|line| Ok::<_, Infallible>(Frame::data(line))))
        });
    body_response(
        StatusCode::OK,
        Some(HeaderValue::from_static("application/json")),
        StreamBody::new(lines).boxed_unsync(),
    )
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
