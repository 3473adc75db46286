//! Limits of the public gRPC port: the largest request message (applied by
//! tonic's decoder), the longest a call may run (the client's
//! `grpc-timeout`, capped by the server's maximum; DEADLINE_EXCEEDED as
//! SpiceDB answers), and how many calls may be handled at once. Over that many, a call is refused at once with RESOURCE_EXHAUSTED
//! (`LoadShedLayer`) rather than queued without bound, so a burst cannot
//! pile up memory and latency; health checks are never refused, so probes
//! do not take a busy node out of rotation.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Service};

/// tonic's own default for a received message (4 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// Calls handled at once before new ones are shed.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1000;
/// Paths under this prefix are never shed.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// `--grpc-max-message-size`, `--grpc-max-concurrent-requests` and
/// `--grpc-max-request-duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Largest request message, in bytes (larger: OUT_OF_RANGE, as tonic
    /// answers).
    pub max_message_size: usize,
    /// Calls handled at once; 0 means no limit.
    pub max_concurrent_requests: usize,
    /// The longest any call may take to produce its response, whatever
    /// `grpc-timeout` the client sent; `None`: only the client's. A stream
    /// is timed until its response starts, not while it streams.
    pub max_request_duration: Option<Duration>,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_request_duration: None,
        }
    }
}

/// Sheds calls beyond the concurrency limit and ends calls that outlive
/// their deadline with DEADLINE_EXCEEDED (see the module docs).
#[derive(Debug, Clone)]
pub struct LimitsLayer {
    /// `None`: no concurrency limit.
    permits: Option<Arc<Semaphore>>,
    limits: GrpcLimits,
}

impl LimitsLayer {
    pub fn new(limits: &GrpcLimits) -> Self {
        let limit = limits.max_concurrent_requests;
        Self {
            permits: (limit > 0).then(|| Arc::new(Semaphore::new(limit))),
            limits: *limits,
        }
    }

    /// A permit for one call, held until it is dropped (`None`: no limit
    /// is set), or the RESOURCE_EXHAUSTED that sheds the call. Clones share
    /// the permits, so the HTTP gateway's calls count against the same
    /// limit as the gRPC port's.
    pub fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, tonic::Status> {
        let Some(permits) = &self.permits else {
            return Ok(None);
        };
        permits.clone().try_acquire_owned().map(Some).map_err(|_| {
            let limit = self.limits.max_concurrent_requests;
            tracing::debug!(limit, "shedding a call: at the concurrency limit");
            tonic::Status::resource_exhausted(format!(
                "the server is handling its limit of {limit} calls at once (--grpc-max-concurrent-requests); retry later"
            ))
        })
    }
}

impl<S> tower_layer::Layer<S> for LimitsLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Limited {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service `LimitsLayer` wraps.
#[derive(Debug, Clone)]
pub struct Limited<S> {
    inner: S,
    layer: LimitsLayer,
}

impl<S, B> Service<Request<B>> for Limited<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.uri().path().starts_with(HEALTH_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        let permit = match self.layer.admit() {
            Ok(permit) => permit,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        let deadline = Deadline::of(&request, self.layer.limits.max_request_duration);
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = match deadline {
                None => call.await,
                Some(deadline) => match tokio::time::timeout(deadline.after, call).await {
                    Ok(response) => response,
                    Err(_) => Ok(deadline.exceeded().into_http()),
                },
            };
            drop(permit);
            response
        })
    }
}

/// When a call must end: the client's `grpc-timeout` or the server's
/// maximum, whichever is sooner.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    after: Duration,
    /// Whether the server's maximum, not the client, set it.
    server_max: bool,
}

impl Deadline {
    fn of<B>(request: &Request<B>, server_max: Option<Duration>) -> Option<Deadline> {
        // tonic times the same `grpc-timeout` around this layer but answers
        // CANCELLED; SpiceDB (grpc-go) answers DEADLINE_EXCEEDED. Ending a
        // millisecond (the timer's granularity) sooner makes this layer's
        // answer the one sent.
        let client = request
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|value| parse_grpc_timeout(value.as_bytes()))
            .map(|timeout| timeout.saturating_sub(Duration::from_millis(1)));
        match (client, server_max) {
            (Some(client), Some(max)) if max < client => Some(Deadline {
                after: max,
                server_max: true,
            }),
            (Some(client), _) => Some(Deadline {
                after: client,
                server_max: false,
            }),
            (None, Some(max)) => Some(Deadline {
                after: max,
                server_max: true,
            }),
            (None, None) => None,
        }
    }

    fn exceeded(self) -> tonic::Status {
        if self.server_max {
            tonic::Status::deadline_exceeded(format!(
                "the call ran past the server's maximum of {:?} (--grpc-max-request-duration)",
                self.after
            ))
        } else {
            tonic::Status::deadline_exceeded("the call ran past its deadline (grpc-timeout)")
        }
    }
}

const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A `grpc-timeout` value: up to 8 digits and a unit (`H`, `M`, `S`, `m`,
/// `u`, `n`), per the gRPC-over-HTTP/2 spec; anything else is ignored, as
/// tonic ignores it.
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        assert_eq!(parse_grpc_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_grpc_timeout(b"250m"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [&b""[..], b"S", b"5", b"5s", b"123456789S", b"-1S", b"1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_sooner_of_client_and_server_deadlines_applies() {
        let request = |timeout: Option<&'static str>| {
            let mut builder = Request::builder();
            if let Some(timeout) = timeout {
                builder = builder.header(GRPC_TIMEOUT, timeout);
            }
            builder.body(()).expect("a request")
        };
        let max = Some(Duration::from_secs(10));
        assert!(Deadline::of(&request(None), None).is_none());
        let server = Deadline::of(&request(None), max).expect("server max");
        assert!(server.server_max && server.after == Duration::from_secs(10));
        let client = Deadline::of(&request(Some("2S")), max).expect("client's");
        assert!(!client.server_max && client.after < Duration::from_secs(2));
        let capped = Deadline::of(&request(Some("1M")), max).expect("capped");
        assert!(capped.server_max && capped.after == Duration::from_secs(10));
        assert_eq!(capped.exceeded().code(), tonic::Code::DeadlineExceeded);
    }
}
