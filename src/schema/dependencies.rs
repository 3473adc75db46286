//! Which relations feed which permissions, walked as SpiceDB's reachability
//! graph walks them for DependentRelations (forward: what a permission is
//! computed from) and ComputablePermissions (backward: what a relation or
//! subject type can grant). Every branch counts, including the subtracted
//! side of an exclusion and both sides of an intersection: the question is
//! which relations take part, not who is granted.

use std::collections::{BTreeSet, VecDeque};

use super::compiled::*;
use super::reachability::{ELLIPSIS, EntrypointKind, RelationKey};

/// The relations and permissions `definition#permission` is computed from,
/// transitively, the start itself included: the relations and permissions
/// its expression names, each arrow's tupleset relation and what the arrow
/// reaches on every type the tupleset allows (where that type has it), and
/// the relations of subject sets (`group#member`) that relations on the way
/// allow. An arrow's tupleset relation is listed but not walked into, as in
/// SpiceDB.
pub fn dependent_relations(
    schema: &CompiledSchema,
    definition: &str,
    permission: &str,
) -> BTreeSet<RelationKey> {
    let mut found = BTreeSet::new();
    let mut walked = BTreeSet::new();
    let mut queue = VecDeque::from([(definition.to_string(), permission.to_string())]);
    while let Some(key) = queue.pop_front() {
        if !walked.insert(key.clone()) {
            continue;
        }
        found.insert(key.clone());
        let Some(def) = schema.definition(&key.0) else {
            continue;
        };
        let Some(relation) = def.relation(&key.1) else {
            continue;
        };
        match &relation.body {
            RelationBody::Direct(types) => {
                for t in types {
                    if let SubjectTarget::Relation(r) = &t.target {
                        queue.push_back((t.type_name.clone(), r.clone()));
                    }
                }
            }
            RelationBody::Permission(rewrite) => {
                rewrite_targets(schema, def, rewrite, &mut |edge| match edge {
                    Edge::Walk(key) => queue.push_back(key),
                    Edge::List(key) => {
                        found.insert(key);
                    }
                });
            }
        }
    }
    found
}

/// What one leaf of a permission leads to.
enum Edge {
    /// A relation or permission to list and walk into.
    Walk(RelationKey),
    /// A relation to list only (an arrow's tupleset).
    List(RelationKey),
}

fn rewrite_targets(
    schema: &CompiledSchema,
    def: &Definition,
    rewrite: &Rewrite,
    emit: &mut dyn FnMut(Edge),
) {
    match rewrite {
        Rewrite::Union(children) | Rewrite::Intersection(children) => {
            for child in children {
                rewrite_targets(schema, def, child, emit);
            }
        }
        Rewrite::Exclusion(base, subtracted) => {
            rewrite_targets(schema, def, base, emit);
            rewrite_targets(schema, def, subtracted, emit);
        }
        Rewrite::Computed(name) => emit(Edge::Walk((def.name.clone(), name.clone()))),
        Rewrite::Arrow {
            tupleset, computed, ..
        } => {
            let types = def
                .relation(tupleset)
                .map_or(&[][..], Relation::allowed_types);
            let mut reaches_any = false;
            for t in types {
                if schema.relation(&t.type_name, computed).is_some() {
                    reaches_any = true;
                    emit(Edge::Walk((t.type_name.clone(), computed.clone())));
                }
            }
            // SpiceDB records the tupleset with the arrow's entrypoints, so
            // an arrow that reaches nothing does not list it.
            if reaches_any {
                emit(Edge::List((def.name.clone(), tupleset.clone())));
            }
        }
        Rewrite::SelfRef | Rewrite::Nil => {}
    }
}

/// The relations and permissions that subjects of `definition#relation`
/// (`relation` None: objects of `definition` themselves) can reach,
/// transitively: relations that allow them directly or as a subject set,
/// permissions that name what they reach, arrows that walk to it. A
/// wildcard `type:*` counts as reaching every relation of `type` here, as
/// SpiceDB matches wildcards by type alone. The start itself is listed if
/// it reaches itself.
pub fn computable_from(
    schema: &CompiledSchema,
    definition: &str,
    relation: Option<&str>,
) -> BTreeSet<RelationKey> {
    let reachability = schema.reachability();
    let start = (
        definition.to_string(),
        relation.unwrap_or(ELLIPSIS).to_string(),
    );
    let mut found = BTreeSet::new();
    let mut queue = VecDeque::from([start]);
    let mut seen = BTreeSet::new();
    while let Some((type_name, relation)) = queue.pop_front() {
        if !seen.insert((type_name.clone(), relation.clone())) {
            continue;
        }
        let wildcards = (relation != ELLIPSIS).then(|| {
            reachability
                .entrypoints(&type_name, ELLIPSIS)
                .iter()
                .filter(|e| e.kind == EntrypointKind::Wildcard)
        });
        let edges = reachability
            .entrypoints(&type_name, &relation)
            .iter()
            .chain(wildcards.into_iter().flatten());
        for edge in edges {
            let reached = (edge.resource_type.clone(), edge.resource_relation.clone());
            if found.insert(reached.clone()) {
                queue.push_back(reached);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
