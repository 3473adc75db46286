//! The generated `trellis.dispatch.v1` types, server trait and client (built
//! by `build.rs` from `proto/dispatch/v1`). Only `dispatch::remote` and
//! `dispatch::server` name them.

// Generated code: its style is tonic-prost-build's, not ours.
#![allow(clippy::all, clippy::pedantic, missing_docs)]
include!(concat!(env!("OUT_DIR"), "/trellis.dispatch.v1.rs"));

/// The service name health answers for on the peer port.
pub const SERVICE_NAME: &str = "trellis.dispatch.v1.DispatchService";
