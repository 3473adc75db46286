//! Schema reflection: ReflectSchema (the schema at a revision as data, with
//! SpiceDB's name-prefix filters), ComputablePermissions and
//! DependentRelations (walks of the relation graph, `schema::dependencies`)
//! and DiffSchema (`schema::diff` between the stored schema and a given
//! text, each change described as ReflectSchema describes the item).
//!
//! A datastore without a schema reflects as an empty schema, as SpiceDB's
//! does (it lists no definitions rather than failing).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::datastore::Datastore;
use crate::datastore::schema_cache::SchemaLoadError;
use crate::model::{Consistency, Revision};
use crate::schema::diff::SchemaChange;
use crate::schema::{
    self, AllowedSubjectType, CaveatDefinition, CompiledSchema, Definition, Relation,
    SubjectTarget, dependencies,
};

use super::{ServiceError, Services};

/// One of ReflectSchema's `optional_filters`: name prefixes, empty when
/// unset. Filters are OR-ed; see `Filters` for how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaFilter {
    pub definition: String,
    pub caveat: String,
    pub relation: String,
    pub permission: String,
}

/// A definition as reflected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectedDefinition {
    pub name: String,
    /// Doc comments as written, joined by newlines.
    pub comment: String,
    pub relations: Vec<ReflectedRelation>,
    pub permissions: Vec<ReflectedPermission>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectedRelation {
    pub name: String,
    pub comment: String,
    pub parent_definition: String,
    pub subject_types: Vec<ReflectedSubjectType>,
}

/// An allowed subject type (its expiration trait is not reflected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectedSubjectType {
    pub definition: String,
    pub caveat: Option<String>,
    pub target: SubjectTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectedPermission {
    pub name: String,
    pub comment: String,
    pub parent_definition: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectedCaveat {
    pub name: String,
    pub comment: String,
    /// Sorted by name.
    pub parameters: Vec<ReflectedParameter>,
    pub expression: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflectedParameter {
    pub name: String,
    /// As written in a schema: `int`, `list<string>`, `map<any>`.
    pub type_name: String,
    pub parent_caveat: String,
}

/// The schema at a revision, as reflected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReflectedSchema {
    pub definitions: Vec<ReflectedDefinition>,
    pub caveats: Vec<ReflectedCaveat>,
}

/// A relation or permission named by ComputablePermissions or
/// DependentRelations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelationReference {
    pub definition: String,
    pub relation: String,
    pub is_permission: bool,
}

/// One DiffSchema entry: the kind of change and the item, described from
/// the comparison schema (from the stored one for removals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaDiff {
    DefinitionAdded(ReflectedDefinition),
    DefinitionRemoved(ReflectedDefinition),
    DefinitionDocCommentChanged(ReflectedDefinition),
    RelationAdded(ReflectedRelation),
    RelationRemoved(ReflectedRelation),
    RelationDocCommentChanged(ReflectedRelation),
    RelationSubjectTypeAdded {
        relation: ReflectedRelation,
        subject_type: ReflectedSubjectType,
    },
    /// `relation` as the comparison schema has it; `subject_type` as the
    /// stored one had it.
    RelationSubjectTypeRemoved {
        relation: ReflectedRelation,
        subject_type: ReflectedSubjectType,
    },
    PermissionAdded(ReflectedPermission),
    PermissionRemoved(ReflectedPermission),
    PermissionDocCommentChanged(ReflectedPermission),
    PermissionExprChanged(ReflectedPermission),
    CaveatAdded(ReflectedCaveat),
    CaveatRemoved(ReflectedCaveat),
    CaveatDocCommentChanged(ReflectedCaveat),
    CaveatExprChanged(ReflectedCaveat),
    CaveatParameterAdded(ReflectedParameter),
    CaveatParameterRemoved(ReflectedParameter),
    CaveatParameterTypeChanged {
        parameter: ReflectedParameter,
        previous_type: String,
    },
}

impl<D: Datastore> Services<D> {
    /// ReflectSchema: the schema at the consistency's revision, filtered.
    pub async fn reflect_schema(
        &self,
        filters: Vec<SchemaFilter>,
        consistency: Consistency,
    ) -> Result<(ReflectedSchema, Revision), ServiceError> {
        let (schema, revision) = self.schema_for_reflection(consistency).await?;
        let filters = Filters::new(filters)?;
        let mut reflected = ReflectedSchema::default();
        if filters.any_for_definitions() {
            reflected.definitions = schema
                .definitions()
                .iter()
                .filter(|d| filters.keeps_definition(&d.name))
                .map(|d| reflect_definition(d, &filters))
                .collect();
        }
        if filters.any_for_caveats() {
            reflected.caveats = schema
                .caveats()
                .iter()
                .filter(|c| filters.keeps_caveat(&c.name))
                .map(reflect_caveat)
                .collect();
        }
        Ok((reflected, revision))
    }

    /// ComputablePermissions: the relations and permissions that
    /// `definition#relation` (or, with `relation` empty, objects of
    /// `definition`) can reach, restricted to definitions starting with
    /// `definition_prefix`, sorted by definition then name.
    pub async fn computable_permissions(
        &self,
        definition: &str,
        relation: &str,
        definition_prefix: &str,
        consistency: Consistency,
    ) -> Result<(Vec<RelationReference>, Revision), ServiceError> {
        let revision = self.revision_for(consistency).await?;
        let (_, schema) = self.snapshot_with_schema(revision, definition).await?;
        let def = known(&schema, definition)?;
        let relation = (!relation.is_empty()).then_some(relation);
        if let Some(name) = relation
            && def.relation(name).is_none()
        {
            return Err(unknown_relation(definition, name));
        }
        let start = relation.map(|r| (definition.to_string(), r.to_string()));
        let found = dependencies::computable_from(&schema, definition, relation)
            .into_iter()
            .filter(|key| Some(key) != start.as_ref())
            .filter(|(d, _)| d.starts_with(definition_prefix));
        Ok((references(&schema, found), revision))
    }

    /// DependentRelations: what `definition#permission` is computed from,
    /// sorted by definition then name. Asking about a relation is an error.
    pub async fn dependent_relations(
        &self,
        definition: &str,
        permission: &str,
        consistency: Consistency,
    ) -> Result<(Vec<RelationReference>, Revision), ServiceError> {
        let revision = self.revision_for(consistency).await?;
        let (_, schema) = self.snapshot_with_schema(revision, definition).await?;
        let def = known(&schema, definition)?;
        let relation = def
            .relation(permission)
            .ok_or_else(|| unknown_relation(definition, permission))?;
        if !relation.is_permission() {
            return Err(ServiceError::NotAPermission {
                relation: permission.to_string(),
            });
        }
        let start = (definition.to_string(), permission.to_string());
        let found = dependencies::dependent_relations(&schema, definition, permission)
            .into_iter()
            .filter(|key| *key != start);
        Ok((references(&schema, found), revision))
    }

    /// DiffSchema: how `comparison` differs from the schema stored at the
    /// consistency's revision. The comparison is compiled without the type
    /// system's checks, as SpiceDB compiles it.
    pub async fn diff_schema(
        &self,
        comparison: &str,
        consistency: Consistency,
    ) -> Result<(Vec<SchemaDiff>, Revision), ServiceError> {
        let (existing, revision) = self.schema_for_reflection(consistency).await?;
        let comparison = schema::compile_unchecked(comparison)
            .map_err(|errors| super::schema::schema_error(errors, comparison))?;
        let diffs = schema::diff::diff(&existing, &comparison)
            .into_iter()
            .map(|change| describe_change(&change, &existing, &comparison))
            .collect::<Result<_, _>>()?;
        Ok((diffs, revision))
    }

    /// The schema at the consistency's revision; none reads as empty.
    async fn schema_for_reflection(
        &self,
        consistency: Consistency,
    ) -> Result<(Arc<CompiledSchema>, Revision), ServiceError> {
        let revision = self.revision_for(consistency).await?;
        let reader = self.datastore.snapshot(revision);
        let schema = match self.schemas.at(&reader).await {
            Ok(schema) => schema,
            Err(SchemaLoadError::NoSchema) => Arc::new(schema::empty()),
            Err(SchemaLoadError::Datastore(e)) => return Err(e.into()),
        };
        Ok((schema, revision))
    }
}

fn known<'s>(schema: &'s CompiledSchema, name: &str) -> Result<&'s Definition, ServiceError> {
    schema
        .definition(name)
        .ok_or_else(|| ServiceError::UnknownDefinition {
            definition: name.to_string(),
        })
}

fn unknown_relation(definition: &str, relation: &str) -> ServiceError {
    ServiceError::UnknownRelation {
        definition: definition.to_string(),
        relation: relation.to_string(),
    }
}

/// Walk results as references, in (definition, name) order.
fn references(
    schema: &CompiledSchema,
    found: impl Iterator<Item = (String, String)>,
) -> Vec<RelationReference> {
    // The walks return an ordered set, so the order is already right.
    let found: BTreeSet<(String, String)> = found.collect();
    found
        .into_iter()
        .map(|(definition, relation)| RelationReference {
            is_permission: schema
                .definition(&definition)
                .is_some_and(|d| d.is_permission(&relation)),
            definition,
            relation,
        })
        .collect()
}

// ---- filters --------------------------------------------------------------

/// ReflectSchema's filters, with SpiceDB's semantics: a kind of item
/// (definitions, caveats) is listed when no filter is given or some filter
/// names that kind; an item is kept when no filter of its kind is given or
/// one matches it by prefix. Relation and permission filters apply within
/// the definitions their filter's definition prefix matches.
struct Filters(Vec<SchemaFilter>);

impl Filters {
    /// Refuses the combinations SpiceDB refuses, with its messages.
    fn new(filters: Vec<SchemaFilter>) -> Result<Self, ServiceError> {
        for f in &filters {
            let refuse = |message: &str| {
                Err(ServiceError::InvalidFilter {
                    message: message.to_string(),
                    filter: filter_text(f),
                })
            };
            if !f.definition.is_empty() && !f.caveat.is_empty() {
                return refuse("cannot filter by both definition and caveat name");
            }
            if !f.relation.is_empty() {
                if f.definition.is_empty() {
                    return refuse("relation name match requires definition name match");
                }
                if !f.permission.is_empty() {
                    return refuse("cannot filter by both relation and permission name");
                }
            }
            if !f.permission.is_empty() && f.definition.is_empty() {
                return refuse("permission name match requires definition name match");
            }
        }
        Ok(Self(filters))
    }

    fn any_for_definitions(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(|f| !f.definition.is_empty())
    }

    fn any_for_caveats(&self) -> bool {
        self.0.is_empty() || self.0.iter().any(|f| !f.caveat.is_empty())
    }

    fn keeps_definition(&self, name: &str) -> bool {
        keeps(
            self.0
                .iter()
                .map(|f| (&f.definition, name.starts_with(&f.definition))),
        )
    }

    fn keeps_caveat(&self, name: &str) -> bool {
        keeps(
            self.0
                .iter()
                .map(|f| (&f.caveat, name.starts_with(&f.caveat))),
        )
    }

    fn keeps_relation(&self, definition: &str, name: &str) -> bool {
        keeps(self.0.iter().map(|f| {
            let matched = name.starts_with(&f.relation) && definition.starts_with(&f.definition);
            (&f.relation, matched)
        }))
    }

    fn keeps_permission(&self, definition: &str, name: &str) -> bool {
        keeps(self.0.iter().map(|f| {
            let matched = name.starts_with(&f.permission) && definition.starts_with(&f.definition);
            (&f.permission, matched)
        }))
    }
}

/// Kept when no filter sets the field, or one that does matches.
fn keeps<'a>(filters: impl Iterator<Item = (&'a String, bool)>) -> bool {
    let mut any_set = false;
    for (field, matched) in filters {
        if field.is_empty() {
            continue;
        }
        if matched {
            return true;
        }
        any_set = true;
    }
    !any_set
}

/// A filter in protobuf text form (SpiceDB's `filter` error metadata).
fn filter_text(f: &SchemaFilter) -> String {
    [
        ("optional_definition_name_filter", &f.definition),
        ("optional_caveat_name_filter", &f.caveat),
        ("optional_relation_name_filter", &f.relation),
        ("optional_permission_name_filter", &f.permission),
    ]
    .into_iter()
    .filter(|(_, value)| !value.is_empty())
    .map(|(name, value)| format!("{name}:{}", super::error::proto_text_quote(value)))
    .collect::<Vec<_>>()
    .join(" ")
}

// ---- descriptions ---------------------------------------------------------

fn reflect_definition(def: &Definition, filters: &Filters) -> ReflectedDefinition {
    let mut relations = Vec::new();
    let mut permissions = Vec::new();
    for member in &def.relations {
        if member.is_permission() {
            if filters.keeps_permission(&def.name, &member.name) {
                permissions.push(reflect_permission(&def.name, member));
            }
        } else if filters.keeps_relation(&def.name, &member.name) {
            relations.push(reflect_relation(&def.name, member));
        }
    }
    ReflectedDefinition {
        name: def.name.clone(),
        comment: def.doc.joined(),
        relations,
        permissions,
    }
}

fn reflect_relation(definition: &str, relation: &Relation) -> ReflectedRelation {
    ReflectedRelation {
        name: relation.name.clone(),
        comment: relation.doc.joined(),
        parent_definition: definition.to_string(),
        subject_types: relation
            .allowed_types()
            .iter()
            .map(reflect_subject_type)
            .collect(),
    }
}

fn reflect_subject_type(t: &AllowedSubjectType) -> ReflectedSubjectType {
    ReflectedSubjectType {
        definition: t.type_name.clone(),
        caveat: t.caveat.clone(),
        target: t.target.clone(),
    }
}

fn reflect_permission(definition: &str, permission: &Relation) -> ReflectedPermission {
    ReflectedPermission {
        name: permission.name.clone(),
        comment: permission.doc.joined(),
        parent_definition: definition.to_string(),
    }
}

fn reflect_caveat(caveat: &CaveatDefinition) -> ReflectedCaveat {
    ReflectedCaveat {
        name: caveat.name.clone(),
        comment: caveat.doc.joined(),
        parameters: caveat
            .parameters
            .iter()
            .map(|(name, t)| ReflectedParameter {
                name: name.clone(),
                type_name: t.to_string(),
                parent_caveat: caveat.name.clone(),
            })
            .collect(),
        expression: caveat.expression.clone(),
    }
}

/// Describes one change from the schema that has the item.
fn describe_change(
    change: &SchemaChange,
    existing: &CompiledSchema,
    comparison: &CompiledSchema,
) -> Result<SchemaDiff, ServiceError> {
    use SchemaChange as C;
    use SchemaDiff as D;
    let all = Filters(Vec::new());
    let definition = |schema: &CompiledSchema, name: &str| {
        schema
            .definition(name)
            .map(|d| reflect_definition(d, &all))
            .ok_or_else(|| missing(name))
    };
    let relation =
        |schema, def: &str, name: &str| member(schema, def, name).map(|r| reflect_relation(def, r));
    let permission = |schema, def: &str, name: &str| {
        member(schema, def, name).map(|r| reflect_permission(def, r))
    };
    let caveat = |schema: &CompiledSchema, name: &str| {
        schema
            .caveat(name)
            .map(reflect_caveat)
            .ok_or_else(|| missing(name))
    };
    let parameter = |schema: &CompiledSchema, cav: &str, name: &str| {
        caveat(schema, cav)?
            .parameters
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| missing(&format!("{cav}({name})")))
    };
    Ok(match change {
        C::DefinitionAdded(name) => D::DefinitionAdded(definition(comparison, name)?),
        C::DefinitionRemoved(name) => D::DefinitionRemoved(definition(existing, name)?),
        C::DefinitionDocChanged(name) => {
            D::DefinitionDocCommentChanged(definition(comparison, name)?)
        }
        C::CaveatAdded(name) => D::CaveatAdded(caveat(comparison, name)?),
        C::CaveatRemoved(name) => D::CaveatRemoved(caveat(existing, name)?),
        C::CaveatDocChanged(name) => D::CaveatDocCommentChanged(caveat(comparison, name)?),
        C::CaveatExprChanged(name) => D::CaveatExprChanged(caveat(comparison, name)?),
        C::RelationAdded {
            definition,
            relation: name,
        } => D::RelationAdded(relation(comparison, definition, name)?),
        C::RelationRemoved {
            definition,
            relation: name,
        } => D::RelationRemoved(relation(existing, definition, name)?),
        C::RelationDocChanged {
            definition,
            relation: name,
        } => D::RelationDocCommentChanged(relation(comparison, definition, name)?),
        C::SubjectTypeAdded {
            definition,
            relation: name,
            subject_type,
        } => D::RelationSubjectTypeAdded {
            relation: relation(comparison, definition, name)?,
            subject_type: reflect_subject_type(subject_type),
        },
        C::SubjectTypeRemoved {
            definition,
            relation: name,
            subject_type,
        } => D::RelationSubjectTypeRemoved {
            relation: relation(comparison, definition, name)?,
            subject_type: reflect_subject_type(subject_type),
        },
        C::PermissionAdded {
            definition,
            permission: name,
        } => D::PermissionAdded(permission(comparison, definition, name)?),
        C::PermissionRemoved {
            definition,
            permission: name,
        } => D::PermissionRemoved(permission(existing, definition, name)?),
        C::PermissionDocChanged {
            definition,
            permission: name,
        } => D::PermissionDocCommentChanged(permission(comparison, definition, name)?),
        C::PermissionExprChanged {
            definition,
            permission: name,
        } => D::PermissionExprChanged(permission(comparison, definition, name)?),
        C::CaveatParameterAdded {
            caveat: cav,
            parameter: name,
        } => D::CaveatParameterAdded(parameter(comparison, cav, name)?),
        C::CaveatParameterRemoved {
            caveat: cav,
            parameter: name,
        } => D::CaveatParameterRemoved(parameter(existing, cav, name)?),
        C::CaveatParameterTypeChanged {
            caveat: cav,
            parameter: name,
            previous,
        } => D::CaveatParameterTypeChanged {
            parameter: parameter(comparison, cav, name)?,
            previous_type: previous.to_string(),
        },
    })
}

fn member<'s>(
    schema: &'s CompiledSchema,
    definition: &str,
    name: &str,
) -> Result<&'s Relation, ServiceError> {
    schema
        .relation(definition, name)
        .ok_or_else(|| missing(&format!("{definition}#{name}")))
}

/// A change named an item its schema does not have: a bug in the diff.
fn missing(what: &str) -> ServiceError {
    ServiceError::Internal {
        message: format!("schema diff names `{what}`, which its schema lacks"),
    }
}

#[cfg(test)]
mod tests;
