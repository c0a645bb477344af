//! How many messages one signaling session may send: a token bucket of `burst` messages
//! refilled at `per_second`, fed every frame with an explicit `Instant`. Frames over the limit
//! are dropped; a client that sends another `burst` of frames over the limit before its bucket
//! filled up again is disconnected. No tokio types: tested with simulated time.

use std::time::{Duration, Instant};

/// The message rate a session is allowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Messages per second, sustained.
    pub per_second: f64,
    /// Messages that may arrive at once (the bucket's size).
    pub burst: u32,
}

impl Default for RateLimit {
    /// A call page sends about one message a second once connected (pings every 15 s, an
    /// answer per renegotiation, a mute now and then) and a few dozen at the start (join,
    /// offer, an ICE candidate per local address and relay): 20 per second in bursts of
    /// 200 leaves it an order of magnitude of room.
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 200,
        }
    }
}

/// What to do with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle it.
    Accept,
    /// Over the limit: drop it. `first` is true for the first frame dropped since the client
    /// was last within its limit (tell the client once, not for every frame).
    Drop {
        /// First frame dropped of this excess.
        first: bool,
    },
    /// Kept sending over the limit: disconnect the client.
    Disconnect,
}

/// The token bucket of one session.
#[derive(Clone, Debug)]
pub struct MessageBudget {
    limit: RateLimit,
    tokens: f64,
    /// Frames dropped since the bucket was last full.
    excess: u32,
    last: Instant,
}

impl MessageBudget {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let limit = RateLimit {
            per_second: if limit.per_second.is_finite() {
                limit.per_second.max(0.0)
            } else {
                0.0
            },
            burst: limit.burst.max(1),
        };
        Self {
            limit,
            tokens: f64::from(limit.burst),
            excess: 0,
            last: now,
        }
    }

    /// The limit this budget applies.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Charges one frame arriving at `now`.
    pub fn charge(&mut self, now: Instant) -> Verdict {
        let burst = f64::from(self.limit.burst);
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.limit.per_second).min(burst);
        if self.tokens >= burst {
            self.excess = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        self.excess = self.excess.saturating_add(1);
        if self.excess > self.limit.burst {
            Verdict::Disconnect
        } else {
            Verdict::Drop {
                first: self.excess == 1,
            }
        }
    }

    /// How long until the bucket holds one token again (for the error message).
    pub fn next_token_in(&self) -> Duration {
        if self.tokens >= 1.0 || self.limit.per_second <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.limit.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[test]
    fn a_burst_passes_then_frames_are_dropped_and_the_client_told_once() {
        let t0 = Instant::now();
        let mut b = MessageBudget::new(limit(10.0, 5), t0);
        for _ in 0..5 {
            assert_eq!(b.charge(t0), Verdict::Accept);
        }
        assert_eq!(b.charge(t0), Verdict::Drop { first: true });
        assert_eq!(b.charge(t0), Verdict::Drop { first: false });
        assert!(b.next_token_in() > Duration::ZERO);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        let mut b = MessageBudget::new(limit(10.0, 5), t0);
        for _ in 0..5 {
            b.charge(t0);
        }
        assert!(matches!(b.charge(t0), Verdict::Drop { .. }));
        // 100 ms at 10/s: one more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.charge(t1), Verdict::Accept);
        assert!(matches!(b.charge(t1), Verdict::Drop { .. }));
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..5 {
            assert_eq!(b.charge(t2), Verdict::Accept);
        }
        assert_eq!(b.charge(t2), Verdict::Drop { first: true });
    }

    #[test]
    fn a_flood_is_disconnected_after_another_burst_over_the_limit() {
        let t0 = Instant::now();
        let mut b = MessageBudget::new(limit(20.0, 200), t0);
        let verdicts: Vec<Verdict> = (0..1000).map(|_| b.charge(t0)).collect();
        let accepted = verdicts.iter().filter(|v| **v == Verdict::Accept).count();
        let first_disconnect = verdicts
            .iter()
            .position(|v| *v == Verdict::Disconnect)
            .expect("disconnected");
        assert_eq!(accepted, 200);
        assert_eq!(first_disconnect, 400);
    }

    #[test]
    fn a_client_steadily_over_the_rate_is_disconnected() {
        // Twice the rate: half its frames are dropped, and the excess adds up.
        let t0 = Instant::now();
        let mut b = MessageBudget::new(limit(10.0, 20), t0);
        let mut t = t0;
        let mut outcome = None;
        for i in 0..10_000 {
            t += Duration::from_millis(50);
            if b.charge(t) == Verdict::Disconnect {
                outcome = Some(i);
                break;
            }
        }
        let at = outcome.expect("disconnected");
        // 20 of burst, then one excess frame every 100 ms: 21 excess frames after ~4 s.
        assert!((60..=100).contains(&at), "after {at} frames");
    }

    #[test]
    fn excess_is_forgiven_once_the_bucket_filled_again() {
        let t0 = Instant::now();
        let mut b = MessageBudget::new(limit(10.0, 5), t0);
        for _ in 0..10 {
            b.charge(t0);
        }
        // Quiet for a second: the bucket is full again and the client in good standing.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..5 {
            assert_eq!(b.charge(t1), Verdict::Accept);
        }
        assert_eq!(b.charge(t1), Verdict::Drop { first: true });
    }

    #[test]
    fn a_call_page_never_trips_the_default() {
        // Start of a call: join, offer, 60 ICE candidates (many interfaces, TURN over UDP and
        // TCP) within 100 ms, then 30 renegotiation answers as others join, then a ping every
        // 15 s with a mute toggle and an ICE restart (another 60 candidates) now and then.
        let t0 = Instant::now();
        let mut b = MessageBudget::new(RateLimit::default(), t0);
        let mut t = t0;
        let mut frames = vec![t0, t0];
        for i in 0..60 {
            frames.push(t0 + Duration::from_micros(1_500 * i));
        }
        for i in 0..30 {
            frames.push(t0 + Duration::from_millis(200 + 100 * i));
        }
        for minute in 0..60u64 {
            let base = t0 + Duration::from_secs(10 + 60 * minute);
            for k in 0..4 {
                frames.push(base + Duration::from_secs(15 * k));
            }
            frames.push(base + Duration::from_secs(1));
            for i in 0..60 {
                frames.push(base + Duration::from_secs(2) + Duration::from_micros(1_500 * i));
            }
        }
        frames.sort();
        for f in frames {
            assert!(f >= t);
            t = f;
            assert_eq!(b.charge(t), Verdict::Accept, "at {:?}", t - t0);
        }
    }

    #[test]
    fn degenerate_limits_do_not_panic() {
        let t0 = Instant::now();
        for l in [
            limit(0.0, 0),
            limit(f64::NAN, 1),
            limit(f64::INFINITY, 3),
            limit(-5.0, 2),
        ] {
            let mut b = MessageBudget::new(l, t0);
            assert_eq!(b.charge(t0), Verdict::Accept);
            let _ = b.charge(t0 + Duration::from_secs(1));
            let _ = b.next_token_in();
        }
    }

    proptest! {
        #[test]
        fn never_more_than_burst_plus_rate_times_time(
            per_second in 0.0f64..1000.0,
            burst in 1u32..500,
            gaps in proptest::collection::vec(0u64..50_000, 1..400),
        ) {
            let t0 = Instant::now();
            let mut b = MessageBudget::new(limit(per_second, burst), t0);
            let mut t = t0;
            let mut accepted = 0u64;
            for gap in gaps {
                t += Duration::from_micros(gap);
                match b.charge(t) {
                    Verdict::Accept => accepted += 1,
                    Verdict::Drop { .. } => {}
                    Verdict::Disconnect => break,
                }
            }
            let allowed = f64::from(burst) + per_second * (t - t0).as_secs_f64();
            prop_assert!(accepted as f64 <= allowed + 1e-6, "{accepted} > {allowed}");
        }
    }
}
