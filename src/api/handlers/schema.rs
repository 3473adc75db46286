//! SchemaService: reading and writing the schema, and reflecting on it
//! (ReflectSchema, ComputablePermissions, DependentRelations, DiffSchema).

use tonic::{Request, Response, Status};

use super::Api;
use crate::api::proto::v1;
use crate::api::proto::v1::schema_service_server::SchemaService;
use crate::api::validate;
use crate::datastore::Datastore;
use crate::schema::SubjectTarget;
use crate::service::{
    ReflectedCaveat, ReflectedDefinition, ReflectedParameter, ReflectedPermission,
    ReflectedRelation, ReflectedSubjectType, RelationReference, SchemaDiff, SchemaFilter,
};

#[tonic::async_trait]
impl<D: Datastore> SchemaService for Api<D> {
    async fn read_schema(
        &self,
        request: Request<v1::ReadSchemaRequest>,
    ) -> Result<Response<v1::ReadSchemaResponse>, Status> {
        validate::read_schema(request.get_ref())?;
        let (schema_text, revision) = self.services.read_schema().await?;
        Ok(Response::new(v1::ReadSchemaResponse {
            schema_text,
            read_at: Some(self.token(revision)),
        }))
    }

    async fn write_schema(
        &self,
        request: Request<v1::WriteSchemaRequest>,
    ) -> Result<Response<v1::WriteSchemaResponse>, Status> {
        let req = request.into_inner();
        validate::write_schema(&req)?;
        let revision = self.services.write_schema(&req.schema).await?;
        Ok(Response::new(v1::WriteSchemaResponse {
            written_at: Some(self.token(revision)),
        }))
    }

    async fn reflect_schema(
        &self,
        request: Request<v1::ReflectSchemaRequest>,
    ) -> Result<Response<v1::ReflectSchemaResponse>, Status> {
        let req = request.into_inner();
        validate::reflect_schema(&req)?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let filters = req
            .optional_filters
            .into_iter()
            .map(|f| SchemaFilter {
                definition: f.optional_definition_name_filter,
                caveat: f.optional_caveat_name_filter,
                relation: f.optional_relation_name_filter,
                permission: f.optional_permission_name_filter,
            })
            .collect();
        let (schema, revision) = self.services.reflect_schema(filters, consistency).await?;
        Ok(Response::new(v1::ReflectSchemaResponse {
            definitions: schema.definitions.into_iter().map(definition).collect(),
            caveats: schema.caveats.into_iter().map(caveat).collect(),
            read_at: Some(self.token(revision)),
        }))
    }

    async fn computable_permissions(
        &self,
        request: Request<v1::ComputablePermissionsRequest>,
    ) -> Result<Response<v1::ComputablePermissionsResponse>, Status> {
        let req = request.into_inner();
        validate::computable_permissions(&req)?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let (found, revision) = self
            .services
            .computable_permissions(
                &req.definition_name,
                &req.relation_name,
                &req.optional_definition_name_filter,
                consistency,
            )
            .await?;
        Ok(Response::new(v1::ComputablePermissionsResponse {
            permissions: found.into_iter().map(relation_reference).collect(),
            read_at: Some(self.token(revision)),
        }))
    }

    async fn dependent_relations(
        &self,
        request: Request<v1::DependentRelationsRequest>,
    ) -> Result<Response<v1::DependentRelationsResponse>, Status> {
        let req = request.into_inner();
        validate::dependent_relations(&req)?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let (found, revision) = self
            .services
            .dependent_relations(&req.definition_name, &req.permission_name, consistency)
            .await?;
        Ok(Response::new(v1::DependentRelationsResponse {
            relations: found.into_iter().map(relation_reference).collect(),
            read_at: Some(self.token(revision)),
        }))
    }

    async fn diff_schema(
        &self,
        request: Request<v1::DiffSchemaRequest>,
    ) -> Result<Response<v1::DiffSchemaResponse>, Status> {
        let req = request.into_inner();
        validate::diff_schema(&req)?;
        let consistency = self.consistency(req.consistency.as_ref())?;
        let (diffs, revision) = self
            .services
            .diff_schema(&req.comparison_schema, consistency)
            .await?;
        Ok(Response::new(v1::DiffSchemaResponse {
            diffs: diffs
                .into_iter()
                .map(|d| v1::ReflectionSchemaDiff {
                    diff: Some(diff(d)),
                })
                .collect(),
            read_at: Some(self.token(revision)),
        }))
    }
}

// ---- service → proto ------------------------------------------------------

fn definition(d: ReflectedDefinition) -> v1::ReflectionDefinition {
    v1::ReflectionDefinition {
        name: d.name,
        comment: d.comment,
        relations: d.relations.into_iter().map(relation).collect(),
        permissions: d.permissions.into_iter().map(permission).collect(),
    }
}

fn relation(r: ReflectedRelation) -> v1::ReflectionRelation {
    v1::ReflectionRelation {
        name: r.name,
        comment: r.comment,
        parent_definition_name: r.parent_definition,
        subject_types: r.subject_types.into_iter().map(subject_type).collect(),
    }
}

/// SpiceDB sets the `typeref` oneof for a plain object type but leaves its
/// value false: clients see `is_terminal_subject: false`, present.
fn subject_type(t: ReflectedSubjectType) -> v1::ReflectionTypeReference {
    use v1::reflection_type_reference::Typeref;
    v1::ReflectionTypeReference {
        subject_definition_name: t.definition,
        optional_caveat_name: t.caveat.unwrap_or_default(),
        typeref: Some(match t.target {
            SubjectTarget::Object => Typeref::IsTerminalSubject(false),
            SubjectTarget::Wildcard => Typeref::IsPublicWildcard(true),
            SubjectTarget::Relation(r) => Typeref::OptionalRelationName(r),
        }),
    }
}

fn permission(p: ReflectedPermission) -> v1::ReflectionPermission {
    v1::ReflectionPermission {
        name: p.name,
        comment: p.comment,
        parent_definition_name: p.parent_definition,
    }
}

fn caveat(c: ReflectedCaveat) -> v1::ReflectionCaveat {
    v1::ReflectionCaveat {
        name: c.name,
        comment: c.comment,
        parameters: c.parameters.into_iter().map(parameter).collect(),
        expression: c.expression,
    }
}

fn parameter(p: ReflectedParameter) -> v1::ReflectionCaveatParameter {
    v1::ReflectionCaveatParameter {
        name: p.name,
        r#type: p.type_name,
        parent_caveat_name: p.parent_caveat,
    }
}

fn relation_reference(r: RelationReference) -> v1::ReflectionRelationReference {
    v1::ReflectionRelationReference {
        definition_name: r.definition,
        relation_name: r.relation,
        is_permission: r.is_permission,
    }
}

fn diff(d: SchemaDiff) -> v1::reflection_schema_diff::Diff {
    use v1::reflection_schema_diff::Diff;
    match d {
        SchemaDiff::DefinitionAdded(d) => Diff::DefinitionAdded(definition(d)),
        SchemaDiff::DefinitionRemoved(d) => Diff::DefinitionRemoved(definition(d)),
        SchemaDiff::DefinitionDocCommentChanged(d) => {
            Diff::DefinitionDocCommentChanged(definition(d))
        }
        SchemaDiff::RelationAdded(r) => Diff::RelationAdded(relation(r)),
        SchemaDiff::RelationRemoved(r) => Diff::RelationRemoved(relation(r)),
        SchemaDiff::RelationDocCommentChanged(r) => Diff::RelationDocCommentChanged(relation(r)),
        SchemaDiff::RelationSubjectTypeAdded {
            relation: r,
            subject_type: t,
        } => Diff::RelationSubjectTypeAdded(v1::ReflectionRelationSubjectTypeChange {
            relation: Some(relation(r)),
            changed_subject_type: Some(subject_type(t)),
        }),
        SchemaDiff::RelationSubjectTypeRemoved {
            relation: r,
            subject_type: t,
        } => Diff::RelationSubjectTypeRemoved(v1::ReflectionRelationSubjectTypeChange {
            relation: Some(relation(r)),
            changed_subject_type: Some(subject_type(t)),
        }),
        SchemaDiff::PermissionAdded(p) => Diff::PermissionAdded(permission(p)),
        SchemaDiff::PermissionRemoved(p) => Diff::PermissionRemoved(permission(p)),
        SchemaDiff::PermissionDocCommentChanged(p) => {
            Diff::PermissionDocCommentChanged(permission(p))
        }
        SchemaDiff::PermissionExprChanged(p) => Diff::PermissionExprChanged(permission(p)),
        SchemaDiff::CaveatAdded(c) => Diff::CaveatAdded(caveat(c)),
        SchemaDiff::CaveatRemoved(c) => Diff::CaveatRemoved(caveat(c)),
        SchemaDiff::CaveatDocCommentChanged(c) => Diff::CaveatDocCommentChanged(caveat(c)),
        SchemaDiff::CaveatExprChanged(c) => Diff::CaveatExprChanged(caveat(c)),
        SchemaDiff::CaveatParameterAdded(p) => Diff::CaveatParameterAdded(parameter(p)),
        SchemaDiff::CaveatParameterRemoved(p) => Diff::CaveatParameterRemoved(parameter(p)),
        SchemaDiff::CaveatParameterTypeChanged {
            parameter: p,
            previous_type,
        } => Diff::CaveatParameterTypeChanged(v1::ReflectionCaveatParameterTypeChange {
            parameter: Some(parameter(p)),
            previous_type,
        }),
    }
}
