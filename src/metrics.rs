//! Prometheus metrics: installs the process-wide `metrics` recorder (once,
//! whatever the number of servers a process starts) and serves its text
//! rendering on `GET /metrics`. The metrics themselves are declared next to
//! the code they measure (`api::metrics`, `service::metrics`,
//! `datastore::metrics`, `dispatch::metrics`); this module
//! only asks each of them to describe itself at install time.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How often histogram samples are folded in when nobody scrapes, so an
/// unscraped server does not hold every sample since the last scrape.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
/// The largest request head the endpoint reads; scrapers send far less.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the global recorder on first use and returns the handle that
/// renders it. Later calls (another server in the same process, as in
/// tests) share the first recorder: `metrics` allows only one per process.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // An embedding program installed its own recorder; ours then
            // renders nothing, which is better than refusing to serve.
            tracing::warn!("a metrics recorder is already installed; /metrics will be empty");
        }
        crate::api::metrics::describe();
        crate::service::metrics::describe();
        crate::datastore::metrics::describe();
        crate::dispatch::metrics::describe();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
        }
        handle
    })
}

/// Histograms render as Prometheus histograms (buckets), not summaries,
/// with bucket bounds suited to what each measures.
fn builder() -> PrometheusBuilder {
    let with_buckets = |builder: PrometheusBuilder, name: &str, buckets: &[f64]| {
        let matcher = Matcher::Full(name.to_string());
        builder
            .set_buckets_for_metric(matcher, buckets)
            .expect("bucket lists are non-empty constants")
    };
    let builder = with_buckets(
        PrometheusBuilder::new(),
        crate::api::metrics::HANDLING_SECONDS,
        crate::api::metrics::HANDLING_SECONDS_BUCKETS,
    );
    let builder = with_buckets(
        builder,
        crate::service::metrics::CHECK_DISPATCHES,
        crate::service::metrics::CHECK_DISPATCHES_BUCKETS,
    );
    with_buckets(
        builder,
        crate::datastore::metrics::QUERY_SECONDS,
        crate::datastore::metrics::QUERY_SECONDS_BUCKETS,
    )
}

/// Binds the metrics address (`serve --metrics-addr`).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))
}

/// Answers `GET /metrics` on `listener` with the installed recorder's
/// rendering, until the task running it is dropped. Each connection gets
/// one response and is closed: a scraper needs no more, and it keeps this
/// server a few lines instead of an HTTP stack.
pub async fn serve(listener: TcpListener) {
    let handle = install();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    if let Err(e) = respond(stream, handle).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, retry.
                tracing::warn!(error = %e, "accepting a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let response = match request_target(&head) {
        Some(("GET", "/metrics")) => ok(&handle.render()),
        Some(("GET", _)) => status("404 Not Found", "only /metrics is served here\n"),
        Some(_) => status("405 Method Not Allowed", "only GET is supported\n"),
        None => status("400 Bad Request", "malformed request\n"),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The method and path of the request line, without any query string.
fn request_target(head: &str) -> Option<(&str, &str)> {
    let mut parts = head.lines().next()?.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    parts.next()?.starts_with("HTTP/").then_some(())?;
    Some((method, target.split('?').next().unwrap_or(target)))
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn status(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_target("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            request_target("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_target("GET /metrics\r\n\r\n"), None);
        assert_eq!(request_target(""), None);
    }
}
