//! The media port's send side. Every peer connection hands its datagrams to the port one at a
//! time (its driver, or a subscription's write sending the media it forwarded, in the
//! connection's order); rather than one `sendmsg` each, they are queued here and the port's sender
//! task writes them in runs: consecutive datagrams to one address and of one size (the last
//! may be shorter), a frame's packets to one subscriber, go out as one GSO send that the
//! kernel splits. Everything a driver sends goes through the queue, its own GSO batches
//! split into their datagrams, so a peer connection's datagrams leave in the order it sent
//! them (a datagram overtaking others is a gap to the receiver, which asks for it again).
//! The queue is bounded: a writer whose datagrams find it full waits until the sender took a
//! pass. Buffers are recycled, so a datagram costs a copy and no allocation.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Mutex;
use std::task::Waker;

use tokio::sync::Notify;

use crate::sync::lock;

/// Datagrams queued at most: a few frame bursts fanned out to every subscriber.
pub const DEPTH: usize = 2048;
/// Datagrams the sender takes per pass.
pub const PASS: usize = 64;
/// Bytes of one GSO send at most: the kernel refuses a send whose datagrams add up to more
/// than an IP datagram holds (64 KiB), and all of them would be lost.
pub const RUN_BYTES: usize = 60 * 1024;

/// A queued datagram: where to, and its bytes.
pub type Datagram = (SocketAddr, Vec<u8>);

#[derive(Debug, Default)]
struct Queue {
    datagrams: VecDeque<Datagram>,
    free: Vec<Vec<u8>>,
    /// Drivers waiting for room.
    waiting: Vec<Waker>,
}

/// The queue between the drivers and the sender task.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Woken when a datagram is queued.
    pub queued: Notify,
}

impl Outbox {
    /// Queues a copy of `contents` for `to`, split into datagrams of `segment_size` when the
    /// driver gave several at once; false when the queue has no room for them all, and then
    /// `waker` is woken once the sender made room.
    pub fn push(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
        waker: &Waker,
    ) -> bool {
        let size = segment_size
            .filter(|s| *s > 0)
            .unwrap_or(contents.len().max(1));
        {
            let mut queue = lock(&self.queue);
            if queue.datagrams.len() + contents.len().div_ceil(size).max(1) > DEPTH {
                if !queue.waiting.iter().any(|w| w.will_wake(waker)) {
                    queue.waiting.push(waker.clone());
                }
                return false;
            }
            if contents.is_empty() {
                queue.datagrams.push_back((to, Vec::new()));
            }
            for datagram in contents.chunks(size) {
                let mut buffer = queue.free.pop().unwrap_or_default();
                buffer.clear();
                buffer.extend_from_slice(datagram);
                queue.datagrams.push_back((to, buffer));
            }
        }
        self.queued.notify_one();
        true
    }

    /// Moves up to [`PASS`] queued datagrams into `out` (empty on return when none is
    /// queued), takes back the buffers of `spent` for reuse, and wakes the drivers that
    /// waited for room.
    pub fn take(&self, out: &mut Vec<Datagram>, spent: &mut Vec<Datagram>) {
        let waiting = {
            let mut queue = lock(&self.queue);
            let free = DEPTH.saturating_sub(queue.free.len());
            queue
                .free
                .extend(spent.drain(..).map(|(_, buffer)| buffer).take(free));
            let n = queue.datagrams.len().min(PASS);
            out.extend(queue.datagrams.drain(..n));
            std::mem::take(&mut queue.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }
}

/// The runs of `datagrams` that can go out as one GSO send each: consecutive, to one
/// address, all of the first one's length but the last (which may be shorter), at most
/// `max_segments` long and [`RUN_BYTES`] in all.
pub fn runs(datagrams: &[Datagram], max_segments: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < datagrams.len() {
        let (to, first) = &datagrams[start];
        let most = max_segments.min(RUN_BYTES / first.len().max(1)).max(1);
        let mut end = start + 1;
        while end < datagrams.len() && end - start < most {
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

    fn waker() -> Waker {
        Waker::noop().clone()
    }

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
        // A backlog to one subscriber: no send past what one IP datagram holds.
        let backlog = vec![datagram(1, 1100); 64];
        let sent: Vec<usize> = runs(&backlog, 64).iter().map(|r| r.len()).collect();
        assert_eq!(sent, [55, 9]);
        assert!(sent.iter().all(|n| n * 1100 <= RUN_BYTES));
    }

    #[test]
    fn a_drivers_own_batch_is_queued_datagram_by_datagram() {
        let outbox = Outbox::default();
        assert!(outbox.push(to(1), b"aaaabbbbcc", Some(4), &waker()));
        let mut out = Vec::new();
        outbox.take(&mut out, &mut Vec::new());
        let datagrams: Vec<&[u8]> = out.iter().map(|(_, d)| d.as_slice()).collect();
        assert_eq!(datagrams, [&b"aaaa"[..], b"bbbb", b"cc"]);
    }

    #[test]
    fn the_queue_is_bounded_and_recycles_its_buffers() {
        let outbox = Outbox::default();
        for _ in 0..DEPTH {
            assert!(outbox.push(to(1), b"media", None, &waker()));
        }
        assert!(
            !outbox.push(to(1), b"one too many", None, &waker()),
            "full: its driver waits"
        );
        let mut out = Vec::new();
        let mut spent = Vec::new();
        outbox.take(&mut out, &mut spent);
        assert_eq!(out.len(), PASS);
        assert_eq!(out[0], (to(1), b"media".to_vec()));
        spent.append(&mut out);
        outbox.take(&mut out, &mut spent);
        assert!(spent.is_empty(), "buffers taken back");
        assert!(outbox.push(to(2), b"again", None, &waker()));
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
