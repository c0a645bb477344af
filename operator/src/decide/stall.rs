//! Telling a stalled control plane from failed media nodes. When most of a pool's media
//! nodes stop heartbeating at the same moment, the likelier cause is the path to the API
//! server (an overloaded or partitioned control plane delays every status write) rather than
//! every node failing at once. Failing them all would move every conference, and each move
//! is more writes to the API server that is already behind. Kubernetes' node lifecycle
//! controller stops evicting from a zone that is mostly unreachable for the same reason.

use super::liveness::expects_heartbeat;
use super::{NodeView, UnixSeconds};

/// Fewer stale nodes than this are always treated as node failures: in a small pool one or
/// two dead nodes are a majority, and they must be failed over.
pub const MIN_STALE_NODES: usize = 3;

/// The share of a pool's heartbeating nodes (percent) that must be late together.
pub const STALE_SHARE_PERCENT: usize = 55;

/// How many of how many heartbeating nodes are late, when that looks like a stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// Nodes whose heartbeat is older than half the timeout. Half, because heartbeats that
    /// stopped at the same moment pass the timeout one after the other (their last writes
    /// were up to one heartbeat interval apart): the first to pass it must already see the
    /// others late, or it alone would be failed.
    pub stale: usize,
    /// Nodes expected to heartbeat (`liveness::expects_heartbeat`).
    pub heartbeating: usize,
}

/// Whether the pool's heartbeats look stalled as a whole rather than nodes failing one by one.
pub fn heartbeats_stalled(nodes: &[NodeView], timeout: i64, now: UnixSeconds) -> Option<Stall> {
    let heartbeating: Vec<_> = nodes
        .iter()
        .filter(|n| expects_heartbeat(n.phase, n.last_heartbeat.is_some()))
        .collect();
    let stale = heartbeating
        .iter()
        .filter(|n| n.last_heartbeat.is_none_or(|h| 2 * (now - h) > timeout))
        .count();
    let stall = Stall {
        stale,
        heartbeating: heartbeating.len(),
    };
    (stale >= MIN_STALE_NODES && stale * 100 >= STALE_SHARE_PERCENT * heartbeating.len())
        .then_some(stall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::MediaNodePhase;

    const NOW: UnixSeconds = 1_000;
    const TIMEOUT: i64 = 15;

    fn node(name: &str, phase: MediaNodePhase, beat_age: i64) -> NodeView {
        NodeView {
            name: name.to_owned(),
            phase,
            draining: phase == MediaNodePhase::Draining,
            last_heartbeat: Some(NOW - beat_age),
            ..NodeView::default()
        }
    }

    fn pool(fresh: usize, stale: usize) -> Vec<NodeView> {
        (0..fresh)
            .map(|i| node(&format!("fresh-{i}"), MediaNodePhase::Ready, 2))
            .chain((0..stale).map(|i| node(&format!("stale-{i}"), MediaNodePhase::Ready, 40)))
            .collect()
    }

    #[test]
    fn one_or_two_dead_nodes_are_failures_even_when_they_are_the_whole_pool() {
        assert_eq!(heartbeats_stalled(&pool(0, 1), TIMEOUT, NOW), None);
        assert_eq!(heartbeats_stalled(&pool(1, 1), TIMEOUT, NOW), None);
        assert_eq!(heartbeats_stalled(&pool(0, 2), TIMEOUT, NOW), None);
    }

    #[test]
    fn most_of_a_pool_going_stale_together_is_a_stall() {
        assert_eq!(
            heartbeats_stalled(&pool(0, 3), TIMEOUT, NOW),
            Some(Stall {
                stale: 3,
                heartbeating: 3
            })
        );
        assert_eq!(
            heartbeats_stalled(&pool(40, 60), TIMEOUT, NOW),
            Some(Stall {
                stale: 60,
                heartbeating: 100
            })
        );
    }

    #[test]
    fn a_minority_going_stale_is_node_failures() {
        assert_eq!(heartbeats_stalled(&pool(3, 3), TIMEOUT, NOW), None);
        assert_eq!(heartbeats_stalled(&pool(46, 54), TIMEOUT, NOW), None);
    }

    #[test]
    fn nodes_not_yet_heartbeating_do_not_count() {
        let mut nodes = pool(0, 3);
        // Three nodes still starting (no heartbeat yet) do not dilute the share either way.
        for i in 0..3 {
            let mut n = node(&format!("starting-{i}"), MediaNodePhase::Starting, 0);
            n.last_heartbeat = None;
            nodes.push(n);
        }
        assert_eq!(
            heartbeats_stalled(&nodes, TIMEOUT, NOW),
            Some(Stall {
                stale: 3,
                heartbeating: 3
            })
        );
    }

    #[test]
    fn nodes_back_to_starting_after_heartbeating_still_count() {
        // Two of three stalled nodes' pods went unready first (the kubelet's probe timed out):
        // they are still part of the stall, and the third is not failed alone.
        let mut nodes = pool(0, 3);
        nodes[0].phase = MediaNodePhase::Starting;
        nodes[1].phase = MediaNodePhase::Starting;
        assert_eq!(
            heartbeats_stalled(&nodes, TIMEOUT, NOW),
            Some(Stall {
                stale: 3,
                heartbeating: 3
            })
        );
    }

    #[test]
    fn nodes_past_half_the_timeout_count_as_late() {
        // Heartbeats that stopped together, last written 0, 2 and 4 s apart: when the first
        // passes the timeout the others are already late.
        let nodes: Vec<_> = [TIMEOUT + 1, TIMEOUT - 1, TIMEOUT - 3]
            .iter()
            .enumerate()
            .map(|(i, age)| node(&format!("n{i}"), MediaNodePhase::Ready, *age))
            .collect();
        assert!(heartbeats_stalled(&nodes, TIMEOUT, NOW).is_some());
        // Healthy nodes (a heartbeat every 5 s) are never late.
        let healthy: Vec<_> = (0..4)
            .map(|i| node(&format!("h{i}"), MediaNodePhase::Ready, 5))
            .collect();
        assert_eq!(heartbeats_stalled(&healthy, TIMEOUT, NOW), None);
    }
}
