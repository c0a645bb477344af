//! Overload shedding: what the node stops forwarding when it cannot forward everything in
//! time (packets wait in subscription queues, or overflow them). Rather than losing packets
//! of every video at random, which freezes every video at once, it sheds what a person in a
//! call misses least, one level at a time:
//!
//! 1. the top simulcast layer of every video;
//! 2. the middle one (every video at its lowest layer);
//! 3. to 6. a growing share of the cameras each subscriber receives (80 %, 60 %, 40 %, 20 %
//!    kept), the most relevant kept, as last-N chooses them;
//! 7. all but the most relevant camera of each subscriber.
//!
//! Audio and screen shares are never shed. The node sheds once it has been behind for two
//! samples in a row; a level waits a second to take effect before the next. Levels 1 and 2
//! are passed over, up and down, while no publisher sends simulcast layers: they would take
//! nothing off, and the node would stay behind two seconds longer. Once the node has
//! kept up for 10 s it undoes one level, if what that level took off fits: the governor
//! remembers the load each level was taken at and what was left once it acted, and the most
//! the node forwarded while behind (its ceiling); it gives a level back only when the load it
//! would bring back stays under nine tenths of that ceiling (people left, cameras went off),
//! so that a call at its limit keeps a steady picture instead of breaking every minute on a
//! hopeless try. Should an undo still bring the overload straight back, the next waits twice
//! as long (up to a minute). Pure: the node's governor task feeds it samples, subscriptions
//! and rooms apply the level.

use std::time::{Duration, Instant};

use super::layers::Quality;

/// The highest level.
pub const MAX_LEVEL: u8 = 7;
/// A packet that waited longer than this in the node is late (a frame burst to many
/// subscribers of a busy node keeps its last packets a few milliseconds, a CPU limit's
/// throttling up to its period's unused part, 100 ms at most by default).
pub const LATE: Duration = Duration::from_millis(100);
/// How long a level is given to take effect before the next.
const STEP_WAIT: Duration = Duration::from_secs(1);
/// How long the node must have been behind before it sheds (two samples: one slow moment,
/// the host stealing the CPU for a few hundred milliseconds, sheds nothing).
const BEHIND_FOR: Duration = Duration::from_millis(400);
/// How long the node must keep up before a level is undone, at first.
const CALM_FIRST: Duration = Duration::from_secs(10);
/// The longest wait before an undo (after undos that brought the overload back).
const CALM_MAX: Duration = Duration::from_secs(60);
/// Shares of late packets, and of packets dropped on full queues, that mean overload.
const LATE_SHARE: f64 = 0.05;
const DROPPED_SHARE: f64 = 0.005;
/// Fewer packets than this in a sample say nothing.
const MIN_PACKETS: u64 = 50;
/// The share of its ceiling the load may reach after an undo.
const HEADROOM: f64 = 0.9;

/// What the node forwarded over one sampling interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Packets written to subscribers.
    pub forwarded: u64,
    /// Of those, written later than [`LATE`] after they arrived.
    pub late: u64,
    /// Packets dropped because a subscription's queue was full.
    pub queue_full: u64,
    /// Some publisher sends simulcast layers (levels 1 and 2 have something to take off).
    pub layered: bool,
}

impl Sample {
    /// Packets the node had to forward: those it wrote and those its full queues dropped.
    pub fn offered(&self) -> u64 {
        self.forwarded + self.queue_full
    }

    /// Whether the node fell behind over the interval.
    pub fn overloaded(&self) -> bool {
        let handled = self.offered();
        handled >= MIN_PACKETS
            && (self.queue_full as f64 > DROPPED_SHARE * handled as f64
                || self.late as f64 > LATE_SHARE * self.forwarded as f64)
    }
}

/// What one level took off: the load (packets offered per sample) when it was taken, and
/// once it acted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Step {
    before: u64,
    after: Option<u64>,
}

/// The shedding level over time.
#[derive(Clone, Debug)]
pub struct Governor {
    level: u8,
    changed_at: Option<Instant>,
    calm_since: Option<Instant>,
    behind_since: Option<Instant>,
    calm_needed: Duration,
    undone_at: Option<Instant>,
    /// The most packets per sample the node forwarded while last behind.
    ceiling: Option<u64>,
    /// What each level took off, by level - 1.
    steps: [Step; MAX_LEVEL as usize],
}

impl Default for Governor {
    fn default() -> Self {
        Self {
            level: 0,
            changed_at: None,
            calm_since: None,
            behind_since: None,
            calm_needed: CALM_FIRST,
            undone_at: None,
            ceiling: None,
            steps: [Step::default(); MAX_LEVEL as usize],
        }
    }
}

impl Governor {
    /// The current level (0: nothing shed).
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Takes one sample; returns the new level when it changed.
    pub fn sample(&mut self, sample: &Sample, now: Instant) -> Option<u8> {
        let settled = self
            .changed_at
            .is_none_or(|t| now.duration_since(t) >= STEP_WAIT);
        if settled
            && let Some(i) = self.current_step()
            && self.steps[i].after.is_none()
        {
            self.steps[i].after = Some(sample.offered());
        }
        if sample.overloaded() {
            self.calm_since = None;
            if self.behind_since.is_none() {
                self.ceiling = None;
            }
            let behind_since = *self.behind_since.get_or_insert(now);
            self.ceiling = self.ceiling.max(Some(sample.forwarded));
            if let Some(undone) = self.undone_at.take()
                && now.duration_since(undone) < self.calm_needed
            {
                self.calm_needed = (self.calm_needed * 2).min(CALM_MAX);
            }
            let sustained = now.duration_since(behind_since) >= BEHIND_FOR;
            if settled && sustained && self.level < MAX_LEVEL {
                let next = level_above(self.level, sample.layered);
                // A level passed over gets the step too, so that figures of an earlier climb
                // through it never judge an undo into it.
                let step = Step {
                    before: sample.offered(),
                    after: None,
                };
                self.steps[usize::from(self.level)..usize::from(next)].fill(step);
                return Some(self.change(next, now));
            }
            return None;
        }
        self.behind_since = None;
        let calm_since = *self.calm_since.get_or_insert(now);
        let calm = now.duration_since(calm_since);
        if self.level > 0 && settled && calm >= self.calm_needed && self.undo_fits(sample) {
            self.undone_at = Some(now);
            self.calm_since = Some(now);
            return Some(self.change(level_below(self.level, sample.layered), now));
        }
        if self.level == 0 && calm >= CALM_MAX {
            self.calm_needed = CALM_FIRST;
        }
        None
    }

    /// Where in `steps` the current level's step is, at level 1 and above.
    fn current_step(&self) -> Option<usize> {
        usize::from(self.level).checked_sub(1)
    }

    /// Whether undoing the current level keeps the load of `sample`, grown by what the level
    /// took off, under [`HEADROOM`] of the ceiling. Without the figures (the level has not
    /// acted yet, nothing was forwarded) only the wait decides.
    fn undo_fits(&self, sample: &Sample) -> bool {
        let Some(step) = self.current_step().map(|i| self.steps[i]) else {
            return true;
        };
        let (Some(after), Some(ceiling)) = (step.after.filter(|a| *a > 0), self.ceiling) else {
            return true;
        };
        let back = sample.offered() as f64 * step.before as f64 / after as f64;
        back <= HEADROOM * ceiling as f64
    }

    fn change(&mut self, level: u8, now: Instant) -> u8 {
        self.level = level;
        self.changed_at = Some(now);
        level
    }
}

/// Whether `level` takes off something the level below it left: levels 1 and 2 cap simulcast
/// layers, which only a layered publisher has.
fn takes_off(level: u8, layered: bool) -> bool {
    layered || level > 2
}

/// The next level up from `level` that takes something off (at most [`MAX_LEVEL`]).
fn level_above(level: u8, layered: bool) -> u8 {
    (level + 1..MAX_LEVEL)
        .find(|l| takes_off(*l, layered))
        .unwrap_or(MAX_LEVEL)
}

/// The next level down from `level` (above 0) that takes something off, or 0.
fn level_below(level: u8, layered: bool) -> u8 {
    (1..level)
        .rev()
        .find(|l| takes_off(*l, layered))
        .unwrap_or(0)
}

/// The best quality any subscriber gets at `level`.
pub fn layer_cap(level: u8) -> Quality {
    match level {
        0 => Quality::High,
        1 => Quality::Medium,
        _ => Quality::Low,
    }
}

/// The share of the cameras each subscriber keeps at `level`; none: all of them (a share
/// keeps at least one, see [`camera_limit`]).
pub fn camera_share(level: u8) -> Option<f64> {
    match level {
        0..=2 => None,
        3 => Some(0.8),
        4 => Some(0.6),
        5 => Some(0.4),
        6 => Some(0.2),
        _ => Some(0.0),
    }
}

/// How many of `cameras` (the others' cameras in its room) a subscriber receives, with the
/// conference's `last_n` and the shed `share`: none without either; at least one while there
/// is one.
pub fn camera_limit(last_n: Option<u32>, share: Option<f64>, cameras: usize) -> Option<usize> {
    let shed = share.map(|s| ((cameras as f64 * s).ceil() as usize).max(1));
    match (last_n.map(|n| n as usize), shed) {
        (None, None) => None,
        (Some(n), None) | (None, Some(n)) => Some(n),
        (Some(a), Some(b)) => Some(a.min(b)),
    }
}

/// The level as the node logs it.
pub fn describe(level: u8) -> String {
    match (camera_share(level), layer_cap(level)) {
        (Some(0.0), _) => {
            "every video at its lowest layer, each subscriber keeps its most relevant camera"
                .to_owned()
        }
        (Some(share), _) => format!(
            "every video at its lowest layer, each subscriber keeps {:.0} % of the cameras",
            share * 100.0
        ),
        (None, Quality::High) => "nothing shed".to_owned(),
        (None, Quality::Medium) => "top simulcast layers off".to_owned(),
        (None, Quality::Low) => "every video at its lowest layer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALM: Sample = Sample {
        forwarded: 1000,
        late: 0,
        queue_full: 0,
        layered: true,
    };
    const BEHIND: Sample = Sample {
        forwarded: 1000,
        late: 300,
        queue_full: 0,
        layered: true,
    };

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn overload_is_late_or_dropped_packets_beyond_a_share() {
        assert!(!CALM.overloaded());
        assert!(BEHIND.overloaded());
        let dropping = Sample {
            queue_full: 10,
            ..CALM
        };
        assert!(dropping.overloaded());
        let a_few_late = Sample { late: 40, ..CALM };
        assert!(!a_few_late.overloaded());
        let idle = Sample {
            forwarded: 10,
            late: 10,
            queue_full: 10,
            layered: true,
        };
        assert!(!idle.overloaded(), "too few packets to tell");
    }

    #[test]
    fn levels_rise_one_a_second_while_the_node_falls_behind() {
        let t = Instant::now();
        let mut g = Governor::default();
        assert_eq!(g.sample(&BEHIND, t), None, "one slow sample sheds nothing");
        assert_eq!(g.sample(&BEHIND, at(t, 500)), Some(1));
        assert_eq!(
            g.sample(&BEHIND, at(t, 1000)),
            None,
            "waits for the level to act"
        );
        assert_eq!(g.sample(&BEHIND, at(t, 1500)), Some(2));
        let mut level = 2;
        for s in 2..10 {
            if let Some(l) = g.sample(&BEHIND, at(t, s * 1000)) {
                level = l;
            }
        }
        assert_eq!(level, MAX_LEVEL);
        assert_eq!(
            g.sample(&BEHIND, at(t, 20_000)),
            None,
            "no level above the last"
        );
    }

    #[test]
    fn the_next_level_either_way_passes_over_the_layer_levels_without_layers() {
        for (level, layered, above, below) in [
            (0, true, 1, 0),
            (0, false, 3, 0),
            (1, true, 2, 0),
            (2, false, 3, 0),
            (3, true, 4, 2),
            (3, false, 4, 0),
            (4, false, 5, 3),
            (6, false, MAX_LEVEL, 5),
            (MAX_LEVEL, true, MAX_LEVEL, 6),
        ] {
            assert_eq!(
                level_above(level, layered),
                above,
                "above {level}, {layered}"
            );
            if level > 0 {
                assert_eq!(
                    level_below(level, layered),
                    below,
                    "below {level}, {layered}"
                );
            }
        }
    }

    #[test]
    fn without_layered_publishers_the_layer_levels_are_passed_over_both_ways() {
        let behind = Sample {
            layered: false,
            ..BEHIND
        };
        // Level 4 took the load from 1000 to 600 a sample; then people left (400).
        let acted = Sample {
            layered: false,
            forwarded: 600,
            ..CALM
        };
        let calm = Sample {
            forwarded: 400,
            ..acted
        };
        let t = Instant::now();
        let mut g = Governor::default();
        assert_eq!(g.sample(&behind, t), None);
        assert_eq!(
            g.sample(&behind, at(t, 500)),
            Some(3),
            "straight to cameras"
        );
        assert_eq!(g.sample(&behind, at(t, 1500)), Some(4));
        assert_eq!(g.sample(&acted, at(t, 2500)), None);
        assert_eq!(g.sample(&calm, at(t, 12_500)), Some(3));
        assert_eq!(
            g.sample(&calm, at(t, 22_500)),
            Some(0),
            "level 3 undone to 0"
        );
        // A publisher started simulcast meanwhile: the layer levels count again.
        g.sample(&BEHIND, at(t, 83_000));
        assert_eq!(g.sample(&BEHIND, at(t, 83_500)), Some(1));
    }

    #[test]
    fn a_slow_moment_between_calm_samples_sheds_nothing() {
        let t = Instant::now();
        let mut g = Governor::default();
        for (ms, sample) in [
            (0, CALM),
            (500, BEHIND),
            (1000, CALM),
            (1500, BEHIND),
            (2000, CALM),
        ] {
            assert_eq!(g.sample(&sample, at(t, ms)), None);
        }
        assert_eq!(g.level(), 0);
    }

    #[test]
    fn a_level_is_undone_after_calm_and_the_wait_doubles_when_the_undo_fails() {
        // Each level took the load from 1000 to 600 a sample; then people left (400), so
        // what a level took off fits again and only the wait decides.
        let acted = Sample {
            forwarded: 600,
            ..CALM
        };
        let lighter = Sample {
            forwarded: 400,
            ..CALM
        };
        let t = Instant::now();
        let mut g = Governor::default();
        g.sample(&BEHIND, at(t, 0));
        g.sample(&BEHIND, at(t, 500));
        g.sample(&BEHIND, at(t, 1500));
        assert_eq!(g.level(), 2);
        assert_eq!(g.sample(&acted, at(t, 2500)), None);
        assert_eq!(
            g.sample(&lighter, at(t, 11_000)),
            None,
            "10 s of calm are needed"
        );
        assert_eq!(g.sample(&lighter, at(t, 12_500)), Some(1));
        // The undo brought the overload back at once: shed again, and wait 20 s next time.
        assert_eq!(g.sample(&BEHIND, at(t, 13_000)), None);
        assert_eq!(g.sample(&BEHIND, at(t, 13_500)), Some(2));
        assert_eq!(g.sample(&acted, at(t, 14_500)), None);
        assert_eq!(g.sample(&lighter, at(t, 33_000)), None);
        assert_eq!(g.sample(&lighter, at(t, 34_500)), Some(1));
        // This undo held: the next one comes 20 s later, and all is undone.
        assert_eq!(g.sample(&lighter, at(t, 54_500)), Some(0));
        // A minute of calm at level 0 forgets the failed undos.
        g.sample(&lighter, at(t, 114_500));
        g.sample(&BEHIND, at(t, 115_000));
        assert_eq!(g.sample(&BEHIND, at(t, 115_500)), Some(1));
        assert_eq!(g.sample(&acted, at(t, 116_500)), None);
        assert_eq!(g.sample(&lighter, at(t, 126_500)), Some(0), "back to 10 s");
    }

    #[test]
    fn a_level_is_given_back_only_once_what_it_took_off_fits_under_the_ceiling() {
        let t = Instant::now();
        let mut g = Governor::default();
        // Offered 1000 a sample, forwarded at most 800 while behind.
        let behind = Sample {
            forwarded: 800,
            late: 0,
            queue_full: 200,
            layered: true,
        };
        g.sample(&behind, at(t, 0));
        assert_eq!(g.sample(&behind, at(t, 500)), Some(1));
        // Level 1 took the load to 600.
        let shed = Sample {
            forwarded: 600,
            late: 0,
            queue_full: 0,
            layered: true,
        };
        for ms in (1000..=30_000).step_by(500) {
            assert_eq!(
                g.sample(&shed, at(t, ms)),
                None,
                "giving it back would offer 1000 again, over 0.9 x 800"
            );
        }
        // People left: 400 now, 667 with level 1 undone, under 720.
        let fewer = Sample {
            forwarded: 400,
            ..shed
        };
        assert_eq!(g.sample(&fewer, at(t, 30_500)), Some(0));
        assert_eq!(g.level(), 0);
    }

    #[test]
    fn without_figures_only_the_wait_decides() {
        let t = Instant::now();
        let mut g = Governor::default();
        g.sample(&BEHIND, at(t, 0));
        assert_eq!(g.sample(&BEHIND, at(t, 500)), Some(1));
        // Nothing forwarded once the level acted: no ratio to go by.
        let silent = Sample::default();
        assert_eq!(g.sample(&silent, at(t, 1500)), None);
        assert_eq!(g.sample(&silent, at(t, 11_500)), Some(0));
    }

    #[test]
    fn layers_go_first_then_cameras() {
        assert_eq!(layer_cap(0), Quality::High);
        assert_eq!(layer_cap(1), Quality::Medium);
        assert_eq!(layer_cap(2), Quality::Low);
        assert_eq!(layer_cap(6), Quality::Low);
        assert_eq!(camera_share(2), None);
        assert_eq!(camera_share(3), Some(0.8));
        assert_eq!(camera_share(6), Some(0.2));
        assert_eq!(camera_share(MAX_LEVEL), Some(0.0));
        assert_eq!(
            describe(MAX_LEVEL),
            "every video at its lowest layer, each subscriber keeps its most relevant camera"
        );
        assert_eq!(Quality::High.min(layer_cap(1)), Quality::Medium);
        assert_eq!(Quality::Low.min(layer_cap(1)), Quality::Low);
        assert_eq!(describe(0), "nothing shed");
        assert_eq!(describe(2), "every video at its lowest layer");
        for level in 0..=MAX_LEVEL {
            assert!(!describe(level).is_empty());
        }
    }

    #[test]
    fn the_camera_limit_combines_last_n_and_the_shed_share() {
        assert_eq!(camera_limit(None, None, 6), None);
        assert_eq!(camera_limit(Some(4), None, 6), Some(4));
        assert_eq!(camera_limit(None, Some(0.8), 6), Some(5));
        assert_eq!(camera_limit(None, Some(0.6), 6), Some(4));
        assert_eq!(camera_limit(None, Some(0.2), 6), Some(2));
        assert_eq!(
            camera_limit(None, Some(0.0), 6),
            Some(1),
            "the most relevant one"
        );
        assert_eq!(
            camera_limit(None, Some(0.2), 1),
            Some(1),
            "one camera is kept"
        );
        assert_eq!(camera_limit(Some(3), Some(0.8), 6), Some(3));
        assert_eq!(camera_limit(Some(6), Some(0.4), 6), Some(3));
    }
}
