use std::collections::HashMap;

use tonic::Code;
use tonic_types::{RpcStatusExt as _, StatusExt as _};

use super::*;
use crate::model::{Precondition, RelationshipFilter, SubjectFilter, SubjectRef};

fn key(text: &str) -> Box<RelationshipKey> {
    Box::new(
        crate::model::parse_relationship(text)
            .expect("test relationship parses")
            .key(),
    )
}

fn schema_errors(text: &str) -> SchemaErrors {
    crate::schema::compile(text).expect_err("test schema is invalid")
}

/// One value of every variant, with the code and reason SpiceDB sends.
fn every_variant() -> Vec<(ServiceError, Code, Option<&'static str>)> {
    use ServiceError as E;
    let bad_parse = "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission view = viewer +\n}";
    let bad_type = "definition doc {\n  relation viewer: nosuch\n}";
    vec![
        (
            E::InvalidArgument {
                field: "resource.object_type".into(),
                message: "must match the object type pattern".into(),
            },
            Code::InvalidArgument,
            None,
        ),
        (
            E::SchemaParse {
                errors: schema_errors(bad_parse),
                source_text: bad_parse.into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_SCHEMA_PARSE_ERROR"),
        ),
        (
            E::SchemaType {
                errors: schema_errors(bad_type),
                source_text: bad_type.into(),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_SCHEMA_TYPE_ERROR"),
        ),
        (
            E::SchemaWouldOrphan {
                message: "cannot delete relation `viewer`".into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_SCHEMA_TYPE_ERROR"),
        ),
        (E::SchemaNotFound, Code::NotFound, None),
        (
            E::UnknownDefinition {
                definition: "doc".into(),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_UNKNOWN_DEFINITION"),
        ),
        (
            E::UnknownRelation {
                definition: "doc".into(),
                relation: "view".into(),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"),
        ),
        (
            E::UnknownCaveat {
                caveat: "weekday".into(),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_UNKNOWN_CAVEAT"),
        ),
        (
            E::TooManyUpdates {
                count: 1001,
                max: 1000,
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST"),
        ),
        (
            E::TooManyPreconditions {
                count: 1001,
                max: 1000,
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_TOO_MANY_PRECONDITIONS_IN_REQUEST"),
        ),
        (
            E::TooManyChecks {
                count: 10_001,
                max: 10_000,
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_UNSPECIFIED"),
        ),
        (
            E::ExceedsLimit {
                field: "optional_limit".into(),
                value: 1001,
                max: 1000,
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT"),
        ),
        (
            E::PreconditionFailed {
                precondition: Box::new(Precondition {
                    kind: PreconditionKind::MustMatch,
                    filter: RelationshipFilter {
                        resource_type: Some("doc".into()),
                        ..Default::default()
                    },
                }),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_WRITE_OR_DELETE_PRECONDITION_FAILURE"),
        ),
        (
            E::DuplicateUpdate {
                relationship: key("doc:1#viewer@user:tom"),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_UPDATES_ON_SAME_RELATIONSHIP"),
        ),
        (
            E::CannotUpdatePermission {
                definition: "doc".into(),
                permission: "view".into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_CANNOT_UPDATE_PERMISSION"),
        ),
        (
            E::InvalidSubjectType {
                message: "subjects of type `team` are not allowed on relation `doc#viewer`".into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_INVALID_SUBJECT_TYPE"),
        ),
        (
            E::ContextTooLarge {
                size: 30_000,
                max: 25_000,
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_MAX_RELATIONSHIP_CONTEXT_SIZE"),
        ),
        (
            E::CaveatParameterType {
                caveat: "weekday".into(),
                parameter: "day".into(),
                message: "type error for parameters for caveat `weekday`: could not convert context parameter `day`: for int: a int64 value is required, but found bool `true`".into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_CAVEAT_PARAMETER_TYPE_ERROR"),
        ),
        (
            E::AlreadyExists {
                relationship: key("doc:1#viewer@group:eng#member"),
            },
            Code::AlreadyExists,
            Some("ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP"),
        ),
        (
            E::TooManyToDelete { limit: 10 },
            Code::InvalidArgument,
            Some("ERROR_REASON_TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE"),
        ),
        (
            E::InvalidFilter {
                message: "at least one field must be set".into(),
                filter: String::new(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_INVALID_FILTER"),
        ),
        (
            E::WildcardNotAllowed {
                field: "subject.object_id".into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_WILDCARD_NOT_ALLOWED"),
        ),
        (
            E::InvalidCursor {
                message: "the cursor is malformed".into(),
                other_request: false,
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_INVALID_CURSOR"),
        ),
        (
            E::InvalidCursor {
                message: "the cursor was issued for a different request".into(),
                other_request: true,
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_INVALID_CURSOR"),
        ),
        (
            E::MaxDepthExceeded,
            Code::FailedPrecondition,
            Some("ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED"),
        ),
        (
            E::InvalidZedToken {
                message: "not base64".into(),
            },
            Code::InvalidArgument,
            None,
        ),
        (
            E::RevisionOutOfRange {
                message: "revision has expired".into(),
            },
            Code::OutOfRange,
            None,
        ),
        (
            E::MetadataTooLarge {
                size: 70_000,
                max: 65_000,
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_TRANSACTION_METADATA_TOO_LARGE"),
        ),
        (
            E::Unavailable {
                message: "connection refused".into(),
            },
            Code::Unavailable,
            None,
        ),
        (
            E::SerializationFailure {
                message: "could not serialize access".into(),
            },
            Code::Aborted,
            Some("ERROR_REASON_SERIALIZATION_FAILURE"),
        ),
        (
            E::NotMigrated {
                message: "at revision 3 of 7".into(),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_DATASTORE_NOT_MIGRATED"),
        ),
        (
            E::Unimplemented {
                what: "optional_concrete_limit".into(),
            },
            Code::Unimplemented,
            None,
        ),
        (E::Cancelled, Code::Cancelled, None),
        (E::WatchDisconnected, Code::ResourceExhausted, None),
        (
            E::Internal {
                message: "pg: relation \"secret_tenant_table\" does not exist".into(),
            },
            Code::Internal,
            None,
        ),
        (
            E::ServiceReadOnly,
            Code::Unavailable,
            Some("ERROR_REASON_SERVICE_READ_ONLY"),
        ),
        (
            E::CaveatEvaluation {
                caveat: "weekday".into(),
                message: "no such key: day".into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_CAVEAT_EVALUATION_ERROR"),
        ),
        (E::ZedTokenFromOtherDatastore, Code::Unknown, None),
        (E::DeadlineExceeded, Code::DeadlineExceeded, None),
        (
            E::NotAPermission {
                relation: "viewer".into(),
            },
            Code::InvalidArgument,
            Some("ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"),
        ),
        (
            E::CounterNameRequired,
            Code::InvalidArgument,
            Some("ERROR_REASON_UNSPECIFIED"),
        ),
        (
            E::CounterAlreadyRegistered {
                name: "views".into(),
                filter: Box::default(),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_COUNTER_ALREADY_REGISTERED"),
        ),
        (
            E::CounterNotRegistered {
                name: "views".into(),
            },
            Code::FailedPrecondition,
            Some("ERROR_REASON_COUNTER_NOT_REGISTERED"),
        ),
    ]
}

/// Fails to compile when a variant is added, so `every_variant` is extended
/// along with `describe`.
#[allow(dead_code)]
fn exhaustive(e: &ServiceError) {
    use ServiceError as E;
    match e {
        E::InvalidArgument { .. }
        | E::SchemaParse { .. }
        | E::SchemaType { .. }
        | E::SchemaWouldOrphan { .. }
        | E::SchemaNotFound
        | E::UnknownDefinition { .. }
        | E::UnknownRelation { .. }
        | E::UnknownCaveat { .. }
        | E::TooManyUpdates { .. }
        | E::TooManyPreconditions { .. }
        | E::TooManyChecks { .. }
        | E::ExceedsLimit { .. }
        | E::PreconditionFailed { .. }
        | E::DuplicateUpdate { .. }
        | E::CannotUpdatePermission { .. }
        | E::InvalidSubjectType { .. }
        | E::ContextTooLarge { .. }
        | E::CaveatParameterType { .. }
        | E::AlreadyExists { .. }
        | E::TooManyToDelete { .. }
        | E::InvalidFilter { .. }
        | E::WildcardNotAllowed { .. }
        | E::InvalidCursor { .. }
        | E::MaxDepthExceeded
        | E::InvalidZedToken { .. }
        | E::RevisionOutOfRange { .. }
        | E::MetadataTooLarge { .. }
        | E::Unavailable { .. }
        | E::SerializationFailure { .. }
        | E::NotMigrated { .. }
        | E::Unimplemented { .. }
        | E::Cancelled
        | E::WatchDisconnected
        | E::Internal { .. }
        | E::ServiceReadOnly
        | E::CaveatEvaluation { .. }
        | E::ZedTokenFromOtherDatastore
        | E::DeadlineExceeded
        | E::NotAPermission { .. }
        | E::CounterNameRequired
        | E::CounterAlreadyRegistered { .. }
        | E::CounterNotRegistered { .. } => {}
    }
}

fn error_info(status: &tonic::Status) -> Option<tonic_types::ErrorInfo> {
    let details = status
        .check_error_details()
        .expect("details decode as google.rpc.Status");
    details.error_info().cloned()
}

#[test]
fn every_variant_has_spicedbs_code_and_reason() {
    for (err, code, reason) in every_variant() {
        let status = to_status(&err);
        assert_eq!(status.code(), code, "code of {err:?}");
        match (reason, error_info(&status)) {
            (None, None) => assert!(status.details().is_empty(), "{err:?} has details"),
            (Some(reason), Some(info)) => {
                assert_eq!(info.reason, reason, "reason of {err:?}");
                assert_eq!(info.domain, "authzed.com");
            }
            (want, got) => panic!("{err:?}: wanted reason {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn rpc_status_matches_the_call_status() {
    for (err, code, reason) in every_variant() {
        let status = to_status(&err);
        let rpc = to_rpc_status(&err);
        assert_eq!(rpc.code, code as i32);
        assert_eq!(rpc.message, status.message());
        let info = rpc
            .get_details_error_info()
            .map(|i| (i.reason, i.domain, i.metadata));
        assert_eq!(
            info,
            error_info(&status).map(|i| (i.reason, i.domain, i.metadata))
        );
        if reason.is_some() {
            // The call's details are the pair's message (compared decoded:
            // metadata maps encode in hash order).
            let decoded = RpcStatus::decode(status.details()).expect("details decode");
            assert_eq!((decoded.code, &decoded.message), (rpc.code, &rpc.message));
            assert_eq!(
                decoded.get_details_error_info().map(|i| i.metadata),
                rpc.get_details_error_info().map(|i| i.metadata)
            );
        }
    }
}

#[test]
fn into_status_is_to_status() {
    let err = ServiceError::UnknownDefinition {
        definition: "doc".into(),
    };
    let status: tonic::Status = err.clone().into();
    assert_eq!(status.code(), to_status(&err).code());
    assert_eq!(status.message(), to_status(&err).message());
}

fn metadata_of(err: &ServiceError) -> HashMap<String, String> {
    error_info(&to_status(err)).expect("has ErrorInfo").metadata
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn metadata_uses_spicedbs_keys() {
    use ServiceError as E;
    assert_eq!(
        metadata_of(&E::UnknownRelation {
            definition: "doc".into(),
            relation: "view".into()
        }),
        map(&[
            ("definition_name", "doc"),
            ("relation_or_permission_name", "view")
        ])
    );
    assert_eq!(
        metadata_of(&E::TooManyUpdates {
            count: 1001,
            max: 1000
        }),
        map(&[
            ("update_count", "1001"),
            ("maximum_updates_allowed", "1000")
        ])
    );
    assert_eq!(
        metadata_of(&E::TooManyPreconditions { count: 5, max: 4 }),
        map(&[
            ("precondition_count", "5"),
            ("maximum_updates_allowed", "4")
        ])
    );
    assert_eq!(
        metadata_of(&E::ExceedsLimit {
            field: "optional_limit".into(),
            value: 2000,
            max: 1000
        }),
        map(&[
            ("limit_provided", "2000"),
            ("maximum_limit_allowed", "1000")
        ])
    );
    assert_eq!(
        metadata_of(&E::DuplicateUpdate {
            relationship: key("doc:1#viewer@user:tom")
        }),
        map(&[
            ("definition_name", "doc"),
            ("relationship", "doc:1#viewer@user:tom")
        ])
    );
    assert_eq!(
        metadata_of(&E::AlreadyExists {
            relationship: key("doc:1#viewer@user:tom")
        }),
        map(&[
            ("relationship", "doc:1#viewer@user:tom"),
            ("resource_type", "doc"),
            ("resource_object_id", "1"),
            ("resource_relation", "viewer"),
            ("subject_type", "user"),
            ("subject_object_id", "tom"),
            ("subject_relation", ""),
        ])
    );
    assert_eq!(
        metadata_of(&E::AlreadyExists {
            relationship: key("doc:1#viewer@group:eng#member")
        })["subject_relation"],
        "member"
    );
    assert_eq!(
        metadata_of(&E::MetadataTooLarge {
            size: 70_000,
            max: 65_000
        }),
        map(&[
            ("metadata_byte_size", "70000"),
            ("maximum_allowed_metadata_byte_size", "65000")
        ])
    );
    assert_eq!(
        metadata_of(&E::TooManyChecks {
            count: 10_001,
            max: 10_000
        }),
        map(&[
            ("check_count", "10001"),
            ("maximum_checks_allowed", "10000")
        ])
    );
    assert_eq!(
        metadata_of(&E::WildcardNotAllowed {
            field: "subject.object_id".into()
        }),
        map(&[("field", "subject.object_id")])
    );
    assert_eq!(
        metadata_of(&E::CaveatParameterType {
            caveat: "weekday".into(),
            parameter: "day".into(),
            message: "type error".into(),
        }),
        map(&[("caveat_name", "weekday"), ("parameter_name", "day")])
    );
    assert_eq!(
        metadata_of(&E::CaveatEvaluation {
            caveat: "weekday".into(),
            message: "division by zero".into(),
        }),
        map(&[("caveat_name", "weekday")])
    );
    assert!(metadata_of(&E::MaxDepthExceeded).is_empty());
}

#[test]
fn precondition_metadata_lists_only_set_filter_fields() {
    let err = ServiceError::PreconditionFailed {
        precondition: Box::new(Precondition {
            kind: PreconditionKind::MustNotMatch,
            filter: RelationshipFilter {
                resource_type: Some("doc".into()),
                resource_id: Some("1".into()),
                resource_id_prefix: None,
                relation: Some("viewer".into()),
                subject: Some(SubjectFilter {
                    subject_type: "user".into(),
                    subject_id: None,
                    relation: Some(ELLIPSIS.into()),
                }),
            },
        }),
    };
    assert_eq!(
        metadata_of(&err),
        map(&[
            ("precondition_operation", "OPERATION_MUST_NOT_MATCH"),
            ("precondition_resource_type", "doc"),
            ("precondition_resource_id", "1"),
            ("precondition_relation", "viewer"),
            ("precondition_subject_type", "user"),
            ("precondition_subject_relation", ""),
        ])
    );
}

#[test]
fn parse_errors_carry_zero_based_positions_like_spicedb() {
    // The error is at `}` on line 5 (1-based), column 1.
    let text = "definition user {}\ndefinition doc {\n  relation viewer: user\n  permission view = viewer +\n}";
    let err = ServiceError::SchemaParse {
        errors: schema_errors(text),
        source_text: text.into(),
    };
    let status = to_status(&err);
    let metadata = metadata_of(&err);
    let (line, col) = errors_position(text);
    assert_eq!(metadata["start_line_number"], (line - 1).to_string());
    assert_eq!(metadata["start_column_position"], (col - 1).to_string());
    assert!(metadata.contains_key("end_line_number"));
    assert!(metadata.contains_key("end_column_position"));
    assert!(metadata.contains_key("source_code"));
    assert!(
        status.message().starts_with(&format!(
            "parse error in `schema`, line {line}, column {col}: "
        )),
        "{}",
        status.message()
    );
}

/// 1-based position the schema module reports for the first error (ASCII
/// text, so characters and bytes agree).
fn errors_position(text: &str) -> (usize, usize) {
    schema_errors(text).first().line_col(text)
}

#[test]
fn positions_count_bytes_and_newlines_only() {
    assert_eq!(zero_based_position("", 0), (0, 0));
    assert_eq!(zero_based_position("ab\ncd", 4), (1, 1));
    // `é` is two bytes: SpiceDB's columns are byte offsets.
    assert_eq!(zero_based_position("é x", 3), (0, 3));
    // A lone `\r` does not end a line for SpiceDB's position mapper.
    assert_eq!(zero_based_position("a\rb", 2), (0, 2));
    assert_eq!(zero_based_position("abc", 99), (0, 3));
}

#[test]
fn type_errors_report_the_first_message() {
    let text = "definition doc {\n  relation viewer: nosuch\n}";
    let errors = schema_errors(text);
    let first = errors.first().message.clone();
    let status = to_status(&ServiceError::SchemaType {
        errors,
        source_text: text.into(),
    });
    assert_eq!(status.message(), first);
}

#[test]
fn internal_errors_do_not_leak() {
    let status = to_status(&ServiceError::Internal {
        message: "pg: relation \"secret_tenant_table\" does not exist".into(),
    });
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "internal error");
    assert!(status.details().is_empty());
}

#[test]
fn subject_set_keys_render_with_their_relation() {
    // A check that DuplicateUpdate's relationship uses the model's text form.
    let k = RelationshipKey {
        resource: crate::model::ObjectRef::new("doc", "1"),
        relation: "viewer".into(),
        subject: SubjectRef::set("group", "eng", "member"),
    };
    assert_eq!(
        metadata_of(&ServiceError::DuplicateUpdate {
            relationship: Box::new(k)
        })["relationship"],
        "doc:1#viewer@group:eng#member"
    );
}
