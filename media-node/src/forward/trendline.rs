//! Whether the queue on a subscriber's path is growing, from the delay variation between
//! groups of packets (a burst sent together, measured as arrival spread minus departure
//! spread): the variations are accumulated into a one-way delay, smoothed, and the slope of
//! a least-squares line through the last [`WINDOW`] groups (from [`MIN_GROUPS`] on) is the
//! trend. Scaled by how many
//! groups it rests on, the trend is compared with a threshold that adapts to the path's
//! jitter; above it for [`OVERUSE_TIME`] and more than one reading, with the trend still
//! rising, the queue is growing. This is the trendline filter of Google Congestion Control as
//! browsers run it; it answers within a window of groups, where a Kalman filter on the raw
//! variation takes seconds to believe a step.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::downlink::Queue;

/// Groups the line is fitted through, at most…
pub const WINDOW: usize = 20;
/// …and at least: on a congested path few groups arrive (at 300 kbit/s, about five frames of a
/// 2 Mbit/s layer a second, with the audio between them), so waiting for a full window would take seconds. The scaling by
/// the groups seen keeps the early, noisier slopes small.
pub const MIN_GROUPS: usize = 5;
/// Weight of the previous smoothed delay.
const SMOOTHING: f64 = 0.9;
/// The trend is scaled by the groups it rests on, at most this many…
const MAX_DELTAS: f64 = 60.0;
/// …and by this gain, before it is compared with the threshold.
const GAIN: f64 = 4.0;
/// The threshold a path starts with, milliseconds.
pub const INITIAL_THRESHOLD_MS: f64 = 12.5;
/// How fast the threshold follows a trend above it, and one below it (per millisecond).
const THRESHOLD_UP: f64 = 0.0087;
const THRESHOLD_DOWN: f64 = 0.039;
/// A trend this far beyond the threshold is a spike, not jitter: the threshold ignores it.
const THRESHOLD_SPIKE_MS: f64 = 15.0;
/// The trend must stay above the threshold this long before the queue is called growing.
pub const OVERUSE_TIME: Duration = Duration::from_millis(10);

/// The trend of one path.
#[derive(Clone, Debug)]
pub struct Trendline {
    first: Option<Instant>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (milliseconds since the first group, smoothed delay)
    window: VecDeque<(f64, f64)>,
    deltas: f64,
    threshold_ms: f64,
    last_threshold_update: Option<Instant>,
    over_since: Option<Instant>,
    over_readings: u32,
    previous_trend: f64,
    queue: Queue,
}

impl Default for Trendline {
    fn default() -> Self {
        Self {
            first: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            window: VecDeque::with_capacity(WINDOW),
            deltas: 0.0,
            threshold_ms: INITIAL_THRESHOLD_MS,
            last_threshold_update: None,
            over_since: None,
            over_readings: 0,
            previous_trend: 0.0,
            queue: Queue::Steady,
        }
    }
}

impl Trendline {
    /// A path with no groups yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the queue did, as of the last group.
    pub fn queue(&self) -> Queue {
        self.queue
    }

    /// The adaptive threshold, milliseconds.
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// Folds in one group, sent at `at`, whose delay changed by `delta_ms` from the group
    /// before; returns what the queue does.
    pub fn update(&mut self, at: Instant, delta_ms: f64) -> Queue {
        if !delta_ms.is_finite() {
            return self.queue;
        }
        let first = *self.first.get_or_insert(at);
        self.deltas = (self.deltas + 1.0).min(MAX_DELTAS);
        self.accumulated_ms += delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        let x = at.saturating_duration_since(first).as_secs_f64() * 1_000.0;
        self.window.push_back((x, self.smoothed_ms));
        if self.window.len() < MIN_GROUPS {
            return self.queue;
        }
        let Some(slope) = slope(&self.window) else {
            return self.queue;
        };
        let trend = self.deltas * slope * GAIN;
        self.detect(at, trend);
        self.adapt_threshold(at, trend);
        self.previous_trend = trend;
        self.queue
    }

    fn detect(&mut self, at: Instant, trend: f64) {
        if trend > self.threshold_ms {
            let since = *self.over_since.get_or_insert(at);
            self.over_readings += 1;
            if at.saturating_duration_since(since) >= OVERUSE_TIME
                && self.over_readings > 1
                && trend >= self.previous_trend
            {
                self.queue = Queue::Growing;
                self.over_since = None;
                self.over_readings = 0;
            }
        } else {
            self.over_since = None;
            self.over_readings = 0;
            self.queue = if trend < -self.threshold_ms {
                Queue::Draining
            } else {
                Queue::Steady
            };
        }
    }

    fn adapt_threshold(&mut self, at: Instant, trend: f64) {
        let last = self.last_threshold_update.replace(at);
        let magnitude = trend.abs();
        if magnitude > self.threshold_ms + THRESHOLD_SPIKE_MS {
            return;
        }
        let elapsed_ms = last.map_or(0.0, |last| {
            (at.saturating_duration_since(last).as_secs_f64() * 1_000.0).min(100.0)
        });
        let gain = if magnitude < self.threshold_ms {
            THRESHOLD_DOWN
        } else {
            THRESHOLD_UP
        };
        self.threshold_ms = (self.threshold_ms
            + gain * (magnitude - self.threshold_ms) * elapsed_ms)
            .clamp(6.0, 600.0);
    }
}

/// The least-squares slope of `points`; `None` when they all share one x.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `groups` groups `spacing_ms` apart, each `delta_ms` later than the one before.
    fn feed(
        line: &mut Trendline,
        start: Instant,
        groups: u32,
        spacing_ms: u64,
        delta_ms: f64,
    ) -> Vec<Queue> {
        (0..groups)
            .map(|i| {
                line.update(
                    start + Duration::from_millis(u64::from(i) * spacing_ms),
                    delta_ms,
                )
            })
            .collect()
    }

    #[test]
    fn a_steady_path_reads_steady() {
        let t0 = Instant::now();
        let mut line = Trendline::new();
        let jitter = [0.5, -0.7, 0.3, -0.1];
        for i in 0..200u64 {
            let q = line.update(t0 + Duration::from_millis(i * 33), jitter[(i % 4) as usize]);
            assert_eq!(q, Queue::Steady, "group {i}");
        }
    }

    #[test]
    fn a_queue_growing_by_a_frame_interval_per_frame_is_seen_within_a_few_groups() {
        let t0 = Instant::now();
        let mut line = Trendline::new();
        let queues = feed(&mut line, t0, 40, 33, 30.0);
        let first = queues
            .iter()
            .position(|q| *q == Queue::Growing)
            .expect("growing");
        assert!(
            (MIN_GROUPS - 1..=MIN_GROUPS + 3).contains(&first),
            "{first}"
        );
    }

    #[test]
    fn a_small_steady_growth_is_seen_too() {
        let t0 = Instant::now();
        let mut line = Trendline::new();
        let queues = feed(&mut line, t0, 120, 33, 1.0);
        assert!(queues.contains(&Queue::Growing));
    }

    #[test]
    fn a_draining_queue_reads_draining_after_growth() {
        let t0 = Instant::now();
        let mut line = Trendline::new();
        feed(&mut line, t0, 40, 33, 20.0);
        let queues = feed(
            &mut line,
            t0 + Duration::from_millis(40 * 33),
            40,
            33,
            -20.0,
        );
        assert_eq!(queues.last(), Some(&Queue::Draining));
    }

    #[test]
    fn nonsense_changes_nothing() {
        let t0 = Instant::now();
        let mut line = Trendline::new();
        assert_eq!(line.update(t0, f64::NAN), Queue::Steady);
        assert_eq!(line.update(t0, f64::INFINITY), Queue::Steady);
        // Every group at one instant: no slope, no verdict.
        assert_eq!(
            feed(&mut line, t0, 30, 0, 50.0).last(),
            Some(&Queue::Steady)
        );
    }

    #[test]
    fn the_threshold_follows_a_trend_near_it_and_ignores_spikes() {
        let t0 = Instant::now();
        let mut line = Trendline::new();
        // A queue growing slowly: the trend sits a little above the threshold, which follows.
        feed(&mut line, t0, 200, 33, 2.3);
        let followed = line.threshold_ms();
        assert!(followed > INITIAL_THRESHOLD_MS + 2.0, "{followed}");
        // Back to a steady path: it comes down again.
        feed(
            &mut line,
            t0 + Duration::from_millis(200 * 33),
            200,
            33,
            0.0,
        );
        assert!(line.threshold_ms() < 8.0, "{}", line.threshold_ms());
        // A step far beyond it is a spike: the threshold does not chase it.
        let mut spiked = Trendline::new();
        feed(&mut spiked, t0, 30, 33, 200.0);
        assert_eq!(spiked.threshold_ms(), INITIAL_THRESHOLD_MS);
    }
}
