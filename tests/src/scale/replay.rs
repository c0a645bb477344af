//! The simulated day replayed on the operator's own decisions, without a cluster: placement
//! and the autoscaler (`conclave_operator::decide`) on a clock of day seconds, nodes that
//! start after a fixed time, participants present from a conference's start to its end. It
//! runs a day in a second, so placement and scaling rules can be compared before a day on the
//! control plane (`day`) measures them; it leaves out what that day shows (the API server's
//! delays, the operator's reaction time, watch lag), so its figures are an upper bound.

use conclave_crds::capacity::Usage;
use conclave_crds::pool::Strategy;
use conclave_crds::{MediaNodePhase, NodeCapacity};
use conclave_operator::decide::autoscale::{self, ScalingInput, ScalingPolicy};
use conclave_operator::decide::placement::{self, Placement, PlacementPolicy, PlacementRequest};
use conclave_operator::decide::reservation::{Reservation, Reservations, Span};
use conclave_operator::decide::{NodeView, UnixSeconds};
use serde::Serialize;

use super::plan::{DAY, Planned};

/// The pool and clock of a replay, in day seconds.
#[derive(Clone, Debug, Serialize)]
pub struct ReplaySettings {
    pub node_participants: u32,
    pub node_rooms: u32,
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub buffer_participants: u32,
    pub warmup_seconds: i64,
    pub scale_down_delay_seconds: i64,
    /// Creation to Ready of a media node.
    pub node_start_seconds: i64,
    /// Conferences reserve expectedParticipants (else maxParticipants).
    pub expected_attendance: bool,
    /// Step of the clock.
    pub tick_seconds: i64,
}

/// What the replayed day gave.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplaySummary {
    pub placed: usize,
    pub scheduled: usize,
    pub scheduled_ready_before_start: usize,
    pub ad_hoc_longest_wait_seconds: i64,
    pub mean_nodes: f64,
    pub peak_nodes: usize,
    /// Connected participants over running capacity, time-weighted.
    pub utilization: f64,
    /// Reservations occupied now over running capacity, time-weighted.
    pub reserved_utilization: f64,
    /// Share of participant-time beyond a node's capacity.
    pub over_capacity_share: f64,
    /// Share of node-time spent draining.
    pub draining_share: f64,
    /// The utilization a pool could reach if meetings moved freely between nodes: at every
    /// moment just enough nodes for the most participants present within the look-ahead
    /// (warm-up plus node start) and the buffer, at least minNodes. No placement or scaling
    /// rule that never moves a live meeting reaches it.
    pub movable_bound: f64,
    /// The day hour by hour, to set beside the control plane's timeline.
    pub hours: Vec<HourFigures>,
}

/// Means over one hour of the replayed day.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HourFigures {
    pub nodes: f64,
    pub draining: f64,
    pub connected: f64,
}

/// Day seconds are offset by this, so no time is near zero.
const EPOCH: UnixSeconds = 1_000_000;

/// Replays `day` and returns its summary.
pub fn replay(day: &[Planned], settings: &ReplaySettings) -> ReplaySummary {
    let mut pool = Pool::new(day, settings);
    let mut sums = Sums::default();
    let mut now = EPOCH;
    while now < at(DAY) {
        pool.start_nodes(now);
        pool.account(now);
        pool.place_due(now);
        pool.scale(now);
        // What the nodes report of the calls just placed, and the nodes just added.
        pool.account(now);
        sums.sample(&pool.nodes, now, settings.tick_seconds);
        now += settings.tick_seconds;
    }
    ReplaySummary {
        movable_bound: movable_bound(day, settings),
        ..sums.summary(settings.node_participants, day, &pool.placed)
    }
}

/// [`ReplaySummary::movable_bound`], on the replay's clock.
fn movable_bound(day: &[Planned], settings: &ReplaySettings) -> f64 {
    let step = settings.tick_seconds as f64;
    let present: Vec<u32> = (0..(DAY / step) as usize)
        .map(|k| super::plan::participants_at(day, k as f64 * step))
        .collect();
    let ahead = ((settings.warmup_seconds + settings.node_start_seconds) as f64 / step) as usize;
    let capacity = f64::from(settings.node_participants);
    let nodes_for = |participants: u32| {
        (f64::from(participants + settings.buffer_participants) / capacity)
            .ceil()
            .max(f64::from(settings.min_nodes))
    };
    let running: f64 = (0..present.len())
        .map(|k| {
            let window = &present[k..(k + ahead + 1).min(present.len())];
            nodes_for(window.iter().copied().max().unwrap_or(0))
        })
        .sum();
    f64::from(present.iter().sum::<u32>()) / (running * capacity)
}

/// A day second on the replay's clock.
fn at(day_second: f64) -> UnixSeconds {
    EPOCH + day_second.round() as i64
}

/// The pool as the operator keeps it: its nodes, where each conference is, the autoscaler's
/// state.
struct Pool<'a> {
    day: &'a [Planned],
    settings: &'a ReplaySettings,
    policy: ScalingPolicy,
    nodes: Vec<NodeView>,
    /// Each conference's node and when it was placed there.
    placed: Vec<Option<(String, UnixSeconds)>>,
    created: u32,
    surplus_since: Option<UnixSeconds>,
    startup_lead: Option<i64>,
}

impl<'a> Pool<'a> {
    fn new(day: &'a [Planned], settings: &'a ReplaySettings) -> Self {
        let policy = ScalingPolicy {
            min_nodes: settings.min_nodes,
            max_nodes: settings.max_nodes,
            buffer_participants: settings.buffer_participants,
            warmup_seconds: settings.warmup_seconds,
            scale_down_delay_seconds: settings.scale_down_delay_seconds,
            drain_timeout_seconds: 86_400,
            node_capacity: NodeCapacity {
                participants: settings.node_participants,
                rooms: settings.node_rooms,
                egress_mbps: 100_000,
            },
        };
        Pool {
            day,
            settings,
            policy,
            nodes: Vec::new(),
            placed: vec![None; day.len()],
            created: 0,
            surplus_since: None,
            startup_lead: None,
        }
    }

    /// What conference `i` reserves: its expectation (or maxParticipants), from its start to
    /// its end if booked, for ever if ad hoc.
    fn reservation(&self, i: usize) -> Reservation {
        let c = &self.day[i];
        let expected = if self.settings.expected_attendance {
            c.expected
        } else {
            c.max_participants
        };
        let span = if c.scheduled {
            Span::of(Some(at(c.start_at)), Some(at(c.end_at)))
        } else {
            Span::ALWAYS
        };
        Reservation::conference(expected, c.max_participants, span)
    }

    /// Created by the application and not yet deleted at its end.
    fn exists(&self, i: usize, now: UnixSeconds) -> bool {
        at(self.day[i].create_at) <= now && now < at(self.day[i].end_at)
    }

    /// Nodes created a node start ago become Ready.
    fn start_nodes(&mut self, now: UnixSeconds) {
        let start = self.settings.node_start_seconds;
        for node in &mut self.nodes {
            if node.phase == MediaNodePhase::Pending && now >= node.created_at + start {
                node.phase = MediaNodePhase::Ready;
                node.startup_seconds = Some(start);
            }
        }
    }

    /// Sets every node's reservations (its conferences not yet deleted), what it reports (the
    /// attendees of those that started) and its heartbeat.
    fn account(&mut self, now: UnixSeconds) {
        for node in &mut self.nodes {
            node.reserved = Reservations::default();
            node.reported = Usage::default();
            node.last_heartbeat = Some(now);
        }
        for i in 0..self.day.len() {
            let Some((name, _)) = &self.placed[i] else {
                continue;
            };
            if !self.exists(i, now) {
                continue;
            }
            let reservation = self.reservation(i);
            let Some(node) = self.nodes.iter_mut().find(|n| &n.name == name) else {
                continue;
            };
            node.reserved.add(reservation);
            if now >= at(self.day[i].start_at) {
                let attendees = Usage::conference(self.day[i].attendees);
                node.reported = node.reported.plus(attendees);
            }
        }
    }

    /// Places the conferences that are due: ad hoc ones when created, booked ones from the
    /// warm-up before their start; those that find no room wait for the next step.
    fn place_due(&mut self, now: UnixSeconds) {
        let policy = PlacementPolicy {
            strategy: Strategy::Packed,
            heartbeat_timeout_seconds: 60,
        };
        for i in 0..self.day.len() {
            let c = &self.day[i];
            let due = if c.scheduled {
                at(c.start_at) - self.settings.warmup_seconds
            } else {
                at(c.create_at)
            };
            if self.placed[i].is_some() || !self.exists(i, now) || now < due {
                continue;
            }
            let request = PlacementRequest {
                reservation: self.reservation(i),
                region: None,
                exclude: Vec::new(),
            };
            if let Placement::Node(name) = placement::place(&request, &self.nodes, policy, now) {
                if let Some(node) = self.nodes.iter_mut().find(|n| n.name == name) {
                    node.reserved.add(request.reservation);
                }
                self.placed[i] = Some((name, now));
            }
        }
    }

    /// Runs the autoscaler and applies its plan.
    fn scale(&mut self, now: UnixSeconds) {
        let waiting: Vec<Reservation> = (0..self.day.len())
            .filter(|&i| self.placed[i].is_none() && self.exists(i, now))
            .map(|i| self.reservation(i))
            .collect();
        self.startup_lead = autoscale::startup_lead(&self.nodes, self.startup_lead);
        let plan = autoscale::plan(&ScalingInput {
            policy: &self.policy,
            nodes: &self.nodes,
            waiting: &waiting,
            surplus_since: self.surplus_since,
            startup_lead: self.startup_lead.unwrap_or(0),
            now,
        });
        self.surplus_since = plan.surplus_since;
        self.nodes.retain(|n| !plan.delete.contains(&n.name));
        for view in &mut self.nodes {
            if plan.reclaim.contains(&view.name) {
                view.draining = false;
                view.draining_since = None;
                view.drained_as_surplus = false;
                view.phase = MediaNodePhase::Ready;
            }
            if plan.drain.contains(&view.name) {
                view.draining = true;
                view.draining_since = Some(now);
                view.drained_as_surplus = true;
                view.phase = MediaNodePhase::Draining;
            }
        }
        for _ in 0..plan.add {
            self.created += 1;
            let name = format!("node-{:04}", self.created);
            self.nodes
                .push(new_node(name, self.policy.node_capacity, now));
        }
    }
}

fn new_node(name: String, capacity: NodeCapacity, now: UnixSeconds) -> NodeView {
    NodeView {
        name,
        created_at: now,
        last_heartbeat: Some(now),
        capacity,
        ..NodeView::default()
    }
}

/// Time-weighted sums over the day.
#[derive(Default)]
struct Sums {
    time: f64,
    node_time: f64,
    draining_time: f64,
    connected: f64,
    reserved: f64,
    over: f64,
    peak_nodes: usize,
    /// Time-weighted sums per hour of the day (`time` the hour's seconds sampled).
    hours: Vec<(f64, HourFigures)>,
}

impl Sums {
    fn sample(&mut self, nodes: &[NodeView], now: UnixSeconds, dt: i64) {
        let dt = dt as f64;
        self.time += dt;
        self.node_time += nodes.len() as f64 * dt;
        self.peak_nodes = self.peak_nodes.max(nodes.len());
        let hour = ((now - EPOCH) / 3600) as usize;
        if self.hours.len() <= hour {
            self.hours.resize(hour + 1, (0.0, HourFigures::default()));
        }
        let (time, h) = &mut self.hours[hour];
        *time += dt;
        h.nodes += nodes.len() as f64 * dt;
        for v in nodes {
            if v.draining {
                self.draining_time += dt;
                h.draining += dt;
            }
            let connected = f64::from(v.reported.participants);
            self.connected += connected * dt;
            h.connected += connected * dt;
            self.reserved += f64::from(v.reserved.at(now).participants) * dt;
            self.over += (connected - f64::from(v.capacity.participants)).max(0.0) * dt;
        }
    }

    fn summary(
        &self,
        node_participants: u32,
        day: &[Planned],
        placed: &[Option<(String, UnixSeconds)>],
    ) -> ReplaySummary {
        let capacity_time = self.node_time * f64::from(node_participants);
        let mut out = ReplaySummary {
            mean_nodes: self.node_time / self.time,
            peak_nodes: self.peak_nodes,
            utilization: self.connected / capacity_time,
            reserved_utilization: self.reserved / capacity_time,
            over_capacity_share: self.over / self.connected.max(1.0),
            draining_share: self.draining_time / self.node_time.max(1.0),
            hours: self
                .hours
                .iter()
                .map(|(time, sums)| HourFigures {
                    nodes: sums.nodes / time,
                    draining: sums.draining / time,
                    connected: sums.connected / time,
                })
                .collect(),
            scheduled: day.iter().filter(|c| c.scheduled).count(),
            ..ReplaySummary::default()
        };
        for (c, placed) in day.iter().zip(placed) {
            let Some((_, when)) = placed else { continue };
            out.placed += 1;
            if !c.scheduled {
                let wait = when - at(c.create_at);
                out.ad_hoc_longest_wait_seconds = out.ad_hoc_longest_wait_seconds.max(wait);
            } else if *when <= at(c.start_at) {
                out.scheduled_ready_before_start += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: f64 = 3600.0;

    fn settings() -> ReplaySettings {
        ReplaySettings {
            node_participants: 100,
            node_rooms: 25,
            min_nodes: 1,
            max_nodes: 10,
            buffer_participants: 0,
            warmup_seconds: 600,
            scale_down_delay_seconds: 600,
            node_start_seconds: 60,
            expected_attendance: true,
            tick_seconds: 10,
        }
    }

    fn conference(scheduled: bool, create: f64, start: f64, end: f64, size: u32) -> Planned {
        Planned {
            name: format!("c-{start}"),
            scheduled,
            create_at: create,
            start_at: start,
            end_at: end,
            max_participants: size,
            attendees: size,
            expected: size,
        }
    }

    #[test]
    fn a_booking_is_placed_in_its_warm_up_and_counts_while_it_runs() {
        let day = [conference(true, 0.0, 10.0 * HOUR, 11.0 * HOUR, 40)];
        let out = replay(&day, &settings());
        assert_eq!((out.placed, out.scheduled_ready_before_start), (1, 1));
        // One node all day (minNodes 1), 40 of its 100 places taken for an hour of 24.
        assert_eq!((out.peak_nodes, out.mean_nodes), (1, 1.0));
        assert!((out.utilization - 40.0 / 100.0 / 24.0).abs() < 1e-3);
        // Movable or not, one node is all this day needs.
        assert!((out.movable_bound - out.utilization).abs() < 1e-3);
    }

    #[test]
    fn a_call_that_fits_no_node_waits_for_one_to_start() {
        let day = [
            conference(false, 500.0, 500.0, HOUR, 50),
            conference(false, 1000.0, 1000.0, HOUR, 60),
        ];
        let out = replay(&day, &settings());
        assert_eq!(out.placed, 2);
        assert_eq!(out.peak_nodes, 2);
        // The second call waited for a node start (60 s), to the clock's step.
        assert!((60..=70).contains(&out.ad_hoc_longest_wait_seconds));
    }

    #[test]
    fn nodes_go_once_their_meetings_ended_and_the_delay_passed() {
        // Two nodes' worth of meetings from 9:00 to 9:30.
        let day: Vec<Planned> = (0..8)
            .map(|_| conference(true, 0.0, 9.0 * HOUR, 9.5 * HOUR, 25))
            .collect();
        let out = replay(&day, &settings());
        assert_eq!((out.placed, out.scheduled_ready_before_start), (8, 8));
        assert_eq!(out.peak_nodes, 2);
        // The second node from a node start before the warm-up (8:49) to the end plus the
        // scale-down delay (9:40), to the clock's step.
        let second = (9.5 * HOUR + 600.0 - (9.0 * HOUR - 600.0 - 60.0)) / DAY;
        assert!(
            (out.mean_nodes - (1.0 + second)).abs() < 0.001,
            "{}",
            out.mean_nodes
        );
    }
}
