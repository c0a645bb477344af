//! How fast retransmissions to one subscriber may leave. A subscriber's NACK asks for every
//! packet it misses at once, and answered at once they land on the path in a burst, on top of
//! the media, right when the path already lost packets. While the subscriber's downlink has a
//! ceiling (see `downlink`), retransmissions leave at most at [`RETRANSMIT_SHARE`] of it, with
//! a burst of [`BURST`] at that rate (never less than [`MIN_BURST_BYTES`]); the others wait
//! their turn, in order. A ceiling below what the node is sending the subscriber anyway (the
//! media over the last [`SENT_WINDOW`]) does not bind: a track of one layer cannot go under
//! it, and a path that shows a growing queue only because the machine was busy carries it. So
//! the share is of the higher of the two; holding back only the repairs of media that goes out
//! regardless would turn each loss into a freeze. A packet asked for again while its
//! retransmission waits is not queued twice. A retransmission that waited [`MAX_WAIT`] is
//! dropped (the subscriber asks again, or asks for a keyframe), as is one finding
//! [`MAX_QUEUED`] waiting. Without a ceiling nothing is held.

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
/// What the node sent the subscriber is measured over this long.
pub const SENT_WINDOW: Duration = Duration::from_millis(500);

/// What became of a retransmission offered.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered<T> {
    /// It may leave now.
    Send(T),
    /// It waits for [`RetransmitPacer::release`].
    Held,
    /// Dropped: too many wait already.
    Dropped,
    /// Dropped: the same packet already waits (the subscriber asked again meanwhile).
    Repeated,
}

/// The pacing of one subscriber's retransmissions; `T` is the packet.
#[derive(Debug)]
pub struct RetransmitPacer<T> {
    /// The subscriber's downlink ceiling, bytes per second, while there is one.
    ceiling: Option<f64>,
    /// Media bytes sent in the current and the previous [`SENT_WINDOW`], and when the current
    /// one began.
    sent: (usize, usize, Option<Instant>),
    /// Bytes per second retransmissions may use, while there is a ceiling.
    rate: Option<f64>,
    /// Bytes that may leave now.
    budget: f64,
    refilled: Option<Instant>,
    /// Retransmissions waiting: since when, their size, which packet they repeat, the packet.
    waiting: VecDeque<(Instant, usize, u64, T)>,
}

impl<T> Default for RetransmitPacer<T> {
    fn default() -> Self {
        Self {
            ceiling: None,
            sent: (0, 0, None),
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
        self.ceiling = ceiling_bps
            .filter(|bps| bps.is_finite() && *bps > 0.0)
            .map(|bps| bps / 8.0);
        self.set_rate(now);
    }

    /// `bytes` of media (not retransmissions) sent to the subscriber at `now`.
    pub fn media_sent(&mut self, now: Instant, bytes: usize) {
        let (current, previous, began) = &mut self.sent;
        match began {
            Some(t) if now.saturating_duration_since(*t) < SENT_WINDOW => {}
            Some(t) if now.saturating_duration_since(*t) < 2 * SENT_WINDOW => {
                *previous = std::mem::take(current);
                *t += SENT_WINDOW;
            }
            _ => {
                (*current, *previous) = (0, 0);
                *began = Some(now);
            }
        }
        *current += bytes;
    }

    /// Bytes per second of media sent over the last full [`SENT_WINDOW`].
    fn sent_rate(&self, now: Instant) -> f64 {
        match self.sent {
            (_, previous, Some(t)) if now.saturating_duration_since(t) < SENT_WINDOW => {
                previous as f64 / SENT_WINDOW.as_secs_f64()
            }
            (current, _, Some(t)) if now.saturating_duration_since(t) < 2 * SENT_WINDOW => {
                current as f64 / SENT_WINDOW.as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn set_rate(&mut self, now: Instant) {
        self.refill(now);
        let unpaced = self.rate.is_none();
        let sent = self.sent_rate(now);
        self.rate = self
            .ceiling
            .map(|ceiling| ceiling.max(sent) * RETRANSMIT_SHARE);
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

    /// A retransmission of `bytes` to send, of the packet `original` (its stream and sequence
    /// number).
    pub fn offer(&mut self, now: Instant, bytes: usize, original: u64, packet: T) -> Offered<T> {
        if self.rate.is_none() {
            return Offered::Send(packet);
        }
        self.set_rate(now);
        if self.waiting.is_empty() && self.budget >= bytes as f64 {
            self.budget -= bytes as f64;
            return Offered::Send(packet);
        }
        // A subscriber asks again for what it misses about every 20 ms: what waits would be
        // queued over and over, each copy taking the budget from the next packet.
        if self.waiting.iter().any(|(_, _, o, _)| *o == original) {
            return Offered::Repeated;
        }
        if self.waiting.len() >= MAX_QUEUED {
            return Offered::Dropped;
        }
        self.waiting.push_back((now, bytes, original, packet));
        Offered::Held
    }

    /// The retransmissions that may leave at `now`, in order, and how many were dropped for
    /// waiting too long.
    pub fn release(&mut self, now: Instant) -> (Vec<T>, usize) {
        self.set_rate(now);
        let mut leaving = Vec::new();
        let mut stale = 0;
        while let Some((since, bytes, _, _)) = self.waiting.front() {
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
            if let Some((_, _, _, packet)) = self.waiting.pop_front() {
                leaving.push(packet);
            }
        }
        (leaving, stale)
    }

    /// When the next waiting retransmission may leave (or must be dropped).
    pub fn next_release(&self) -> Option<Instant> {
        let (since, bytes, _, _) = self.waiting.front()?;
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
            assert_eq!(p.offer(t0, 1_200, i as u64, i), Offered::Send(i));
        }
        assert_eq!(p.next_release(), None);
    }

    #[test]
    fn a_burst_leaves_at_half_the_ceiling_in_order() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        // 960 kbit/s: retransmissions get 60,000 bytes a second, a 3,000-byte burst.
        p.set_ceiling(t0, Some(960_000.0));
        let offered: Vec<_> = (0..10).map(|i| p.offer(t0, 1_000, i as u64, i)).collect();
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
        assert_eq!(p.offer(t0 + ms(84), 1_000, 10, 10), Offered::Held);
        assert_eq!(p.release(t0 + ms(84)), (vec![7], 0));
    }

    #[test]
    fn a_ceiling_below_what_is_sent_paces_at_a_share_of_what_is_sent() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        // 1 Mbit/s of media (a 12,500-byte frame every 100 ms) over a ceiling of 200 kbit/s:
        // retransmissions get half of 125,000 bytes a second, not half of 25,000.
        for i in 0..10 {
            p.media_sent(t0 + ms(50 + 100 * i), 12_500);
        }
        let now = t0 + ms(1_000);
        p.set_ceiling(now, Some(200_000.0));
        let offered: Vec<_> = (0..6).map(|i| p.offer(now, 1_000, i as u64, i)).collect();
        assert_eq!(
            offered[..3],
            [Offered::Send(0), Offered::Send(1), Offered::Send(2)]
        );
        // The next within 1,000 / 62,500 s = 16 ms (at the ceiling's share, 80 ms).
        let next = p.next_release().unwrap();
        assert!(
            next > now + ms(10) && next <= now + ms(16),
            "{:?}",
            next - now
        );
        assert_eq!(p.release(now + ms(50)).0, vec![3, 4, 5]);
        // With no media for a whole window, the ceiling's share is all there is.
        let quiet = now + ms(600);
        let offered: Vec<_> = (6..10)
            .map(|i| p.offer(quiet, 1_000, i as u64, i))
            .collect();
        assert_eq!(offered[..2], [Offered::Send(6), Offered::Send(7)]);
        let next = p.next_release().unwrap();
        assert!(next >= quiet + ms(40), "{:?}", next - quiet);
    }

    #[test]
    fn a_packet_asked_for_again_while_its_retransmission_waits_is_not_queued_twice() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        p.set_ceiling(t0, Some(200_000.0));
        for i in 0..4 {
            p.offer(t0, 1_200, i, i);
        }
        // Two left at once (the burst), two wait. Asked for again 20 ms later: the two sent are
        // queued again (their retransmission may be lost too), the two waiting are not.
        let again = t0 + ms(20);
        let offered: Vec<_> = (0..5).map(|i| p.offer(again, 1_200, i, 10 + i)).collect();
        assert_eq!(
            offered,
            [
                Offered::Held,
                Offered::Held,
                Offered::Repeated,
                Offered::Repeated,
                Offered::Held
            ]
        );
        assert_eq!(p.waiting(), 5);
    }

    #[test]
    fn what_waited_too_long_is_dropped_and_the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut p = RetransmitPacer::new();
        p.set_ceiling(t0, Some(100_000.0));
        for i in 0..MAX_QUEUED + 10 {
            p.offer(t0, 1_200, i as u64, i);
        }
        assert_eq!(p.offer(t0, 1_200, 9_999, 9_999), Offered::Dropped);
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
            p.offer(t0, 1_200, i as u64, i);
        }
        p.set_ceiling(t0 + ms(1), None);
        assert_eq!(p.next_release(), Some(t0 + ms(1)));
        assert_eq!(p.release(t0 + ms(1)).0, vec![2, 3, 4]);
    }
}
