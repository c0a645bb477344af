//! The node's overload governor: twice a second it samples what the subscriptions forwarded,
//! how late, and what their full queues dropped, and moves the shedding level
//! (`forward::shedding`) that subscriptions (layer cap) and rooms (camera share) apply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::NodeStats;
use crate::forward::DropReason;
use crate::forward::shedding::{Governor, LATE, Sample, describe};

/// How often the governor samples.
const INTERVAL: Duration = Duration::from_millis(500);

/// The counters a sample is the difference of.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    forwarded: u64,
    late: u64,
    queue_full: u64,
    layered: bool,
}

impl Totals {
    fn read(stats: &NodeStats) -> Self {
        let late_us = LATE.as_micros() as u64;
        let timed = stats.delay.cumulative(&[late_us]);
        let (within, all) = (timed[0].1, timed[1].1);
        Self {
            forwarded: stats.forward.forwarded_total(),
            late: all.saturating_sub(within),
            queue_full: stats.forward.dropped_total(DropReason::QueueFull),
            layered: stats.any_layered_publication(),
        }
    }

    fn since(&self, earlier: &Totals) -> Sample {
        Sample {
            forwarded: self.forwarded.saturating_sub(earlier.forwarded),
            late: self.late.saturating_sub(earlier.late),
            queue_full: self.queue_full.saturating_sub(earlier.queue_full),
            layered: self.layered,
        }
    }
}

/// Runs the governor for `stats` until the task is dropped.
pub async fn govern(stats: Arc<NodeStats>) {
    let mut governor = Governor::default();
    let mut before = Totals::read(&stats);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Totals::read(&stats);
        let sample = now.since(&before);
        before = now;
        if let Some(level) = governor.sample(&sample, Instant::now()) {
            tracing::warn!(
                level,
                forwarded = sample.forwarded,
                late = sample.late,
                queue_full = sample.queue_full,
                "overload shedding: {}",
                describe(level)
            );
            stats.set_shedding_level(level);
        }
    }
}
