//! Owns the SQL the SQL datastore builds at run time: relationship
//! filters and key cursors as `WHERE` clauses with numbered parameters, the
//! visibility rule of a revision, decoding relationship rows, and `Rev`,
//! a revision as either engine stores it. Fixed statements live beside the
//! code that runs them; everything that depends on a request's shape is
//! assembled here, so the rules exist once. Engine differences come from
//! `dialect`.

use std::error::Error;
use std::time::SystemTime;

use bytes::{Buf, BufMut, BytesMut};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::dialect::Dialect;

use crate::datastore::{DatastoreError, DatastoreResult, RelationshipCounter};
use crate::model::{
    ContextualizedCaveat, ObjectRef, Relationship, RelationshipFilter, RelationshipKey,
    SubjectFilter, SubjectRef,
};

/// A revision as stored: BIGINT on PostgreSQL (a commit sequence number),
/// DECIMAL(38,0) on CockroachDB (an HLC packed as `wall << 32 | logical`,
/// which no INT8 holds). Binds and decodes as either column type, so every
/// shared statement takes and returns it unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rev(pub u128);

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Rev {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if *ty == Type::NUMERIC {
            encode_numeric(self.0, out);
            return Ok(IsNull::No);
        }
        let value =
            i64::try_from(self.0).map_err(|_| format!("revision {} exceeds BIGINT", self.0))?;
        value.to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INT8 || *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Rev {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        if *ty == Type::NUMERIC {
            return decode_numeric(raw).map(Rev);
        }
        let value = i64::from_sql(ty, raw)?;
        u128::try_from(value)
            .map(Rev)
            .map_err(|_| format!("negative revision {value}").into())
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INT8 || *ty == Type::NUMERIC
    }
}

/// NUMERIC's binary form (PostgreSQL's, which CockroachDB's DECIMAL also
/// speaks): digit count, weight, sign, display scale, then base-10000
/// digits, most significant first, trailing zero digits omitted.
fn encode_numeric(value: u128, out: &mut BytesMut) {
    let mut digits = Vec::new();
    let mut rest = value;
    while rest > 0 {
        digits.push((rest % 10_000) as i16);
        rest /= 10_000;
    }
    digits.reverse();
    let weight = digits.len().saturating_sub(1) as i16;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    out.put_i16(digits.len() as i16);
    out.put_i16(weight);
    out.put_u16(0x0000);
    out.put_u16(0);
    for digit in digits {
        out.put_i16(digit);
    }
}

/// The inverse of `encode_numeric`, for non-negative integers only; a
/// fraction, a sign, NaN or a value past u128 is an error.
fn decode_numeric(mut raw: &[u8]) -> Result<u128, BoxError> {
    if raw.len() < 8 {
        return Err("truncated NUMERIC".into());
    }
    let count = raw.get_i16();
    let weight = raw.get_i16();
    let sign = raw.get_u16();
    let _scale = raw.get_u16();
    if sign != 0x0000 {
        return Err("a revision must be a non-negative number".into());
    }
    let count = usize::try_from(count).map_err(|_| "negative NUMERIC digit count")?;
    if raw.len() != 2 * count {
        return Err("truncated NUMERIC digits".into());
    }
    let mut value: u128 = 0;
    for position in 0..count {
        let digit = raw.get_i16();
        if !(0..10_000).contains(&digit) {
            return Err("invalid NUMERIC digit".into());
        }
        let power = i32::from(weight) - position as i32;
        if power < 0 {
            if digit != 0 {
                return Err("a revision must be a whole number".into());
            }
            continue;
        }
        let scaled = 10_000u128
            .checked_pow(power as u32)
            .and_then(|p| p.checked_mul(digit as u128))
            .ok_or("NUMERIC revision out of range")?;
        value = value
            .checked_add(scaled)
            .ok_or("NUMERIC revision out of range")?;
    }
    Ok(value)
}

/// The six columns of a relationship's identity, in key order.
pub const KEY_COLUMNS: &str =
    "namespace, object_id, relation, userset_namespace, userset_object_id, userset_relation";

/// The columns `relationship` decodes, in its order.
pub const RELATIONSHIP_COLUMNS: &str = "namespace, object_id, relation, userset_namespace, \
     userset_object_id, userset_relation, caveat_name, caveat_context, expiration";

/// A parameter of a statement built at run time.
pub type Param = Box<dyn ToSql + Sync + Send>;

/// A statement under construction: its text and its parameters, numbered
/// as they are pushed, in one engine's dialect.
#[derive(Default)]
pub struct Statement {
    pub sql: String,
    params: Vec<Param>,
    dialect: Dialect,
}

impl Statement {
    /// A PostgreSQL statement.
    #[cfg(test)]
    pub fn new(sql: &str) -> Self {
        Self::in_dialect(Dialect::Postgres, sql)
    }

    pub fn in_dialect(dialect: Dialect, sql: &str) -> Self {
        Self {
            sql: sql.to_string(),
            params: Vec::new(),
            dialect,
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
    pub fn visible_at(&mut self, revision: Rev, now: SystemTime) {
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
        let alive = self.dialect.alive();
        self.push(&format!(
            " AND deleted_revision = {alive} AND (expiration IS NULL OR expiration > {now})"
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

    fn numeric(value: u128) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_numeric(value, &mut out);
        out.to_vec()
    }

    #[test]
    fn revisions_encode_as_postgres_numeric() {
        // 0: no digits.
        assert_eq!(numeric(0), [0, 0, 0, 0, 0, 0, 0, 0]);
        // 12345678 = 1234 * 10000 + 5678: two digits, weight 1.
        assert_eq!(
            numeric(12_345_678),
            [0, 2, 0, 1, 0, 0, 0, 0, 0x04, 0xd2, 0x16, 0x2e]
        );
        // 10000^2: trailing zero digits dropped, weight kept.
        assert_eq!(numeric(100_000_000), [0, 1, 0, 2, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn revisions_round_trip_through_numeric_and_int8() {
        let packed_hlc = (1_700_000_000_123_456_789u128 << 32) | 4_294_967_295;
        for value in [
            0,
            1,
            9_999,
            10_000,
            12_345_678,
            i64::MAX as u128,
            packed_hlc,
            10u128.pow(38) - 1,
        ] {
            let mut out = BytesMut::new();
            Rev(value)
                .to_sql(&Type::NUMERIC, &mut out)
                .expect("encodes");
            assert_eq!(
                Rev::from_sql(&Type::NUMERIC, &out).expect("decodes"),
                Rev(value)
            );
        }
        let mut out = BytesMut::new();
        Rev(42).to_sql(&Type::INT8, &mut out).expect("fits INT8");
        assert_eq!(Rev::from_sql(&Type::INT8, &out).expect("decodes"), Rev(42));
        assert!(
            Rev(packed_hlc)
                .to_sql(&Type::INT8, &mut BytesMut::new())
                .is_err()
        );
    }

    #[test]
    fn numeric_revisions_reject_fractions_signs_and_garbage() {
        // 1.5: digits [1, 5000], weight 0, scale 1.
        let fraction = [0, 2, 0, 0, 0, 0, 0, 1, 0, 1, 0x13, 0x88];
        assert!(decode_numeric(&fraction).is_err());
        // 1.0 with a zero fractional digit is whole.
        assert_eq!(
            decode_numeric(&[0, 2, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0]).ok(),
            Some(1)
        );
        let negative = [0, 1, 0, 0, 0x40, 0, 0, 0, 0, 1];
        assert!(decode_numeric(&negative).is_err());
        let nan = [0, 0, 0, 0, 0xc0, 0, 0, 0];
        assert!(decode_numeric(&nan).is_err());
        assert!(decode_numeric(&[0, 1]).is_err(), "truncated header");
        assert!(
            decode_numeric(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err(),
            "truncated digits"
        );
        let huge = [0, 1, 0, 40, 0, 0, 0, 0, 0, 1];
        assert!(decode_numeric(&huge).is_err(), "past u128");
    }

    #[test]
    fn cockroach_statements_use_its_sentinel() {
        let mut statement = Statement::in_dialect(
            Dialect::Cockroach,
            "SELECT 1 FROM relation_tuple WHERE TRUE",
        );
        statement.alive_at(SystemTime::UNIX_EPOCH);
        assert_eq!(
            statement.sql,
            format!(
                "SELECT 1 FROM relation_tuple WHERE TRUE AND deleted_revision = {} \
                 AND (expiration IS NULL OR expiration > $1)",
                "9".repeat(38)
            )
        );
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"a_b%c\d"), r"a\_b\%c\\d");
    }
}
