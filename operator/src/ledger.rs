//! The reservation ledger: which conference holds how much capacity on which media node.
//! Placement reads and writes it under one lock, so a burst of conferences never
//! over-commits a node even before the API reflects earlier placements. It is rebuilt from
//! conference status when the operator starts, and kept in step on every reconcile.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::decide::reservation::{Reservation, Reservations};

/// Namespace and name of an object.
pub type Key = (String, String);

/// Reservations by conference, and indexed by node.
#[derive(Debug, Default)]
pub struct Ledger {
    by_conference: HashMap<Key, Key>,
    by_node: HashMap<Key, BTreeMap<Key, Reservation>>,
    /// Conferences whose placement write failed without an answer: it may have landed, so
    /// the reservation stays until the API server says whether it did.
    unsure: HashSet<Key>,
}

impl Ledger {
    /// Records that `conference` holds `reservation` on `node`, replacing what it held
    /// before.
    pub fn reserve(&mut self, conference: Key, node: Key, reservation: Reservation) {
        self.release(&conference);
        self.by_node
            .entry(node.clone())
            .or_default()
            .insert(conference.clone(), reservation);
        self.by_conference.insert(conference, node);
    }

    /// Drops what `conference` holds; returns the node it was on.
    pub fn release(&mut self, conference: &Key) -> Option<Key> {
        self.unsure.remove(conference);
        let node = self.by_conference.remove(conference)?;
        if let Some(held) = self.by_node.get_mut(&node) {
            held.remove(conference);
            if held.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(node)
    }

    /// Everything reserved on `node`.
    pub fn reserved_on(&self, node: &Key) -> Reservations {
        self.by_node
            .get(node)
            .map(|held| held.values().copied().collect())
            .unwrap_or_default()
    }

    /// The node `conference` holds a reservation on.
    pub fn node_of(&self, conference: &Key) -> Option<&Key> {
        self.by_conference.get(conference)
    }

    /// Records that the write publishing `conference`'s reservation failed without an answer.
    pub fn mark_unsure(&mut self, conference: &Key) {
        if self.by_conference.contains_key(conference) {
            self.unsure.insert(conference.clone());
        }
    }

    /// Whether `conference`'s reservation waits for the API server to say if its write landed.
    pub fn is_unsure(&self, conference: &Key) -> bool {
        self.unsure.contains(conference)
    }

    /// The API server showed `conference`'s reservation written.
    pub fn confirm(&mut self, conference: &Key) {
        self.unsure.remove(conference);
    }

    /// Conferences holding reservations on `node`, in name order.
    pub fn conferences_on(&self, node: &Key) -> Vec<Key> {
        self.by_node
            .get(node)
            .map(|held| held.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::reservation::Span;
    use conclave_crds::capacity::Usage;

    fn conference(max_participants: u32) -> Reservation {
        Reservation::conference(max_participants, max_participants, Span::ALWAYS)
    }

    fn k(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    #[test]
    fn moves_and_releases_keep_sums_right() {
        let mut l = Ledger::default();
        l.reserve(k("a"), k("n1"), conference(10));
        l.reserve(k("b"), k("n1"), conference(5));
        assert_eq!(
            l.reserved_on(&k("n1")).total(),
            Usage {
                participants: 15,
                rooms: 2
            }
        );
        l.reserve(k("a"), k("n2"), conference(10));
        assert_eq!(
            l.reserved_on(&k("n1")).total(),
            Usage {
                participants: 5,
                rooms: 1
            }
        );
        assert_eq!(
            l.reserved_on(&k("n2")).total(),
            Usage {
                participants: 10,
                rooms: 1
            }
        );
        assert_eq!(l.release(&k("b")), Some(k("n1")));
        assert_eq!(l.reserved_on(&k("n1")), Reservations::default());
        assert_eq!(l.release(&k("b")), None);
        assert_eq!(l.conferences_on(&k("n2")), vec![k("a")]);
    }

    #[test]
    fn an_unsure_reservation_keeps_its_capacity_until_confirmed_or_released() {
        let mut l = Ledger::default();
        l.mark_unsure(&k("a"));
        assert!(!l.is_unsure(&k("a")), "nothing reserved, nothing unsure");
        l.reserve(k("a"), k("n1"), conference(10));
        l.mark_unsure(&k("a"));
        assert!(l.is_unsure(&k("a")));
        assert_eq!(l.reserved_on(&k("n1")).total().participants, 10);
        l.confirm(&k("a"));
        assert!(!l.is_unsure(&k("a")));
        l.mark_unsure(&k("a"));
        l.release(&k("a"));
        assert!(!l.is_unsure(&k("a")));
        l.reserve(k("a"), k("n2"), conference(10));
        assert!(!l.is_unsure(&k("a")), "a new placement starts sure");
    }

    #[test]
    fn reserving_twice_is_idempotent() {
        let mut l = Ledger::default();
        l.reserve(k("a"), k("n1"), conference(10));
        l.reserve(k("a"), k("n1"), conference(10));
        assert_eq!(
            l.reserved_on(&k("n1")).total(),
            Usage {
                participants: 10,
                rooms: 1
            }
        );
    }
}
