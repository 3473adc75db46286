//! The tonic handlers, one module per gRPC service: each handler validates
//! the request, converts it to a service call, and converts the result back.
//! This module holds the `Api` they share and the conversions more than one
//! service uses. RPCs not implemented answer UNIMPLEMENTED through the
//! generated default stubs.

mod bulk;
mod experimental;
mod permissions;
mod schema;
mod watch;

pub use watch::WatchApi;

use std::sync::Arc;

use super::proto::v1;
use super::{convert, validate};
use crate::datastore::Datastore;
use crate::model::{Consistency, Revision};
use crate::service::{CheckParams, Permissionship, ServiceError, Services};

/// Response metadata key SpiceDB uses for the dispatch count of a check.
pub(super) const DISPATCH_COUNT_KEY: &str = "io.spicedb.respmeta.dispatchedoperationscount";
/// Response metadata key SpiceDB uses for the subproblems of a check that
/// were answered from the dispatch cache.
pub(super) const CACHED_DISPATCH_COUNT_KEY: &str = "io.spicedb.respmeta.cachedoperationscount";

/// The public API over one set of services.
pub struct Api<D: Datastore> {
    services: Arc<Services<D>>,
}

impl<D: Datastore> Api<D> {
    pub fn new(services: Arc<Services<D>>) -> Self {
        Self { services }
    }

    fn limits(&self) -> &validate::Limits {
        self.services.limits()
    }

    fn token(&self, revision: Revision) -> v1::ZedToken {
        convert::zed_token(revision, self.services.datastore().unique_id(), &[])
    }

    fn consistency(
        &self,
        consistency: Option<&v1::Consistency>,
    ) -> Result<Consistency, ServiceError> {
        convert::consistency(consistency, self.services.datastore().unique_id())
    }
}

pub(super) fn context(
    s: Option<&prost_types::Struct>,
    path: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ServiceError> {
    s.map_or_else(
        || Ok(serde_json::Map::new()),
        |s| convert::struct_to_json(s, path),
    )
}

pub(super) fn check_params(
    resource: Option<&v1::ObjectReference>,
    permission: &str,
    subject: Option<&v1::SubjectReference>,
    ctx: Option<&prost_types::Struct>,
    path: &str,
) -> Result<CheckParams, ServiceError> {
    let field = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    Ok(CheckParams {
        resource: convert::object_ref(resource, &field("resource"))?,
        permission: permission.to_string(),
        subject: convert::subject_ref(subject, &field("subject"))?,
        context: context(ctx, &field("context"))?,
    })
}

/// The proto enum value and caveat info of a permissionship.
pub(super) fn permissionship_fields(p: &Permissionship) -> (i32, Option<v1::PartialCaveatInfo>) {
    use v1::check_permission_response::Permissionship as P;
    match p {
        Permissionship::NoPermission => (P::NoPermission as i32, None),
        Permissionship::HasPermission => (P::HasPermission as i32, None),
        Permissionship::Conditional { missing_context } => (
            P::ConditionalPermission as i32,
            Some(v1::PartialCaveatInfo {
                missing_required_context: missing_context.clone(),
            }),
        ),
    }
}
