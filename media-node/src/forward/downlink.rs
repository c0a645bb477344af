//! The ceiling on what the node sends one subscriber, from what the subscriber's transport-wide
//! feedback says about its downlink: whether the queue on the path is growing (the delay
//! trend) and how many packets were lost.
//!
//! The node starts with no ceiling: a subscriber gets the layers it asked for until its path
//! shows congestion. A growing queue sets the ceiling to [`DECREASE`] of the lower of the rate
//! the subscriber received and the ceiling itself, at most once per [`DECREASE_INTERVAL`];
//! heavy loss (above [`HIGH_LOSS`], smoothed) cuts it in proportion to the loss. Otherwise it
//! rises by [`INCREASE_PER_SECOND`], but not past [`RECEIVED_HEADROOM`] times what the
//! subscriber received plus [`INCREASE_SLACK_BPS`]: feedback cannot show room for more than was
//! sent, and finding that is the layer selector's probes' job. What the subscriber receives
//! while the queue holds steady the path carries, so the ceiling is never below it then: a
//! probe that flows lifts it at once. Loss between the thresholds (a
//! lossy radio link, random drops) neither cuts the ceiling nor stops it rising: repair deals
//! with that, and backing off would give the capacity up for nothing.

use std::time::{Duration, Instant};

/// A growing queue sets the ceiling to this share of what was received.
pub const DECREASE: f64 = 0.85;
/// Cuts at most this often: the queue takes a round trip or two to drain after one.
pub const DECREASE_INTERVAL: Duration = Duration::from_millis(500);
/// Multiplicative rise per second while the path is fine.
pub const INCREASE_PER_SECOND: f64 = 1.08;
/// Rises at most this often.
pub const INCREASE_INTERVAL: Duration = Duration::from_millis(200);
/// The ceiling rises to at most this many times what was received…
pub const RECEIVED_HEADROOM: f64 = 1.5;
/// …plus this.
pub const INCREASE_SLACK_BPS: f64 = 10_000.0;
/// Smoothed loss above this cuts the ceiling.
pub const HIGH_LOSS: f64 = 0.10;
/// The ceiling never goes below this.
pub const MIN_CEILING_BPS: f64 = 100_000.0;

/// What the delay trend says about the queue on the subscriber's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// More is sent than the path carries.
    Growing,
    /// Neither growing nor draining.
    Steady,
    /// Draining: the path carries more than is sent.
    Draining,
}

/// One batch of feedback, as the estimator read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Feedback {
    /// The queue, from the delay trend.
    pub queue: Queue,
    /// What the subscriber received lately, bits per second (unknown at first).
    pub received_bps: Option<f64>,
    /// Packets of the batch reported lost.
    pub lost: usize,
    /// Packets the batch reported on.
    pub reported: usize,
}

/// The ceiling of one subscriber.
#[derive(Clone, Debug, Default)]
pub struct DownlinkCeiling {
    ceiling_bps: Option<f64>,
    average_loss: Option<f64>,
    last_decrease: Option<Instant>,
    last_increase: Option<Instant>,
}

impl DownlinkCeiling {
    /// No ceiling yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The ceiling, bits per second; `None` while the path has shown no congestion.
    pub fn ceiling_bps(&self) -> Option<f64> {
        self.ceiling_bps
    }

    /// The smoothed share of packets lost, once feedback reported any packet.
    pub fn average_loss(&self) -> Option<f64> {
        self.average_loss
    }

    /// Folds in one batch of feedback; returns the ceiling.
    pub fn update(&mut self, now: Instant, feedback: Feedback) -> Option<f64> {
        let sample =
            (feedback.reported > 0).then(|| feedback.lost as f64 / feedback.reported as f64);
        if let Some(sample) = sample {
            self.average_loss = Some(match self.average_loss {
                Some(previous) => 0.8 * previous + 0.2 * sample,
                None => sample,
            });
        }
        // Heavy loss only when both the batch and the average say so: one bad batch is noise,
        // and an average still high after the loss ended is history.
        let heavy_loss = match (sample, self.average_loss) {
            (Some(sample), Some(average)) => sample.min(average) > HIGH_LOSS,
            _ => false,
        };
        let Some(received) = feedback.received_bps else {
            return self.ceiling_bps;
        };
        let may_decrease = self
            .last_decrease
            .is_none_or(|t| now.saturating_duration_since(t) >= DECREASE_INTERVAL);
        if feedback.queue == Queue::Growing || heavy_loss {
            if may_decrease {
                let base = self.ceiling_bps.map_or(received, |c| c.min(received));
                let factor = if feedback.queue == Queue::Growing {
                    DECREASE
                } else {
                    1.0 - 0.5 * self.average_loss.unwrap_or(0.0)
                };
                self.ceiling_bps = Some((base * factor).max(MIN_CEILING_BPS));
                self.last_decrease = Some(now);
                self.last_increase = Some(now);
            }
            return self.ceiling_bps;
        }
        if feedback.queue == Queue::Draining {
            // The queue a cut left behind is emptying: wait for it before rising.
            return self.ceiling_bps;
        }
        if let Some(ceiling) = self.ceiling_bps {
            let elapsed = self
                .last_increase
                .map_or(INCREASE_INTERVAL, |t| now.saturating_duration_since(t));
            if elapsed >= INCREASE_INTERVAL {
                let grown = ceiling * INCREASE_PER_SECOND.powf(elapsed.as_secs_f64().min(1.0));
                let cap = received * RECEIVED_HEADROOM + INCREASE_SLACK_BPS;
                // What arrives while the queue holds steady, the path carries: a layer tried
                // above the ceiling lifts it at once instead of by the rise per second.
                self.ceiling_bps = Some(ceiling.max(grown.min(cap)).max(received));
                self.last_increase = Some(now);
            }
        }
        self.ceiling_bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feedback(queue: Queue, received: f64, lost: usize, reported: usize) -> Feedback {
        Feedback {
            queue,
            received_bps: Some(received),
            lost,
            reported,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_ceiling_until_the_path_shows_congestion() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        for i in 0..20 {
            let at = t0 + ms(100 * i);
            assert_eq!(d.update(at, feedback(Queue::Steady, 2e6, 0, 50)), None);
            assert_eq!(d.update(at, feedback(Queue::Draining, 2e6, 0, 50)), None);
        }
        // Moderate random loss is not congestion either.
        for i in 0..20 {
            let at = t0 + ms(2_000 + 100 * i);
            assert_eq!(d.update(at, feedback(Queue::Steady, 2e6, 3, 50)), None);
        }
    }

    #[test]
    fn a_growing_queue_cuts_to_a_share_of_what_was_received_at_most_every_interval() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        assert_eq!(
            d.update(t0, feedback(Queue::Growing, 400_000.0, 0, 50)),
            Some(340_000.0)
        );
        // Still growing 100 ms later: the first cut has not had time to act.
        assert_eq!(
            d.update(t0 + ms(100), feedback(Queue::Growing, 300_000.0, 0, 50)),
            Some(340_000.0)
        );
        // Half a second on, it cuts again, from what was received.
        assert_eq!(
            d.update(t0 + ms(500), feedback(Queue::Growing, 300_000.0, 0, 50)),
            Some(255_000.0)
        );
    }

    #[test]
    fn a_cut_during_a_probe_lands_below_the_ceiling_the_probe_started_from() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        d.update(t0, feedback(Queue::Growing, 300_000.0, 0, 50));
        assert_eq!(d.ceiling_bps(), Some(255_000.0));
        // A layer above the ceiling is tried; the path queues while 600 kbit/s arrive.
        let cut = d.update(t0 + ms(600), feedback(Queue::Growing, 600_000.0, 0, 50));
        assert_eq!(cut, Some(255_000.0 * DECREASE));
    }

    #[test]
    fn rises_by_the_rate_per_second_up_to_headroom_over_what_was_received() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        d.update(t0, feedback(Queue::Growing, 1_000_000.0, 0, 50));
        assert_eq!(d.ceiling_bps(), Some(850_000.0));
        // 100 ms later: too soon to rise.
        assert_eq!(
            d.update(t0 + ms(100), feedback(Queue::Steady, 800_000.0, 0, 50)),
            Some(850_000.0)
        );
        let after_a_second = d
            .update(t0 + ms(1_000), feedback(Queue::Steady, 800_000.0, 0, 50))
            .unwrap();
        assert!(
            (after_a_second - 850_000.0 * 1.08).abs() < 1.0,
            "{after_a_second}"
        );
        // Receiving only 300 kbit/s, it rises no more (1.5 × 300k + 10k is below it), and does
        // not fall either.
        let mut at = t0 + ms(1_000);
        for _ in 0..100 {
            at += ms(200);
            d.update(at, feedback(Queue::Steady, 300_000.0, 0, 50));
        }
        assert!((d.ceiling_bps().unwrap() - 918_000.0).abs() < 1.0);
        for _ in 0..100 {
            at += ms(200);
            d.update(at, feedback(Queue::Steady, 2_000_000.0, 0, 50));
        }
        assert!((d.ceiling_bps().unwrap() - 3_010_000.0).abs() < 1.0);
    }

    #[test]
    fn what_arrives_with_a_steady_queue_lifts_the_ceiling_at_once() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        d.update(t0, feedback(Queue::Growing, 250_000.0, 0, 50));
        assert_eq!(d.ceiling_bps(), Some(212_500.0));
        // A probe sends 450 kbit/s and the queue holds: the path carries it.
        assert_eq!(
            d.update(t0 + ms(600), feedback(Queue::Steady, 450_000.0, 0, 50)),
            Some(450_000.0)
        );
        // Not while it drains: that rate is the backlog leaving.
        let mut d = DownlinkCeiling::new();
        d.update(t0, feedback(Queue::Growing, 250_000.0, 0, 50));
        assert_eq!(
            d.update(t0 + ms(600), feedback(Queue::Draining, 450_000.0, 0, 50)),
            Some(212_500.0)
        );
    }

    #[test]
    fn a_draining_queue_holds_the_ceiling() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        d.update(t0, feedback(Queue::Growing, 1_000_000.0, 0, 50));
        for i in 1..20 {
            let at = t0 + ms(200 * i);
            assert_eq!(
                d.update(at, feedback(Queue::Draining, 1_000_000.0, 0, 50)),
                Some(850_000.0)
            );
        }
    }

    #[test]
    fn heavy_loss_cuts_in_proportion_and_one_bad_batch_does_not() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        for i in 0..10 {
            d.update(t0 + ms(100 * i), feedback(Queue::Steady, 1e6, 0, 50));
        }
        // One batch losing 40 %: the average is 8 %, no cut.
        assert_eq!(
            d.update(t0 + ms(1_000), feedback(Queue::Steady, 1e6, 20, 50)),
            None
        );
        // Losing 30 % for a while: the average passes 10 % and the ceiling is cut by half the
        // average loss.
        let mut at = t0 + ms(1_000);
        let mut cut = None;
        while cut.is_none() {
            at += ms(100);
            cut = d.update(at, feedback(Queue::Steady, 1e6, 15, 50));
        }
        let loss = d.average_loss().unwrap();
        assert!(loss > HIGH_LOSS);
        assert!((cut.unwrap() - 1e6 * (1.0 - 0.5 * loss)).abs() < 1.0);
    }

    #[test]
    fn never_below_the_floor_and_nothing_without_a_received_rate() {
        let t0 = Instant::now();
        let mut d = DownlinkCeiling::new();
        let unknown = Feedback {
            queue: Queue::Growing,
            received_bps: None,
            lost: 0,
            reported: 10,
        };
        assert_eq!(d.update(t0, unknown), None);
        assert_eq!(
            d.update(t0, feedback(Queue::Growing, 20_000.0, 0, 10)),
            Some(MIN_CEILING_BPS)
        );
        // A batch reporting nothing changes no loss figure.
        d.update(t0 + ms(600), feedback(Queue::Steady, 20_000.0, 0, 0));
        assert_eq!(d.average_loss(), Some(0.0));
    }
}
