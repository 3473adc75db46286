//! Whether a relationship may be written under a schema, as SpiceDB decides
//! it (`internal/relationships/validation.go`): known types and relations,
//! never a permission, a subject matching one allowed type exactly —
//! caveat name and expiration included — and a caveat context of declared
//! parameters with values of their types, within the size limit.

use crate::model::{Relationship, RelationshipFilter};
use crate::schema::{AllowedSubjectType, CompiledSchema, SubjectTarget};

use super::ServiceError;

/// Checks one relationship for writing (CREATE or TOUCH) or importing.
pub fn validate_relationship(
    schema: &CompiledSchema,
    rel: &Relationship,
    max_context_bytes: usize,
) -> Result<(), ServiceError> {
    let definition = known_definition(schema, &rel.resource.object_type)?;
    let relation = definition
        .relation(&rel.relation)
        .ok_or_else(|| unknown_relation(&rel.resource.object_type, &rel.relation))?;
    if relation.is_permission() {
        return Err(ServiceError::CannotUpdatePermission {
            definition: rel.resource.object_type.clone(),
            permission: rel.relation.clone(),
        });
    }
    let subject_type = &rel.subject.object.object_type;
    let subject_definition = known_definition(schema, subject_type)?;
    if !rel.subject.is_object() && subject_definition.relation(&rel.subject.relation).is_none() {
        return Err(unknown_relation(subject_type, &rel.subject.relation));
    }
    if let Some(caveat) = &rel.caveat {
        if schema.caveat(&caveat.name).is_none() {
            return Err(ServiceError::UnknownCaveat {
                caveat: caveat.name.clone(),
            });
        }
        let size = serde_json::to_vec(&caveat.context).map_or(0, |v| v.len());
        if size > max_context_bytes {
            return Err(ServiceError::ContextTooLarge {
                size,
                max: max_context_bytes,
            });
        }
    }
    let wanted = AllowedSubjectType {
        type_name: subject_type.clone(),
        target: if rel.subject.is_wildcard() {
            SubjectTarget::Wildcard
        } else if rel.subject.is_object() {
            SubjectTarget::Object
        } else {
            SubjectTarget::Relation(rel.subject.relation.clone())
        },
        caveat: rel.caveat.as_ref().map(|c| c.name.clone()),
        expiration: rel.expires_at.is_some(),
    };
    if relation.allowed_types().contains(&wanted) {
        // As SpiceDB: the context is checked once the subject type is allowed.
        if let Some(caveat) = &rel.caveat
            && let Some(definition) = schema.caveat(&caveat.name)
        {
            crate::caveats::validate_context(definition, &caveat.context)?;
        }
        return Ok(());
    }
    Err(ServiceError::InvalidSubjectType {
        message: format!(
            "subjects of type `{}` are not allowed on relation `{}#{}`",
            crate::schema::print::allowed_type_text(&wanted),
            rel.resource.object_type,
            rel.relation
        ),
    })
}

/// Checks that a filter names only known types and relations.
pub fn validate_filter(
    schema: &CompiledSchema,
    filter: &RelationshipFilter,
) -> Result<(), ServiceError> {
    if let Some(resource_type) = &filter.resource_type {
        let definition = known_definition(schema, resource_type)?;
        if let Some(relation) = &filter.relation
            && definition.relation(relation).is_none()
        {
            return Err(unknown_relation(resource_type, relation));
        }
    }
    if let Some(subject) = &filter.subject {
        let definition = known_definition(schema, &subject.subject_type)?;
        if let Some(relation) = subject
            .relation
            .as_deref()
            .filter(|r| *r != crate::model::ELLIPSIS)
            && definition.relation(relation).is_none()
        {
            return Err(unknown_relation(&subject.subject_type, relation));
        }
    }
    Ok(())
}

pub fn known_definition<'s>(
    schema: &'s CompiledSchema,
    name: &str,
) -> Result<&'s crate::schema::Definition, ServiceError> {
    schema
        .definition(name)
        .ok_or_else(|| ServiceError::UnknownDefinition {
            definition: name.to_string(),
        })
}

pub fn unknown_relation(definition: &str, relation: &str) -> ServiceError {
    ServiceError::UnknownRelation {
        definition: definition.to_string(),
        relation: relation.to_string(),
    }
}
