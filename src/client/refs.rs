//! Command-line text → API messages: `type:id` objects, `type:id#relation`
//! subjects, `name:{json}` caveats, RFC 3339 expirations, JSON contexts and
//! zed's filter shorthand. Each parser answers a short lowercase reason,
//! which clap prints beside the argument's name.

use std::time::SystemTime;

use crate::api::proto::v1;
use crate::model::parse_rfc3339;

/// A `type:id` argument.
#[derive(Debug, Clone)]
pub struct ObjectArg(pub v1::ObjectReference);

/// A `type:id[#relation]` argument.
#[derive(Debug, Clone)]
pub struct SubjectArg(pub v1::SubjectReference);

/// A `name[:{json}]` caveat argument.
#[derive(Debug, Clone)]
pub struct CaveatArg(pub v1::ContextualizedCaveat);

/// The resource part of a relationship filter: `type`, `type:id` or
/// `type:prefix%`.
#[derive(Debug, Clone)]
pub struct RelationshipFilterArg(pub v1::RelationshipFilter);

/// A subject filter: `type`, `type:id` or `type:id#relation`.
#[derive(Debug, Clone)]
pub struct SubjectFilterArg(pub v1::SubjectFilter);

/// A `type[#relation]` subject type.
#[derive(Debug, Clone)]
pub struct SubjectTypeArg {
    pub object_type: String,
    pub relation: String,
}

/// `type:id`.
pub fn object(text: &str) -> Result<ObjectArg, String> {
    split_object(text)
        .map(|(object_type, object_id)| {
            ObjectArg(v1::ObjectReference {
                object_type: object_type.to_string(),
                object_id: object_id.to_string(),
            })
        })
        .ok_or_else(|| "expected `type:id`".to_string())
}

/// `type:id` or `type:id#relation`.
pub fn subject(text: &str) -> Result<SubjectArg, String> {
    let (object_text, relation) = text.split_once('#').unwrap_or((text, ""));
    let object =
        object(object_text).map_err(|_| "expected `type:id` or `type:id#relation`".to_string())?;
    if text.contains('#') && relation.is_empty() {
        return Err("the relation after `#` is empty".to_string());
    }
    Ok(SubjectArg(v1::SubjectReference {
        object: Some(object.0),
        optional_relation: relation.to_string(),
    }))
}

/// `name` or `name:{json object}`, as zed's `--caveat`.
pub fn caveat(text: &str) -> Result<CaveatArg, String> {
    let (name, context) = match text.split_once(':') {
        Some((name, json)) => (name, Some(context(json)?)),
        None => (text, None),
    };
    if name.is_empty() {
        return Err("expected `name` or `name:{\"key\":value}`".to_string());
    }
    Ok(CaveatArg(v1::ContextualizedCaveat {
        caveat_name: name.to_string(),
        context,
    }))
}

/// A JSON object, as a `google.protobuf.Struct`.
pub fn context(text: &str) -> Result<prost_types::Struct, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    Ok(crate::api::convert::json_to_struct(object))
}

/// An RFC 3339 time, e.g. `2030-01-01T00:00:00Z`.
pub fn expiration(text: &str) -> Result<prost_types::Timestamp, String> {
    parse_rfc3339(text)
        .map(timestamp)
        .ok_or_else(|| "expected an RFC 3339 time such as 2030-01-01T00:00:00Z".to_string())
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// `type`, `type:id` or `type:prefix%` (zed's prefix syntax).
pub fn resource_filter(text: &str) -> Result<RelationshipFilterArg, String> {
    let mut filter = v1::RelationshipFilter::default();
    match text.split_once(':') {
        None if !text.is_empty() => filter.resource_type = text.to_string(),
        Some((object_type, id)) if !object_type.is_empty() && !id.is_empty() => {
            filter.resource_type = object_type.to_string();
            match id.strip_suffix('%') {
                Some(prefix) => filter.optional_resource_id_prefix = prefix.to_string(),
                None => filter.optional_resource_id = id.to_string(),
            }
        }
        _ => return Err("expected `type`, `type:id` or `type:prefix%`".to_string()),
    }
    Ok(RelationshipFilterArg(filter))
}

/// `type` (any subject of the type), `type:id` (that object itself) or
/// `type:id#relation`.
pub fn subject_filter(text: &str) -> Result<SubjectFilterArg, String> {
    if !text.contains(':') {
        if text.is_empty() || text.contains('#') {
            return Err("expected `type`, `type:id` or `type:id#relation`".to_string());
        }
        return Ok(SubjectFilterArg(v1::SubjectFilter {
            subject_type: text.to_string(),
            ..Default::default()
        }));
    }
    let subject = subject(text)
        .map_err(|_| "expected `type`, `type:id` or `type:id#relation`".to_string())?
        .0;
    let object = subject.object.unwrap_or_default();
    // An empty relation filter matches only the object itself, as zed's.
    Ok(SubjectFilterArg(v1::SubjectFilter {
        subject_type: object.object_type,
        optional_subject_id: object.object_id,
        optional_relation: Some(v1::subject_filter::RelationFilter {
            relation: subject.optional_relation,
        }),
    }))
}

/// `type` or `type#relation`.
pub fn subject_type(text: &str) -> Result<SubjectTypeArg, String> {
    let (object_type, relation) = text.split_once('#').unwrap_or((text, ""));
    if object_type.is_empty()
        || object_type.contains(':')
        || (text.contains('#') && relation.is_empty())
    {
        return Err("expected `type` or `type#relation`".to_string());
    }
    Ok(SubjectTypeArg {
        object_type: object_type.to_string(),
        relation: relation.to_string(),
    })
}

fn split_object(text: &str) -> Option<(&str, &str)> {
    let (object_type, object_id) = text.split_once(':')?;
    (!object_type.is_empty() && !object_id.is_empty()).then_some((object_type, object_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_need_a_type_and_an_id() {
        let parsed = object("document:1").expect("ok").0;
        assert_eq!(
            (parsed.object_type.as_str(), parsed.object_id.as_str()),
            ("document", "1")
        );
        for bad in ["document", "document:", ":1", ""] {
            assert!(object(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subjects_take_an_optional_relation() {
        let plain = subject("user:alice").expect("ok").0;
        assert_eq!(plain.optional_relation, "");
        let set = subject("group:eng#member").expect("ok").0;
        assert_eq!(set.optional_relation, "member");
        assert_eq!(set.object.expect("object").object_id, "eng");
        assert!(subject("group:eng#").is_err());
        assert!(subject("group").is_err());
    }

    #[test]
    fn caveats_are_a_name_and_an_optional_json_object() {
        let bare = caveat("weekday").expect("ok").0;
        assert_eq!((bare.caveat_name.as_str(), bare.context), ("weekday", None));
        let with = caveat(r#"ip:{"allowed":"10.0.0.0/8","n":1}"#)
            .expect("ok")
            .0;
        let fields = with.context.expect("context").fields;
        assert_eq!(fields.len(), 2);
        assert!(caveat("ip:[1]").is_err());
        assert!(caveat(":{}").is_err());
        assert!(caveat("ip:{").is_err());
    }

    #[test]
    fn expirations_are_rfc3339() {
        assert_eq!(
            expiration("2030-01-01T00:00:00Z").expect("ok").seconds,
            1_893_456_000
        );
        assert!(expiration("tomorrow").is_err());
    }

    #[test]
    fn resource_filters_take_an_id_or_a_prefix() {
        let by_type = resource_filter("document").expect("ok").0;
        assert_eq!(by_type.resource_type, "document");
        assert_eq!(by_type.optional_resource_id, "");
        let by_id = resource_filter("document:1").expect("ok").0;
        assert_eq!(by_id.optional_resource_id, "1");
        let by_prefix = resource_filter("document:fin-%").expect("ok").0;
        assert_eq!(by_prefix.optional_resource_id_prefix, "fin-");
        assert!(resource_filter("document:").is_err());
        assert!(resource_filter("").is_err());
    }

    #[test]
    fn subject_filters_match_zeds() {
        let by_type = subject_filter("user").expect("ok").0;
        assert_eq!(by_type.subject_type, "user");
        assert!(by_type.optional_relation.is_none());
        let by_object = subject_filter("user:alice").expect("ok").0;
        assert_eq!(by_object.optional_subject_id, "alice");
        assert_eq!(
            by_object
                .optional_relation
                .expect("relation filter")
                .relation,
            ""
        );
        let by_set = subject_filter("group:eng#member").expect("ok").0;
        assert_eq!(
            by_set.optional_relation.expect("relation filter").relation,
            "member"
        );
        assert!(subject_filter("user#x").is_err());
    }

    #[test]
    fn subject_types_take_an_optional_relation() {
        let set = subject_type("group#member").expect("ok");
        assert_eq!(
            (set.object_type.as_str(), set.relation.as_str()),
            ("group", "member")
        );
        assert!(subject_type("user:alice").is_err());
        assert!(subject_type("group#").is_err());
    }
}
