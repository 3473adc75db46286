use prost_types::value::Kind;

use super::*;
use v1::consistency::Requirement;

// ---- shapes ----------------------------------------------------------------

const SHAPES: [Shape; 9] = [
    Shape::ObjectType,
    Shape::OptionalObjectType,
    Shape::WatchObjectType,
    Shape::ObjectId,
    Shape::FilterId,
    Shape::OptionalSubjectId,
    Shape::Relation,
    Shape::OptionalRelation,
    Shape::CaveatName,
];

/// Every string of up to 4 characters over an alphabet that exercises each
/// class (and some that no class holds), plus long boundary cases.
fn corpus() -> Vec<String> {
    let alphabet = [
        'a', 'z', '0', '_', '/', '-', '|', '=', '+', '*', 'A', '.', ' ', 'é', '\n',
    ];
    let mut out = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..4 {
        let mut next = Vec::new();
        for s in &frontier {
            for c in alphabet {
                let mut t = s.clone();
                t.push(c);
                next.push(t);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    for n in [2, 3, 62, 63, 64, 65, 127, 128, 129] {
        let name = format!("a{}", "b".repeat(n - 1));
        out.push(name.clone());
        out.push(format!("{name}/doc"));
        out.push(format!("doc/{name}"));
        out.push(format!("{name}_"));
        out.push(format!("x{name}"));
    }
    out.push("*a".into());
    out.push("a*".into());
    out.push("tenant/sub/doc".into());
    out.push("tenant//doc".into());
    out.push("/doc".into());
    out.push("doc/".into());
    out
}

#[test]
fn shapes_agree_with_spicedbs_regexes() {
    let corpus = corpus();
    for shape in SHAPES {
        let re = regex::Regex::new(shape.pattern()).expect("pattern compiles");
        for s in &corpus {
            assert_eq!(
                shape.matches(s),
                re.is_match(s),
                "{shape:?} on {s:?} (pattern {})",
                shape.pattern()
            );
        }
    }
}

#[test]
fn shape_examples() {
    assert!(Shape::ObjectType.matches("tenant1/document"));
    assert!(!Shape::ObjectType.matches("Document"));
    assert!(!Shape::ObjectType.matches("do"));
    assert!(Shape::ObjectId.matches("*"));
    assert!(Shape::ObjectId.matches("a-b=c+d|e/f_g"));
    assert!(!Shape::FilterId.matches("*"));
    assert!(Shape::OptionalSubjectId.matches("*"));
    assert!(Shape::CaveatName.matches("Only-Weekdays/v1|x"));
    assert!(!Shape::CaveatName.matches(""));
    // A 64-character prefix segment is Watch's only.
    let long = format!("{}/doc", "a".repeat(64));
    assert!(!Shape::ObjectType.matches(&long));
    assert!(Shape::WatchObjectType.matches(&long));
}

// ---- helpers ---------------------------------------------------------------

fn obj(t: &str, id: &str) -> Option<v1::ObjectReference> {
    Some(v1::ObjectReference {
        object_type: t.into(),
        object_id: id.into(),
    })
}

fn subj(t: &str, id: &str, rel: &str) -> Option<v1::SubjectReference> {
    Some(v1::SubjectReference {
        object: obj(t, id),
        optional_relation: rel.into(),
    })
}

fn rel(resource_id: &str, relation: &str, subject_id: &str) -> v1::Relationship {
    v1::Relationship {
        resource: obj("doc", resource_id),
        relation: relation.into(),
        subject: subj("user", subject_id, ""),
        optional_caveat: None,
        optional_expires_at: None,
    }
}

fn touch(r: v1::Relationship) -> v1::RelationshipUpdate {
    v1::RelationshipUpdate {
        operation: v1::relationship_update::Operation::Touch as i32,
        relationship: Some(r),
    }
}

fn doc_filter() -> v1::RelationshipFilter {
    v1::RelationshipFilter {
        resource_type: "doc".into(),
        ..Default::default()
    }
}

fn must_match(filter: v1::RelationshipFilter) -> v1::Precondition {
    v1::Precondition {
        operation: v1::precondition::Operation::MustMatch as i32,
        filter: Some(filter),
    }
}

fn check() -> v1::CheckPermissionRequest {
    v1::CheckPermissionRequest {
        consistency: None,
        resource: obj("doc", "readme"),
        permission: "view".into(),
        subject: subj("user", "tom", ""),
        context: None,
        with_tracing: false,
    }
}

fn struct_of_size(bytes: usize) -> prost_types::Struct {
    let mut s = prost_types::Struct::default();
    s.fields.insert(
        "k".into(),
        prost_types::Value {
            kind: Some(Kind::StringValue("x".repeat(bytes))),
        },
    );
    s
}

/// The field an InvalidArgument names.
#[track_caller]
fn invalid_field(result: Checked) -> String {
    match result {
        Err(ServiceError::InvalidArgument { field, .. }) => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

const LIMITS: Limits = Limits {
    max_updates_per_write: 1000,
    max_preconditions: 1000,
    max_read_limit: 1000,
    max_delete_limit: 1000,
    max_lookup_resources_limit: 1000,
    max_export_batch: 10_000,
    max_bulk_checks: 10_000,
    max_relationship_context_bytes: 25_000,
    max_request_context_bytes: 4096,
    max_depth: 50,
};

#[test]
fn default_limits_are_spicedbs() {
    assert_eq!(Limits::default(), LIMITS);
}

// ---- CheckPermission -------------------------------------------------------

#[test]
fn check_permission_accepts_a_plain_request() {
    check_permission(&check(), &LIMITS).expect("valid");
    // The permission pattern is optional for Check: an empty one is the
    // schema's to refuse.
    let mut req = check();
    req.permission.clear();
    check_permission(&req, &LIMITS).expect("valid");
    // A wildcard subject with no relation in a relationship is fine, but not
    // in Check (below); a subject set is fine.
    req.subject = subj("group", "eng", "member");
    check_permission(&req, &LIMITS).expect("valid");
}

#[test]
fn check_permission_field_rules() {
    type Mutation = Box<dyn Fn(&mut v1::CheckPermissionRequest)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|r| r.resource = None), "resource"),
        (
            Box::new(|r| r.resource = obj("Doc", "1")),
            "resource.object_type",
        ),
        (
            Box::new(|r| r.resource = obj("doc", "a b")),
            "resource.object_id",
        ),
        (
            Box::new(|r| r.resource = obj("doc", &"x".repeat(1025))),
            "resource.object_id",
        ),
        (Box::new(|r| r.permission = "v".into()), "permission"),
        (Box::new(|r| r.subject = None), "subject"),
        (
            Box::new(|r| r.subject = subj("user", "tom", "...")),
            "subject.optional_relation",
        ),
        (
            Box::new(|r| r.subject.as_mut().expect("set").object = None),
            "subject.object",
        ),
        (
            Box::new(|r| r.consistency = Some(v1::Consistency { requirement: None })),
            "consistency.requirement",
        ),
        (
            Box::new(|r| {
                r.consistency = Some(v1::Consistency {
                    requirement: Some(Requirement::MinimizeLatency(false)),
                })
            }),
            "consistency.minimize_latency",
        ),
        (
            Box::new(|r| {
                r.consistency = Some(v1::Consistency {
                    requirement: Some(Requirement::AtLeastAsFresh(v1::ZedToken::default())),
                })
            }),
            "consistency.at_least_as_fresh.token",
        ),
        // Handwritten rules.
        (
            Box::new(|r| r.resource = obj("doc", "*")),
            "resource.object_id",
        ),
        (
            Box::new(|r| r.subject = subj("user", "*", "member")),
            "subject.optional_relation",
        ),
        // The handler's context limit.
        (
            Box::new(|r| r.context = Some(struct_of_size(5000))),
            "context",
        ),
    ];
    for (mutate, field) in cases {
        let mut req = check();
        mutate(&mut req);
        assert_eq!(invalid_field(check_permission(&req, &LIMITS)), field);
    }
}

#[test]
fn check_permission_refuses_wildcard_subjects_with_a_reason() {
    let mut req = check();
    req.subject = subj("user", "*", "");
    assert!(matches!(
        check_permission(&req, &LIMITS),
        Err(ServiceError::WildcardNotAllowed { field }) if field == "subject.object_id"
    ));
}

#[test]
fn request_context_is_measured_encoded() {
    let mut req = check();
    let fits = struct_of_size(4000);
    assert!(fits.encoded_len() <= 4096);
    req.context = Some(fits);
    check_permission(&req, &LIMITS).expect("fits");
}

// ---- CheckBulkPermissions --------------------------------------------------

fn bulk_item(subject_id: &str) -> v1::CheckBulkPermissionsRequestItem {
    v1::CheckBulkPermissionsRequestItem {
        resource: obj("doc", "1"),
        permission: "view".into(),
        subject: subj("user", subject_id, ""),
        context: None,
    }
}

#[test]
fn check_bulk_limits_and_items() {
    let mut req = v1::CheckBulkPermissionsRequest {
        consistency: None,
        items: vec![bulk_item("tom"); 10_000],
        with_tracing: false,
    };
    check_bulk_permissions(&req, &LIMITS).expect("at the limit");
    req.items.push(bulk_item("tom"));
    assert!(matches!(
        check_bulk_permissions(&req, &LIMITS),
        Err(ServiceError::TooManyChecks {
            count: 10_001,
            max: 10_000
        })
    ));
    req.items.truncate(5);
    req.items[3].resource = obj("doc", "no spaces");
    assert_eq!(
        invalid_field(check_bulk_permissions(&req, &LIMITS)),
        "items[3].resource.object_id"
    );
    req.items[3] = bulk_item("tom");
    req.items[4].context = Some(struct_of_size(5000));
    assert_eq!(
        invalid_field(check_bulk_permissions(&req, &LIMITS)),
        "items[4].context"
    );
}

#[test]
fn check_bulk_reports_wildcard_subjects_per_item() {
    let req = v1::CheckBulkPermissionsRequest {
        consistency: None,
        items: vec![bulk_item("tom"), bulk_item("*")],
        with_tracing: false,
    };
    check_bulk_permissions(&req, &LIMITS).expect("the call itself is fine");
    assert!(check_bulk_item(&req.items[0]).is_none());
    assert!(matches!(
        check_bulk_item(&req.items[1]),
        Some(ServiceError::WildcardNotAllowed { .. })
    ));
}

// ---- WriteRelationships ----------------------------------------------------

fn write(updates: Vec<v1::RelationshipUpdate>) -> v1::WriteRelationshipsRequest {
    v1::WriteRelationshipsRequest {
        updates,
        optional_preconditions: Vec::new(),
        optional_transaction_metadata: None,
    }
}

#[test]
fn write_relationships_field_rules() {
    let ok = write(vec![
        touch(rel("1", "viewer", "tom")),
        touch(rel("2", "viewer", "*")),
    ]);
    write_relationships(&ok, &LIMITS).expect("valid");

    let mut req = write(vec![touch(rel("1", "viewer", "tom")); 4]);
    req.updates[3].operation = 0;
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "updates[3].operation"
    );
    req.updates[3].operation = 42;
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "updates[3].operation"
    );

    let mut bad_type = rel("1", "viewer", "tom");
    bad_type.resource = obj("9doc", "1");
    let req = write(vec![touch(rel("1", "viewer", "tom")), touch(bad_type)]);
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "updates[1].relationship.resource.object_type"
    );

    let mut caveated = rel("1", "viewer", "tom");
    caveated.optional_caveat = Some(v1::ContextualizedCaveat {
        caveat_name: String::new(),
        context: None,
    });
    assert_eq!(
        invalid_field(write_relationships(&write(vec![touch(caveated)]), &LIMITS)),
        "updates[0].relationship.optional_caveat.caveat_name"
    );

    let req = write(vec![v1::RelationshipUpdate {
        operation: 1,
        relationship: None,
    }]);
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "updates[0].relationship"
    );
}

#[test]
fn annotation_rules_come_before_handwritten_ones() {
    // updates[0] breaks a handwritten rule (`*` resource), updates[1] an
    // annotation (relation too short): SpiceDB reports the annotation.
    let req = write(vec![
        touch(rel("*", "viewer", "tom")),
        touch(rel("1", "v", "tom")),
    ]);
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "updates[1].relationship.relation"
    );
    let req = write(vec![touch(rel("*", "viewer", "tom"))]);
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "updates[0].relationship.resource.object_id"
    );
    let mut wildcard_set = rel("1", "viewer", "*");
    wildcard_set.subject = subj("group", "*", "member");
    assert_eq!(
        invalid_field(write_relationships(
            &write(vec![touch(wildcard_set)]),
            &LIMITS
        )),
        "updates[0].relationship.subject.optional_relation"
    );
}

#[test]
fn write_relationships_limits() {
    let many: Vec<_> = (0..1001)
        .map(|i| touch(rel(&i.to_string(), "viewer", "tom")))
        .collect();
    assert!(matches!(
        write_relationships(&write(many[..1000].to_vec()), &LIMITS),
        Ok(())
    ));
    assert!(matches!(
        write_relationships(&write(many), &LIMITS),
        Err(ServiceError::TooManyUpdates {
            count: 1001,
            max: 1000
        })
    ));

    let mut req = write(vec![]);
    req.optional_preconditions = vec![must_match(doc_filter()); 1001];
    assert!(matches!(
        write_relationships(&req, &LIMITS),
        Err(ServiceError::TooManyPreconditions {
            count: 1001,
            max: 1000
        })
    ));

    let mut req = write(vec![]);
    req.optional_transaction_metadata = Some(struct_of_size(65_000));
    assert!(matches!(
        write_relationships(&req, &LIMITS),
        Err(ServiceError::MetadataTooLarge { max: 65_000, .. })
    ));
    req.optional_transaction_metadata = Some(struct_of_size(64_000));
    write_relationships(&req, &LIMITS).expect("fits");
}

#[test]
fn duplicate_updates_ignore_caveats_and_operations() {
    let mut caveated = rel("1", "viewer", "tom");
    caveated.optional_caveat = Some(v1::ContextualizedCaveat {
        caveat_name: "c".into(),
        context: None,
    });
    let mut delete = touch(caveated);
    delete.operation = v1::relationship_update::Operation::Delete as i32;
    let req = write(vec![touch(rel("1", "viewer", "tom")), delete]);
    match write_relationships(&req, &LIMITS) {
        Err(ServiceError::DuplicateUpdate { relationship }) => {
            assert_eq!(relationship.to_string(), "doc:1#viewer@user:tom");
        }
        other => panic!("expected DuplicateUpdate, got {other:?}"),
    }
}

#[test]
fn relationship_caveat_size_is_limited() {
    let mut big = rel("1", "viewer", "tom");
    big.optional_caveat = Some(v1::ContextualizedCaveat {
        caveat_name: "c".into(),
        context: Some(struct_of_size(25_000)),
    });
    assert!(matches!(
        write_relationships(&write(vec![touch(big)]), &LIMITS),
        Err(ServiceError::ContextTooLarge { max: 25_000, .. })
    ));
}

#[test]
fn precondition_rules() {
    let mut req = write(vec![]);
    req.optional_preconditions = vec![v1::Precondition {
        operation: 0,
        filter: Some(doc_filter()),
    }];
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "optional_preconditions[0].operation"
    );
    req.optional_preconditions = vec![v1::Precondition {
        operation: 1,
        filter: None,
    }];
    assert_eq!(
        invalid_field(write_relationships(&req, &LIMITS)),
        "optional_preconditions[0].filter"
    );
    req.optional_preconditions = vec![must_match(v1::RelationshipFilter::default())];
    assert!(matches!(
        write_relationships(&req, &LIMITS),
        Err(ServiceError::InvalidFilter { .. })
    ));
}

// ---- DeleteRelationships / ReadRelationships -------------------------------

fn delete(filter: v1::RelationshipFilter) -> v1::DeleteRelationshipsRequest {
    v1::DeleteRelationshipsRequest {
        relationship_filter: Some(filter),
        optional_preconditions: Vec::new(),
        optional_limit: 0,
        optional_allow_partial_deletions: false,
        optional_transaction_metadata: None,
    }
}

#[test]
fn filters_must_select_something_by_id_or_prefix() {
    delete_relationships(&delete(doc_filter()), &LIMITS).expect("valid");
    match delete_relationships(&delete(v1::RelationshipFilter::default()), &LIMITS) {
        Err(ServiceError::InvalidFilter { message, .. }) => {
            assert_eq!(message, "at least one field must be set");
        }
        other => panic!("expected InvalidFilter, got {other:?}"),
    }
    let both = v1::RelationshipFilter {
        optional_resource_id: "1".into(),
        optional_resource_id_prefix: "a".into(),
        ..doc_filter()
    };
    match delete_relationships(&delete(both), &LIMITS) {
        Err(ServiceError::InvalidFilter { message, filter }) => {
            assert_eq!(
                message,
                "resource_id and resource_id_prefix cannot be set at the same time"
            );
            assert_eq!(
                filter,
                r#"resource_type:"doc" optional_resource_id:"1" optional_resource_id_prefix:"a""#
            );
        }
        other => panic!("expected InvalidFilter, got {other:?}"),
    }
    // A subject filter alone selects something.
    let by_subject = v1::RelationshipFilter {
        optional_subject_filter: Some(v1::SubjectFilter {
            subject_type: "user".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    delete_relationships(&delete(by_subject), &LIMITS).expect("valid");
}

#[test]
fn filter_ids_and_wildcards() {
    let star = v1::RelationshipFilter {
        optional_resource_id: "*".into(),
        ..doc_filter()
    };
    assert_eq!(
        invalid_field(delete_relationships(&delete(star), &LIMITS)),
        "relationship_filter.optional_resource_id"
    );
    let wildcard_with_relation = v1::RelationshipFilter {
        optional_subject_filter: Some(v1::SubjectFilter {
            subject_type: "user".into(),
            optional_subject_id: "*".into(),
            optional_relation: Some(v1::subject_filter::RelationFilter {
                relation: "member".into(),
            }),
        }),
        ..doc_filter()
    };
    assert_eq!(
        invalid_field(delete_relationships(
            &delete(wildcard_with_relation.clone()),
            &LIMITS
        )),
        "relationship_filter.optional_subject_filter.optional_relation"
    );
    // ReadRelationships has no handwritten rules: SpiceDB lets it through.
    let read = v1::ReadRelationshipsRequest {
        consistency: None,
        relationship_filter: Some(wildcard_with_relation),
        optional_limit: 0,
        optional_cursor: None,
    };
    read_relationships(&read, &LIMITS).expect("valid for read");
    let bad_subject_type = v1::RelationshipFilter {
        optional_subject_filter: Some(v1::SubjectFilter::default()),
        ..doc_filter()
    };
    assert_eq!(
        invalid_field(delete_relationships(&delete(bad_subject_type), &LIMITS)),
        "relationship_filter.optional_subject_filter.subject_type"
    );
}

#[test]
fn limits_above_the_maximum() {
    let mut req = delete(doc_filter());
    req.optional_limit = 1000;
    delete_relationships(&req, &LIMITS).expect("at the limit");
    req.optional_limit = 1001;
    assert!(matches!(
        delete_relationships(&req, &LIMITS),
        Err(ServiceError::ExceedsLimit {
            value: 1001,
            max: 1000,
            ..
        })
    ));
    let mut read = v1::ReadRelationshipsRequest {
        consistency: None,
        relationship_filter: Some(doc_filter()),
        optional_limit: 0,
        optional_cursor: None,
    };
    read_relationships(&read, &LIMITS).expect("no limit");
    read.optional_limit = 5000;
    assert!(matches!(
        read_relationships(&read, &LIMITS),
        Err(ServiceError::ExceedsLimit { .. })
    ));
    read.optional_limit = 10;
    read.optional_cursor = Some(v1::Cursor::default());
    assert_eq!(
        invalid_field(read_relationships(&read, &LIMITS)),
        "optional_cursor.token"
    );
    read.optional_cursor = None;
    read.relationship_filter = None;
    assert_eq!(
        invalid_field(read_relationships(&read, &LIMITS)),
        "relationship_filter"
    );
}

#[test]
fn delete_preconditions_count() {
    let mut req = delete(doc_filter());
    req.optional_preconditions = vec![must_match(doc_filter()); 1001];
    assert!(matches!(
        delete_relationships(&req, &LIMITS),
        Err(ServiceError::TooManyPreconditions { .. })
    ));
}

// ---- schema, expand, lookups, watch, bulk ----------------------------------

#[test]
fn schema_requests() {
    let mut req = v1::WriteSchemaRequest {
        schema: "definition user {}".into(),
    };
    write_schema(&req).expect("valid");
    req.schema = "x".repeat(MAX_SCHEMA_BYTES + 1);
    assert_eq!(invalid_field(write_schema(&req)), "schema");
    read_schema(&v1::ReadSchemaRequest {}).expect("valid");
}

#[test]
fn expand_refuses_wildcard_resources() {
    let mut req = v1::ExpandPermissionTreeRequest {
        consistency: None,
        resource: obj("doc", "1"),
        permission: "view".into(),
    };
    expand_permission_tree(&req).expect("valid");
    req.resource = obj("doc", "*");
    assert_eq!(
        invalid_field(expand_permission_tree(&req)),
        "resource.object_id"
    );
}

#[test]
fn lookup_resources_rules() {
    let mut req = v1::LookupResourcesRequest {
        consistency: None,
        resource_object_type: "doc".into(),
        permission: "view".into(),
        subject: subj("user", "tom", ""),
        context: None,
        optional_limit: 1000,
        optional_cursor: None,
        with_debug: false,
    };
    lookup_resources(&req, &LIMITS).expect("valid");
    req.permission.clear();
    assert_eq!(invalid_field(lookup_resources(&req, &LIMITS)), "permission");
    req.permission = "view".into();
    req.optional_limit = 1001;
    assert!(matches!(
        lookup_resources(&req, &LIMITS),
        Err(ServiceError::ExceedsLimit { .. })
    ));
    req.optional_limit = 0;
    // SpiceDB does not measure LookupResources' context.
    req.context = Some(struct_of_size(5000));
    lookup_resources(&req, &LIMITS).expect("valid");
    req.subject = subj("user", "*", "");
    assert!(matches!(
        lookup_resources(&req, &LIMITS),
        Err(ServiceError::WildcardNotAllowed { .. })
    ));
}

#[test]
fn lookup_subjects_rules() {
    let mut req = v1::LookupSubjectsRequest {
        consistency: None,
        resource: obj("doc", "1"),
        permission: "view".into(),
        subject_object_type: "user".into(),
        optional_subject_relation: String::new(),
        context: None,
        optional_concrete_limit: 0,
        optional_cursor: None,
        wildcard_option: 0,
    };
    lookup_subjects(&req, &LIMITS).expect("valid");
    req.subject_object_type = "u".into();
    assert_eq!(
        invalid_field(lookup_subjects(&req, &LIMITS)),
        "subject_object_type"
    );
    req.subject_object_type = "user".into();
    // Trellis pages LookupSubjects (SpiceDB answers UNIMPLEMENTED).
    req.optional_concrete_limit = 5;
    lookup_subjects(&req, &LIMITS).expect("a concrete limit is served");
    req.optional_concrete_limit = 1001;
    assert!(matches!(
        lookup_subjects(&req, &LIMITS),
        Err(ServiceError::ExceedsLimit { field, .. }) if field == "optional_concrete_limit"
    ));
}

#[test]
fn watch_rules() {
    let mut req = v1::WatchRequest {
        optional_object_types: vec!["doc".into()],
        optional_start_cursor: None,
        optional_relationship_filters: vec![doc_filter()],
        optional_update_kinds: Vec::new(),
    };
    assert_eq!(invalid_field(watch(&req)), "optional_relationship_filters");
    // Only schema updates: the two do not conflict.
    req.optional_update_kinds = vec![v1::WatchKind::IncludeSchemaUpdates as i32];
    watch(&req).expect("valid");
    req.optional_update_kinds = vec![
        v1::WatchKind::IncludeSchemaUpdates as i32,
        v1::WatchKind::IncludeRelationshipUpdates as i32,
    ];
    assert!(watch(&req).is_err());
    req.optional_relationship_filters.clear();
    req.optional_object_types = vec!["doc".into(), "Doc".into()];
    assert_eq!(invalid_field(watch(&req)), "optional_object_types[1]");
    req.optional_object_types.clear();
    req.optional_start_cursor = Some(v1::ZedToken::default());
    assert_eq!(invalid_field(watch(&req)), "optional_start_cursor.token");
    req.optional_start_cursor = None;
    req.optional_relationship_filters = vec![v1::RelationshipFilter::default()];
    assert!(matches!(
        watch(&req),
        Err(ServiceError::InvalidFilter { .. })
    ));
}

#[test]
fn bulk_import_and_export() {
    let req = v1::ImportBulkRelationshipsRequest {
        relationships: vec![rel("1", "viewer", "tom"), rel("2", "viewer", "")],
    };
    assert_eq!(
        invalid_field(import_bulk_relationships(&req)),
        "relationships[1].subject.object.object_id"
    );
    let mut export = v1::ExportBulkRelationshipsRequest {
        consistency: None,
        optional_limit: 10_000,
        optional_cursor: None,
        optional_relationship_filter: None,
    };
    export_bulk_relationships(&export, &LIMITS).expect("valid");
    export.optional_limit = 10_001;
    assert!(matches!(
        export_bulk_relationships(&export, &LIMITS),
        Err(ServiceError::ExceedsLimit { .. })
    ));
}

#[test]
fn filter_text_nests_the_subject_filter() {
    let f = v1::RelationshipFilter {
        resource_type: "doc".into(),
        optional_relation: "viewer".into(),
        optional_subject_filter: Some(v1::SubjectFilter {
            subject_type: "user".into(),
            optional_subject_id: "t\"om".into(),
            optional_relation: Some(v1::subject_filter::RelationFilter::default()),
        }),
        ..Default::default()
    };
    assert_eq!(
        filter_text(&f),
        r#"resource_type:"doc" optional_relation:"viewer" optional_subject_filter:{subject_type:"user" optional_subject_id:"t\"om" optional_relation:{}}"#
    );
}
