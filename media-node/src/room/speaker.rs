//! Active-speaker detection from RFC 6464 audio levels: the loudest participant who spoke for
//! most of an interval becomes the active speaker, held for a minimum time so the UI does not
//! flicker. Fed per-interval summaries with explicit times.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::model::ParticipantId;

/// Levels at or below this (in -dBov, 0 loudest, 127 silence) count as voice.
pub const VOICE_LEVEL: u8 = 70;

/// Audio levels of one participant over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntervalLevels {
    /// Packets that carried a level.
    pub packets: u32,
    /// Packets whose level was voice.
    pub voiced: u32,
    /// Sum of loudness (127 − level) over voiced packets.
    pub loudness: u64,
}

impl IntervalLevels {
    /// Adds one packet's level (RFC 6464 byte: V flag and 7-bit level).
    pub fn add(&mut self, ext: u8) {
        let level = ext & 0x7f;
        self.packets += 1;
        if level <= VOICE_LEVEL {
            self.voiced += 1;
            self.loudness += u64::from(127 - level);
        }
    }
}

/// Tuning of the detector.
#[derive(Clone, Copy, Debug)]
pub struct SpeakerConfig {
    /// Share of an interval's packets that must be voice.
    pub min_voiced_fraction: f64,
    /// A new speaker replaces the current one no sooner than this.
    pub min_hold: Duration,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            min_voiced_fraction: 0.5,
            min_hold: Duration::from_millis(1000),
        }
    }
}

/// The active-speaker state of one room.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    config: SpeakerConfig,
    current: Option<ParticipantId>,
    since: Option<Instant>,
}

impl SpeakerDetector {
    /// A detector with `config`.
    pub fn new(config: SpeakerConfig) -> Self {
        Self {
            config,
            current: None,
            since: None,
        }
    }

    /// The active speaker.
    pub fn current(&self) -> Option<ParticipantId> {
        self.current
    }

    /// Forgets a participant who left; returns true when it was the active speaker.
    pub fn remove(&mut self, id: ParticipantId) -> bool {
        if self.current == Some(id) {
            self.current = None;
            self.since = None;
            true
        } else {
            false
        }
    }

    /// Feeds one interval's levels; returns the new active speaker when it changed.
    pub fn interval(
        &mut self,
        levels: &HashMap<ParticipantId, IntervalLevels>,
        now: Instant,
    ) -> Option<ParticipantId> {
        let speaking = |l: &IntervalLevels| {
            l.packets > 0
                && f64::from(l.voiced) >= f64::from(l.packets) * self.config.min_voiced_fraction
        };
        let loudest = levels
            .iter()
            .filter(|(_, l)| speaking(l))
            .max_by_key(|(id, l)| {
                (
                    l.loudness / u64::from(l.voiced.max(1)),
                    std::cmp::Reverse(**id),
                )
            })
            .map(|(id, _)| *id)?;
        if self.current == Some(loudest) {
            return None;
        }
        let current_still_speaks = self
            .current
            .and_then(|c| levels.get(&c))
            .is_some_and(speaking);
        let held = self
            .since
            .is_some_and(|t| now.duration_since(t) < self.config.min_hold);
        if current_still_speaks && held {
            return None;
        }
        self.current = Some(loudest);
        self.since = Some(now);
        Some(loudest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talking(level: u8, packets: u32) -> IntervalLevels {
        let mut l = IntervalLevels::default();
        for _ in 0..packets {
            l.add(0x80 | level);
        }
        l
    }

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);

    #[test]
    fn loudest_voice_wins_and_silence_does_not() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let levels = HashMap::from([(A, talking(30, 10)), (B, talking(127, 10))]);
        assert_eq!(d.interval(&levels, t0), Some(A));
        assert_eq!(d.interval(&levels, t0), None);
        let silent = HashMap::from([(A, talking(127, 10)), (B, talking(120, 10))]);
        assert_eq!(d.interval(&silent, t0), None);
        assert_eq!(d.current(), Some(A));
    }

    #[test]
    fn holds_the_current_speaker_for_the_minimum_time() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        d.interval(&HashMap::from([(A, talking(40, 10))]), t0);
        let both = HashMap::from([(A, talking(40, 10)), (B, talking(10, 10))]);
        assert_eq!(d.interval(&both, t0 + Duration::from_millis(300)), None);
        assert_eq!(d.interval(&both, t0 + Duration::from_millis(1100)), Some(B));
    }

    #[test]
    fn a_speaker_who_stopped_is_replaced_at_once() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        d.interval(&HashMap::from([(A, talking(40, 10))]), t0);
        let b_only = HashMap::from([(A, talking(127, 10)), (B, talking(50, 10))]);
        assert_eq!(
            d.interval(&b_only, t0 + Duration::from_millis(300)),
            Some(B)
        );
        assert!(d.remove(B));
        assert_eq!(d.current(), None);
    }
}
