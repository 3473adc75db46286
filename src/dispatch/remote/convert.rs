//! Conversions between the dispatch types (`CheckRequest`, `CheckResult`,
//! `CheckError`, `graph::Membership`, and the read steps' `ReadRequest` and
//! `ReadResult`) and the peer protocol's messages, both ways. Decoding is fallible: a peer's bytes are network data, so every
//! malformed field is a `DecodeError` naming it, never a panic.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::proto;
use crate::datastore::{DatastoreError, ReverseQuery};
use crate::dispatch::{
    CheckError, CheckRequest, CheckResult, ReadQuery, ReadRequest, ReadResult, ResultsSetting,
};
use crate::graph::{CaveatExpr, Membership};
use crate::model::{ContextualizedCaveat, ObjectRef, Relationship, Revision, SubjectRef};

/// Relationships per message of a read's answer: about 100 KB at typical
/// id lengths, well under any message size limit.
pub const READ_CHUNK: usize = 1000;

/// A peer message that does not describe a valid subproblem or answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed dispatch message: {0}")]
pub struct DecodeError(pub String);

fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

// ---- requests ----

pub fn encode_request(request: &CheckRequest) -> proto::DispatchCheckRequest {
    proto::DispatchCheckRequest {
        resource_type: request.resource_type.clone(),
        resource_ids: request.resource_ids.clone(),
        relation: request.relation.clone(),
        subject: Some(encode_subject(&request.subject)),
        revision: request.revision.0.to_string(),
        depth_remaining: request.depth_remaining,
        results_setting: encode_setting(request.results_setting) as i32,
    }
}

pub fn decode_request(message: proto::DispatchCheckRequest) -> Result<CheckRequest, DecodeError> {
    let subject = message
        .subject
        .ok_or_else(|| malformed("missing subject"))?;
    let revision = decode_revision(&message.revision)?;
    let setting = proto::ResultsSetting::try_from(message.results_setting)
        .map_err(|_| malformed("unknown results_setting"))?;
    Ok(CheckRequest {
        resource_type: message.resource_type,
        resource_ids: message.resource_ids,
        relation: message.relation,
        subject: decode_subject(subject),
        revision,
        depth_remaining: message.depth_remaining,
        results_setting: decode_setting(setting)?,
    })
}

fn decode_revision(text: &str) -> Result<Revision, DecodeError> {
    text.parse::<u128>()
        .map(Revision)
        .map_err(|_| malformed(format!("invalid revision `{text}`")))
}

fn encode_subject(subject: &SubjectRef) -> proto::Subject {
    proto::Subject {
        object_type: subject.object.object_type.clone(),
        object_id: subject.object.object_id.clone(),
        relation: subject.relation.clone(),
    }
}

fn decode_subject(subject: proto::Subject) -> SubjectRef {
    SubjectRef {
        object: ObjectRef::new(subject.object_type, subject.object_id),
        relation: subject.relation,
    }
}

pub fn encode_read_request(request: &ReadRequest) -> proto::DispatchReadRequest {
    use proto::dispatch_read_request::Query;
    let query = match request.query() {
        ReadQuery::BySubject(q) => Query::BySubject(proto::BySubject {
            subject_type: q.subject_type.clone(),
            subject_ids: q.subject_ids.clone(),
            subject_relation: q.subject_relation.clone(),
            resource_type: q.resource_type.clone(),
            resource_relation: q.resource_relation.clone(),
        }),
        ReadQuery::ByResource {
            resource_type,
            resource_ids,
            relation,
        } => Query::ByResource(proto::ByResource {
            resource_type: resource_type.clone(),
            resource_ids: resource_ids.clone(),
            relation: relation.clone(),
        }),
    };
    proto::DispatchReadRequest {
        query: Some(query),
        revision: request.revision().0.to_string(),
    }
}

pub fn decode_read_request(
    message: proto::DispatchReadRequest,
) -> Result<ReadRequest, DecodeError> {
    use proto::dispatch_read_request::Query;
    let query = match message.query {
        Some(Query::BySubject(q)) => ReadQuery::BySubject(ReverseQuery {
            subject_type: q.subject_type,
            subject_ids: q.subject_ids,
            subject_relation: q.subject_relation,
            resource_type: q.resource_type,
            resource_relation: q.resource_relation,
        }),
        Some(Query::ByResource(q)) => ReadQuery::ByResource {
            resource_type: q.resource_type,
            resource_ids: q.resource_ids,
            relation: q.relation,
        },
        None => return Err(malformed("missing read query")),
    };
    Ok(ReadRequest::new(query, decode_revision(&message.revision)?))
}

/// A read's outcome as the messages of its stream: the relationships in
/// chunks of `READ_CHUNK` (one empty chunk when there are none), or one
/// failure.
pub fn encode_read_outcome(
    outcome: &Result<ReadResult, CheckError>,
) -> Vec<proto::DispatchReadResponse> {
    use proto::dispatch_read_response::Outcome;
    let message = |outcome| proto::DispatchReadResponse {
        outcome: Some(outcome),
    };
    match outcome {
        Err(error) => vec![message(Outcome::Failure(encode_error(error)))],
        Ok(result) if result.relationships.is_empty() => {
            vec![message(Outcome::Chunk(proto::ReadChunk::default()))]
        }
        Ok(result) => result
            .relationships
            .chunks(READ_CHUNK)
            .map(|chunk| {
                message(Outcome::Chunk(proto::ReadChunk {
                    relationships: chunk.iter().map(encode_relationship).collect(),
                }))
            })
            .collect(),
    }
}

/// The peer's read outcome from the messages of its stream.
pub fn decode_read_outcome(
    messages: Vec<proto::DispatchReadResponse>,
) -> Result<Result<ReadResult, CheckError>, DecodeError> {
    use proto::dispatch_read_response::Outcome;
    if messages.is_empty() {
        return Err(malformed("empty read answer"));
    }
    let mut relationships = Vec::new();
    for message in messages {
        match message.outcome {
            Some(Outcome::Chunk(chunk)) => {
                for rel in chunk.relationships {
                    relationships.push(decode_relationship(rel)?);
                }
            }
            Some(Outcome::Failure(failure)) => return decode_error(failure).map(Err),
            None => return Err(malformed("missing read outcome")),
        }
    }
    Ok(Ok(ReadResult::sorted(relationships)))
}

fn encode_relationship(rel: &Relationship) -> proto::Relationship {
    proto::Relationship {
        resource_type: rel.resource.object_type.clone(),
        resource_id: rel.resource.object_id.clone(),
        relation: rel.relation.clone(),
        subject: Some(encode_subject(&rel.subject)),
        caveat: rel.caveat.as_ref().map(encode_caveat),
        expires_at_unix_nanos: rel.expires_at.map(unix_nanos),
    }
}

fn decode_relationship(rel: proto::Relationship) -> Result<Relationship, DecodeError> {
    let subject = rel
        .subject
        .ok_or_else(|| malformed("relationship without a subject"))?;
    Ok(Relationship {
        resource: ObjectRef::new(rel.resource_type, rel.resource_id),
        relation: rel.relation,
        subject: decode_subject(subject),
        caveat: rel.caveat.map(decode_caveat).transpose()?,
        expires_at: rel.expires_at_unix_nanos.map(from_unix_nanos),
    })
}

fn encode_setting(setting: ResultsSetting) -> proto::ResultsSetting {
    match setting {
        ResultsSetting::AllowSingleResult => proto::ResultsSetting::AllowSingleResult,
        ResultsSetting::RequireAllResults => proto::ResultsSetting::RequireAllResults,
    }
}

fn decode_setting(setting: proto::ResultsSetting) -> Result<ResultsSetting, DecodeError> {
    match setting {
        proto::ResultsSetting::AllowSingleResult => Ok(ResultsSetting::AllowSingleResult),
        proto::ResultsSetting::RequireAllResults => Ok(ResultsSetting::RequireAllResults),
        proto::ResultsSetting::Unspecified => Err(malformed("results_setting unspecified")),
    }
}

// ---- responses ----

pub fn encode_outcome(outcome: &Result<CheckResult, CheckError>) -> proto::DispatchCheckResponse {
    let outcome = match outcome {
        Ok(result) => proto::dispatch_check_response::Outcome::Answer(encode_result(result)),
        Err(error) => proto::dispatch_check_response::Outcome::Failure(encode_error(error)),
    };
    proto::DispatchCheckResponse {
        outcome: Some(outcome),
    }
}

/// The peer's outcome: its answer, or the typed error it evaluated to.
pub fn decode_outcome(
    message: proto::DispatchCheckResponse,
) -> Result<Result<CheckResult, CheckError>, DecodeError> {
    use proto::dispatch_check_response::Outcome;
    match message.outcome {
        Some(Outcome::Answer(answer)) => decode_result(answer).map(Ok),
        Some(Outcome::Failure(failure)) => decode_error(failure).map(Err),
        None => Err(malformed("missing outcome")),
    }
}

fn encode_result(result: &CheckResult) -> proto::CheckAnswer {
    proto::CheckAnswer {
        results_by_resource_id: result
            .memberships
            .iter()
            .map(|(id, membership)| (id.clone(), encode_membership(membership)))
            .collect(),
        dispatch_count: result.dispatch_count,
        cached_dispatch_count: result.cached_dispatch_count,
        depth_required: result.depth_required,
        expires_at_unix_nanos: result.expires_at.map(unix_nanos),
    }
}

fn decode_result(answer: proto::CheckAnswer) -> Result<CheckResult, DecodeError> {
    let memberships = answer
        .results_by_resource_id
        .into_iter()
        .map(|(id, result)| Ok((id, decode_membership(result)?)))
        .collect::<Result<HashMap<_, _>, DecodeError>>()?;
    Ok(CheckResult {
        memberships,
        dispatch_count: answer.dispatch_count,
        cached_dispatch_count: answer.cached_dispatch_count,
        depth_required: answer.depth_required,
        expires_at: answer.expires_at_unix_nanos.map(from_unix_nanos),
    })
}

fn from_unix_nanos(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// Nanoseconds since the epoch; a time before it (no relationship expires
/// then) counts as the epoch, one past 2554 saturates.
fn unix_nanos(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

fn encode_membership(membership: &Membership) -> proto::ResourceCheckResult {
    let (membership, expression) = match membership {
        Membership::NotMember => (proto::Membership::NotMember, None),
        Membership::Member => (proto::Membership::Member, None),
        Membership::Conditional(expr) => {
            (proto::Membership::CaveatedMember, Some(encode_expr(expr)))
        }
    };
    proto::ResourceCheckResult {
        membership: membership as i32,
        expression,
    }
}

fn decode_membership(result: proto::ResourceCheckResult) -> Result<Membership, DecodeError> {
    let membership = proto::Membership::try_from(result.membership)
        .map_err(|_| malformed("unknown membership"))?;
    match membership {
        proto::Membership::NotMember => Ok(Membership::NotMember),
        proto::Membership::Member => Ok(Membership::Member),
        proto::Membership::CaveatedMember => {
            let expr = result
                .expression
                .ok_or_else(|| malformed("caveated member without an expression"))?;
            Ok(Membership::Conditional(decode_expr(expr)?))
        }
        proto::Membership::Unspecified => Err(malformed("membership unspecified")),
    }
}

fn encode_expr(expr: &CaveatExpr) -> proto::CaveatExpression {
    use proto::caveat_expression::Expression;
    let operands = |items: &[CaveatExpr]| proto::CaveatOperands {
        operands: items.iter().map(encode_expr).collect(),
    };
    let expression = match expr {
        CaveatExpr::Caveat(caveat) => Expression::Caveat(encode_caveat(caveat)),
        CaveatExpr::And(items) => Expression::And(operands(items)),
        CaveatExpr::Or(items) => Expression::Or(operands(items)),
        CaveatExpr::Not(inner) => Expression::Not(Box::new(encode_expr(inner))),
    };
    proto::CaveatExpression {
        expression: Some(expression),
    }
}

fn decode_expr(expr: proto::CaveatExpression) -> Result<CaveatExpr, DecodeError> {
    use proto::caveat_expression::Expression;
    let operands = |items: proto::CaveatOperands| {
        items
            .operands
            .into_iter()
            .map(decode_expr)
            .collect::<Result<Vec<_>, _>>()
    };
    match expr.expression {
        Some(Expression::Caveat(caveat)) => Ok(CaveatExpr::Caveat(decode_caveat(caveat)?)),
        Some(Expression::And(items)) => Ok(CaveatExpr::And(operands(items)?)),
        Some(Expression::Or(items)) => Ok(CaveatExpr::Or(operands(items)?)),
        Some(Expression::Not(inner)) => Ok(CaveatExpr::Not(Box::new(decode_expr(*inner)?))),
        None => Err(malformed("empty caveat expression")),
    }
}

fn encode_caveat(caveat: &ContextualizedCaveat) -> proto::ContextualizedCaveat {
    proto::ContextualizedCaveat {
        name: caveat.name.clone(),
        context_json: encode_context(&caveat.context),
    }
}

fn decode_caveat(caveat: proto::ContextualizedCaveat) -> Result<ContextualizedCaveat, DecodeError> {
    Ok(ContextualizedCaveat {
        name: caveat.name,
        context: decode_context(&caveat.context_json)?,
    })
}

fn encode_context(context: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    if context.is_empty() {
        return Vec::new();
    }
    serde_json::to_vec(context).expect("a JSON map always serializes")
}

fn decode_context(bytes: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, DecodeError> {
    if bytes.is_empty() {
        return Ok(serde_json::Map::new());
    }
    serde_json::from_slice(bytes).map_err(|e| malformed(format!("caveat context: {e}")))
}

// ---- errors ----

fn encode_error(error: &CheckError) -> proto::CheckFailure {
    use proto::FailureKind;
    let failure = |kind: FailureKind| proto::CheckFailure {
        kind: kind as i32,
        ..Default::default()
    };
    match error {
        CheckError::MaxDepthExceeded => failure(FailureKind::MaxDepthExceeded),
        CheckError::NoSchema => failure(FailureKind::NoSchema),
        CheckError::UnknownDefinition(definition) => proto::CheckFailure {
            definition: definition.clone(),
            ..failure(FailureKind::UnknownDefinition)
        },
        CheckError::UnknownRelation {
            definition,
            relation,
        } => proto::CheckFailure {
            definition: definition.clone(),
            relation: relation.clone(),
            ..failure(FailureKind::UnknownRelation)
        },
        CheckError::Datastore(e) => proto::CheckFailure {
            message: e.to_string(),
            ..failure(FailureKind::Datastore)
        },
    }
}

fn decode_error(failure: proto::CheckFailure) -> Result<CheckError, DecodeError> {
    use proto::FailureKind;
    let kind = FailureKind::try_from(failure.kind).map_err(|_| malformed("unknown failure"))?;
    match kind {
        FailureKind::MaxDepthExceeded => Ok(CheckError::MaxDepthExceeded),
        FailureKind::NoSchema => Ok(CheckError::NoSchema),
        FailureKind::UnknownDefinition => Ok(CheckError::UnknownDefinition(failure.definition)),
        FailureKind::UnknownRelation => Ok(CheckError::UnknownRelation {
            definition: failure.definition,
            relation: failure.relation,
        }),
        // The peer's datastore is ours too (one datastore per cluster); its
        // message is all that crosses, as a transient failure.
        FailureKind::Datastore => Ok(CheckError::Datastore(DatastoreError::Unavailable(
            failure.message,
        ))),
        FailureKind::Unspecified => Err(malformed("failure kind unspecified")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CheckRequest {
        CheckRequest {
            resource_type: "document".into(),
            resource_ids: vec!["b".into(), "a".into()],
            relation: "view".into(),
            subject: SubjectRef::set("group", "eng", "member"),
            revision: Revision(u128::MAX - 7),
            depth_remaining: 17,
            results_setting: ResultsSetting::RequireAllResults,
        }
    }

    #[test]
    fn requests_round_trip() {
        let original = request();
        assert_eq!(decode_request(encode_request(&original)), Ok(original));
    }

    #[test]
    fn answers_round_trip_with_caveats_and_integers() {
        let mut context = serde_json::Map::new();
        context.insert("limit".into(), serde_json::json!(9_007_199_254_740_993_u64));
        context.insert("nested".into(), serde_json::json!({"a": [1, "x", null]}));
        let caveat = CaveatExpr::Caveat(ContextualizedCaveat {
            name: "under_limit".into(),
            context,
        });
        let expr = CaveatExpr::Or(vec![
            caveat.clone(),
            CaveatExpr::And(vec![
                CaveatExpr::Not(Box::new(caveat.clone())),
                CaveatExpr::Caveat(ContextualizedCaveat {
                    name: "other".into(),
                    context: serde_json::Map::new(),
                }),
            ]),
        ]);
        let result = CheckResult {
            memberships: HashMap::from([
                ("a".to_string(), Membership::Member),
                ("b".to_string(), Membership::Conditional(expr)),
                ("c".to_string(), Membership::NotMember),
            ]),
            dispatch_count: 4,
            cached_dispatch_count: 9,
            depth_required: 3,
            expires_at: Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789)),
        };
        let decoded = decode_outcome(encode_outcome(&Ok(result.clone())));
        assert_eq!(decoded, Ok(Ok(result)));
    }

    #[test]
    fn errors_round_trip() {
        for error in [
            CheckError::MaxDepthExceeded,
            CheckError::NoSchema,
            CheckError::UnknownDefinition("doc".into()),
            CheckError::UnknownRelation {
                definition: "doc".into(),
                relation: "nope".into(),
            },
        ] {
            assert_eq!(
                decode_outcome(encode_outcome(&Err(error.clone()))),
                Ok(Err(error))
            );
        }
    }

    #[test]
    fn reads_round_trip_in_chunks() {
        use crate::model::parse_relationship;
        let request = ReadRequest::new(
            ReadQuery::BySubject(ReverseQuery {
                subject_type: "user".into(),
                subject_ids: vec!["b".into(), "a".into()],
                subject_relation: None,
                resource_type: "document".into(),
                resource_relation: "viewer".into(),
            }),
            Revision(u128::MAX - 1),
        );
        assert_eq!(
            decode_read_request(encode_read_request(&request)),
            Ok(request)
        );
        let by_resource = ReadRequest::new(
            ReadQuery::ByResource {
                resource_type: "document".into(),
                resource_ids: vec!["x".into()],
                relation: "viewer".into(),
            },
            Revision(9),
        );
        assert_eq!(
            decode_read_request(encode_read_request(&by_resource)),
            Ok(by_resource)
        );

        let mut caveated =
            parse_relationship("document:d0#viewer@user:u[ip_allowed:{\"n\":9007199254740993}]")
                .expect("valid");
        caveated.expires_at = Some(UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001));
        let mut rels: Vec<Relationship> = (0..2 * READ_CHUNK + 1)
            .map(|i| parse_relationship(&format!("document:d{i}#viewer@group:g#member")))
            .collect::<Result<_, _>>()
            .expect("valid");
        rels.push(caveated);
        let result = ReadResult::sorted(rels);
        let messages = encode_read_outcome(&Ok(result.clone()));
        assert_eq!(messages.len(), 3);
        assert_eq!(decode_read_outcome(messages), Ok(Ok(result)));
        let empty = encode_read_outcome(&Ok(ReadResult::default()));
        assert_eq!(decode_read_outcome(empty), Ok(Ok(ReadResult::default())));
        let failed = encode_read_outcome(&Err(CheckError::NoSchema));
        assert_eq!(decode_read_outcome(failed), Ok(Err(CheckError::NoSchema)));
        assert!(decode_read_outcome(Vec::new()).is_err());
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let mut bad = encode_request(&request());
        bad.revision = "12x".into();
        assert!(decode_request(bad).is_err());
        let mut no_subject = encode_request(&request());
        no_subject.subject = None;
        assert!(decode_request(no_subject).is_err());
        assert!(decode_outcome(proto::DispatchCheckResponse { outcome: None }).is_err());
        let caveated_without_expr = proto::ResourceCheckResult {
            membership: proto::Membership::CaveatedMember as i32,
            expression: None,
        };
        assert!(decode_membership(caveated_without_expr).is_err());
        assert!(decode_context(b"{not json").is_err());
    }
}
