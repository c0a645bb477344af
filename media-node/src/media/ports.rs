//! The UDP ports peer connections bind, handed out from the node's configured range and
//! returned when a peer leaves (webrtc 0.21 has no single-port mux, so every peer connection
//! owns one socket).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Free ports of the range.
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    free: BTreeSet<u16>,
    /// Rotates through the range so a just-released port is not reused at once (stale packets
    /// of the old peer would reach the new one).
    next: u16,
}

/// A port taken from the pool; returned to it on drop.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    pool: Arc<PortPool>,
}

impl PortLease {
    /// The leased port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.pool.release(self.port);
    }
}

impl PortPool {
    /// A pool of `min..=max` (empty when `max < min`).
    pub fn new(min: u16, max: u16) -> Arc<Self> {
        Arc::new(Self {
            min,
            max,
            state: Mutex::new(PoolState {
                free: (min..=max).collect(),
                next: min,
            }),
        })
    }

    /// The configured range.
    pub fn range(&self) -> (u16, u16) {
        (self.min, self.max)
    }

    /// Ports currently free.
    pub fn available(&self) -> usize {
        self.lock().free.len()
    }

    /// Takes the next free port after the last one handed out, if any is free.
    pub fn lease(self: &Arc<Self>) -> Option<PortLease> {
        let mut state = self.lock();
        let port = state
            .free
            .range(state.next..)
            .next()
            .or_else(|| state.free.iter().next())
            .copied()?;
        state.free.remove(&port);
        state.next = port.checked_add(1).unwrap_or(self.min);
        Some(PortLease {
            port,
            pool: Arc::clone(self),
        })
    }

    fn release(&self, port: u16) {
        self.lock().free.insert(port);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The lock is never held across a panic point, so poisoning only follows a bug
        // elsewhere; the set itself is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_each_port_once_and_takes_them_back() {
        let pool = PortPool::new(50000, 50002);
        let a = pool.lease().expect("first");
        let b = pool.lease().expect("second");
        let c = pool.lease().expect("third");
        assert!(pool.lease().is_none());
        assert_eq!([a.port(), b.port(), c.port()], [50000, 50001, 50002]);
        drop(b);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.lease().expect("returned").port(), 50001);
    }

    #[test]
    fn released_ports_are_not_reused_at_once() {
        let pool = PortPool::new(50000, 50009);
        let a = pool.lease().expect("port");
        let first = a.port();
        drop(a);
        assert_ne!(pool.lease().expect("port").port(), first);
    }

    #[test]
    fn top_of_the_port_space() {
        let pool = PortPool::new(65535, 65535);
        let a = pool.lease().expect("port");
        assert_eq!(a.port(), 65535);
        drop(a);
        assert_eq!(pool.lease().expect("again").port(), 65535);
    }

    #[test]
    fn empty_range() {
        assert!(PortPool::new(2, 1).lease().is_none());
    }
}
