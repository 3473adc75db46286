//! Conversions between the `authzed.api.v1` messages and `model` types.
//! Proto → model takes the path of the field being converted (e.g.
//! `updates[3].relationship`) so a failure names the exact field, as
//! `ServiceError::InvalidArgument`; model → proto cannot fail and is written
//! as `From` impls. Shape rules (regexes, sizes) are `validate`'s job; what is
//! checked here is only what a conversion cannot do without: required
//! messages present, enums known, numbers representable, tokens readable.

use std::time::SystemTime;

use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use super::proto::v1::{self, consistency::Requirement};
use super::zedtoken;
use crate::model::{
    self, ContextualizedCaveat, ELLIPSIS, ObjectRef, Precondition, PreconditionKind, Relationship,
    RelationshipFilter, RelationshipUpdate, Revision, SubjectFilter, SubjectRef, UpdateOperation,
};
use crate::service::ServiceError;

/// JSON's largest exactly representable integer (2^53): integral numbers up
/// to it become JSON integers, as a client's JSON would have written them.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// `parent.child`, or `child` at the top level.
pub fn field_path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

fn invalid(field: String, message: &str) -> ServiceError {
    ServiceError::InvalidArgument {
        field,
        message: message.to_string(),
    }
}

fn required<'a, T>(value: Option<&'a T>, path: &str) -> Result<&'a T, ServiceError> {
    value.ok_or_else(|| invalid(path.to_string(), "is required"))
}

// ---- proto → model -------------------------------------------------------

/// `ObjectReference` (required at `path`) → `ObjectRef`.
pub fn object_ref(
    object: Option<&v1::ObjectReference>,
    path: &str,
) -> Result<ObjectRef, ServiceError> {
    let object = required(object, path)?;
    Ok(ObjectRef::new(&object.object_type, &object.object_id))
}

/// `SubjectReference` (required at `path`) → `SubjectRef`; an empty
/// `optional_relation` is the object itself (`...`).
pub fn subject_ref(
    subject: Option<&v1::SubjectReference>,
    path: &str,
) -> Result<SubjectRef, ServiceError> {
    let subject = required(subject, path)?;
    let object = object_ref(subject.object.as_ref(), &field_path(path, "object"))?;
    let relation = if subject.optional_relation.is_empty() {
        ELLIPSIS.to_string()
    } else {
        subject.optional_relation.clone()
    };
    Ok(SubjectRef { object, relation })
}

/// `Relationship` (required at `path`) → `Relationship`.
pub fn relationship(
    rel: Option<&v1::Relationship>,
    path: &str,
) -> Result<Relationship, ServiceError> {
    let rel = required(rel, path)?;
    let caveat = rel
        .optional_caveat
        .as_ref()
        .map(|c| {
            let context = match &c.context {
                Some(s) => struct_to_json(s, &field_path(path, "optional_caveat.context"))?,
                None => Map::new(),
            };
            Ok::<_, ServiceError>(ContextualizedCaveat {
                name: c.caveat_name.clone(),
                context,
            })
        })
        .transpose()?;
    let expires_at = rel
        .optional_expires_at
        .as_ref()
        .map(|t| timestamp_to_system_time(t, &field_path(path, "optional_expires_at")))
        .transpose()?;
    Ok(Relationship {
        resource: object_ref(rel.resource.as_ref(), &field_path(path, "resource"))?,
        relation: rel.relation.clone(),
        subject: subject_ref(rel.subject.as_ref(), &field_path(path, "subject"))?,
        caveat,
        expires_at,
    })
}

/// `RelationshipUpdate` at `path` → `RelationshipUpdate`; an UNSPECIFIED or
/// unknown operation is refused.
pub fn relationship_update(
    update: &v1::RelationshipUpdate,
    path: &str,
) -> Result<RelationshipUpdate, ServiceError> {
    use v1::relationship_update::Operation;
    let operation = match Operation::try_from(update.operation) {
        Ok(Operation::Create) => UpdateOperation::Create,
        Ok(Operation::Touch) => UpdateOperation::Touch,
        Ok(Operation::Delete) => UpdateOperation::Delete,
        Ok(Operation::Unspecified) => {
            return Err(invalid(
                field_path(path, "operation"),
                "must be specified (CREATE, TOUCH or DELETE)",
            ));
        }
        Err(_) => {
            return Err(invalid(
                field_path(path, "operation"),
                "must be one of the defined enum values",
            ));
        }
    };
    Ok(RelationshipUpdate {
        operation,
        relationship: relationship(
            update.relationship.as_ref(),
            &field_path(path, "relationship"),
        )?,
    })
}

/// WriteRelationshipsRequest.updates, each named `updates[i]`.
pub fn relationship_updates(
    updates: &[v1::RelationshipUpdate],
) -> Result<Vec<RelationshipUpdate>, ServiceError> {
    updates
        .iter()
        .enumerate()
        .map(|(i, u)| relationship_update(u, &format!("updates[{i}]")))
        .collect()
}

/// `RelationshipFilter` (required at `path`) → `RelationshipFilter`; empty
/// strings are absent fields.
pub fn relationship_filter(
    filter: Option<&v1::RelationshipFilter>,
    path: &str,
) -> Result<RelationshipFilter, ServiceError> {
    let filter = required(filter, path)?;
    Ok(RelationshipFilter {
        resource_type: non_empty(&filter.resource_type),
        resource_id: non_empty(&filter.optional_resource_id),
        resource_id_prefix: non_empty(&filter.optional_resource_id_prefix),
        relation: non_empty(&filter.optional_relation),
        subject: filter.optional_subject_filter.as_ref().map(subject_filter),
    })
}

/// `SubjectFilter` → `SubjectFilter`. A present `optional_relation` whose
/// relation is empty means "plain objects only", i.e. `...`.
pub fn subject_filter(filter: &v1::SubjectFilter) -> SubjectFilter {
    SubjectFilter {
        subject_type: filter.subject_type.clone(),
        subject_id: non_empty(&filter.optional_subject_id),
        relation: filter.optional_relation.as_ref().map(|r| {
            if r.relation.is_empty() {
                ELLIPSIS.to_string()
            } else {
                r.relation.clone()
            }
        }),
    }
}

/// `Precondition` at `path` → `Precondition`.
pub fn precondition(p: &v1::Precondition, path: &str) -> Result<Precondition, ServiceError> {
    use v1::precondition::Operation;
    let kind = match Operation::try_from(p.operation) {
        Ok(Operation::MustMatch) => PreconditionKind::MustMatch,
        Ok(Operation::MustNotMatch) => PreconditionKind::MustNotMatch,
        Ok(Operation::Unspecified) => {
            return Err(invalid(
                field_path(path, "operation"),
                "must be specified (MUST_MATCH or MUST_NOT_MATCH)",
            ));
        }
        Err(_) => {
            return Err(invalid(
                field_path(path, "operation"),
                "must be one of the defined enum values",
            ));
        }
    };
    Ok(Precondition {
        kind,
        filter: relationship_filter(p.filter.as_ref(), &field_path(path, "filter"))?,
    })
}

/// `optional_preconditions`, each named `optional_preconditions[i]`.
pub fn preconditions(ps: &[v1::Precondition]) -> Result<Vec<Precondition>, ServiceError> {
    ps.iter()
        .enumerate()
        .map(|(i, p)| precondition(p, &format!("optional_preconditions[{i}]")))
        .collect()
}

/// A request's `consistency` → `model::Consistency`, for the datastore with
/// `unique_id`. Absent means `minimize_latency`. A token from another
/// datastore is handled as SpiceDB's default (`full-consistency`) does:
/// `at_least_as_fresh` becomes fully consistent, since its revision means
/// nothing here, and `at_exact_snapshot` is refused.
pub fn consistency(
    consistency: Option<&v1::Consistency>,
    unique_id: &str,
) -> Result<model::Consistency, ServiceError> {
    let Some(consistency) = consistency else {
        return Ok(model::Consistency::MinimizeLatency);
    };
    match &consistency.requirement {
        None => Err(invalid(
            "consistency.requirement".into(),
            "one of minimize_latency, at_least_as_fresh, at_exact_snapshot or fully_consistent is required",
        )),
        Some(Requirement::MinimizeLatency(true)) => Ok(model::Consistency::MinimizeLatency),
        Some(Requirement::FullyConsistent(true)) => Ok(model::Consistency::FullyConsistent),
        Some(Requirement::MinimizeLatency(false)) => Err(invalid(
            "consistency.minimize_latency".into(),
            "must be true when set",
        )),
        Some(Requirement::FullyConsistent(false)) => Err(invalid(
            "consistency.fully_consistent".into(),
            "must be true when set",
        )),
        Some(Requirement::AtLeastAsFresh(token)) => {
            let decoded = zedtoken::decode(token)?;
            Ok(if decoded.is_from(unique_id) {
                model::Consistency::AtLeastAsFresh(decoded.revision)
            } else {
                model::Consistency::FullyConsistent
            })
        }
        Some(Requirement::AtExactSnapshot(token)) => {
            let decoded = zedtoken::decode(token)?;
            if decoded.is_from(unique_id) {
                Ok(model::Consistency::AtExactSnapshot(decoded.revision))
            } else {
                Err(ServiceError::ZedTokenFromOtherDatastore)
            }
        }
    }
}

/// `google.protobuf.Struct` → JSON object. Numbers that are integral and
/// exactly representable become JSON integers (`{"n": 1}`, not `1.0`), so a
/// context reads the same whether it came from a proto or from relationship
/// text; NaN and infinities have no JSON form and are refused.
pub fn struct_to_json(
    s: &prost_types::Struct,
    path: &str,
) -> Result<Map<String, Value>, ServiceError> {
    s.fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_to_json(v, &field_path(path, k))?)))
        .collect()
}

fn value_to_json(v: &prost_types::Value, path: &str) -> Result<Value, ServiceError> {
    Ok(match &v.kind {
        // An unset kind is what Go's structpb reads as nil.
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) => Value::Number(json_number(*n, path)?),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s, path)?),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .iter()
                .enumerate()
                .map(|(i, v)| value_to_json(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn json_number(n: f64, path: &str) -> Result<Number, ServiceError> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: |n| ≤ 2^53 fits i64 and has no fraction.
        return Ok(Number::from(n as i64));
    }
    Number::from_f64(n).ok_or_else(|| invalid(path.to_string(), "must be a finite number"))
}

/// `google.protobuf.Timestamp` → `SystemTime`; nanos outside 0..1e9 or a
/// time the platform cannot hold are refused.
pub fn timestamp_to_system_time(
    t: &prost_types::Timestamp,
    path: &str,
) -> Result<SystemTime, ServiceError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(path.to_string(), "nanos must be in 0..999999999"));
    }
    SystemTime::try_from(*t).map_err(|_| invalid(path.to_string(), "is out of range"))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

// ---- model → proto -------------------------------------------------------

/// JSON object → `google.protobuf.Struct` (numbers become doubles, as
/// protobuf has no other).
pub fn json_to_struct(map: &Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(v: &Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(prost_types::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::BoolValue(*b),
        // Every serde_json number has an f64 approximation.
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The token a response carries for `revision`.
pub fn zed_token(revision: Revision, unique_id: &str, schema_hash: &[u8]) -> v1::ZedToken {
    zedtoken::encode(revision, unique_id, schema_hash)
}

impl From<&ObjectRef> for v1::ObjectReference {
    fn from(o: &ObjectRef) -> Self {
        Self {
            object_type: o.object_type.clone(),
            object_id: o.object_id.clone(),
        }
    }
}

impl From<&SubjectRef> for v1::SubjectReference {
    fn from(s: &SubjectRef) -> Self {
        Self {
            object: Some((&s.object).into()),
            optional_relation: if s.is_object() {
                String::new()
            } else {
                s.relation.clone()
            },
        }
    }
}

impl From<&Relationship> for v1::Relationship {
    fn from(r: &Relationship) -> Self {
        Self {
            resource: Some((&r.resource).into()),
            relation: r.relation.clone(),
            subject: Some((&r.subject).into()),
            // The context is always sent with its caveat, even when empty,
            // as SpiceDB's SQL datastores return it.
            optional_caveat: r.caveat.as_ref().map(|c| v1::ContextualizedCaveat {
                caveat_name: c.name.clone(),
                context: Some(json_to_struct(&c.context)),
            }),
            optional_expires_at: r.expires_at.map(prost_types::Timestamp::from),
        }
    }
}

impl From<&RelationshipUpdate> for v1::RelationshipUpdate {
    fn from(u: &RelationshipUpdate) -> Self {
        use v1::relationship_update::Operation;
        let operation = match u.operation {
            UpdateOperation::Create => Operation::Create,
            UpdateOperation::Touch => Operation::Touch,
            UpdateOperation::Delete => Operation::Delete,
        };
        Self {
            operation: operation as i32,
            relationship: Some((&u.relationship).into()),
        }
    }
}

impl From<&SubjectFilter> for v1::SubjectFilter {
    fn from(f: &SubjectFilter) -> Self {
        Self {
            subject_type: f.subject_type.clone(),
            optional_subject_id: f.subject_id.clone().unwrap_or_default(),
            optional_relation: f
                .relation
                .as_ref()
                .map(|r| v1::subject_filter::RelationFilter {
                    relation: if r == ELLIPSIS {
                        String::new()
                    } else {
                        r.clone()
                    },
                }),
        }
    }
}

impl From<&RelationshipFilter> for v1::RelationshipFilter {
    fn from(f: &RelationshipFilter) -> Self {
        Self {
            resource_type: f.resource_type.clone().unwrap_or_default(),
            optional_resource_id: f.resource_id.clone().unwrap_or_default(),
            optional_resource_id_prefix: f.resource_id_prefix.clone().unwrap_or_default(),
            optional_relation: f.relation.clone().unwrap_or_default(),
            optional_subject_filter: f.subject.as_ref().map(Into::into),
        }
    }
}

impl From<&Precondition> for v1::Precondition {
    fn from(p: &Precondition) -> Self {
        use v1::precondition::Operation;
        let operation = match p.kind {
            PreconditionKind::MustMatch => Operation::MustMatch,
            PreconditionKind::MustNotMatch => Operation::MustNotMatch,
        };
        Self {
            operation: operation as i32,
            filter: Some((&p.filter).into()),
        }
    }
}

mod debug_trace;
#[cfg(test)]
mod tests;
