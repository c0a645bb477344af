//! What the node controller publishes about one media node, once it gathered the facts and
//! `lifecycle` gave the phase: whether its pod is to be created, its Healthy,
//! AddressReachable and Draining conditions with the words an operator reads, and when to
//! look at it again. The controller applies the step (`controllers::node`).

use conclave_crds::MediaNodePhase;
use conclave_crds::labels::condition;
use k8s_openapi::jiff::Timestamp;

use super::UnixSeconds;
use super::lifecycle::NodeVerdict;
use super::reachability::{self, AddressOrigin, ProbeTarget, Reachability};

/// Whether the controller creates the node's pod: none yet, not past Pending, not draining,
/// and a pool spec that can run.
pub fn should_create_pod(
    phase: Option<MediaNodePhase>,
    has_pod: bool,
    draining: bool,
    spec_runs: bool,
) -> bool {
    !has_pod && matches!(phase, None | Some(MediaNodePhase::Pending)) && !draining && spec_runs
}

/// `status.startupSeconds` of a node going from phase `was` to `now_in`: kept once known;
/// measured from its creation when it first becomes Ready (from Pending or Starting, not a
/// drain taken back); unknown otherwise.
pub fn startup_seconds(
    known: Option<u32>,
    was: Option<MediaNodePhase>,
    now_in: MediaNodePhase,
    created: Option<UnixSeconds>,
    now: UnixSeconds,
) -> Option<u32> {
    let starting = matches!(
        was,
        None | Some(MediaNodePhase::Pending | MediaNodePhase::Starting)
    );
    known.or_else(|| {
        let created = created.filter(|_| starting && now_in == MediaNodePhase::Ready)?;
        u32::try_from(now.saturating_sub(created).max(0)).ok()
    })
}

/// A draining node's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainProgress {
    /// Conferences still reserved on it.
    pub rooms: u32,
    /// When the pod is removed at the latest (start of the drain plus `drainTimeoutSeconds`).
    pub deadline: UnixSeconds,
    /// Conferences moved off per minute (`evacuationRate`; 0: none).
    pub evacuation_rate: u32,
}

/// What the controller gathered about one media node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    /// The phase `lifecycle` gave, and why.
    pub verdict: NodeVerdict,
    /// Every node of the pool went silent at once (a stalled control plane, not dead nodes).
    pub pool_stalled: bool,
    /// Seconds since its last heartbeat, if one was seen.
    pub heartbeat_age: Option<i64>,
    /// `heartbeatTimeoutSeconds` of its pool.
    pub heartbeat_timeout: i64,
    /// What is known of its published address, and where it was probed.
    pub reachability: Reachability,
    pub probe_target: Option<ProbeTarget>,
    /// Where its published address comes from, for the words of its condition.
    pub address_origin: AddressOrigin,
    /// Set while it drains.
    pub draining: Option<DrainProgress>,
}

/// One condition to set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionIntent {
    /// Its type.
    pub type_: &'static str,
    /// Its status.
    pub ok: bool,
    /// A CamelCase reason.
    pub reason: &'static str,
    /// What an operator reads.
    pub message: String,
}

/// What to publish and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStep {
    /// Conditions to set, in order.
    pub conditions: Vec<ConditionIntent>,
    /// Seconds until the next look: when the heartbeat would go stale (a silent node is failed
    /// in time), sooner while its address does not answer.
    pub recheck_seconds: u64,
    /// The node is gone for good: its disruption budget no longer needs keeping.
    pub release_budget: bool,
}

/// The step for a node with these facts.
pub fn node_step(f: &NodeFacts) -> NodeStep {
    let phase = f.verdict.phase;
    let healthy =
        matches!(phase, MediaNodePhase::Ready | MediaNodePhase::Draining) && !f.pool_stalled;
    let mut conditions = vec![ConditionIntent {
        type_: condition::HEALTHY,
        ok: healthy,
        reason: f.verdict.reason,
        message: health_message(f.verdict.reason, f.heartbeat_age, f.heartbeat_timeout),
    }];
    if let Some((ok, reason, message)) =
        reachability::condition(f.reachability, f.probe_target, &f.address_origin)
    {
        conditions.push(ConditionIntent {
            type_: condition::ADDRESS_REACHABLE,
            ok,
            reason,
            message,
        });
    }
    if let Some(d) = f.draining {
        conditions.push(ConditionIntent {
            type_: condition::DRAINING,
            ok: true,
            reason: "Draining",
            message: drain_message(d),
        });
    }
    let recheck = f
        .heartbeat_age
        .map_or(10, |age| (f.heartbeat_timeout - age + 1).clamp(1, 30));
    let recheck = if matches!(f.reachability, Reachability::Unreachable(_)) {
        recheck.min(reachability::REPROBE_UNANSWERED_SECONDS)
    } else {
        recheck
    };
    NodeStep {
        conditions,
        recheck_seconds: recheck.max(1) as u64,
        release_budget: matches!(phase, MediaNodePhase::Drained | MediaNodePhase::Failed),
    }
}

/// The Healthy condition's message for `reason`.
pub fn health_message(reason: &str, age: Option<i64>, timeout: i64) -> String {
    match reason {
        "HeartbeatStale" => format!(
            "no heartbeat for {}s (timeout {timeout}s)",
            age.unwrap_or(0)
        ),
        "HeartbeatsStalled" => format!(
            "no heartbeat for {}s (timeout {timeout}s), like most of its pool: treated as a control-plane problem, so the node is not failed and its conferences stay; see the pool's Heartbeats condition",
            age.unwrap_or(0)
        ),
        "PodGone" => "the media-node pod disappeared after starting; a replacement node is created"
            .to_owned(),
        "PodFailed" => "the media-node pod ended".to_owned(),
        "Ready" => "the media node runs, heartbeats, and its public address answers".to_owned(),
        "AddressUnverified" => {
            "waiting for the public address to answer the operator's probe".to_owned()
        }
        "AddressUnreachable" => {
            "the public address does not answer; see the AddressReachable condition".to_owned()
        }
        other => other.to_owned(),
    }
}

fn drain_message(d: DrainProgress) -> String {
    let deadline = Timestamp::from_second(d.deadline).unwrap_or(Timestamp::UNIX_EPOCH);
    if d.rooms == 0 {
        "no conferences left; the pod is being removed".to_owned()
    } else if d.evacuation_rate == 0 {
        format!(
            "{} conferences left; evacuation is off (evacuationRate 0), waiting for them to end until {deadline}",
            d.rooms
        )
    } else {
        format!(
            "{} conferences left, moving at {} per minute where other nodes have room; the pod is removed at {deadline} at the latest",
            d.rooms, d.evacuation_rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::reachability::Unanswered;

    fn facts(phase: MediaNodePhase, reason: &'static str) -> NodeFacts {
        NodeFacts {
            verdict: NodeVerdict { phase, reason },
            pool_stalled: false,
            heartbeat_age: Some(3),
            heartbeat_timeout: 15,
            reachability: Reachability::Reachable,
            probe_target: Some(ProbeTarget {
                udp: "192.0.2.7:50000".parse().unwrap(),
                tcp: None,
            }),
            address_origin: AddressOrigin::KubeNode(Some("worker-1".into())),
            draining: None,
        }
    }

    fn condition<'a>(step: &'a NodeStep, type_: &str) -> Option<&'a ConditionIntent> {
        step.conditions.iter().find(|c| c.type_ == type_)
    }

    #[test]
    fn the_startup_is_measured_once_when_a_new_node_first_becomes_ready() {
        use MediaNodePhase::*;
        let created = Some(1000);
        // (known, was, now in, created, want)
        let cases = [
            (None, Some(Starting), Ready, created, Some(42)),
            (None, Some(Pending), Ready, created, Some(42)),
            (None, None, Ready, created, Some(42)),
            (None, Some(Starting), Starting, created, None),
            // A drain taken back, or a node that was Ready before the operator measured
            // starts: its age is not a start.
            (None, Some(Draining), Ready, created, None),
            (None, Some(Ready), Ready, created, None),
            (None, Some(Starting), Ready, None, None),
            (Some(7), Some(Ready), Draining, created, Some(7)),
            (Some(7), Some(Starting), Ready, created, Some(7)),
        ];
        for (known, was, now_in, created, want) in cases {
            assert_eq!(
                startup_seconds(known, was, now_in, created, 1042),
                want,
                "{known:?} {was:?} -> {now_in:?}"
            );
        }
    }

    #[test]
    fn a_pod_is_created_only_for_a_new_node_that_can_run() {
        use MediaNodePhase::*;
        let cases = [
            (None, false, false, true, true),
            (Some(Pending), false, false, true, true),
            (Some(Pending), true, false, true, false),
            (Some(Starting), false, false, true, false),
            (Some(Pending), false, true, true, false),
            (Some(Pending), false, false, false, false),
            (Some(Failed), false, false, true, false),
        ];
        for (phase, has_pod, draining, runs, want) in cases {
            assert_eq!(
                should_create_pod(phase, has_pod, draining, runs),
                want,
                "{phase:?} {has_pod} {draining} {runs}"
            );
        }
    }

    #[test]
    fn healthy_follows_the_phase_unless_the_pool_stalled() {
        use MediaNodePhase::*;
        for (phase, reason, stalled, want) in [
            (Ready, "Ready", false, true),
            (Draining, "Draining", false, true),
            (Ready, "HeartbeatsStalled", true, false),
            (Starting, "PodNotReady", false, false),
            (Failed, "HeartbeatStale", false, false),
        ] {
            let mut f = facts(phase, reason);
            f.pool_stalled = stalled;
            let step = node_step(&f);
            let healthy = condition(&step, condition::HEALTHY).unwrap();
            assert_eq!(healthy.ok, want, "{phase:?} {reason}");
            assert_eq!(healthy.reason, reason);
        }
        let stale = node_step(&NodeFacts {
            heartbeat_age: Some(40),
            ..facts(Failed, "HeartbeatStale")
        });
        assert_eq!(
            condition(&stale, condition::HEALTHY).unwrap().message,
            "no heartbeat for 40s (timeout 15s)"
        );
        assert!(stale.release_budget);
    }

    #[test]
    fn the_next_look_comes_when_the_heartbeat_would_go_stale_or_soon_when_unanswered() {
        let at = |age: Option<i64>, r: Reachability| {
            node_step(&NodeFacts {
                heartbeat_age: age,
                reachability: r,
                ..facts(MediaNodePhase::Ready, "Ready")
            })
            .recheck_seconds
        };
        assert_eq!(at(Some(3), Reachability::Reachable), 13);
        assert_eq!(at(Some(40), Reachability::Reachable), 1);
        assert_eq!(at(None, Reachability::Reachable), 10);
        assert_eq!(at(Some(-100), Reachability::Reachable), 30);
        let unanswered = at(Some(3), Reachability::Unreachable(Unanswered::Udp));
        assert_eq!(
            unanswered,
            13.min(reachability::REPROBE_UNANSWERED_SECONDS) as u64
        );
    }

    #[test]
    fn a_draining_node_says_what_is_left_and_until_when() {
        let drain = |rooms, rate| {
            let f = NodeFacts {
                draining: Some(DrainProgress {
                    rooms,
                    deadline: 1_800_000_000,
                    evacuation_rate: rate,
                }),
                ..facts(MediaNodePhase::Draining, "Draining")
            };
            condition(&node_step(&f), condition::DRAINING)
                .unwrap()
                .message
                .clone()
        };
        assert_eq!(drain(0, 5), "no conferences left; the pod is being removed");
        assert_eq!(
            drain(3, 0),
            "3 conferences left; evacuation is off (evacuationRate 0), waiting for them to end until 2027-01-15T08:00:00Z"
        );
        assert_eq!(
            drain(2, 4),
            "2 conferences left, moving at 4 per minute where other nodes have room; the pod is removed at 2027-01-15T08:00:00Z at the latest"
        );
        assert!(
            condition(
                &node_step(&facts(MediaNodePhase::Ready, "Ready")),
                condition::DRAINING
            )
            .is_none()
        );
    }

    #[test]
    fn an_unanswered_address_is_said_and_an_unprobed_one_is_not() {
        let step = node_step(&NodeFacts {
            reachability: Reachability::Unreachable(Unanswered::Udp),
            ..facts(MediaNodePhase::Starting, "AddressUnreachable")
        });
        let c = condition(&step, condition::ADDRESS_REACHABLE).unwrap();
        assert!(!c.ok);
        assert_eq!(c.reason, "ProbeUnanswered");
        assert!(c.message.contains("worker-1"), "{}", c.message);
        let unknown = node_step(&NodeFacts {
            reachability: Reachability::Unknown,
            ..facts(MediaNodePhase::Starting, "PodNotReady")
        });
        assert!(condition(&unknown, condition::ADDRESS_REACHABLE).is_none());
    }
}
