//! Autoscaling: how many media nodes a pool needs, which to drain and which to delete.
//!
//! Demand is what live nodes have committed (reserved or reported, whichever is larger), plus
//! conferences waiting for placement (ad hoc, or scheduled to start within the look-ahead),
//! plus the pool's buffer of spare participants, over the look-ahead: the warm-up window plus
//! the time the pool's nodes take to start (`startup_lead`), so that the capacity a scheduled
//! conference needs is Ready when its warm-up begins and it is placed. A reservation counts
//! only over its conference's span (`reservation`), so a meeting booked for 10:00 is carried
//! by the room of one that ends at 10:00 instead of by a new node. Waiting conferences are
//! packed (first fit, largest first) onto the free room of live nodes, opening new nodes where
//! none fits; then nodes are added until the free participants on live nodes reach the
//! buffer. Everything is clamped to minNodes..=maxNodes.
//!
//! Growing takes back nodes the autoscaler drained as surplus before it creates new ones: a
//! draining node that still hosts rooms is running anyway, Ready at once, and its meetings
//! keep it up until they end. The emptiest is taken back first, and only as many as the
//! demand needs.
//!
//! Shrinking waits until the pool has had surplus for scaleDownDelaySeconds (no flapping),
//! then drains live nodes in drain order (outdated nodes first, then those whose
//! reservations end soonest, so a drained node empties and goes instead of hosting one long
//! meeting, then the emptiest, not-yet-Ready nodes and the newest first on ties) while what
//! stays still carries the demand plus the buffer; live nodes above maxNodes (the limit was
//! lowered) are drained at once, in the same order. Draining nodes are deleted when
//! empty (nothing reserved or reported) or when their drain timeout passed; Failed and
//! Drained nodes are deleted at once. A node hosting a live conference is never deleted
//! before its drain timeout.

use super::reservation::{Reservation, Reservations, Span};
use super::{NodeView, UnixSeconds};
use conclave_crds::capacity::{Usage, nodes_for};
use conclave_crds::{MediaNodePhase, NodeCapacity};
use std::cmp::Ordering;

/// A conference waiting for a node (unplaced; demand once due: ad hoc, or starting within
/// warm-up): what it will reserve, from its startTime (none if ad hoc) to its endTime.
pub type WaitingConference = Reservation;

/// The pool's scaling policy, from `spec.scaling` and `spec.nodeCapacity`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingPolicy {
    /// Fewest live nodes.
    pub min_nodes: u32,
    /// Most live nodes.
    pub max_nodes: u32,
    /// Spare participants kept free on live nodes.
    pub buffer_participants: u32,
    /// Scheduled conferences starting within this many seconds count as demand.
    pub warmup_seconds: i64,
    /// Surplus must last this long before nodes are drained.
    pub scale_down_delay_seconds: i64,
    /// A draining node is deleted after this long even if not empty.
    pub drain_timeout_seconds: i64,
    /// Capacity of a new node.
    pub node_capacity: conclave_crds::NodeCapacity,
}

/// Everything the autoscaler looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingInput<'a> {
    /// Policy of the pool.
    pub policy: &'a ScalingPolicy,
    /// Every MediaNode of the pool, in any phase.
    pub nodes: &'a [NodeView],
    /// Conferences not yet placed. Scheduled ones starting later than the look-ahead (now +
    /// warm-up + startup lead) are ignored by the autoscaler (it filters them itself).
    pub waiting: &'a [WaitingConference],
    /// `status.surplusSince` of the pool.
    pub surplus_since: Option<UnixSeconds>,
    /// How long a new node takes to start (`startup_lead`): capacity for a scheduled
    /// conference is brought up this long before its warm-up begins, so it is Ready then.
    pub startup_lead: i64,
    /// The time.
    pub now: UnixSeconds,
}

impl ScalingInput<'_> {
    /// How far ahead scheduled conferences count as demand: the warm-up, plus the time a node
    /// takes to start.
    fn lookahead(&self) -> i64 {
        self.policy
            .warmup_seconds
            .max(0)
            .saturating_add(self.startup_lead.clamp(0, MAX_STARTUP_LEAD))
    }
}

/// The longest start the autoscaler plans ahead for: a slower one is a stuck node, not a
/// measure of how long the next takes.
pub const MAX_STARTUP_LEAD: i64 = 3600;

/// How long the pool's nodes take to start: the slowest start (creation to first Ready) among
/// its nodes, or `known` (the pool's last figure) when none of them has started.
pub fn startup_lead(nodes: &[NodeView], known: Option<i64>) -> Option<i64> {
    nodes
        .iter()
        .filter_map(|n| n.startup_seconds)
        .max()
        .or(known)
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScalingPlan {
    /// Live nodes wanted (Pending, Starting or Ready, not draining).
    pub desired_nodes: u32,
    /// New MediaNodes to create.
    pub add: u32,
    /// Draining nodes to take back (clear spec.draining): drained as surplus, still hosting.
    pub reclaim: Vec<String>,
    /// Nodes to start draining (set spec.draining).
    pub drain: Vec<String>,
    /// Nodes to delete (pod and MediaNode).
    pub delete: Vec<String>,
    /// The new `status.surplusSince`: kept while surplus lasts, set when it starts, cleared
    /// when capacity is needed or after nodes were drained.
    pub surplus_since: Option<UnixSeconds>,
    /// Seconds until the plan may change with no input change (the scale-down delay or a
    /// drain timeout running out, a scheduled conference entering the warm-up window), so
    /// the reconciler requeues then. None when nothing is pending.
    pub recheck_after: Option<i64>,
}

/// Computes the plan for one pool.
pub fn plan(input: &ScalingInput<'_>) -> ScalingPlan {
    let policy = input.policy;
    let fleet = Fleet::sort(input);
    let waiting = Waiting::due(input);
    let growth = grow(policy, &fleet, &waiting, horizon(input));
    let shrink = if growth.add > 0 || !growth.reclaim.is_empty() {
        Shrink::default()
    } else {
        shrink(input, &growth.live, growth.packing.demand)
    };
    let next_drain_timeout = fleet.next_drain_timeout(&growth.reclaim);
    let kept = count(growth.live.len())
        .saturating_add(growth.add)
        .saturating_sub(count(shrink.drain.len()));
    ScalingPlan {
        desired_nodes: u32::try_from(kept).unwrap_or(u32::MAX),
        add: u32::try_from(growth.add).unwrap_or(u32::MAX),
        reclaim: names(&growth.reclaim),
        drain: shrink.drain,
        delete: fleet.delete,
        surplus_since: shrink.surplus_since,
        recheck_after: [
            shrink.recheck_after,
            next_drain_timeout,
            waiting.next_due_in,
        ]
        .into_iter()
        .flatten()
        .min(),
    }
}

/// Live nodes the pool needs now: those `plan` would keep if the surplus had lasted the
/// scale-down delay. The rollout sizes the pool it replaces by this, not by nodes kept only
/// while the delay runs (such as its own surge).
pub fn needed_nodes(input: &ScalingInput<'_>) -> u32 {
    plan(&ScalingInput {
        surplus_since: Some(UnixSeconds::MIN),
        ..input.clone()
    })
    .desired_nodes
}

/// What growing the pool takes: the live nodes with those taken back, and new nodes.
struct Growth<'a> {
    /// Live nodes, the reclaimed ones included.
    live: Vec<&'a NodeView>,
    /// Draining nodes taken back.
    reclaim: Vec<&'a NodeView>,
    /// New nodes to create.
    add: u64,
    /// The waiting conferences packed onto `live` and the new nodes.
    packing: Packing,
}

/// Packs the waiting conferences onto the live nodes and counts the nodes still missing;
/// while some are, takes back the emptiest reclaimable draining node and packs again.
fn grow<'a>(
    policy: &ScalingPolicy,
    fleet: &Fleet<'a>,
    waiting: &Waiting,
    horizon: Horizon,
) -> Growth<'a> {
    let mut live = fleet.live.clone();
    let mut candidates = fleet.reclaimable.clone();
    candidates.sort_by(|a, b| {
        horizon
            .committed(a)
            .participants
            .cmp(&horizon.committed(b).participants)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut candidates = candidates.into_iter();
    let mut reclaim = Vec::new();
    loop {
        let live_count = count(live.len());
        let new_node_limit = max_nodes(policy).saturating_sub(live_count);
        let packing = pack(
            &live,
            &waiting.due,
            policy.node_capacity,
            new_node_limit,
            horizon,
        );
        let add = nodes_to_add(policy, live_count, &packing);
        match candidates.next() {
            Some(node) if add > 0 => {
                live.push(node);
                reclaim.push(node);
            }
            _ => {
                return Growth {
                    live,
                    reclaim,
                    add,
                    packing,
                };
            }
        }
    }
}

/// The pool's nodes, by what the plan may do with them.
struct Fleet<'a> {
    /// Pending, Starting or Ready and not draining, in name order.
    live: Vec<&'a NodeView>,
    /// Draining nodes the autoscaler may take back: drained as surplus, Ready before, still
    /// hosting rooms, answering at their address and of the current template, in name order.
    reclaimable: Vec<&'a NodeView>,
    /// Failed and Drained nodes, and draining nodes that are empty or past their drain
    /// timeout, in name order.
    delete: Vec<String>,
    /// Draining nodes that still carry load, with the seconds until their drain timeout.
    draining: Vec<(&'a NodeView, Option<i64>)>,
}

impl<'a> Fleet<'a> {
    fn sort(input: &ScalingInput<'a>) -> Self {
        let mut fleet = Fleet {
            live: Vec::new(),
            reclaimable: Vec::new(),
            delete: Vec::new(),
            draining: Vec::new(),
        };
        for node in input.nodes {
            match node.phase {
                MediaNodePhase::Failed | MediaNodePhase::Drained => {
                    fleet.delete.push(node.name.clone())
                }
                // Still Draining in status after its drain was taken back, and empty: its
                // process may have finished draining first, so it goes like a drained node.
                MediaNodePhase::Draining
                    if !node.draining && node.committed() == Usage::default() =>
                {
                    fleet.delete.push(node.name.clone())
                }
                _ if node.draining => {
                    match judge_draining(node, input.policy.drain_timeout_seconds, input.now) {
                        Draining::Delete => fleet.delete.push(node.name.clone()),
                        Draining::Keep(remaining) => {
                            fleet.draining.push((node, remaining));
                            if may_take_back(node) {
                                fleet.reclaimable.push(node);
                            }
                        }
                    }
                }
                _ => fleet.live.push(node),
            }
        }
        fleet.live.sort_by(|a, b| a.name.cmp(&b.name));
        fleet.reclaimable.sort_by(|a, b| a.name.cmp(&b.name));
        fleet.delete.sort();
        fleet
    }

    /// Seconds until the first drain timeout of a draining node that still carries load and
    /// is not taken back.
    fn next_drain_timeout(&self, taken_back: &[&NodeView]) -> Option<i64> {
        self.draining
            .iter()
            .filter(|(node, _)| !taken_back.iter().any(|t| t.name == node.name))
            .filter_map(|(_, remaining)| *remaining)
            .min()
    }
}

/// Whether the drain of a draining node that is kept may be taken back: the autoscaler
/// drained it as surplus, it was Ready (its process takes rooms again), conferences are still
/// placed on it (its process drains until their rooms close) and nothing else would drain it
/// again. (Should its process have drained first, the node stays Draining in status, empty,
/// and goes.)
fn may_take_back(node: &NodeView) -> bool {
    node.drained_as_surplus
        && matches!(node.phase, MediaNodePhase::Ready | MediaNodePhase::Draining)
        && node.reserved.total().rooms > 0
        && !node.unreachable
        && !node.outdated
}

/// What becomes of a draining node.
enum Draining {
    /// Empty (nothing reserved or reported), or its drain timeout passed.
    Delete,
    /// Still carries load; the drain timeout runs out in this many seconds (None when the
    /// drain has no start time, so it cannot time out yet).
    Keep(Option<i64>),
}

fn judge_draining(node: &NodeView, timeout: i64, now: UnixSeconds) -> Draining {
    if node.committed() == Usage::default() {
        return Draining::Delete;
    }
    let Some(since) = node.draining_since else {
        return Draining::Keep(None);
    };
    let elapsed = now.saturating_sub(since);
    if elapsed >= timeout {
        Draining::Delete
    } else {
        Draining::Keep(Some(timeout.saturating_sub(elapsed)))
    }
}

/// The moments the plan looks at: from now to the end of the look-ahead, within which every
/// waiting scheduled conference it counts starts.
#[derive(Clone, Copy)]
struct Horizon {
    now: UnixSeconds,
    span: Span,
}

fn horizon(input: &ScalingInput<'_>) -> Horizon {
    Horizon {
        now: input.now,
        span: Span::of(
            None,
            Some(
                input
                    .now
                    .saturating_add(input.lookahead())
                    .saturating_add(1),
            ),
        ),
    }
}

impl Horizon {
    /// What `node` has committed at its worst moment of the horizon.
    fn committed(&self, node: &NodeView) -> Usage {
        node.committed_over(self.span, self.now)
    }
}

/// The waiting conferences that count as demand now.
struct Waiting {
    /// Their reservations, largest first.
    due: Vec<Reservation>,
    /// Seconds until the next scheduled conference enters the look-ahead.
    next_due_in: Option<i64>,
}

impl Waiting {
    fn due(input: &ScalingInput<'_>) -> Self {
        let lookahead = input.lookahead();
        let mut waiting = Waiting {
            due: Vec::new(),
            next_due_in: None,
        };
        for conference in input.waiting {
            let starts_in = conference
                .span
                .from
                .map_or(0, |start| start.saturating_sub(input.now));
            if starts_in <= lookahead {
                waiting.due.push(*conference);
            } else {
                let due_in = starts_in.saturating_sub(lookahead);
                waiting.next_due_in = earliest(waiting.next_due_in, Some(due_in));
            }
        }
        // Largest first; ties broken on everything else, so that the order the conferences
        // came in never changes the plan.
        waiting.due.sort_by_key(|r| {
            (
                std::cmp::Reverse(r.usage.participants),
                std::cmp::Reverse(r.growth),
                r.span.from,
                r.span.until,
            )
        });
        waiting
    }
}

/// Participants and rooms summed over many nodes or conferences, without overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Total {
    participants: u64,
    rooms: u64,
}

impl Total {
    fn add(self, usage: Usage) -> Self {
        Total {
            participants: self.participants + u64::from(usage.participants),
            rooms: self.rooms + u64::from(usage.rooms),
        }
    }

    fn without(self, capacity: NodeCapacity) -> Self {
        Total {
            participants: self
                .participants
                .saturating_sub(u64::from(capacity.participants)),
            rooms: self.rooms.saturating_sub(u64::from(capacity.rooms)),
        }
    }

    fn covers(self, needed: Total) -> bool {
        self.participants >= needed.participants && self.rooms >= needed.rooms
    }
}

/// A live or planned node while waiting conferences are packed onto it.
struct Bin {
    capacity: NodeCapacity,
    reserved: Reservations,
    reported: Usage,
}

impl Bin {
    fn committed_over(&self, span: Span, now: UnixSeconds) -> Usage {
        self.reserved.committed_over(self.reported, span, now)
    }
}

/// The outcome of packing the waiting conferences.
struct Packing {
    /// New nodes opened for conferences that fit on no live node.
    new_nodes: u64,
    /// Participants still free on the live and new nodes afterwards.
    free_participants: u64,
    /// What the waiting conferences ask for, leaving out those no node can ever carry.
    demand: Total,
}

/// Packs the `due` conferences (largest first) onto the first live node, in name order, with
/// room for them over their span, opening new nodes of `new_node` capacity where none has, at
/// most `new_node_limit` of them (maxNodes). A conference that fits neither a live node nor an
/// empty new node is skipped: placement reports it TooLarge. Free participants are counted
/// at each node's worst moment of the horizon.
fn pack(
    live: &[&NodeView],
    due: &[Reservation],
    new_node: NodeCapacity,
    new_node_limit: u64,
    horizon: Horizon,
) -> Packing {
    let mut bins: Vec<Bin> = live
        .iter()
        .map(|node| Bin {
            // Placement gives a node whose address does not answer nothing new.
            capacity: if node.unreachable {
                NodeCapacity {
                    participants: 0,
                    rooms: 0,
                    ..node.capacity
                }
            } else {
                node.capacity
            },
            reserved: node.reserved.clone(),
            reported: node.reported,
        })
        .collect();
    let mut new_nodes = 0;
    let mut demand = Total::default();
    for &conference in due {
        let fits = |bin: &Bin| {
            bin.capacity.fits(
                bin.committed_over(conference.span, horizon.now),
                bin.reserved.added_by(&conference, horizon.now),
            )
        };
        if let Some(bin) = bins.iter_mut().find(|bin| fits(bin)) {
            bin.reserved.add(conference);
        } else if !new_node.fits(Usage::default(), conference.full()) {
            continue;
        } else if new_nodes < new_node_limit {
            bins.push(Bin {
                capacity: new_node,
                reserved: Reservations::from_iter([conference]),
                reported: Usage::default(),
            });
            new_nodes += 1;
        }
        demand = demand.add(conference.usage);
    }
    let free_participants = bins
        .iter()
        .map(|bin| {
            let worst = bin.committed_over(horizon.span, horizon.now);
            u64::from(bin.capacity.free_participants(worst))
        })
        .sum();
    Packing {
        new_nodes,
        free_participants,
        demand,
    }
}

/// Nodes to create: those the waiting conferences opened, plus enough to bring the free
/// participants up to the buffer, with the pool clamped to minNodes..=maxNodes.
fn nodes_to_add(policy: &ScalingPolicy, live: u64, packing: &Packing) -> u64 {
    let missing = u64::from(policy.buffer_participants).saturating_sub(packing.free_participants);
    let for_buffer = nodes_for(missing, policy.node_capacity.participants);
    let wanted = live
        .saturating_add(packing.new_nodes)
        .saturating_add(for_buffer);
    let desired = wanted.clamp(u64::from(policy.min_nodes), max_nodes(policy));
    desired.saturating_sub(live)
}

/// The scale-down part of the plan.
#[derive(Default)]
struct Shrink {
    drain: Vec<String>,
    surplus_since: Option<UnixSeconds>,
    recheck_after: Option<i64>,
}

/// Decides scale-down when no node is to be added. Live nodes above maxNodes (the limit was
/// lowered) are drained at once; otherwise surplus nodes are drained once the surplus has
/// lasted scaleDownDelaySeconds.
fn shrink(input: &ScalingInput<'_>, live: &[&NodeView], waiting: Total) -> Shrink {
    let policy = input.policy;
    let mut in_drain_order = live.to_vec();
    in_drain_order.sort_by(|a, b| drain_order(a, b, input.now));
    let excess = count(live.len()).saturating_sub(max_nodes(policy));
    if excess > 0 {
        in_drain_order.truncate(usize::try_from(excess).unwrap_or(usize::MAX));
        return Shrink {
            drain: names(&in_drain_order),
            ..Shrink::default()
        };
    }
    let surplus = surplus_nodes(&in_drain_order, policy, waiting, horizon(input));
    if surplus.is_empty() {
        return Shrink::default();
    }
    let since = input.surplus_since.unwrap_or(input.now);
    let elapsed = input.now.saturating_sub(since);
    if elapsed >= policy.scale_down_delay_seconds {
        Shrink {
            drain: names(&surplus),
            ..Shrink::default()
        }
    } else {
        Shrink {
            drain: Vec::new(),
            surplus_since: Some(since),
            recheck_after: Some(policy.scale_down_delay_seconds.saturating_sub(elapsed)),
        }
    }
}

/// The first live nodes in drain order that can go while at least minNodes stay and the
/// nodes that stay still carry everything committed over the horizon (the load of the drained
/// nodes moves to them), the waiting demand and the buffer, in participants and in rooms.
/// Stops at the first node that cannot go, so a node later in drain order is never drained
/// while an earlier one stays.
fn surplus_nodes<'a>(
    in_drain_order: &[&'a NodeView],
    policy: &ScalingPolicy,
    waiting: Total,
    horizon: Horizon,
) -> Vec<&'a NodeView> {
    let committed = in_drain_order.iter().fold(Total::default(), |sum, node| {
        sum.add(horizon.committed(node))
    });
    let needed = Total {
        participants: committed.participants
            + waiting.participants
            + u64::from(policy.buffer_participants),
        rooms: committed.rooms + waiting.rooms,
    };
    let mut kept = in_drain_order.iter().fold(Total::default(), |sum, node| {
        sum.add(capacity_usage(node.capacity))
    });
    let mut kept_nodes = count(in_drain_order.len());
    let mut surplus = Vec::new();
    for node in in_drain_order {
        let after = kept.without(node.capacity);
        if kept_nodes <= u64::from(policy.min_nodes) || !after.covers(needed) {
            break;
        }
        kept = after;
        kept_nodes -= 1;
        surplus.push(*node);
    }
    surplus
}

/// Orders live nodes for draining: outdated before current (a rollout replaces them anyway),
/// then the one whose reservations end soonest (a node hosting an ad-hoc conference, whose
/// end is unknown, last), then fewest committed participants, then not-Ready before Ready,
/// then the newest, then by name.
fn drain_order(a: &NodeView, b: &NodeView, now: UnixSeconds) -> Ordering {
    let is_ready = |node: &NodeView| node.phase == MediaNodePhase::Ready;
    b.outdated
        .cmp(&a.outdated)
        .then_with(|| a.reserved.empties_at(now).cmp(&b.reserved.empties_at(now)))
        .then_with(|| a.committed().participants.cmp(&b.committed().participants))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| b.created_at.cmp(&a.created_at))
        .then_with(|| a.name.cmp(&b.name))
}

/// A node's capacity as a usage, to sum capacities.
fn capacity_usage(capacity: NodeCapacity) -> Usage {
    Usage {
        participants: capacity.participants,
        rooms: capacity.rooms,
    }
}

/// maxNodes, never below minNodes (the API refuses min > max; this keeps a bad input from
/// panicking in `clamp`).
fn max_nodes(policy: &ScalingPolicy) -> u64 {
    u64::from(policy.max_nodes.max(policy.min_nodes))
}

fn count(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

fn names(nodes: &[&NodeView]) -> Vec<String> {
    nodes.iter().map(|node| node.name.clone()).collect()
}

/// The sooner of two optional delays.
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::reservation::Span;
    use proptest::prelude::*;

    const NOW: UnixSeconds = 1_000_000;
    const NODE: NodeCapacity = NodeCapacity {
        participants: 200,
        rooms: 50,
        egress_mbps: 1000,
    };

    /// minNodes 1, maxNodes 10, buffer 50, warm-up 300 s, scale-down delay 300 s, drain
    /// timeout 3600 s, nodes of 200 participants and 50 rooms.
    fn policy() -> ScalingPolicy {
        ScalingPolicy {
            min_nodes: 1,
            max_nodes: 10,
            buffer_participants: 50,
            warmup_seconds: 300,
            scale_down_delay_seconds: 300,
            drain_timeout_seconds: 3600,
            node_capacity: NODE,
        }
    }

    /// A Ready node created at 0 with `participants` reserved in one room (none when 0).
    fn node(name: &str, participants: u32) -> NodeView {
        NodeView {
            name: name.to_owned(),
            phase: MediaNodePhase::Ready,
            last_heartbeat: Some(NOW),
            capacity: NODE,
            reserved: Usage {
                participants,
                rooms: u32::from(participants > 0),
            }
            .into(),
            ..NodeView::default()
        }
    }

    fn phase(phase: MediaNodePhase, base: NodeView) -> NodeView {
        NodeView { phase, ..base }
    }

    fn draining_since(since: Option<UnixSeconds>, base: NodeView) -> NodeView {
        NodeView {
            draining: true,
            draining_since: since,
            ..base
        }
    }

    fn created(created_at: UnixSeconds, base: NodeView) -> NodeView {
        NodeView { created_at, ..base }
    }

    fn ad_hoc(max_participants: u32) -> WaitingConference {
        Reservation::conference(max_participants, max_participants, Span::ALWAYS)
    }

    fn starting_in(seconds: i64, max_participants: u32) -> WaitingConference {
        let span = Span::of(Some(NOW + seconds), None);
        Reservation::conference(max_participants, max_participants, span)
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|&name| name.to_owned()).collect()
    }

    /// A plan keeping `desired` nodes and changing nothing else.
    fn steady(desired_nodes: u32) -> ScalingPlan {
        ScalingPlan {
            desired_nodes,
            ..ScalingPlan::default()
        }
    }

    /// A plan adding `add` nodes to reach `desired_nodes`.
    fn adding(add: u32, desired_nodes: u32) -> ScalingPlan {
        ScalingPlan {
            add,
            ..steady(desired_nodes)
        }
    }

    /// A plan draining `drain`, leaving `desired_nodes` live.
    fn draining(drain: &[&str], desired_nodes: u32) -> ScalingPlan {
        ScalingPlan {
            drain: names(drain),
            ..steady(desired_nodes)
        }
    }

    /// A plan deleting `delete`, keeping `desired_nodes` live.
    fn deleting(delete: &[&str], desired_nodes: u32) -> ScalingPlan {
        ScalingPlan {
            delete: names(delete),
            ..steady(desired_nodes)
        }
    }

    struct Case {
        what: &'static str,
        policy: ScalingPolicy,
        nodes: Vec<NodeView>,
        waiting: Vec<WaitingConference>,
        surplus_since: Option<UnixSeconds>,
        want: ScalingPlan,
    }

    impl Default for Case {
        fn default() -> Self {
            Case {
                what: "",
                policy: policy(),
                nodes: Vec::new(),
                waiting: Vec::new(),
                surplus_since: None,
                want: ScalingPlan::default(),
            }
        }
    }

    fn check(cases: Vec<Case>) {
        for case in cases {
            let got = plan(&ScalingInput {
                policy: &case.policy,
                nodes: &case.nodes,
                waiting: &case.waiting,
                surplus_since: case.surplus_since,
                startup_lead: 0,
                now: NOW,
            });
            assert_eq!(got, case.want, "{}", case.what);
        }
    }

    #[test]
    fn growth_keeps_the_buffer_within_min_and_max() {
        check(vec![
            Case {
                what: "an empty pool starts minNodes",
                policy: ScalingPolicy {
                    min_nodes: 2,
                    ..policy()
                },
                want: adding(2, 2),
                ..Case::default()
            },
            Case {
                what: "minNodes 0, no buffer, no load: nothing to do",
                policy: ScalingPolicy {
                    min_nodes: 0,
                    buffer_participants: 0,
                    ..policy()
                },
                want: steady(0),
                ..Case::default()
            },
            Case {
                what: "minNodes 0 still keeps the buffer warm",
                policy: ScalingPolicy {
                    min_nodes: 0,
                    ..policy()
                },
                want: adding(1, 1),
                ..Case::default()
            },
            Case {
                what: "free participants below the buffer: add a node",
                nodes: vec![node("a", 180)],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "free participants exactly at the buffer: nothing to add",
                nodes: vec![node("a", 150)],
                want: steady(1),
                ..Case::default()
            },
            Case {
                what: "reported load above the reservations counts",
                nodes: vec![NodeView {
                    reported: Usage {
                        participants: 190,
                        rooms: 1,
                    },
                    ..node("a", 100)
                }],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "a large buffer needs several nodes",
                policy: ScalingPolicy {
                    buffer_participants: 450,
                    ..policy()
                },
                nodes: vec![node("a", 0)],
                want: adding(2, 3),
                ..Case::default()
            },
            Case {
                what: "maxNodes caps growth",
                policy: ScalingPolicy {
                    max_nodes: 3,
                    buffer_participants: 5000,
                    ..policy()
                },
                nodes: vec![node("a", 0)],
                want: adding(2, 3),
                ..Case::default()
            },
            Case {
                what: "at maxNodes nothing is added, however large the demand",
                policy: ScalingPolicy {
                    max_nodes: 2,
                    ..policy()
                },
                nodes: vec![node("a", 200), node("b", 200)],
                waiting: vec![ad_hoc(100), ad_hoc(100)],
                want: steady(2),
                ..Case::default()
            },
            Case {
                what: "minNodes above maxNodes (refused by the API) does not panic: min wins",
                policy: ScalingPolicy {
                    min_nodes: 3,
                    max_nodes: 1,
                    ..policy()
                },
                want: adding(3, 3),
                ..Case::default()
            },
            Case {
                what: "draining nodes do not count as live",
                policy: ScalingPolicy {
                    min_nodes: 2,
                    ..policy()
                },
                nodes: vec![node("a", 0), draining_since(Some(NOW - 10), node("b", 20))],
                want: ScalingPlan {
                    desired_nodes: 2,
                    add: 1,
                    recheck_after: Some(3590),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
        ]);
    }

    #[test]
    fn growth_packs_waiting_conferences() {
        use MediaNodePhase::*;
        check(vec![
            Case {
                what: "conferences that fit on no live node open new nodes",
                nodes: vec![node("a", 0)],
                waiting: vec![ad_hoc(150), ad_hoc(150), ad_hoc(150)],
                want: adding(2, 3),
                ..Case::default()
            },
            Case {
                what: "the buffer is counted after packing",
                nodes: vec![node("a", 0)],
                waiting: vec![ad_hoc(180)],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "largest first: 130, 130, 70, 70 pack onto two nodes, not three",
                policy: ScalingPolicy {
                    min_nodes: 0,
                    buffer_participants: 0,
                    ..policy()
                },
                waiting: vec![ad_hoc(70), ad_hoc(70), ad_hoc(130), ad_hoc(130)],
                want: adding(2, 2),
                ..Case::default()
            },
            Case {
                what: "rooms count: a node with no free room takes no conference",
                nodes: vec![NodeView {
                    reserved: Usage {
                        participants: 10,
                        rooms: 50,
                    }
                    .into(),
                    ..node("a", 0)
                }],
                waiting: vec![ad_hoc(5)],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "a node whose address does not answer takes nothing: another is added",
                nodes: vec![NodeView {
                    unreachable: true,
                    ..node("a", 0)
                }],
                waiting: vec![ad_hoc(10)],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "a conference larger than a node is skipped (placement says TooLarge)",
                nodes: vec![node("a", 0)],
                waiting: vec![ad_hoc(500)],
                want: steady(1),
                ..Case::default()
            },
            Case {
                what: "not-yet-Ready nodes count with their full capacity",
                policy: ScalingPolicy {
                    min_nodes: 2,
                    ..policy()
                },
                nodes: vec![phase(Pending, node("a", 0)), phase(Starting, node("b", 0))],
                waiting: vec![ad_hoc(150)],
                want: steady(2),
                ..Case::default()
            },
            Case {
                what: "pre-warm: 200 s before start with a warm-up of 300 s counts",
                nodes: vec![node("a", 0)],
                waiting: vec![starting_in(200, 180)],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "exactly at the warm-up window it counts",
                nodes: vec![node("a", 0)],
                waiting: vec![starting_in(300, 180)],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "400 s before start it does not count yet; recheck when it will",
                nodes: vec![node("a", 0)],
                waiting: vec![starting_in(400, 180)],
                want: ScalingPlan {
                    desired_nodes: 1,
                    recheck_after: Some(100),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
            Case {
                what: "a conference whose start passed counts",
                nodes: vec![node("a", 0)],
                waiting: vec![starting_in(-60, 180)],
                want: adding(1, 2),
                ..Case::default()
            },
        ]);
    }

    #[test]
    fn capacity_for_a_scheduled_conference_starts_a_node_start_before_its_warm_up() {
        let policy = policy();
        let nodes = [node("a", 0)];
        let lead = |startup_lead, starts_in| {
            plan(&ScalingInput {
                policy: &policy,
                nodes: &nodes,
                waiting: &[starting_in(starts_in, 180)],
                surplus_since: None,
                startup_lead,
                now: NOW,
            })
        };
        // Warm-up 300 s, nodes take 100 s to start: at 400 s before its start the node is
        // created, so it is Ready when the conference is placed.
        assert_eq!(lead(100, 400), adding(1, 2));
        assert_eq!(
            lead(100, 450),
            ScalingPlan {
                desired_nodes: 1,
                recheck_after: Some(50),
                ..ScalingPlan::default()
            }
        );
        // A start slower than an hour is a stuck node: the autoscaler looks no further.
        assert_eq!(lead(100_000, 300 + MAX_STARTUP_LEAD), adding(1, 2));
        assert_eq!(lead(100_000, 301 + MAX_STARTUP_LEAD).add, 0);
    }

    #[test]
    fn the_startup_lead_is_the_slowest_start_of_the_pool_or_the_last_known() {
        let started = |name, seconds| NodeView {
            startup_seconds: seconds,
            ..node(name, 0)
        };
        let pool = [
            started("a", Some(40)),
            started("b", Some(95)),
            started("c", None),
        ];
        assert_eq!(startup_lead(&pool, Some(300)), Some(95));
        assert_eq!(startup_lead(&pool[2..], Some(300)), Some(300));
        assert_eq!(startup_lead(&pool[2..], None), None);
        assert_eq!(startup_lead(&[], None), None);
    }

    /// A Ready node holding reservations of `held` (participants, span) only.
    fn holding(name: &str, held: &[(u32, Span)]) -> NodeView {
        NodeView {
            reserved: held
                .iter()
                .map(|&(participants, span)| {
                    Reservation::conference(participants, participants, span)
                })
                .collect(),
            ..node(name, 0)
        }
    }

    fn between(from: Option<i64>, until: Option<i64>) -> Span {
        Span::of(from.map(|f| NOW + f), until.map(|u| NOW + u))
    }

    fn booked(starts_in: i64, ends_in: i64, max_participants: u32) -> WaitingConference {
        let span = Span::of(Some(NOW + starts_in), Some(NOW + ends_in));
        Reservation::conference(max_participants, max_participants, span)
    }

    #[test]
    fn reservations_count_over_their_span() {
        let lean = ScalingPolicy {
            buffer_participants: 20,
            ..policy()
        };
        check(vec![
            Case {
                what: "a booking is carried by the room of a meeting that ends at its start",
                policy: lean.clone(),
                nodes: vec![holding("a", &[(180, between(None, Some(200)))])],
                waiting: vec![booked(200, 2000, 150)],
                want: steady(1),
                ..Case::default()
            },
            Case {
                what: "a meeting ending a minute after the booking starts needs another node",
                policy: lean.clone(),
                nodes: vec![holding("a", &[(180, between(None, Some(260)))])],
                waiting: vec![booked(200, 2000, 150)],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "the buffer must stay free at the worst moment of the warm-up window",
                policy: lean.clone(),
                nodes: vec![holding(
                    "a",
                    &[
                        (100, between(None, Some(200))),
                        (190, between(Some(200), None)),
                    ],
                )],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "what stays carries each moment's load, not every booking at once",
                policy: ScalingPolicy {
                    min_nodes: 0,
                    buffer_participants: 0,
                    ..policy()
                },
                nodes: vec![
                    holding(
                        "a",
                        &[
                            (120, between(None, Some(100))),
                            (120, between(Some(100), None)),
                        ],
                    ),
                    holding("b", &[(60, between(None, None))]),
                ],
                surplus_since: Some(NOW - 300),
                want: draining(&["b"], 1),
                ..Case::default()
            },
        ]);
    }

    #[test]
    fn deletion() {
        use MediaNodePhase::*;
        let reported = |participants, rooms, base: NodeView| NodeView {
            reported: Usage {
                participants,
                rooms,
            },
            ..base
        };
        let pool = || vec![node("a", 0)];
        let with = |extra: NodeView| {
            let mut nodes = pool();
            nodes.push(extra);
            nodes
        };
        check(vec![
            Case {
                what: "Failed and Drained nodes are deleted at once, even with load",
                nodes: vec![
                    phase(Failed, node("f", 100)),
                    node("a", 0),
                    phase(Drained, node("d", 0)),
                ],
                want: deleting(&["d", "f"], 1),
                ..Case::default()
            },
            Case {
                what: "an empty draining node is deleted",
                nodes: with(draining_since(Some(NOW), node("x", 0))),
                want: deleting(&["x"], 1),
                ..Case::default()
            },
            Case {
                what: "a draining node with a live conference waits for its timeout",
                nodes: with(draining_since(Some(NOW - 3599), node("x", 12))),
                want: ScalingPlan {
                    desired_nodes: 1,
                    recheck_after: Some(1),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
            Case {
                what: "... and is deleted when the timeout passes",
                nodes: with(draining_since(Some(NOW - 3600), node("x", 12))),
                want: deleting(&["x"], 1),
                ..Case::default()
            },
            Case {
                what: "reported participants alone keep a draining node",
                nodes: with(draining_since(Some(NOW), reported(3, 0, node("x", 0)))),
                want: ScalingPlan {
                    desired_nodes: 1,
                    recheck_after: Some(3600),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
            Case {
                what: "a reported room alone keeps a draining node",
                nodes: with(draining_since(Some(NOW), reported(0, 1, node("x", 0)))),
                want: ScalingPlan {
                    desired_nodes: 1,
                    recheck_after: Some(3600),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
            Case {
                what: "a drain without a start time never times out",
                nodes: with(draining_since(None, node("x", 12))),
                want: steady(1),
                ..Case::default()
            },
            Case {
                what: "phase Draining without spec.draining is a drain taken back: live",
                nodes: with(phase(Draining, node("x", 12))),
                want: ScalingPlan {
                    surplus_since: Some(NOW),
                    recheck_after: Some(300),
                    ..steady(2)
                },
                ..Case::default()
            },
            Case {
                what: "a draining node in phase Draining is deleted once empty",
                nodes: with(draining_since(Some(NOW), phase(Draining, node("x", 0)))),
                want: deleting(&["x"], 1),
                ..Case::default()
            },
        ]);
    }

    /// `base` drained by the autoscaler as surplus (no drain timeout running), Draining, its
    /// rooms still open.
    fn drained_as_surplus(base: NodeView) -> NodeView {
        let rooms = base.reserved.total().rooms;
        NodeView {
            phase: MediaNodePhase::Draining,
            drained_as_surplus: true,
            startup_seconds: None,
            reported: Usage {
                participants: 0,
                rooms,
            },
            ..draining_since(None, base)
        }
    }

    /// A plan taking back `reclaim` and adding `add` nodes, `desired_nodes` live.
    fn reclaiming(reclaim: &[&str], add: u32, desired_nodes: u32) -> ScalingPlan {
        ScalingPlan {
            reclaim: names(reclaim),
            ..adding(add, desired_nodes)
        }
    }

    #[test]
    fn growth_takes_back_nodes_drained_as_surplus_before_adding_new_ones() {
        check(vec![
            Case {
                what: "a node drained as surplus, still hosting, is taken back instead of a new one",
                nodes: vec![node("a", 180), drained_as_surplus(node("b", 10))],
                want: reclaiming(&["b"], 0, 2),
                ..Case::default()
            },
            Case {
                what: "the emptiest first, and only as many as the buffer needs",
                nodes: vec![
                    node("a", 180),
                    drained_as_surplus(node("b", 170)),
                    drained_as_surplus(node("c", 20)),
                ],
                want: reclaiming(&["c"], 0, 2),
                ..Case::default()
            },
            Case {
                what: "waiting conferences too: one is taken back, then a node added for the rest",
                nodes: vec![node("a", 200), drained_as_surplus(node("b", 150))],
                waiting: vec![ad_hoc(100), ad_hoc(40)],
                want: reclaiming(&["b"], 1, 3),
                ..Case::default()
            },
            Case {
                what: "drained by hand, by a rollout, unreachable or already drained: not taken back",
                nodes: vec![
                    node("a", 180),
                    NodeView {
                        drained_as_surplus: false,
                        startup_seconds: None,
                        ..drained_as_surplus(node("hand", 10))
                    },
                    NodeView {
                        outdated: true,
                        ..drained_as_surplus(node("old", 10))
                    },
                    NodeView {
                        unreachable: true,
                        ..drained_as_surplus(node("silent", 10))
                    },
                    NodeView {
                        reserved: Usage::default().into(),
                        ..drained_as_surplus(node("closed", 10))
                    },
                ],
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "no more live nodes than maxNodes",
                policy: ScalingPolicy {
                    max_nodes: 1,
                    ..policy()
                },
                nodes: vec![node("a", 180), drained_as_surplus(node("b", 10))],
                want: steady(1),
                ..Case::default()
            },
            Case {
                what: "taken back but still Draining in status: live, nothing more is done",
                nodes: vec![
                    node("a", 180),
                    NodeView {
                        phase: MediaNodePhase::Draining,
                        ..node("b", 10)
                    },
                ],
                want: steady(2),
                ..Case::default()
            },
            Case {
                what: "taken back, still Draining in status and empty: deleted like a drained node",
                nodes: vec![
                    node("a", 100),
                    NodeView {
                        phase: MediaNodePhase::Draining,
                        ..node("b", 0)
                    },
                ],
                want: deleting(&["b"], 1),
                ..Case::default()
            },
        ]);
    }

    #[test]
    fn shrink_waits_then_drains_what_the_surplus_allows() {
        let three = || vec![node("a", 100), node("b", 10), node("c", 0)];
        check(vec![
            Case {
                what: "surplus starts: drain nothing, remember when, recheck after the delay",
                nodes: three(),
                want: ScalingPlan {
                    desired_nodes: 3,
                    surplus_since: Some(NOW),
                    recheck_after: Some(300),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
            Case {
                what: "surplus continues within the delay: keep waiting",
                nodes: three(),
                surplus_since: Some(NOW - 100),
                want: ScalingPlan {
                    desired_nodes: 3,
                    surplus_since: Some(NOW - 100),
                    recheck_after: Some(200),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
            Case {
                what: "after the delay: drain the emptiest nodes (all without end), down to minNodes",
                nodes: three(),
                surplus_since: Some(NOW - 300),
                want: draining(&["c", "b"], 1),
                ..Case::default()
            },
            Case {
                what: "a node a rollout replaces goes first, before emptier current ones",
                nodes: vec![
                    node("a", 100),
                    NodeView {
                        outdated: true,
                        ..node("b", 10)
                    },
                    node("c", 0),
                ],
                surplus_since: Some(NOW - 300),
                want: draining(&["b", "c"], 1),
                ..Case::default()
            },
            Case {
                what: "minNodes bounds the drain",
                policy: ScalingPolicy {
                    min_nodes: 2,
                    ..policy()
                },
                nodes: three(),
                surplus_since: Some(NOW - 300),
                want: draining(&["c"], 2),
                ..Case::default()
            },
            Case {
                what: "the buffer bounds the drain (the drained load moves to the rest)",
                policy: ScalingPolicy {
                    buffer_participants: 150,
                    ..policy()
                },
                nodes: three(),
                surplus_since: Some(NOW - 300),
                want: draining(&["c"], 2),
                ..Case::default()
            },
            Case {
                what: "a scale-down delay of 0 drains at once",
                policy: ScalingPolicy {
                    scale_down_delay_seconds: 0,
                    ..policy()
                },
                nodes: three(),
                want: draining(&["c", "b"], 1),
                ..Case::default()
            },
            Case {
                what: "at minNodes there is no surplus",
                nodes: vec![node("a", 0)],
                surplus_since: Some(NOW - 1000),
                want: steady(1),
                ..Case::default()
            },
            Case {
                what: "no surplus when one node less cannot carry the load and the buffer",
                nodes: vec![node("a", 100), node("b", 100)],
                surplus_since: Some(NOW - 1000),
                want: steady(2),
                ..Case::default()
            },
            Case {
                what: "needing capacity clears surplusSince",
                nodes: vec![node("a", 180)],
                surplus_since: Some(NOW - 1000),
                want: adding(1, 2),
                ..Case::default()
            },
            Case {
                what: "waiting demand counts against the surplus",
                nodes: vec![node("a", 0), node("b", 0)],
                waiting: vec![ad_hoc(180)],
                surplus_since: Some(NOW - 1000),
                want: steady(2),
                ..Case::default()
            },
            Case {
                what: "rooms count against the surplus",
                nodes: vec![
                    NodeView {
                        reserved: Usage {
                            participants: 10,
                            rooms: 40,
                        }
                        .into(),
                        ..node("a", 0)
                    },
                    NodeView {
                        reserved: Usage {
                            participants: 10,
                            rooms: 40,
                        }
                        .into(),
                        ..node("b", 0)
                    },
                ],
                surplus_since: Some(NOW - 1000),
                want: steady(2),
                ..Case::default()
            },
            Case {
                what: "a node with a live conference may be drained (not deleted) on surplus",
                policy: ScalingPolicy {
                    min_nodes: 2,
                    ..policy()
                },
                nodes: vec![node("a", 30), node("b", 20), node("c", 40)],
                surplus_since: Some(NOW - 300),
                want: draining(&["b"], 2),
                ..Case::default()
            },
            Case {
                what: "live nodes above maxNodes are drained at once, emptiest first",
                policy: ScalingPolicy {
                    max_nodes: 2,
                    ..policy()
                },
                nodes: vec![node("a", 100), node("b", 0), node("c", 50), node("d", 10)],
                want: draining(&["b", "d"], 2),
                ..Case::default()
            },
        ]);
    }

    #[test]
    fn drain_order_tie_breaks() {
        use MediaNodePhase::*;
        let drain_one = |what, nodes, drained: &str| Case {
            what,
            policy: ScalingPolicy {
                min_nodes: 2,
                ..policy()
            },
            nodes,
            surplus_since: Some(NOW - 300),
            want: draining(&[drained], 2),
            ..Case::default()
        };
        let ending = |until: i64, base: NodeView| NodeView {
            reserved: [Reservation::conference(
                base.committed().participants,
                base.committed().participants,
                Span::of(None, Some(NOW + until)),
            )]
            .into_iter()
            .collect(),
            ..base
        };
        check(vec![
            drain_one(
                "the node whose meetings end soonest first, though fuller: it empties and goes",
                vec![
                    ending(3600, node("a", 20)),
                    ending(900, node("b", 60)),
                    node("c", 10),
                ],
                "b",
            ),
            drain_one(
                "a node with an ad-hoc conference (no end) after those whose end is known",
                vec![node("a", 10), ending(3600, node("b", 60)), node("c", 20)],
                "b",
            ),
            drain_one(
                "fewest committed participants first, whatever the phase",
                vec![
                    phase(Starting, node("a", 5)),
                    node("b", 0),
                    phase(Pending, node("c", 5)),
                ],
                "b",
            ),
            drain_one(
                "equal load: a not-yet-Ready node before a Ready one",
                vec![node("a", 0), phase(Starting, node("b", 0)), node("c", 0)],
                "b",
            ),
            drain_one(
                "equal load and phase: the newest first",
                vec![
                    created(10, node("a", 0)),
                    created(30, node("b", 0)),
                    created(20, node("c", 0)),
                ],
                "b",
            ),
            drain_one(
                "all equal: by name",
                vec![node("c", 0), node("b", 0), node("a", 0)],
                "a",
            ),
        ]);
    }

    #[test]
    fn recheck_after_is_the_soonest_pending_change() {
        check(vec![
            Case {
                what: "scale-down delay 300, drain timeout 120, warm-up entry 200: 120",
                nodes: vec![
                    node("a", 0),
                    node("b", 0),
                    draining_since(Some(NOW - 3480), node("x", 5)),
                ],
                waiting: vec![starting_in(500, 10)],
                want: ScalingPlan {
                    desired_nodes: 2,
                    surplus_since: Some(NOW),
                    recheck_after: Some(120),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
            Case {
                what: "the next scheduled conference, not the later one",
                nodes: vec![node("a", 0)],
                waiting: vec![starting_in(900, 10), starting_in(450, 10)],
                want: ScalingPlan {
                    desired_nodes: 1,
                    recheck_after: Some(150),
                    ..ScalingPlan::default()
                },
                ..Case::default()
            },
        ]);
    }

    /// A random pool: nodes in every phase, some draining, with random capacity and load.
    fn arb_nodes() -> impl Strategy<Value = Vec<NodeView>> {
        use MediaNodePhase::*;
        let usage = || {
            prop_oneof![
                Just(Usage::default()),
                (0u32..250, 0u32..25).prop_map(|(participants, rooms)| Usage {
                    participants,
                    rooms
                }),
            ]
        };
        let one = (
            prop::sample::select(vec![
                Pending, Starting, Ready, Ready, Ready, Draining, Drained, Failed,
            ]),
            prop::bool::weighted(0.2),
            prop::option::weighted(0.8, 0i64..5000),
            0i64..100,
            (1u32..300, 1u32..30),
            usage(),
            usage(),
        );
        prop::collection::vec(one, 0..10).prop_map(|nodes| {
            nodes
                .into_iter()
                .enumerate()
                .map(
                    |(i, (phase, draining, since, created, cap, reserved, reported))| NodeView {
                        name: format!("n{i:02}"),
                        phase,
                        draining,
                        draining_since: since.map(|ago| NOW - ago),
                        created_at: created,
                        last_heartbeat: Some(NOW),
                        capacity: NodeCapacity {
                            participants: cap.0,
                            rooms: cap.1,
                            egress_mbps: 1000,
                        },
                        reserved: reserved.into(),
                        reported,
                        region: None,
                        outdated: false,
                        unreachable: false,
                        drained_as_surplus: false,
                        startup_seconds: None,
                    },
                )
                .collect()
        })
    }

    fn arb_policy() -> impl Strategy<Value = ScalingPolicy> {
        (
            (0u32..5, 0u32..8),
            0u32..500,
            (0i64..600, 0i64..600, 0i64..5000),
            (1u32..300, 1u32..30),
        )
            .prop_map(|((min, extra), buffer, (warmup, delay, timeout), cap)| {
                ScalingPolicy {
                    min_nodes: min,
                    max_nodes: min + extra,
                    buffer_participants: buffer,
                    warmup_seconds: warmup,
                    scale_down_delay_seconds: delay,
                    drain_timeout_seconds: timeout,
                    node_capacity: NodeCapacity {
                        participants: cap.0,
                        rooms: cap.1,
                        egress_mbps: 1000,
                    },
                }
            })
    }

    fn arb_waiting() -> impl Strategy<Value = Vec<WaitingConference>> {
        let one = (0u32..400, 0.5f64..=1.0, prop::option::of(-100i64..1000)).prop_map(
            |(max, expected, start)| {
                let span = Span::of(start.map(|s| NOW + s), None);
                Reservation::conference((f64::from(max) * expected) as u32, max, span)
            },
        );
        prop::collection::vec(one, 0..8)
    }

    /// Live: Pending, Starting or Ready and not draining, or a drain taken back (Draining in
    /// status, not in spec) from a node that still carries load.
    fn is_live(node: &NodeView) -> bool {
        use MediaNodePhase::*;
        let taken_back = node.phase == Draining && node.committed() != Usage::default();
        (matches!(node.phase, Pending | Starting | Ready) || taken_back) && !node.draining
    }

    fn is_draining(node: &NodeView) -> bool {
        use MediaNodePhase::*;
        !matches!(node.phase, Failed | Drained) && node.draining
    }

    fn run(
        policy: &ScalingPolicy,
        nodes: &[NodeView],
        waiting: &[WaitingConference],
        surplus_since: Option<UnixSeconds>,
    ) -> ScalingPlan {
        plan(&ScalingInput {
            policy,
            nodes,
            waiting,
            surplus_since,
            startup_lead: 0,
            now: NOW,
        })
    }

    /// Ready nodes holding reservations over random spans around NOW.
    fn arb_booked_nodes() -> impl Strategy<Value = Vec<NodeView>> {
        let span = (
            prop::option::of(-600i64..600),
            prop::option::of(-300i64..1200),
        )
            .prop_map(|(from, until)| between(from, until));
        let reservation = (1u32..120, 0u32..40, span).prop_map(|(expected, growth, span)| {
            Reservation::conference(expected, expected + growth, span)
        });
        let one = (
            prop::collection::vec(reservation, 0..5),
            0u32..150,
            (50u32..250, 2u32..10),
        );
        prop::collection::vec(one, 1..6).prop_map(|nodes| {
            nodes
                .into_iter()
                .enumerate()
                .map(|(i, (held, reported, cap))| NodeView {
                    reserved: held.into_iter().collect(),
                    reported: Usage {
                        participants: reported,
                        rooms: 1,
                    },
                    capacity: NodeCapacity {
                        participants: cap.0,
                        rooms: cap.1,
                        egress_mbps: 1000,
                    },
                    ..node(&format!("n{i:02}"), 0)
                })
                .collect()
        })
    }

    proptest! {
        /// The autoscaler and placement agree: when the plan adds no node for a waiting
        /// conference, placement finds it a node.
        #[test]
        fn what_the_plan_counts_as_room_placement_can_use(
            nodes in arb_booked_nodes(),
            max_participants in 1u32..120,
            expected in 0.5f64..=1.0,
            starts_in in prop::option::of(0i64..300),
            lasts in prop::option::of(1i64..1200),
        ) {
            let policy = ScalingPolicy { buffer_participants: 0, min_nodes: 0, ..policy() };
            let start = starts_in.map(|s| NOW + s);
            let expected_participants = (f64::from(max_participants) * expected) as u32;
            let span = Span::of(start, lasts.map(|l| start.unwrap_or(NOW) + l));
            let waiting = [Reservation::conference(expected_participants, max_participants, span)];
            let plan = run(&policy, &nodes, &waiting, None);
            if plan.add == 0 && max_participants <= NODE.participants {
                let request = crate::decide::placement::PlacementRequest {
                    reservation: waiting[0],
                    region: None,
                    exclude: Vec::new(),
                };
                let placed = crate::decide::placement::place(
                    &request,
                    &nodes,
                    crate::decide::placement::PlacementPolicy {
                        strategy: conclave_crds::pool::Strategy::Packed,
                        heartbeat_timeout_seconds: 15,
                    },
                    NOW,
                );
                prop_assert!(
                    matches!(placed, crate::decide::placement::Placement::Node(_)),
                    "the plan adds nothing, placement says {:?}", placed
                );
            }
        }

        #[test]
        fn desired_stays_within_min_and_max(
            policy in arb_policy(), nodes in arb_nodes(), waiting in arb_waiting(),
            since in prop::option::of(NOW - 1000..=NOW),
        ) {
            let plan = run(&policy, &nodes, &waiting, since);
            let live = nodes.iter().filter(|n| is_live(n)).count();
            prop_assert!(plan.desired_nodes >= policy.min_nodes);
            prop_assert!(plan.desired_nodes <= policy.max_nodes);
            prop_assert_eq!(
                plan.desired_nodes as usize,
                live + plan.reclaim.len() + plan.add as usize - plan.drain.len()
            );
            if plan.add > 0 {
                prop_assert!(plan.drain.is_empty());
                prop_assert_eq!(plan.surplus_since, None);
            }
        }

        #[test]
        fn drains_only_live_nodes_and_deletes_only_the_others(
            policy in arb_policy(), nodes in arb_nodes(), waiting in arb_waiting(),
            since in prop::option::of(NOW - 1000..=NOW),
        ) {
            let plan = run(&policy, &nodes, &waiting, since);
            let find = |name: &String| nodes.iter().find(|n| &n.name == name);
            for name in &plan.drain {
                prop_assert!(find(name).is_some_and(is_live), "{} drained", name);
                prop_assert!(!plan.delete.contains(name), "{} drained and deleted", name);
            }
            for name in &plan.delete {
                prop_assert!(find(name).is_some_and(|n| !is_live(n)), "{} deleted", name);
            }
        }

        #[test]
        fn never_deletes_a_loaded_draining_node_before_its_timeout(
            policy in arb_policy(), nodes in arb_nodes(), waiting in arb_waiting(),
        ) {
            let plan = run(&policy, &nodes, &waiting, None);
            for node in nodes.iter().filter(|n| is_draining(n)) {
                let empty = node.committed() == Usage::default();
                let timed_out = node
                    .draining_since
                    .is_some_and(|since| NOW - since >= policy.drain_timeout_seconds);
                prop_assert_eq!(plan.delete.contains(&node.name), empty || timed_out);
            }
        }

        #[test]
        fn the_nodes_that_stay_carry_the_load_and_the_buffer(
            policy in arb_policy(), nodes in arb_nodes(), waiting in arb_waiting(),
            since in prop::option::of(NOW - 1000..=NOW),
        ) {
            let plan = run(&policy, &nodes, &waiting, since);
            let live: Vec<&NodeView> = nodes.iter().filter(|n| is_live(n)).collect();
            let within_max = live.len() <= policy.max_nodes as usize;
            if !plan.drain.is_empty() && within_max {
                let kept: u64 = live
                    .iter()
                    .filter(|n| !plan.drain.contains(&n.name))
                    .map(|n| u64::from(n.capacity.participants))
                    .sum();
                let committed: u64 = live
                    .iter()
                    .map(|n| u64::from(n.committed().participants))
                    .sum();
                let new_node_fits = |w: &&WaitingConference| {
                    policy.node_capacity.fits(Usage::default(), w.full())
                };
                let placeable_waiting: u64 = waiting
                    .iter()
                    .filter(|w| w.span.from.is_none_or(|s| s - NOW <= policy.warmup_seconds))
                    .filter(new_node_fits)
                    .map(|w| u64::from(w.usage.participants))
                    .sum();
                let buffer = u64::from(policy.buffer_participants);
                let needed = committed + placeable_waiting + buffer;
                prop_assert!(kept >= needed, "kept {} < needed {}", kept, needed);
            }
        }

        #[test]
        fn never_drains_when_surplus_just_started(
            policy in arb_policy(), nodes in arb_nodes(), waiting in arb_waiting(),
        ) {
            prop_assume!(policy.scale_down_delay_seconds > 0);
            let live = nodes.iter().filter(|n| is_live(n)).count();
            prop_assume!(live <= policy.max_nodes as usize);
            let plan = run(&policy, &nodes, &waiting, None);
            prop_assert!(plan.drain.is_empty());
        }

        #[test]
        fn recheck_after_is_positive_and_order_does_not_matter(
            policy in arb_policy(), nodes in arb_nodes(), waiting in arb_waiting(),
            since in prop::option::of(NOW - 1000..=NOW),
        ) {
            let plan = run(&policy, &nodes, &waiting, since);
            prop_assert!(plan.recheck_after.is_none_or(|s| s > 0));
            let mut reversed_nodes = nodes.clone();
            reversed_nodes.reverse();
            let mut reversed_waiting = waiting.clone();
            reversed_waiting.reverse();
            prop_assert_eq!(plan, run(&policy, &reversed_nodes, &reversed_waiting, since));
        }

        #[test]
        fn never_panics_on_extreme_input(
            counts in (any::<u32>(), any::<u32>(), any::<u32>()),
            times in (any::<i64>(), any::<i64>(), any::<i64>()),
            capacity in (any::<u32>(), any::<u32>()),
            load in (any::<u32>(), any::<u32>()),
            node_times in (prop::option::of(any::<i64>()), any::<i64>()),
            start in prop::option::of(any::<i64>()),
            since in prop::option::of(any::<i64>()),
            now in any::<i64>(),
            draining in any::<bool>(),
        ) {
            let capacity = NodeCapacity {
                participants: capacity.0,
                rooms: capacity.1,
                egress_mbps: 0,
            };
            let policy = ScalingPolicy {
                min_nodes: counts.0,
                max_nodes: counts.1,
                buffer_participants: counts.2,
                warmup_seconds: times.0,
                scale_down_delay_seconds: times.1,
                drain_timeout_seconds: times.2,
                node_capacity: capacity,
            };
            let node = NodeView {
                draining,
                draining_since: node_times.0,
                created_at: node_times.1,
                capacity,
                reserved: Usage { participants: load.0, rooms: load.1 }.into(),
                reported: Usage { participants: load.1, rooms: load.0 },
                ..node("a", 0)
            };
            let nodes = [node.clone(), NodeView { name: "b".into(), ..node }];
            let waiting = [Reservation::conference(load.0, load.0, Span::of(start, None))];
            let input = ScalingInput {
                policy: &policy,
                nodes: &nodes,
                waiting: &waiting,
                surplus_since: since,
                startup_lead: 0,
                now,
            };
            let _ = plan(&input);
        }
    }
}
