//! The media port's send side. Every peer connection's driver hands its datagrams to the port
//! one at a time; rather than one `sendmsg` each, they are queued here and the port's sender
//! task writes them in runs: consecutive datagrams to one address and of one size (the last
//! may be shorter), a frame's packets to one subscriber, go out as one GSO send that the
//! kernel splits. The queue is bounded; a datagram that finds it full is sent at once by its
//! driver instead, so nothing waits behind a stalled sender. Buffers are recycled, so a
//! datagram costs a copy and no allocation.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::sync::lock;

/// Datagrams queued at most.
pub const DEPTH: usize = 1024;
/// Datagrams the sender takes per pass.
pub const PASS: usize = 64;

/// A queued datagram: where to, and its bytes.
pub type Datagram = (SocketAddr, Vec<u8>);

#[derive(Debug, Default)]
struct Queue {
    datagrams: VecDeque<Datagram>,
    free: Vec<Vec<u8>>,
}

/// The queue between the drivers and the sender task.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Woken when a datagram is queued.
    pub queued: Notify,
}

impl Outbox {
    /// Queues a copy of `contents` for `to`; false when the queue is full (the caller sends
    /// it itself).
    pub fn push(&self, to: SocketAddr, contents: &[u8]) -> bool {
        {
            let mut queue = lock(&self.queue);
            if queue.datagrams.len() >= DEPTH {
                return false;
            }
            let mut buffer = queue.free.pop().unwrap_or_default();
            buffer.clear();
            buffer.extend_from_slice(contents);
            queue.datagrams.push_back((to, buffer));
        }
        self.queued.notify_one();
        true
    }

    /// Moves up to [`PASS`] queued datagrams into `out` (empty on return when none is
    /// queued), and takes back the buffers of `spent` for reuse.
    pub fn take(&self, out: &mut Vec<Datagram>, spent: &mut Vec<Datagram>) {
        let mut queue = lock(&self.queue);
        let free = DEPTH.saturating_sub(queue.free.len());
        queue
            .free
            .extend(spent.drain(..).map(|(_, buffer)| buffer).take(free));
        let n = queue.datagrams.len().min(PASS);
        out.extend(queue.datagrams.drain(..n));
    }
}

/// The runs of `datagrams` that can go out as one GSO send each: consecutive, to one
/// address, all of the first one's length but the last (which may be shorter), at most
/// `max_segments` long.
pub fn runs(datagrams: &[Datagram], max_segments: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < datagrams.len() {
        let (to, first) = &datagrams[start];
        let mut end = start + 1;
        while end < datagrams.len() && end - start < max_segments.max(1) {
            let (next_to, next) = &datagrams[end];
            let previous_full = datagrams[end - 1].1.len() == first.len();
            if next_to != to || next.len() > first.len() || !previous_full || next.is_empty() {
                break;
            }
            end += 1;
        }
        runs.push(start..end);
        start = end;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn datagram(port: u16, len: usize) -> Datagram {
        (to(port), vec![7; len])
    }

    #[test]
    fn a_run_is_one_address_and_one_size_with_a_shorter_last() {
        let datagrams = [
            datagram(1, 1000),
            datagram(1, 1000),
            datagram(1, 400),
            datagram(1, 1000),
            datagram(2, 1000),
            datagram(2, 1200),
            datagram(1, 1000),
        ];
        assert_eq!(runs(&datagrams, 64), [0..3, 3..4, 4..5, 5..6, 6..7]);
        assert_eq!(runs(&datagrams, 2), [0..2, 2..3, 3..4, 4..5, 5..6, 6..7]);
        assert_eq!(runs(&datagrams, 1).len(), datagrams.len());
        assert!(runs(&[], 64).is_empty());
    }

    #[test]
    fn the_queue_is_bounded_and_recycles_its_buffers() {
        let outbox = Outbox::default();
        for _ in 0..DEPTH {
            assert!(outbox.push(to(1), b"media"));
        }
        assert!(
            !outbox.push(to(1), b"one too many"),
            "full: sent by its driver"
        );
        let mut out = Vec::new();
        let mut spent = Vec::new();
        outbox.take(&mut out, &mut spent);
        assert_eq!(out.len(), PASS);
        assert_eq!(out[0], (to(1), b"media".to_vec()));
        spent.append(&mut out);
        outbox.take(&mut out, &mut spent);
        assert!(spent.is_empty(), "buffers taken back");
        assert!(outbox.push(to(2), b"again"));
        let mut all = Vec::new();
        loop {
            let before = all.len();
            outbox.take(&mut all, &mut spent);
            if all.len() == before {
                break;
            }
        }
        assert_eq!(
            all.len(),
            DEPTH - 2 * PASS + 1,
            "two passes were taken before"
        );
        assert_eq!(all.last(), Some(&(to(2), b"again".to_vec())));
    }
}
