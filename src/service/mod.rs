//! Transport-free use cases: pick the revision a request reads at, validate
//! requests against the schema, and call the engine and the datastore. The
//! API layer converts protobuf to these calls and back; nothing here knows
//! about gRPC.

pub mod error;

pub use error::ServiceError;
