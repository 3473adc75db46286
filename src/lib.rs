//! Trellis: a Zanzibar-style permission service, wire-compatible with
//! SpiceDB's `authzed.api.v1`. See ARCHITECTURE.md for the map.

pub mod schema;
pub mod validationfile;
