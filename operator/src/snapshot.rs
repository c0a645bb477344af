//! What placement reads of a pool's media nodes: their decision views without reservations,
//! built once and reused by the placements that follow within `FRESH_FOR`, until a node
//! changes phase, draining or address (the conference controller's node watch says so) or
//! the pool's spec changes. Building a view of each of 1,000 nodes cost about 4 ms of CPU for
//! every placement before (docs/benchmarks.md, "Placement at the limit"); the reservations,
//! which every placement changes, are still read from the ledger each time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::decide::NodeView;
use crate::ledger::Key;
use crate::state::lock;

/// Longest a pool's views are reused: what else a view holds (a heartbeat, a load report, a
/// condition) may be this much older than the watch caches, less than the watches' own lag
/// under load.
pub const FRESH_FOR: Duration = Duration::from_millis(100);

/// The last views of each pool.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// Bumped whenever a node's phase, draining or address changes.
    epoch: AtomicU64,
    pools: Mutex<HashMap<Key, Snapshot>>,
}

#[derive(Debug)]
struct Snapshot {
    taken: Instant,
    epoch: u64,
    generation: i64,
    views: Arc<Vec<NodeView>>,
}

impl Snapshots {
    /// A node's phase, draining or address changed: views taken before are not reused.
    pub fn node_changed(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The views of `pool` (spec generation `generation`) at `now`: the last ones while they
    /// are fresh, else those `build` makes.
    pub fn views(
        &self,
        pool: &Key,
        generation: i64,
        now: Instant,
        build: impl FnOnce() -> Vec<NodeView>,
    ) -> Arc<Vec<NodeView>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut pools = lock(&self.pools);
        if let Some(s) = pools.get(pool)
            && s.epoch == epoch
            && s.generation == generation
            && now.saturating_duration_since(s.taken) < FRESH_FOR
        {
            return Arc::clone(&s.views);
        }
        let views = Arc::new(build());
        let snapshot = Snapshot {
            taken: now,
            epoch,
            generation,
            views: Arc::clone(&views),
        };
        pools.insert(pool.clone(), snapshot);
        views
    }

    /// Forgets deleted pool `pool`.
    pub fn forget(&self, pool: &Key) {
        lock(&self.pools).remove(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Key {
        ("ns".to_owned(), "eu".to_owned())
    }

    /// Views of one node named `name`, counting the builds.
    fn build(builds: &mut u32, name: &str) -> Vec<NodeView> {
        *builds += 1;
        vec![NodeView {
            name: name.to_owned(),
            ..NodeView::default()
        }]
    }

    #[test]
    fn placements_within_the_fresh_time_share_one_build() {
        let s = Snapshots::default();
        let t0 = Instant::now();
        let mut builds = 0;
        let first = s.views(&pool(), 1, t0, || build(&mut builds, "a"));
        let again = s.views(&pool(), 1, t0 + FRESH_FOR / 2, || build(&mut builds, "b"));
        assert_eq!((builds, again[0].name.as_str()), (1, "a"));
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn views_are_built_again_once_stale_a_node_changed_or_the_pool_did() {
        let s = Snapshots::default();
        let t0 = Instant::now();
        let mut builds = 0;
        s.views(&pool(), 1, t0, || build(&mut builds, "a"));
        let late = s.views(&pool(), 1, t0 + FRESH_FOR, || build(&mut builds, "b"));
        assert_eq!((builds, late[0].name.as_str()), (2, "b"));
        s.node_changed();
        let changed = s.views(&pool(), 1, t0 + FRESH_FOR, || build(&mut builds, "c"));
        assert_eq!((builds, changed[0].name.as_str()), (3, "c"));
        let respec = s.views(&pool(), 2, t0 + FRESH_FOR, || build(&mut builds, "d"));
        assert_eq!((builds, respec[0].name.as_str()), (4, "d"));
        let other = ("ns".to_owned(), "us".to_owned());
        s.views(&other, 2, t0 + FRESH_FOR, || build(&mut builds, "e"));
        assert_eq!(builds, 5, "each pool has its own views");
        s.forget(&pool());
        s.views(&pool(), 2, t0 + FRESH_FOR, || build(&mut builds, "f"));
        assert_eq!(builds, 6, "a forgotten pool's views are gone");
    }
}
