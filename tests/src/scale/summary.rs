//! The simulated day's figures, computed from the plan and what the observer recorded:
//! placements, create-to-join latency, waits for capacity, interruptions, node counts,
//! utilization of running capacity, participant-hours per node-hour against a static fleet
//! sized for the peak, and scheduled conferences that found capacity before their start.

use std::time::Instant;

use serde::Serialize;

use super::observe::{Observed, Sample};
use super::plan::Planned;
use crate::bench::stats::Percentiles;

/// The day's results.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DaySummary {
    pub conferences: usize,
    pub scheduled: usize,
    pub ad_hoc: usize,
    /// Conferences that got join info.
    pub placed: usize,
    /// Ad-hoc conferences: create request → join info.
    pub ad_hoc_create_to_join: Percentiles,
    /// Conferences seen Pending for want of capacity, and how long until join info.
    pub waited_pending: usize,
    pub ad_hoc_waited_pending: usize,
    pub pending_wait: Percentiles,
    /// The same for ad-hoc conferences alone.
    pub ad_hoc_pending_wait: Percentiles,
    /// Conferences moved or whose node was deleted while they were live, by scale-down.
    pub interrupted: usize,
    /// The same because their media node failed (its heartbeat went stale).
    pub failed_over: usize,
    pub interruptions: Vec<String>,
    /// Scheduled conferences with join info (a Ready node reserved) by their startTime.
    pub scheduled_ready_before_start: usize,
    pub scheduled_ready_fraction: f64,
    /// Scheduled conferences not ready by their start, by the reason of their Placed
    /// condition as last seen before join info ("none": no status yet).
    pub late_by_reason: std::collections::BTreeMap<String, usize>,
    /// MediaNode appearance → Ready.
    pub node_start: Percentiles,
    /// Running media nodes (pod up: Starting, Ready or Draining).
    pub peak_nodes: u32,
    pub mean_nodes: f64,
    /// Connected participants over running capacity, time-weighted.
    pub mean_utilization: f64,
    /// Reserved participants over running capacity, time-weighted.
    pub mean_reserved_utilization: f64,
    /// Participants at the busiest second.
    pub peak_participants: u32,
    /// Participants beyond their media node's capacity: at the worst second, and as a share
    /// of participant-time.
    pub peak_over_capacity: u32,
    pub over_capacity_share: f64,
    /// Participant-hours per node-hour with autoscaling, and with a fleet of peak_nodes all day.
    pub participant_hours_per_node_hour: f64,
    pub static_fleet_participant_hours_per_node_hour: f64,
}

/// Computes the figures. `start_of` maps a day second to the instant it was played at;
/// `capacity` is participants per media node.
pub fn summarize(
    plan: &[Planned],
    observed: &Observed,
    start_of: impl Fn(f64) -> Instant,
    capacity: u32,
) -> DaySummary {
    let mut s = DaySummary {
        conferences: plan.len(),
        scheduled: plan.iter().filter(|c| c.scheduled).count(),
        ..DaySummary::default()
    };
    s.ad_hoc = s.conferences - s.scheduled;
    let mut create_to_join = Vec::new();
    let mut waits = Vec::new();
    let mut ad_hoc_waits = Vec::new();
    for c in plan {
        let Some(trace) = observed.conferences.get(&c.name) else {
            continue;
        };
        if let Some(joined) = trace.joined {
            s.placed += 1;
            if !c.scheduled
                && let Some(created) = trace.created
            {
                create_to_join.push(joined.saturating_duration_since(created));
            }
            if c.scheduled && joined <= start_of(c.start_at) {
                s.scheduled_ready_before_start += 1;
            }
        }
        if c.scheduled
            && trace
                .joined
                .is_none_or(|joined| joined > start_of(c.start_at))
        {
            let reason = trace.reason_before_join.as_deref().unwrap_or("none");
            *s.late_by_reason.entry(reason.to_owned()).or_default() += 1;
        }
        if let Some(since) = trace.waiting_since {
            s.waited_pending += 1;
            s.ad_hoc_waited_pending += usize::from(!c.scheduled);
            let until = trace.joined.unwrap_or_else(|| start_of(c.end_at));
            waits.push(until.saturating_duration_since(since));
            if !c.scheduled {
                ad_hoc_waits.push(until.saturating_duration_since(since));
            }
        }
        if let Some(i) = &trace.interrupted {
            if i.failover {
                s.failed_over += 1;
            } else {
                s.interrupted += 1;
            }
            if s.interruptions.len() < 20 {
                s.interruptions.push(format!("{}: {}", c.name, i.why));
            }
        }
    }
    s.ad_hoc_create_to_join = Percentiles::of(&create_to_join);
    s.pending_wait = Percentiles::of(&waits);
    s.ad_hoc_pending_wait = Percentiles::of(&ad_hoc_waits);
    s.scheduled_ready_fraction = ratio(s.scheduled_ready_before_start as f64, s.scheduled as f64);
    s.node_start = Percentiles::of(&observed.node_start);
    timeline(&mut s, &observed.samples, capacity);
    s
}

/// Time-weighted figures of the per-second samples.
fn timeline(s: &mut DaySummary, samples: &[Sample], capacity: u32) {
    let (mut participants, mut reserved, mut nodes, mut span) = (0.0, 0.0, 0.0, 0.0);
    let mut over = 0.0;
    for pair in samples.windows(2) {
        let dt = pair[1].t - pair[0].t;
        let x = &pair[0];
        participants += f64::from(x.participants) * dt;
        reserved += f64::from(x.reserved) * dt;
        over += f64::from(x.over_capacity) * dt;
        nodes += f64::from(x.running) * dt;
        span += dt;
    }
    s.peak_nodes = samples.iter().map(|x| x.running).max().unwrap_or(0);
    s.peak_participants = samples.iter().map(|x| x.participants).max().unwrap_or(0);
    s.peak_over_capacity = samples.iter().map(|x| x.over_capacity).max().unwrap_or(0);
    s.over_capacity_share = ratio(over, participants);
    s.mean_nodes = ratio(nodes, span);
    let capacity_time = nodes * f64::from(capacity);
    s.mean_utilization = ratio(participants, capacity_time);
    s.mean_reserved_utilization = ratio(reserved, capacity_time);
    s.participant_hours_per_node_hour = ratio(participants, nodes);
    s.static_fleet_participant_hours_per_node_hour =
        ratio(participants, f64::from(s.peak_nodes) * span);
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::observe::ConferenceTrace;
    use std::time::Duration;

    #[test]
    fn figures_of_a_tiny_day() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let plan = vec![
            Planned {
                name: "a".into(),
                scheduled: false,
                create_at: 0.0,
                start_at: 0.0,
                end_at: 10.0,
                max_participants: 4,
                attendees: 4,
                expected: 4,
            },
            Planned {
                name: "b".into(),
                scheduled: true,
                create_at: 0.0,
                start_at: 5.0,
                end_at: 10.0,
                max_participants: 2,
                attendees: 2,
                expected: 2,
            },
        ];
        let mut observed = Observed::default();
        observed.conferences.insert(
            "a".into(),
            ConferenceTrace {
                created: Some(at(0.0)),
                joined: Some(at(0.02)),
                ..ConferenceTrace::default()
            },
        );
        observed.conferences.insert(
            "b".into(),
            ConferenceTrace {
                created: Some(at(0.0)),
                joined: Some(at(6.0)),
                waiting_since: Some(at(4.0)),
                ..ConferenceTrace::default()
            },
        );
        let sample = |t: f64, running: u32, participants: u32| Sample {
            t,
            running,
            participants,
            ..Sample::default()
        };
        observed.samples = vec![sample(0.0, 1, 4), sample(5.0, 2, 6), sample(10.0, 1, 0)];
        let s = summarize(&plan, &observed, at, 10);
        assert_eq!(
            (s.placed, s.waited_pending, s.ad_hoc_waited_pending),
            (2, 1, 0)
        );
        assert_eq!(s.ad_hoc_create_to_join.p50_ms, 20.0);
        assert_eq!(s.pending_wait.max_ms, 2000.0);
        assert_eq!(s.scheduled_ready_before_start, 0);
        assert_eq!(s.peak_nodes, 2);
        assert_eq!(s.mean_nodes, 1.5);
        // (4×5 + 6×5) participant-seconds over (1×5 + 2×5) node-seconds of 10 each.
        assert!((s.mean_utilization - 50.0 / 150.0).abs() < 1e-9);
        assert!((s.participant_hours_per_node_hour - 50.0 / 15.0).abs() < 1e-9);
        assert!((s.static_fleet_participant_hours_per_node_hour - 50.0 / 20.0).abs() < 1e-9);
    }
}
