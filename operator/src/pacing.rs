//! Pacing of reconciles that a stream of small changes triggers (a pool or a media node on
//! every placement): at most one pass per object per interval, and one pass at the end of the
//! interval for the triggers that arrived during it. Unlike a debounce, a steady stream of
//! triggers never postpones a pass indefinitely.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ledger::Key;
use crate::state::lock;

/// When each object last had a pass.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    last: Mutex<HashMap<Key, Instant>>,
}

impl Pacer {
    /// A pacer allowing one pass per object per `interval`.
    pub fn new(interval: Duration) -> Self {
        Pacer {
            interval,
            last: Mutex::default(),
        }
    }

    /// Admits a pass over `key` at `now` (and records it), or says how long to wait.
    pub fn admit(&self, key: &Key, now: Instant) -> Result<(), Duration> {
        let mut last = lock(&self.last);
        if let Some(at) = last.get(key) {
            let since = now.saturating_duration_since(*at);
            if since < self.interval {
                return Err(self.interval - since);
            }
        }
        last.insert(key.clone(), now);
        Ok(())
    }

    /// Forgets `key` (its object was deleted).
    pub fn forget(&self, key: &Key) {
        lock(&self.last).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pass_per_interval_and_a_steady_stream_is_not_starved() {
        let pacer = Pacer::new(Duration::from_millis(500));
        let k: Key = ("ns".into(), "pool".into());
        let t0 = Instant::now();
        assert_eq!(pacer.admit(&k, t0), Ok(()));
        // Triggers every 10 ms: each is told to wait for the end of the interval...
        for i in 1..50u64 {
            let wait = pacer
                .admit(&k, t0 + Duration::from_millis(i * 10))
                .unwrap_err();
            assert_eq!(wait, Duration::from_millis(500 - i * 10));
        }
        // ...and the pass at the end of it runs.
        assert_eq!(pacer.admit(&k, t0 + Duration::from_millis(500)), Ok(()));
        assert!(pacer.admit(&k, t0 + Duration::from_millis(510)).is_err());
        // Other objects have their own interval.
        assert_eq!(pacer.admit(&("ns".into(), "other".into()), t0), Ok(()));
        pacer.forget(&k);
        assert_eq!(pacer.admit(&k, t0 + Duration::from_millis(520)), Ok(()));
    }
}
