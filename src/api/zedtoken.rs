//! ZedTokens in SpiceDB's encoding, so tokens our clients already hold keep
//! their meaning: standard base64 (padded) of the protobuf `DecodedZedToken`,
//! whose `v1` carries the revision as a string (ours: the decimal
//! `Revision`), the first 8 characters of the datastore's unique id, and the
//! schema hash. The legacy `deprecated_v1_zookie` (a bare uint64) is still
//! read. Depends on `model` and `service::ServiceError` only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;

use super::proto::v1::ZedToken;
use crate::model::Revision;
use crate::service::ServiceError;

/// How much of the datastore's unique id a token carries.
pub const UNIQUE_ID_PREFIX_LEN: usize = 8;

/// SpiceDB's `impl.v1.DecodedZedToken` (field numbers are the wire format).
#[derive(Clone, PartialEq, prost::Message)]
struct DecodedZedToken {
    #[prost(oneof = "Version", tags = "2, 3")]
    version: Option<Version>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Version {
    #[prost(message, tag = "2")]
    DeprecatedV1Zookie(V1Zookie),
    #[prost(message, tag = "3")]
    V1(V1ZedToken),
}

#[derive(Clone, PartialEq, prost::Message)]
struct V1Zookie {
    #[prost(uint64, tag = "1")]
    revision: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct V1ZedToken {
    #[prost(string, tag = "1")]
    revision: String,
    #[prost(string, tag = "2")]
    datastore_unique_id_prefix: String,
    #[prost(bytes = "vec", tag = "3")]
    schema_hash: Vec<u8>,
}

/// What a token says. `datastore_prefix` is empty for legacy tokens, which
/// are accepted by any datastore; `schema_hash` is empty when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedToken {
    pub revision: Revision,
    pub datastore_prefix: String,
    pub schema_hash: Vec<u8>,
}

impl DecodedToken {
    /// Whether the token was issued by the datastore with `unique_id` (or
    /// is a legacy token without a datastore id, which matches anything).
    pub fn is_from(&self, unique_id: &str) -> bool {
        self.datastore_prefix.is_empty() || self.datastore_prefix == unique_id_prefix(unique_id)
    }
}

/// The token for `revision` on the datastore with `unique_id`, carrying
/// `schema_hash` (empty when the caller does not know it).
pub fn encode(revision: Revision, unique_id: &str, schema_hash: &[u8]) -> ZedToken {
    let decoded = DecodedZedToken {
        version: Some(Version::V1(V1ZedToken {
            revision: revision.to_string(),
            datastore_unique_id_prefix: unique_id_prefix(unique_id).to_string(),
            schema_hash: schema_hash.to_vec(),
        })),
    };
    ZedToken {
        token: STANDARD.encode(decoded.encode_to_vec()),
    }
}

/// Reads a token; anything that is not one of ours (or SpiceDB's legacy
/// form) is `InvalidZedToken`.
pub fn decode(token: &ZedToken) -> Result<DecodedToken, ServiceError> {
    decode_str(&token.token)
}

/// `decode`, returning (revision, datastore id prefix, schema hash).
pub fn decode_parts(token: &ZedToken) -> Result<(Revision, String, Vec<u8>), ServiceError> {
    let d = decode(token)?;
    Ok((d.revision, d.datastore_prefix, d.schema_hash))
}

fn decode_str(token: &str) -> Result<DecodedToken, ServiceError> {
    let invalid = |message: &str| ServiceError::InvalidZedToken {
        message: message.to_string(),
    };
    let bytes = STANDARD
        .decode(token)
        .map_err(|_| invalid("the token is not base64"))?;
    let decoded = DecodedZedToken::decode(bytes.as_slice())
        .map_err(|_| invalid("the token does not decode"))?;
    match decoded.version {
        Some(Version::DeprecatedV1Zookie(zookie)) => Ok(DecodedToken {
            revision: Revision(u128::from(zookie.revision)),
            datastore_prefix: String::new(),
            schema_hash: Vec::new(),
        }),
        Some(Version::V1(v1)) => {
            // Only plain decimal digits: `u128::from_str` would also take a
            // leading `+`, which we never write.
            if v1.revision.is_empty() || !v1.revision.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("the token's revision is not one of ours"));
            }
            let revision = v1
                .revision
                .parse::<u128>()
                .map_err(|_| invalid("the token's revision is out of range"))?;
            Ok(DecodedToken {
                revision: Revision(revision),
                datastore_prefix: v1.datastore_unique_id_prefix,
                schema_hash: v1.schema_hash,
            })
        }
        None => Err(invalid("the token has no known version")),
    }
}

/// The part of a datastore's unique id a token records. SpiceDB slices 8
/// bytes; ids are ASCII (UUIDs), and cutting on characters keeps a
/// non-ASCII id from splitting inside a character.
pub fn unique_id_prefix(unique_id: &str) -> &str {
    match unique_id.char_indices().nth(UNIQUE_ID_PREFIX_LEN) {
        Some((end, _)) => &unique_id[..end],
        None => unique_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> ZedToken {
        ZedToken { token: s.into() }
    }

    #[test]
    fn round_trips() {
        for (revision, id, hash) in [
            (Revision(0), "", &b""[..]),
            (Revision(42), "someuniqueid", &b"deadbeefcafebabe"[..]),
            (
                Revision(u128::MAX),
                "6349aaf2-4c1b-4c6c-9a6e-000000000000",
                &[0u8, 255, 7][..],
            ),
        ] {
            let decoded = decode(&encode(revision, id, hash)).expect("decodes");
            assert_eq!(decoded.revision, revision);
            assert_eq!(decoded.datastore_prefix, unique_id_prefix(id));
            assert_eq!(decoded.schema_hash, hash);
            assert!(decoded.is_from(id));
        }
    }

    #[test]
    fn encodes_byte_for_byte_like_spicedb() {
        // SpiceDB's own test vector: revision 42 from datastore "someuniqueid".
        assert_eq!(
            encode(Revision(42), "someuniqueid", b"").token,
            "Gg4KAjQyEghzb21ldW5pcQ=="
        );
    }

    #[test]
    fn decodes_spicedb_tokens_including_legacy_zookies() {
        for (text, revision, prefix) in [
            ("CAESAA==", 0, ""),
            ("CAESAggB", 1, ""),
            ("CAESAwiAAg==", 256, ""),
            ("CAIaAwoBMA==", 0, ""),
            ("CAIaAwoBNA==", 4, ""),
            ("Gg4KAjQyEghzb21ldW5pcQ==", 42, "someuniq"),
        ] {
            let decoded = decode(&token(text)).expect(text);
            assert_eq!(decoded.revision, Revision(revision), "{text}");
            assert_eq!(decoded.datastore_prefix, prefix, "{text}");
        }
        let (revision, prefix, hash) =
            decode_parts(&token("Gg4KAjQyEghzb21ldW5pcQ==")).expect("decodes");
        assert_eq!(
            (revision, prefix.as_str(), hash.len()),
            (Revision(42), "someuniq", 0)
        );
    }

    #[test]
    fn datastore_identity_is_the_prefix() {
        let t = decode(&token("Gg4KAjQyEghzb21ldW5pcQ==")).expect("decodes");
        assert!(t.is_from("someuniqueid"));
        assert!(!t.is_from("anotheruniqueid"));
        // Legacy tokens match every datastore.
        assert!(
            decode(&token("CAESAggB"))
                .expect("decodes")
                .is_from("anything")
        );
        assert_eq!(unique_id_prefix("abc"), "abc");
        assert_eq!(unique_id_prefix("ééééééééé"), "éééééééé");
    }

    #[test]
    fn garbage_is_an_invalid_zedtoken() {
        let v1_with = |revision: &str| {
            let decoded = DecodedZedToken {
                version: Some(Version::V1(V1ZedToken {
                    revision: revision.into(),
                    datastore_unique_id_prefix: String::new(),
                    schema_hash: Vec::new(),
                })),
            };
            STANDARD.encode(decoded.encode_to_vec())
        };
        for garbage in [
            String::new(),
            "abc".into(),
            "not base64 at all!".into(),
            // Valid base64 without its padding: SpiceDB's StdEncoding refuses it.
            "Gg4KAjQyEghzb21ldW5pcQ".into(),
            // Valid base64, not a protobuf message.
            STANDARD.encode([0xff, 0xff, 0xff]),
            // A message without a version.
            STANDARD.encode([0x08, 0x01]),
            v1_with(""),
            v1_with("+5"),
            v1_with("-1"),
            v1_with("1.5"),
            // A CockroachDB-style HLC string from SpiceDB.
            v1_with("1693540940373045727.0000000001"),
            v1_with("340282366920938463463374607431768211456"),
        ] {
            let err = decode(&token(&garbage)).expect_err(&garbage);
            assert!(
                matches!(err, ServiceError::InvalidZedToken { .. }),
                "{garbage}: {err:?}"
            );
        }
    }
}
