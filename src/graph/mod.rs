//! Evaluation of permissions over relationships: check, expand and the
//! lookups. Sees only a datastore `Reader`, a `Dispatcher` for
//! subproblems and the `CompiledSchema`; never transports, caches or peers.

pub mod check;
pub mod expand;
pub mod lookup_resources;
pub mod lookup_subjects;
pub mod membership;
pub mod subject_set;

pub use membership::{CaveatExpr, Membership};
