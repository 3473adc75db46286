//! Dispatch through the whole chain over the memory datastore, on cyclic
//! data that recurses to the depth limit.

use std::sync::Arc;

mod deep {
    use super::*;
    use crate::datastore::memory::MemoryDatastore;
    use crate::model::{Consistency, RelationshipUpdate, UpdateOperation, parse_relationship};
    use crate::service::{CheckParams, Limits, Permissionship, WriteParams};

    /// A permission that recurses through an arrow inside an intersection,
    /// over cyclic data (a differential-test case): checks walk to the
    /// depth limit with several frames per level.
    const SCHEMA: &str = "definition user {}
definition group {
    relation owner: user | group#admin
    relation admin: group
    permission share = ((admin & admin->share) + admin - nil) + (admin + owner) + admin
}";

    const RELATIONSHIPS: &[&str] = &[
        "group:g2#owner@group:g2#admin",
        "group:g1#admin@group:g1",
        "group:g3#admin@group:g2",
        "group:g1#admin@group:g2",
        "group:g2#admin@group:g3",
        "group:g2#admin@group:g1",
        "group:g1#admin@group:g3",
        "group:g2#owner@group:g1#admin",
        "group:g2#owner@group:g3#admin",
        "group:g3#owner@group:g3#admin",
        "group:g2#admin@group:g2",
    ];

    fn share(resource: &str, subject: &str) -> CheckParams {
        let rel =
            parse_relationship(&format!("group:{resource}#share@{subject}")).expect("test check");
        CheckParams {
            resource: rel.resource,
            permission: rel.relation,
            subject: rel.subject,
            context: Default::default(),
        }
    }

    /// Runs on a thread with a deliberately small stack: the depth limit,
    /// not the thread's stack size, must bound the recursion.
    #[test]
    fn recursion_to_the_depth_limit_fits_any_thread_stack() {
        let thread = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let services = crate::server::services(
                        Arc::new(MemoryDatastore::default()),
                        Limits::default(),
                    );
                    services.write_schema(SCHEMA).await.expect("valid schema");
                    let updates = RELATIONSHIPS
                        .iter()
                        .map(|r| RelationshipUpdate {
                            operation: UpdateOperation::Touch,
                            relationship: parse_relationship(r).expect("test relationship"),
                        })
                        .collect();
                    services
                        .write_relationships(WriteParams {
                            updates,
                            ..Default::default()
                        })
                        .await
                        .expect("written");
                    let yes = services
                        .check(share("g3", "group:g2"), Consistency::FullyConsistent)
                        .await
                        .expect("answered");
                    assert_eq!(yes.permissionship, Permissionship::HasPermission);
                    let no = services
                        .check(share("g1", "group:g3#admin"), Consistency::FullyConsistent)
                        .await;
                    assert!(
                        !matches!(no, Ok(ref o) if o.permissionship == Permissionship::HasPermission),
                        "{no:?}"
                    );
                })
            })
            .expect("thread");
        thread.join().expect("no overflow");
    }
}
