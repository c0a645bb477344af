//! Capacity arithmetic shared by placement, autoscaling and the media node's admission
//! checks: what a node has committed, what is free, and how many nodes or relays a load needs.

use crate::shared::NodeCapacity;

/// Participants and rooms committed on a node or asked for by a conference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Participants.
    pub participants: u32,
    /// Rooms.
    pub rooms: u32,
}

impl Usage {
    /// The usage of one conference reserving `max_participants`.
    pub fn conference(max_participants: u32) -> Self {
        Self {
            participants: max_participants,
            rooms: 1,
        }
    }

    /// What a node has committed: reservations, or what it reports connected if that is more
    /// (a conference reserved elsewhere, or a report that raced a release).
    pub fn committed(reserved: Usage, reported: Usage) -> Self {
        Self {
            participants: reserved.participants.max(reported.participants),
            rooms: reserved.rooms.max(reported.rooms),
        }
    }

    /// Sum of two usages, saturating.
    pub fn plus(self, other: Usage) -> Self {
        Self {
            participants: self.participants.saturating_add(other.participants),
            rooms: self.rooms.saturating_add(other.rooms),
        }
    }
}

impl NodeCapacity {
    /// Participants still free on a node with `used` committed.
    pub fn free_participants(&self, used: Usage) -> u32 {
        self.participants.saturating_sub(used.participants)
    }

    /// True when `request` fits on a node with `used` committed, in participants and rooms.
    pub fn fits(&self, used: Usage, request: Usage) -> bool {
        let total = used.plus(request);
        total.participants <= self.participants && total.rooms <= self.rooms
    }

    /// Fraction of participant capacity in use, 0.0 to 1.0 (more if over-committed).
    pub fn utilization(&self, used: Usage) -> f64 {
        if self.participants == 0 {
            return 0.0;
        }
        f64::from(used.participants) / f64::from(self.participants)
    }
}

/// Nodes of `per_node` participants needed to carry `participants`, rounded up.
pub fn nodes_for(participants: u64, per_node: u32) -> u64 {
    if per_node == 0 {
        return 0;
    }
    participants.div_ceil(u64::from(per_node))
}

/// TURN replicas for `participants`: participants × relay fraction / allocations per
/// replica, rounded up, within `min..=max`.
pub fn turn_replicas(
    participants: u32,
    relay_fraction: f64,
    allocations_per_replica: u32,
    min: u32,
    max: u32,
) -> u32 {
    let relayed = (f64::from(participants) * relay_fraction.clamp(0.0, 1.0)).ceil();
    let needed = if allocations_per_replica == 0 {
        0.0
    } else {
        (relayed / f64::from(allocations_per_replica)).ceil()
    };
    // `needed` is non-negative and at most u32::MAX participants, so it fits a u32.
    let needed = needed.min(f64::from(u32::MAX)) as u32;
    needed.clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE: NodeCapacity = NodeCapacity {
        participants: 200,
        rooms: 50,
        egress_mbps: 1000,
    };

    #[test]
    fn fits_counts_participants_and_rooms() {
        let used = Usage {
            participants: 190,
            rooms: 3,
        };
        assert!(NODE.fits(used, Usage::conference(10)));
        assert!(!NODE.fits(used, Usage::conference(11)));
        let full_rooms = Usage {
            participants: 10,
            rooms: 50,
        };
        assert!(!NODE.fits(full_rooms, Usage::conference(1)));
    }

    #[test]
    fn committed_takes_the_larger_of_reserved_and_reported() {
        let reserved = Usage {
            participants: 40,
            rooms: 2,
        };
        let reported = Usage {
            participants: 55,
            rooms: 1,
        };
        assert_eq!(
            Usage::committed(reserved, reported),
            Usage {
                participants: 55,
                rooms: 2
            }
        );
    }

    #[test]
    fn free_never_underflows() {
        assert_eq!(
            NODE.free_participants(Usage {
                participants: 500,
                rooms: 0
            }),
            0
        );
        assert_eq!(
            NODE.free_participants(Usage {
                participants: 150,
                rooms: 0
            }),
            50
        );
    }

    #[test]
    fn nodes_round_up() {
        assert_eq!(nodes_for(0, 200), 0);
        assert_eq!(nodes_for(1, 200), 1);
        assert_eq!(nodes_for(200, 200), 1);
        assert_eq!(nodes_for(201, 200), 2);
        assert_eq!(nodes_for(5, 0), 0);
    }

    #[test]
    fn turn_replicas_scale_with_relayed_participants() {
        // 1000 participants, 20 % relayed = 200 allocations, 100 per replica = 2.
        assert_eq!(turn_replicas(1000, 0.2, 100, 1, 10), 2);
        assert_eq!(turn_replicas(1001, 0.2, 100, 1, 10), 3);
        assert_eq!(turn_replicas(0, 0.2, 100, 1, 10), 1);
        assert_eq!(turn_replicas(1_000_000, 0.2, 100, 1, 10), 10);
        assert_eq!(turn_replicas(0, 0.2, 100, 0, 10), 0);
    }

    proptest! {
        #[test]
        fn fitting_requests_never_exceed_capacity(
            p in 0u32..400, r in 0u32..80, req in 1u32..300,
        ) {
            let used = Usage { participants: p, rooms: r };
            if NODE.fits(used, Usage::conference(req)) {
                prop_assert!(p + req <= NODE.participants && r < NODE.rooms);
            }
        }

        #[test]
        fn turn_replicas_stay_in_bounds(
            participants in 0u32..10_000_000, fraction in 0.0f64..1.0,
            per in 1u32..10_000, min in 0u32..10, extra in 0u32..10,
        ) {
            let n = turn_replicas(participants, fraction, per, min, min + extra);
            prop_assert!(n >= min && n <= min + extra);
        }
    }
}
