//! Owns the SQL the PostgreSQL datastore builds at run time: relationship
//! filters and key cursors as `WHERE` clauses with numbered parameters, the
//! visibility rule of a revision, and decoding relationship rows. Fixed
//! statements live beside the code that runs them; everything that depends
//! on a request's shape is assembled here, so the rules exist once.

use std::time::SystemTime;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::datastore::{DatastoreError, DatastoreResult, RelationshipCounter};
use crate::model::{
    ContextualizedCaveat, ObjectRef, Relationship, RelationshipFilter, RelationshipKey,
    SubjectFilter, SubjectRef,
};

/// `deleted_revision` of a living version.
pub const ALIVE: i64 = i64::MAX;

/// The six columns of a relationship's identity, in key order.
pub const KEY_COLUMNS: &str =
    "namespace, object_id, relation, userset_namespace, userset_object_id, userset_relation";

/// The columns `relationship` decodes, in its order.
pub const RELATIONSHIP_COLUMNS: &str = "namespace, object_id, relation, userset_namespace, \
     userset_object_id, userset_relation, caveat_name, caveat_context, expiration";

/// A parameter of a statement built at run time.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// A statement under construction: its text and its parameters, numbered
/// as they are pushed.
#[derive(Default)]
pub struct Statement {
    pub sql: String,
    params: Vec<Param>,
}

impl Statement {
    pub fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_string(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter and returns its placeholder (`$n`).
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    /// Adds an already boxed parameter and returns its placeholder.
    pub fn bind_boxed(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    pub fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    /// The parameters as tokio-postgres takes them.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// ` AND` the versions visible at `revision` and not expired at `now`.
    pub fn visible_at(&mut self, revision: i64, now: SystemTime) {
        let r = self.bind(revision);
        let now = self.bind(now);
        self.push(&format!(
            " AND created_revision <= {r} AND deleted_revision > {r} \
              AND (expiration IS NULL OR expiration > {now})"
        ));
    }

    /// ` AND` the living versions (head) not expired at `now`.
    pub fn alive_at(&mut self, now: SystemTime) {
        let now = self.bind(now);
        self.push(&format!(
            " AND deleted_revision = {ALIVE} AND (expiration IS NULL OR expiration > {now})"
        ));
    }

    /// ` AND` each field the filter sets.
    pub fn filter(&mut self, filter: &RelationshipFilter) {
        self.equal("namespace", filter.resource_type.as_deref());
        self.equal("object_id", filter.resource_id.as_deref());
        if let Some(prefix) = &filter.resource_id_prefix {
            let pattern = self.bind(format!("{}%", escape_like(prefix)));
            self.push(&format!(" AND object_id LIKE {pattern}"));
        }
        self.equal("relation", filter.relation.as_deref());
        if let Some(subject) = &filter.subject {
            self.equal("userset_namespace", Some(subject.subject_type.as_str()));
            self.equal("userset_object_id", subject.subject_id.as_deref());
            self.equal("userset_relation", subject.relation.as_deref());
        }
    }

    /// ` AND column = $n` when `value` is set.
    pub fn equal(&mut self, column: &str, value: Option<&str>) {
        if let Some(value) = value {
            let p = self.bind(value.to_string());
            self.push(&format!(" AND {column} = {p}"));
        }
    }

    /// ` AND` the rows strictly after `key` in key order.
    pub fn after(&mut self, key: &RelationshipKey) {
        let placeholders: Vec<String> = key_strings(key)
            .into_iter()
            .map(|s| self.bind(s.to_string()))
            .collect();
        self.push(&format!(
            " AND ({KEY_COLUMNS}) > ({})",
            placeholders.join(", ")
        ));
    }

    /// ` ORDER BY` key, then ` LIMIT` when one is given.
    pub fn order_and_limit(&mut self, limit: Option<usize>) {
        self.push(&format!(" ORDER BY {KEY_COLUMNS}"));
        if let Some(limit) = limit {
            let n = self.bind(i64::try_from(limit).unwrap_or(i64::MAX));
            self.push(&format!(" LIMIT {n}"));
        }
    }
}

/// The six identity strings of a key, in column order.
pub fn key_strings(key: &RelationshipKey) -> [&str; 6] {
    [
        &key.resource.object_type,
        &key.resource.object_id,
        &key.relation,
        &key.subject.object.object_type,
        &key.subject.object.object_id,
        &key.subject.relation,
    ]
}

/// Escapes LIKE's wildcards (`%`, `_`) and its escape character.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Decodes a key from a row whose first six columns are `KEY_COLUMNS`.
/// The columns are NOT NULL text, so decoding cannot fail.
pub fn key(row: &Row) -> RelationshipKey {
    let text = |i: usize| row.get::<_, String>(i);
    RelationshipKey {
        resource: ObjectRef::new(text(0), text(1)),
        relation: text(2),
        subject: SubjectRef {
            object: ObjectRef::new(text(3), text(4)),
            relation: text(5),
        },
    }
}

/// Decodes a row selected with `RELATIONSHIP_COLUMNS` first.
pub fn relationship(row: &Row) -> DatastoreResult<Relationship> {
    let text =
        |i: usize| -> DatastoreResult<String> { row.try_get::<_, String>(i).map_err(decode) };
    let caveat_name: Option<String> = row.try_get(6).map_err(decode)?;
    let caveat = match caveat_name {
        Some(name) => {
            let context: Option<serde_json::Value> = row.try_get(7).map_err(decode)?;
            let context = match context {
                Some(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            };
            Some(ContextualizedCaveat { name, context })
        }
        None => None,
    };
    Ok(Relationship {
        resource: ObjectRef::new(text(0)?, text(1)?),
        relation: text(2)?,
        subject: SubjectRef {
            object: ObjectRef::new(text(3)?, text(4)?),
            relation: text(5)?,
        },
        caveat,
        expires_at: row.try_get(8).map_err(decode)?,
    })
}

/// Decodes a whole result set.
pub fn relationships(rows: &[Row]) -> DatastoreResult<Vec<Relationship>> {
    rows.iter().map(relationship).collect()
}

fn decode(e: tokio_postgres::Error) -> DatastoreError {
    DatastoreError::Internal(format!("decoding a relationship row: {e}"))
}

/// The caveat context as stored: an object, or NULL without a caveat.
pub fn caveat_context(rel: &Relationship) -> Option<serde_json::Value> {
    rel.caveat
        .as_ref()
        .map(|c| serde_json::Value::Object(c.context.clone()))
}

/// Registered counters as stored: a JSON list of `{name, filter}`.
pub fn encode_counters(counters: &[RelationshipCounter]) -> serde_json::Value {
    let encode_filter = |f: &RelationshipFilter| {
        serde_json::json!({
            "resource_type": f.resource_type,
            "resource_id": f.resource_id,
            "resource_id_prefix": f.resource_id_prefix,
            "relation": f.relation,
            "subject": f.subject.as_ref().map(|s| serde_json::json!({
                "subject_type": s.subject_type,
                "subject_id": s.subject_id,
                "relation": s.relation,
            })),
        })
    };
    counters
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "filter": encode_filter(&c.filter) }))
        .collect()
}

/// The inverse of `encode_counters`.
pub fn decode_counters(stored: serde_json::Value) -> DatastoreResult<Vec<RelationshipCounter>> {
    let corrupt = || DatastoreError::Internal("a stored counter list is malformed".into());
    let text =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|x| x.as_str()).map(String::from);
    let list = stored.as_array().ok_or_else(corrupt)?;
    list.iter()
        .map(|item| {
            let filter = item.get("filter").ok_or_else(corrupt)?;
            let subject = match filter.get("subject") {
                Some(s) if !s.is_null() => Some(SubjectFilter {
                    subject_type: text(s, "subject_type").ok_or_else(corrupt)?,
                    subject_id: text(s, "subject_id"),
                    relation: text(s, "relation"),
                }),
                _ => None,
            };
            Ok(RelationshipCounter {
                name: text(item, "name").ok_or_else(corrupt)?,
                filter: RelationshipFilter {
                    resource_type: text(filter, "resource_type"),
                    resource_id: text(filter, "resource_id"),
                    resource_id_prefix: text(filter, "resource_id_prefix"),
                    relation: text(filter, "relation"),
                    subject,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip() {
        let counters = vec![RelationshipCounter {
            name: "docs".into(),
            filter: RelationshipFilter {
                resource_type: Some("doc".into()),
                subject: Some(SubjectFilter {
                    subject_type: "user".into(),
                    subject_id: Some("ann".into()),
                    relation: None,
                }),
                ..RelationshipFilter::default()
            },
        }];
        assert_eq!(decode_counters(encode_counters(&counters)), Ok(counters));
    }

    #[test]
    fn filters_bind_each_set_field_in_order() {
        let mut statement = Statement::new("SELECT 1 FROM relation_tuple WHERE TRUE");
        statement.filter(&RelationshipFilter {
            resource_type: Some("doc".into()),
            resource_id_prefix: Some("a_%".into()),
            subject: Some(SubjectFilter {
                subject_type: "user".into(),
                subject_id: None,
                relation: Some("...".into()),
            }),
            ..RelationshipFilter::default()
        });
        assert_eq!(
            statement.sql,
            "SELECT 1 FROM relation_tuple WHERE TRUE AND namespace = $1 AND object_id LIKE $2 \
             AND userset_namespace = $3 AND userset_relation = $4"
        );
        assert_eq!(statement.params().len(), 4);
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"a_b%c\d"), r"a\_b\%c\\d");
    }
}
