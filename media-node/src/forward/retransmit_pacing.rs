//! How fast retransmissions to one subscriber may leave. A subscriber's NACK asks for every
//! packet it misses at once, and answered at once they land on the path in a burst, on top of
//! the media, right when the path already lost packets. While the subscriber's downlink has a
//! ceiling (see `downlink`), retransmissions leave at most at [`RETRANSMIT_SHARE`] of it, with
//! a burst of [`BURST`] at that rate (never less than [`MIN_BURST_BYTES`]); the others wait
//! their turn, in order. A retransmission that waited [`MAX_WAIT`] is dropped (the subscriber
//! asks again, or asks for a keyframe), as is one finding [`MAX_QUEUED`] waiting. Without a
//! ceiling nothing is held.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Share of the downlink ceiling retransmissions may use.
pub const RETRANSMIT_SHARE: f64 = 0.5;
/// The burst allowed, as time at the paced rate…
pub const BURST: Duration = Duration::from_millis(50);
/// …but at least this many bytes (two full packets).
pub const MIN_BURST_BYTES: f64 = 2_400.0;
/// A retransmission waiting longer than this is dropped.
pub const MAX_WAIT: Duration = Duration::from_millis(250);
/// Retransmissions waiting at most.
pub const MAX_QUEUED: usize = 256;

/// What became of a retransmission offered.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered<T> {
    /// It may leave now.
    Send(T),
    /// It waits for [`RetransmitPacer::release`].
    Held,
    /// Dropped: too many wait already.
    Dropped,
}

/// The pacing of one subscriber's retransmissions; `T` is the packet.
#[derive(Debug)]
pub struct RetransmitPacer<T> {
    /// Bytes per second, while there is a ceiling.
    rate: Option<f64>,
    /// Bytes that may leave now.
    budget: f64,
    refilled: Option<Instant>,
    waiting: VecDeque<(Instant, usize, T)>,
}

impl<T> Default for RetransmitPacer<T> {
    fn default() -> Self {
        Self {
            rate: None,
            budget: 0.0,
            refilled: None,
            waiting: VecDeque::new(),
        }
    }
}

impl<T> RetransmitPacer<T> {
    /// Nothing paced until a ceiling is set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscriber's downlink ceiling, bits per second; `None` when there is none.
    pub fn set_ceiling(&mut self, now: Instant, ceiling_bps: Option<f64>) {
        self.refill(now);
        let unpaced = self.rate.is_none();
        self.rate = ceiling_bps
            .filter(|bps| bps.is_finite() && *bps > 0.0)
            .map(|bps| bps / 8.0 * RETRANSMIT_SHARE);
        // Pacing starts with a full burst; a changed rate keeps what is left of it.
        self.budget = if unpaced {
            self.burst()
        } else {
            self.budget.min(self.burst())
        };
    }

    /// Retransmissions waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A retransmission of `bytes` to send.
    pub fn offer(&mut self, now: Instant, bytes: usize, packet: T) -> Offered<T> {
        if self.rate.is_none() {
            return Offered::Send(packet);
        }
        self.refill(now);
        if self.waiting.is_empty() && self.budget >= bytes as f64 {
            self.budget -= bytes as f64;
            return Offered::Send(packet);
        }
        if self.waiting.len() >= MAX_QUEUED {
            return Offered::Dropped;
        }
        self.waiting.push_back((now, bytes, packet));
        Offered::Held
    }

    /// The retransmissions that may leave at `now`, in order, and how many were dropped for
    /// waiting too long.
    pub fn release(&mut self, now: Instant) -> (Vec<T>, usize) {
        self.refill(now);
        let mut leaving = Vec::new();
        let mut stale = 0;
        while let Some((since, bytes, _)) = self.waiting.front() {
            if now.saturating_duration_since(*since) > MAX_WAIT {
                self.waiting.pop_front();
                stale += 1;
                continue;
            }
            let unpaced = self.rate.is_none();
            if !unpaced && self.budget < *bytes as f64 {
                break;
            }
            if !unpaced {
                self.budget -= *bytes as f64;
            }
            if let Some((_, _, packet)) = self.waiting.pop_front() {
                leaving.push(packet);
            }
        }
        (leaving, stale)
    }

    /// When the next waiting retransmission may leave (or must be dropped).
    pub fn next_release(&self) -> Option<Instant> {
        let (since, bytes, _) = self.waiting.front()?;
        let expires = *since + MAX_WAIT + Duration::from_millis(1);
        let Some(rate) = self.rate else {
            return self.refilled;
        };
        let short = (*bytes as f64 - self.budget).max(0.0);
        let affordable = self.refilled? + Duration::from_secs_f64(short / rate);
        Some(affordable.min(expires))
    }

    fn burst(&self) -> f64 {
        self.rate.map_or(0.0, |rate| {
            (rate * BURST.as_secs_f64()).max(MIN_BURST_BYTES)
        })
    }

    fn refill(&mut self, now: Instant) {
        if let (Some(rate), Some(last)) = (self.rate, self.refilled) {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.budget = (self.budget + elapsed * rate).min(self.burst());
        }
        self.refilled = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn without_a_ceiling_everything_leaves_at_once() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        for i in 0..1_000 {
            assert_eq!(p.offer(t0, 1_200, i), Offered::Send(i));
        }
        assert_eq!(p.next_release(), None);
    }

    #[test]
    fn a_burst_leaves_at_half_the_ceiling_in_order() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        // 960 kbit/s: retransmissions get 60,000 bytes a second, a 3,000-byte burst.
        p.set_ceiling(t0, Some(960_000.0));
        let offered: Vec<_> = (0..10).map(|i| p.offer(t0, 1_000, i)).collect();
        assert_eq!(
            offered[..3],
            [Offered::Send(0), Offered::Send(1), Offered::Send(2)]
        );
        assert!(offered[3..].iter().all(|o| *o == Offered::Held));
        // One more every 1,000 / 60,000 s ≈ 16.7 ms.
        let next = p.next_release().unwrap();
        assert!(next > t0 + ms(16) && next <= t0 + ms(17), "{:?}", next - t0);
        assert_eq!(p.release(t0 + ms(10)), (vec![], 0));
        assert_eq!(p.release(t0 + ms(17)), (vec![3], 0));
        assert_eq!(p.release(t0 + ms(67)), (vec![4, 5, 6], 0));
        // A new one waits behind those still waiting, though budget came back meanwhile.
        assert_eq!(p.offer(t0 + ms(84), 1_000, 10), Offered::Held);
        assert_eq!(p.release(t0 + ms(84)), (vec![7], 0));
    }

    #[test]
    fn what_waited_too_long_is_dropped_and_the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        p.set_ceiling(t0, Some(100_000.0));
        for i in 0..MAX_QUEUED + 10 {
            p.offer(t0, 1_200, i);
        }
        assert_eq!(p.offer(t0, 1_200, 9_999), Offered::Dropped);
        assert_eq!(p.waiting(), MAX_QUEUED);
        // 12,500 bytes a second × 0.5: after 300 ms everything still waiting is stale.
        let (left, stale) = p.release(t0 + ms(300));
        assert!(left.is_empty());
        assert_eq!(stale, MAX_QUEUED);
        assert_eq!(p.next_release(), None);
    }

    #[test]
    fn lifting_the_ceiling_releases_what_waits() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        p.set_ceiling(t0, Some(200_000.0));
        for i in 0..5 {
            p.offer(t0, 1_200, i);
        }
        p.set_ceiling(t0 + ms(1), None);
        assert_eq!(p.next_release(), Some(t0 + ms(1)));
        assert_eq!(p.release(t0 + ms(1)).0, vec![2, 3, 4]);
    }
}
