//! The relationship string syntax of validation files, zed and tests:
//! `type:id#relation@subjecttype:subjectid[#subjectrel][[caveat[:{json}]]][[expiration:RFC3339]]`.

use std::time::{Duration, SystemTime};

use super::{ContextualizedCaveat, ELLIPSIS, ObjectRef, Relationship, SubjectRef, days_from_civil};

/// Why a relationship string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid relationship `{input}`: {reason}")]
pub struct ParseRelationshipError {
    pub input: String,
    pub reason: String,
}

/// Parses one relationship string.
pub fn parse_relationship(input: &str) -> Result<Relationship, ParseRelationshipError> {
    let fail = |reason: &str| ParseRelationshipError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let text = input.trim();
    let (core, mut suffix) = match text.find('[') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let (resource_part, subject_part) = core.split_once('@').ok_or_else(|| fail("missing `@`"))?;
    let (resource, relation) = resource_part
        .split_once('#')
        .ok_or_else(|| fail("missing `#relation` on the resource"))?;
    let resource = parse_object(resource).ok_or_else(|| fail("resource must be `type:id`"))?;
    let (subject_object, subject_relation) = match subject_part.split_once('#') {
        Some((object, rel)) => (object, rel),
        None => (subject_part, ELLIPSIS),
    };
    let subject_object =
        parse_object(subject_object).ok_or_else(|| fail("subject must be `type:id`"))?;
    if relation.is_empty() || subject_relation.is_empty() {
        return Err(fail("empty relation"));
    }

    let mut caveat = None;
    let mut expires_at = None;
    while !suffix.is_empty() {
        let close = matching_bracket(suffix).ok_or_else(|| fail("unclosed `[`"))?;
        let inner = &suffix[1..close];
        suffix = &suffix[close + 1..];
        if let Some(at) = inner.strip_prefix("expiration:") {
            expires_at =
                Some(parse_rfc3339(at).ok_or_else(|| fail("expiration must be an RFC 3339 time"))?);
        } else {
            if expires_at.is_some() {
                return Err(fail("the caveat must come before the expiration"));
            }
            caveat = Some(
                parse_caveat(inner)
                    .ok_or_else(|| fail("caveat must be `[name]` or `[name:{json}]`"))?,
            );
        }
    }
    Ok(Relationship {
        resource,
        relation: relation.to_string(),
        subject: SubjectRef {
            object: subject_object,
            relation: subject_relation.to_string(),
        },
        caveat,
        expires_at,
    })
}

fn parse_object(text: &str) -> Option<ObjectRef> {
    let (object_type, object_id) = text.split_once(':')?;
    (!object_type.is_empty() && !object_id.is_empty())
        .then(|| ObjectRef::new(object_type, object_id))
}

/// Index of the `]` closing the `[` at the start, skipping JSON strings.
fn matching_bracket(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '[' | '{' if !in_string => depth += 1,
            ']' | '}' if !in_string => {
                depth = depth.checked_sub(1)?;
                if depth == 0 && c == ']' {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_caveat(inner: &str) -> Option<ContextualizedCaveat> {
    let (name, context) = match inner.split_once(':') {
        Some((name, json)) => {
            let value: serde_json::Value = serde_json::from_str(json).ok()?;
            (name, value.as_object()?.clone())
        }
        None => (inner, serde_json::Map::new()),
    };
    (!name.is_empty()).then(|| ContextualizedCaveat {
        name: name.to_string(),
        context,
    })
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &fraction[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let r = parse_relationship("doc:1#viewer@user:tom").expect("plain");
        assert_eq!(r.to_string(), "doc:1#viewer@user:tom");
        let r = parse_relationship("doc:1#viewer@group:eng#member").expect("subject set");
        assert_eq!(r.subject.relation, "member");
        let r = parse_relationship("doc:1#viewer@group:eng#...").expect("ellipsis");
        assert!(r.subject.is_object());
        let r = parse_relationship(r#"doc:1#viewer@user:*[only_on:{"day":"mon","tags":["a]"]}][expiration:2030-01-01T00:00:00Z]"#)
            .expect("caveat and expiration");
        let caveat = r.caveat.as_ref().expect("caveat");
        assert_eq!(caveat.name, "only_on");
        assert_eq!(caveat.context["day"], "mon");
        assert_eq!(
            crate::model::format_rfc3339(r.expires_at.expect("expiry")),
            "2030-01-01T00:00:00Z"
        );
        let r = parse_relationship("test/doc:a|b=c+d#viewer@test/user:x_y[cav]")
            .expect("ids with symbols");
        assert_eq!(r.resource.object_id, "a|b=c+d");
        assert!(r.caveat.expect("caveat").context.is_empty());
    }

    #[test]
    fn rejects_malformed_strings() {
        for bad in [
            "doc:1#viewer",
            "doc:1@user:tom",
            "doc#viewer@user:tom",
            "doc:1#viewer@user",
            "doc:1#viewer@user:tom[cav",
            "doc:1#viewer@user:tom[expiration:tomorrow]",
            "doc:1#viewer@user:tom[expiration:2030-01-01T00:00:00Z][cav]",
        ] {
            assert!(parse_relationship(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn rfc3339_offsets_and_fractions() {
        let a = parse_rfc3339("2030-01-01T01:00:00+01:00").expect("offset");
        let b = parse_rfc3339("2030-01-01T00:00:00Z").expect("utc");
        assert_eq!(a, b);
        let c = parse_rfc3339("2030-01-01T00:00:00.5Z").expect("fraction");
        assert_eq!(
            c.duration_since(b).expect("later"),
            Duration::from_millis(500)
        );
        assert!(parse_rfc3339("2030-13-01T00:00:00Z").is_none());
    }
}
