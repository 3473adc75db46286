//! The HTTP/JSON gateway (`--http-enabled`, `--http-addr`): SpiceDB's REST
//! paths (`POST /v1/permissions/check`, …, from the protos' `google.api.http`
//! options) with bodies in the canonical protobuf JSON mapping, streaming
//! RPCs as newline-delimited `{"result": …}` objects, errors as
//! `{"code", "message", "details"}` under grpc-gateway's HTTP statuses, the
//! gRPC API's preshared-key auth, and `GET /healthz` from the same health
//! reporter as gRPC health. It owns routing (`routes`), the JSON mapping
//! (`json`), error rendering (`errors`), HTTP serving (`http`), and the
//! hand-over to the gRPC handlers (`calls`); it never evaluates anything
//! itself. Depends on `api` (handlers, auth, proto descriptors).

mod calls;
mod errors;
mod http;
mod json;
mod routes;

use std::net::SocketAddr;

pub use calls::Handlers;
pub use http::{Gateway, serve};

/// `--http-enabled` and `--http-addr`, SpiceDB's defaults: off, `:8443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Whether the gateway is served at all.
    pub enabled: bool,
    /// Where it listens when enabled.
    pub addr: SocketAddr,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            enabled: false,
            addr: SocketAddr::from(([0, 0, 0, 0], 8443)),
        }
    }
}
