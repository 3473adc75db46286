//! Connections to a SpiceDB-compatible server, shared by the client
//! commands and the load generator: endpoint parsing, plaintext or TLS
//! (rustls with the ring provider; the system's roots or a given CA), one or
//! more HTTP/2 channels spread round-robin, and the bearer token on every
//! call.

use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_client::HealthClient;

use crate::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use crate::api::proto::v1::schema_service_client::SchemaServiceClient;

/// How the bytes travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plaintext HTTP/2, as `zed --insecure`.
    Plaintext,
    /// TLS, verifying the server against `ca_certificate` (a PEM file) when
    /// given, else against the system's trusted roots.
    Tls { ca_certificate: Option<PathBuf> },
}

/// Where the server is and how to reach it.
#[derive(Clone)]
pub struct Target {
    /// `HOST:PORT`, or a URL: `http://` forces plaintext and `https://` TLS
    /// whatever `transport` says.
    pub endpoint: String,
    /// The preshared key, sent as `authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Plaintext or TLS for a bare `HOST:PORT`.
    pub transport: Transport,
}

/// The token is a secret: debug output says only whether there is one.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("transport", &self.transport)
            .finish()
    }
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is not `HOST:PORT` or an `http(s)://HOST:PORT` URL.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// The token cannot travel in an HTTP header.
    #[error("the token is not a valid header value")]
    Token,
    /// The CA certificate file could not be read.
    #[error("reading the certificate {path}: {source}")]
    Certificate {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server could not be reached (or the TLS handshake failed).
    #[error("connecting to {endpoint}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
}

/// Adds the bearer token to each call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that adds the bearer token to each call.
pub type Authed = InterceptedService<Channel, Bearer>;

/// Open channels to one server. Cloning is cheap (channels are handles).
#[derive(Debug, Clone)]
pub struct Connection {
    channels: Vec<Channel>,
    bearer: Bearer,
}

impl Connection {
    /// Opens `count` (at least one) HTTP/2 connections. Several, because one
    /// connection serialises its frames through one task on each side and
    /// would cap throughput before the server does.
    pub async fn open(target: &Target, count: usize) -> Result<Self, ConnectError> {
        let endpoint = endpoint(target)?;
        let bearer = match &target.token {
            Some(token) => {
                let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
                    .parse()
                    .map_err(|_| ConnectError::Token)?;
                // Keeps the token out of HTTP/2 header compression tables.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut channels = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let channel = endpoint
                .connect()
                .await
                .map_err(|source| ConnectError::Connect {
                    endpoint: target.endpoint.clone(),
                    source,
                })?;
            channels.push(channel);
        }
        Ok(Self {
            channels,
            bearer: Bearer(bearer),
        })
    }

    fn channel(&self, i: usize) -> Authed {
        let channel = self.channels[i % self.channels.len()].clone();
        InterceptedService::new(channel, self.bearer.clone())
    }

    /// A PermissionsService client on connection `i` (modulo their number).
    pub fn permissions(&self, i: usize) -> PermissionsServiceClient<Authed> {
        PermissionsServiceClient::new(self.channel(i))
    }

    /// A SchemaService client on the first connection.
    pub fn schema(&self) -> SchemaServiceClient<Authed> {
        SchemaServiceClient::new(self.channel(0))
    }

    /// A `grpc.health.v1` client on connection `i`; it carries the token
    /// too, so the load generator's floor requests are the same size on the
    /// wire as its checks.
    pub fn health(&self, i: usize) -> HealthClient<Authed> {
        HealthClient::new(self.channel(i))
    }
}

/// The tonic endpoint for `target`, TLS configured if it is used.
fn endpoint(target: &Target) -> Result<Endpoint, ConnectError> {
    let (uri, transport) = resolve(&target.endpoint, &target.transport)?;
    let refuse = |reason: String| ConnectError::Endpoint {
        endpoint: target.endpoint.clone(),
        reason,
    };
    let endpoint = Channel::from_shared(uri)
        .map_err(|e| refuse(e.to_string()))?
        .tcp_nodelay(true);
    let config = match transport {
        Transport::Plaintext => return Ok(endpoint),
        Transport::Tls {
            ca_certificate: Some(path),
        } => {
            let pem = std::fs::read(&path)
                .map_err(|source| ConnectError::Certificate { path, source })?;
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
        }
        Transport::Tls {
            ca_certificate: None,
        } => ClientTlsConfig::new().with_native_roots(),
    };
    endpoint
        .tls_config(config)
        .map_err(|e| refuse(e.to_string()))
}

/// The URI to dial and the transport it uses: `HOST:PORT` takes
/// `transport`; an `http://` or `https://` scheme overrides it.
fn resolve(endpoint: &str, transport: &Transport) -> Result<(String, Transport), ConnectError> {
    let refuse = |reason: &str| ConnectError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let tls = || match transport {
        Transport::Tls { ca_certificate } => Transport::Tls {
            ca_certificate: ca_certificate.clone(),
        },
        Transport::Plaintext => Transport::Tls {
            ca_certificate: None,
        },
    };
    let (uri, transport) = if endpoint.starts_with("https://") {
        (endpoint.to_string(), tls())
    } else if endpoint.starts_with("http://") {
        (endpoint.to_string(), Transport::Plaintext)
    } else if endpoint.contains("://") {
        return Err(refuse(
            "expected HOST:PORT, http://HOST:PORT or https://HOST:PORT",
        ));
    } else if *transport == Transport::Plaintext {
        (format!("http://{endpoint}"), Transport::Plaintext)
    } else {
        (format!("https://{endpoint}"), tls())
    };
    match uri.parse::<tonic::transport::Uri>() {
        Ok(parsed) if parsed.port_u16().is_some() => Ok((uri, transport)),
        Ok(_) => Err(refuse("expected HOST:PORT")),
        Err(e) => Err(refuse(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> Transport {
        Transport::Tls {
            ca_certificate: None,
        }
    }

    #[test]
    fn bare_endpoints_take_the_transport() {
        assert_eq!(
            resolve("localhost:50051", &Transport::Plaintext).expect("ok"),
            ("http://localhost:50051".to_string(), Transport::Plaintext)
        );
        assert_eq!(
            resolve("localhost:50051", &tls()).expect("ok"),
            ("https://localhost:50051".to_string(), tls())
        );
    }

    #[test]
    fn a_scheme_overrides_the_transport() {
        assert_eq!(
            resolve("http://127.0.0.1:1", &tls()).expect("ok"),
            ("http://127.0.0.1:1".to_string(), Transport::Plaintext)
        );
        assert_eq!(
            resolve("https://example.com:443", &Transport::Plaintext).expect("ok"),
            ("https://example.com:443".to_string(), tls())
        );
    }

    #[test]
    fn endpoints_without_a_port_or_with_another_scheme_are_refused() {
        assert!(resolve("localhost", &Transport::Plaintext).is_err());
        assert!(resolve("ftp://localhost:1", &Transport::Plaintext).is_err());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let target = Target {
            endpoint: "localhost:1".into(),
            token: Some("sekrit".into()),
            transport: Transport::Plaintext,
        };
        assert!(!format!("{target:?}").contains("sekrit"));
    }
}
