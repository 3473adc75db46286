//! SpiceDB's request validation, before any schema or datastore is read:
//! the protovalidate annotations of `authzed.api.v1` (required fields, name
//! and id shapes, sizes, enum values), authzed-go's handwritten rules (no `*`
//! resource, no `*` subject with a relation), and the limits SpiceDB's
//! handlers check first (counts, `optional_limit`, context and metadata
//! sizes, filter shape). One function per request; each returns the first
//! violation, naming the proto field path (`updates[3].relationship.relation`).
//!
//! Order follows SpiceDB's: every annotation rule of the request, then the
//! handwritten rules, then the handler's checks. The regexes are matched by
//! hand (`Shape`); they are small and fixed, and Go's `$` (end of text, no
//! newline exemption) is what they mean here too.

use std::collections::HashSet;

use prost::Message as _;

use super::proto::v1;
use crate::model::{ELLIPSIS, ObjectRef, RelationshipKey, SubjectRef};
use crate::service::ServiceError;

/// Largest `optional_transaction_metadata`, as JSON (hard-coded in SpiceDB).
pub const MAX_TRANSACTION_METADATA_BYTES: usize = 65_000;
/// Largest WriteSchema text.
pub const MAX_SCHEMA_BYTES: usize = 4_194_304;
/// Largest cursor token.
pub const MAX_CURSOR_BYTES: usize = 102_400;

/// The limits requests are checked against (one struct, the service's).
pub use crate::service::Limits;

type Checked = Result<(), ServiceError>;

// ---- requests ------------------------------------------------------------

/// CheckPermission. A `*` subject is WILDCARD_NOT_ALLOWED (SpiceDB's check
/// refuses it); a `*` resource is an invalid argument.
pub fn check_permission(req: &v1::CheckPermissionRequest, limits: &Limits) -> Checked {
    consistency(req.consistency.as_ref())?;
    object_reference(req.resource.as_ref(), "resource")?;
    string(&req.permission, "permission", 64, Shape::OptionalRelation)?;
    subject_reference(req.subject.as_ref(), "subject")?;
    // Handwritten.
    resource_not_wildcard(req.resource.as_ref(), "resource")?;
    subject_wildcard_without_relation(req.subject.as_ref(), "subject")?;
    // Handler.
    request_context(req.context.as_ref(), "context", limits)?;
    subject_not_wildcard(req.subject.as_ref(), "subject.object_id")
}

/// CheckBulkPermissions, the request as a whole. What SpiceDB reports per
/// item instead of failing the call is `check_bulk_item`.
pub fn check_bulk_permissions(req: &v1::CheckBulkPermissionsRequest, limits: &Limits) -> Checked {
    consistency(req.consistency.as_ref())?;
    for (i, item) in req.items.iter().enumerate() {
        let path = format!("items[{i}]");
        object_reference(item.resource.as_ref(), &join(&path, "resource"))?;
        string(
            &item.permission,
            &join(&path, "permission"),
            64,
            Shape::OptionalRelation,
        )?;
        subject_reference(item.subject.as_ref(), &join(&path, "subject"))?;
    }
    if req.items.len() > limits.max_bulk_checks {
        return Err(ServiceError::TooManyChecks {
            count: req.items.len(),
            max: limits.max_bulk_checks,
        });
    }
    for (i, item) in req.items.iter().enumerate() {
        request_context(
            item.context.as_ref(),
            &format!("items[{i}].context"),
            limits,
        )?;
    }
    Ok(())
}

/// The error SpiceDB puts in one CheckBulkPermissions pair (the call itself
/// succeeds): a `*` subject.
pub fn check_bulk_item(item: &v1::CheckBulkPermissionsRequestItem) -> Option<ServiceError> {
    item.subject
        .as_ref()
        .and_then(|s| s.object.as_ref())
        .filter(|o| o.object_id == "*")
        .map(|_| ServiceError::WildcardNotAllowed {
            field: "subject.object_id".into(),
        })
}

/// WriteRelationships, including the duplicate-update and caveat-size
/// checks SpiceDB's handler runs before reading the schema.
pub fn write_relationships(req: &v1::WriteRelationshipsRequest, limits: &Limits) -> Checked {
    for (i, update) in req.updates.iter().enumerate() {
        relationship_update(update, &format!("updates[{i}]"))?;
    }
    for (i, p) in req.optional_preconditions.iter().enumerate() {
        precondition(p, &format!("optional_preconditions[{i}]"))?;
    }
    // Handwritten: preconditions first, then updates.
    for (i, p) in req.optional_preconditions.iter().enumerate() {
        let path = format!("optional_preconditions[{i}].filter");
        filter_handwritten(p.filter.as_ref(), &path)?;
    }
    for (i, update) in req.updates.iter().enumerate() {
        relationship_handwritten(
            update.relationship.as_ref(),
            &format!("updates[{i}].relationship"),
        )?;
    }
    // Handler.
    transaction_metadata(req.optional_transaction_metadata.as_ref())?;
    if req.updates.len() > limits.max_updates_per_write {
        return Err(ServiceError::TooManyUpdates {
            count: req.updates.len(),
            max: limits.max_updates_per_write,
        });
    }
    preconditions_count(req.optional_preconditions.len(), limits)?;
    let mut seen = HashSet::with_capacity(req.updates.len());
    for update in &req.updates {
        let Some(rel) = &update.relationship else {
            continue;
        };
        let key = relationship_key(rel);
        // Caveat and expiration are attributes, not identity: two updates
        // of one relationship conflict whatever they carry.
        if !seen.insert(key.clone()) {
            return Err(ServiceError::DuplicateUpdate {
                relationship: Box::new(key),
            });
        }
        // SpiceDB measures the encoded ContextualizedCaveat message.
        let size = rel.optional_caveat.as_ref().map_or(0, |c| c.encoded_len());
        if size > limits.max_relationship_context_bytes {
            return Err(ServiceError::ContextTooLarge {
                size,
                max: limits.max_relationship_context_bytes,
            });
        }
    }
    for p in &req.optional_preconditions {
        filter_shape(p.filter.as_ref())?;
    }
    Ok(())
}

/// DeleteRelationships.
pub fn delete_relationships(req: &v1::DeleteRelationshipsRequest, limits: &Limits) -> Checked {
    relationship_filter(req.relationship_filter.as_ref(), "relationship_filter")?;
    for (i, p) in req.optional_preconditions.iter().enumerate() {
        precondition(p, &format!("optional_preconditions[{i}]"))?;
    }
    // Handwritten: preconditions first, then the filter.
    for (i, p) in req.optional_preconditions.iter().enumerate() {
        filter_handwritten(
            p.filter.as_ref(),
            &format!("optional_preconditions[{i}].filter"),
        )?;
    }
    filter_handwritten(req.relationship_filter.as_ref(), "relationship_filter")?;
    // Handler.
    transaction_metadata(req.optional_transaction_metadata.as_ref())?;
    preconditions_count(req.optional_preconditions.len(), limits)?;
    limit(
        req.optional_limit,
        limits.max_delete_limit,
        "optional_limit",
    )?;
    filter_shape(req.relationship_filter.as_ref())?;
    for p in &req.optional_preconditions {
        filter_shape(p.filter.as_ref())?;
    }
    Ok(())
}

/// ReadRelationships.
pub fn read_relationships(req: &v1::ReadRelationshipsRequest, limits: &Limits) -> Checked {
    consistency(req.consistency.as_ref())?;
    relationship_filter(req.relationship_filter.as_ref(), "relationship_filter")?;
    cursor(req.optional_cursor.as_ref(), "optional_cursor")?;
    // Handler (ReadRelationships has no handwritten rules).
    limit(req.optional_limit, limits.max_read_limit, "optional_limit")?;
    filter_shape(req.relationship_filter.as_ref())
}

/// WriteSchema: only the size; the text is the compiler's to judge.
pub fn write_schema(req: &v1::WriteSchemaRequest) -> Checked {
    if req.schema.len() > MAX_SCHEMA_BYTES {
        return Err(too_long("schema", MAX_SCHEMA_BYTES));
    }
    Ok(())
}

/// ReadSchema has no fields to check; here for symmetry.
pub fn read_schema(_req: &v1::ReadSchemaRequest) -> Checked {
    Ok(())
}

/// ReflectSchema: only the consistency has rules (filters are the
/// handler's to judge, after reading the schema).
pub fn reflect_schema(req: &v1::ReflectSchemaRequest) -> Checked {
    consistency(req.consistency.as_ref())
}

/// ComputablePermissions: names are looked up, not shape-checked.
pub fn computable_permissions(req: &v1::ComputablePermissionsRequest) -> Checked {
    consistency(req.consistency.as_ref())
}

/// DependentRelations: names are looked up, not shape-checked.
pub fn dependent_relations(req: &v1::DependentRelationsRequest) -> Checked {
    consistency(req.consistency.as_ref())
}

/// DiffSchema: the comparison text is the compiler's to judge.
pub fn diff_schema(req: &v1::DiffSchemaRequest) -> Checked {
    consistency(req.consistency.as_ref())
}

/// ExperimentalRegisterRelationshipCounter: the name's shape and the
/// filter's rules, then the handler's: a name, and a filter that selects.
pub fn register_relationship_counter(
    req: &v1::ExperimentalRegisterRelationshipCounterRequest,
) -> Checked {
    string(&req.name, "name", 64, Shape::OptionalRelation)?;
    relationship_filter(req.relationship_filter.as_ref(), "relationship_filter")?;
    counter_name_given(&req.name)?;
    filter_shape(req.relationship_filter.as_ref())
}

/// ExperimentalCountRelationships.
pub fn count_relationships(req: &v1::ExperimentalCountRelationshipsRequest) -> Checked {
    string(&req.name, "name", 64, Shape::OptionalRelation)?;
    counter_name_given(&req.name)
}

/// ExperimentalUnregisterRelationshipCounter.
pub fn unregister_relationship_counter(
    req: &v1::ExperimentalUnregisterRelationshipCounterRequest,
) -> Checked {
    string(&req.name, "name", 64, Shape::OptionalRelation)?;
    counter_name_given(&req.name)
}

/// ExpandPermissionTree.
pub fn expand_permission_tree(req: &v1::ExpandPermissionTreeRequest) -> Checked {
    consistency(req.consistency.as_ref())?;
    object_reference(req.resource.as_ref(), "resource")?;
    string(&req.permission, "permission", 64, Shape::OptionalRelation)?;
    resource_not_wildcard(req.resource.as_ref(), "resource")
}

/// LookupResources. A `*` subject is WILDCARD_NOT_ALLOWED.
pub fn lookup_resources(req: &v1::LookupResourcesRequest, limits: &Limits) -> Checked {
    consistency(req.consistency.as_ref())?;
    string(
        &req.resource_object_type,
        "resource_object_type",
        128,
        Shape::ObjectType,
    )?;
    // Required here, unlike Check's permission.
    string(&req.permission, "permission", 64, Shape::Relation)?;
    subject_reference(req.subject.as_ref(), "subject")?;
    cursor(req.optional_cursor.as_ref(), "optional_cursor")?;
    // Handler.
    limit(
        req.optional_limit,
        limits.max_lookup_resources_limit,
        "optional_limit",
    )?;
    // No context size check: SpiceDB 1.54's LookupResources passes the
    // context on unmeasured (a 5 KB context is answered, not refused).
    subject_not_wildcard(req.subject.as_ref(), "subject_id")
}

/// LookupSubjects. Unlike SpiceDB (UNIMPLEMENTED), a concrete limit pages
/// the results, bounded like LookupResources' limit.
pub fn lookup_subjects(req: &v1::LookupSubjectsRequest, limits: &Limits) -> Checked {
    consistency(req.consistency.as_ref())?;
    object_reference(req.resource.as_ref(), "resource")?;
    string(&req.permission, "permission", 64, Shape::OptionalRelation)?;
    string(
        &req.subject_object_type,
        "subject_object_type",
        128,
        Shape::ObjectType,
    )?;
    string(
        &req.optional_subject_relation,
        "optional_subject_relation",
        64,
        Shape::OptionalRelation,
    )?;
    cursor(req.optional_cursor.as_ref(), "optional_cursor")?;
    limit(
        req.optional_concrete_limit,
        limits.max_lookup_resources_limit,
        "optional_concrete_limit",
    )?;
    request_context(req.context.as_ref(), "context", limits)
}

/// Watch. Object types use SpiceDB's slightly looser pattern (prefix
/// segments up to 64 characters).
pub fn watch(req: &v1::WatchRequest) -> Checked {
    for (i, t) in req.optional_object_types.iter().enumerate() {
        string(
            t,
            &format!("optional_object_types[{i}]"),
            128,
            Shape::WatchObjectType,
        )?;
    }
    if let Some(token) = &req.optional_start_cursor {
        zed_token(token, "optional_start_cursor")?;
    }
    for (i, f) in req.optional_relationship_filters.iter().enumerate() {
        relationship_filter(Some(f), &format!("optional_relationship_filters[{i}]"))?;
    }
    // Handler: object types and filters are exclusive whenever relationship
    // updates are asked for (which no kinds at all also means).
    let kinds = &req.optional_update_kinds;
    let wants_relationships = kinds.is_empty()
        || kinds.contains(&(v1::WatchKind::Unspecified as i32))
        || kinds.contains(&(v1::WatchKind::IncludeRelationshipUpdates as i32));
    if wants_relationships
        && !req.optional_object_types.is_empty()
        && !req.optional_relationship_filters.is_empty()
    {
        return Err(ServiceError::InvalidArgument {
            field: "optional_relationship_filters".into(),
            message: "cannot specify both object types and relationship filters".into(),
        });
    }
    for f in &req.optional_relationship_filters {
        filter_shape(Some(f))?;
    }
    Ok(())
}

/// One ImportBulkRelationships message: each relationship as written.
pub fn import_bulk_relationships(req: &v1::ImportBulkRelationshipsRequest) -> Checked {
    for (i, rel) in req.relationships.iter().enumerate() {
        relationship(Some(rel), &format!("relationships[{i}]"))?;
    }
    Ok(())
}

/// ExportBulkRelationships.
pub fn export_bulk_relationships(
    req: &v1::ExportBulkRelationshipsRequest,
    limits: &Limits,
) -> Checked {
    consistency(req.consistency.as_ref())?;
    cursor(req.optional_cursor.as_ref(), "optional_cursor")?;
    if let Some(f) = &req.optional_relationship_filter {
        relationship_filter(Some(f), "optional_relationship_filter")?;
    }
    limit(
        req.optional_limit,
        limits.max_export_batch,
        "optional_limit",
    )?;
    // SpiceDB answers UNKNOWN for these (a plain error from its datastore
    // layer); INVALID_FILTER is what every other RPC says.
    if let Some(f) = &req.optional_relationship_filter {
        filter_shape(Some(f))?;
    }
    Ok(())
}

// ---- messages (annotation rules) ------------------------------------------

fn consistency(c: Option<&v1::Consistency>) -> Checked {
    use v1::consistency::Requirement;
    let Some(c) = c else { return Ok(()) };
    match &c.requirement {
        None => Err(required("consistency.requirement")),
        Some(Requirement::MinimizeLatency(false)) => Err(invalid(
            "consistency.minimize_latency",
            "value must equal true",
        )),
        Some(Requirement::FullyConsistent(false)) => Err(invalid(
            "consistency.fully_consistent",
            "value must equal true",
        )),
        Some(Requirement::AtLeastAsFresh(t)) => zed_token(t, "consistency.at_least_as_fresh"),
        Some(Requirement::AtExactSnapshot(t)) => zed_token(t, "consistency.at_exact_snapshot"),
        Some(Requirement::MinimizeLatency(true) | Requirement::FullyConsistent(true)) => Ok(()),
    }
}

fn zed_token(t: &v1::ZedToken, path: &str) -> Checked {
    if t.token.is_empty() {
        return Err(invalid(
            &join(path, "token"),
            "value length must be at least 1 bytes",
        ));
    }
    Ok(())
}

fn cursor(c: Option<&v1::Cursor>, path: &str) -> Checked {
    let Some(c) = c else { return Ok(()) };
    if c.token.is_empty() || c.token.len() > MAX_CURSOR_BYTES {
        return Err(invalid(
            &join(path, "token"),
            "value length must be between 1 and 102400 bytes, inclusive",
        ));
    }
    Ok(())
}

fn object_reference(o: Option<&v1::ObjectReference>, path: &str) -> Checked {
    let o = o.ok_or_else(|| required(path))?;
    string(
        &o.object_type,
        &join(path, "object_type"),
        128,
        Shape::ObjectType,
    )?;
    string(
        &o.object_id,
        &join(path, "object_id"),
        1024,
        Shape::ObjectId,
    )
}

fn subject_reference(s: Option<&v1::SubjectReference>, path: &str) -> Checked {
    let s = s.ok_or_else(|| required(path))?;
    object_reference(s.object.as_ref(), &join(path, "object"))?;
    string(
        &s.optional_relation,
        &join(path, "optional_relation"),
        64,
        Shape::OptionalRelation,
    )
}

fn relationship(r: Option<&v1::Relationship>, path: &str) -> Checked {
    let r = r.ok_or_else(|| required(path))?;
    object_reference(r.resource.as_ref(), &join(path, "resource"))?;
    string(&r.relation, &join(path, "relation"), 64, Shape::Relation)?;
    subject_reference(r.subject.as_ref(), &join(path, "subject"))?;
    if let Some(c) = &r.optional_caveat {
        string(
            &c.caveat_name,
            &join(path, "optional_caveat.caveat_name"),
            128,
            Shape::CaveatName,
        )?;
    }
    Ok(())
}

fn relationship_update(u: &v1::RelationshipUpdate, path: &str) -> Checked {
    use v1::relationship_update::Operation;
    enum_value(
        Operation::try_from(u.operation)
            .ok()
            .map(|o| o != Operation::Unspecified),
        &join(path, "operation"),
        "OPERATION_UNSPECIFIED",
    )?;
    relationship(u.relationship.as_ref(), &join(path, "relationship"))
}

fn precondition(p: &v1::Precondition, path: &str) -> Checked {
    use v1::precondition::Operation;
    enum_value(
        Operation::try_from(p.operation)
            .ok()
            .map(|o| o != Operation::Unspecified),
        &join(path, "operation"),
        "OPERATION_UNSPECIFIED",
    )?;
    relationship_filter(p.filter.as_ref(), &join(path, "filter"))
}

/// `defined` is None for a number outside the enum, Some(false) for its
/// zero value, which every SpiceDB enum field refuses.
fn enum_value(defined: Option<bool>, path: &str, zero_name: &str) -> Checked {
    match defined {
        Some(true) => Ok(()),
        Some(false) => Err(invalid(
            path,
            &format!("value must not be in list [{zero_name}]"),
        )),
        None => Err(invalid(
            path,
            "value must be one of the defined enum values",
        )),
    }
}

fn relationship_filter(f: Option<&v1::RelationshipFilter>, path: &str) -> Checked {
    let f = f.ok_or_else(|| required(path))?;
    string(
        &f.resource_type,
        &join(path, "resource_type"),
        128,
        Shape::OptionalObjectType,
    )?;
    string(
        &f.optional_resource_id,
        &join(path, "optional_resource_id"),
        1024,
        Shape::FilterId,
    )?;
    string(
        &f.optional_resource_id_prefix,
        &join(path, "optional_resource_id_prefix"),
        1024,
        Shape::FilterId,
    )?;
    string(
        &f.optional_relation,
        &join(path, "optional_relation"),
        64,
        Shape::OptionalRelation,
    )?;
    if let Some(s) = &f.optional_subject_filter {
        let path = join(path, "optional_subject_filter");
        string(
            &s.subject_type,
            &join(&path, "subject_type"),
            128,
            Shape::ObjectType,
        )?;
        string(
            &s.optional_subject_id,
            &join(&path, "optional_subject_id"),
            1024,
            Shape::OptionalSubjectId,
        )?;
        if let Some(r) = &s.optional_relation {
            string(
                &r.relation,
                &join(&path, "optional_relation.relation"),
                64,
                Shape::OptionalRelation,
            )?;
        }
    }
    Ok(())
}

// ---- handwritten rules (authzed-go) ---------------------------------------

fn resource_not_wildcard(o: Option<&v1::ObjectReference>, path: &str) -> Checked {
    if o.is_some_and(|o| o.object_id == "*") {
        return Err(invalid(
            &join(path, "object_id"),
            "alphanumeric value is required",
        ));
    }
    Ok(())
}

fn subject_wildcard_without_relation(s: Option<&v1::SubjectReference>, path: &str) -> Checked {
    let Some(s) = s else { return Ok(()) };
    if s.object.as_ref().is_some_and(|o| o.object_id == "*") && !s.optional_relation.is_empty() {
        return Err(invalid(
            &join(path, "optional_relation"),
            "optionalrelation must be empty on subject if object ID is a wildcard",
        ));
    }
    Ok(())
}

fn relationship_handwritten(r: Option<&v1::Relationship>, path: &str) -> Checked {
    let Some(r) = r else { return Ok(()) };
    resource_not_wildcard(r.resource.as_ref(), &join(path, "resource"))?;
    subject_wildcard_without_relation(r.subject.as_ref(), &join(path, "subject"))
}

fn filter_handwritten(f: Option<&v1::RelationshipFilter>, path: &str) -> Checked {
    let Some(f) = f else { return Ok(()) };
    if f.optional_resource_id == "*" {
        return Err(invalid(
            &join(path, "optional_resource_id"),
            "alphanumeric value is required",
        ));
    }
    if let Some(s) = &f.optional_subject_filter
        && s.optional_subject_id == "*"
        && s.optional_relation
            .as_ref()
            .is_some_and(|r| !r.relation.is_empty())
    {
        return Err(invalid(
            &join(path, "optional_subject_filter.optional_relation"),
            "optionalrelation must be empty on subject if object ID is a wildcard",
        ));
    }
    Ok(())
}

// ---- handler checks -------------------------------------------------------

/// A filter must select something, and by id or by prefix, not both.
fn filter_shape(f: Option<&v1::RelationshipFilter>) -> Checked {
    let Some(f) = f else { return Ok(()) };
    let invalid_filter = |message: &str| ServiceError::InvalidFilter {
        message: message.to_string(),
        filter: filter_text(f),
    };
    if !f.optional_resource_id.is_empty() && !f.optional_resource_id_prefix.is_empty() {
        return Err(invalid_filter(
            "resource_id and resource_id_prefix cannot be set at the same time",
        ));
    }
    if f.resource_type.is_empty()
        && f.optional_resource_id.is_empty()
        && f.optional_resource_id_prefix.is_empty()
        && f.optional_relation.is_empty()
        && f.optional_subject_filter.is_none()
    {
        return Err(invalid_filter("at least one field must be set"));
    }
    Ok(())
}

/// The counter RPCs' pattern allows an empty name; their handlers do not.
fn counter_name_given(name: &str) -> Checked {
    if name.is_empty() {
        return Err(ServiceError::CounterNameRequired);
    }
    Ok(())
}

/// `optional_limit` of 0 means "no limit"; above the server's maximum is
/// EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT.
/// A `*` subject cannot be checked or looked up from (WILDCARD_NOT_ALLOWED),
/// reported under `field`.
fn subject_not_wildcard(subject: Option<&v1::SubjectReference>, field: &str) -> Checked {
    if subject
        .and_then(|s| s.object.as_ref())
        .is_some_and(|o| o.object_id == "*")
    {
        return Err(ServiceError::WildcardNotAllowed {
            field: field.into(),
        });
    }
    Ok(())
}

fn limit(value: u32, max: usize, field: &str) -> Checked {
    let (value, max) = (u64::from(value), max as u64);
    if value > max {
        return Err(ServiceError::ExceedsLimit {
            field: field.to_string(),
            value,
            max,
        });
    }
    Ok(())
}

fn preconditions_count(count: usize, limits: &Limits) -> Checked {
    if count > limits.max_preconditions {
        return Err(ServiceError::TooManyPreconditions {
            count,
            max: limits.max_preconditions,
        });
    }
    Ok(())
}

/// A request's caveat context, measured as SpiceDB does: the encoded Struct.
fn request_context(context: Option<&prost_types::Struct>, path: &str, limits: &Limits) -> Checked {
    let size = context.map_or(0, |c| c.encoded_len());
    if size > limits.max_request_context_bytes {
        return Err(invalid(
            path,
            &format!(
                "request caveat context should have less than {} bytes but had {size}",
                limits.max_request_context_bytes
            ),
        ));
    }
    Ok(())
}

/// Transaction metadata, measured as SpiceDB does: its JSON form.
fn transaction_metadata(metadata: Option<&prost_types::Struct>) -> Checked {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let json = super::convert::struct_to_json(metadata, "optional_transaction_metadata")?;
    let size = serde_json::to_vec(&json).map_or(0, |v| v.len());
    if size > MAX_TRANSACTION_METADATA_BYTES {
        return Err(ServiceError::MetadataTooLarge {
            size,
            max: MAX_TRANSACTION_METADATA_BYTES,
        });
    }
    Ok(())
}

fn relationship_key(r: &v1::Relationship) -> RelationshipKey {
    let object = |o: Option<&v1::ObjectReference>| {
        o.map_or_else(
            || ObjectRef::new("", ""),
            |o| ObjectRef::new(&o.object_type, &o.object_id),
        )
    };
    let subject = r.subject.as_ref();
    let relation = subject.map_or("", |s| s.optional_relation.as_str());
    RelationshipKey {
        resource: object(r.resource.as_ref()),
        relation: r.relation.clone(),
        subject: SubjectRef {
            object: object(subject.and_then(|s| s.object.as_ref())),
            relation: if relation.is_empty() {
                ELLIPSIS.to_string()
            } else {
                relation.to_string()
            },
        },
    }
}

/// A filter in protobuf text form, SpiceDB's `filter` metadata.
pub fn filter_text(f: &v1::RelationshipFilter) -> String {
    fn field(out: &mut Vec<String>, name: &str, value: &str) {
        if !value.is_empty() {
            out.push(format!(
                "{name}:{}",
                crate::service::error::proto_text_quote(value)
            ));
        }
    }
    let mut parts = Vec::new();
    field(&mut parts, "resource_type", &f.resource_type);
    field(&mut parts, "optional_resource_id", &f.optional_resource_id);
    field(&mut parts, "optional_relation", &f.optional_relation);
    if let Some(s) = &f.optional_subject_filter {
        let mut sub = Vec::new();
        field(&mut sub, "subject_type", &s.subject_type);
        field(&mut sub, "optional_subject_id", &s.optional_subject_id);
        if let Some(r) = &s.optional_relation {
            let mut rel = Vec::new();
            field(&mut rel, "relation", &r.relation);
            sub.push(format!("optional_relation:{{{}}}", rel.join(" ")));
        }
        parts.push(format!("optional_subject_filter:{{{}}}", sub.join(" ")));
    }
    field(
        &mut parts,
        "optional_resource_id_prefix",
        &f.optional_resource_id_prefix,
    );
    parts.join(" ")
}

// ---- strings --------------------------------------------------------------

/// The fixed shapes SpiceDB's annotations give names and ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `^([a-z][a-z0-9_]{1,61}[a-z0-9]/)*[a-z][a-z0-9_]{1,62}[a-z0-9]$`
    ObjectType,
    /// The same, or empty.
    OptionalObjectType,
    /// Watch's: prefix segments `{1,62}` too.
    WatchObjectType,
    /// `^(([a-zA-Z0-9/_|\-=+]{1,})|\*)$`
    ObjectId,
    /// `^([a-zA-Z0-9/_|\-=+]{1,})?$` (no `*`)
    FilterId,
    /// `^(([a-zA-Z0-9/_|\-=+]{1,})|\*)?$`
    OptionalSubjectId,
    /// `^[a-z][a-z0-9_]{1,62}[a-z0-9]$`
    Relation,
    /// The same, or empty.
    OptionalRelation,
    /// `^([a-zA-Z0-9_][a-zA-Z0-9/_|-]{0,127})$`
    CaveatName,
}

impl Shape {
    fn pattern(self) -> &'static str {
        match self {
            Shape::ObjectType => r"^([a-z][a-z0-9_]{1,61}[a-z0-9]/)*[a-z][a-z0-9_]{1,62}[a-z0-9]$",
            Shape::OptionalObjectType => {
                r"^(([a-z][a-z0-9_]{1,61}[a-z0-9]/)*[a-z][a-z0-9_]{1,62}[a-z0-9])?$"
            }
            Shape::WatchObjectType => {
                r"^([a-z][a-z0-9_]{1,62}[a-z0-9]/)*[a-z][a-z0-9_]{1,62}[a-z0-9]$"
            }
            Shape::ObjectId => r"^(([a-zA-Z0-9/_|\-=+]{1,})|\*)$",
            Shape::FilterId => r"^([a-zA-Z0-9/_|\-=+]{1,})?$",
            Shape::OptionalSubjectId => r"^(([a-zA-Z0-9/_|\-=+]{1,})|\*)?$",
            Shape::Relation => r"^[a-z][a-z0-9_]{1,62}[a-z0-9]$",
            Shape::OptionalRelation => r"^([a-z][a-z0-9_]{1,62}[a-z0-9])?$",
            Shape::CaveatName => r"^([a-zA-Z0-9_][a-zA-Z0-9/_|-]{0,127})$",
        }
    }

    fn matches(self, s: &str) -> bool {
        match self {
            Shape::ObjectType => is_type_path(s, 63),
            Shape::OptionalObjectType => s.is_empty() || is_type_path(s, 63),
            Shape::WatchObjectType => is_type_path(s, 64),
            Shape::ObjectId => s == "*" || is_id(s),
            Shape::FilterId => s.is_empty() || is_id(s),
            Shape::OptionalSubjectId => s.is_empty() || s == "*" || is_id(s),
            Shape::Relation => is_name(s, 64),
            Shape::OptionalRelation => s.is_empty() || is_name(s, 64),
            Shape::CaveatName => is_caveat_name(s),
        }
    }
}

/// `[a-z][a-z0-9_]{1,N-2}[a-z0-9]`: 3 to `max_len` characters.
fn is_name(s: &str, max_len: usize) -> bool {
    let b = s.as_bytes();
    (3..=max_len).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[1..b.len() - 1]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
}

/// Segments separated by `/`: prefixes up to `prefix_max` characters, the
/// last up to 64. No segment holds a `/`, so splitting is exact.
fn is_type_path(s: &str, prefix_max: usize) -> bool {
    let mut segments = s.split('/');
    let last = segments.next_back().unwrap_or("");
    is_name(last, 64) && segments.all(|seg| is_name(seg, prefix_max))
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'|' | b'-' | b'=' | b'+')
        })
}

fn is_caveat_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len())
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'|' | b'-'))
}

/// A string field's rules: at most `max` bytes, then the shape.
fn string(value: &str, path: &str, max: usize, shape: Shape) -> Checked {
    if value.len() > max {
        return Err(too_long(path, max));
    }
    if !shape.matches(value) {
        return Err(invalid(
            path,
            &format!("does not match regex pattern `{}`", shape.pattern()),
        ));
    }
    Ok(())
}

fn too_long(path: &str, max: usize) -> ServiceError {
    invalid(path, &format!("value length must be at most {max} bytes"))
}

fn required(path: &str) -> ServiceError {
    invalid(path, "value is required")
}

fn invalid(path: &str, message: &str) -> ServiceError {
    ServiceError::InvalidArgument {
        field: path.to_string(),
        message: message.to_string(),
    }
}

fn join(parent: &str, child: &str) -> String {
    super::convert::field_path(parent, child)
}

#[cfg(test)]
mod tests;
