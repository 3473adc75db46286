//! LookupResources: every `type:id` whose `permission` includes a subject.
//! Walks the schema's reachability graph backwards from the subject
//! (inventory §4.2): each entrypoint turns the ids reached so far into the
//! resources they feed, through reverse-index reads (stored subjects,
//! wildcards, arrows) or directly (computed usersets, `self`). The walk
//! stays inside the part of the graph that can reach the target.
//!
//! A resource reached only through unconditional edges and uncaveated
//! relationships is a member for certain and is emitted as soon as it is
//! found. One reached through an intersection, an exclusion, `.all()` or a
//! caveat is a candidate: a check (through the dispatcher) decides it,
//! once per level of the walk, in batches.
//!
//! Its reads go through the dispatcher as read steps (`dispatch::read`),
//! one per edge and chunk of at most 100 ids, awaited one at a time in the
//! walk's fixed order: a step's answer is sorted wherever it is computed,
//! so in a cluster the owner of each step answers (and caches) it without
//! changing the order results come out in.
//!
//! Every `type:id#relation` is visited once (twice if a certain path turns
//! up after an uncertain one), so cyclic data ends the walk instead of
//! exhausting a depth limit. Results come out in one order for a given
//! snapshot and request, which is what lets a cursor resume by position.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use foldhash::quality::RandomState;

use tokio::sync::mpsc;

use crate::datastore::ReverseQuery;
use crate::dispatch::{
    CheckError, CheckRequest, Dispatcher, ReadQuery, ReadRequest, ReadResult, ResultsSetting,
};
use crate::model::{ContextualizedCaveat, ELLIPSIS, Revision, SubjectRef};
use crate::schema::CompiledSchema;
use crate::schema::reachability::{Entrypoint, EntrypointKind, RelationKey};

use super::Membership;

/// Ids sent to the datastore or the dispatcher at once (SpiceDB's chunk).
const BATCH: usize = 100;

/// The first batch of candidates checked: small, for an early first result.
const FIRST_BATCH: usize = 10;

/// The question: which `resource_type` objects have `permission` for
/// `subject`, at `revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResourcesRequest {
    pub resource_type: String,
    pub permission: String,
    pub subject: SubjectRef,
    pub revision: Revision,
    /// Depth budget of the checks that confirm candidates.
    pub max_depth: u32,
}

/// One result: a resource id and the subject's membership in its
/// permission (`Member`, or `Conditional` on caveats).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundResource {
    pub id: String,
    pub membership: Membership,
}

/// How a node was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reach {
    /// Through a conditional edge or a caveat: a candidate only.
    Maybe,
    /// Through unconditional edges and uncaveated relationships only.
    Certain,
}

impl Reach {
    fn through(self, edge: &Entrypoint, caveat: Option<&ContextualizedCaveat>) -> Reach {
        if edge.conditional || caveat.is_some() {
            Reach::Maybe
        } else {
            self
        }
    }
}

/// Ids per `type#relation`, in the order they were reached. An id is one
/// shared allocation between the frontier and the visited set.
type Frontier = BTreeMap<RelationKey, Vec<(Arc<str>, Reach)>>;

/// Sends every resource the subject can reach to `out`, each once, as it
/// is found. Stops early, without error, when `out` is closed.
pub async fn lookup_resources(
    schema: &CompiledSchema,
    dispatcher: &dyn Dispatcher,
    request: &LookupResourcesRequest,
    out: &mpsc::Sender<FoundResource>,
) -> Result<(), CheckError> {
    super::resolve_relation(schema, &request.resource_type, &request.permission)?;
    let mut walk = Walk {
        schema,
        dispatcher,
        request,
        out,
        target: (request.resource_type.clone(), request.permission.clone()),
        relevant: schema
            .reachability()
            .keys_reaching(&request.resource_type, &request.permission),
        reached: HashMap::default(),
        decided: HashSet::default(),
    };
    walk.run().await
}

struct Walk<'a> {
    schema: &'a CompiledSchema,
    dispatcher: &'a dyn Dispatcher,
    request: &'a LookupResourcesRequest,
    out: &'a mpsc::Sender<FoundResource>,
    target: RelationKey,
    relevant: HashSet<RelationKey>,
    /// How each id of each key was reached so far. The walk offers every id
    /// it reads here (tens of thousands through a wildcard): foldhash, as
    /// the dispatch cache, instead of SipHash.
    reached: HashMap<RelationKey, HashMap<Arc<str>, Reach, RandomState>, RandomState>,
    /// Target ids emitted or ruled out.
    decided: HashSet<Arc<str>, RandomState>,
}

/// Whether the consumer is still listening.
type Open = bool;

impl Walk<'_> {
    async fn run(&mut self) -> Result<(), CheckError> {
        let subject = self.request.subject.clone();
        let mut frontier = Frontier::new();
        self.offer(
            &mut frontier,
            (subject.object.object_type.clone(), subject.relation.clone()),
            std::iter::once((subject.object.object_id.as_str(), Reach::Certain)),
        );
        let mut start = true;
        while !frontier.is_empty() {
            let mut next = Frontier::new();
            if std::mem::take(&mut start) && !subject.is_object() {
                // `type:*` covers a subject set of the type too, as in Check.
                let wildcard_edges: Vec<Entrypoint> = self
                    .edges_from(&(subject.object.object_type.clone(), ELLIPSIS.to_string()))
                    .into_iter()
                    .filter(|e| e.kind == EntrypointKind::Wildcard)
                    .collect();
                for edge in wildcard_edges {
                    self.follow_wildcard(
                        &subject.object.object_type,
                        Reach::Certain,
                        &edge,
                        &mut next,
                    )
                    .await?;
                }
            }
            let mut candidates: Vec<Arc<str>> = Vec::new();
            for (key, ids) in &frontier {
                if *key == self.target && !self.settle_target(ids, &mut candidates).await? {
                    return Ok(());
                }
                for edge in self.edges_from(key) {
                    for chunk in ids.chunks(BATCH) {
                        self.follow(key, &edge, chunk, &mut next).await?;
                    }
                }
            }
            if !self.confirm(candidates).await? {
                return Ok(());
            }
            frontier = next;
        }
        Ok(())
    }

    /// The edges leaving `key` that lead toward the target.
    fn edges_from(&self, key: &RelationKey) -> Vec<Entrypoint> {
        self.schema
            .reachability()
            .entrypoints(&key.0, &key.1)
            .iter()
            .filter(|e| {
                self.relevant
                    .contains(&(e.resource_type.clone(), e.resource_relation.clone()))
            })
            .cloned()
            .collect()
    }

    /// Records each id under `key` that is new or now reached for certain.
    /// Takes a whole read's ids at once, so the key is looked up once, not
    /// once per id.
    fn offer<'i>(
        &mut self,
        next: &mut Frontier,
        key: RelationKey,
        ids: impl Iterator<Item = (&'i str, Reach)>,
    ) {
        let seen = self.reached.entry(key.clone()).or_default();
        seen.reserve(ids.size_hint().0);
        let mut fresh = Vec::new();
        for (id, reach) in ids {
            let id = match seen.get_key_value(id) {
                Some((_, &known)) if known >= reach => continue,
                Some((shared, _)) => Arc::clone(shared),
                None => Arc::from(id),
            };
            seen.insert(Arc::clone(&id), reach);
            fresh.push((id, reach));
        }
        if !fresh.is_empty() {
            next.entry(key).or_default().extend(fresh);
        }
    }

    /// Emits target ids reached for certain; collects the others for a
    /// check. Returns false once the consumer has gone.
    async fn settle_target(
        &mut self,
        ids: &[(Arc<str>, Reach)],
        candidates: &mut Vec<Arc<str>>,
    ) -> Result<Open, CheckError> {
        for (id, reach) in ids {
            if self.decided.contains(id) {
                continue;
            }
            match reach {
                Reach::Certain => {
                    self.decided.insert(Arc::clone(id));
                    if !self.emit(id, Membership::Member).await {
                        return Ok(false);
                    }
                }
                Reach::Maybe => candidates.push(Arc::clone(id)),
            }
        }
        Ok(true)
    }

    /// Decides candidates by checking them, in batches.
    async fn confirm(&mut self, mut candidates: Vec<Arc<str>>) -> Result<Open, CheckError> {
        candidates.retain(|id| !self.decided.contains(id));
        candidates.sort_unstable();
        candidates.dedup();
        // Small batches first, so the first confirmed result streams out
        // early; then SpiceDB's batch size.
        let mut rest = candidates.as_slice();
        let mut size = FIRST_BATCH;
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            rest = after;
            size = (size * 2).min(BATCH);
            let result = self
                .dispatcher
                .check(CheckRequest {
                    resource_type: self.request.resource_type.clone(),
                    resource_ids: chunk.iter().map(|id| id.to_string()).collect(),
                    relation: self.request.permission.clone(),
                    subject: self.request.subject.clone(),
                    revision: self.request.revision,
                    depth_remaining: self.request.max_depth,
                    results_setting: ResultsSetting::RequireAllResults,
                })
                .await?;
            for id in chunk {
                self.decided.insert(Arc::clone(id));
                let membership = result.membership(id);
                if !membership.is_not_member() && !self.emit(id, membership).await {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn emit(&self, id: &str, membership: Membership) -> Open {
        self.out
            .send(FoundResource {
                id: id.to_string(),
                membership,
            })
            .await
            .is_ok()
    }

    /// Follows one edge from a chunk of ids of `key`.
    async fn follow(
        &mut self,
        key: &RelationKey,
        edge: &Entrypoint,
        ids: &[(Arc<str>, Reach)],
        next: &mut Frontier,
    ) -> Result<(), CheckError> {
        let to = (edge.resource_type.clone(), edge.resource_relation.clone());
        let is_object = key.1 == ELLIPSIS;
        match &edge.kind {
            // `self` leads only from plain objects, not from subject sets.
            EntrypointKind::SelfRef if !is_object => {}
            EntrypointKind::Computed | EntrypointKind::SelfRef => {
                let through = ids.iter().map(|(id, r)| (&**id, r.through(edge, None)));
                self.offer(next, to, through);
            }
            EntrypointKind::Direct => {
                let query =
                    reverse_query(key, ids, Some(key.1.clone()), edge, &edge.resource_relation);
                self.follow_relationships(query, ids, edge, to, next)
                    .await?;
            }
            EntrypointKind::Arrow { tupleset, .. } => {
                // An arrow ignores the relation its tupleset's subjects carry.
                let query = reverse_query(key, ids, None, edge, tupleset);
                self.follow_relationships(query, ids, edge, to, next)
                    .await?;
            }
            EntrypointKind::Wildcard if is_object => {
                // `type:*` covers every id of the type, whichever was reached.
                let best = ids.iter().map(|(_, r)| *r).max().unwrap_or(Reach::Maybe);
                self.follow_wildcard(&key.0, best, edge, next).await?;
            }
            EntrypointKind::Wildcard => {}
        }
        Ok(())
    }

    /// Offers the resources that store the wildcard of `subject_type` on
    /// the edge's relation.
    async fn follow_wildcard(
        &mut self,
        subject_type: &str,
        reach: Reach,
        edge: &Entrypoint,
        next: &mut Frontier,
    ) -> Result<(), CheckError> {
        let query = ReverseQuery {
            subject_type: subject_type.to_string(),
            subject_ids: vec!["*".to_string()],
            subject_relation: Some(ELLIPSIS.to_string()),
            resource_type: edge.resource_type.clone(),
            resource_relation: edge.resource_relation.clone(),
        };
        let to = (edge.resource_type.clone(), edge.resource_relation.clone());
        let rels = self.read(query).await?;
        let reached = rels.relationships.iter().map(|rel| {
            (
                rel.resource.object_id.as_str(),
                reach.through(edge, rel.caveat.as_ref()),
            )
        });
        self.offer(next, to, reached);
        Ok(())
    }

    /// The relationships `query` names, through the dispatcher (cached, and
    /// in a cluster answered by the step's owner).
    async fn read(&self, query: ReverseQuery) -> Result<ReadResult, CheckError> {
        let step = ReadRequest::new(ReadQuery::BySubject(query), self.request.revision);
        self.dispatcher.read(step).await
    }

    /// Reads the relationships `query` names and offers their resources,
    /// each reached as surely as its subject was.
    async fn follow_relationships(
        &mut self,
        query: ReverseQuery,
        ids: &[(Arc<str>, Reach)],
        edge: &Entrypoint,
        to: RelationKey,
        next: &mut Frontier,
    ) -> Result<(), CheckError> {
        let reach_of: HashMap<&str, Reach, RandomState> =
            ids.iter().map(|(id, r)| (&**id, *r)).collect();
        let rels = self.read(query).await?;
        let reached = rels.relationships.iter().filter_map(|rel| {
            let reach = reach_of.get(rel.subject.object.object_id.as_str())?;
            Some((
                rel.resource.object_id.as_str(),
                reach.through(edge, rel.caveat.as_ref()),
            ))
        });
        self.offer(next, to, reached);
        Ok(())
    }
}

/// The reverse-index read for an edge: relationships on
/// `edge.resource_type#resource_relation` whose subject is one of `ids`.
fn reverse_query(
    key: &RelationKey,
    ids: &[(Arc<str>, Reach)],
    subject_relation: Option<String>,
    edge: &Entrypoint,
    resource_relation: &str,
) -> ReverseQuery {
    ReverseQuery {
        subject_type: key.0.clone(),
        subject_ids: ids.iter().map(|(id, _)| id.to_string()).collect(),
        subject_relation,
        resource_type: edge.resource_type.clone(),
        resource_relation: resource_relation.to_string(),
    }
}
