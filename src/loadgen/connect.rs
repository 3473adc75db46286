//! Connections to the server under test: endpoint parsing, a few HTTP/2
//! channels spread round-robin, and the bearer token on every call.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

use super::LoadgenError;
use crate::api::proto::v1::permissions_service_client::PermissionsServiceClient;
use crate::api::proto::v1::schema_service_client::SchemaServiceClient;

/// Where the server is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    /// `HOST:PORT` or `http://HOST:PORT`. Plaintext only, as `zed --insecure`:
    /// this binary is built without a TLS stack.
    pub endpoint: String,
    /// The preshared key, sent as `authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

/// Adds the bearer token to each call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

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

pub(super) type Authed = InterceptedService<Channel, Bearer>;

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
    pub async fn open(target: &Target, count: usize) -> Result<Self, LoadgenError> {
        let uri = http_uri(&target.endpoint)?;
        let bearer = match &target.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| LoadgenError::Token)?,
            ),
            None => None,
        };
        let mut channels = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let endpoint =
                Channel::from_shared(uri.clone()).map_err(|e| LoadgenError::Endpoint {
                    endpoint: target.endpoint.clone(),
                    reason: e.to_string(),
                })?;
            let channel = endpoint
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|source| LoadgenError::Connect {
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
    /// too, so the floor's requests are the same size on the wire.
    pub fn health(&self, i: usize) -> HealthClient<Authed> {
        HealthClient::new(self.channel(i))
    }
}

/// `HOST:PORT` → `http://HOST:PORT`; `http://` kept; `https://` refused.
fn http_uri(endpoint: &str) -> Result<String, LoadgenError> {
    let refuse = |reason: &str| LoadgenError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    if endpoint.starts_with("https://") {
        return Err(refuse("TLS is not built in; use a plaintext endpoint"));
    }
    let uri = if endpoint.starts_with("http://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    match uri.parse::<tonic::transport::Uri>() {
        Ok(parsed) if parsed.port_u16().is_some() => Ok(uri),
        Ok(_) => Err(refuse("expected HOST:PORT")),
        Err(e) => Err(refuse(&e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_plaintext_uris() {
        assert_eq!(
            http_uri("localhost:50051").expect("ok"),
            "http://localhost:50051"
        );
        assert_eq!(
            http_uri("http://127.0.0.1:1").expect("ok"),
            "http://127.0.0.1:1"
        );
        assert!(http_uri("https://example.com:443").is_err());
        assert!(http_uri("localhost").is_err());
    }
}
