//! What can reach what: for every relation and permission, the subject types
//! that can end up in its subject set, and the reverse edges ("entrypoints")
//! that LookupResources walks from a subject type back to resource relations.
//! Computed once per schema at compile time.

use std::collections::{BTreeSet, HashMap};

use super::compiled::*;

/// `(type, relation)`; the relation `...` stands for the object itself.
pub type RelationKey = (String, String);

/// The relation name that stands for "the object itself" in keys.
pub const ELLIPSIS: &str = "...";

/// One reverse edge: subjects of the key's kind feed `resource_relation` on
/// `resource_type` in the way `kind` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    pub resource_type: String,
    pub resource_relation: String,
    pub kind: EntrypointKind,
    /// The edge is under an intersection, an exclusion or `.all()`: what it
    /// finds is only a candidate that a check must confirm.
    pub conditional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrypointKind {
    /// The subject is stored on the relation.
    Direct,
    /// A `type:*` relationship on the relation covers the subject.
    Wildcard,
    /// The permission names the relation or permission the key denotes.
    Computed,
    /// The permission walks `tupleset` to objects of the key's type.
    Arrow { tupleset: String, function: ArrowFunction },
    /// The permission is `self` and the subject is the resource itself.
    SelfRef,
}

/// The precomputed graph.
#[derive(Debug, Clone, Default)]
pub struct Reachability {
    subject_types: HashMap<RelationKey, SubjectTypeSet>,
    entrypoints: HashMap<RelationKey, Vec<Entrypoint>>,
}

impl Reachability {
    /// The subject types (objects, wildcards and subject sets) that can be in
    /// the subject set of `type_name#relation`.
    pub fn subject_types(&self, type_name: &str, relation: &str) -> Option<&SubjectTypeSet> {
        self.subject_types
            .get(&(type_name.to_string(), relation.to_string()))
    }

    /// The edges leaving subjects `subject_type#subject_relation` (use
    /// `ELLIPSIS` for plain objects).
    pub fn entrypoints(&self, subject_type: &str, subject_relation: &str) -> &[Entrypoint] {
        self.entrypoints
            .get(&(subject_type.to_string(), subject_relation.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    pub(super) fn compute(schema: &CompiledSchema) -> Self {
        let mut graph = Reachability::default();
        for def in schema.definitions() {
            for relation in &def.relations {
                match &relation.body {
                    RelationBody::Direct(types) => graph.direct_edges(def, relation, types),
                    RelationBody::Permission(rewrite) => {
                        graph.rewrite_edges(schema, def, relation, rewrite, false)
                    }
                }
            }
        }
        graph.subject_types = subject_type_fixpoint(schema);
        graph
    }

    fn add(&mut self, key: RelationKey, entrypoint: Entrypoint) {
        let edges = self.entrypoints.entry(key).or_default();
        if !edges.contains(&entrypoint) {
            edges.push(entrypoint);
        }
    }

    fn direct_edges(&mut self, def: &Definition, relation: &Relation, types: &[AllowedSubjectType]) {
        for t in types {
            let (subject_relation, kind) = match &t.target {
                SubjectTarget::Object => (ELLIPSIS.to_string(), EntrypointKind::Direct),
                SubjectTarget::Wildcard => (ELLIPSIS.to_string(), EntrypointKind::Wildcard),
                SubjectTarget::Relation(r) => (r.clone(), EntrypointKind::Direct),
            };
            self.add(
                (t.type_name.clone(), subject_relation),
                Entrypoint {
                    resource_type: def.name.clone(),
                    resource_relation: relation.name.clone(),
                    kind,
                    conditional: false,
                },
            );
        }
    }

    fn rewrite_edges(
        &mut self,
        schema: &CompiledSchema,
        def: &Definition,
        relation: &Relation,
        rewrite: &Rewrite,
        conditional: bool,
    ) {
        let edge = |kind| Entrypoint {
            resource_type: def.name.clone(),
            resource_relation: relation.name.clone(),
            kind,
            conditional,
        };
        match rewrite {
            Rewrite::Union(children) => {
                for child in children {
                    self.rewrite_edges(schema, def, relation, child, conditional);
                }
            }
            Rewrite::Intersection(children) => {
                for child in children {
                    self.rewrite_edges(schema, def, relation, child, true);
                }
            }
            Rewrite::Exclusion(base, subtracted) => {
                self.rewrite_edges(schema, def, relation, base, true);
                self.rewrite_edges(schema, def, relation, subtracted, true);
            }
            Rewrite::Computed(target) => {
                self.add((def.name.clone(), target.clone()), edge(EntrypointKind::Computed));
            }
            Rewrite::Arrow {
                tupleset,
                computed,
                function,
            } => {
                let conditional = conditional || function.requires_all();
                let targets: BTreeSet<&str> = def
                    .relation(tupleset)
                    .map(Relation::allowed_types)
                    .unwrap_or_default()
                    .iter()
                    .map(|t| t.type_name.as_str())
                    .collect();
                for target in targets {
                    if schema.relation(target, computed).is_some() {
                        self.add(
                            (target.to_string(), computed.clone()),
                            Entrypoint {
                                conditional,
                                ..edge(EntrypointKind::Arrow {
                                    tupleset: tupleset.clone(),
                                    function: *function,
                                })
                            },
                        );
                    }
                }
            }
            Rewrite::SelfRef => {
                self.add((def.name.clone(), ELLIPSIS.to_string()), edge(EntrypointKind::SelfRef));
            }
            Rewrite::Nil => {}
        }
    }
}

/// Subject types per relation, grown until nothing changes (recursion in the
/// schema makes a single pass insufficient).
fn subject_type_fixpoint(schema: &CompiledSchema) -> HashMap<RelationKey, SubjectTypeSet> {
    let mut sets: HashMap<RelationKey, SubjectTypeSet> = HashMap::new();
    loop {
        let mut changed = false;
        for def in schema.definitions() {
            for relation in &def.relations {
                let mut found = SubjectTypeSet::new();
                match &relation.body {
                    RelationBody::Direct(types) => {
                        for t in types {
                            found.insert(SubjectTypeRef {
                                type_name: t.type_name.clone(),
                                target: t.target.clone(),
                            });
                            if let SubjectTarget::Relation(r) = &t.target {
                                extend_from(&mut found, &sets, &t.type_name, r);
                            }
                        }
                    }
                    RelationBody::Permission(rewrite) => {
                        collect_rewrite(schema, def, rewrite, &sets, &mut found)
                    }
                }
                let key = (def.name.clone(), relation.name.clone());
                let entry = sets.entry(key).or_default();
                if found.len() != entry.len() {
                    *entry = found;
                    changed = true;
                }
            }
        }
        if !changed {
            return sets;
        }
    }
}

fn extend_from(
    found: &mut SubjectTypeSet,
    sets: &HashMap<RelationKey, SubjectTypeSet>,
    type_name: &str,
    relation: &str,
) {
    if let Some(set) = sets.get(&(type_name.to_string(), relation.to_string())) {
        found.extend(set.iter().cloned());
    }
}

fn collect_rewrite(
    schema: &CompiledSchema,
    def: &Definition,
    rewrite: &Rewrite,
    sets: &HashMap<RelationKey, SubjectTypeSet>,
    found: &mut SubjectTypeSet,
) {
    match rewrite {
        Rewrite::Union(children) | Rewrite::Intersection(children) => {
            for child in children {
                collect_rewrite(schema, def, child, sets, found);
            }
        }
        Rewrite::Exclusion(base, _) => collect_rewrite(schema, def, base, sets, found),
        Rewrite::Computed(target) => extend_from(found, sets, &def.name, target),
        Rewrite::Arrow {
            tupleset, computed, ..
        } => {
            for t in def.relation(tupleset).map(Relation::allowed_types).unwrap_or_default() {
                if schema.relation(&t.type_name, computed).is_some() {
                    extend_from(found, sets, &t.type_name, computed);
                }
            }
        }
        Rewrite::SelfRef => {
            found.insert(SubjectTypeRef {
                type_name: def.name.clone(),
                target: SubjectTarget::Object,
            });
        }
        Rewrite::Nil => {}
    }
}
