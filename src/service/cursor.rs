//! Opaque cursors for paged reads (ReadRelationships and
//! ExportBulkRelationships). A cursor pins the revision of the first page
//! (so later pages read the same snapshot), the last key returned, and a
//! fingerprint of the request it belongs to (a cursor replayed with a
//! different request, or with another RPC, is refused). Encoded as hex of a
//! small JSON document.

use serde::{Deserialize, Serialize};

use crate::model::{ObjectRef, RelationshipFilter, RelationshipKey, Revision, SubjectRef};

use super::ServiceError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    /// Revision, decimal.
    r: String,
    /// Request fingerprint.
    f: String,
    /// After key: resource type, id, relation, subject type, id, relation.
    k: [String; 6],
}

/// A decoded cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub revision: Revision,
    pub after: RelationshipKey,
}

/// The paged RPC a cursor belongs to; part of its fingerprint, so one
/// RPC's cursor is refused by the other even for the same filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    ReadRelationships,
    ExportRelationships,
}

/// Identifies a paged request: the RPC and its filter (an export without a
/// filter has the empty one). The page size is left out on purpose: a
/// client may resume with a different one.
pub fn filter_fingerprint(purpose: Purpose, filter: &RelationshipFilter) -> String {
    let optional = |v: &Option<String>| format!("{v:?}");
    let subject = filter.subject.as_ref().map(|s| {
        format!(
            "{}:{}#{}",
            s.subject_type,
            s.subject_id.as_deref().unwrap_or(""),
            s.relation.as_deref().unwrap_or("")
        )
    });
    fingerprint(&[
        &format!("{purpose:?}"),
        &optional(&filter.resource_type),
        &optional(&filter.resource_id),
        &optional(&filter.resource_id_prefix),
        &optional(&filter.relation),
        &optional(&subject),
    ])
}

/// Encodes a cursor after `key` at `revision` for a request with `fingerprint`.
pub fn encode(revision: Revision, fingerprint: &str, key: &RelationshipKey) -> String {
    let payload = Payload {
        r: revision.0.to_string(),
        f: fingerprint.to_string(),
        k: [
            key.resource.object_type.clone(),
            key.resource.object_id.clone(),
            key.relation.clone(),
            key.subject.object.object_type.clone(),
            key.subject.object.object_id.clone(),
            key.subject.relation.clone(),
        ],
    };
    hex(&serde_json::to_vec(&payload).unwrap_or_default())
}

/// Decodes a cursor, requiring it to belong to a request with `fingerprint`.
pub fn decode(token: &str, fingerprint: &str) -> Result<Cursor, ServiceError> {
    let payload: Payload = serde_json::from_slice(&unhex(token)?).map_err(|_| malformed())?;
    if payload.f != fingerprint {
        return Err(other_request());
    }
    let revision = revision(&payload.r)?;
    let [rt, rid, rel, st, sid, srel] = payload.k;
    Ok(Cursor {
        revision,
        after: RelationshipKey {
            resource: ObjectRef::new(rt, rid),
            relation: rel,
            subject: SubjectRef::set(st, sid, srel),
        },
    })
}

/// A cursor that resumes a lookup by position: after the `after`-th result
/// (LookupResources, whose order is fixed for a snapshot) or after a subject
/// id (LookupSubjects, sorted by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PositionPayload {
    /// Revision, decimal.
    r: String,
    /// Request fingerprint.
    f: String,
    /// Position.
    p: String,
}

/// A decoded position cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionCursor {
    pub revision: Revision,
    pub after: String,
}

/// Encodes a position cursor for a request with `fingerprint`.
pub fn encode_position(revision: Revision, fingerprint: &str, after: &str) -> String {
    let payload = PositionPayload {
        r: revision.0.to_string(),
        f: fingerprint.to_string(),
        p: after.to_string(),
    };
    hex(&serde_json::to_vec(&payload).unwrap_or_default())
}

/// Decodes a position cursor, requiring it to belong to `fingerprint`.
pub fn decode_position(token: &str, fingerprint: &str) -> Result<PositionCursor, ServiceError> {
    let payload: PositionPayload =
        serde_json::from_slice(&unhex(token)?).map_err(|_| malformed())?;
    if payload.f != fingerprint {
        return Err(other_request());
    }
    let revision = revision(&payload.r)?;
    Ok(PositionCursor {
        revision,
        after: payload.p,
    })
}

/// A short digest of the parts of a request a cursor is bound to.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for part in parts {
        sha2::Digest::update(&mut hasher, (part.len() as u64).to_le_bytes());
        sha2::Digest::update(&mut hasher, part.as_bytes());
    }
    let digest = sha2::Digest::finalize(hasher);
    hex(&digest[..8])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(token: &str) -> Result<Vec<u8>, ServiceError> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(malformed());
    }
    (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| malformed())
}

/// A cursor's revision, written in decimal.
fn revision(text: &str) -> Result<Revision, ServiceError> {
    text.parse::<u128>().map(Revision).map_err(|_| malformed())
}

fn malformed() -> ServiceError {
    ServiceError::InvalidCursor {
        message: "the cursor is malformed".into(),
        other_request: false,
    }
}

fn other_request() -> ServiceError {
    ServiceError::InvalidCursor {
        message: "the cursor was issued for a different request".into(),
        other_request: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_request() {
        let key = crate::model::parse_relationship("doc:1#viewer@user:tom")
            .expect("valid")
            .key();
        let token = encode(Revision(42), "abc", &key);
        let cursor = decode(&token, "abc").expect("decodes");
        assert_eq!(
            cursor,
            Cursor {
                revision: Revision(42),
                after: key
            }
        );
        assert!(matches!(
            decode(&token, "other"),
            Err(ServiceError::InvalidCursor {
                other_request: true,
                ..
            })
        ));
        assert!(matches!(
            decode("zz", "abc"),
            Err(ServiceError::InvalidCursor {
                other_request: false,
                ..
            })
        ));
        assert!(decode("", "abc").is_err());
    }

    #[test]
    fn position_cursors_round_trip_and_differ_from_key_cursors() {
        let token = encode_position(Revision(7), "fp", "12");
        let cursor = decode_position(&token, "fp").expect("decodes");
        assert_eq!(cursor.revision, Revision(7));
        assert_eq!(cursor.after, "12");
        assert!(decode_position(&token, "other").is_err());
        assert!(decode(&token, "fp").is_err());
        let key = crate::model::parse_relationship("doc:1#viewer@user:tom")
            .expect("valid")
            .key();
        assert!(decode_position(&encode(Revision(1), "fp", &key), "fp").is_err());
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }

    #[test]
    fn fingerprints_tell_rpcs_and_filters_apart() {
        let docs = RelationshipFilter {
            resource_type: Some("doc".into()),
            ..RelationshipFilter::default()
        };
        let read = filter_fingerprint(Purpose::ReadRelationships, &docs);
        assert_eq!(
            read,
            filter_fingerprint(Purpose::ReadRelationships, &docs.clone())
        );
        assert_ne!(
            read,
            filter_fingerprint(Purpose::ExportRelationships, &docs)
        );
        assert_ne!(
            read,
            filter_fingerprint(Purpose::ReadRelationships, &RelationshipFilter::default())
        );
    }
}
