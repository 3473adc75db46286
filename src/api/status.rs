//! The one mapping from `ServiceError` to a gRPC status, as SpiceDB sends it:
//! its code, a message, and (where SpiceDB attaches one) a `google.rpc.Status`
//! details payload holding `google.rpc.ErrorInfo { domain: "authzed.com",
//! reason: "ERROR_REASON_…", metadata }`. Handlers call `to_status` for a
//! failed call and `to_rpc_status` for a CheckBulkPermissions item; both are
//! built from the same description, so they cannot drift apart.
//!
//! Errors SpiceDB reports as a plain status (request validation, revisions,
//! NOT_FOUND, cancellation) carry no details here either: the official
//! clients branch on the presence of `ErrorInfo`, so inventing one would be a
//! visible difference.

use std::collections::HashMap;

use prost::Message as _;
use tonic::Code;

use super::proto::RpcStatus;
use super::proto::v1::ErrorReason;
use crate::model::{ELLIPSIS, PreconditionKind, RelationshipKey};
use crate::schema::SchemaErrors;
use crate::service::ServiceError;

/// `ErrorInfo.domain` on every SpiceDB error.
pub const ERROR_DOMAIN: &str = "authzed.com";

/// What the client sees when the server failed in a way it should not
/// learn the details of.
const INTERNAL_MESSAGE: &str = "internal error";

/// The gRPC status for a failed call. Logs `Internal` errors (the only place
/// they are handled), so callers just return the result.
pub fn to_status(err: &ServiceError) -> tonic::Status {
    let described = describe(err);
    match described.info {
        // `with_details` puts the encoded google.rpc.Status in the
        // `grpc-status-details-bin` trailer, where SpiceDB's Go server puts it.
        Some(_) => tonic::Status::with_details(
            described.code,
            described.message.clone(),
            described.into_rpc_status().encode_to_vec().into(),
        ),
        None => tonic::Status::new(described.code, described.message),
    }
}

/// The same error as a `google.rpc.Status` message, for
/// `CheckBulkPermissionsPair.error`: one bad item is reported in its pair,
/// not as a failed call.
pub fn to_rpc_status(err: &ServiceError) -> RpcStatus {
    describe(err).into_rpc_status()
}

impl From<ServiceError> for tonic::Status {
    fn from(err: ServiceError) -> Self {
        to_status(&err)
    }
}

/// A status before encoding.
struct Described {
    code: Code,
    message: String,
    info: Option<(ErrorReason, HashMap<String, String>)>,
}

impl Described {
    fn plain(code: Code, message: String) -> Self {
        Self {
            code,
            message,
            info: None,
        }
    }

    fn with_reason<const N: usize>(
        code: Code,
        message: String,
        reason: ErrorReason,
        metadata: [(&str, String); N],
    ) -> Self {
        Self {
            code,
            message,
            info: Some((
                reason,
                metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            )),
        }
    }

    fn into_rpc_status(self) -> RpcStatus {
        let details = self
            .info
            .map(|(reason, metadata)| {
                let info = tonic_types::pb::ErrorInfo {
                    reason: reason.as_str_name().to_string(),
                    domain: ERROR_DOMAIN.to_string(),
                    metadata,
                };
                prost_types::Any {
                    type_url: tonic_types::ErrorInfo::TYPE_URL.to_string(),
                    value: info.encode_to_vec(),
                }
            })
            .into_iter()
            .collect();
        RpcStatus {
            code: self.code as i32,
            message: self.message,
            details,
        }
    }
}

fn describe(err: &ServiceError) -> Described {
    use Code as C;
    use ErrorReason as R;
    use ServiceError as E;
    let message = err.to_string();
    match err {
        E::InvalidArgument { .. } => Described::plain(C::InvalidArgument, message),
        E::SchemaParse {
            errors,
            source_text,
        } => describe_parse_error(errors, source_text),
        // SpiceDB's type errors carry the inner error's own metadata
        // (definition/relation names); our diagnostics hold only text.
        E::SchemaType { errors, .. } => Described::with_reason(
            C::FailedPrecondition,
            errors
                .diagnostics
                .first()
                .map_or(message, |d| d.message.clone()),
            R::SchemaTypeError,
            [],
        ),
        E::SchemaWouldOrphan { .. } => {
            Described::with_reason(C::InvalidArgument, message, R::SchemaTypeError, [])
        }
        E::SchemaNotFound => Described::plain(C::NotFound, message),
        E::UnknownDefinition { definition } => Described::with_reason(
            C::FailedPrecondition,
            message,
            R::UnknownDefinition,
            [("definition_name", definition.clone())],
        ),
        E::UnknownRelation {
            definition,
            relation,
        } => Described::with_reason(
            C::FailedPrecondition,
            message,
            R::UnknownRelationOrPermission,
            [
                ("definition_name", definition.clone()),
                ("relation_or_permission_name", relation.clone()),
            ],
        ),
        E::UnknownCaveat { caveat } => Described::with_reason(
            C::FailedPrecondition,
            message,
            R::UnknownCaveat,
            [("caveat_name", caveat.clone())],
        ),
        E::TooManyUpdates { count, max } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::TooManyUpdatesInRequest,
            [
                ("update_count", count.to_string()),
                ("maximum_updates_allowed", max.to_string()),
            ],
        ),
        // SpiceDB names the maximum `maximum_updates_allowed` here too.
        E::TooManyPreconditions { count, max } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::TooManyPreconditionsInRequest,
            [
                ("precondition_count", count.to_string()),
                ("maximum_updates_allowed", max.to_string()),
            ],
        ),
        // SpiceDB sends ERROR_REASON_UNSPECIFIED here, not
        // TOO_MANY_CHECKS_IN_REQUEST; clients see exactly that.
        E::TooManyChecks { count, max } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::Unspecified,
            [
                ("check_count", count.to_string()),
                ("maximum_checks_allowed", max.to_string()),
            ],
        ),
        E::ExceedsLimit { value, max, .. } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::ExceedsMaximumAllowableLimit,
            [
                ("limit_provided", value.to_string()),
                ("maximum_limit_allowed", max.to_string()),
            ],
        ),
        E::PreconditionFailed { precondition } => {
            let mut metadata = HashMap::new();
            let operation = match precondition.kind {
                PreconditionKind::MustMatch => "OPERATION_MUST_MATCH",
                PreconditionKind::MustNotMatch => "OPERATION_MUST_NOT_MATCH",
            };
            metadata.insert("precondition_operation".into(), operation.into());
            let f = &precondition.filter;
            let mut put = |key: &str, value: &Option<String>| {
                if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                    metadata.insert(key.to_string(), v.clone());
                }
            };
            put("precondition_resource_type", &f.resource_type);
            put("precondition_resource_id", &f.resource_id);
            put("precondition_resource_id_prefix", &f.resource_id_prefix);
            put("precondition_relation", &f.relation);
            if let Some(subject) = &f.subject {
                metadata.insert(
                    "precondition_subject_type".into(),
                    subject.subject_type.clone(),
                );
                if let Some(id) = subject.subject_id.as_ref().filter(|id| !id.is_empty()) {
                    metadata.insert("precondition_subject_id".into(), id.clone());
                }
                // A present relation filter is reported even when it is the
                // "no relation" filter, which SpiceDB spells as "".
                if let Some(relation) = &subject.relation {
                    let relation = if relation == ELLIPSIS { "" } else { relation };
                    metadata.insert("precondition_subject_relation".into(), relation.into());
                }
            }
            Described {
                code: C::FailedPrecondition,
                message,
                info: Some((R::WriteOrDeletePreconditionFailure, metadata)),
            }
        }
        E::DuplicateUpdate { relationship } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::UpdatesOnSameRelationship,
            [
                ("definition_name", relationship.resource.object_type.clone()),
                ("relationship", relationship.to_string()),
            ],
        ),
        E::CannotUpdatePermission {
            definition,
            permission,
        } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::CannotUpdatePermission,
            [
                ("definition_name", definition.clone()),
                ("permission_name", permission.clone()),
            ],
        ),
        // SpiceDB adds definition_name, relation_name and subject_type; the
        // variant carries only the rendered message.
        E::InvalidSubjectType { .. } => {
            Described::with_reason(C::InvalidArgument, message, R::InvalidSubjectType, [])
        }
        E::ContextTooLarge { size, max } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::MaxRelationshipContextSize,
            [
                ("max_allowed_size", max.to_string()),
                ("context_size", size.to_string()),
            ],
        ),
        E::CaveatParameterType {
            caveat, parameter, ..
        } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::CaveatParameterTypeError,
            [
                ("caveat_name", caveat.clone()),
                ("parameter_name", parameter.clone()),
            ],
        ),
        E::CaveatEvaluation { caveat, .. } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::CaveatEvaluationError,
            [("caveat_name", caveat.clone())],
        ),
        E::AlreadyExists { relationship } => {
            let metadata = relationship_metadata(relationship);
            Described {
                code: C::AlreadyExists,
                message,
                info: Some((R::AttemptToRecreateRelationship, metadata)),
            }
        }
        E::TooManyToDelete { limit } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::TooManyRelationshipsForTransactionalDelete,
            [("limit", limit.to_string())],
        ),
        E::InvalidFilter { filter, .. } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::InvalidFilter,
            [("filter", filter.clone())],
        ),
        E::WildcardNotAllowed { field } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::WildcardNotAllowed,
            [("field", field.clone())],
        ),
        // A cursor that does not decode is the caller's argument; one made
        // for another request is a precondition, as in SpiceDB.
        E::InvalidCursor { other_request, .. } => Described::with_reason(
            if *other_request {
                C::FailedPrecondition
            } else {
                C::InvalidArgument
            },
            message,
            R::InvalidCursor,
            [],
        ),
        // The dispatcher's error is the one that reaches clients in 1.54:
        // FAILED_PRECONDITION with empty metadata.
        E::MaxDepthExceeded => {
            Described::with_reason(C::FailedPrecondition, message, R::MaximumDepthExceeded, [])
        }
        E::InvalidZedToken { .. } => Described::plain(C::InvalidArgument, message),
        E::RevisionOutOfRange { .. } => Described::plain(C::OutOfRange, message),
        E::ZedTokenFromOtherDatastore => Described::plain(C::Unknown, message),
        E::MetadataTooLarge { size, max } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::TransactionMetadataTooLarge,
            [
                ("metadata_byte_size", size.to_string()),
                ("maximum_allowed_metadata_byte_size", max.to_string()),
            ],
        ),
        E::Unavailable { .. } => Described::plain(C::Unavailable, message),
        E::ServiceReadOnly => {
            Described::with_reason(C::Unavailable, message, R::ServiceReadOnly, [])
        }
        E::SerializationFailure { .. } => {
            Described::with_reason(C::Aborted, message, R::SerializationFailure, [])
        }
        E::NotMigrated { .. } => {
            Described::with_reason(C::FailedPrecondition, message, R::DatastoreNotMigrated, [])
        }
        E::NotAPermission { relation } => Described::with_reason(
            C::InvalidArgument,
            message,
            R::UnknownRelationOrPermission,
            // sic: SpiceDB's only camelCase metadata key.
            [("relationName", relation.clone())],
        ),
        E::CounterNameRequired => {
            Described::with_reason(C::InvalidArgument, message, R::Unspecified, [])
        }
        E::CounterAlreadyRegistered { name, filter } => {
            let subject = filter.subject.as_ref();
            let subject_relation = subject
                .and_then(|s| s.relation.as_deref())
                .filter(|r| *r != ELLIPSIS);
            let text = |value: Option<&str>| value.unwrap_or_default().to_string();
            Described::with_reason(
                C::FailedPrecondition,
                message,
                R::CounterAlreadyRegistered,
                [
                    ("counter_name", name.clone()),
                    (
                        "new_filter_resource_type",
                        text(filter.resource_type.as_deref()),
                    ),
                    (
                        "new_filter_resource_id",
                        text(filter.resource_id.as_deref()),
                    ),
                    (
                        "new_filter_resource_id_prefix",
                        text(filter.resource_id_prefix.as_deref()),
                    ),
                    ("new_filter_relation", text(filter.relation.as_deref())),
                    (
                        "new_filter_subject_type",
                        text(subject.map(|s| s.subject_type.as_str())),
                    ),
                    (
                        "new_filter_subject_id",
                        text(subject.and_then(|s| s.subject_id.as_deref())),
                    ),
                    ("new_filter_subject_relation", text(subject_relation)),
                ],
            )
        }
        E::CounterNotRegistered { name } => Described::with_reason(
            C::FailedPrecondition,
            message,
            R::CounterNotRegistered,
            [("counter_name", name.clone())],
        ),
        E::Unimplemented { .. } => Described::plain(C::Unimplemented, message),
        E::Cancelled => Described::plain(C::Cancelled, message),
        E::WatchDisconnected => Described::plain(C::ResourceExhausted, message),
        E::DeadlineExceeded => Described::plain(C::DeadlineExceeded, message),
        E::Internal { message } => {
            // Handled here, so logged here; the text may name tables,
            // hosts or other tenants' data, so the client gets none of it.
            tracing::error!(error = %message, "internal error answering a request");
            Described::plain(C::Internal, INTERNAL_MESSAGE.to_string())
        }
    }
}

/// SpiceDB's metadata for a relationship that already exists.
fn relationship_metadata(key: &RelationshipKey) -> HashMap<String, String> {
    let subject_relation = if key.subject.is_object() {
        String::new()
    } else {
        key.subject.relation.clone()
    };
    [
        ("relationship", key.to_string()),
        ("resource_type", key.resource.object_type.clone()),
        ("resource_object_id", key.resource.object_id.clone()),
        ("resource_relation", key.relation.clone()),
        ("subject_type", key.subject.object.object_type.clone()),
        ("subject_object_id", key.subject.object.object_id.clone()),
        ("subject_relation", subject_relation),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A schema parse error as SpiceDB reports it: the message names the source
/// (`schema`) and the 1-based position, while the metadata holds 0-based
/// line and column of the error's start and end, with columns in bytes and
/// only `\n` ending a line (SpiceDB's position mapper), plus the offending
/// source text.
fn describe_parse_error(errors: &SchemaErrors, source: &str) -> Described {
    let Some(first) = errors.diagnostics.first() else {
        return Described::with_reason(
            Code::InvalidArgument,
            errors.to_string(),
            ErrorReason::SchemaParseError,
            [],
        );
    };
    let (start_line, start_col) = zero_based_position(source, first.span.start);
    let (end_line, end_col) = zero_based_position(source, first.span.end);
    let code = source
        .get(first.span.start..first.span.end)
        .and_then(|s| s.lines().next())
        .unwrap_or("")
        .to_string();
    Described::with_reason(
        Code::InvalidArgument,
        format!(
            "parse error in `schema`, line {}, column {}: {}",
            start_line + 1,
            start_col + 1,
            first.message
        ),
        ErrorReason::SchemaParseError,
        [
            ("start_line_number", start_line.to_string()),
            ("start_column_position", start_col.to_string()),
            ("end_line_number", end_line.to_string()),
            ("end_column_position", end_col.to_string()),
            ("source_code", code),
        ],
    )
}

/// 0-based (line, byte column) of a byte offset, lines split at `\n`.
fn zero_based_position(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    (line, offset - line_start)
}

#[cfg(test)]
mod tests;
