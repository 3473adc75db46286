//! Evaluation of permissions over relationships: check (and later expand
//! and the lookups). Sees only a datastore `Reader`, a `Dispatcher` for
//! subproblems and the `CompiledSchema`; never transports, caches or peers.

pub mod check;
pub mod membership;

pub use membership::{CaveatExpr, Membership};
