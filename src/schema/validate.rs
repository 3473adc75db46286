//! Type checks that need the whole schema, as SpiceDB's type system runs them
//! after translation: names in expressions and type lists must exist, arrows
//! must walk relations without wildcards, subject sets must not reach
//! wildcards, caveats must exist, permissions must not alias each other in a
//! cycle, and `use typechecking` annotations must be complete.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::ast::{ExprAst, Member, Name, PermissionAst, TypeRefAst, TypeTargetAst};
use super::compiled::*;
use super::diagnostic::{Diagnostic, ErrorKind};
use super::print;

/// The syntax of one compiled definition's members, in the same order as its
/// relations (partials already spliced), so errors can point at source text.
pub type MemberSources<'a> = Vec<&'a Member>;

pub fn validate(
    schema: &CompiledSchema,
    sources: &[MemberSources<'_>],
    typechecking: bool,
) -> Vec<Diagnostic> {
    let mut v = Validator {
        schema,
        diagnostics: Vec::new(),
        wildcard_cache: HashMap::new(),
    };
    for (def, members) in schema.definitions().iter().zip(sources) {
        for (relation, member) in def.relations.iter().zip(members) {
            match member {
                Member::Relation(ast) => v.relation_types(def, relation, &ast.types),
                Member::Permission(ast) => {
                    v.expression(def, &ast.expr);
                    if typechecking {
                        v.type_annotations(def, ast);
                    }
                }
                Member::PartialRef(_) | Member::UntypedRelation(_) => {}
            }
        }
        v.alias_cycles(def, members);
    }
    v.diagnostics
}

struct Validator<'s> {
    schema: &'s CompiledSchema,
    diagnostics: Vec<Diagnostic>,
    /// (type, relation) → the wildcard it reaches through subject sets, if any.
    wildcard_cache: HashMap<(String, String), Option<String>>,
}

impl Validator<'_> {
    fn error(&mut self, kind: ErrorKind, name: &Name, message: String) {
        self.diagnostics
            .push(Diagnostic::new(kind, name.span, message));
    }

    fn expression(&mut self, def: &Definition, expr: &ExprAst) {
        match expr {
            ExprAst::Union(operands)
            | ExprAst::Intersection(operands)
            | ExprAst::Exclusion(operands) => {
                for operand in operands {
                    self.expression(def, operand);
                }
            }
            ExprAst::Computed(name) if name.text == "self" && def.relation("self").is_none() => {
                self.error(
                    ErrorKind::SelfNotEnabled,
                    name,
                    format!(
                        "relation/permission `self` not found under definition `{}`: to refer to the resource itself, add `use self` at the top of the schema",
                        def.name
                    ),
                );
            }
            ExprAst::Computed(name) => {
                if def.relation(&name.text).is_none() {
                    self.error(
                        ErrorKind::UnknownRelation,
                        name,
                        format!(
                            "relation/permission `{}` not found under definition `{}`",
                            name.text, def.name
                        ),
                    );
                }
            }
            ExprAst::Arrow { base, .. } => self.arrow_left_side(def, base),
            ExprAst::Nil(_) | ExprAst::SelfRef(_) => {}
        }
    }

    fn arrow_left_side(&mut self, def: &Definition, base: &Name) {
        let Some(tupleset) = def.relation(&base.text) else {
            self.error(
                ErrorKind::UnknownRelation,
                base,
                format!(
                    "relation/permission `{}` not found under definition `{}`",
                    base.text, def.name
                ),
            );
            return;
        };
        if tupleset.is_permission() {
            self.error(
                ErrorKind::ArrowOnPermission,
                base,
                format!(
                    "under definition `{}`, `{}` is a permission: the left side of an arrow must be a relation",
                    def.name, base.text
                ),
            );
            return;
        }
        if let Some(wildcard) = self.reaches_wildcard(&def.name, &base.text) {
            self.error(
                ErrorKind::ArrowOnWildcard,
                base,
                format!(
                    "under definition `{}`, relation `{}` reaches the wildcard `{wildcard}:*`: wildcard relations cannot be used on the left side of arrows",
                    def.name, base.text
                ),
            );
        }
    }

    fn relation_types(&mut self, def: &Definition, relation: &Relation, types: &[TypeRefAst]) {
        let mut seen = HashSet::new();
        for (allowed, ast) in relation.allowed_types().iter().zip(types) {
            if !seen.insert(allowed) {
                self.error(
                    ErrorKind::DuplicateSubjectType,
                    &ast.type_name,
                    format!(
                        "found duplicate allowed subject type `{}` on relation `{}` under definition `{}`",
                        print::allowed_type_text(allowed),
                        relation.name,
                        def.name
                    ),
                );
                continue;
            }
            self.subject_type(def, relation, allowed, ast);
            self.caveat_reference(relation, ast);
        }
    }

    fn subject_type(
        &mut self,
        def: &Definition,
        relation: &Relation,
        allowed: &AllowedSubjectType,
        ast: &TypeRefAst,
    ) {
        let Some(subject_def) = self.schema.definition(&allowed.type_name) else {
            self.error(
                ErrorKind::UnknownDefinition,
                &ast.type_name,
                format!(
                    "could not lookup definition `{}` for relation `{}`: object definition `{}` not found",
                    allowed.type_name, relation.name, allowed.type_name
                ),
            );
            return;
        };
        let (SubjectTarget::Relation(subject_relation), TypeTargetAst::Relation(rel_name)) =
            (&allowed.target, &ast.target)
        else {
            return;
        };
        if subject_def.relation(subject_relation).is_none() {
            self.error(
                ErrorKind::UnknownSubjectRelation,
                rel_name,
                format!(
                    "relation/permission `{subject_relation}` not found under definition `{}`",
                    allowed.type_name
                ),
            );
            return;
        }
        // SpiceDB checks transitive wildcards only for subject sets on other types.
        if allowed.type_name == def.name {
            return;
        }
        if let Some(wildcard) = self.reaches_wildcard(&allowed.type_name, subject_relation) {
            self.error(
                ErrorKind::WildcardThroughSubjectRelation,
                &ast.type_name,
                format!(
                    "for relation `{}` under definition `{}`: `{}#{subject_relation}` reaches the wildcard `{wildcard}:*`; wildcard relations cannot be transitively included",
                    relation.name, def.name, allowed.type_name
                ),
            );
        }
    }

    fn caveat_reference(&mut self, relation: &Relation, ast: &TypeRefAst) {
        let Some(caveat) = &ast.caveat else { return };
        if self.schema.caveat(&caveat.text).is_some() {
            return;
        }
        if caveat.text == "expiration" {
            self.error(
                ErrorKind::ExpirationNotEnabled,
                caveat,
                format!(
                    "caveat `expiration` not found for relation `{}`: to require expiration, add `use expiration` at the top of the schema",
                    relation.name
                ),
            );
        } else {
            self.error(
                ErrorKind::UnknownCaveat,
                caveat,
                format!(
                    "could not lookup caveat `{}` for relation `{}`: caveat not found",
                    caveat.text, relation.name
                ),
            );
        }
    }

    /// The wildcard type that `type#relation` allows directly or through
    /// subject sets, if any.
    fn reaches_wildcard(&mut self, type_name: &str, relation: &str) -> Option<String> {
        let mut encountered = HashSet::new();
        self.reaches_wildcard_from(type_name, relation, &mut encountered)
    }

    fn reaches_wildcard_from(
        &mut self,
        type_name: &str,
        relation: &str,
        encountered: &mut HashSet<(String, String)>,
    ) -> Option<String> {
        let key = (type_name.to_string(), relation.to_string());
        if let Some(cached) = self.wildcard_cache.get(&key) {
            return cached.clone();
        }
        if !encountered.insert(key.clone()) {
            return None;
        }
        let schema = self.schema;
        let allowed = schema
            .relation(type_name, relation)
            .map(Relation::allowed_types)
            .unwrap_or_default();
        let mut found = None;
        for t in allowed {
            match &t.target {
                SubjectTarget::Wildcard => found = Some(t.type_name.clone()),
                SubjectTarget::Relation(r) => {
                    found = self.reaches_wildcard_from(&t.type_name, r, encountered);
                }
                SubjectTarget::Object => {}
            }
            if found.is_some() {
                break;
            }
        }
        self.wildcard_cache.insert(key, found.clone());
        found
    }

    /// `permission a = b` where `b` is a permission is an alias; a ring of
    /// aliases can never be evaluated.
    fn alias_cycles(&mut self, def: &Definition, members: &[&Member]) {
        let alias_of = |name: &str| -> Option<&str> {
            match &def.relation(name)?.body {
                RelationBody::Permission(Rewrite::Union(children)) => match children.as_slice() {
                    [Rewrite::Computed(target)] if def.is_permission(target) => Some(target),
                    _ => None,
                },
                _ => None,
            }
        };
        let mut in_cycle = BTreeSet::new();
        for relation in &def.relations {
            let mut seen = vec![relation.name.as_str()];
            let mut current = relation.name.as_str();
            while let Some(next) = alias_of(current) {
                if next == relation.name {
                    in_cycle.insert(relation.name.clone());
                    break;
                }
                if seen.contains(&next) {
                    break;
                }
                seen.push(next);
                current = next;
            }
        }
        let Some(first) = members.iter().find_map(|m| match m {
            Member::Permission(p) if in_cycle.contains(&p.name.text) => Some(&p.name),
            _ => None,
        }) else {
            return;
        };
        let names: Vec<&str> = in_cycle.iter().map(String::as_str).collect();
        self.error(
            ErrorKind::PermissionCycle,
            first,
            format!(
                "under definition `{}`, there exists a cycle in permissions: {}",
                def.name,
                names.join(", ")
            ),
        );
    }

    /// Under `use typechecking`, a permission's annotation must name every
    /// object type that can reach it.
    fn type_annotations(&mut self, def: &Definition, ast: &PermissionAst) {
        if ast.annotations.is_empty() {
            return;
        }
        let Some(reachable) = self
            .schema
            .reachability()
            .subject_types(&def.name, &ast.name.text)
        else {
            return;
        };
        let annotated: Vec<&str> = ast.annotations.iter().map(|n| n.text.as_str()).collect();
        let missing: BTreeSet<&str> = reachable
            .iter()
            .filter(|t| !matches!(t.target, SubjectTarget::Relation(_)))
            .map(|t| t.type_name.as_str())
            .filter(|t| !annotated.contains(t))
            .collect();
        if let Some(first) = missing.first() {
            self.error(
                ErrorKind::IncompleteTypeAnnotation,
                &ast.name,
                format!(
                    "incomplete type annotation on permission `{}` in definition `{}`: `{first}` can reach it but is not in the annotation",
                    ast.name.text, def.name
                ),
            );
        }
    }
}
