//! The dispatcher seam: the engine asks for every subproblem through the
//! `Dispatcher` trait, so caching, deduplication and routing to peers can
//! stand in front of it without the engine knowing. A subproblem is a plain
//! value: resource type and ids, relation, subject, revision, depth budget.
//! The chain `builder` assembles: `trace` (records subproblems only when a
//! debug trace is asked for) → `caching` → `singleflight` → `local`, with
//! local's subproblems re-entering at the cache; in a cluster `remote`
//! stands before `local` and routes each subproblem to its owner on a
//! consistent hashring of peers, whose `server` answers it. The lookups'
//! relationship reads (`read`) cross the same chain as a second kind of
//! subproblem, so they are cached and routed to their owners too.

pub mod builder;
pub mod caching;
pub mod cost;
pub mod keys;
pub mod local;
pub mod metrics;
pub mod read;
pub mod remote;
pub mod server;
pub mod settings;
pub mod singleflight;
mod stack;
#[cfg(test)]
mod tests;
pub mod trace;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

pub use self::read::{ReadQuery, ReadRequest, ReadResult};
use crate::graph::Membership;
use crate::model::{Revision, SubjectRef};

/// SpiceDB's `--dispatch-max-depth` default.
pub const DEFAULT_MAX_DEPTH: u32 = 50;

/// Is `subject` in `resource_type:{id}#relation`, for each id, at `revision`?
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckRequest {
    pub resource_type: String,
    pub resource_ids: Vec<String>,
    pub relation: String,
    pub subject: SubjectRef,
    pub revision: Revision,
    /// Dispatches left before the request fails with `MaxDepthExceeded`.
    pub depth_remaining: u32,
    pub results_setting: ResultsSetting,
}

/// How many of the requested ids need an answer (SpiceDB's
/// `results_setting`). A single-resource check is decided by the first
/// member found among the ids a subproblem batches, since they all serve
/// that one resource; bulk answers and `.all()` need every id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultsSetting {
    AllowSingleResult,
    RequireAllResults,
}

impl CheckError {
    /// A depth error comes from the deepest branch, so in SpiceDB (which
    /// races branches) it loses to any other branch's decisive answer;
    /// evaluation defers it until nothing else has decided.
    pub fn is_deferrable(&self) -> bool {
        matches!(self, CheckError::MaxDepthExceeded)
    }
}

/// Per resource id, whether the subject is a member. Ids that are not
/// members may be absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckResult {
    pub memberships: HashMap<String, Membership>,
    /// Subproblems computed to answer this (itself included); a subproblem
    /// served from the cache computed nothing and counts 0 here.
    pub dispatch_count: u32,
    /// Subproblems whose answers came from the cache instead: what the
    /// cached answers had counted (SpiceDB's `cached_dispatch_count`).
    pub cached_dispatch_count: u32,
    /// The depth this computation needed; a cached result can serve any
    /// request with at least this much depth remaining.
    pub depth_required: u32,
    /// The earliest expiration among the relationships this answer read.
    /// Expiry is judged against the datastore's clock at read time, so the
    /// same revision can answer differently later: such an answer is not
    /// cached.
    pub expires_at: Option<SystemTime>,
}

impl CheckResult {
    /// The membership of one resource id.
    pub fn membership(&self, resource_id: &str) -> Membership {
        self.memberships
            .get(resource_id)
            .cloned()
            .unwrap_or(Membership::NotMember)
    }
}

/// Why a check could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    #[error("max depth exceeded")]
    MaxDepthExceeded,
    #[error("object definition `{0}` not found")]
    UnknownDefinition(String),
    #[error("relation/permission `{relation}` not found under definition `{definition}`")]
    UnknownRelation {
        definition: String,
        relation: String,
    },
    #[error("no schema at the requested revision")]
    NoSchema,
    #[error(transparent)]
    Datastore(#[from] crate::datastore::DatastoreError),
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers check subproblems. Implementations: `local::LocalDispatcher`
/// (evaluates in process), `caching::CachingDispatcher` and
/// `singleflight::SingleflightDispatcher` (decorators), and
/// `remote::RemoteDispatcher` (routes to the owning peer).
pub trait Dispatcher: Send + Sync {
    fn check(&self, request: CheckRequest) -> BoxFuture<'_, Result<CheckResult, CheckError>>;

    /// One of a lookup walk's relationship reads (see `read`).
    fn read(&self, request: ReadRequest) -> BoxFuture<'_, Result<ReadResult, CheckError>>;
}
