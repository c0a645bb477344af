//! Placement: choose the media node for a conference.
//!
//! Eligible nodes are Ready, not draining, with a heartbeat no older than the pool's
//! heartbeat timeout, an address that answered its last probe, and with room for the
//! conference (what it expects, the growth its node's headroom does not cover, and one room)
//! on top of what they have committed over the conference's span (a conference ending when
//! this one starts leaves its room to it: see `reservation`). `Packed` picks the node whose
//! lifetime the conference's end fits best (it puts off the node's emptying least, then the
//! node outlives it least), then the most-loaded one, so meetings ending together share nodes
//! and those empty together and can be removed; `Distributed` the least-loaded. Nodes in the
//! conference's preferred region win over others, then nodes a rollout keeps over outdated
//! ones (so a conference moved off an old node is not moved again). Ties break by name, so
//! the choice is deterministic.

use super::reservation::{EndFit, Reservation};
use super::{NodeView, UnixSeconds};
use conclave_crds::MediaNodePhase;
use conclave_crds::capacity::Usage;
use conclave_crds::pool::Strategy;
use std::cmp::Ordering;

/// What is being placed.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacementRequest {
    /// What the conference reserves on the node chosen, and when it occupies it.
    pub reservation: Reservation,
    /// Preferred region, if the conference names one.
    pub region: Option<String>,
    /// Nodes that must not be chosen (the node a conference is moving away from).
    pub exclude: Vec<String>,
}

/// Pool settings placement needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacementPolicy {
    /// Packed or Distributed.
    pub strategy: Strategy,
    /// A heartbeat older than this (seconds) makes a node ineligible.
    pub heartbeat_timeout_seconds: i64,
}

/// The outcome of placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Place on this node.
    Node(String),
    /// Nothing fits now; the reason is for the conference's Placed condition. The autoscaler
    /// sees the unplaced conference as demand.
    NoFit(NoFitReason),
}

/// Why a conference could not be placed, most specific first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoFitReason {
    /// maxParticipants exceeds what one node of the pool carries at all (never fits).
    TooLarge {
        /// The conference's maxParticipants.
        requested: u32,
        /// The largest node capacity in the pool.
        node_capacity: u32,
    },
    /// The pool has no Ready, non-draining node with a fresh heartbeat.
    NoReadyNode,
    /// Ready nodes exist but none has room right now.
    Full {
        /// Eligible nodes considered.
        ready_nodes: u32,
        /// The most free participant capacity on any of them.
        largest_free: u32,
    },
}

/// Chooses a node for `request` among `nodes` at time `now`.
///
/// Returns `NoFit` with the most specific reason when no eligible node has room: `TooLarge`
/// when the conference exceeds every node's participant capacity, `NoReadyNode` when no node
/// takes conferences at all (whatever their load), `Full` otherwise.
pub fn place(
    request: &PlacementRequest,
    nodes: &[NodeView],
    policy: PlacementPolicy,
    now: UnixSeconds,
) -> Placement {
    let Some(largest_node) = nodes.iter().map(|node| node.capacity.participants).max() else {
        return Placement::NoFit(NoFitReason::NoReadyNode);
    };
    let wanted = request.reservation;
    let requested = wanted.full().participants;
    if requested > largest_node {
        return Placement::NoFit(NoFitReason::TooLarge {
            requested,
            node_capacity: largest_node,
        });
    }
    let open: Vec<Candidate<'_>> = nodes
        .iter()
        .filter(|node| takes_conferences(node, request, policy, now))
        .map(|node| Candidate {
            node,
            load: node.committed_over(wanted.span, now),
            end_fit: node.reserved.end_fit(&wanted, now),
        })
        .collect();
    if open.is_empty() {
        return Placement::NoFit(NoFitReason::NoReadyNode);
    }
    open.iter()
        .filter(|c| {
            let added = c.node.reserved.added_by(&wanted, now);
            c.node.capacity.fits(c.load, added)
        })
        .min_by(|a, b| preference(a, b, request, policy.strategy))
        .map_or_else(
            || Placement::NoFit(full(&open)),
            |c| Placement::Node(c.node.name.clone()),
        )
}

/// A node that takes conferences, with what it has committed over the request's span.
struct Candidate<'a> {
    node: &'a NodeView,
    load: Usage,
    /// How the conference's end fits the node's lifetime.
    end_fit: EndFit,
}

impl Candidate<'_> {
    /// Rooms the node can still open over the span.
    fn free_rooms(&self) -> u32 {
        self.node.capacity.rooms.saturating_sub(self.load.rooms)
    }
}

/// True when `node` may take a new conference for `request` at `now`, whatever its load:
/// Ready, not draining, a heartbeat no older than the timeout, its address answering, and not
/// excluded.
fn takes_conferences(
    node: &NodeView,
    request: &PlacementRequest,
    policy: PlacementPolicy,
    now: UnixSeconds,
) -> bool {
    node.phase == MediaNodePhase::Ready
        && !node.draining
        && heartbeat_is_fresh(node, policy.heartbeat_timeout_seconds, now)
        && !node.unreachable
        && !request.exclude.contains(&node.name)
}

/// True when the node's last heartbeat is at most `timeout` seconds old (one from the future,
/// a clock skew, counts as fresh). A node that never sent one is not fresh.
fn heartbeat_is_fresh(node: &NodeView, timeout: i64, now: UnixSeconds) -> bool {
    node.last_heartbeat
        .is_some_and(|beat| now.saturating_sub(beat) <= timeout)
}

/// Orders two fitting nodes, the preferred first: the request's region, then current before
/// outdated, then load by strategy, then name.
fn preference(
    a: &Candidate<'_>,
    b: &Candidate<'_>,
    request: &PlacementRequest,
    strategy: Strategy,
) -> Ordering {
    let outside_region = |c: &Candidate<'_>| {
        request.region.is_some() && c.node.region.as_deref() != request.region.as_deref()
    };
    outside_region(a)
        .cmp(&outside_region(b))
        .then_with(|| a.node.outdated.cmp(&b.node.outdated))
        .then_with(|| load_preference(a, b, strategy))
        .then_with(|| a.node.name.cmp(&b.node.name))
}

/// Packed: the best fit of the conference's end to the node's lifetime, then most committed
/// participants, then fewest free rooms. Distributed: fewest committed participants first,
/// then most free rooms.
fn load_preference(a: &Candidate<'_>, b: &Candidate<'_>, strategy: Strategy) -> Ordering {
    let fewer_participants = a.load.participants.cmp(&b.load.participants);
    let fewer_free_rooms = a.free_rooms().cmp(&b.free_rooms());
    match strategy {
        Strategy::Packed => a
            .end_fit
            .cmp(&b.end_fit)
            .then(fewer_participants.reverse())
            .then(fewer_free_rooms),
        Strategy::Distributed => fewer_participants.then(fewer_free_rooms.reverse()),
    }
}

/// The `Full` reason for nodes that take conferences but have no room for this one.
fn full(open: &[Candidate<'_>]) -> NoFitReason {
    NoFitReason::Full {
        ready_nodes: u32::try_from(open.len()).unwrap_or(u32::MAX),
        largest_free: open
            .iter()
            .map(|c| c.node.capacity.free_participants(c.load))
            .max()
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::reservation::Span;
    use conclave_crds::NodeCapacity;
    use conclave_crds::pool::Strategy;
    use proptest::prelude::*;
    use proptest::strategy::Strategy as _;

    const NOW: UnixSeconds = 1_000_000;
    const HEARTBEAT_TIMEOUT: i64 = 15;
    const CAPACITY: NodeCapacity = NodeCapacity {
        participants: 200,
        rooms: 50,
        egress_mbps: 1000,
    };

    /// A Ready, fresh node of 200 participants and 50 rooms with `participants` reserved in
    /// one room (none when `participants` is 0).
    fn node(name: &str, participants: u32) -> NodeView {
        NodeView {
            name: name.to_owned(),
            phase: MediaNodePhase::Ready,
            last_heartbeat: Some(NOW),
            capacity: CAPACITY,
            reserved: Usage {
                participants,
                rooms: u32::from(participants > 0),
            }
            .into(),
            ..NodeView::default()
        }
    }

    fn in_region(region: &str, base: NodeView) -> NodeView {
        NodeView {
            region: Some(region.to_owned()),
            ..base
        }
    }

    fn with_rooms(rooms: u32, base: NodeView) -> NodeView {
        NodeView {
            reserved: Usage {
                participants: base.reserved.total().participants,
                rooms,
            }
            .into(),
            ..base
        }
    }

    fn request(max_participants: u32) -> PlacementRequest {
        PlacementRequest {
            reservation: Reservation::conference(max_participants, max_participants, Span::ALWAYS),
            region: None,
            exclude: Vec::new(),
        }
    }

    fn policy(strategy: Strategy) -> PlacementPolicy {
        PlacementPolicy {
            strategy,
            heartbeat_timeout_seconds: HEARTBEAT_TIMEOUT,
        }
    }

    fn on(name: &str) -> Placement {
        Placement::Node(name.to_owned())
    }

    fn no_fit(reason: NoFitReason) -> Placement {
        Placement::NoFit(reason)
    }

    struct Case {
        what: &'static str,
        request: PlacementRequest,
        nodes: Vec<NodeView>,
        strategy: Strategy,
        want: Placement,
    }

    fn check(cases: Vec<Case>) {
        for case in cases {
            let got = place(&case.request, &case.nodes, policy(case.strategy), NOW);
            assert_eq!(got, case.want, "{}", case.what);
        }
    }

    #[test]
    fn expected_attendance() {
        let expecting = |expected, max| PlacementRequest {
            reservation: Reservation::conference(expected, max, Span::ALWAYS),
            ..request(max)
        };
        let holding = |name: &str, held: &[(u32, u32)]| NodeView {
            reserved: held
                .iter()
                .map(|&(expected, max)| Reservation::conference(expected, max, Span::ALWAYS))
                .collect(),
            ..node(name, 0)
        };
        check(vec![
            Case {
                what: "expectations share one headroom for growth: 60 + 60 + 40 of 200",
                request: expecting(60, 100),
                nodes: vec![holding("a", &[(60, 100)])],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "and fill the node: 60 + 30 + 60 + 40 of 200",
                request: expecting(60, 100),
                nodes: vec![holding("a", &[(60, 100), (30, 30)])],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "growth that does not fit the node goes elsewhere: 120 + 60 + 40 of 200",
                request: expecting(60, 100),
                nodes: vec![holding("a", &[(120, 120)]), node("b", 0)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "participants beyond the expectations count as they join: 60 + 70 + 40 + 50",
                request: expecting(50, 50),
                nodes: vec![
                    NodeView {
                        reported: Usage {
                            participants: 130,
                            rooms: 2,
                        },
                        ..holding("a", &[(60, 100)])
                    },
                    node("b", 0),
                ],
                strategy: Strategy::Packed,
                want: on("b"),
            },
        ]);
    }

    #[test]
    fn packed_shares_nodes_among_meetings_that_end_together() {
        let ending = |name: &str, participants: u32, until: Option<i64>| NodeView {
            reserved: [Reservation::conference(
                participants,
                participants,
                Span::of(None, until.map(|t| NOW + t)),
            )]
            .into_iter()
            .collect(),
            ..node(name, 0)
        };
        let until = |t: i64| PlacementRequest {
            reservation: Reservation::conference(10, 10, Span::of(Some(NOW + 300), Some(NOW + t))),
            ..request(10)
        };
        check(vec![
            Case {
                what: "a meeting goes to the node that empties when it ends, not a fuller one that runs on",
                request: until(1800),
                nodes: vec![ending("a", 40, Some(1800)), ending("b", 120, Some(3600))],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "one ending after every node empties goes where it puts that off least",
                request: until(3600),
                nodes: vec![ending("a", 120, Some(1800)), ending("b", 40, Some(3000))],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "an ad-hoc conference joins a node that never empties, not one that would",
                request: request(10),
                nodes: vec![ending("a", 120, Some(1800)), ending("b", 20, None)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "a booking prefers a node whose end is known to one hosting ad-hoc calls",
                request: until(1800),
                nodes: vec![ending("a", 20, Some(3600)), ending("b", 120, None)],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "the same fit: the fuller node",
                request: until(1800),
                nodes: vec![ending("a", 40, Some(1800)), ending("b", 80, Some(1800))],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "Distributed looks at load alone",
                request: until(3600),
                nodes: vec![ending("a", 40, Some(1800)), ending("b", 120, Some(3600))],
                strategy: Strategy::Distributed,
                want: on("a"),
            },
        ]);
    }

    #[test]
    fn spans() {
        let holding = |name: &str, participants: u32, span: Span| NodeView {
            reserved: [Reservation::conference(participants, participants, span)]
                .into_iter()
                .collect(),
            ..node(name, 0)
        };
        let until = |t: i64| Span::of(None, Some(NOW + t));
        let from = |t: i64| Span::of(Some(NOW + t), None);
        let over = |span: Span, max| PlacementRequest {
            reservation: Reservation::conference(max, max, span),
            ..request(max)
        };
        check(vec![
            Case {
                what: "a booking takes the room of a meeting that ends at its start",
                request: over(Span::of(Some(NOW + 600), Some(NOW + 4200)), 120),
                nodes: vec![holding("a", 150, until(600)), node("b", 100)],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "an ad-hoc conference does not take that room while the meeting runs",
                request: request(60),
                nodes: vec![holding("a", 150, until(600)), node("b", 100)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "a conference ending before a booking starts fits in front of it",
                request: over(until(600), 100),
                nodes: vec![holding("a", 150, from(600)), node("b", 150)],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "one with no end does not: it would run into the booking",
                request: request(100),
                nodes: vec![holding("a", 150, from(600))],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::Full {
                    ready_nodes: 1,
                    largest_free: 50,
                }),
            },
        ]);
    }

    #[test]
    fn eligibility() {
        use MediaNodePhase::*;
        let phase = |phase, base: NodeView| NodeView { phase, ..base };
        let beat = |at, base: NodeView| NodeView {
            last_heartbeat: at,
            ..base
        };
        let draining = |base: NodeView| NodeView {
            draining: true,
            draining_since: Some(NOW),
            ..base
        };
        let excluding = |name: &str| PlacementRequest {
            exclude: vec![name.to_owned()],
            ..request(10)
        };
        check(vec![
            Case {
                what: "a Ready node with room is chosen",
                request: request(10),
                nodes: vec![node("a", 0)],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "Pending, Starting, Draining, Drained and Failed nodes take nothing",
                request: request(10),
                nodes: [Pending, Starting, Draining, Drained, Failed]
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| phase(p, node(&format!("n{i}"), 0)))
                    .collect(),
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::NoReadyNode),
            },
            Case {
                what: "a Ready node whose address stopped answering takes nothing new",
                request: request(10),
                nodes: vec![
                    NodeView {
                        unreachable: true,
                        ..node("a", 100)
                    },
                    node("b", 0),
                ],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "a Ready node marked draining takes nothing; the other one does",
                request: request(10),
                nodes: vec![draining(node("a", 100)), node("b", 0)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "a stale heartbeat makes a node ineligible",
                request: request(10),
                nodes: vec![
                    beat(Some(NOW - HEARTBEAT_TIMEOUT - 1), node("a", 100)),
                    node("b", 0),
                ],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "a heartbeat exactly at the timeout is still fresh",
                request: request(10),
                nodes: vec![
                    beat(Some(NOW - HEARTBEAT_TIMEOUT), node("a", 100)),
                    node("b", 0),
                ],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "a heartbeat from the future (clock skew) is fresh",
                request: request(10),
                nodes: vec![beat(Some(NOW + 30), node("a", 0))],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "a node that never sent a heartbeat is ineligible",
                request: request(10),
                nodes: vec![beat(None, node("a", 0))],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::NoReadyNode),
            },
            Case {
                what: "only stale nodes: no ready node",
                request: request(10),
                nodes: vec![beat(Some(0), node("a", 0)), beat(Some(0), node("b", 0))],
                strategy: Strategy::Distributed,
                want: no_fit(NoFitReason::NoReadyNode),
            },
            Case {
                what: "an excluded node is skipped even when it is the best fit",
                request: excluding("a"),
                nodes: vec![node("a", 150), node("b", 10)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "when the only ready node is excluded there is no ready node",
                request: excluding("a"),
                nodes: vec![node("a", 0)],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::NoReadyNode),
            },
        ]);
    }

    #[test]
    fn capacity() {
        let reported = |participants, rooms, base: NodeView| NodeView {
            reported: Usage {
                participants,
                rooms,
            },
            ..base
        };
        check(vec![
            Case {
                what: "an exact fit is taken",
                request: request(10),
                nodes: vec![node("a", 190)],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "one participant too many does not fit",
                request: request(11),
                nodes: vec![node("a", 190)],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::Full {
                    ready_nodes: 1,
                    largest_free: 10,
                }),
            },
            Case {
                what: "a node whose rooms are all taken does not fit",
                request: request(1),
                nodes: vec![with_rooms(50, node("a", 10)), node("b", 0)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "reported load above the reservations counts",
                request: request(60),
                nodes: vec![reported(150, 1, node("a", 100)), node("b", 20)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "reported rooms above the reserved ones count",
                request: request(5),
                nodes: vec![reported(20, 50, node("a", 10)), node("b", 0)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "Packed skips a fuller node that has no room",
                request: request(30),
                nodes: vec![node("a", 180), node("b", 100)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
        ]);
    }

    #[test]
    fn no_fit_reasons() {
        let failed = |base: NodeView| NodeView {
            phase: MediaNodePhase::Failed,
            ..base
        };
        let big = |base: NodeView| NodeView {
            capacity: NodeCapacity {
                participants: 300,
                ..CAPACITY
            },
            ..base
        };
        check(vec![
            Case {
                what: "an empty pool has no ready node",
                request: request(10),
                nodes: vec![],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::NoReadyNode),
            },
            Case {
                what: "larger than every node: too large",
                request: request(201),
                nodes: vec![node("a", 0), node("b", 0)],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::TooLarge {
                    requested: 201,
                    node_capacity: 200,
                }),
            },
            Case {
                what: "too large wins over no ready node",
                request: request(500),
                nodes: vec![failed(node("a", 0))],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::TooLarge {
                    requested: 500,
                    node_capacity: 200,
                }),
            },
            Case {
                what: "the largest node counts even when it is not ready: full, not too large",
                request: request(250),
                nodes: vec![node("a", 0), failed(big(node("b", 0)))],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::Full {
                    ready_nodes: 1,
                    largest_free: 200,
                }),
            },
            Case {
                what: "full: counts the ready nodes and the largest free capacity",
                request: request(60),
                nodes: vec![node("a", 150), node("b", 180), failed(node("c", 0))],
                strategy: Strategy::Packed,
                want: no_fit(NoFitReason::Full {
                    ready_nodes: 2,
                    largest_free: 50,
                }),
            },
            Case {
                what: "full by rooms: free participants may exceed the request",
                request: request(5),
                nodes: vec![with_rooms(50, node("a", 10))],
                strategy: Strategy::Distributed,
                want: no_fit(NoFitReason::Full {
                    ready_nodes: 1,
                    largest_free: 190,
                }),
            },
        ]);
    }

    #[test]
    fn strategies_and_tie_breaks() {
        check(vec![
            Case {
                what: "Packed picks the most-loaded node that fits",
                request: request(10),
                nodes: vec![node("a", 20), node("b", 120), node("c", 60)],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "Distributed picks the least-loaded node",
                request: request(10),
                nodes: vec![node("a", 20), node("b", 120), node("c", 5)],
                strategy: Strategy::Distributed,
                want: on("c"),
            },
            Case {
                what: "Packed, equal participants: fewest free rooms",
                request: request(10),
                nodes: vec![with_rooms(2, node("a", 50)), with_rooms(7, node("b", 50))],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "Distributed, equal participants: most free rooms",
                request: request(10),
                nodes: vec![with_rooms(7, node("a", 50)), with_rooms(2, node("b", 50))],
                strategy: Strategy::Distributed,
                want: on("b"),
            },
            Case {
                what: "a node a rollout replaces loses to a current one, whatever the load",
                request: request(10),
                nodes: vec![
                    NodeView {
                        outdated: true,
                        ..node("a", 120)
                    },
                    node("b", 20),
                ],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "Packed, full tie: name ascending, whatever the input order",
                request: request(10),
                nodes: vec![node("c", 50), node("a", 50), node("b", 50)],
                strategy: Strategy::Packed,
                want: on("a"),
            },
            Case {
                what: "Distributed, full tie: name ascending, whatever the input order",
                request: request(10),
                nodes: vec![node("c", 0), node("b", 0), node("a", 0)],
                strategy: Strategy::Distributed,
                want: on("a"),
            },
        ]);
    }

    #[test]
    fn region_preference() {
        let wanting = |region: &str, max| PlacementRequest {
            region: Some(region.to_owned()),
            ..request(max)
        };
        check(vec![
            Case {
                what: "Packed: an emptier node in the region beats a fuller one outside",
                request: wanting("eu", 10),
                nodes: vec![
                    in_region("us", node("a", 150)),
                    in_region("eu", node("b", 10)),
                ],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "Distributed: a fuller node in the region beats an emptier one outside",
                request: wanting("eu", 10),
                nodes: vec![
                    in_region("us", node("a", 0)),
                    in_region("eu", node("b", 150)),
                ],
                strategy: Strategy::Distributed,
                want: on("b"),
            },
            Case {
                what: "the strategy still orders nodes within the region",
                request: wanting("eu", 10),
                nodes: vec![
                    in_region("eu", node("a", 10)),
                    in_region("us", node("b", 190)),
                    in_region("eu", node("c", 90)),
                ],
                strategy: Strategy::Packed,
                want: on("c"),
            },
            Case {
                what: "falls back to another region when nothing in the region fits",
                request: wanting("eu", 50),
                nodes: vec![
                    in_region("eu", node("a", 180)),
                    in_region("us", node("b", 10)),
                ],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "falls back to a node without region when the region has no node",
                request: wanting("eu", 10),
                nodes: vec![node("a", 10), in_region("us", node("b", 20))],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "a node without region is not in the requested region",
                request: wanting("eu", 10),
                nodes: vec![node("a", 100), in_region("eu", node("b", 10))],
                strategy: Strategy::Packed,
                want: on("b"),
            },
            Case {
                what: "a request without region has no preference",
                request: request(10),
                nodes: vec![
                    in_region("eu", node("a", 10)),
                    in_region("us", node("b", 100)),
                ],
                strategy: Strategy::Packed,
                want: on("b"),
            },
        ]);
    }

    /// Nodes with random phase, draining, heartbeat age, capacity, load and region; names
    /// n0, n1, … so they are unique.
    fn arb_nodes() -> impl proptest::strategy::Strategy<Value = Vec<NodeView>> {
        use MediaNodePhase::*;
        let one = (
            prop::sample::select(vec![
                Pending, Starting, Ready, Ready, Ready, Draining, Failed,
            ]),
            prop::bool::weighted(0.15),
            prop::option::weighted(0.9, 0i64..40),
            (1u32..300, 1u32..20),
            (0u32..320, 0u32..22, prop::option::of(0i64..7200)),
            (0u32..320, 0u32..22),
            prop::option::of(prop::sample::select(vec!["eu", "us"])),
        );
        prop::collection::vec(one, 0..12).prop_map(|nodes| {
            nodes
                .into_iter()
                .enumerate()
                .map(
                    |(i, (phase, draining, age, cap, res, rep, region))| NodeView {
                        name: format!("n{i:02}"),
                        phase,
                        draining,
                        draining_since: draining.then_some(NOW),
                        created_at: 0,
                        last_heartbeat: age.map(|age| NOW - age),
                        capacity: NodeCapacity {
                            participants: cap.0,
                            rooms: cap.1,
                            egress_mbps: 1000,
                        },
                        reserved: held(
                            Usage {
                                participants: res.0,
                                rooms: res.1,
                            },
                            res.2,
                        ),
                        reported: Usage {
                            participants: rep.0,
                            rooms: rep.1,
                        },
                        region: region.map(str::to_owned),
                        outdated: false,
                        drained_as_surplus: false,
                        startup_seconds: None,
                        unreachable: false,
                    },
                )
                .collect()
        })
    }

    /// One reservation of `usage` from now until `until` seconds from now (for ever when
    /// None); nothing when `usage` is zero.
    fn held(usage: Usage, until: Option<i64>) -> crate::decide::reservation::Reservations {
        if usage == Usage::default() {
            return crate::decide::reservation::Reservations::default();
        }
        [Reservation {
            usage,
            growth: 0,
            span: Span::of(None, until.map(|t| NOW + t)),
        }]
        .into_iter()
        .collect()
    }

    fn arb_request() -> impl proptest::strategy::Strategy<Value = PlacementRequest> {
        (
            0u32..320,
            prop::option::of(prop::sample::select(vec!["eu", "us", "ap"])),
            prop::collection::vec(0usize..12, 0..3),
            0.5f64..=1.0,
            prop::option::of(0i64..7200),
        )
            .prop_map(|(max_participants, region, exclude, expected, until)| {
                PlacementRequest {
                    reservation: Reservation::conference(
                        (f64::from(max_participants) * expected) as u32,
                        max_participants,
                        Span::of(None, until.map(|t| NOW + t)),
                    ),
                    region: region.map(str::to_owned),
                    exclude: exclude.into_iter().map(|i| format!("n{i:02}")).collect(),
                }
            })
    }

    fn arb_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
        prop::sample::select(vec![Strategy::Packed, Strategy::Distributed])
    }

    /// The eligibility rule, restated independently of `place`.
    fn eligible(node: &NodeView, request: &PlacementRequest) -> bool {
        node.phase == MediaNodePhase::Ready
            && !node.draining
            && node
                .last_heartbeat
                .is_some_and(|beat| NOW - beat <= HEARTBEAT_TIMEOUT)
            && !node.unreachable
            && !request.exclude.contains(&node.name)
            && node.capacity.fits(
                node.committed(),
                node.reserved.added_by(&request.reservation, NOW),
            )
    }

    /// The node a placement names.
    fn chosen<'a>(placement: &Placement, nodes: &'a [NodeView]) -> Option<&'a NodeView> {
        match placement {
            Placement::Node(name) => nodes.iter().find(|n| &n.name == name),
            Placement::NoFit(_) => None,
        }
    }

    fn same_region_group(a: &NodeView, b: &NodeView, request: &PlacementRequest) -> bool {
        let inside = |n: &NodeView| request.region.is_none() || n.region == request.region;
        inside(a) == inside(b)
    }

    proptest! {
        #[test]
        fn chosen_node_is_eligible_and_fits(
            nodes in arb_nodes(), request in arb_request(), strategy in arb_strategy(),
        ) {
            let placement = place(&request, &nodes, policy(strategy), NOW);
            match placement {
                Placement::Node(_) => {
                    let chosen = chosen(&placement, &nodes);
                    prop_assert!(chosen.is_some_and(|n| eligible(n, &request)));
                }
                Placement::NoFit(_) => {
                    prop_assert!(!nodes.iter().any(|n| eligible(n, &request)));
                }
            }
        }

        #[test]
        fn the_preferred_region_wins_when_it_has_an_eligible_node(
            nodes in arb_nodes(), request in arb_request(), strategy in arb_strategy(),
        ) {
            let placement = place(&request, &nodes, policy(strategy), NOW);
            if let Some(chosen) = chosen(&placement, &nodes) {
                let in_region = |n: &NodeView| n.region.is_some() && n.region == request.region;
                let any_in_region = nodes.iter().any(|n| eligible(n, &request) && in_region(n));
                prop_assert!(!any_in_region || in_region(chosen));
            }
        }

        #[test]
        fn packed_never_picks_a_worse_end_fit(nodes in arb_nodes(), request in arb_request()) {
            let placement = place(&request, &nodes, policy(Strategy::Packed), NOW);
            if let Some(chosen) = chosen(&placement, &nodes) {
                let fit = |n: &NodeView| n.reserved.end_fit(&request.reservation, NOW);
                for other in nodes.iter().filter(|n| eligible(n, &request)) {
                    if same_region_group(chosen, other, &request) {
                        prop_assert!(
                            fit(chosen) <= fit(other),
                            "{} chosen over {}, whose lifetime the conference fits better",
                            chosen.name, other.name,
                        );
                    }
                }
            }
        }

        #[test]
        fn packed_never_picks_a_less_loaded_node_of_the_same_fit(
            nodes in arb_nodes(), request in arb_request(),
        ) {
            let placement = place(&request, &nodes, policy(Strategy::Packed), NOW);
            if let Some(chosen) = chosen(&placement, &nodes) {
                let fit = |n: &NodeView| n.reserved.end_fit(&request.reservation, NOW);
                for other in nodes.iter().filter(|n| eligible(n, &request)) {
                    if same_region_group(chosen, other, &request) && fit(chosen) == fit(other) {
                        prop_assert!(
                            chosen.committed().participants >= other.committed().participants,
                            "{} chosen over the fuller {}", chosen.name, other.name,
                        );
                    }
                }
            }
        }

        #[test]
        fn distributed_never_picks_a_more_loaded_node(
            nodes in arb_nodes(), request in arb_request(),
        ) {
            let placement = place(&request, &nodes, policy(Strategy::Distributed), NOW);
            if let Some(chosen) = chosen(&placement, &nodes) {
                for other in nodes.iter().filter(|n| eligible(n, &request)) {
                    if same_region_group(chosen, other, &request) {
                        prop_assert!(
                            chosen.committed().participants <= other.committed().participants,
                            "{} chosen over the emptier {}", chosen.name, other.name,
                        );
                    }
                }
            }
        }

        #[test]
        fn a_burst_of_placements_never_over_commits_a_node(
            nodes in arb_nodes(),
            burst in prop::collection::vec(arb_request(), 0..60),
            strategy in arb_strategy(),
        ) {
            let mut nodes = nodes;
            let within = |n: &NodeView| {
                let used = n.committed();
                used.participants <= n.capacity.participants && used.rooms <= n.capacity.rooms
            };
            let initially_within: Vec<bool> = nodes.iter().map(within).collect();
            for request in &burst {
                if let Placement::Node(name) = place(request, &nodes, policy(strategy), NOW) {
                    let chosen = nodes
                        .iter_mut()
                        .find(|n| n.name == name)
                        .expect("place names one of the given nodes");
                    chosen.reserved.add(request.reservation);
                }
                for (node, was_within) in nodes.iter().zip(&initially_within) {
                    prop_assert!(!was_within || within(node), "{} over-committed", node.name);
                }
            }
        }

        #[test]
        fn never_panics_on_extreme_input(
            max_participants in any::<u32>(),
            capacity in (any::<u32>(), any::<u32>()),
            load in (any::<u32>(), any::<u32>()),
            beat in prop::option::of(any::<i64>()),
            timeout in any::<i64>(),
            now in any::<i64>(),
        ) {
            let node = NodeView {
                capacity: NodeCapacity {
                    participants: capacity.0,
                    rooms: capacity.1,
                    egress_mbps: 0,
                },
                reserved: Usage { participants: load.0, rooms: load.1 }.into(),
                reported: Usage { participants: load.1, rooms: load.0 },
                last_heartbeat: beat,
                ..node("a", 0)
            };
            let policy = PlacementPolicy {
                strategy: Strategy::Packed,
                heartbeat_timeout_seconds: timeout,
            };
            let _ = place(&request(max_participants), &[node.clone(), node], policy, now);
        }
    }
}
