//! Whether a media node is still alive: the one rule both the node controller (to fail the
//! node) and the conference controller (to move its conferences) apply.

use conclave_crds::MediaNodePhase::{self, *};

/// What is known of a media node's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Its phase.
    pub phase: MediaNodePhase,
    /// Seconds since its last heartbeat, if it sent one.
    pub heartbeat_age: Option<i64>,
    /// The pool's heartbeat timeout, seconds.
    pub heartbeat_timeout: i64,
    /// Most of its pool went quiet at once (`super::stall`): the control plane, not the node,
    /// is the likelier fault.
    pub pool_stalled: bool,
}

/// Why a node can no longer carry its conferences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// The MediaNode is gone.
    Gone,
    /// Its phase is Failed.
    Failed,
    /// It heartbeated and its heartbeat is older than the timeout, while the rest of its
    /// pool's is not.
    HeartbeatLost,
}

impl Loss {
    /// For people: what happened to the node.
    pub fn message(self) -> &'static str {
        match self {
            Loss::Gone => "its media node is gone",
            Loss::Failed => "its media node failed",
            Loss::HeartbeatLost => "its media node stopped heartbeating",
        }
    }
}

/// Whether a node in `phase` is expected to heartbeat: it runs (Ready or Draining), or it
/// `heartbeated` and is back in Starting because its pod stopped answering the kubelet's
/// readiness probe, as a hung process's does before its heartbeat goes stale. A node starting
/// for the first time has no heartbeat yet. The stall guard counts the same nodes.
pub fn expects_heartbeat(phase: MediaNodePhase, heartbeated: bool) -> bool {
    match phase {
        Ready | Draining => true,
        Starting => heartbeated,
        _ => false,
    }
}

/// A node expected to heartbeat whose heartbeat is older than the timeout, unless its pool
/// stalled together.
pub fn heartbeat_lost(node: &Liveness) -> bool {
    expects_heartbeat(node.phase, node.heartbeat_age.is_some())
        && node
            .heartbeat_age
            .is_some_and(|age| age > node.heartbeat_timeout)
        && !node.pool_stalled
}

/// Why the node (`None`: the MediaNode is gone) can no longer carry conferences, if it
/// cannot.
pub fn loss(node: Option<&Liveness>) -> Option<Loss> {
    match node {
        None => Some(Loss::Gone),
        Some(n) if n.phase == Failed => Some(Loss::Failed),
        Some(n) if heartbeat_lost(n) => Some(Loss::HeartbeatLost),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(phase: MediaNodePhase, age: Option<i64>, stalled: bool) -> Liveness {
        Liveness {
            phase,
            heartbeat_age: age,
            heartbeat_timeout: 15,
            pool_stalled: stalled,
        }
    }

    #[test]
    fn a_node_is_lost_when_gone_failed_or_silent_alone() {
        let cases = [
            (None, Some(Loss::Gone)),
            (Some(node(Failed, Some(1), false)), Some(Loss::Failed)),
            (
                Some(node(Ready, Some(16), false)),
                Some(Loss::HeartbeatLost),
            ),
            (
                Some(node(Draining, Some(16), false)),
                Some(Loss::HeartbeatLost),
            ),
            (Some(node(Ready, Some(15), false)), None),
            (Some(node(Ready, Some(60), true)), None),
            // Not running yet: no heartbeat to lose.
            (Some(node(Starting, None, false)), None),
            // Ran, then its pod went unready and its heartbeat stopped: a hung process.
            (
                Some(node(Starting, Some(16), false)),
                Some(Loss::HeartbeatLost),
            ),
            (Some(node(Starting, Some(60), true)), None),
            (Some(node(Pending, None, false)), None),
        ];
        for (n, want) in cases {
            assert_eq!(loss(n.as_ref()), want, "{n:?}");
        }
    }
}
