//! Sequence number and timestamp rewriting for one outgoing stream, so the subscriber sees one
//! continuous RTP stream although the SFU switches between simulcast layers (each with its own
//! sequence and timestamp space) underneath.

use std::time::Instant;

/// True when sequence number `a` comes before `b`, with wrap-around.
pub fn seq_before(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

/// Rewrites sequence numbers and timestamps of one outgoing stream.
#[derive(Clone, Debug)]
pub struct Rewriter {
    clock_rate: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// First input sequence number of the current source; older packets are refused.
    source_start: Option<u16>,
    highest_out_seq: Option<u16>,
    highest_out_ts: u32,
    last_out_at: Option<Instant>,
}

impl Rewriter {
    /// A rewriter for a stream with `clock_rate` ticks per second.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            seq_offset: 0,
            ts_offset: 0,
            source_start: None,
            highest_out_seq: None,
            highest_out_ts: 0,
            last_out_at: None,
        }
    }

    /// Starts a new source (a layer switch) whose first packet has `seq` and `ts`, arriving at
    /// `now`: its packets continue the outgoing sequence right after the last one sent, and its
    /// timestamps continue by the wall-clock time elapsed (at least one tick).
    pub fn switch_source(&mut self, seq: u16, ts: u32, now: Instant) {
        self.source_start = Some(seq);
        match (self.highest_out_seq, self.last_out_at) {
            (Some(last_seq), Some(last_at)) => {
                let next_seq = last_seq.wrapping_add(1);
                self.seq_offset = next_seq.wrapping_sub(seq);
                let elapsed = now.saturating_duration_since(last_at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u64;
                let ticks = ticks.clamp(1, u64::from(u32::MAX / 2)) as u32;
                let next_ts = self.highest_out_ts.wrapping_add(ticks);
                self.ts_offset = next_ts.wrapping_sub(ts);
            }
            _ => {
                self.seq_offset = 0;
                self.ts_offset = 0;
            }
        }
    }

    /// The outgoing sequence number and timestamp of a packet of the current source, or `None`
    /// when it predates the current source (a late retransmission from before a switch).
    pub fn rewrite(&mut self, seq: u16, ts: u32, now: Instant) -> Option<(u16, u32)> {
        let start = self.source_start?;
        if seq_before(seq, start) {
            return None;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let newer = self.highest_out_seq.is_none_or(|h| seq_before(h, out_seq));
        if newer {
            self.highest_out_seq = Some(out_seq);
            self.highest_out_ts = out_ts;
            self.last_out_at = Some(now);
        }
        Some((out_seq, out_ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn first_source_passes_through() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch_source(1000, 5000, t0);
        assert_eq!(r.rewrite(1000, 5000, t0), Some((1000, 5000)));
        assert_eq!(r.rewrite(1001, 8000, t0), Some((1001, 8000)));
        assert_eq!(r.rewrite(999, 2000, t0), None);
    }

    #[test]
    fn switch_continues_sequence_and_timestamps() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch_source(100, 1000, t0);
        r.rewrite(100, 1000, t0);
        r.rewrite(101, 4000, t0);
        let t1 = t0 + Duration::from_millis(100);
        r.switch_source(60_000, 777_777, t1);
        let (seq, ts) = r.rewrite(60_000, 777_777, t1).expect("new source");
        assert_eq!(seq, 102);
        assert_eq!(ts, 4000 + 9000);
        assert_eq!(r.rewrite(60_001, 777_777 + 3000, t1), Some((103, 16_000)));
        // A late packet of the new source from before the switch point is refused.
        assert_eq!(r.rewrite(59_999, 777_000, t1), None);
    }

    #[test]
    fn switch_across_wrap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.switch_source(65_534, u32::MAX - 10, t0);
        assert_eq!(
            r.rewrite(65_534, u32::MAX - 10, t0),
            Some((65_534, u32::MAX - 10))
        );
        assert_eq!(
            r.rewrite(65_535, u32::MAX - 5, t0),
            Some((65_535, u32::MAX - 5))
        );
        assert_eq!(r.rewrite(0, 5, t0), Some((0, 5)));
        r.switch_source(10, 10, t0);
        // Same instant: timestamps still move forward by one tick.
        assert_eq!(r.rewrite(10, 10, t0), Some((1, 6)));
    }

    #[test]
    fn nothing_before_the_first_source() {
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.rewrite(1, 1, Instant::now()), None);
    }

    proptest! {
        /// Whatever the layers' sequence spaces, the output sequence stays contiguous across
        /// switches when each layer's packets arrive in order.
        #[test]
        fn output_is_contiguous(starts in proptest::collection::vec((any::<u16>(), any::<u32>(), 1u16..50), 1..8)) {
            let t0 = Instant::now();
            let mut r = Rewriter::new(90_000);
            let mut expected: Option<u16> = None;
            for (i, (seq0, ts0, n)) in starts.into_iter().enumerate() {
                let now = t0 + Duration::from_millis(i as u64 * 33);
                r.switch_source(seq0, ts0, now);
                for k in 0..n {
                    let (out, _) = r.rewrite(seq0.wrapping_add(k), ts0, now).expect("in order");
                    if let Some(e) = expected {
                        prop_assert_eq!(out, e);
                    }
                    expected = Some(out.wrapping_add(1));
                }
            }
        }
    }
}
