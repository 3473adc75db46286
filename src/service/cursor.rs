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
pub fn fingerprint(purpose: Purpose, filter: &RelationshipFilter) -> String {
    let subject = filter.subject.as_ref().map(|s| {
        format!(
            "{}:{}#{}",
            s.subject_type,
            s.subject_id.as_deref().unwrap_or(""),
            s.relation.as_deref().unwrap_or("")
        )
    });
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        purpose,
        filter.resource_type,
        filter.resource_id,
        filter.resource_id_prefix,
        filter.relation,
        subject
    );
    let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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
    let json = serde_json::to_vec(&payload).unwrap_or_default();
    json.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a cursor, requiring it to belong to a request with `fingerprint`.
pub fn decode(token: &str, fingerprint: &str) -> Result<Cursor, ServiceError> {
    let malformed = || ServiceError::InvalidCursor {
        message: "the cursor is malformed".into(),
        other_request: false,
    };
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(malformed());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| malformed())?;
    let payload: Payload = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    if payload.f != fingerprint {
        return Err(ServiceError::InvalidCursor {
            message: "the cursor was issued for a different request".into(),
            other_request: true,
        });
    }
    let revision = payload
        .r
        .parse::<u128>()
        .map(Revision)
        .map_err(|_| malformed())?;
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
    fn fingerprints_tell_rpcs_and_filters_apart() {
        let docs = RelationshipFilter {
            resource_type: Some("doc".into()),
            ..RelationshipFilter::default()
        };
        let read = fingerprint(Purpose::ReadRelationships, &docs);
        assert_eq!(read, fingerprint(Purpose::ReadRelationships, &docs.clone()));
        assert_ne!(read, fingerprint(Purpose::ExportRelationships, &docs));
        assert_ne!(
            read,
            fingerprint(Purpose::ReadRelationships, &RelationshipFilter::default())
        );
    }
}
