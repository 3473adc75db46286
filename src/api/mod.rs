//! The public gRPC API, `authzed.api.v1`, wire-compatible with SpiceDB: the
//! generated types (`proto`), the one mapping from `ServiceError` to a gRPC
//! status (`status`), ZedTokens (`zedtoken`), proto ↔ model conversion
//! (`convert`), SpiceDB's request validation (`validate`) and the gRPC
//! metrics layer (`metrics`). Handlers are
//! thin: validate → convert → `service` → convert. Depends on `model`,
//! `service` (its error type) and `schema` (diagnostic positions); nothing
//! outside `api/` sees a proto type.

pub mod auth;
pub mod convert;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod proto;
pub mod request_id;
pub mod status;
pub mod validate;
pub mod zedtoken;
