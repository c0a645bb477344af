//! Which packets of one received stream to ask its publisher to resend, and when: a gap in
//! sequence numbers is asked for at once (after a few milliseconds' allowance for
//! reordering), asked again only after a round trip has passed without it, at most
//! [`MAX_TRIES`] times; a packet still missing then, or a gap too wide to repair, is given up
//! and a keyframe is asked for instead (at most one per [`KEYFRAME_INTERVAL`]). The round
//! trip is learnt from the streams themselves: the time from the last request of a packet to
//! its arrival. Arrivals of packets already received are reported as duplicates.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Requests of one packet before it is given up.
pub const MAX_TRIES: u8 = 3;
/// Time allowed for a packet to arrive out of order before it is asked for.
pub const REORDER_ALLOWANCE: Duration = Duration::from_millis(5);
/// Round trip assumed before one was measured.
pub const INITIAL_RTT: Duration = Duration::from_millis(50);
/// Bounds of the round-trip estimate.
const MIN_RTT: Duration = Duration::from_millis(2);
const MAX_RTT: Duration = Duration::from_secs(1);
/// Shortest wait before a packet is asked for again.
const MIN_RETRY: Duration = Duration::from_millis(10);
/// Packets kept track of behind the newest; older arrivals are reported as too old.
pub const WINDOW: u64 = 1024;
/// The widest gap asked for packet by packet; wider ones are repaired with a keyframe.
pub const MAX_GAP: u64 = 256;
/// Packets waiting to be repaired at most (bounded whatever the network sends).
pub const MAX_MISSING: usize = 512;
/// Keyframe requests at most this often.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// What an arriving packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Not seen before: forward it.
    New,
    /// Not seen before, and asked for again: a repair. Forward it.
    Repaired,
    /// Already received (a second retransmission, a copy): drop it.
    Duplicate,
    /// Older than the window kept: drop it.
    TooOld,
}

/// What is due now.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Sequence numbers to ask for.
    pub nacks: Vec<u16>,
    /// Ask for a keyframe: repair failed.
    pub keyframe: bool,
}

/// One missing packet.
#[derive(Clone, Copy, Debug)]
struct Missing {
    /// When to ask (again).
    at: Instant,
    /// Requests sent so far.
    tries: u8,
    /// When it was last asked for.
    asked: Option<Instant>,
}

/// The repair state of one received stream.
#[derive(Debug)]
pub struct RepairSchedule {
    /// Extended sequence number of the newest packet, once one arrived.
    newest: Option<u64>,
    /// Received flags of the last [`WINDOW`] sequence numbers, indexed by `seq % WINDOW`.
    received: Box<[u64; (WINDOW / 64) as usize]>,
    missing: BTreeMap<u64, Missing>,
    rtt: Duration,
    keyframe_wanted: bool,
    last_keyframe: Option<Instant>,
    /// Packets given up on since [`take_given_up`](Self::take_given_up) last counted them.
    given_up: u64,
}

impl Default for RepairSchedule {
    fn default() -> Self {
        Self {
            newest: None,
            received: Box::new([0; (WINDOW / 64) as usize]),
            missing: BTreeMap::new(),
            rtt: INITIAL_RTT,
            keyframe_wanted: false,
            last_keyframe: None,
            given_up: 0,
        }
    }
}

/// The extended sequence number of `seq` nearest to `reference`.
fn extend(seq: u16, reference: u64) -> u64 {
    let base = reference & !0xffff;
    let candidates = [
        base.wrapping_sub(0x1_0000),
        base,
        base.wrapping_add(0x1_0000),
    ];
    candidates
        .into_iter()
        .map(|b| b | u64::from(seq))
        .filter(|c| *c < u64::MAX / 2)
        .min_by_key(|c| c.abs_diff(reference))
        .unwrap_or(base | u64::from(seq))
}

impl RepairSchedule {
    /// The current round-trip estimate.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// Packets waiting to be repaired.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    /// Packets given up on (too many tries, a gap too wide, too many missing) since the last
    /// call.
    pub fn take_given_up(&mut self) -> u64 {
        std::mem::take(&mut self.given_up)
    }

    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn is_received(&self, seq: u64) -> bool {
        let (word, mask) = Self::bit(seq);
        self.received[word] & mask != 0
    }

    fn set_received(&mut self, seq: u64, received: bool) {
        let (word, mask) = Self::bit(seq);
        if received {
            self.received[word] |= mask;
        } else {
            self.received[word] &= !mask;
        }
    }

    fn want_keyframe(&mut self) {
        self.keyframe_wanted = true;
    }

    /// Records the arrival of packet `seq` at `now`.
    pub fn on_packet(&mut self, seq: u16, now: Instant) -> Arrival {
        // Extended numbers start one cycle up, so that a packet just before the first one
        // still has a number of its own.
        let Some(newest) = self.newest else {
            let first = 0x1_0000 | u64::from(seq);
            self.newest = Some(first);
            self.set_received(first, true);
            return Arrival::New;
        };
        let seq = extend(seq, newest);
        if seq > newest {
            let gap = seq - newest - 1;
            // The flags of the numbers passed over held those a window earlier: clear them.
            for s in (newest + 1)..=seq.min(newest + WINDOW) {
                self.set_received(s, false);
            }
            let horizon = seq.saturating_sub(WINDOW);
            let dropped = self.missing.range(..=horizon).count();
            if dropped > 0 {
                self.missing.retain(|s, _| *s > horizon);
                self.given_up += dropped as u64;
                self.want_keyframe();
            }
            if gap > MAX_GAP {
                self.given_up += gap;
                self.want_keyframe();
            } else {
                for s in (newest + 1)..seq {
                    self.missing.insert(
                        s,
                        Missing {
                            at: now + REORDER_ALLOWANCE,
                            tries: 0,
                            asked: None,
                        },
                    );
                }
                while self.missing.len() > MAX_MISSING {
                    self.missing.pop_first();
                    self.given_up += 1;
                    self.want_keyframe();
                }
            }
            self.newest = Some(seq);
            self.set_received(seq, true);
            return Arrival::New;
        }
        if newest - seq >= WINDOW {
            return Arrival::TooOld;
        }
        if let Some(m) = self.missing.remove(&seq) {
            self.set_received(seq, true);
            let Some(asked) = m.asked else {
                return Arrival::New;
            };
            let sample = now.saturating_duration_since(asked);
            self.rtt = ((self.rtt * 7 + sample) / 8).clamp(MIN_RTT, MAX_RTT);
            return Arrival::Repaired;
        }
        if self.is_received(seq) {
            return Arrival::Duplicate;
        }
        // Older than the gap it fell in was noticed (given up already): late, but new.
        self.set_received(seq, true);
        Arrival::New
    }

    /// What to ask for at `now`: the packets due, and whether a keyframe is wanted.
    pub fn due(&mut self, now: Instant) -> Due {
        let retry = (self.rtt + self.rtt / 2).max(MIN_RETRY);
        let mut due = Due::default();
        let mut gave_up = Vec::new();
        for (seq, m) in &mut self.missing {
            if m.at > now {
                continue;
            }
            if m.tries >= MAX_TRIES {
                gave_up.push(*seq);
                continue;
            }
            m.tries += 1;
            m.asked = Some(now);
            m.at = now + retry;
            due.nacks.push((*seq & 0xffff) as u16);
        }
        if !gave_up.is_empty() {
            for seq in &gave_up {
                self.missing.remove(seq);
            }
            self.given_up += gave_up.len() as u64;
            self.want_keyframe();
        }
        if self.keyframe_wanted
            && self
                .last_keyframe
                .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_INTERVAL)
        {
            self.keyframe_wanted = false;
            self.last_keyframe = Some(now);
            due.keyframe = true;
        }
        due
    }

    /// When [`due`](Self::due) has something next, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let packets = self.missing.values().map(|m| m.at).min();
        let keyframe = self.keyframe_wanted.then(|| {
            self.last_keyframe
                .map_or_else(Instant::now, |t| t + KEYFRAME_INTERVAL)
        });
        packets.into_iter().chain(keyframe).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_gap_is_asked_for_after_the_reorder_allowance_and_again_after_a_round_trip() {
        let t = Instant::now();
        let mut r = RepairSchedule::default();
        assert_eq!(r.on_packet(10, t), Arrival::New);
        assert_eq!(r.on_packet(13, t), Arrival::New);
        assert_eq!(r.due(t), Due::default(), "reordering allowance");
        assert_eq!(r.next_deadline(), Some(t + REORDER_ALLOWANCE));
        let first = t + REORDER_ALLOWANCE;
        assert_eq!(r.due(first).nacks, vec![11, 12]);
        assert!(
            r.due(first + ms(1)).nacks.is_empty(),
            "not again within a round trip"
        );
        // 11 is repaired 4 ms after it was asked for: the round trip estimate moves down.
        assert_eq!(r.on_packet(11, first + ms(4)), Arrival::Repaired);
        assert!(r.rtt() < INITIAL_RTT);
        let retry = r.next_deadline().unwrap();
        assert_eq!(r.due(retry).nacks, vec![12]);
        assert_eq!(r.missing(), 1);
    }

    #[test]
    fn a_packet_is_given_up_after_the_last_try_and_a_keyframe_asked_for_once() {
        let t = Instant::now();
        let mut r = RepairSchedule::default();
        r.on_packet(1, t);
        r.on_packet(3, t);
        let mut asked = 0;
        let mut keyframes = 0;
        let mut now = t;
        for _ in 0..20 {
            now += ms(100);
            let due = r.due(now);
            asked += due.nacks.len();
            keyframes += usize::from(due.keyframe);
        }
        assert_eq!(asked, usize::from(MAX_TRIES));
        assert_eq!(keyframes, 1);
        assert_eq!(r.take_given_up(), 1);
        assert_eq!(r.take_given_up(), 0, "counted once");
        assert_eq!(r.next_deadline(), None);
        // Arriving after all, it is still new to the subscribers.
        assert_eq!(r.on_packet(2, now), Arrival::New);
    }

    #[test]
    fn copies_are_duplicates_and_ancient_packets_too_old() {
        let t = Instant::now();
        let mut r = RepairSchedule::default();
        r.on_packet(100, t);
        r.on_packet(101, t);
        assert_eq!(r.on_packet(101, t), Arrival::Duplicate);
        assert_eq!(r.on_packet(100, t), Arrival::Duplicate);
        for s in 102..1200u16 {
            r.on_packet(s, t);
        }
        assert_eq!(r.on_packet(101, t), Arrival::TooOld);
    }

    #[test]
    fn a_wide_gap_is_repaired_with_a_keyframe_and_keyframes_are_spaced() {
        let t = Instant::now();
        let mut r = RepairSchedule::default();
        r.on_packet(0, t);
        r.on_packet(1000, t);
        assert_eq!(r.missing(), 0);
        let due = r.due(t);
        assert!(due.nacks.is_empty());
        assert!(due.keyframe);
        r.on_packet(3000, t + ms(10));
        assert!(!r.due(t + ms(10)).keyframe, "spaced");
        assert_eq!(r.next_deadline(), Some(t + KEYFRAME_INTERVAL));
        assert!(r.due(t + KEYFRAME_INTERVAL).keyframe);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t = Instant::now();
        let mut r = RepairSchedule::default();
        r.on_packet(65534, t);
        r.on_packet(1, t);
        assert_eq!(r.due(t + REORDER_ALLOWANCE).nacks, vec![65535, 0]);
        assert_eq!(r.on_packet(0, t + ms(20)), Arrival::Repaired);
        assert_eq!(r.on_packet(65535, t + ms(20)), Arrival::Repaired);
        assert_eq!(r.missing(), 0);
    }

    proptest! {
        /// Whatever arrives (losses, reordering, copies, jumps back), the state stays bounded,
        /// no packet is asked for more than MAX_TRIES times, and none is new twice.
        #[test]
        fn bounded_whatever_arrives(
            arrivals in proptest::collection::vec((-20i64..40, 0u64..50), 1..400),
            steps in proptest::collection::vec(0u64..200, 1..50),
        ) {
            let t = Instant::now();
            let mut r = RepairSchedule::default();
            let mut now = t;
            let mut position: i64 = 30_000;
            let mut asked: std::collections::HashMap<u16, usize> = Default::default();
            let mut new: std::collections::HashSet<u16> = Default::default();
            for (delta, dt) in arrivals {
                now += ms(dt);
                position += delta;
                let seq = (position & 0xffff) as u16;
                if matches!(r.on_packet(seq, now), Arrival::New | Arrival::Repaired) {
                    prop_assert!(new.insert(seq), "{} new twice", seq);
                }
                prop_assert!(r.missing() <= MAX_MISSING);
                for s in r.due(now).nacks {
                    *asked.entry(s).or_default() += 1;
                }
            }
            for dt in steps {
                now += ms(dt);
                for s in r.due(now).nacks {
                    *asked.entry(s).or_default() += 1;
                }
            }
            prop_assert!(asked.values().all(|n| *n <= usize::from(MAX_TRIES)));
        }

        #[test]
        fn in_order_streams_need_no_repair(start in any::<u16>(), len in 1usize..3000) {
            let t = Instant::now();
            let mut r = RepairSchedule::default();
            for i in 0..len {
                prop_assert_eq!(r.on_packet(start.wrapping_add(i as u16), t), Arrival::New);
            }
            prop_assert_eq!(r.due(t + Duration::from_secs(1)), Due::default());
            prop_assert_eq!(r.next_deadline(), None);
        }
    }
}
