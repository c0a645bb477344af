//! A conference's next step, from its spec and status, the node holding its reservation and
//! the time: end it, place it, move it off a lost or draining node, advance its phase, or
//! leave it. The controller gathers these facts, calls [`step`] and applies the one step;
//! where a conference goes is `placement`'s decision, made when the step is applied.

use conclave_crds::ConferencePhase::{self, *};

use super::UnixSeconds;
use super::liveness::{Liveness, Loss, loss};

/// What the conference controller knows of a conference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConferenceFacts<'a> {
    /// Being deleted.
    pub deleting: bool,
    /// `status.phase` (Pending when unset).
    pub phase: ConferencePhase,
    /// `spec.startTime`.
    pub start_time: Option<UnixSeconds>,
    /// `spec.endTime`.
    pub end_time: Option<UnixSeconds>,
    /// `spec.ttlSeconds`.
    pub ttl_seconds: Option<u32>,
    /// `status.activeSince`.
    pub active_since: Option<UnixSeconds>,
    /// `status.placedAt`.
    pub placed_at: Option<UnixSeconds>,
    /// `status.mediaNode`.
    pub recorded_node: Option<&'a str>,
    /// A pool the conference may be placed in exists.
    pub pool_found: bool,
    /// Warm-up of the pool that brings up capacity for it, seconds.
    pub warmup_seconds: i64,
}

/// The node holding the conference's reservation, as the conference controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its liveness; `None` when the MediaNode is gone.
    pub node: Option<HostNode>,
}

/// A hosting node that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostNode {
    /// Phase and heartbeat.
    pub liveness: Liveness,
    /// `spec.draining`.
    pub draining: bool,
    /// When it last heartbeated.
    pub last_heartbeat: Option<UnixSeconds>,
}

/// Why a conference ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `spec.endTime` passed.
    EndTimeReached,
    /// `spec.ttlSeconds` since it became Active passed.
    TtlExpired,
}

impl EndReason {
    /// The reason as conditions and Events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::EndTimeReached => "EndTimeReached",
            EndReason::TtlExpired => "TtlExpired",
        }
    }
}

/// Why a conference moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveReason {
    /// Its node was lost.
    Failover(Loss),
    /// Its node is draining.
    Evacuation,
}

impl MoveReason {
    /// The reason as conditions, Events and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveReason::Failover(_) => "Failover",
            MoveReason::Evacuation => "Evacuation",
        }
    }

    /// For people: why it moves.
    pub fn message(self) -> &'static str {
        match self {
            MoveReason::Failover(loss) => loss.message(),
            MoveReason::Evacuation => "its media node is draining",
        }
    }
}

/// The one thing to do for a conference now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Being deleted: release its reservation and finalizer.
    Release,
    /// Ended or Failed before: release its reservation, if any, and nothing more.
    Forget,
    /// Its time is up: end it, close its room.
    End(EndReason),
    /// No pool it may be placed in exists.
    NoPool,
    /// Scheduled, and not due for placement before `until` (its start minus the warm-up).
    NotYetDue {
        /// When it becomes due.
        until: UnixSeconds,
    },
    /// Place it for the first time, in `phase` (Active, or Scheduled before its start).
    Place {
        /// The phase once placed.
        phase: ConferencePhase,
    },
    /// The ledger holds a placement or move that the watch cache does not show yet: acting
    /// on the older status would undo it, so look again shortly.
    AwaitCache,
    /// Move it off `from`.
    Move {
        /// The node it leaves.
        from: String,
        /// Why.
        why: MoveReason,
    },
    /// Leave it on its node, in `phase` (advanced from the current one when it is due), and
    /// look again after `recheck` seconds (never for `None`).
    Stay {
        /// The phase to publish.
        phase: ConferencePhase,
        /// Seconds until time alone changes the step.
        recheck: Option<i64>,
    },
}

/// Whether a conference going from phase `from` to `to` gets an Event. The end of a move
/// (Migrating to Active or Scheduled) does; a booked meeting starting (Scheduled to Active)
/// is routine, hundreds at once on the hour, and its phase says it, as a first placement's
/// Placed condition does.
pub fn phase_event(from: Option<ConferencePhase>, to: ConferencePhase) -> bool {
    from != Some(to) && !(from == Some(Scheduled) && to == Active)
}

/// The next step for conference `c`, hosted by `host` (the node holding its reservation), at
/// `now`.
pub fn step(c: &ConferenceFacts<'_>, host: Option<&Host<'_>>, now: UnixSeconds) -> Step {
    if c.deleting {
        return Step::Release;
    }
    if matches!(c.phase, Ended | Failed) {
        return Step::Forget;
    }
    if let Some(reason) = end_reason(c, now) {
        return Step::End(reason);
    }
    if !c.pool_found {
        return Step::NoPool;
    }
    let Some(host) = host else {
        let due = c.start_time.map(|start| start - c.warmup_seconds);
        return match due {
            Some(until) if until > now => Step::NotYetDue { until },
            _ => Step::Place {
                phase: if start_passed(c, now) {
                    Active
                } else {
                    Scheduled
                },
            },
        };
    };
    if c.recorded_node != Some(host.name) {
        return Step::AwaitCache;
    }
    let liveness = host.node.as_ref().map(|n| &n.liveness);
    if let Some(lost) = loss(liveness) {
        return Step::Move {
            from: host.name.to_owned(),
            why: MoveReason::Failover(lost),
        };
    }
    if host.node.is_some_and(|n| n.draining) {
        return Step::Move {
            from: host.name.to_owned(),
            why: MoveReason::Evacuation,
        };
    }
    let arrived = host.node.is_some_and(|n| arrived(&n, c.placed_at));
    let phase = match c.phase {
        Scheduled if start_passed(c, now) => Active,
        Migrating if arrived && start_passed(c, now) => Active,
        Migrating if arrived => Scheduled,
        p => p,
    };
    let recheck = if phase == Migrating {
        Some(1)
    } else {
        next_deadline(c, phase, now)
    };
    Step::Stay { phase, recheck }
}

/// Why the conference is over at `now`, if it is: its end time, or its ttl since it became
/// Active.
fn end_reason(c: &ConferenceFacts<'_>, now: UnixSeconds) -> Option<EndReason> {
    if c.end_time.is_some_and(|end| end <= now) {
        return Some(EndReason::EndTimeReached);
    }
    let ttl = i64::from(c.ttl_seconds?);
    (c.active_since? + ttl <= now).then_some(EndReason::TtlExpired)
}

fn start_passed(c: &ConferenceFacts<'_>, now: UnixSeconds) -> bool {
    c.start_time.is_none_or(|start| start <= now)
}

/// The node it moved to has heartbeated since the move (so it has seen the conference) and
/// is Ready.
fn arrived(node: &HostNode, placed_at: Option<UnixSeconds>) -> bool {
    node.liveness.phase == conclave_crds::MediaNodePhase::Ready
        && node.last_heartbeat.unwrap_or(0) >= placed_at.unwrap_or(0)
}

/// Seconds until its start, end or ttl changes the step (at least 1), for a conference that
/// will be in `phase`.
fn next_deadline(c: &ConferenceFacts<'_>, phase: ConferencePhase, now: UnixSeconds) -> Option<i64> {
    let start = c.start_time.filter(|s| *s > now);
    let active_since = c.active_since.or_else(|| (phase == Active).then_some(now));
    let ttl = c
        .ttl_seconds
        .zip(active_since)
        .map(|(ttl, since)| since + i64::from(ttl));
    [start, c.end_time, ttl]
        .into_iter()
        .flatten()
        .map(|d| (d - now).max(1))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::MediaNodePhase;

    const NOW: UnixSeconds = 1_000_000;

    /// An Active conference on `n1`, placed an hour ago, no times.
    fn active() -> ConferenceFacts<'static> {
        ConferenceFacts {
            deleting: false,
            phase: Active,
            start_time: None,
            end_time: None,
            ttl_seconds: None,
            active_since: Some(NOW - 3600),
            placed_at: Some(NOW - 3600),
            recorded_node: Some("n1"),
            pool_found: true,
            warmup_seconds: 300,
        }
    }

    /// A conference not placed yet.
    fn pending() -> ConferenceFacts<'static> {
        ConferenceFacts {
            phase: Pending,
            active_since: None,
            placed_at: None,
            recorded_node: None,
            ..active()
        }
    }

    /// `n1`, Ready, heartbeating 2 s ago.
    fn ready() -> HostNode {
        HostNode {
            liveness: Liveness {
                phase: MediaNodePhase::Ready,
                heartbeat_age: Some(2),
                heartbeat_timeout: 15,
                pool_stalled: false,
            },
            draining: false,
            last_heartbeat: Some(NOW - 2),
        }
    }

    fn on(node: Option<HostNode>) -> Option<Host<'static>> {
        Some(Host { name: "n1", node })
    }

    fn stay(phase: ConferencePhase, recheck: Option<i64>) -> Step {
        Step::Stay { phase, recheck }
    }

    fn moving(why: MoveReason) -> Step {
        Step::Move {
            from: "n1".into(),
            why,
        }
    }

    fn check(cases: Vec<(&str, ConferenceFacts<'static>, Option<Host<'static>>, Step)>) {
        for (what, facts, host, want) in cases {
            assert_eq!(step(&facts, host.as_ref(), NOW), want, "{what}");
        }
    }

    #[test]
    fn lifetime_ends() {
        check(vec![
            (
                "deleted: release first, whatever else",
                ConferenceFacts {
                    deleting: true,
                    end_time: Some(NOW - 1),
                    ..active()
                },
                on(Some(ready())),
                Step::Release,
            ),
            (
                "ended before: forget",
                ConferenceFacts {
                    phase: Ended,
                    ..active()
                },
                None,
                Step::Forget,
            ),
            (
                "failed before: forget",
                ConferenceFacts {
                    phase: Failed,
                    ..pending()
                },
                None,
                Step::Forget,
            ),
            (
                "end time reached",
                ConferenceFacts {
                    end_time: Some(NOW),
                    ..active()
                },
                on(Some(ready())),
                Step::End(EndReason::EndTimeReached),
            ),
            (
                "ttl since Active passed",
                ConferenceFacts {
                    ttl_seconds: Some(3600),
                    ..active()
                },
                on(Some(ready())),
                Step::End(EndReason::TtlExpired),
            ),
            (
                "an unplaced one ends at its end time too",
                ConferenceFacts {
                    end_time: Some(NOW - 5),
                    ..pending()
                },
                None,
                Step::End(EndReason::EndTimeReached),
            ),
        ]);
    }

    #[test]
    fn a_booked_meeting_starting_gets_no_event_the_end_of_a_move_does() {
        assert!(!phase_event(Some(Scheduled), Active));
        assert!(!phase_event(Some(Active), Active));
        assert!(phase_event(Some(Migrating), Active));
        assert!(phase_event(Some(Migrating), Scheduled));
    }

    #[test]
    fn placement_waits_for_a_pool_and_the_warm_up() {
        check(vec![
            (
                "no pool",
                ConferenceFacts {
                    pool_found: false,
                    ..pending()
                },
                None,
                Step::NoPool,
            ),
            (
                "ad hoc: place Active",
                pending(),
                None,
                Step::Place { phase: Active },
            ),
            (
                "scheduled beyond the warm-up: not yet",
                ConferenceFacts {
                    start_time: Some(NOW + 301),
                    ..pending()
                },
                None,
                Step::NotYetDue { until: NOW + 1 },
            ),
            (
                "scheduled within the warm-up: place Scheduled",
                ConferenceFacts {
                    start_time: Some(NOW + 300),
                    ..pending()
                },
                None,
                Step::Place { phase: Scheduled },
            ),
            (
                "scheduled in the past: place Active",
                ConferenceFacts {
                    start_time: Some(NOW - 10),
                    ..pending()
                },
                None,
                Step::Place { phase: Active },
            ),
        ]);
    }

    #[test]
    fn a_hosted_conference_moves_off_lost_or_draining_nodes() {
        let with = |f: fn(&mut HostNode)| {
            let mut n = ready();
            f(&mut n);
            on(Some(n))
        };
        check(vec![
            (
                "its node is gone",
                active(),
                on(None),
                moving(MoveReason::Failover(Loss::Gone)),
            ),
            (
                "its node failed",
                active(),
                with(|n| n.liveness.phase = MediaNodePhase::Failed),
                moving(MoveReason::Failover(Loss::Failed)),
            ),
            (
                "its node went silent",
                active(),
                with(|n| n.liveness.heartbeat_age = Some(16)),
                moving(MoveReason::Failover(Loss::HeartbeatLost)),
            ),
            (
                "its whole pool went silent: stay",
                active(),
                with(|n| {
                    n.liveness.heartbeat_age = Some(16);
                    n.liveness.pool_stalled = true;
                }),
                stay(Active, None),
            ),
            (
                "its node drains",
                active(),
                with(|n| n.draining = true),
                moving(MoveReason::Evacuation),
            ),
            (
                "a lost draining node is a failover",
                active(),
                with(|n| {
                    n.draining = true;
                    n.liveness.phase = MediaNodePhase::Failed;
                }),
                moving(MoveReason::Failover(Loss::Failed)),
            ),
            (
                "the cache does not show the ledger's node yet",
                ConferenceFacts {
                    recorded_node: Some("n0"),
                    ..active()
                },
                on(Some(ready())),
                Step::AwaitCache,
            ),
        ]);
    }

    #[test]
    fn phases_advance_when_due() {
        let arrived_at = |placed_at| ConferenceFacts {
            phase: Migrating,
            placed_at: Some(placed_at),
            ..active()
        };
        check(vec![
            (
                "Active stays Active",
                active(),
                on(Some(ready())),
                stay(Active, None),
            ),
            (
                "Scheduled becomes Active at its start, with its ttl to come",
                ConferenceFacts {
                    phase: Scheduled,
                    start_time: Some(NOW),
                    active_since: None,
                    ttl_seconds: Some(600),
                    ..active()
                },
                on(Some(ready())),
                stay(Active, Some(600)),
            ),
            (
                "Scheduled before its start: look again then",
                ConferenceFacts {
                    phase: Scheduled,
                    start_time: Some(NOW + 120),
                    active_since: None,
                    ..active()
                },
                on(Some(ready())),
                stay(Scheduled, Some(120)),
            ),
            (
                "Migrating until the new node heartbeats after the move",
                arrived_at(NOW),
                on(Some(ready())),
                stay(Migrating, Some(1)),
            ),
            (
                "Migrating, arrived: Active",
                arrived_at(NOW - 5),
                on(Some(ready())),
                stay(Active, None),
            ),
            (
                "Migrating before its start, arrived: Scheduled again",
                ConferenceFacts {
                    start_time: Some(NOW + 60),
                    ..arrived_at(NOW - 5)
                },
                on(Some(ready())),
                stay(Scheduled, Some(60)),
            ),
            (
                "Active with an end time: look again then",
                ConferenceFacts {
                    end_time: Some(NOW + 90),
                    ..active()
                },
                on(Some(ready())),
                stay(Active, Some(90)),
            ),
        ]);
    }
}
