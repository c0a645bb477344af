//! Conferences that name a region rather than a pool: each pool of the region is tried with
//! its own policy (the conference takes the policy, TURN relays and evacuation pace of the
//! pool it lands on), the reason reported when none has room, and the pool whose autoscaler
//! grows for a conference still waiting.

use super::placement::NoFitReason;

/// How much a pool of the region may still grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headroom {
    /// Its live media nodes (not draining, failed or drained).
    pub live_nodes: u32,
    /// Its `spec.scaling.maxNodes`.
    pub max_nodes: u32,
}

/// Index of the pool (among the region's, in name order) whose autoscaler counts a waiting
/// conference as demand: the first that is below its maxNodes, or the first when all are at
/// theirs. `None` for a region without pools.
pub fn pool_to_grow(pools: &[Headroom]) -> Option<usize> {
    pools
        .iter()
        .position(|p| p.live_nodes < p.max_nodes)
        .or_else(|| (!pools.is_empty()).then_some(0))
}

/// What to tell when no pool of the region had a node for the conference, from each pool's
/// reason: full nodes somewhere (with the region's counts) before no Ready node anywhere, and
/// too large only when it is too large for every pool.
pub fn region_reason(reasons: &[NoFitReason]) -> Option<NoFitReason> {
    let full = reasons.iter().fold(None, |acc, r| match (acc, r) {
        (
            acc,
            NoFitReason::Full {
                ready_nodes,
                largest_free,
            },
        ) => {
            let (n, f) = acc.unwrap_or((0u32, 0u32));
            Some((n.saturating_add(*ready_nodes), f.max(*largest_free)))
        }
        (acc, _) => acc,
    });
    if let Some((ready_nodes, largest_free)) = full {
        return Some(NoFitReason::Full {
            ready_nodes,
            largest_free,
        });
    }
    if reasons.contains(&NoFitReason::NoReadyNode) {
        return Some(NoFitReason::NoReadyNode);
    }
    reasons
        .iter()
        .filter_map(|r| match r {
            NoFitReason::TooLarge {
                requested,
                node_capacity,
            } => Some((*requested, *node_capacity)),
            _ => None,
        })
        .max_by_key(|(_, capacity)| *capacity)
        .map(|(requested, node_capacity)| NoFitReason::TooLarge {
            requested,
            node_capacity,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(live_nodes: u32, max_nodes: u32) -> Headroom {
        Headroom {
            live_nodes,
            max_nodes,
        }
    }

    #[test]
    fn the_first_pool_that_can_grow_takes_the_demand() {
        assert_eq!(pool_to_grow(&[room(2, 5), room(0, 3)]), Some(0));
        assert_eq!(pool_to_grow(&[room(5, 5), room(1, 3)]), Some(1));
        assert_eq!(pool_to_grow(&[room(5, 5), room(3, 3)]), Some(0), "all full");
        assert_eq!(pool_to_grow(&[]), None);
    }

    #[test]
    fn the_most_telling_reason_of_the_region_is_reported() {
        let full = |ready_nodes, largest_free| NoFitReason::Full {
            ready_nodes,
            largest_free,
        };
        let large = |node_capacity| NoFitReason::TooLarge {
            requested: 300,
            node_capacity,
        };
        assert_eq!(
            region_reason(&[full(2, 4), NoFitReason::NoReadyNode, full(1, 7)]),
            Some(full(3, 7)),
            "full nodes, counted over the region"
        );
        assert_eq!(
            region_reason(&[large(200), NoFitReason::NoReadyNode]),
            Some(NoFitReason::NoReadyNode),
            "too large for one pool may fit another once it has a node"
        );
        assert_eq!(region_reason(&[large(200), large(250)]), Some(large(250)));
        assert_eq!(region_reason(&[]), None);
    }
}
