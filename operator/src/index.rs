//! Indexes beside the watch caches: which objects of a namespace carry a key (the MediaNodes
//! of a pool, the Conferences on a node or waiting for one), kept in step with the watch
//! events, so a reconcile looks up the few objects it needs instead of scanning every object
//! of the kind. An object's entries go when it is deleted, or when a re-list no longer shows
//! it.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use conclave_crds::{Conference, ConferencePhase, MediaNode, labels};
use kube::ResourceExt;
use kube::runtime::watcher::Event;

/// Namespace and name of an object.
type ObjectKey = (String, String);

/// Names of the objects under each (namespace, key), and the keys of each object.
#[derive(Debug)]
struct Entries<T> {
    by_key: HashMap<(String, T), BTreeSet<String>>,
    of_object: HashMap<ObjectKey, Vec<T>>,
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries {
            by_key: HashMap::new(),
            of_object: HashMap::new(),
        }
    }
}

impl<T: Clone + Eq + Hash> Entries<T> {
    fn put(&mut self, object: ObjectKey, keys: Vec<T>) {
        self.remove(&object);
        for k in &keys {
            self.by_key
                .entry((object.0.clone(), k.clone()))
                .or_default()
                .insert(object.1.clone());
        }
        if !keys.is_empty() {
            self.of_object.insert(object, keys);
        }
    }

    fn remove(&mut self, object: &ObjectKey) {
        let Some(keys) = self.of_object.remove(object) else {
            return;
        };
        for k in keys {
            let slot = (object.0.clone(), k);
            if let Some(names) = self.by_key.get_mut(&slot) {
                names.remove(&object.1);
                if names.is_empty() {
                    self.by_key.remove(&slot);
                }
            }
        }
    }
}

/// The index itself and, during a re-list, the one being rebuilt.
#[derive(Debug)]
struct State<T> {
    live: Entries<T>,
    relisting: Option<Entries<T>>,
}

/// An index of objects of kind `K` by the keys `keys_of` gives each. Cheap to clone: clones
/// share the entries.
pub struct Index<K, T> {
    state: Arc<RwLock<State<T>>>,
    keys_of: fn(&K) -> Vec<T>,
}

impl<K, T> Clone for Index<K, T> {
    fn clone(&self) -> Self {
        Index {
            state: Arc::clone(&self.state),
            keys_of: self.keys_of,
        }
    }
}

impl<K: ResourceExt, T: Clone + Eq + Hash> Index<K, T> {
    /// An empty index by `keys_of`.
    pub fn new(keys_of: fn(&K) -> Vec<T>) -> Self {
        Index {
            state: Arc::new(RwLock::new(State {
                live: Entries::default(),
                relisting: None,
            })),
            keys_of,
        }
    }

    /// Follows one watch event. A re-list builds a new index, which replaces the old one when
    /// the list is complete, as the watch cache does.
    pub fn observe(&self, event: &Event<K>) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Apply(o) => state.live.put(object_key(o), (self.keys_of)(o)),
            Event::Delete(o) => state.live.remove(&object_key(o)),
            Event::Init => state.relisting = Some(Entries::default()),
            Event::InitApply(o) => {
                let keys = (self.keys_of)(o);
                state
                    .relisting
                    .get_or_insert_with(Entries::default)
                    .put(object_key(o), keys);
            }
            Event::InitDone => {
                if let Some(fresh) = state.relisting.take() {
                    state.live = fresh;
                }
            }
        }
    }

    /// Names, in order, of the objects of namespace `ns` under `key`.
    pub fn names(&self, ns: &str, key: &T) -> Vec<String> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state
            .live
            .by_key
            .get(&(ns.to_owned(), key.clone()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn object_key<K: ResourceExt>(o: &K) -> ObjectKey {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// What MediaNodes are looked up by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKey {
    /// `spec.pool`.
    Pool(String),
}

/// The keys of a MediaNode.
pub fn node_keys(node: &MediaNode) -> Vec<NodeKey> {
    vec![NodeKey::Pool(node.spec.pool.clone())]
}

/// What Conferences are looked up by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConferenceKey {
    /// The media node its status or its label names (both while it moves).
    Node(String),
    /// The pool its spec asks for or its status names.
    Pool(String),
    /// Not placed on any node, and not over.
    Unplaced,
}

/// The keys of a Conference.
pub fn conference_keys(conf: &Conference) -> Vec<ConferenceKey> {
    let status = conf.status.as_ref();
    let recorded = status.and_then(|s| s.media_node.clone());
    let labelled = conf.labels().get(labels::MEDIA_NODE).cloned();
    let over = status
        .and_then(|s| s.phase)
        .is_some_and(|p| matches!(p, ConferencePhase::Ended | ConferencePhase::Failed));
    let mut keys: Vec<ConferenceKey> = [recorded.clone(), labelled]
        .into_iter()
        .flatten()
        .map(ConferenceKey::Node)
        .chain(
            [conf.spec.pool.clone(), status.and_then(|s| s.pool.clone())]
                .into_iter()
                .flatten()
                .map(ConferenceKey::Pool),
        )
        .collect();
    if recorded.is_none() && !over {
        keys.push(ConferenceKey::Unplaced);
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conference(name: &str, pool: &str, node: Option<&str>) -> Conference {
        let mut c: Conference = serde_json::from_value(json!({
            "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"pool": pool, "maxParticipants": 4}
        }))
        .expect("a Conference");
        if let Some(node) = node {
            c.status = Some(conclave_crds::conference::ConferenceStatus {
                media_node: Some(node.to_owned()),
                pool: Some(pool.to_owned()),
                ..Default::default()
            });
        }
        c
    }

    fn index() -> Index<Conference, ConferenceKey> {
        Index::new(conference_keys)
    }

    #[test]
    fn follows_placements_moves_and_deletes() {
        let i = index();
        i.observe(&Event::Apply(conference("a", "p", None)));
        i.observe(&Event::Apply(conference("b", "p", Some("n1"))));
        assert_eq!(i.names("ns", &ConferenceKey::Unplaced), ["a"]);
        assert_eq!(i.names("ns", &ConferenceKey::Pool("p".into())), ["a", "b"]);
        assert_eq!(i.names("other", &ConferenceKey::Pool("p".into())), [""; 0]);

        i.observe(&Event::Apply(conference("a", "p", Some("n1"))));
        assert_eq!(i.names("ns", &ConferenceKey::Unplaced), [""; 0]);
        assert_eq!(i.names("ns", &ConferenceKey::Node("n1".into())), ["a", "b"]);

        i.observe(&Event::Apply(conference("a", "p", Some("n2"))));
        assert_eq!(i.names("ns", &ConferenceKey::Node("n1".into())), ["b"]);
        i.observe(&Event::Delete(conference("b", "p", Some("n1"))));
        assert_eq!(i.names("ns", &ConferenceKey::Node("n1".into())), [""; 0]);
        assert_eq!(i.names("ns", &ConferenceKey::Pool("p".into())), ["a"]);
    }

    #[test]
    fn a_relist_replaces_the_index_when_complete() {
        let i = index();
        i.observe(&Event::Apply(conference("gone", "p", None)));
        i.observe(&Event::Init);
        i.observe(&Event::InitApply(conference("kept", "p", None)));
        // Until the list is complete, lookups answer from the old index.
        assert_eq!(i.names("ns", &ConferenceKey::Unplaced), ["gone"]);
        i.observe(&Event::InitDone);
        assert_eq!(i.names("ns", &ConferenceKey::Unplaced), ["kept"]);
    }
}
