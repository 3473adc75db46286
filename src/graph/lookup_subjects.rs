//! LookupSubjects: every subject of one type (and subject relation) in
//! `type:id#relation`, as a `SubjectSet` with wildcards, exclusions and
//! caveats. Walks the rewrite forward from the resource (inventory §4.3):
//! stored subjects, subject sets expanded recursively, computed usersets,
//! arrows (`.any()` unions the targets, `.all()` intersects them), union,
//! intersection, exclusion, `nil` and `self`.
//!
//! Its reads (`resource_type:id#relation`, one per node) go through the
//! dispatcher as read steps (`dispatch::read`): cached, and in a cluster
//! answered by each step's owner.
//!
//! Within one request every `type:id#relation` is computed once. A
//! relation that reaches itself again (cyclic data) contributes nothing on
//! the inner visit, which gives the least fixed point for unions: where
//! SpiceDB runs into its depth limit and fails, Trellis answers. Results
//! computed while such a cycle was still open are not reused elsewhere,
//! because they may lack what the open node later adds.

use std::collections::HashMap;

use crate::dispatch::{BoxFuture, CheckError, Dispatcher, ReadQuery, ReadRequest, ReadResult};
use crate::model::{ELLIPSIS, ObjectRef, Revision, SubjectRef};
use crate::schema::{ArrowFunction, CompiledSchema, RelationBody, Rewrite};

use super::Membership;
use super::subject_set::SubjectSet;

/// The question: subjects of `subject_type#subject_relation` in
/// `resource#relation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupSubjectsRequest {
    pub resource: ObjectRef,
    pub relation: String,
    pub subject_type: String,
    /// `...` for plain objects.
    pub subject_relation: String,
    pub revision: Revision,
    /// Nested relations followed before the walk fails.
    pub max_depth: u32,
}

/// Answers one LookupSubjects request, reading through `dispatcher`.
pub async fn lookup_subjects(
    dispatcher: &dyn Dispatcher,
    schema: &CompiledSchema,
    request: &LookupSubjectsRequest,
) -> Result<SubjectSet, CheckError> {
    let resource = &request.resource;
    super::resolve_relation(schema, &resource.object_type, &request.relation)?;
    let mut walk = Walk {
        dispatcher,
        schema,
        request,
        memo: HashMap::new(),
        reaches: HashMap::new(),
        open: HashMap::new(),
    };
    let node = Node {
        object_type: resource.object_type.clone(),
        object_id: resource.object_id.clone(),
        relation: request.relation.clone(),
    };
    let (set, _) = walk.node(node, request.max_depth).await?;
    Ok(set)
}

/// `type:id#relation`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    object_type: String,
    object_id: String,
    relation: String,
}

/// A node's subjects, and the stack position of the oldest still-open
/// node whose visit was cut short while computing them (`usize::MAX` if
/// none).
type Partial = (SubjectSet, usize);

const NO_CUT: usize = usize::MAX;

struct Walk<'a> {
    dispatcher: &'a dyn Dispatcher,
    schema: &'a CompiledSchema,
    request: &'a LookupSubjectsRequest,
    memo: HashMap<Node, SubjectSet>,
    /// `can_reach` answers, per `type#relation`.
    reaches: HashMap<(String, String), bool>,
    /// Nodes being computed, with their stack positions.
    open: HashMap<Node, usize>,
}

impl Walk<'_> {
    /// The relationships of `node`'s object on `relation`, any subject type.
    async fn read(&self, node: &Node, relation: &str) -> Result<ReadResult, CheckError> {
        let query = ReadQuery::ByResource {
            resource_type: node.object_type.clone(),
            resource_ids: vec![node.object_id.clone()],
            relation: relation.to_string(),
        };
        let step = ReadRequest::new(query, self.request.revision);
        self.dispatcher.read(step).await
    }

    fn node(&mut self, node: Node, depth: u32) -> BoxFuture<'_, Result<Partial, CheckError>> {
        Box::pin(async move {
            if let Some(done) = self.memo.get(&node) {
                return Ok((done.clone(), NO_CUT));
            }
            if let Some(&position) = self.open.get(&node) {
                return Ok((SubjectSet::new(), position));
            }
            if depth == 0 {
                return Err(CheckError::MaxDepthExceeded);
            }
            let position = self.open.len();
            self.open.insert(node.clone(), position);
            let outcome = self.compute(&node, depth).await;
            self.open.remove(&node);
            let (mut set, cut) = outcome?;
            // The identity: `X#r` is in the subject set of `X#r`.
            if node.object_type == self.request.subject_type
                && node.relation == self.request.subject_relation
            {
                set.add(&node.object_id, Membership::Member);
            }
            if cut >= position {
                self.memo.insert(node, set.clone());
                return Ok((set, NO_CUT));
            }
            Ok((set, cut))
        })
    }

    async fn compute(&mut self, node: &Node, depth: u32) -> Result<Partial, CheckError> {
        let Some(relation) = self.schema.relation(&node.object_type, &node.relation) else {
            return Ok((SubjectSet::new(), NO_CUT));
        };
        match &relation.body {
            RelationBody::Direct(_) => self.direct(node, depth).await,
            RelationBody::Permission(rewrite) => self.rewrite(node, rewrite, depth).await,
        }
    }

    /// Whether subjects of `type#relation` can include the requested kind
    /// (directly, through subject sets or computed relations, or as a
    /// wildcard), so a subject set that cannot is not expanded.
    fn can_reach(&mut self, object_type: &str, relation: &str) -> bool {
        let key = (object_type.to_string(), relation.to_string());
        if let Some(&known) = self.reaches.get(&key) {
            return known;
        }
        let wanted = &self.request.subject_type;
        let reaching = self
            .schema
            .reachability()
            .keys_reaching(object_type, relation);
        let known = reaching.contains(&(wanted.clone(), self.request.subject_relation.clone()))
            || reaching.contains(&(wanted.clone(), ELLIPSIS.to_string()));
        self.reaches.insert(key, known);
        known
    }

    /// Whether a stored subject is one of those asked for. A wildcard
    /// `type:*` covers subject sets of the type too, as it does in Check.
    fn is_wanted(&self, subject: &SubjectRef) -> bool {
        subject.object.object_type == self.request.subject_type
            && (subject.relation == self.request.subject_relation || subject.is_wildcard())
    }

    async fn direct(&mut self, node: &Node, depth: u32) -> Result<Partial, CheckError> {
        let rels = self.read(node, &node.relation).await?;
        let mut set = SubjectSet::new();
        let mut cut = NO_CUT;
        for rel in rels.relationships.iter() {
            let subject = &rel.subject;
            let through = Membership::through(rel.caveat.as_ref());
            if self.is_wanted(subject) {
                set.add(&subject.object.object_id, through.clone());
            }
            if subject.relation != ELLIPSIS
                && self.can_reach(&subject.object.object_type, &subject.relation)
            {
                let inner = Node {
                    object_type: subject.object.object_type.clone(),
                    object_id: subject.object.object_id.clone(),
                    relation: subject.relation.clone(),
                };
                let (found, inner_cut) = self.node(inner, depth - 1).await?;
                cut = cut.min(inner_cut);
                set.union_with(found.within(&through));
            }
        }
        Ok((set, cut))
    }

    fn rewrite<'s>(
        &'s mut self,
        node: &'s Node,
        rewrite: &'s Rewrite,
        depth: u32,
    ) -> BoxFuture<'s, Result<Partial, CheckError>> {
        Box::pin(async move {
            match rewrite {
                Rewrite::Union(children) => {
                    let mut set = SubjectSet::new();
                    let mut cut = NO_CUT;
                    for child in children {
                        let (found, c) = self.rewrite(node, child, depth).await?;
                        cut = cut.min(c);
                        set.union_with(found);
                    }
                    Ok((set, cut))
                }
                Rewrite::Intersection(children) => {
                    let mut result: Option<SubjectSet> = None;
                    let mut cut = NO_CUT;
                    for child in children {
                        let (found, c) = self.rewrite(node, child, depth).await?;
                        cut = cut.min(c);
                        match &mut result {
                            None => result = Some(found),
                            Some(set) => set.intersect(&found),
                        }
                        if result.as_ref().is_some_and(SubjectSet::is_empty) {
                            break;
                        }
                    }
                    Ok((result.unwrap_or_default(), cut))
                }
                Rewrite::Exclusion(base, subtracted) => {
                    let (mut set, cut) = self.rewrite(node, base, depth).await?;
                    if set.is_empty() {
                        return Ok((set, cut));
                    }
                    let (minus, c) = self.rewrite(node, subtracted, depth).await?;
                    set.subtract(&minus);
                    Ok((set, cut.min(c)))
                }
                Rewrite::Computed(relation) => {
                    let inner = Node {
                        object_type: node.object_type.clone(),
                        object_id: node.object_id.clone(),
                        relation: relation.clone(),
                    };
                    self.node(inner, depth - 1).await
                }
                Rewrite::Arrow {
                    tupleset,
                    computed,
                    function,
                } => self.arrow(node, tupleset, computed, *function, depth).await,
                Rewrite::Nil => Ok((SubjectSet::new(), NO_CUT)),
                Rewrite::SelfRef => {
                    let mut set = SubjectSet::new();
                    if node.object_type == self.request.subject_type
                        && self.request.subject_relation == ELLIPSIS
                    {
                        set.add(&node.object_id, Membership::Member);
                    }
                    Ok((set, NO_CUT))
                }
            }
        })
    }

    /// `tupleset->computed` unions the targets' subjects; `.all()`
    /// intersects them. A target whose type lacks `computed` has none.
    async fn arrow(
        &mut self,
        node: &Node,
        tupleset: &str,
        computed: &str,
        function: ArrowFunction,
        depth: u32,
    ) -> Result<Partial, CheckError> {
        let rels = self.read(node, tupleset).await?;
        let mut result: Option<SubjectSet> = None;
        let mut all_through = Membership::Member;
        let mut cut = NO_CUT;
        for rel in rels.relationships.iter() {
            let target = &rel.subject.object;
            if self
                .schema
                .relation(&target.object_type, computed)
                .is_none()
            {
                // As in Check: such a target has no members, so `.all()`
                // over it is empty (SpiceDB's LookupSubjects skips it, and
                // disagrees with its own Check).
                if function.requires_all() {
                    return Ok((SubjectSet::new(), cut));
                }
                continue;
            }
            let inner = Node {
                object_type: target.object_type.clone(),
                object_id: target.object_id.clone(),
                relation: computed.to_string(),
            };
            let (found, c) = self.node(inner, depth - 1).await?;
            cut = cut.min(c);
            let through = Membership::through(rel.caveat.as_ref());
            match (&mut result, function.requires_all()) {
                (None, false) => result = Some(found.within(&through)),
                (Some(set), false) => set.union_with(found.within(&through)),
                (None, true) => result = Some(found),
                (Some(set), true) => set.intersect(&found),
            }
            if function.requires_all() {
                all_through = all_through.intersect(through);
            }
        }
        let set = result.unwrap_or_default();
        let set = if function.requires_all() {
            set.within(&all_through)
        } else {
            set
        };
        Ok((set, cut))
    }
}
