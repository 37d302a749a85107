//! The message cache: payloads kept to answer GRAFTs and fetches, and ids
//! remembered to recognise duplicates — both bounded in count and age.

use crate::message::Hop;
use primitives::{Bytes, Digest};
use std::collections::{BTreeMap, VecDeque};

/// What the cache knows about one id.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The payload, while younger than the payload bounds; `None` once it
    /// has been evicted.
    pub payload: Option<Bytes>,
    /// The hop at which it reached us (0 for our own broadcasts).
    pub hop: Hop,
    /// When it arrived.
    pub at_micros: u64,
    /// True while it came only by fetch and has not been forwarded on the
    /// tree: the first gossip copy is then forwarded, not pruned.
    pub awaiting_tree: bool,
    /// The peer whose copy arrived first (`None` for our own broadcasts
    /// and fetched payloads).
    pub first_from: Option<primitives::ReplicaId>,
}

/// Bounded id → entry map with insertion-ordered eviction.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: BTreeMap<Digest, Entry>,
    /// Ids in insertion order, for evicting ids.
    seen_order: VecDeque<Digest>,
    /// Ids whose payload is still held, in insertion order.
    payload_order: VecDeque<Digest>,
    payloads_max: usize,
    payload_age_max: u64,
    seen_max: usize,
    seen_age_max: u64,
}

impl Cache {
    pub fn new(
        payloads_max: usize,
        payload_age_max: u64,
        seen_max: usize,
        seen_age_max: u64,
    ) -> Self {
        assert!(payloads_max > 0 && seen_max >= payloads_max);
        Cache {
            entries: BTreeMap::new(),
            seen_order: VecDeque::new(),
            payload_order: VecDeque::new(),
            payloads_max,
            payload_age_max,
            seen_max,
            seen_age_max,
        }
    }

    pub fn get_mut(&mut self, id: &Digest) -> Option<&mut Entry> {
        self.entries.get_mut(id)
    }

    pub fn contains(&self, id: &Digest) -> bool {
        self.entries.contains_key(id)
    }

    /// The payload of a valid, still-cached id.
    pub fn payload(&self, id: &Digest) -> Option<(&Bytes, Hop)> {
        let entry = self.entries.get(id)?;
        entry.payload.as_ref().map(|p| (p, entry.hop))
    }

    /// Remembers `id`; the caller has checked it is new.
    pub fn insert(&mut self, id: Digest, entry: Entry, now: u64) {
        let has_payload = entry.payload.is_some();
        let previous = self.entries.insert(id, entry);
        assert!(previous.is_none(), "cache insert of a known id");
        self.seen_order.push_back(id);
        if has_payload {
            self.payload_order.push_back(id);
        }
        self.expire(now);
    }

    /// Drops payloads and ids beyond their count and age bounds.
    pub fn expire(&mut self, now: u64) {
        while let Some(id) = self.payload_order.front().copied() {
            let old = self
                .entries
                .get(&id)
                .is_none_or(|e| now.saturating_sub(e.at_micros) > self.payload_age_max);
            if self.payload_order.len() <= self.payloads_max && !old {
                break;
            }
            self.payload_order.pop_front();
            if let Some(entry) = self.entries.get_mut(&id) {
                entry.payload = None;
            }
        }
        while let Some(id) = self.seen_order.front().copied() {
            let old = self
                .entries
                .get(&id)
                .is_none_or(|e| now.saturating_sub(e.at_micros) > self.seen_age_max);
            if self.seen_order.len() <= self.seen_max && !old {
                break;
            }
            self.seen_order.pop_front();
            self.entries.remove(&id);
        }
        assert!(self.payload_order.len() <= self.payloads_max);
        assert!(self.entries.len() <= self.seen_max);
    }

    /// The newest ids with a payload that arrived at or after `since`, at
    /// most `max` of them (for anti-entropy summaries).
    pub fn recent(&self, since: u64, max: usize) -> Vec<(Digest, Hop)> {
        self.payload_order
            .iter()
            .rev()
            .filter_map(|id| self.entries.get(id).map(|e| (id, e)))
            .take_while(|(_, e)| e.at_micros >= since)
            .filter(|(_, e)| e.payload.is_some())
            .take(max)
            .map(|(id, e)| (*id, e.hop))
            .collect()
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: u64) -> Entry {
        Entry {
            payload: Some(Bytes(vec![1])),
            hop: 1,
            at_micros: at,
            awaiting_tree: false,
            first_from: None,
        }
    }

    fn id(i: u8) -> Digest {
        Digest([i; 32])
    }

    #[test]
    fn payloads_and_ids_are_bounded_by_count() {
        let mut cache = Cache::new(2, u64::MAX, 3, u64::MAX);
        for i in 0..5 {
            cache.insert(id(i), entry(0), 0);
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&id(1)));
        assert!(cache.payload(&id(2)).is_none(), "payload evicted before id");
        assert!(cache.payload(&id(4)).is_some());
    }

    #[test]
    fn payloads_and_ids_expire_by_age() {
        let mut cache = Cache::new(10, 100, 10, 200);
        cache.insert(id(1), entry(0), 0);
        cache.expire(150);
        assert!(cache.contains(&id(1)) && cache.payload(&id(1)).is_none());
        cache.expire(201);
        assert!(!cache.contains(&id(1)));
    }
}
