//! The canonical protobuf JSON mapping of the API's messages, as
//! grpc-gateway applies it: lowerCamelCase names, 64-bit integers as
//! strings, enums by name, the well-known types (Struct, Timestamp,
//! Duration) in their JSON forms; unknown request fields ignored, every
//! response field emitted (unset messages as `null`). Works on encoded
//! messages and the API's descriptor set, so the generated prost types stay
//! as they are and no second set of serde types exists.

use prost::Message as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, Kind, MapKey, MessageDescriptor, ReflectMessage,
    SerializeOptions, Value,
};

pub use crate::api::proto::descriptor_pool as pool;

/// Why a request body is not a message of the expected type; the text
/// names the problem (syntax, position, field) for the 400 answer.
#[derive(Debug, thiserror::Error)]
#[error("invalid request body: {0}")]
pub struct BodyError(String);

/// The messages in a request body: a sequence of JSON objects (one for a
/// unary or server-streaming call; any number, newline-delimited, for a
/// client stream), each encoded as `desc`. An empty body is no message.
pub fn decode_messages(body: &[u8], desc: &MessageDescriptor) -> Result<Vec<Vec<u8>>, BodyError> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .map(|value| {
            let value = value.map_err(|e| BodyError(e.to_string()))?;
            encode_json(value, desc)
        })
        .collect()
}

/// The first message of a body, or the empty message when the body is empty
/// (grpc-gateway reads one value and treats end of input as an empty
/// request; anything after the first value is ignored).
pub fn decode_message(body: &[u8], desc: &MessageDescriptor) -> Result<Vec<u8>, BodyError> {
    let first = serde_json::Deserializer::from_slice(body)
        .into_iter::<serde_json::Value>()
        .next();
    match first {
        None => Ok(Vec::new()),
        Some(value) => encode_json(value.map_err(|e| BodyError(e.to_string()))?, desc),
    }
}

fn encode_json(value: serde_json::Value, desc: &MessageDescriptor) -> Result<Vec<u8>, BodyError> {
    // grpc-gateway's unmarshaler discards unknown fields.
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message = DynamicMessage::deserialize_with_options(desc.clone(), value, &options)
        .map_err(|e| BodyError(e.to_string()))?;
    Ok(message.encode_to_vec())
}

/// An encoded message of type `desc` in the canonical JSON mapping with
/// every field present (protojson's `EmitUnpopulated`, grpc-gateway's
/// default).
pub fn to_json(
    encoded: &[u8],
    desc: &MessageDescriptor,
) -> Result<serde_json::Value, tonic::Status> {
    // The bytes come from a prost message of the same descriptor set, so a
    // failure here is a build mismatch: logged, and answered as INTERNAL.
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, message = desc.full_name(), "cannot map a response to JSON");
        tonic::Status::internal("cannot map the response to JSON")
    };
    let message = DynamicMessage::decode(desc.clone(), encoded).map_err(|e| failed(&e))?;
    let options = SerializeOptions::new().skip_default_fields(false);
    let mut json = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| failed(&e))?;
    emit_unset_messages(&message, &mut json);
    Ok(json)
}

/// Adds `null` for every unset singular message field outside a oneof,
/// recursively, as protojson's `EmitUnpopulated` does; prost-reflect leaves
/// fields with presence out.
fn emit_unset_messages(message: &DynamicMessage, json: &mut serde_json::Value) {
    let desc = message.descriptor();
    if is_well_known(&desc) {
        return;
    }
    let Some(object) = json.as_object_mut() else {
        return;
    };
    for field in desc.fields() {
        let Kind::Message(field_type) = field.kind() else {
            continue;
        };
        if field.containing_oneof().is_some() && !message.has_field(&field) {
            continue;
        }
        let name = field.json_name();
        if !message.has_field(&field) {
            if !field.is_list() && !field.is_map() {
                object.insert(name.to_string(), serde_json::Value::Null);
            }
            continue;
        }
        let Some(nested) = object.get_mut(name) else {
            continue;
        };
        match &*message.get_field(&field) {
            Value::Message(inner) => emit_unset_messages(inner, nested),
            Value::List(items) => {
                if let Some(array) = nested.as_array_mut() {
                    for (item, json) in items.iter().zip(array.iter_mut()) {
                        if let Value::Message(inner) = item {
                            emit_unset_messages(inner, json);
                        }
                    }
                }
            }
            Value::Map(entries)
                if field_type
                    .map_entry_value_field()
                    .kind()
                    .as_message()
                    .is_some() =>
            {
                if let Some(map) = nested.as_object_mut() {
                    for (key, value) in entries {
                        if let (Value::Message(inner), Some(json)) =
                            (value, map.get_mut(&map_key_text(key)))
                        {
                            emit_unset_messages(inner, json);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// `google.protobuf.*` messages have JSON forms of their own.
fn is_well_known(desc: &MessageDescriptor) -> bool {
    desc.package_name() == "google.protobuf"
}

/// A map key as the JSON mapping writes it.
fn map_key_text(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::proto::v1;

    fn desc(name: &str) -> MessageDescriptor {
        pool().get_message_by_name(name).expect("known message")
    }

    #[test]
    fn requests_read_camel_case_names_enums_and_structs() {
        let body = br#"{"consistency": {"fullyConsistent": true},
            "resource": {"objectType": "doc", "objectId": "1"}, "permission": "view",
            "subject": {"object": {"objectType": "user", "objectId": "tom"}},
            "context": {"ip": "10.0.0.1", "n": 3}, "someFutureField": 1}"#;
        let encoded =
            decode_message(body, &desc("authzed.api.v1.CheckPermissionRequest")).expect("decodes");
        let request = v1::CheckPermissionRequest::decode(&encoded[..]).expect("prost decodes");
        assert_eq!(request.permission, "view");
        assert_eq!(request.resource.expect("resource").object_id, "1");
        assert!(request.context.expect("context").fields.contains_key("ip"));
    }

    #[test]
    fn requests_also_read_proto_names_enum_numbers_and_quoted_integers() {
        let body = br#"{"updates": [{"operation": 2, "relationship": {
            "resource": {"object_type": "doc", "object_id": "1"}, "relation": "viewer",
            "subject": {"object": {"object_type": "user", "object_id": "tom"}}}}],
            "optional_preconditions": []}"#;
        let encoded = decode_message(body, &desc("authzed.api.v1.WriteRelationshipsRequest"))
            .expect("decodes");
        let request = v1::WriteRelationshipsRequest::decode(&encoded[..]).expect("prost decodes");
        assert_eq!(request.updates[0].operation, 2);
        let body = br#"{"optionalLimit": "5", "relationshipFilter": {"resourceType": "doc"}}"#;
        let encoded = decode_message(body, &desc("authzed.api.v1.ReadRelationshipsRequest"))
            .expect("decodes");
        let request = v1::ReadRelationshipsRequest::decode(&encoded[..]).expect("prost decodes");
        assert_eq!(request.optional_limit, 5);
    }

    #[test]
    fn empty_body_is_the_empty_request_and_bad_json_names_the_problem() {
        let d = desc("authzed.api.v1.ReadSchemaRequest");
        assert_eq!(decode_message(b"", &d).expect("empty"), Vec::<u8>::new());
        assert_eq!(
            decode_message(b"  \n", &d).expect("blank"),
            Vec::<u8>::new()
        );
        let err = decode_message(b"{\"consistency\":", &d).expect_err("truncated");
        assert!(err.to_string().contains("line 1"), "{err}");
        let d = desc("authzed.api.v1.CheckPermissionRequest");
        let err = decode_message(br#"{"permission": 7}"#, &d).expect_err("wrong type");
        assert!(
            err.to_string().starts_with("invalid request body: "),
            "{err}"
        );
    }

    #[test]
    fn responses_stringify_int64_name_enums_and_emit_every_field() {
        let response = v1::CheckPermissionResponse {
            checked_at: Some(v1::ZedToken {
                token: "abc".into(),
            }),
            permissionship: v1::check_permission_response::Permissionship::HasPermission as i32,
            ..Default::default()
        };
        let json = to_json(
            &response.encode_to_vec(),
            &desc("authzed.api.v1.CheckPermissionResponse"),
        )
        .expect("maps");
        assert_eq!(json["checkedAt"]["token"], "abc");
        assert_eq!(json["permissionship"], "PERMISSIONSHIP_HAS_PERMISSION");
        assert_eq!(json["partialCaveatInfo"], serde_json::Value::Null);
        assert!(json.as_object().expect("object").contains_key("debugTrace"));

        let deleted = v1::DeleteRelationshipsResponse {
            relationships_deleted_count: 12,
            ..Default::default()
        };
        let json = to_json(
            &deleted.encode_to_vec(),
            &desc("authzed.api.v1.DeleteRelationshipsResponse"),
        )
        .expect("maps");
        assert_eq!(json["relationshipsDeletedCount"], "12");
        assert_eq!(json["deletionProgress"], "DELETION_PROGRESS_UNSPECIFIED");
    }
}
