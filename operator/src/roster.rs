//! Which conferences the watch shows, by uid, so that one leaving it is reported once: deleted,
//! replaced by a namesake, or missing when a re-list completes (a deletion the operator did not
//! see as it happened, while its watch reconnected). Conferences carry no finalizer, so this is
//! how the ledger learns to release what a deleted conference held.

use std::collections::HashMap;

use conclave_crds::Conference;
use kube::ResourceExt;
use kube::runtime::watcher::Event;

use crate::ledger::Key;

/// The conferences in view, and during a re-list the ones it showed so far.
#[derive(Debug, Default)]
pub struct Roster {
    live: HashMap<Key, String>,
    relisting: Option<HashMap<Key, String>>,
}

impl Roster {
    /// Follows one watch event; returns the conferences that left the view with it.
    pub fn observe(&mut self, event: &Event<Conference>) -> Vec<Key> {
        match event {
            Event::Apply(c) => {
                let (k, uid) = entry(c);
                match self.live.insert(k.clone(), uid.clone()) {
                    Some(before) if before != uid => vec![k],
                    _ => Vec::new(),
                }
            }
            Event::Delete(c) => {
                let (k, _) = entry(c);
                self.live.remove(&k).map(|_| k).into_iter().collect()
            }
            Event::Init => {
                self.relisting = Some(HashMap::new());
                Vec::new()
            }
            Event::InitApply(c) => {
                let (k, uid) = entry(c);
                self.relisting
                    .get_or_insert_with(HashMap::new)
                    .insert(k, uid);
                Vec::new()
            }
            Event::InitDone => {
                let Some(fresh) = self.relisting.take() else {
                    return Vec::new();
                };
                let mut left: Vec<Key> = self
                    .live
                    .iter()
                    .filter(|(k, uid)| fresh.get(*k) != Some(*uid))
                    .map(|(k, _)| k.clone())
                    .collect();
                left.sort();
                self.live = fresh;
                left
            }
        }
    }
}

fn entry(c: &Conference) -> (Key, String) {
    (
        (c.namespace().unwrap_or_default(), c.name_any()),
        c.uid().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conference(name: &str, uid: &str) -> Conference {
        serde_json::from_value(json!({
            "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"pool": "web", "maxParticipants": 4}
        }))
        .expect("a Conference")
    }

    fn k(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    #[test]
    fn a_deleted_conference_leaves_once() {
        let mut r = Roster::default();
        assert!(r.observe(&Event::Apply(conference("a", "1"))).is_empty());
        assert!(
            r.observe(&Event::Apply(conference("a", "1"))).is_empty(),
            "an update"
        );
        assert_eq!(r.observe(&Event::Delete(conference("a", "1"))), [k("a")]);
        assert!(r.observe(&Event::Delete(conference("a", "1"))).is_empty());
    }

    #[test]
    fn a_namesake_replaces_the_conference_it_follows() {
        let mut r = Roster::default();
        r.observe(&Event::Apply(conference("a", "1")));
        assert_eq!(r.observe(&Event::Apply(conference("a", "2"))), [k("a")]);
    }

    #[test]
    fn a_relist_reports_what_was_deleted_while_the_watch_was_away() {
        let mut r = Roster::default();
        for (name, uid) in [("a", "1"), ("b", "2"), ("c", "3")] {
            r.observe(&Event::Apply(conference(name, uid)));
        }
        assert!(r.observe(&Event::Init).is_empty());
        r.observe(&Event::InitApply(conference("a", "1")));
        r.observe(&Event::InitApply(conference("c", "4")));
        r.observe(&Event::InitApply(conference("d", "5")));
        assert_eq!(
            r.observe(&Event::InitDone),
            [k("b"), k("c")],
            "b deleted, c replaced by a namesake"
        );
        assert_eq!(r.observe(&Event::Delete(conference("d", "5"))), [k("d")]);
    }
}
