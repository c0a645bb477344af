//! Reading the operator's own writes: each object as this operator last wrote it, with the
//! versions that write replaced. A reconcile that starts while the watch cache still shows a
//! replaced version works on the written object instead. Without this, a conference
//! reconciled again before the watch delivered the operator's last write (seconds, when the
//! API server is busiest) was decided on the old version, and its conditional write was
//! refused as a conflict, once per retry until the watch caught up.
//!
//! A conditional write can also be refused because someone else wrote the object (a media
//! node its participant count), or because a write whose answer never came (a timeout)
//! landed. The version it was based on is then known to be outdated, and deciding on it again
//! would only be refused again: [`OwnWrites::outdated`] says so until the watch brings a
//! newer version (or for [`OUTDATED_FOR`], should it never come).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use crate::ledger::Key;
use crate::state::{key, lock};

/// An object as last written, and the resourceVersions the writes replaced.
struct Written<K> {
    replaced: Vec<String>,
    object: Arc<K>,
}

/// How long a version a write was refused on counts as outdated without the watch showing a
/// newer one.
pub const OUTDATED_FOR: Duration = Duration::from_secs(30);

/// The last write of each object, until the watch shows it, and the versions writes were
/// refused on.
pub struct OwnWrites<K> {
    by_key: Mutex<HashMap<Key, Written<K>>>,
    refused: Mutex<HashMap<Key, (String, Instant)>>,
}

impl<K> Default for OwnWrites<K> {
    fn default() -> Self {
        OwnWrites {
            by_key: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Resource> OwnWrites<K> {
    /// The newest version of `cached` this process knows: its own write when the cache still
    /// shows a version that write replaced, else the cached one (and the write is forgotten:
    /// the cache has it, or someone wrote after it).
    pub fn freshest(&self, cached: Arc<K>) -> Arc<K> {
        let k = key(cached.as_ref());
        let mut by_key = lock(&self.by_key);
        let Some(written) = by_key.get(&k) else {
            return cached;
        };
        let seen = cached.resource_version().unwrap_or_default();
        if written.replaced.contains(&seen) {
            return Arc::clone(&written.object);
        }
        by_key.remove(&k);
        cached
    }

    /// Records that a write based on resourceVersion `before` produced `after`.
    pub fn wrote(&self, before: Option<String>, after: K) {
        let k = key(&after);
        let mut by_key = lock(&self.by_key);
        let mut replaced = match by_key.remove(&k) {
            // A write on top of the previous one: the cache may still show either version.
            Some(w) if w.object.resource_version() == before => w.replaced,
            _ => Vec::new(),
        };
        replaced.extend(before);
        by_key.insert(
            k,
            Written {
                replaced,
                object: Arc::new(after),
            },
        );
    }

    /// Records that a write based on resourceVersion `rv` of `object` was refused as a
    /// conflict: the object changed since.
    pub fn refused(&self, object: &K, rv: Option<String>) {
        if let Some(rv) = rv {
            lock(&self.refused).insert(key(object), (rv, Instant::now()));
        }
    }

    /// Whether `object` is a version a write was refused on, less than [`OUTDATED_FOR`] ago:
    /// a newer one exists that the watch has not shown yet.
    pub fn outdated(&self, object: &K) -> bool {
        self.outdated_at(object, Instant::now())
    }

    fn outdated_at(&self, object: &K, now: Instant) -> bool {
        let k = key(object);
        let mut refused = lock(&self.refused);
        let Some((rv, at)) = refused.get(&k) else {
            return false;
        };
        if object.resource_version().as_ref() == Some(rv)
            && now.saturating_duration_since(*at) < OUTDATED_FOR
        {
            return true;
        }
        refused.remove(&k);
        false
    }

    /// Follows the watch: a write is forgotten once the watch shows it (or anything but a
    /// version it replaced), or the object is deleted, so only writes in flight are held.
    pub fn observe(&self, event: &Event<K>) {
        let (object, deleted) = match event {
            Event::Apply(o) | Event::InitApply(o) => (o, false),
            Event::Delete(o) => (o, true),
            Event::Init | Event::InitDone => return,
        };
        let k = key(object);
        if deleted {
            lock(&self.refused).remove(&k);
        }
        let mut by_key = lock(&self.by_key);
        let stale = by_key.get(&k).is_some_and(|w| {
            object
                .resource_version()
                .is_some_and(|rv| w.replaced.contains(&rv))
        });
        if deleted || !stale {
            by_key.remove(&k);
        }
    }

    /// Writes held (waiting for the watch).
    pub fn len(&self) -> usize {
        lock(&self.by_key).len()
    }

    /// True when no write is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn at(rv: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some("c".into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.resource_version = Some(rv.into());
        c
    }

    fn rv(c: &Arc<ConfigMap>) -> String {
        c.resource_version().unwrap_or_default()
    }

    #[test]
    fn a_stale_cache_gives_way_to_the_written_object_until_it_catches_up() {
        let own = OwnWrites::default();
        own.wrote(Some("1".into()), at("2"));
        own.wrote(Some("2".into()), at("3"));
        // The cache still shows 1, then 2: both replaced by the writes.
        assert_eq!(rv(&own.freshest(Arc::new(at("1")))), "3");
        assert_eq!(rv(&own.freshest(Arc::new(at("2")))), "3");
        // It shows the write: forgotten.
        assert_eq!(rv(&own.freshest(Arc::new(at("3")))), "3");
        assert_eq!(rv(&own.freshest(Arc::new(at("1")))), "1");
    }

    #[test]
    fn a_version_a_write_was_refused_on_is_outdated_until_a_newer_one_or_a_while() {
        let own = OwnWrites::default();
        let now = Instant::now();
        own.refused(&at("4"), Some("4".into()));
        assert!(own.outdated_at(&at("4"), now));
        assert!(
            !own.outdated_at(&at("5"), now),
            "the watch brought a newer version"
        );
        assert!(
            !own.outdated_at(&at("4"), now),
            "forgotten once a newer one was seen"
        );
        own.refused(&at("6"), Some("6".into()));
        assert!(
            !own.outdated_at(&at("6"), Instant::now() + OUTDATED_FOR),
            "should it never come"
        );
        own.refused(&at("7"), None);
        assert!(!own.outdated_at(&at("7"), now));
        own.refused(&at("8"), Some("8".into()));
        own.observe(&Event::Delete(at("8")));
        assert!(!own.outdated_at(&at("8"), now), "deleted");
    }

    #[test]
    fn the_watch_releases_a_write_once_it_shows_it() {
        let own = OwnWrites::default();
        own.wrote(Some("1".into()), at("2"));
        own.observe(&Event::Apply(at("1")));
        assert_eq!(
            own.len(),
            1,
            "a late event of the replaced version keeps it"
        );
        own.observe(&Event::Apply(at("2")));
        assert!(own.is_empty());
        own.wrote(Some("2".into()), at("3"));
        own.observe(&Event::Delete(at("2")));
        assert!(own.is_empty());
    }

    #[test]
    fn a_version_someone_else_wrote_wins() {
        let own = OwnWrites::default();
        own.wrote(Some("1".into()), at("2"));
        assert_eq!(rv(&own.freshest(Arc::new(at("7")))), "7");
        assert_eq!(rv(&own.freshest(Arc::new(at("1")))), "1");
    }

    #[test]
    fn a_write_on_an_older_version_starts_afresh() {
        let own = OwnWrites::default();
        own.wrote(Some("1".into()), at("2"));
        own.wrote(Some("5".into()), at("6"));
        assert_eq!(rv(&own.freshest(Arc::new(at("1")))), "1");
    }
}
