//! Check: is a subject a member of `type:id#relation`, for a batch of ids?
//! Walks the relation's rewrite with SpiceDB's semantics (inventory §4.1):
//! direct subjects, wildcards, subject sets (dispatched recursively), the
//! identity rule, computed usersets, arrows (any and all), union,
//! intersection, exclusion, `nil` and `self`. Every recursive step goes
//! through the dispatcher, which bounds depth and may cache or route it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::SystemTime;

use futures::StreamExt as _;

use crate::datastore::{Page, Reader};
use crate::dispatch::{
    BoxFuture, CheckError, CheckRequest, CheckResult, DEFAULT_MAX_DEPTH, Dispatcher, ResultsSetting,
};
use crate::model::{ELLIPSIS, Relationship, RelationshipFilter, SubjectFilter, SubjectRef};
use crate::schema::{
    AllowedSubjectType, ArrowFunction, CompiledSchema, Definition, RelationBody, Rewrite,
    SubjectTarget,
};

use super::Membership;

/// One finished subproblem of `dispatch_all`: its position, the setting it
/// was asked with, and its outcome.
type Indexed = (usize, (ResultsSetting, Result<CheckResult, CheckError>));

/// What `dispatch_all` returns: per request, its result if it was needed
/// and succeeded, plus the first deferrable error.
struct Dispatched {
    results: Vec<Option<CheckResult>>,
    deferred: Option<CheckError>,
}

/// How many levels below a check's top may defer depth errors.
const DEFERRING_LEVELS: u32 = 3;

/// SpiceDB's `--dispatch-concurrency-limit` default.
const MAX_CONCURRENT_DISPATCHES: usize = 50;

/// Memberships by resource id; ids that are not members are left out.
type Memberships = HashMap<String, Membership>;

/// Answers one check request over `reader`, dispatching subproblems.
pub async fn check<R: Reader>(
    reader: &R,
    schema: &CompiledSchema,
    dispatcher: &dyn Dispatcher,
    request: &CheckRequest,
) -> Result<CheckResult, CheckError> {
    let (definition, relation) =
        super::resolve_relation(schema, &request.resource_type, &request.relation)?;

    let mut ids: Vec<String> = request.resource_ids.clone();
    ids.sort_unstable();
    ids.dedup();
    let mut memberships = Memberships::new();
    // The identity rule: `X#r` is always a member of `X#r`.
    if request.subject.object.object_type == request.resource_type
        && request.subject.relation == request.relation
        && let Some(pos) = ids
            .iter()
            .position(|id| *id == request.subject.object.object_id)
    {
        memberships.insert(ids.remove(pos), Membership::Member);
    }

    let evaluation = Evaluation {
        reader,
        schema,
        definition,
        dispatcher,
        request,
        dispatch_count: AtomicU32::new(1),
        cached_dispatch_count: AtomicU32::new(0),
        depth_required: AtomicU32::new(1),
        expires_at: Mutex::new(None),
    };
    if !ids.is_empty() {
        let found = match &relation.body {
            RelationBody::Direct(types) => {
                evaluation.direct(&request.relation, types, &ids).await?
            }
            RelationBody::Permission(rewrite) => evaluation.rewrite(rewrite, &ids).await?,
        };
        memberships.extend(found);
    }
    Ok(CheckResult {
        memberships,
        dispatch_count: evaluation.dispatch_count.load(Ordering::Relaxed),
        cached_dispatch_count: evaluation.cached_dispatch_count.load(Ordering::Relaxed),
        depth_required: evaluation.depth_required.load(Ordering::Relaxed),
        expires_at: evaluation.earliest_expiry(),
    })
}

/// The state of one check request's evaluation.
struct Evaluation<'a, R> {
    reader: &'a R,
    schema: &'a CompiledSchema,
    definition: &'a Definition,
    dispatcher: &'a dyn Dispatcher,
    request: &'a CheckRequest,
    dispatch_count: AtomicU32,
    cached_dispatch_count: AtomicU32,
    depth_required: AtomicU32,
    /// The earliest expiration among the relationships read, here or by
    /// subproblems (never held across an `.await`).
    expires_at: Mutex<Option<SystemTime>>,
}

impl<R: Reader> Evaluation<'_, R> {
    fn subject(&self) -> &SubjectRef {
        &self.request.subject
    }

    /// Whether a deferrable error may wait for sibling branches here. Only
    /// near the top of a check: that is where SpiceDB's racing branches let a
    /// shallow answer beat a deep error, and deferring everywhere would let
    /// cyclic data explore every branch to full depth (exponential work).
    fn defers(&self, error: &CheckError) -> bool {
        error.is_deferrable() && self.request.depth_remaining + DEFERRING_LEVELS > DEFAULT_MAX_DEPTH
    }

    /// The results setting for a subproblem reached through `rels`: a
    /// member behind a caveated relationship may not count, so then every
    /// id's answer is needed.
    fn setting_through<'r>(
        &self,
        mut rels: impl Iterator<Item = &'r Relationship>,
    ) -> ResultsSetting {
        if rels.any(|r| r.caveat.is_some()) {
            ResultsSetting::RequireAllResults
        } else {
            self.request.results_setting
        }
    }

    /// Notes that the answer depends on relationships that expire at
    /// `expiry` (the earliest of them).
    fn depends_on_expiry(&self, expiry: Option<SystemTime>) {
        let Some(expiry) = expiry else { return };
        let mut earliest = self
            .expires_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *earliest = Some(earliest.map_or(expiry, |e| e.min(expiry)));
    }

    fn earliest_expiry(&self) -> Option<SystemTime> {
        *self
            .expires_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records what a batch of relationships read means for the answer.
    fn read(&self, rels: &[Relationship]) {
        self.depends_on_expiry(rels.iter().filter_map(|r| r.expires_at).min());
    }

    fn allow_single(&self) -> bool {
        self.request.results_setting == ResultsSetting::AllowSingleResult
    }

    /// Asks the dispatcher whether the subject is in `type:{ids}#relation`.
    async fn dispatch(
        &self,
        resource_type: &str,
        ids: Vec<String>,
        relation: &str,
        results_setting: ResultsSetting,
    ) -> Result<CheckResult, CheckError> {
        let sub = CheckRequest {
            resource_type: resource_type.to_string(),
            resource_ids: ids,
            relation: relation.to_string(),
            subject: self.request.subject.clone(),
            revision: self.request.revision,
            depth_remaining: self.request.depth_remaining.saturating_sub(1),
            results_setting,
        };
        let result = self.dispatcher.check(sub).await?;
        self.dispatch_count
            .fetch_add(result.dispatch_count, Ordering::Relaxed);
        self.cached_dispatch_count
            .fetch_add(result.cached_dispatch_count, Ordering::Relaxed);
        self.depends_on_expiry(result.expires_at);
        self.depth_required
            .fetch_max(result.depth_required + 1, Ordering::Relaxed);
        Ok(result)
    }

    /// Independent subproblems, at most `MAX_CONCURRENT_DISPATCHES` in flight
    /// (SpiceDB's per-request dispatch concurrency default). Results come
    /// back in request order; `None` where the request was not needed (a
    /// single-result check stops at the first member) or failed with a
    /// deferrable error, which is returned beside them.
    async fn dispatch_all(
        &self,
        requests: Vec<(&str, Vec<String>, &str, ResultsSetting)>,
    ) -> Result<Dispatched, CheckError> {
        let count = requests.len();
        let pending: Vec<BoxFuture<'_, Indexed>> = requests
            .into_iter()
            .enumerate()
            .map(|(i, (t, ids, r, setting))| -> BoxFuture<'_, Indexed> {
                Box::pin(async move { (i, (setting, self.dispatch(t, ids, r, setting).await)) })
            })
            .collect();
        let mut in_flight =
            futures::stream::iter(pending).buffer_unordered(MAX_CONCURRENT_DISPATCHES);
        let mut dispatched = Dispatched {
            results: vec![None; count],
            deferred: None,
        };
        while let Some((i, (setting, outcome))) = in_flight.next().await {
            match outcome {
                Ok(result) => {
                    let decisive = self.allow_single()
                        && setting == ResultsSetting::AllowSingleResult
                        && result.memberships.values().any(Membership::is_member);
                    dispatched.results[i] = Some(result);
                    if decisive {
                        break;
                    }
                }
                Err(e) if self.defers(&e) => {
                    dispatched.deferred.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(dispatched)
    }

    /// The outcome of a union-like node (union, direct subjects and subject
    /// sets, `->`): a deferred depth error stands only if nothing decided.
    fn settle(
        &self,
        found: Memberships,
        ids: &[String],
        deferred: Option<CheckError>,
    ) -> Result<Memberships, CheckError> {
        let Some(error) = deferred else {
            return Ok(found);
        };
        let decided = if self.allow_single() {
            found.values().any(Membership::is_member)
        } else {
            ids.iter()
                .all(|id| found.get(id).is_some_and(Membership::is_member))
        };
        if decided { Ok(found) } else { Err(error) }
    }

    /// The relationships of `relation` on `ids` that can make the subject a
    /// member: the subject itself, its type's wildcard, and the subject sets
    /// the schema allows — looked up exactly, as SpiceDB's checkDirect does,
    /// rather than reading every subject of the type (a popular user's
    /// thousands of followers, for one follower's check).
    async fn relevant_relationships(
        &self,
        relation: &str,
        allowed: &[AllowedSubjectType],
        ids: &[String],
    ) -> Result<Vec<Relationship>, CheckError> {
        let subject = self.subject();
        let subject_type = subject.object.object_type.as_str();
        let mut lookups: Vec<SubjectFilter> = Vec::new();
        for t in allowed {
            let lookup = match &t.target {
                SubjectTarget::Object if t.type_name == subject_type && subject.is_object() => {
                    SubjectFilter {
                        subject_type: t.type_name.clone(),
                        subject_id: Some(subject.object.object_id.clone()),
                        relation: Some(ELLIPSIS.to_string()),
                    }
                }
                SubjectTarget::Wildcard if t.type_name == subject_type => SubjectFilter {
                    subject_type: t.type_name.clone(),
                    subject_id: Some("*".to_string()),
                    relation: Some(ELLIPSIS.to_string()),
                },
                // The subject may be a member of any subject set (or be one).
                SubjectTarget::Relation(r) => SubjectFilter {
                    subject_type: t.type_name.clone(),
                    subject_id: None,
                    relation: Some(r.clone()),
                },
                _ => continue,
            };
            if !lookups.contains(&lookup) {
                lookups.push(lookup);
            }
        }
        let mut rels = Vec::new();
        for id in ids {
            for lookup in &lookups {
                let filter = RelationshipFilter {
                    resource_type: Some(self.request.resource_type.clone()),
                    resource_id: Some(id.clone()),
                    relation: Some(relation.to_string()),
                    subject: Some(lookup.clone()),
                    ..Default::default()
                };
                rels.extend(self.reader.query(&filter, &Page::default()).await?);
            }
        }
        self.read(&rels);
        Ok(rels)
    }

    /// A relation: its stored subjects, wildcards and subject sets.
    async fn direct(
        &self,
        relation: &str,
        allowed: &[AllowedSubjectType],
        ids: &[String],
    ) -> Result<Memberships, CheckError> {
        let subject = self.subject();
        let rels = self.relevant_relationships(relation, allowed, ids).await?;

        let mut found = Memberships::new();
        // Subject sets to ask about, grouped by (type, relation).
        let mut sets: HashMap<(&str, &str), Vec<&Relationship>> = HashMap::new();
        for rel in &rels {
            let rs = &rel.subject;
            let matched = (rs.object == subject.object && rs.relation == subject.relation)
                || (rs.is_wildcard() && rs.object.object_type == subject.object.object_type);
            if matched {
                add(
                    &mut found,
                    &rel.resource.object_id,
                    Membership::through(rel.caveat.as_ref()),
                );
            }
        }
        // As SpiceDB does, subject sets are only explored for resources not
        // already found directly: a cycle elsewhere must not turn a found
        // answer into a depth error.
        if self.allow_single() && found.values().any(Membership::is_member) {
            return Ok(found);
        }
        for rel in &rels {
            let rs = &rel.subject;
            let settled = found
                .get(&rel.resource.object_id)
                .is_some_and(Membership::is_member);
            if !settled && !rs.is_object() && !rs.is_wildcard() && *rs != *subject {
                sets.entry((rs.object.object_type.as_str(), rs.relation.as_str()))
                    .or_default()
                    .push(rel);
            }
        }
        let mut groups: Vec<_> = sets.into_iter().collect();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let requests = groups.iter().map(|((set_type, set_relation), rels)| {
            let mut set_ids: Vec<String> = rels
                .iter()
                .map(|r| r.subject.object.object_id.clone())
                .collect();
            set_ids.sort_unstable();
            set_ids.dedup();
            (
                *set_type,
                set_ids,
                *set_relation,
                self.setting_through(rels.iter().copied()),
            )
        });
        let dispatched = self.dispatch_all(requests.collect()).await?;
        for ((_, rels), result) in groups.iter().zip(&dispatched.results) {
            let Some(result) = result else { continue };
            for rel in rels {
                let through = Membership::through(rel.caveat.as_ref())
                    .intersect(result.membership(&rel.subject.object.object_id));
                add(&mut found, &rel.resource.object_id, through);
            }
        }
        self.settle(found, ids, dispatched.deferred)
    }

    fn rewrite<'s>(
        &'s self,
        rewrite: &'s Rewrite,
        ids: &'s [String],
    ) -> BoxFuture<'s, Result<Memberships, CheckError>> {
        Box::pin(async move {
            match rewrite {
                Rewrite::Union(children) => self.union(children, ids).await,
                Rewrite::Intersection(children) => self.intersection(children, ids).await,
                Rewrite::Exclusion(base, subtracted) => self.exclusion(base, subtracted, ids).await,
                Rewrite::Computed(relation) => {
                    let result = self
                        .dispatch(
                            &self.request.resource_type,
                            ids.to_vec(),
                            relation,
                            self.request.results_setting,
                        )
                        .await?;
                    Ok(result.memberships)
                }
                Rewrite::Arrow {
                    tupleset,
                    computed,
                    function,
                } => self.arrow(tupleset, computed, *function, ids).await,
                Rewrite::Nil => Ok(Memberships::new()),
                Rewrite::SelfRef => Ok(self.self_membership(ids)),
            }
        })
    }

    /// Union: ids found unconditionally need no further children.
    async fn union(&self, children: &[Rewrite], ids: &[String]) -> Result<Memberships, CheckError> {
        let mut found = Memberships::new();
        let mut remaining: Vec<String> = ids.to_vec();
        let mut deferred = None;
        for child in children {
            if remaining.is_empty()
                || (self.allow_single() && found.values().any(Membership::is_member))
            {
                break;
            }
            match self.rewrite(child, &remaining).await {
                Ok(child_found) => {
                    for (id, membership) in child_found {
                        add(&mut found, &id, membership);
                    }
                }
                Err(e) if self.defers(&e) => {
                    deferred.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
            remaining.retain(|id| !found.get(id).is_some_and(Membership::is_member));
        }
        self.settle(found, ids, deferred)
    }

    /// Intersection: only ids still in after each child go on to the next.
    async fn intersection(
        &self,
        children: &[Rewrite],
        ids: &[String],
    ) -> Result<Memberships, CheckError> {
        // `None` until some child answered; a child that failed with a
        // deferrable error is skipped and matters only if ids survive the rest.
        let mut found: Option<Memberships> = None;
        let mut deferred = None;
        for child in children {
            let candidates: Vec<String> = match &found {
                Some(f) => f.keys().cloned().collect(),
                None => ids.to_vec(),
            };
            let mut next = match self.rewrite(child, &candidates).await {
                Ok(next) => next,
                Err(e) if self.defers(&e) => {
                    deferred.get_or_insert(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let combined: Memberships = match found.take() {
                None => next,
                Some(previous) => previous
                    .into_iter()
                    .filter_map(|(id, m)| {
                        let other = next.remove(&id).unwrap_or(Membership::NotMember);
                        let both = m.intersect(other);
                        (!both.is_not_member()).then_some((id, both))
                    })
                    .collect(),
            };
            if combined.is_empty() {
                return Ok(combined);
            }
            found = Some(combined);
        }
        match deferred {
            Some(e) => Err(e),
            None => Ok(found.unwrap_or_default()),
        }
    }

    /// Exclusion: the subtracted side is evaluated only for base members.
    async fn exclusion(
        &self,
        base: &Rewrite,
        subtracted: &Rewrite,
        ids: &[String],
    ) -> Result<Memberships, CheckError> {
        let found = self.rewrite(base, ids).await?;
        if found.is_empty() {
            return Ok(found);
        }
        let candidates: Vec<String> = found.keys().cloned().collect();
        let mut minus = self.rewrite(subtracted, &candidates).await?;
        Ok(found
            .into_iter()
            .filter_map(|(id, m)| {
                let other = minus.remove(&id).unwrap_or(Membership::NotMember);
                let rest = m.exclude(other);
                (!rest.is_not_member()).then_some((id, rest))
            })
            .collect())
    }

    /// `tupleset->computed` (any) or `tupleset.all(computed)`: walk to the
    /// objects `tupleset` names (their subject relation is ignored) and ask
    /// about `computed` on each. Objects whose type lacks `computed` count as
    /// non-members.
    async fn arrow(
        &self,
        tupleset: &str,
        computed: &str,
        function: ArrowFunction,
        ids: &[String],
    ) -> Result<Memberships, CheckError> {
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rels = self
            .reader
            .query_resources(&self.request.resource_type, &id_refs, tupleset, &[])
            .await?;
        self.read(&rels);
        let mut by_type: HashMap<&str, Vec<String>> = HashMap::new();
        for rel in &rels {
            let target = &rel.subject.object;
            if self
                .schema
                .relation(&target.object_type, computed)
                .is_some()
            {
                by_type
                    .entry(target.object_type.as_str())
                    .or_default()
                    .push(target.object_id.clone());
            }
        }
        let mut types: Vec<_> = by_type.into_iter().collect();
        types.sort_by(|a, b| a.0.cmp(b.0));
        let requests = types.iter_mut().map(|(target_type, target_ids)| {
            target_ids.sort_unstable();
            target_ids.dedup();
            // `.all()` needs every target's answer.
            let setting = if function.requires_all() {
                ResultsSetting::RequireAllResults
            } else {
                self.setting_through(
                    rels.iter()
                        .filter(|r| r.subject.object.object_type == *target_type),
                )
            };
            (*target_type, std::mem::take(target_ids), computed, setting)
        });
        let dispatched = self.dispatch_all(requests.collect()).await?;
        if function.requires_all()
            && let Some(e) = dispatched.deferred.clone()
        {
            return Err(e);
        }
        let results: HashMap<&str, CheckResult> = types
            .iter()
            .map(|(t, _)| *t)
            .zip(dispatched.results)
            .filter_map(|(t, r)| r.map(|r| (t, r)))
            .collect();

        let reached = |rel: &Relationship| {
            let target = &rel.subject.object;
            let membership = results
                .get(target.object_type.as_str())
                .map_or(Membership::NotMember, |r| r.membership(&target.object_id));
            Membership::through(rel.caveat.as_ref()).intersect(membership)
        };
        let mut found = Memberships::new();
        if function.requires_all() {
            let mut per_resource: HashMap<&str, Membership> = HashMap::new();
            for rel in &rels {
                let m = reached(rel);
                let entry = per_resource
                    .entry(rel.resource.object_id.as_str())
                    .or_insert(Membership::Member);
                *entry = std::mem::replace(entry, Membership::NotMember).intersect(m);
            }
            for (id, m) in per_resource {
                if !m.is_not_member() {
                    found.insert(id.to_string(), m);
                }
            }
            return Ok(found);
        }
        for rel in &rels {
            add(&mut found, &rel.resource.object_id, reached(rel));
        }
        self.settle(found, ids, dispatched.deferred)
    }

    /// `self`: the subject is the resource itself.
    fn self_membership(&self, ids: &[String]) -> Memberships {
        let subject = self.subject();
        let mut found = Memberships::new();
        if subject.is_object()
            && subject.object.object_type == self.definition.name
            && let Some(id) = ids.iter().find(|id| **id == subject.object.object_id)
        {
            found.insert(id.clone(), Membership::Member);
        }
        found
    }
}

/// Unions `membership` into the entry for `id`.
fn add(found: &mut Memberships, id: &str, membership: Membership) {
    if membership.is_not_member() {
        return;
    }
    match found.get_mut(id) {
        Some(existing) => {
            let current = std::mem::replace(existing, Membership::NotMember);
            *existing = current.union(membership);
        }
        None => {
            found.insert(id.to_string(), membership);
        }
    }
}
