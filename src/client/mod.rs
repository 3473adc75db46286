//! Client-side access to a running server's public API. `connect.rs` is
//! the connection the load generator (and the client commands) use.

pub mod connect;
