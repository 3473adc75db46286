//! Owns the memory datastore's write planning: turning a `WriteBatch` or a
//! bulk load into a `Plan` (versions to retire, versions to create, the
//! change list) while only reading, so every error is found before anything
//! changes. Applying a plan is `MemoryDatastore`'s job. Depends on `store`,
//! `query` and the port's types.

use std::collections::HashSet;
use std::time::SystemTime;

use super::State;
use super::store::{At, KeyRef, Store};
use crate::datastore::update_plan::{self, Change, Living};
use crate::datastore::{
    DatastoreError, DatastoreResult, RelationshipCounter, StoredSchema, TransactionMetadata,
    WriteBatch, apply_counter_changes,
};
use crate::model::{Precondition, PreconditionKind, Relationship, RelationshipUpdate};

/// What a write will do, decided against the state at head.
#[derive(Debug, Default)]
pub struct Plan {
    /// Live versions to mark deleted (including expired ones a CREATE or
    /// TOUCH replaces, and old versions a TOUCH supersedes).
    pub retire: Vec<u32>,
    /// New versions, in the order of `changes`.
    pub create: Vec<Relationship>,
    /// The change feed of this write, in order.
    pub changes: Vec<Planned>,
    pub schema: Option<StoredSchema>,
    /// The counters registered after this write, if it changes them.
    pub counters: Option<Vec<RelationshipCounter>>,
    pub metadata: TransactionMetadata,
    pub deleted_by_filter: usize,
    pub partial: bool,
}

/// One change-feed item of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    /// The new version `create[i]`.
    Touch(usize),
    /// The existing version in this slot.
    Delete(u32),
}

/// Plans a write batch at head. Preconditions, then the filter delete, then
/// the updates, each seeing the effect of the ones before.
pub fn plan_write(state: &State, batch: WriteBatch, now: SystemTime) -> DatastoreResult<Plan> {
    let store = &state.store;
    let at = At {
        revision: state.history.head(),
        now,
    };
    check_preconditions(store, &batch.preconditions, at)?;
    let counters = if batch.counters.is_empty() {
        None
    } else {
        let registered = state.history.counters_at(at.revision);
        Some(apply_counter_changes(&registered, batch.counters)?)
    };
    let mut plan = Plan {
        schema: batch.schema,
        counters,
        metadata: batch.metadata,
        ..Plan::default()
    };
    let mut filtered = HashSet::new();
    if let Some(delete) = &batch.delete_by_filter {
        let probe = delete.limit.map_or(usize::MAX, |l| l.saturating_add(1));
        let mut slots = store.query(&delete.filter, None, probe, at);
        if let Some(limit) = delete.limit
            && slots.len() > limit
        {
            if !delete.allow_partial {
                return Err(DatastoreError::TooManyToDelete { limit });
            }
            // Slots come in key order, so the first `limit` are deleted.
            slots.truncate(limit);
            plan.partial = true;
        }
        plan.deleted_by_filter = slots.len();
        for slot in slots {
            plan.retire.push(slot);
            plan.changes.push(Planned::Delete(slot));
            filtered.insert(slot);
        }
    }
    plan_updates(store, &batch.updates, &filtered, now, &mut plan)?;
    if !store.has_room_for(plan.create.len()) {
        return Err(full());
    }
    Ok(plan)
}

/// Plans a bulk load: every relationship is new, none twice.
pub fn plan_bulk(
    state: &State,
    mut relationships: Vec<Relationship>,
    metadata: TransactionMetadata,
    now: SystemTime,
) -> DatastoreResult<Plan> {
    let store = &state.store;
    if !store.has_room_for(relationships.len()) {
        return Err(full());
    }
    // Sorting by key finds duplicates without a hash set of every key, and
    // hands the versions to the indexes already in forward-index order.
    let mut order: Vec<u32> = (0..relationships.len() as u32).collect();
    order.sort_unstable_by_key(|&i| KeyRef::of_relationship(&relationships[i as usize]));
    let key = |i: u32| KeyRef::of_relationship(&relationships[i as usize]);
    if let Some(pair) = order.windows(2).find(|w| key(w[0]) == key(w[1])) {
        let duplicate = &relationships[pair[0] as usize];
        return Err(DatastoreError::AlreadyExists(Box::new(duplicate.key())));
    }
    let mut plan = Plan {
        metadata,
        ..Plan::default()
    };
    for &i in &order {
        let rel = &relationships[i as usize];
        let key = KeyRef::of_relationship(rel);
        key.check_lengths()?;
        if let Some(slot) = store.live_version(&key) {
            if !store.table.expired(slot, now) {
                return Err(DatastoreError::AlreadyExists(Box::new(rel.key())));
            }
            plan.retire.push(slot);
        }
    }
    permute(&mut relationships, &mut order);
    plan.create = relationships;
    plan.changes = (0..plan.create.len()).map(Planned::Touch).collect();
    Ok(plan)
}

/// The first failing precondition (by position) fails the write.
fn check_preconditions(
    store: &Store,
    preconditions: &[Precondition],
    at: At,
) -> DatastoreResult<()> {
    for (index, precondition) in preconditions.iter().enumerate() {
        let found = !store.query(&precondition.filter, None, 1, at).is_empty();
        let holds = match precondition.kind {
            PreconditionKind::MustMatch => found,
            PreconditionKind::MustNotMatch => !found,
        };
        if !holds {
            return Err(DatastoreError::PreconditionFailed { index });
        }
    }
    Ok(())
}

/// Plans the updates with the engines' shared rules (`update_plan`): a
/// key's living version is the one at head, unless the filter delete
/// already removed it.
fn plan_updates(
    store: &Store,
    updates: &[RelationshipUpdate],
    filtered: &HashSet<u32>,
    now: SystemTime,
    plan: &mut Plan,
) -> DatastoreResult<()> {
    let outcomes = update_plan::plan(updates, |rel| {
        let key = KeyRef::of_relationship(rel);
        key.check_lengths()?;
        let living = store
            .live_version(&key)
            .filter(|s| !filtered.contains(s))
            .map(|slot| Living {
                version: slot,
                expired: store.table.expired(slot, now),
            });
        Ok((key, living))
    })?;
    for outcome in outcomes {
        if let Some(old) = outcome.retire {
            plan.retire.push(old);
        }
        match (outcome.change, outcome.retire) {
            (Some(Change::Touch(new)), _) => {
                plan.changes.push(Planned::Touch(plan.create.len()));
                plan.create.push(new.clone());
            }
            (Some(Change::Delete), Some(old)) => plan.changes.push(Planned::Delete(old)),
            _ => {}
        }
    }
    Ok(())
}

/// Reorders `items` so that `items[k]` becomes the old `items[order[k]]`,
/// in place (a bulk load's batch can be large; no second copy of it).
/// Consumes `order`.
fn permute<T>(items: &mut [T], order: &mut [u32]) {
    const DONE: u32 = u32::MAX;
    for start in 0..items.len() {
        // Follow the cycle through `start`, carrying the old `items[start]`
        // along until the position that wants it.
        let mut k = start;
        while order[k] != DONE {
            let source = order[k] as usize;
            order[k] = DONE;
            if source == start {
                break;
            }
            items.swap(k, source);
            k = source;
        }
    }
}

fn full() -> DatastoreError {
    DatastoreError::Unavailable("the memory datastore holds its maximum of 2^31 versions".into())
}

#[cfg(test)]
mod tests {
    use super::permute;

    #[test]
    fn permutes_in_place() {
        let mut items = vec!['a', 'b', 'c', 'd', 'e', 'f'];
        let mut order = vec![3, 0, 4, 1, 2, 5];
        permute(&mut items, &mut order);
        assert_eq!(items, vec!['d', 'a', 'e', 'b', 'c', 'f']);
    }
}
