//! Helpers the service tests share: compiled for unit tests, and for
//! integration tests through the `test-support` feature.

use crate::datastore::Datastore;
use crate::model::{RelationshipUpdate, Revision, UpdateOperation, parse_relationship};

use super::{ServiceError, Services, WriteParams};

/// Writes the relationships (relationship strings) with TOUCH, in one call.
pub async fn touch_all<D: Datastore>(
    services: &Services<D>,
    rels: &[impl AsRef<str>],
) -> Result<Revision, ServiceError> {
    let updates = rels
        .iter()
        .map(|r| RelationshipUpdate {
            operation: UpdateOperation::Touch,
            relationship: parse_relationship(r.as_ref()).expect("test relationship parses"),
        })
        .collect();
    services
        .write_relationships(WriteParams {
            updates,
            ..Default::default()
        })
        .await
}
