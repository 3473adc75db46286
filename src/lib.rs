//! Trellis: a Zanzibar-style permission service, wire-compatible with
//! SpiceDB's `authzed.api.v1`. See ARCHITECTURE.md for the map.

// pest_derive without its `std` feature names `alloc` from the crate root.
extern crate alloc;

pub mod api;
pub mod caveats;
pub mod client;
pub mod config;
pub mod datastore;
pub mod dispatch;
pub mod gateway;
pub mod graph;
pub mod loadgen;
pub mod metrics;
pub mod model;
pub mod net;
pub mod schema;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod tls;
pub mod validationfile;
pub mod workload;
