//! The vocabulary every layer shares: objects, subjects, relationships,
//! filters, updates, preconditions and revisions. Plain data, no I/O, no
//! proto types; depends on nothing else in the crate.

mod relationship_string;

use std::fmt;
use std::time::SystemTime;

pub use relationship_string::{ParseRelationshipError, parse_relationship, parse_rfc3339};

/// The relation name that means "the subject object itself" (`user:tom`
/// rather than `group:eng#member`), as stored and as SpiceDB spells it.
pub const ELLIPSIS: &str = "...";

/// `type:id`
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub object_type: String,
    pub object_id: String,
}

impl ObjectRef {
    pub fn new(object_type: impl Into<String>, object_id: impl Into<String>) -> Self {
        Self {
            object_type: object_type.into(),
            object_id: object_id.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.object_type, self.object_id)
    }
}

/// `type:id` or `type:id#relation`. The relation is `ELLIPSIS` for a plain
/// object, so every stored subject has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectRef {
    pub object: ObjectRef,
    pub relation: String,
}

impl SubjectRef {
    /// A plain object subject (`user:tom`).
    pub fn object(object_type: impl Into<String>, object_id: impl Into<String>) -> Self {
        Self {
            object: ObjectRef::new(object_type, object_id),
            relation: ELLIPSIS.to_string(),
        }
    }

    /// A subject set (`group:eng#member`).
    pub fn set(
        object_type: impl Into<String>,
        object_id: impl Into<String>,
        relation: impl Into<String>,
    ) -> Self {
        Self {
            object: ObjectRef::new(object_type, object_id),
            relation: relation.into(),
        }
    }

    pub fn is_object(&self) -> bool {
        self.relation == ELLIPSIS
    }

    pub fn is_wildcard(&self) -> bool {
        self.object.object_id == "*"
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_object() {
            write!(f, "{}", self.object)
        } else {
            write!(f, "{}#{}", self.object, self.relation)
        }
    }
}

/// A caveat attached to a relationship, with the context stored with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContextualizedCaveat {
    pub name: String,
    /// JSON object of parameter values; stored values win over request ones.
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// `resource#relation@subject`, optionally caveated and expiring.
#[derive(Debug, Clone, PartialEq)]
pub struct Relationship {
    pub resource: ObjectRef,
    pub relation: String,
    pub subject: SubjectRef,
    pub caveat: Option<ContextualizedCaveat>,
    pub expires_at: Option<SystemTime>,
}

impl Relationship {
    /// The identity of a relationship: caveat and expiration are attributes,
    /// not part of it (TOUCH replaces them, DELETE ignores them).
    pub fn key(&self) -> RelationshipKey {
        RelationshipKey {
            resource: self.resource.clone(),
            relation: self.relation.clone(),
            subject: self.subject.clone(),
        }
    }

    /// Whether it has expired at `now` (an expired relationship is invisible).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

impl fmt::Display for Relationship {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@{}", self.resource, self.relation, self.subject)?;
        if let Some(caveat) = &self.caveat {
            if caveat.context.is_empty() {
                write!(f, "[{}]", caveat.name)?;
            } else {
                let context = serde_json::Value::Object(caveat.context.clone());
                write!(f, "[{}:{}]", caveat.name, context)?;
            }
        }
        if let Some(at) = self.expires_at {
            write!(f, "[expiration:{}]", format_rfc3339(at))?;
        }
        Ok(())
    }
}

/// The identity of a relationship, ordered resource-first (type, id,
/// relation, then subject), the order reads and cursors use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationshipKey {
    pub resource: ObjectRef,
    pub relation: String,
    pub subject: SubjectRef,
}

impl fmt::Display for RelationshipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}@{}", self.resource, self.relation, self.subject)
    }
}

/// What a write does with one relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOperation {
    /// Insert; fails if the relationship exists.
    Create,
    /// Insert or replace caveat and expiration.
    Touch,
    /// Remove if present; a missing relationship is not an error.
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelationshipUpdate {
    pub operation: UpdateOperation,
    pub relationship: Relationship,
}

/// Selects relationships. Every field is optional but `resource_type`
/// when `subject` is absent; API validation enforces what SpiceDB requires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelationshipFilter {
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub resource_id_prefix: Option<String>,
    pub relation: Option<String>,
    pub subject: Option<SubjectFilter>,
}

/// Selects subjects: a type, optionally an id and a relation. A relation
/// filter of `Some(ELLIPSIS)` means "plain objects only".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubjectFilter {
    pub subject_type: String,
    pub subject_id: Option<String>,
    pub relation: Option<String>,
}

impl RelationshipFilter {
    /// Whether `key` satisfies the filter.
    pub fn matches(&self, key: &RelationshipKey) -> bool {
        let resource = &key.resource;
        self.resource_type
            .as_ref()
            .is_none_or(|t| *t == resource.object_type)
            && self
                .resource_id
                .as_ref()
                .is_none_or(|id| *id == resource.object_id)
            && self
                .resource_id_prefix
                .as_ref()
                .is_none_or(|p| resource.object_id.starts_with(p.as_str()))
            && self.relation.as_ref().is_none_or(|r| *r == key.relation)
            && self
                .subject
                .as_ref()
                .is_none_or(|s| s.matches(&key.subject))
    }
}

impl SubjectFilter {
    pub fn matches(&self, subject: &SubjectRef) -> bool {
        self.subject_type == subject.object.object_type
            && self
                .subject_id
                .as_ref()
                .is_none_or(|id| *id == subject.object.object_id)
            && self
                .relation
                .as_ref()
                .is_none_or(|r| *r == subject.relation)
    }
}

/// A condition on the datastore's state checked inside a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Precondition {
    pub kind: PreconditionKind,
    pub filter: RelationshipFilter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreconditionKind {
    MustMatch,
    MustNotMatch,
}

/// A point in the datastore's history. Totally ordered: a memory or
/// PostgreSQL commit sequence number, or a CockroachDB HLC timestamp packed as
/// `wall_nanos << 32 | logical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(pub u128);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How fresh a read must be (SpiceDB's four consistency modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The quantized ("optimized") revision: shared by nearby requests.
    MinimizeLatency,
    /// At least as fresh as this revision (the fresher of it and the optimized one).
    AtLeastAsFresh(Revision),
    /// Exactly this revision; it must be inside the GC window.
    AtExactSnapshot(Revision),
    /// The newest revision.
    FullyConsistent,
}

/// RFC 3339 in UTC with the precision SpiceDB uses in relationship strings.
pub fn format_rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let nanos = since.subsec_nanos();
    let fraction = if nanos == 0 {
        String::new()
    } else {
        format!(".{:09}", nanos).trim_end_matches('0').to_string()
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{fraction}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_round_trips_dates() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_893_456_000, "2030-01-01T00:00:00Z"),
        ] {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(format_rfc3339(at), text);
            let days = days_from_civil(
                text[0..4].parse().unwrap(),
                text[5..7].parse().unwrap(),
                text[8..10].parse().unwrap(),
            );
            assert_eq!(days * 86_400, secs as i64);
        }
    }

    #[test]
    fn filters_match_keys() {
        let rel = parse_relationship("doc:readme#viewer@group:eng#member").expect("valid");
        let key = rel.key();
        let mut filter = RelationshipFilter {
            resource_type: Some("doc".into()),
            ..Default::default()
        };
        assert!(filter.matches(&key));
        filter.resource_id_prefix = Some("read".into());
        assert!(filter.matches(&key));
        filter.subject = Some(SubjectFilter {
            subject_type: "group".into(),
            subject_id: None,
            relation: Some(ELLIPSIS.into()),
        });
        assert!(!filter.matches(&key));
    }
}
