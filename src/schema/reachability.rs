//! What can reach what: for every relation and permission, the subject types
//! that can end up in its subject set, and the reverse edges ("entrypoints")
//! that LookupResources walks from a subject type back to resource relations.
//! Computed once per schema at compile time.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::compiled::*;

/// `(type, relation)`; the relation `...` stands for the object itself.
pub type RelationKey = (String, String);

/// The relation name that stands for "the object itself" in keys.
pub const ELLIPSIS: &str = "...";

/// One reverse edge: subjects of the key's kind feed `resource_relation` on
/// `resource_type` in the way `kind` says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entrypoint {
    pub resource_type: String,
    pub resource_relation: String,
    pub kind: EntrypointKind,
    /// The edge is under an intersection, an exclusion or `.all()`: what it
    /// finds is only a candidate that a check must confirm.
    pub conditional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntrypointKind {
    /// The subject is stored on the relation.
    Direct,
    /// A `type:*` relationship on the relation covers the subject.
    Wildcard,
    /// The permission names the relation or permission the key denotes.
    Computed,
    /// The permission walks `tupleset` to objects of the key's type.
    Arrow {
        tupleset: String,
        function: ArrowFunction,
    },
    /// The permission is `self` and the subject is the resource itself.
    SelfRef,
}

/// The precomputed graph.
#[derive(Debug, Clone, Default)]
pub struct Reachability {
    subject_types: HashMap<RelationKey, SubjectTypeSet>,
    entrypoints: HashMap<RelationKey, Vec<Entrypoint>>,
    /// The entrypoints reversed: per `type#relation`, the keys whose
    /// subjects feed it directly (for `keys_reaching`, asked per lookup).
    fed_by: HashMap<RelationKey, Vec<RelationKey>>,
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

    /// The keys (`type#relation`, `type#...` for objects) whose subjects can
    /// reach `type_name#relation` by following entrypoints, itself included:
    /// a reverse walk toward it need not leave this set.
    pub fn keys_reaching(&self, type_name: &str, relation: &str) -> HashSet<RelationKey> {
        let target = (type_name.to_string(), relation.to_string());
        let mut reached = HashSet::from([target.clone()]);
        let mut pending = vec![target];
        while let Some(key) = pending.pop() {
            for fed in self.fed_by.get(&key).into_iter().flatten() {
                if reached.insert(fed.clone()) {
                    pending.push(fed.clone());
                }
            }
        }
        reached
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
        for edges in graph.entrypoints.values_mut() {
            edges.sort();
            edges.dedup();
        }
        for (key, edges) in &graph.entrypoints {
            for edge in edges {
                graph
                    .fed_by
                    .entry((edge.resource_type.clone(), edge.resource_relation.clone()))
                    .or_default()
                    .push(key.clone());
            }
        }
        graph.subject_types = subject_type_fixpoint(schema);
        graph
    }

    /// Records an edge; duplicates are removed once all edges are in.
    fn add(&mut self, key: RelationKey, entrypoint: Entrypoint) {
        self.entrypoints.entry(key).or_default().push(entrypoint);
    }

    fn direct_edges(
        &mut self,
        def: &Definition,
        relation: &Relation,
        types: &[AllowedSubjectType],
    ) {
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
                self.add(
                    (def.name.clone(), target.clone()),
                    edge(EntrypointKind::Computed),
                );
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
                self.add(
                    (def.name.clone(), ELLIPSIS.to_string()),
                    edge(EntrypointKind::SelfRef),
                );
            }
            Rewrite::Nil => {}
        }
    }
}

/// Subject types per relation. Each relation starts from the types it names
/// directly and absorbs the sets of the relations it depends on; a worklist
/// re-visits only the dependents of a set that grew, so recursion in the
/// schema costs proportionally to what changes, not passes over everything.
fn subject_type_fixpoint(schema: &CompiledSchema) -> HashMap<RelationKey, SubjectTypeSet> {
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for def in schema.definitions() {
        for relation in &def.relations {
            index.insert((def.name.as_str(), relation.name.as_str()), keys.len());
            keys.push((def.name.as_str(), relation.name.as_str()));
        }
    }
    let mut sets: Vec<SubjectTypeSet> = vec![SubjectTypeSet::new(); keys.len()];
    let mut depends_on: Vec<Vec<usize>> = vec![Vec::new(); keys.len()];
    for def in schema.definitions() {
        for relation in &def.relations {
            let node = index[&(def.name.as_str(), relation.name.as_str())];
            let mut deps = Vec::new();
            match &relation.body {
                RelationBody::Direct(types) => {
                    for t in types {
                        sets[node].insert(SubjectTypeRef {
                            type_name: t.type_name.clone(),
                            target: t.target.clone(),
                        });
                        if let SubjectTarget::Relation(r) = &t.target {
                            deps.extend(index.get(&(t.type_name.as_str(), r.as_str())));
                        }
                    }
                }
                RelationBody::Permission(rewrite) => {
                    rewrite_dependencies(schema, def, rewrite, &index, &mut deps, &mut sets[node]);
                }
            }
            depends_on[node] = deps;
        }
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); keys.len()];
    for (node, deps) in depends_on.iter().enumerate() {
        for &dep in deps {
            dependents[dep].push(node);
        }
    }
    let mut queued = vec![true; keys.len()];
    let mut worklist: Vec<usize> = (0..keys.len()).collect();
    while let Some(node) = worklist.pop() {
        queued[node] = false;
        let mut grown = false;
        for &dep in &depends_on[node] {
            if dep == node {
                continue;
            }
            let (from, into) = if dep < node {
                let (a, b) = sets.split_at_mut(node);
                (&a[dep], &mut b[0])
            } else {
                let (a, b) = sets.split_at_mut(dep);
                (&b[0], &mut a[node])
            };
            for t in from {
                grown |= into.insert(t.clone());
            }
        }
        if grown {
            for &dependent in &dependents[node] {
                if !queued[dependent] {
                    queued[dependent] = true;
                    worklist.push(dependent);
                }
            }
        }
    }
    keys.into_iter()
        .zip(sets)
        .map(|((d, r), set)| ((d.to_string(), r.to_string()), set))
        .collect()
}

/// The relations a permission's subject set is drawn from (the subtracted
/// side of an exclusion adds none), and `self` added directly.
fn rewrite_dependencies(
    schema: &CompiledSchema,
    def: &Definition,
    rewrite: &Rewrite,
    index: &HashMap<(&str, &str), usize>,
    deps: &mut Vec<usize>,
    own: &mut SubjectTypeSet,
) {
    match rewrite {
        Rewrite::Union(children) | Rewrite::Intersection(children) => {
            for child in children {
                rewrite_dependencies(schema, def, child, index, deps, own);
            }
        }
        Rewrite::Exclusion(base, _) => rewrite_dependencies(schema, def, base, index, deps, own),
        Rewrite::Computed(target) => deps.extend(index.get(&(def.name.as_str(), target.as_str()))),
        Rewrite::Arrow {
            tupleset, computed, ..
        } => {
            for t in def
                .relation(tupleset)
                .map(Relation::allowed_types)
                .unwrap_or_default()
            {
                if schema.relation(&t.type_name, computed).is_some() {
                    deps.extend(index.get(&(t.type_name.as_str(), computed.as_str())));
                }
            }
        }
        Rewrite::SelfRef => {
            own.insert(SubjectTypeRef {
                type_name: def.name.clone(),
                target: SubjectTarget::Object,
            });
        }
        Rewrite::Nil => {}
    }
}
