//! The peer server: answers check subproblems and lookup read steps other
//! nodes route here over
//! `trellis.dispatch.v1`, on the dispatch port only (never the public
//! one), behind the cluster's preshared key (checked in constant time by
//! `api::auth`). Each subproblem runs through this node's serving chain
//! (cache → singleflight → local) with the depth budget it arrived with.
//! Also answers gRPC health there, unauthenticated, for peers' probes.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use super::Dispatcher;
use super::remote::{convert, proto};
use crate::api::auth::PresharedKeys;

/// The `DispatchService` implementation.
struct PeerService {
    dispatcher: Arc<dyn Dispatcher>,
}

#[tonic::async_trait]
impl proto::dispatch_service_server::DispatchService for PeerService {
    async fn dispatch_check(
        &self,
        request: Request<proto::DispatchCheckRequest>,
    ) -> Result<Response<proto::DispatchCheckResponse>, Status> {
        let request = convert::decode_request(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let outcome = self.dispatcher.check(request).await;
        Ok(Response::new(convert::encode_outcome(&outcome)))
    }

    type DispatchReadStream =
        futures::stream::Iter<std::vec::IntoIter<Result<proto::DispatchReadResponse, Status>>>;

    async fn dispatch_read(
        &self,
        request: Request<proto::DispatchReadRequest>,
    ) -> Result<Response<Self::DispatchReadStream>, Status> {
        let request = convert::decode_read_request(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let outcome = self.dispatcher.read(request).await;
        let messages: Vec<_> = convert::encode_read_outcome(&outcome)
            .into_iter()
            .map(Ok)
            .collect();
        Ok(Response::new(futures::stream::iter(messages)))
    }
}

/// Serves the peer protocol on `listener` with `dispatcher` until
/// `shutdown` resolves, admitting only calls that bear `key`.
pub async fn serve(
    listener: TcpListener,
    dispatcher: Arc<dyn Dispatcher>,
    key: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = crate::net::incoming(listener);
    serve_incoming(incoming, dispatcher, key, shutdown).await
}

/// As `serve`, over any stream of connections (TLS ones from
/// `tls::TlsAcceptor::incoming`).
pub async fn serve_incoming<IO, IE>(
    incoming: impl futures::Stream<Item = Result<IO, IE>>,
    dispatcher: Arc<dyn Dispatcher>,
    key: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error>
where
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // An empty key would admit everyone; `RemoteDispatcher::validate`
    // refuses it before a node gets here, so this is a second lock.
    let keys = PresharedKeys::new(&[key.to_string()]);
    let authenticate = move |request: Request<()>| match &keys {
        Some(keys) => keys.check(request),
        None => Err(Status::unauthenticated("the dispatch cluster has no key")),
    };
    let service = proto::dispatch_service_server::DispatchServiceServer::with_interceptor(
        PeerService { dispatcher },
        authenticate,
    );
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(proto::SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
