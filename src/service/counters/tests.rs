//! Relationship counters through the services over the memory datastore.

use std::sync::Arc;

use super::*;
use crate::datastore::memory::MemoryDatastore;
use crate::model::SubjectFilter;
use crate::service::Limits;

const SCHEMA: &str = "definition user {}
definition document {
    relation viewer: user
    relation owner: user
}";

async fn services() -> Arc<Services<MemoryDatastore>> {
    let services = crate::server::services(Arc::new(MemoryDatastore::default()), Limits::default());
    services
        .write_schema(SCHEMA)
        .await
        .expect("schema is valid");
    services
}

async fn touch(services: &Services<MemoryDatastore>, rels: &[String]) {
    crate::service::test_support::touch_all(services, rels)
        .await
        .expect("write succeeds");
}

fn viewers() -> RelationshipFilter {
    RelationshipFilter {
        resource_type: Some("document".into()),
        relation: Some("viewer".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn counts_what_the_filter_matches_at_head() {
    let services = services().await;
    services
        .register_counter("doc_viewers", viewers())
        .await
        .expect("registers");
    let (count, _) = services
        .count_relationships("doc_viewers")
        .await
        .expect("counts");
    assert_eq!(count, 0);
    // More than one page of the count loop, plus some the filter skips.
    let rels: Vec<String> = (0..COUNT_PAGE + 5)
        .map(|i| format!("document:d{i}#viewer@user:u"))
        .chain(["document:x#owner@user:u".to_string()])
        .collect();
    for chunk in rels.chunks(1000) {
        touch(&services, chunk).await;
    }
    let (count, revision) = services
        .count_relationships("doc_viewers")
        .await
        .expect("counts");
    assert_eq!(count, (COUNT_PAGE + 5) as u64);
    assert_eq!(
        revision,
        services.datastore().head_revision().await.expect("head")
    );
}

#[tokio::test]
async fn registration_checks_names_and_conflicts() {
    let services = services().await;
    services
        .register_counter("doc_viewers", viewers())
        .await
        .expect("registers");
    let again = RelationshipFilter {
        subject: Some(SubjectFilter {
            subject_type: "user".into(),
            subject_id: Some("ann".into()),
            relation: None,
        }),
        ..viewers()
    };
    match services
        .register_counter("doc_viewers", again.clone())
        .await
    {
        Err(ServiceError::CounterAlreadyRegistered { name, filter }) => {
            assert_eq!(name, "doc_viewers");
            assert_eq!(*filter, again, "the error names the new filter");
        }
        other => panic!("expected already registered, got {other:?}"),
    }
    let unknown = RelationshipFilter {
        resource_type: Some("folder".into()),
        ..Default::default()
    };
    let err = services
        .register_counter("folders", unknown)
        .await
        .expect_err("unknown type");
    assert_eq!(err.to_string(), "object definition `folder` not found");
    let err = services
        .count_relationships("folders")
        .await
        .expect_err("never registered");
    assert_eq!(err.to_string(), "counter with name `folders` not found");
}

#[tokio::test]
async fn unregistering_frees_the_name() {
    let services = services().await;
    services
        .register_counter("doc_viewers", viewers())
        .await
        .expect("registers");
    services
        .unregister_counter("doc_viewers")
        .await
        .expect("unregisters");
    assert!(matches!(
        services.count_relationships("doc_viewers").await,
        Err(ServiceError::CounterNotRegistered { .. })
    ));
    assert!(matches!(
        services.unregister_counter("doc_viewers").await,
        Err(ServiceError::CounterNotRegistered { .. })
    ));
    services
        .register_counter("doc_viewers", viewers())
        .await
        .expect("the name is free again");
}

#[tokio::test]
async fn without_a_schema_every_type_is_unknown() {
    let services = crate::server::services(Arc::new(MemoryDatastore::default()), Limits::default());
    let err = services
        .register_counter("doc_viewers", viewers())
        .await
        .expect_err("no schema");
    assert!(
        matches!(err, ServiceError::UnknownDefinition { definition } if definition == "document")
    );
}
