//! The reservation ledger: which conference holds how much capacity on which media node.
//! Placement reads and writes it under one lock, so a burst of conferences never
//! over-commits a node even before the API reflects earlier placements. It is rebuilt from
//! conference status when the operator starts, and kept in step on every reconcile.

use std::collections::HashMap;

use conclave_crds::capacity::Usage;

/// Namespace and name of an object.
pub type Key = (String, String);

/// Reservations by conference and their sums by node.
#[derive(Debug, Default)]
pub struct Ledger {
    by_conference: HashMap<Key, (Key, Usage)>,
    by_node: HashMap<Key, Usage>,
}

impl Ledger {
    /// Records that `conference` holds `usage` on `node`, replacing what it held before.
    pub fn reserve(&mut self, conference: Key, node: Key, usage: Usage) {
        self.release(&conference);
        let sum = self.by_node.entry(node.clone()).or_default();
        *sum = sum.plus(usage);
        self.by_conference.insert(conference, (node, usage));
    }

    /// Drops what `conference` holds; returns the node it was on.
    pub fn release(&mut self, conference: &Key) -> Option<Key> {
        let (node, usage) = self.by_conference.remove(conference)?;
        if let Some(sum) = self.by_node.get_mut(&node) {
            sum.participants = sum.participants.saturating_sub(usage.participants);
            sum.rooms = sum.rooms.saturating_sub(usage.rooms);
            if *sum == Usage::default() {
                self.by_node.remove(&node);
            }
        }
        Some(node)
    }

    /// Everything reserved on `node`.
    pub fn reserved_on(&self, node: &Key) -> Usage {
        self.by_node.get(node).copied().unwrap_or_default()
    }

    /// The node `conference` holds a reservation on.
    pub fn node_of(&self, conference: &Key) -> Option<&Key> {
        self.by_conference.get(conference).map(|(n, _)| n)
    }

    /// Conferences holding reservations on `node`.
    pub fn conferences_on(&self, node: &Key) -> Vec<Key> {
        let mut v: Vec<Key> = self
            .by_conference
            .iter()
            .filter(|(_, (n, _))| n == node)
            .map(|(c, _)| c.clone())
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    #[test]
    fn moves_and_releases_keep_sums_right() {
        let mut l = Ledger::default();
        l.reserve(k("a"), k("n1"), Usage::conference(10));
        l.reserve(k("b"), k("n1"), Usage::conference(5));
        assert_eq!(
            l.reserved_on(&k("n1")),
            Usage {
                participants: 15,
                rooms: 2
            }
        );
        l.reserve(k("a"), k("n2"), Usage::conference(10));
        assert_eq!(
            l.reserved_on(&k("n1")),
            Usage {
                participants: 5,
                rooms: 1
            }
        );
        assert_eq!(
            l.reserved_on(&k("n2")),
            Usage {
                participants: 10,
                rooms: 1
            }
        );
        assert_eq!(l.release(&k("b")), Some(k("n1")));
        assert_eq!(l.reserved_on(&k("n1")), Usage::default());
        assert_eq!(l.release(&k("b")), None);
        assert_eq!(l.conferences_on(&k("n2")), vec![k("a")]);
    }

    #[test]
    fn reserving_twice_is_idempotent() {
        let mut l = Ledger::default();
        l.reserve(k("a"), k("n1"), Usage::conference(10));
        l.reserve(k("a"), k("n1"), Usage::conference(10));
        assert_eq!(
            l.reserved_on(&k("n1")),
            Usage {
                participants: 10,
                rooms: 1
            }
        );
    }
}
