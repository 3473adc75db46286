//! Check: is a subject a member of `type:id#relation`, for a batch of ids?
//! Walks the relation's rewrite with SpiceDB's semantics (inventory §4.1):
//! direct subjects, wildcards, subject sets (dispatched recursively), the
//! identity rule, computed usersets, arrows (any and all), union,
//! intersection, exclusion, `nil` and `self`. Every recursive step goes
//! through the dispatcher, which bounds depth and may cache or route it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt as _;

use crate::datastore::Reader;
use crate::dispatch::{BoxFuture, CheckError, CheckRequest, CheckResult, Dispatcher};
use crate::model::{ELLIPSIS, Relationship, SubjectRef};
use crate::schema::{
    AllowedSubjectType, ArrowFunction, CompiledSchema, Definition, RelationBody, Rewrite,
    SubjectTarget,
};

use super::Membership;

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
    let definition = schema
        .definition(&request.resource_type)
        .ok_or_else(|| CheckError::UnknownDefinition(request.resource_type.clone()))?;
    let relation =
        definition
            .relation(&request.relation)
            .ok_or_else(|| CheckError::UnknownRelation {
                definition: request.resource_type.clone(),
                relation: request.relation.clone(),
            })?;

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
        depth_required: AtomicU32::new(1),
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
        depth_required: evaluation.depth_required.load(Ordering::Relaxed),
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
    depth_required: AtomicU32,
}

impl<R: Reader> Evaluation<'_, R> {
    fn subject(&self) -> &SubjectRef {
        &self.request.subject
    }

    /// Asks the dispatcher whether the subject is in `type:{ids}#relation`.
    async fn dispatch(
        &self,
        resource_type: &str,
        ids: Vec<String>,
        relation: &str,
    ) -> Result<CheckResult, CheckError> {
        let sub = CheckRequest {
            resource_type: resource_type.to_string(),
            resource_ids: ids,
            relation: relation.to_string(),
            subject: self.request.subject.clone(),
            revision: self.request.revision,
            depth_remaining: self.request.depth_remaining.saturating_sub(1),
        };
        let result = self.dispatcher.check(sub).await?;
        self.dispatch_count
            .fetch_add(result.dispatch_count, Ordering::Relaxed);
        self.depth_required
            .fetch_max(result.depth_required + 1, Ordering::Relaxed);
        Ok(result)
    }

    /// Independent subproblems, at most `MAX_CONCURRENT_DISPATCHES` in flight
    /// (SpiceDB's per-request dispatch concurrency default); results in
    /// request order. The first error wins.
    async fn dispatch_all(
        &self,
        requests: Vec<(&str, Vec<String>, &str)>,
    ) -> Result<Vec<CheckResult>, CheckError> {
        if let [(resource_type, ids, relation)] = requests.as_slice() {
            return Ok(vec![
                self.dispatch(resource_type, ids.clone(), relation).await?,
            ]);
        }
        let pending: Vec<BoxFuture<'_, Result<(usize, CheckResult), CheckError>>> = requests
            .into_iter()
            .enumerate()
            .map(
                |(i, (t, ids, r))| -> BoxFuture<'_, Result<(usize, CheckResult), CheckError>> {
                    Box::pin(
                        async move { self.dispatch(t, ids, r).await.map(|result| (i, result)) },
                    )
                },
            )
            .collect();
        let mut in_flight =
            futures::stream::iter(pending).buffer_unordered(MAX_CONCURRENT_DISPATCHES);
        let mut results = Vec::new();
        while let Some(next) = in_flight.next().await {
            results.push(next?);
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    /// A relation: its stored subjects, wildcards and subject sets.
    async fn direct(
        &self,
        relation: &str,
        allowed: &[AllowedSubjectType],
        ids: &[String],
    ) -> Result<Memberships, CheckError> {
        let subject = self.subject();
        let subject_type = subject.object.object_type.as_str();
        let mut types: Vec<&str> = Vec::new();
        for t in allowed {
            let relevant = match &t.target {
                SubjectTarget::Object => {
                    t.type_name == subject_type && subject.relation == ELLIPSIS
                }
                SubjectTarget::Wildcard => t.type_name == subject_type,
                // The subject may be a member of any subject set.
                SubjectTarget::Relation(_) => true,
            };
            if relevant && !types.contains(&t.type_name.as_str()) {
                types.push(t.type_name.as_str());
            }
        }
        if types.is_empty() {
            return Ok(Memberships::new());
        }
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let rels = self
            .reader
            .query_resources(&self.request.resource_type, &id_refs, relation, &types)
            .await?;

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
            (*set_type, set_ids, *set_relation)
        });
        let results = self.dispatch_all(requests.collect()).await?;
        for ((_, rels), result) in groups.iter().zip(&results) {
            for rel in rels {
                let through = Membership::through(rel.caveat.as_ref())
                    .intersect(result.membership(&rel.subject.object.object_id));
                add(&mut found, &rel.resource.object_id, through);
            }
        }
        Ok(found)
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
                        .dispatch(&self.request.resource_type, ids.to_vec(), relation)
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
        for child in children {
            if remaining.is_empty() {
                break;
            }
            for (id, membership) in self.rewrite(child, &remaining).await? {
                add(&mut found, &id, membership);
            }
            remaining.retain(|id| !found.get(id).is_some_and(Membership::is_member));
        }
        Ok(found)
    }

    /// Intersection: only ids still in after each child go on to the next.
    async fn intersection(
        &self,
        children: &[Rewrite],
        ids: &[String],
    ) -> Result<Memberships, CheckError> {
        let Some((first, rest)) = children.split_first() else {
            return Ok(Memberships::new());
        };
        let mut found = self.rewrite(first, ids).await?;
        for child in rest {
            if found.is_empty() {
                break;
            }
            let candidates: Vec<String> = found.keys().cloned().collect();
            let mut next = self.rewrite(child, &candidates).await?;
            found = found
                .into_iter()
                .filter_map(|(id, m)| {
                    let other = next.remove(&id).unwrap_or(Membership::NotMember);
                    let both = m.intersect(other);
                    (!both.is_not_member()).then_some((id, both))
                })
                .collect();
        }
        Ok(found)
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
            (*target_type, std::mem::take(target_ids), computed)
        });
        let dispatched = self.dispatch_all(requests.collect()).await?;
        let results: HashMap<&str, CheckResult> =
            types.iter().map(|(t, _)| *t).zip(dispatched).collect();

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
        } else {
            for rel in &rels {
                add(&mut found, &rel.resource.object_id, reached(rel));
            }
        }
        Ok(found)
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
