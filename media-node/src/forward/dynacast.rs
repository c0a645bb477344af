//! Dynacast: which layers of a video its publisher is asked to send. Those some subscriber
//! can use (every layer up to the quality it asked for; none while last-N pauses the video
//! for it): nobody receives a layer, the publisher stops encoding it. More layers are asked
//! for at once; fewer only once they went unused for [`HOLD`], so a tile that shrinks and
//! grows back does not switch the publisher's encoder off and on.

use std::time::{Duration, Instant};

/// How long layers go unused before the publisher is asked to stop them.
pub const HOLD: Duration = Duration::from_secs(5);

/// Every layer a publisher may send (three simulcast layers, or one plain encoding as 0).
pub const ALL_LAYERS: u8 = 0b111;

/// What one publication's publisher was asked to send, and since when some of it is unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerDemand {
    asked: u8,
    unused_since: Option<Instant>,
}

impl Default for LayerDemand {
    /// A publisher sends every layer until told otherwise.
    fn default() -> Self {
        Self {
            asked: ALL_LAYERS,
            unused_since: None,
        }
    }
}

impl LayerDemand {
    /// The layers asked for now (bit 0: the lowest).
    pub fn asked(&self) -> u8 {
        self.asked
    }

    /// Takes the subscribers' `demand` at `now`; the layers to ask the publisher for when
    /// that changes.
    pub fn update(&mut self, demand: u8, now: Instant) -> Option<u8> {
        let demand = demand & ALL_LAYERS;
        let before = self.asked;
        self.asked |= demand;
        if self.asked & !demand == 0 {
            self.unused_since = None;
        } else {
            let since = *self.unused_since.get_or_insert(now);
            if now.duration_since(since) >= HOLD {
                self.asked = demand;
                self.unused_since = None;
            }
        }
        (self.asked != before).then_some(self.asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_layers_stop_after_the_hold_and_come_back_at_once() {
        let t0 = Instant::now();
        let mut d = LayerDemand::default();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // Everyone watches small tiles: the upper layers stop after the hold, not before.
        assert_eq!(d.update(0b001, t0), None);
        assert_eq!(d.update(0b001, secs(4)), None);
        assert_eq!(d.update(0b001, secs(5)), Some(0b001));
        assert_eq!(d.update(0b001, secs(9)), None);
        // Someone enlarges a tile: the middle layer is asked for at once.
        assert_eq!(d.update(0b011, secs(10)), Some(0b011));
        // Nobody receives the video any more (last-N): it stops after the hold.
        assert_eq!(d.update(0, secs(11)), None);
        assert_eq!(d.update(0, secs(16)), Some(0));
        assert_eq!(d.asked(), 0);
    }

    #[test]
    fn a_short_dip_in_demand_changes_nothing() {
        let t0 = Instant::now();
        let mut d = LayerDemand::default();
        assert_eq!(d.update(0b011, t0), None);
        assert_eq!(d.update(0b111, t0 + Duration::from_secs(3)), None);
        // The hold starts again with the next dip.
        assert_eq!(d.update(0b011, t0 + Duration::from_secs(6)), None);
        assert_eq!(d.update(0b011, t0 + Duration::from_secs(11)), Some(0b011));
    }

    #[test]
    fn bits_beyond_three_layers_are_ignored() {
        let mut d = LayerDemand::default();
        assert_eq!(d.update(0b1111_0111, Instant::now()), None);
        assert_eq!(d.asked(), ALL_LAYERS);
    }
}
