//! Rollout: replacing the media nodes whose pod was made from an older template of the pool
//! (a new image, resources, scheduling or TLS settings), without cutting a conference.
//!
//! Like a Deployment's rolling update, sized by the nodes the pool needs now (`needed`, from
//! the autoscaler, so the rollout's own surge does not count): new nodes are added while live
//! nodes stay within `needed + maxSurge` and the pool's maxNodes, until `needed` nodes run the
//! current template; outdated nodes are drained while the Ready ones stay at least
//! `needed - maxUnavailable`, and only when the other Ready nodes have room for what they
//! carry, so their conferences move (at the evacuation rate) rather than wait on a draining
//! node. Outdated nodes that are not Ready carry nothing and are drained at once; Ready ones
//! go emptiest first. A conference moved off an old node lands on a current one (placement
//! prefers them), so it moves once.

use super::{NodeView, UnixSeconds};
use conclave_crds::MediaNodePhase;
use conclave_crds::capacity::Usage;
use std::cmp::Ordering;

/// A new node not Ready after this many seconds is reported as holding the rollout up.
pub const NEW_NODE_PATIENCE_SECONDS: i64 = 120;

/// `spec.rollout` of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutPolicy {
    /// Nodes added above `needed` while old ones are replaced.
    pub max_surge: u32,
    /// Ready nodes that may be missing below `needed` while old ones are replaced.
    pub max_unavailable: u32,
}

/// Everything the rollout looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutInput<'a> {
    /// The pool's policy.
    pub policy: RolloutPolicy,
    /// Every MediaNode of the pool.
    pub nodes: &'a [NodeView],
    /// Live nodes the pool needs now (`autoscale::needed_nodes`).
    pub needed: u32,
    /// The pool's maxNodes.
    pub max_nodes: u32,
    /// Nodes the autoscaler adds in this same pass.
    pub autoscaler_adds: u32,
    /// Nodes the autoscaler drains in this same pass.
    pub autoscaler_drains: &'a [String],
    /// The time.
    pub now: UnixSeconds,
}

/// What the rollout does in this pass, on top of the autoscaler's plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolloutPlan {
    /// New nodes to create beyond the autoscaler's.
    pub add: u32,
    /// Outdated nodes to drain, in order.
    pub drain: Vec<String>,
    /// Live nodes (not draining, after this pass's drains) running the current template.
    pub updated: u32,
    /// Live nodes still running an older template after this pass's drains.
    pub outdated: u32,
    /// Why the rollout cannot go on now, when it cannot.
    pub hold: Option<Hold>,
}

/// Why a rollout is not progressing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// A new node has not become Ready for longer than [`NEW_NODE_PATIENCE_SECONDS`] (its
    /// pod cannot be scheduled or its image pulled).
    NewNodeNotReady {
        /// The node.
        node: String,
        /// Seconds since it was created.
        seconds: i64,
    },
    /// No node may be added (maxSurge used up or maxNodes reached) and the next outdated
    /// node cannot be drained: the Ready nodes would fall below `needed - maxUnavailable`,
    /// or the others have no room for what it carries.
    Blocked {
        /// The next outdated node to go.
        node: String,
        /// Participants it carries.
        participants: u32,
        /// Participants free on the Ready nodes that would stay.
        free: u32,
        /// True when maxNodes, not maxSurge, stops a new node.
        at_max_nodes: bool,
    },
}

/// The rollout's step for one pool.
pub fn plan(input: &RolloutInput<'_>) -> RolloutPlan {
    let live: Vec<&NodeView> = input
        .nodes
        .iter()
        .filter(|n| n.is_live() && !input.autoscaler_drains.contains(&n.name))
        .collect();
    let (outdated, current): (Vec<&NodeView>, Vec<&NodeView>) =
        live.iter().partition(|n| n.outdated);
    if outdated.is_empty() {
        return RolloutPlan {
            updated: count32(current.len()),
            ..RolloutPlan::default()
        };
    }
    let needed = u64::from(input.needed);
    let live_after_adds = count(live.len()) + u64::from(input.autoscaler_adds);
    let current_after_adds = count(current.len()) + u64::from(input.autoscaler_adds);
    let ceiling = (needed + u64::from(input.policy.max_surge)).min(u64::from(input.max_nodes));
    let add = ceiling
        .saturating_sub(live_after_adds)
        .min(needed.saturating_sub(current_after_adds));

    let drain = drains(input, &live, &outdated);
    let in_flight = current.iter().any(|n| !is_ready(n));
    let hold = if add > 0 || !drain.is_empty() || input.autoscaler_adds > 0 {
        None
    } else if in_flight {
        slow_new_node(&current, input.now)
    } else {
        blocked(input, &live, &outdated, ceiling, live_after_adds)
    };
    RolloutPlan {
        add: u32::try_from(add).unwrap_or(u32::MAX),
        updated: count32(current.len()),
        outdated: count32(outdated.len() - drain.len()),
        drain,
        hold,
    }
}

/// The outdated nodes to drain now: every one that is not Ready, then Ready ones emptiest
/// first while the Ready nodes stay at least `needed - maxUnavailable` and the others have
/// room for their load; stops at the first that cannot go.
fn drains(input: &RolloutInput<'_>, live: &[&NodeView], outdated: &[&NodeView]) -> Vec<String> {
    let mut drain: Vec<String> = outdated
        .iter()
        .filter(|n| !is_ready(n))
        .map(|n| n.name.clone())
        .collect();
    let mut ready_outdated: Vec<&NodeView> =
        outdated.iter().copied().filter(|n| is_ready(n)).collect();
    ready_outdated.sort_by(|a, b| emptiest_first(a, b));
    let mut ready = count(live.iter().filter(|n| is_ready(n)).count());
    let floor = u64::from(input.needed).saturating_sub(u64::from(input.policy.max_unavailable));
    let mut staying: Vec<&NodeView> = live.iter().copied().filter(|n| is_ready(n)).collect();
    let mut moving = Free::default();
    for node in ready_outdated {
        staying.retain(|n| n.name != node.name);
        let load = moving.plus(node.committed());
        if ready <= floor || !free_on(&staying).holds(&load) {
            break;
        }
        moving = load;
        ready -= 1;
        drain.push(node.name.clone());
    }
    drain
}

/// Participants and rooms free on `nodes`, summed.
fn free_on(nodes: &[&NodeView]) -> Free {
    nodes.iter().fold(Free::default(), |sum, n| {
        let used = n.committed();
        Free {
            participants: sum.participants
                + u64::from(n.capacity.participants.saturating_sub(used.participants)),
            rooms: sum.rooms + u64::from(n.capacity.rooms.saturating_sub(used.rooms)),
        }
    })
}

/// Participants and rooms summed over nodes, without overflow.
#[derive(Default)]
struct Free {
    participants: u64,
    rooms: u64,
}

impl Free {
    fn plus(&self, usage: Usage) -> Free {
        Free {
            participants: self.participants + u64::from(usage.participants),
            rooms: self.rooms + u64::from(usage.rooms),
        }
    }

    fn holds(&self, load: &Free) -> bool {
        self.participants >= load.participants && self.rooms >= load.rooms
    }
}

/// The oldest current node that has not become Ready within the patience.
fn slow_new_node(current: &[&NodeView], now: UnixSeconds) -> Option<Hold> {
    current
        .iter()
        .filter(|n| !is_ready(n))
        .map(|n| (n, now.saturating_sub(n.created_at)))
        .filter(|(_, age)| *age > NEW_NODE_PATIENCE_SECONDS)
        .max_by(|(a, x), (b, y)| x.cmp(y).then_with(|| b.name.cmp(&a.name)))
        .map(|(n, seconds)| Hold::NewNodeNotReady {
            node: n.name.clone(),
            seconds,
        })
}

/// The hold when nothing can be added or drained: the next outdated node and what stops it.
fn blocked(
    input: &RolloutInput<'_>,
    live: &[&NodeView],
    outdated: &[&NodeView],
    ceiling: u64,
    live_after_adds: u64,
) -> Option<Hold> {
    let next = outdated
        .iter()
        .copied()
        .filter(|n| is_ready(n))
        .min_by(|a, b| emptiest_first(a, b))?;
    let staying: Vec<&NodeView> = live
        .iter()
        .copied()
        .filter(|n| is_ready(n) && n.name != next.name)
        .collect();
    let surge_ceiling = u64::from(input.needed) + u64::from(input.policy.max_surge);
    Some(Hold::Blocked {
        node: next.name.clone(),
        participants: next.committed().participants,
        free: u32::try_from(free_on(&staying).participants).unwrap_or(u32::MAX),
        at_max_nodes: live_after_adds >= ceiling && ceiling < surge_ceiling,
    })
}

fn is_ready(node: &NodeView) -> bool {
    node.phase == MediaNodePhase::Ready
}

/// Fewest committed participants first, then by name.
fn emptiest_first(a: &NodeView, b: &NodeView) -> Ordering {
    a.committed()
        .participants
        .cmp(&b.committed().participants)
        .then_with(|| a.name.cmp(&b.name))
}

fn count(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn count32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::NodeCapacity;
    use proptest::prelude::*;

    const NOW: UnixSeconds = 1_000_000;

    /// A Ready node of 20 participants and 5 rooms created at NOW - 600, with `participants`
    /// in one room (none when 0), outdated when `old`.
    fn node(name: &str, participants: u32, old: bool) -> NodeView {
        NodeView {
            name: name.to_owned(),
            phase: MediaNodePhase::Ready,
            created_at: NOW - 600,
            last_heartbeat: Some(NOW),
            capacity: NodeCapacity {
                participants: 20,
                rooms: 5,
                egress_mbps: 1000,
            },
            reserved: Usage {
                participants,
                rooms: u32::from(participants > 0),
            }
            .into(),
            outdated: old,
            ..NodeView::default()
        }
    }

    fn old(name: &str, participants: u32) -> NodeView {
        node(name, participants, true)
    }

    fn new(name: &str) -> NodeView {
        node(name, 0, false)
    }

    fn starting(age: i64, base: NodeView) -> NodeView {
        NodeView {
            phase: MediaNodePhase::Starting,
            created_at: NOW - age,
            ..base
        }
    }

    fn draining(base: NodeView) -> NodeView {
        NodeView {
            draining: true,
            ..base
        }
    }

    struct Case {
        what: &'static str,
        nodes: Vec<NodeView>,
        needed: u32,
        surge: u32,
        unavailable: u32,
        max_nodes: u32,
        autoscaler_adds: u32,
        autoscaler_drains: Vec<&'static str>,
        want: RolloutPlan,
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                what: "",
                nodes: Vec::new(),
                needed: 3,
                surge: 1,
                unavailable: 0,
                max_nodes: 10,
                autoscaler_adds: 0,
                autoscaler_drains: Vec::new(),
                want: RolloutPlan::default(),
            }
        }
    }

    fn step(add: u32, drain: &[&str], updated: u32, outdated: u32) -> RolloutPlan {
        RolloutPlan {
            add,
            drain: drain.iter().map(|s| (*s).to_owned()).collect(),
            updated,
            outdated,
            hold: None,
        }
    }

    fn held(updated: u32, outdated: u32, hold: Hold) -> RolloutPlan {
        RolloutPlan {
            hold: Some(hold),
            ..step(0, &[], updated, outdated)
        }
    }

    fn check(cases: Vec<Case>) {
        for case in cases {
            let drains: Vec<String> = case
                .autoscaler_drains
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            let got = plan(&RolloutInput {
                policy: RolloutPolicy {
                    max_surge: case.surge,
                    max_unavailable: case.unavailable,
                },
                nodes: &case.nodes,
                needed: case.needed,
                max_nodes: case.max_nodes,
                autoscaler_adds: case.autoscaler_adds,
                autoscaler_drains: &drains,
                now: NOW,
            });
            assert_eq!(got, case.want, "{}", case.what);
        }
    }

    #[test]
    fn surge_first_replaces_one_node_at_a_time() {
        check(vec![
            Case {
                what: "nothing outdated: nothing to do",
                nodes: vec![new("a"), new("b"), new("c")],
                want: step(0, &[], 3, 0),
                ..Case::default()
            },
            Case {
                what: "template changed: one new node first",
                nodes: vec![old("a", 8), old("b", 0), old("c", 4)],
                want: step(1, &[], 0, 3),
                ..Case::default()
            },
            Case {
                what: "the new node is starting: wait for it",
                nodes: vec![
                    old("a", 8),
                    old("b", 0),
                    old("c", 4),
                    starting(20, new("d")),
                ],
                want: step(0, &[], 1, 3),
                ..Case::default()
            },
            Case {
                what: "the new node is Ready: drain the emptiest old one",
                nodes: vec![old("a", 8), old("b", 0), old("c", 4), new("d")],
                want: step(0, &["b"], 1, 2),
                ..Case::default()
            },
            Case {
                what: "one old node draining: the next new node",
                nodes: vec![old("a", 8), draining(old("b", 0)), old("c", 4), new("d")],
                want: step(1, &[], 1, 2),
                ..Case::default()
            },
            Case {
                what: "the last old node carries the call: its conferences move to new nodes",
                nodes: vec![old("a", 8), new("d"), new("e"), new("f")],
                want: step(0, &["a"], 3, 0),
                ..Case::default()
            },
            Case {
                what: "the autoscaler drains an old node itself: not counted again",
                nodes: vec![old("a", 8), old("b", 0), new("d")],
                autoscaler_drains: vec!["b"],
                needed: 2,
                want: step(1, &[], 1, 1),
                ..Case::default()
            },
            Case {
                what: "the autoscaler adds for demand: those nodes count as new ones",
                nodes: vec![old("a", 8), old("b", 0), old("c", 4)],
                needed: 4,
                autoscaler_adds: 1,
                want: step(1, &[], 0, 3),
                ..Case::default()
            },
            Case {
                what: "surplus kept for the scale-down delay: old nodes go without a surge",
                nodes: vec![old("a", 8), old("b", 0), old("c", 0)],
                needed: 1,
                want: step(0, &["b", "c"], 0, 1),
                ..Case::default()
            },
            Case {
                what: "old nodes that are not Ready carry nothing: drained at once",
                nodes: vec![old("a", 8), starting(5, old("b", 0)), new("d")],
                needed: 2,
                want: step(0, &["b"], 1, 1),
                ..Case::default()
            },
        ]);
    }

    #[test]
    fn unavailable_first_drains_before_adding_when_there_is_room() {
        let in_place = |what, nodes, want| Case {
            what,
            nodes,
            surge: 0,
            unavailable: 1,
            want,
            ..Case::default()
        };
        check(vec![
            in_place(
                "no surge allowed: drain the emptiest old node",
                vec![old("a", 8), old("b", 0), old("c", 4)],
                step(0, &["b"], 0, 2),
            ),
            in_place(
                "one node out: replace it before the next",
                vec![old("a", 8), draining(old("b", 0)), old("c", 4)],
                step(1, &[], 0, 2),
            ),
            in_place(
                "its replacement is starting: wait",
                vec![old("a", 8), old("c", 4), starting(30, new("d"))],
                step(0, &[], 1, 2),
            ),
            in_place(
                "the others cannot hold its conferences: hold",
                vec![old("a", 18), old("b", 17), old("c", 16)],
                held(
                    0,
                    3,
                    Hold::Blocked {
                        node: "c".into(),
                        participants: 16,
                        free: 5,
                        at_max_nodes: false,
                    },
                ),
            ),
        ]);
    }

    #[test]
    fn what_holds_a_rollout_up_is_named() {
        check(vec![
            Case {
                what: "maxNodes leaves no room for a surge",
                nodes: vec![old("a", 8), old("b", 0), old("c", 4)],
                max_nodes: 3,
                want: held(
                    0,
                    3,
                    Hold::Blocked {
                        node: "b".into(),
                        participants: 0,
                        free: 28,
                        at_max_nodes: true,
                    },
                ),
                ..Case::default()
            },
            Case {
                what: "the new node is not Ready after the patience",
                nodes: vec![
                    old("a", 8),
                    old("b", 0),
                    old("c", 4),
                    starting(121, new("d")),
                ],
                want: held(
                    1,
                    3,
                    Hold::NewNodeNotReady {
                        node: "d".into(),
                        seconds: 121,
                    },
                ),
                ..Case::default()
            },
        ]);
    }

    fn arb_nodes() -> impl Strategy<Value = Vec<NodeView>> {
        prop::collection::vec(
            (0u32..=20, any::<bool>(), any::<bool>(), any::<bool>()),
            0..8,
        )
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (load, outdated, ready, drain))| {
                    let mut n = node(&format!("n{i}"), load, outdated);
                    if !ready {
                        n = starting(
                            10,
                            NodeView {
                                reserved: Usage::default().into(),
                                ..n
                            },
                        );
                    }
                    NodeView {
                        draining: drain,
                        ..n
                    }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn never_beyond_surge_below_availability_or_without_room(
            nodes in arb_nodes(), needed in 0u32..8, surge in 0u32..3, unavailable in 0u32..3,
        ) {
            let got = plan(&RolloutInput {
                policy: RolloutPolicy { max_surge: surge, max_unavailable: unavailable },
                nodes: &nodes,
                needed,
                max_nodes: 10,
                autoscaler_adds: 0,
                autoscaler_drains: &[],
                now: NOW,
            });
            let live: Vec<&NodeView> = nodes.iter().filter(|n| n.is_live()).collect();
            let ready = live.iter().filter(|n| is_ready(n)).count() as u64;
            let drained_ready: Vec<&NodeView> = live
                .iter()
                .copied()
                .filter(|n| is_ready(n) && got.drain.contains(&n.name))
                .collect();
            if got.add > 0 {
                prop_assert!(live.len() as u64 + u64::from(got.add) <= u64::from(needed + surge));
            }
            if !drained_ready.is_empty() {
                let floor = u64::from(needed.saturating_sub(unavailable));
                prop_assert!(ready - drained_ready.len() as u64 >= floor);
                let staying: Vec<&NodeView> = live
                    .iter()
                    .copied()
                    .filter(|n| is_ready(n) && !got.drain.contains(&n.name))
                    .collect();
                let load: u64 = drained_ready.iter().map(|n| u64::from(n.committed().participants)).sum();
                prop_assert!(free_on(&staying).participants >= load);
            }
            for name in &got.drain {
                prop_assert!(live.iter().any(|n| &n.name == name && n.outdated));
            }
        }
    }
}
