//! Every way a request can fail, as the API reports it. `api::status` maps
//! each variant to a gRPC status and SpiceDB's `ErrorInfo` reason in one
//! place. Messages are lowercase, name the offending field or object, and
//! never reveal relationships the caller could not read.

use crate::model::{Precondition, RelationshipKey};
use crate::schema::SchemaErrors;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// A request field failed validation (INVALID_ARGUMENT, no reason).
    #[error("invalid {field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The schema text does not parse or breaks a translation rule
    /// (INVALID_ARGUMENT / SCHEMA_PARSE_ERROR, with line and column).
    #[error("{}", .errors)]
    SchemaParse {
        errors: SchemaErrors,
        source_text: String,
    },
    /// The schema parses but fails type checking (FAILED_PRECONDITION / SCHEMA_TYPE_ERROR).
    #[error("{}", .errors)]
    SchemaType {
        errors: SchemaErrors,
        source_text: String,
    },
    /// A schema change would orphan stored relationships (INVALID_ARGUMENT / SCHEMA_TYPE_ERROR).
    #[error("{message}")]
    SchemaWouldOrphan { message: String },
    /// ReadSchema before any schema was written (NOT_FOUND).
    #[error("no schema has been defined; please call WriteSchema to start")]
    SchemaNotFound,
    /// FAILED_PRECONDITION / UNKNOWN_DEFINITION
    #[error("object definition `{definition}` not found")]
    UnknownDefinition { definition: String },
    /// FAILED_PRECONDITION / UNKNOWN_RELATION_OR_PERMISSION
    #[error("relation/permission `{relation}` not found under definition `{definition}`")]
    UnknownRelation {
        definition: String,
        relation: String,
    },
    /// FAILED_PRECONDITION / UNKNOWN_CAVEAT
    #[error("caveat `{caveat}` not found")]
    UnknownCaveat { caveat: String },
    /// INVALID_ARGUMENT / TOO_MANY_UPDATES_IN_REQUEST
    #[error("update count of {count} is greater than maximum allowed of {max}")]
    TooManyUpdates { count: usize, max: usize },
    /// INVALID_ARGUMENT / TOO_MANY_PRECONDITIONS_IN_REQUEST
    #[error("precondition count of {count} is greater than maximum allowed of {max}")]
    TooManyPreconditions { count: usize, max: usize },
    /// INVALID_ARGUMENT (SpiceDB sends no reason here)
    #[error("check count of {count} is greater than maximum allowed of {max}")]
    TooManyChecks { count: usize, max: usize },
    /// INVALID_ARGUMENT / EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT
    #[error("provided {field} of {value} is greater than maximum allowed of {max}")]
    ExceedsLimit { field: String, value: u64, max: u64 },
    /// FAILED_PRECONDITION / WRITE_OR_DELETE_PRECONDITION_FAILURE
    #[error("unable to satisfy write precondition `{}`", describe_precondition(.precondition))]
    PreconditionFailed { precondition: Box<Precondition> },
    /// INVALID_ARGUMENT / UPDATES_ON_SAME_RELATIONSHIP
    #[error(
        "found more than one update with relationship `{relationship}` in this request; a relationship can only be specified in an update once per overall WriteRelationships request"
    )]
    DuplicateUpdate { relationship: Box<RelationshipKey> },
    /// INVALID_ARGUMENT / CANNOT_UPDATE_PERMISSION
    #[error(
        "cannot write a relationship to permission `{permission}` under definition `{definition}`"
    )]
    CannotUpdatePermission {
        definition: String,
        permission: String,
    },
    /// INVALID_ARGUMENT / INVALID_SUBJECT_TYPE
    #[error("{message}")]
    InvalidSubjectType { message: String },
    /// INVALID_ARGUMENT / MAX_RELATIONSHIP_CONTEXT_SIZE
    #[error("relationship caveat context of {size} bytes exceeds the maximum of {max} bytes")]
    ContextTooLarge { size: usize, max: usize },
    /// INVALID_ARGUMENT / CAVEAT_PARAMETER_TYPE_ERROR: a context value does
    /// not convert to its parameter's type, or names no parameter.
    #[error("{message}")]
    CaveatParameterType {
        caveat: String,
        parameter: String,
        message: String,
    },
    /// ALREADY_EXISTS / ATTEMPT_TO_RECREATE_RELATIONSHIP
    #[error(
        "could not CREATE relationship `{relationship}`, as it already existed. If this is persistent, please switch to TOUCH operations or specify a precondition"
    )]
    AlreadyExists { relationship: Box<RelationshipKey> },
    /// INVALID_ARGUMENT / TOO_MANY_RELATIONSHIPS_FOR_TRANSACTIONAL_DELETE
    #[error(
        "found more than {limit} relationships to be deleted and partial deletion was not requested"
    )]
    TooManyToDelete { limit: usize },
    /// INVALID_ARGUMENT / INVALID_FILTER; `filter` is the offending filter in
    /// protobuf text form (SpiceDB's `filter` metadata).
    #[error("the relationship filter provided is not valid: {message}")]
    InvalidFilter { message: String, filter: String },
    /// INVALID_ARGUMENT / WILDCARD_NOT_ALLOWED
    #[error("wildcard subjects are not allowed in {field}")]
    WildcardNotAllowed { field: String },
    /// INVALID_ARGUMENT / INVALID_CURSOR (FAILED_PRECONDITION when the cursor
    /// belongs to another request)
    #[error("invalid cursor: {message}")]
    InvalidCursor {
        message: String,
        other_request: bool,
    },
    /// FAILED_PRECONDITION / MAXIMUM_DEPTH_EXCEEDED
    #[error("max depth exceeded: this usually indicates a recursive or too deep data dependency")]
    MaxDepthExceeded,
    /// INVALID_ARGUMENT ("invalid revision requested")
    #[error("invalid revision requested: {message}")]
    InvalidZedToken { message: String },
    /// OUT_OF_RANGE
    #[error("invalid revision: {message}")]
    RevisionOutOfRange { message: String },
    /// INVALID_ARGUMENT / TRANSACTION_METADATA_TOO_LARGE
    #[error("transaction metadata of {size} bytes exceeds the maximum of {max} bytes")]
    MetadataTooLarge { size: usize, max: usize },
    /// UNAVAILABLE
    #[error("service unavailable: {message}")]
    Unavailable { message: String },
    /// ABORTED / SERIALIZATION_FAILURE
    #[error("serialization failure, please retry: {message}")]
    SerializationFailure { message: String },
    /// FAILED_PRECONDITION / DATASTORE_NOT_MIGRATED
    #[error("datastore is not migrated: {message}")]
    NotMigrated { message: String },
    /// UNIMPLEMENTED
    #[error("{what} is not implemented")]
    Unimplemented { what: String },
    /// CANCELLED (DEADLINE_EXCEEDED is `DeadlineExceeded`)
    #[error("request cancelled or deadline exceeded")]
    Cancelled,
    /// INTERNAL; the message is logged, the client sees a generic text.
    #[error("internal error: {message}")]
    Internal { message: String },
    /// UNAVAILABLE / SERVICE_READ_ONLY: the datastore is in read-only mode.
    #[error("service read-only")]
    ServiceReadOnly,
    /// INVALID_ARGUMENT / CAVEAT_EVALUATION_ERROR: a caveat expression failed
    /// at run time (e.g. a missing map key, an overflow).
    #[error("evaluation error for caveat {caveat}: {message}")]
    CaveatEvaluation { caveat: String, message: String },
    /// UNKNOWN (SpiceDB sends a plain error): an `at_exact_snapshot` token
    /// issued by another datastore, whose revision means nothing here.
    #[error(
        "ZedToken specified references a different datastore instance but at-exact-snapshot was requested"
    )]
    ZedTokenFromOtherDatastore,
    /// DEADLINE_EXCEEDED
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// RESOURCE_EXHAUSTED: a Watch consumer read too slowly and its buffer
    /// stayed full past the write timeout.
    #[error(
        "watch disconnected: watch fell too far behind and was disconnected; consider increasing watch buffer size via the flag --datastore-watch-buffer-length"
    )]
    WatchDisconnected,
    /// INVALID_ARGUMENT with reason UNSPECIFIED: a relationship counter RPC
    /// without a counter name.
    #[error("name must be provided")]
    CounterNameRequired,
    /// FAILED_PRECONDITION / COUNTER_ALREADY_REGISTERED; `filter` is the one
    /// the request tried to register.
    #[error("counter with name `{name}` already registered")]
    CounterAlreadyRegistered {
        name: String,
        filter: Box<crate::model::RelationshipFilter>,
    },
    /// FAILED_PRECONDITION / COUNTER_NOT_REGISTERED
    #[error("counter with name `{name}` not found")]
    CounterNotRegistered { name: String },
    /// INVALID_ARGUMENT / UNKNOWN_RELATION_OR_PERMISSION: DependentRelations
    /// asked about a relation rather than a permission.
    #[error("the relation `{relation}` is not a permission")]
    NotAPermission { relation: String },
}

impl From<crate::caveats::CaveatError> for ServiceError {
    fn from(e: crate::caveats::CaveatError) -> Self {
        use crate::caveats::CaveatError as C;
        let message = e.to_string();
        match e {
            C::ParameterType {
                caveat, parameter, ..
            }
            | C::UnknownParameter { caveat, parameter } => ServiceError::CaveatParameterType {
                caveat,
                parameter,
                message,
            },
            C::Evaluation { caveat, message } => ServiceError::CaveatEvaluation { caveat, message },
            C::UnknownCaveat { caveat } => ServiceError::UnknownCaveat { caveat },
        }
    }
}

fn describe_precondition(p: &Precondition) -> String {
    let f = &p.filter;
    let mut s = format!("{:?} ", p.kind);
    s.push_str(f.resource_type.as_deref().unwrap_or("*"));
    if let Some(id) = &f.resource_id {
        s.push(':');
        s.push_str(id);
    }
    if let Some(rel) = &f.relation {
        s.push('#');
        s.push_str(rel);
    }
    if let Some(sub) = &f.subject {
        s.push('@');
        s.push_str(&sub.subject_type);
        if let Some(id) = &sub.subject_id {
            s.push(':');
            s.push_str(id);
        }
    }
    s
}

impl From<crate::datastore::DatastoreError> for ServiceError {
    fn from(e: crate::datastore::DatastoreError) -> Self {
        use crate::datastore::DatastoreError as D;
        match e {
            D::RevisionOutOfRange(message) => ServiceError::RevisionOutOfRange { message },
            D::AlreadyExists(relationship) => ServiceError::AlreadyExists { relationship },
            D::TooManyToDelete { limit } => ServiceError::TooManyToDelete { limit },
            D::InvalidCursor(message) => ServiceError::InvalidCursor {
                message,
                other_request: false,
            },
            D::Unavailable(message) => ServiceError::Unavailable { message },
            D::SerializationFailure(message) => ServiceError::SerializationFailure { message },
            D::NotMigrated(message) => ServiceError::NotMigrated { message },
            D::CounterNotRegistered(name) => ServiceError::CounterNotRegistered { name },
            // Registration names the filter it tried; this is the fallback.
            D::CounterAlreadyRegistered(name) => ServiceError::CounterAlreadyRegistered {
                name,
                filter: Box::default(),
            },
            // Callers that check preconditions translate this with the precondition itself.
            D::PreconditionFailed { index } => ServiceError::Internal {
                message: format!("untranslated precondition failure at index {index}"),
            },
            D::Internal(message) => ServiceError::Internal { message },
        }
    }
}

/// A string as protobuf text format quotes it, for the protobuf-text values
/// SpiceDB puts in error metadata (filters, for instance).
pub fn proto_text_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
