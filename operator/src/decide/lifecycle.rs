//! A media node's phase from what is observed of its pod, its heartbeat and its load:
//! Pending → Starting → Ready → Draining → Drained (Draining → Ready when a drain is taken
//! back before the node drained), or Failed when the pod fails or goes
//! away after starting, or the heartbeat of a node that heartbeated goes stale (`liveness`,
//! the rule the conference controller moves conferences by).

use conclave_crds::MediaNodePhase::{self, *};

use super::liveness::{Liveness, heartbeat_lost};
use super::reachability::Reachability;

/// What the node controller observed of one media node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeObservation {
    /// Phase currently in status (None before the first reconcile).
    pub current: Option<MediaNodePhase>,
    /// `spec.draining`.
    pub draining: bool,
    /// The pod, if it exists.
    pub pod: Option<PodObservation>,
    /// Whether a public address could be determined.
    pub has_address: bool,
    /// Whether that address and the node's UDP port answered the operator's probe.
    pub reachability: Reachability,
    /// Seconds since the last heartbeat, if there was one.
    pub heartbeat_age: Option<i64>,
    /// The pool's heartbeat timeout, seconds.
    pub heartbeat_timeout: i64,
    /// Whether conferences are reserved on the node or it reports participants or rooms.
    pub hosting: bool,
    /// Whether conferences are reserved on the node (placed here by the operator).
    pub reserved: bool,
    /// Whether most of the pool's heartbeats stalled together (`super::stall`): a stale
    /// heartbeat then does not fail the node.
    pub pool_stalled: bool,
}

/// What the node controller observed of a media node's pod.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodObservation {
    /// Bound to a Kubernetes Node.
    pub scheduled: bool,
    /// Its Ready condition is True.
    pub ready: bool,
    /// Phase Failed or Succeeded: its process will not come back.
    pub ended: bool,
}

/// The phase and a machine-readable reason for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeVerdict {
    /// The phase to publish.
    pub phase: MediaNodePhase,
    /// Why (for the Healthy condition and the Event).
    pub reason: &'static str,
}

/// Decides the phase of a media node.
pub fn node_phase(o: &NodeObservation) -> NodeVerdict {
    let current = o.current.unwrap_or(Pending);
    let verdict = |phase, reason| NodeVerdict { phase, reason };
    let wanted = if matches!(current, Failed | Drained) {
        verdict(
            current,
            if current == Failed {
                "Failed"
            } else {
                "Drained"
            },
        )
    } else {
        observe(o, current)
    };
    match (current, wanted.phase) {
        // Ready is reached through Starting; the status change triggers the next step.
        (Pending, Ready) => verdict(Starting, "PodNotReady"),
        (c, w) if c.may_become(w) => wanted,
        _ => verdict(current, "TransitionRefused"),
    }
}

fn observe(o: &NodeObservation, current: MediaNodePhase) -> NodeVerdict {
    let verdict = |phase, reason| NodeVerdict { phase, reason };
    let stale = o.heartbeat_age.is_some_and(|age| age > o.heartbeat_timeout);
    let fresh = o
        .heartbeat_age
        .is_some_and(|age| age <= o.heartbeat_timeout);
    let started = matches!(current, Starting | Ready | Draining);
    // A draining node with nothing placed on it that stopped (its process exits once drained,
    // so the load it last reported is stale) is drained, not failed.
    let stopped = o.pod.is_none_or(|p| p.ended) || (stale && started);
    if o.draining && !o.reserved && stopped {
        return verdict(Drained, "Drained");
    }
    let Some(pod) = o.pod else {
        return match (o.draining && !o.hosting, started) {
            (true, _) => verdict(Drained, "Drained"),
            (false, true) => verdict(Failed, "PodGone"),
            (false, false) => verdict(Pending, "PodNotCreated"),
        };
    };
    if pod.ended {
        return verdict(Failed, "PodFailed");
    }
    let liveness = Liveness {
        phase: current,
        heartbeat_age: o.heartbeat_age,
        heartbeat_timeout: o.heartbeat_timeout,
        pool_stalled: o.pool_stalled,
    };
    if heartbeat_lost(&liveness) {
        return verdict(Failed, "HeartbeatStale");
    }
    if stale && matches!(current, Ready | Draining) {
        // Silent like most of its pool: kept (see `liveness`).
        return verdict(current, "HeartbeatsStalled");
    }
    if o.draining {
        return if o.hosting {
            verdict(Draining, "Draining")
        } else {
            verdict(Drained, "Drained")
        };
    }
    match (pod.scheduled, pod.ready && o.has_address && fresh) {
        (false, _) => verdict(Pending, "PodNotScheduled"),
        // A Ready node stays Ready until its address is known not to answer, and one that
        // hosts conferences keeps them (the condition says what is wrong).
        (true, true) => match o.reachability {
            Reachability::Reachable | Reachability::Assumed => verdict(Ready, "Ready"),
            Reachability::Unknown if current == Ready => verdict(Ready, "Ready"),
            Reachability::Unknown => verdict(Starting, "AddressUnverified"),
            Reachability::Unreachable(_) if current == Ready && o.hosting => {
                verdict(Ready, "AddressUnreachable")
            }
            Reachability::Unreachable(_) => verdict(Starting, "AddressUnreachable"),
        },
        (true, false) if !o.has_address => verdict(Starting, "AddressUnknown"),
        (true, false) if !pod.ready => verdict(Starting, "PodNotReady"),
        (true, false) => verdict(Starting, "NoHeartbeat"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> PodObservation {
        PodObservation {
            scheduled: true,
            ready: true,
            ended: false,
        }
    }

    fn obs(current: Option<MediaNodePhase>, pod: Option<PodObservation>) -> NodeObservation {
        NodeObservation {
            current,
            draining: false,
            pod,
            has_address: true,
            reachability: Reachability::Reachable,
            heartbeat_age: Some(1),
            heartbeat_timeout: 15,
            hosting: false,
            reserved: false,
            pool_stalled: false,
        }
    }

    fn phase(o: &NodeObservation) -> (MediaNodePhase, &'static str) {
        let v = node_phase(o);
        (v.phase, v.reason)
    }

    #[test]
    fn walks_pending_starting_ready() {
        assert_eq!(phase(&obs(None, None)), (Pending, "PodNotCreated"));
        let unscheduled = PodObservation::default();
        assert_eq!(
            phase(&obs(None, Some(unscheduled))),
            (Pending, "PodNotScheduled")
        );
        let not_ready = PodObservation {
            scheduled: true,
            ..Default::default()
        };
        assert_eq!(
            phase(&obs(Some(Pending), Some(not_ready))),
            (Starting, "PodNotReady")
        );
        let mut no_beat = obs(Some(Starting), Some(running()));
        no_beat.heartbeat_age = None;
        assert_eq!(phase(&no_beat), (Starting, "NoHeartbeat"));
        let mut no_addr = obs(Some(Starting), Some(running()));
        no_addr.has_address = false;
        assert_eq!(phase(&no_addr), (Starting, "AddressUnknown"));
        assert_eq!(
            phase(&obs(Some(Starting), Some(running()))),
            (Ready, "Ready")
        );
    }

    #[test]
    fn ready_only_once_the_published_address_answered() {
        let with = |current, reachability, hosting| {
            let mut o = obs(Some(current), Some(running()));
            o.reachability = reachability;
            o.hosting = hosting;
            phase(&o)
        };
        use Reachability::*;
        let unreachable = Unreachable(super::super::reachability::Unanswered::Udp);
        assert_eq!(
            with(Starting, Unknown, false),
            (Starting, "AddressUnverified")
        );
        assert_eq!(
            with(Starting, unreachable, false),
            (Starting, "AddressUnreachable")
        );
        assert_eq!(with(Starting, Reachable, false), (Ready, "Ready"));
        // An operator that just started has probed nothing yet: Ready nodes stay Ready.
        assert_eq!(with(Ready, Unknown, false), (Ready, "Ready"));
        // An address that stopped answering takes an idle node out of placement, and leaves
        // a hosting one its conferences.
        assert_eq!(
            with(Ready, unreachable, false),
            (Starting, "AddressUnreachable")
        );
        assert_eq!(
            with(Ready, unreachable, true),
            (Ready, "AddressUnreachable")
        );
    }

    #[test]
    fn fails_when_the_pod_goes_or_fails_or_the_heartbeat_stops() {
        assert_eq!(phase(&obs(Some(Ready), None)), (Failed, "PodGone"));
        assert_eq!(phase(&obs(Some(Starting), None)), (Failed, "PodGone"));
        let ended = PodObservation {
            ended: true,
            ..running()
        };
        assert_eq!(phase(&obs(Some(Ready), Some(ended))), (Failed, "PodFailed"));
        let mut stale = obs(Some(Ready), Some(running()));
        stale.heartbeat_age = Some(16);
        assert_eq!(phase(&stale), (Failed, "HeartbeatStale"));
        // A heartbeat exactly at the timeout is still fresh.
        stale.heartbeat_age = Some(15);
        assert_eq!(phase(&stale), (Ready, "Ready"));
    }

    #[test]
    fn a_stale_heartbeat_in_a_stalled_pool_keeps_the_phase_but_a_lost_pod_still_fails() {
        let mut o = obs(Some(Ready), Some(running()));
        o.heartbeat_age = Some(16);
        o.pool_stalled = true;
        assert_eq!(phase(&o), (Ready, "HeartbeatsStalled"));
        o.current = Some(Draining);
        o.draining = true;
        o.hosting = true;
        o.reserved = true;
        assert_eq!(phase(&o), (Draining, "HeartbeatsStalled"));
        o.current = Some(Ready);
        o.draining = false;
        o.pod = None;
        assert_eq!(phase(&o), (Failed, "PodGone"));
    }

    #[test]
    fn a_node_back_to_starting_that_stopped_heartbeating_fails_unless_its_pool_stalled() {
        // A hung process: the kubelet's readiness probe times out first (Ready -> Starting),
        // then its heartbeat goes stale. Its conferences must not wait on it forever.
        let hung = PodObservation {
            ready: false,
            ..running()
        };
        let mut o = obs(Some(Ready), Some(hung));
        assert_eq!(phase(&o), (Starting, "PodNotReady"));
        o.current = Some(Starting);
        o.heartbeat_age = Some(16);
        assert_eq!(phase(&o), (Failed, "HeartbeatStale"));
        o.pool_stalled = true;
        assert_eq!(phase(&o), (Starting, "PodNotReady"));
        // Starting for the first time: no heartbeat yet, nothing to lose.
        o.pool_stalled = false;
        o.heartbeat_age = None;
        assert_eq!(phase(&o), (Starting, "PodNotReady"));
    }

    #[test]
    fn drains_then_drained_when_empty() {
        let mut o = obs(Some(Ready), Some(running()));
        o.draining = true;
        o.hosting = true;
        assert_eq!(phase(&o), (Draining, "Draining"));
        o.current = Some(Draining);
        o.hosting = false;
        assert_eq!(phase(&o), (Drained, "Drained"));
        // A draining node whose pod went away with nothing left on it is drained, not failed.
        let mut gone = obs(Some(Draining), None);
        gone.draining = true;
        assert_eq!(phase(&gone), (Drained, "Drained"));
        gone.hosting = true;
        gone.reserved = true;
        assert_eq!(phase(&gone), (Failed, "PodGone"));
    }

    #[test]
    fn a_drain_taken_back_before_the_node_drained_makes_it_ready_again() {
        let mut o = obs(Some(Draining), Some(running()));
        o.hosting = true;
        o.reserved = true;
        assert_eq!(phase(&o), (Ready, "Ready"));
        // One whose process already drained (its pod no longer ready) stays Draining: the
        // autoscaler deletes it once empty.
        o.pod = Some(PodObservation {
            ready: false,
            ..running()
        });
        assert_eq!(phase(&o), (Draining, "TransitionRefused"));
        // Drained stays Drained.
        o.current = Some(Drained);
        o.pod = Some(running());
        assert_eq!(phase(&o), (Drained, "Drained"));
    }

    #[test]
    fn a_drained_node_that_exited_is_drained_though_its_last_report_showed_load() {
        let mut o = obs(Some(Draining), Some(running()));
        o.draining = true;
        o.hosting = true; // the last report, written before its rooms moved away
        o.heartbeat_age = Some(16);
        assert_eq!(phase(&o), (Drained, "Drained"));
        o.pod = Some(PodObservation {
            ended: true,
            ..running()
        });
        o.heartbeat_age = Some(1);
        assert_eq!(phase(&o), (Drained, "Drained"));
        // With conferences still placed on it, stopping is a failure: they must move.
        o.reserved = true;
        assert_eq!(phase(&o), (Failed, "PodFailed"));
        o.pod = Some(running());
        o.heartbeat_age = Some(16);
        assert_eq!(phase(&o), (Failed, "HeartbeatStale"));
    }

    #[test]
    fn terminal_phases_stay() {
        assert_eq!(phase(&obs(Some(Failed), Some(running()))).0, Failed);
        assert_eq!(phase(&obs(Some(Drained), Some(running()))).0, Drained);
    }

    #[test]
    fn a_pending_node_passes_through_starting() {
        assert_eq!(phase(&obs(Some(Pending), Some(running()))).0, Starting);
    }
}
