use std::time::{Duration, SystemTime};

use prost_types::value::Kind;
use serde_json::json;

use super::*;
use crate::api::zedtoken;

fn obj(t: &str, id: &str) -> v1::ObjectReference {
    v1::ObjectReference {
        object_type: t.into(),
        object_id: id.into(),
    }
}

fn subj(t: &str, id: &str, rel: &str) -> v1::SubjectReference {
    v1::SubjectReference {
        object: Some(obj(t, id)),
        optional_relation: rel.into(),
    }
}

fn rel(resource: (&str, &str), relation: &str, subject: v1::SubjectReference) -> v1::Relationship {
    v1::Relationship {
        resource: Some(obj(resource.0, resource.1)),
        relation: relation.into(),
        subject: Some(subject),
        optional_caveat: None,
        optional_expires_at: None,
    }
}

fn field_of(err: ServiceError) -> String {
    match err {
        ServiceError::InvalidArgument { field, .. } => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn subjects_map_empty_relation_to_ellipsis_and_back() {
    let plain = subject_ref(Some(&subj("user", "tom", "")), "subject").expect("converts");
    assert_eq!(plain, SubjectRef::object("user", "tom"));
    let set = subject_ref(Some(&subj("group", "eng", "member")), "subject").expect("converts");
    assert_eq!(set, SubjectRef::set("group", "eng", "member"));
    assert_eq!(v1::SubjectReference::from(&plain), subj("user", "tom", ""));
    assert_eq!(
        v1::SubjectReference::from(&set),
        subj("group", "eng", "member")
    );
}

#[test]
fn missing_messages_name_their_path() {
    let mut r = rel(("doc", "1"), "viewer", subj("user", "tom", ""));
    r.subject.as_mut().expect("set").object = None;
    let update = v1::RelationshipUpdate {
        operation: v1::relationship_update::Operation::Touch as i32,
        relationship: Some(r),
    };
    let updates = vec![update.clone(), update.clone(), update.clone(), update];
    let err = relationship_updates(&updates).expect_err("no subject object");
    assert_eq!(field_of(err), "updates[0].relationship.subject.object");
    assert_eq!(
        field_of(object_ref(None, "resource").expect_err("missing")),
        "resource"
    );
}

#[test]
fn relationships_round_trip_with_caveat_and_expiration() {
    let at = SystemTime::UNIX_EPOCH + Duration::new(1_893_456_000, 500);
    let model = Relationship {
        resource: ObjectRef::new("doc", "readme"),
        relation: "viewer".into(),
        subject: SubjectRef::set("group", "eng", "member"),
        caveat: Some(ContextualizedCaveat {
            name: "only_weekdays".into(),
            context: json!({"tz": "UTC", "n": 3, "x": 1.5, "l": [true, null], "o": {"k": "v"}})
                .as_object()
                .expect("object")
                .clone(),
        }),
        expires_at: Some(at),
    };
    let proto = v1::Relationship::from(&model);
    let caveat = proto.optional_caveat.as_ref().expect("caveat");
    assert_eq!(caveat.caveat_name, "only_weekdays");
    assert_eq!(
        proto.optional_expires_at,
        Some(prost_types::Timestamp {
            seconds: 1_893_456_000,
            nanos: 500
        })
    );
    let back = relationship(Some(&proto), "relationship").expect("converts");
    assert_eq!(back, model);
}

#[test]
fn caveat_without_context_is_an_empty_map() {
    let mut r = rel(("doc", "1"), "viewer", subj("user", "tom", ""));
    r.optional_caveat = Some(v1::ContextualizedCaveat {
        caveat_name: "c".into(),
        context: None,
    });
    let m = relationship(Some(&r), "relationship").expect("converts");
    assert_eq!(m.caveat.expect("caveat").context, Map::new());
}

#[test]
fn struct_numbers_become_integers_when_exact() {
    let s = json_to_struct(
        json!({"a": 1, "b": 1.5, "c": -2, "d": 1e300})
            .as_object()
            .expect("object"),
    );
    let back = struct_to_json(&s, "context").expect("converts");
    assert_eq!(back["a"], json!(1));
    assert!(back["a"].is_i64());
    assert_eq!(back["b"], json!(1.5));
    assert_eq!(back["c"], json!(-2));
    assert!(back["d"].is_f64());
}

#[test]
fn non_finite_numbers_and_unset_kinds() {
    let mut s = prost_types::Struct::default();
    s.fields.insert(
        "bad".into(),
        prost_types::Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        },
    );
    assert_eq!(
        field_of(struct_to_json(&s, "context").expect_err("NaN")),
        "context.bad"
    );
    let mut s = prost_types::Struct::default();
    s.fields
        .insert("unset".into(), prost_types::Value { kind: None });
    assert_eq!(
        struct_to_json(&s, "context").expect("converts")["unset"],
        Value::Null
    );
    let mut nested = prost_types::Struct::default();
    nested.fields.insert(
        "list".into(),
        prost_types::Value {
            kind: Some(Kind::ListValue(prost_types::ListValue {
                values: vec![prost_types::Value {
                    kind: Some(Kind::NumberValue(f64::INFINITY)),
                }],
            })),
        },
    );
    assert_eq!(
        field_of(struct_to_json(&nested, "context").expect_err("inf")),
        "context.list[0]"
    );
}

#[test]
fn bad_timestamps_are_refused() {
    let t = prost_types::Timestamp {
        seconds: 1,
        nanos: -1,
    };
    assert_eq!(
        field_of(timestamp_to_system_time(&t, "x").expect_err("negative nanos")),
        "x"
    );
    let before_epoch = prost_types::Timestamp {
        seconds: -10,
        nanos: 0,
    };
    assert_eq!(
        timestamp_to_system_time(&before_epoch, "x").expect("converts"),
        SystemTime::UNIX_EPOCH - Duration::from_secs(10)
    );
}

#[test]
fn update_operations() {
    use v1::relationship_update::Operation;
    let r = rel(("doc", "1"), "viewer", subj("user", "tom", ""));
    for (op, want) in [
        (Operation::Create, UpdateOperation::Create),
        (Operation::Touch, UpdateOperation::Touch),
        (Operation::Delete, UpdateOperation::Delete),
    ] {
        let u = v1::RelationshipUpdate {
            operation: op as i32,
            relationship: Some(r.clone()),
        };
        let m = relationship_update(&u, "updates[0]").expect("converts");
        assert_eq!(m.operation, want);
        assert_eq!(v1::RelationshipUpdate::from(&m), u);
    }
    for bad in [0, 9] {
        let u = v1::RelationshipUpdate {
            operation: bad,
            relationship: Some(r.clone()),
        };
        assert_eq!(
            field_of(relationship_update(&u, "updates[2]").expect_err("bad op")),
            "updates[2].operation"
        );
    }
}

#[test]
fn filters_and_the_empty_relation_filter() {
    let proto = v1::RelationshipFilter {
        resource_type: "doc".into(),
        optional_resource_id: String::new(),
        optional_resource_id_prefix: "read".into(),
        optional_relation: String::new(),
        optional_subject_filter: Some(v1::SubjectFilter {
            subject_type: "user".into(),
            optional_subject_id: String::new(),
            optional_relation: Some(v1::subject_filter::RelationFilter {
                relation: String::new(),
            }),
        }),
    };
    let m = relationship_filter(Some(&proto), "relationship_filter").expect("converts");
    assert_eq!(
        m,
        RelationshipFilter {
            resource_type: Some("doc".into()),
            resource_id: None,
            resource_id_prefix: Some("read".into()),
            relation: None,
            subject: Some(SubjectFilter {
                subject_type: "user".into(),
                subject_id: None,
                relation: Some(ELLIPSIS.into()),
            }),
        }
    );
    assert_eq!(v1::RelationshipFilter::from(&m), proto);

    // An absent relation filter is "any relation".
    let any = subject_filter(&v1::SubjectFilter {
        subject_type: "group".into(),
        optional_subject_id: "eng".into(),
        optional_relation: None,
    });
    assert_eq!(any.relation, None);
    let member = subject_filter(&v1::SubjectFilter {
        subject_type: "group".into(),
        optional_subject_id: String::new(),
        optional_relation: Some(v1::subject_filter::RelationFilter {
            relation: "member".into(),
        }),
    });
    assert_eq!(member.relation.as_deref(), Some("member"));
}

#[test]
fn preconditions_convert_and_refuse_unspecified() {
    use v1::precondition::Operation;
    let filter = v1::RelationshipFilter {
        resource_type: "doc".into(),
        ..Default::default()
    };
    let ok = vec![v1::Precondition {
        operation: Operation::MustNotMatch as i32,
        filter: Some(filter.clone()),
    }];
    let m = preconditions(&ok).expect("converts");
    assert_eq!(m[0].kind, PreconditionKind::MustNotMatch);
    assert_eq!(v1::Precondition::from(&m[0]), ok[0]);
    let bad = vec![
        ok[0].clone(),
        v1::Precondition {
            operation: Operation::Unspecified as i32,
            filter: Some(filter),
        },
    ];
    assert_eq!(
        field_of(preconditions(&bad).expect_err("unspecified")),
        "optional_preconditions[1].operation"
    );
    let no_filter = vec![v1::Precondition {
        operation: Operation::MustMatch as i32,
        filter: None,
    }];
    assert_eq!(
        field_of(preconditions(&no_filter).expect_err("no filter")),
        "optional_preconditions[0].filter"
    );
}

#[test]
fn consistency_modes() {
    use model::Consistency as C;
    let id = "6349aaf2-0000-0000-0000-000000000000";
    let with = |r: Requirement| v1::Consistency {
        requirement: Some(r),
    };
    assert_eq!(consistency(None, id).expect("ok"), C::MinimizeLatency);
    assert_eq!(
        consistency(Some(&with(Requirement::MinimizeLatency(true))), id).expect("ok"),
        C::MinimizeLatency
    );
    assert_eq!(
        consistency(Some(&with(Requirement::FullyConsistent(true))), id).expect("ok"),
        C::FullyConsistent
    );
    let ours = zedtoken::encode(Revision(7), id, b"");
    assert_eq!(
        consistency(Some(&with(Requirement::AtLeastAsFresh(ours.clone()))), id).expect("ok"),
        C::AtLeastAsFresh(Revision(7))
    );
    assert_eq!(
        consistency(Some(&with(Requirement::AtExactSnapshot(ours))), id).expect("ok"),
        C::AtExactSnapshot(Revision(7))
    );
    // A token from another datastore: fully consistent, or refused when exact.
    let theirs = zedtoken::encode(Revision(7), "ffffffff-other", b"");
    assert_eq!(
        consistency(Some(&with(Requirement::AtLeastAsFresh(theirs.clone()))), id).expect("ok"),
        C::FullyConsistent
    );
    assert!(matches!(
        consistency(Some(&with(Requirement::AtExactSnapshot(theirs))), id),
        Err(ServiceError::ZedTokenFromOtherDatastore)
    ));
    // Legacy tokens carry no datastore id and are accepted.
    let legacy = v1::ZedToken {
        token: "CAESAggB".into(),
    };
    assert_eq!(
        consistency(Some(&with(Requirement::AtExactSnapshot(legacy))), id).expect("ok"),
        C::AtExactSnapshot(Revision(1))
    );
    let garbage = v1::ZedToken {
        token: "garbage".into(),
    };
    assert!(matches!(
        consistency(Some(&with(Requirement::AtLeastAsFresh(garbage))), id),
        Err(ServiceError::InvalidZedToken { .. })
    ));
    for bad in [
        v1::Consistency { requirement: None },
        with(Requirement::MinimizeLatency(false)),
        with(Requirement::FullyConsistent(false)),
    ] {
        assert!(matches!(
            consistency(Some(&bad), id),
            Err(ServiceError::InvalidArgument { .. })
        ));
    }
}

#[test]
fn zed_token_helper_is_the_encoder() {
    let t = zed_token(Revision(42), "someuniqueid", b"");
    assert_eq!(t.token, "Gg4KAjQyEghzb21ldW5pcQ==");
}
