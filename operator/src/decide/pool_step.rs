//! The pool controller's step for one MediaPool, from the facts it gathered: the media nodes
//! to create, drain and delete (the autoscaler's plan with the rollout's on top, less the
//! nodes still in flight), whether its TURN relays are reconciled, the figures and conditions
//! of its status, the events to emit, and when to look again. The controller applies it
//! (`controllers::pool`).

use conclave_crds::MediaNodePhase;
use conclave_crds::labels::{DRAIN_SCALING_DOWN, condition};

use super::autoscale::{
    self, ScalingInput, ScalingPlan, ScalingPolicy, WaitingConference, needed_nodes,
};
use super::pool_conditions::{
    self as conditions, PoolCondition, RelayTls, SignalingTls, TurnPeers,
};
use super::rollout::{self, RolloutInput, RolloutPlan, RolloutPolicy};
use super::stall::heartbeats_stalled;
use super::{NodeView, UnixSeconds};

/// Seconds until the next look when nothing is pending.
pub const DEFAULT_RECHECK_SECONDS: i64 = 60;
/// The soonest next look.
pub const MIN_RECHECK_SECONDS: i64 = 1;
/// The latest next look.
pub const MAX_RECHECK_SECONDS: i64 = 300;

/// What the controller gathered about one pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolFacts {
    /// `spec.scaling` and `spec.nodeCapacity`.
    pub scaling: ScalingPolicy,
    /// `spec.rollout`.
    pub rollout: RolloutPolicy,
    /// `spec.mediaNode.heartbeatTimeoutSeconds`.
    pub heartbeat_timeout: i64,
    /// The pool's media nodes.
    pub nodes: Vec<NodeView>,
    /// Its conferences waiting for a node.
    pub waiting: Vec<WaitingConference>,
    /// Media nodes created earlier that `nodes` does not show yet.
    pub in_flight: u32,
    /// `status.surplusSince`.
    pub surplus_since: Option<UnixSeconds>,
    /// `status.nodeStartupSeconds`: how long the pool's nodes took to start, last known.
    pub node_startup_seconds: Option<i64>,
    /// The Heartbeats condition was True, or not set yet.
    pub heartbeats_flowed: bool,
    /// What is wrong with the pool's Secret, if anything.
    pub secret_problem: Option<String>,
    /// What in the spec cannot run (`pool_spec::problems`).
    pub spec_problems: Vec<String>,
    /// The media nodes' TLS signaling, with `spec.signaling`.
    pub signaling: Option<SignalingTls>,
    /// The relays' TLS, with `spec.turn.tls`.
    pub relay_tls: Option<RelayTls>,
    /// The relays' peer policy and the media nodes' addresses, with `spec.turn.enabled`.
    pub turn_peers: Option<TurnPeers>,
    /// Now.
    pub now: UnixSeconds,
}

/// Why a media node is drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainWhy {
    /// The autoscaler found the pool's capacity surplus.
    Surplus,
    /// The rollout replaces its older pod template.
    Outdated,
}

impl DrainWhy {
    /// The reason of the drain's Event.
    pub fn reason(self) -> &'static str {
        match self {
            DrainWhy::Surplus => DRAIN_SCALING_DOWN,
            DrainWhy::Outdated => "RollingUpdate",
        }
    }

    /// What the drain's Event and log say of it.
    pub fn explanation(self) -> &'static str {
        match self {
            DrainWhy::Surplus => "capacity is surplus",
            DrainWhy::Outdated => "its pod runs an older template of the pool",
        }
    }
}

/// A media node to drain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    /// The MediaNode.
    pub node: String,
    /// Why.
    pub why: DrainWhy,
}

/// What happens to the pool's media nodes in this pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scaling {
    /// Live nodes the autoscaler wants.
    pub desired_nodes: u32,
    /// New MediaNodes to create: the autoscaler's and the rollout's, less those in flight.
    pub add: u32,
    /// Draining nodes the autoscaler takes back before creating new ones.
    pub reclaim: Vec<String>,
    /// Nodes to start draining: the autoscaler's surplus first, then the rollout's.
    pub drain: Vec<Drain>,
    /// Nodes to delete.
    pub delete: Vec<String>,
}

/// What becomes of the pool's TURN relays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relays {
    /// Reconcile them with the spec (run, resize, or remove when TURN is off), serving TLS
    /// with the certificate of this hash when there is a usable one.
    Reconcile {
        /// The hash of the `spec.turn.tls` certificate the relays serve.
        certificate: Option<String>,
    },
    /// Leave them as they are, and their status: the spec cannot run.
    Untouched,
}

/// The figures of the pool's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolFigures {
    /// Live nodes the autoscaler wants.
    pub desired_nodes: u32,
    /// MediaNodes of the pool, in any phase.
    pub nodes: u32,
    /// Ready and not draining.
    pub ready_nodes: u32,
    /// Draining.
    pub draining_nodes: u32,
    /// Participants the nodes report.
    pub participants: u32,
    /// Participants reserved on the nodes.
    pub reserved_participants: u32,
    /// Participants the Ready, non-draining nodes carry.
    pub capacity: u32,
    /// Live nodes on the current pod template.
    pub updated_nodes: u32,
    /// The new `status.surplusSince`.
    pub surplus_since: Option<UnixSeconds>,
    /// The new `status.nodeStartupSeconds` (`autoscale::startup_lead`).
    pub node_startup_seconds: Option<i64>,
}

/// An Event to emit on the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// The Heartbeats condition went from True to False; the condition's message.
    HeartbeatsStalled(String),
}

impl PoolEvent {
    /// The Event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            PoolEvent::HeartbeatsStalled(_) => "HeartbeatsStalled",
        }
    }

    /// Whether it is a Warning.
    pub fn warning(&self) -> bool {
        match self {
            PoolEvent::HeartbeatsStalled(_) => true,
        }
    }

    /// What it says.
    pub fn message(&self) -> &str {
        match self {
            PoolEvent::HeartbeatsStalled(message) => message,
        }
    }
}

/// What to do and publish, and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStep {
    /// Media nodes to create, drain and delete.
    pub scaling: Scaling,
    /// What becomes of the TURN relays.
    pub relays: Relays,
    /// The status figures (TURN's come from reconciling the relays).
    pub figures: PoolFigures,
    /// Conditions to set, in order.
    pub conditions: Vec<PoolCondition>,
    /// Condition types to remove: the pool asks for no such TLS.
    pub absent: Vec<&'static str>,
    /// Events to emit.
    pub events: Vec<PoolEvent>,
    /// Seconds until the next look.
    pub recheck_seconds: u64,
}

/// The step for a pool with these facts.
pub fn pool_step(f: &PoolFacts) -> PoolStep {
    let startup_lead = autoscale::startup_lead(&f.nodes, f.node_startup_seconds);
    let (plan, rollout) = plans(f, startup_lead.unwrap_or(0));
    let scaling = Scaling {
        desired_nodes: plan.desired_nodes,
        add: plan
            .add
            .saturating_add(rollout.add)
            .saturating_sub(f.in_flight),
        reclaim: plan.reclaim.clone(),
        drain: plan
            .drain
            .iter()
            .map(|node| (node, DrainWhy::Surplus))
            .chain(rollout.drain.iter().map(|node| (node, DrainWhy::Outdated)))
            .map(|(node, why)| Drain {
                node: node.clone(),
                why,
            })
            .collect(),
        delete: plan.delete.clone(),
    };
    let spec_runs = f.spec_problems.is_empty();
    let relays = if spec_runs {
        let certificate = match &f.relay_tls {
            Some(RelayTls::Serving(hash)) => Some(hash.clone()),
            _ => None,
        };
        Relays::Reconcile { certificate }
    } else {
        Relays::Untouched
    };
    let figures = PoolFigures {
        desired_nodes: plan.desired_nodes,
        updated_nodes: rollout.updated,
        surplus_since: plan.surplus_since,
        node_startup_seconds: startup_lead,
        ..count(&f.nodes)
    };

    let left = f.nodes.iter().filter(|v| v.outdated).count();
    let free = figures
        .capacity
        .saturating_sub(figures.reserved_participants.max(figures.participants));
    let stall = heartbeats_stalled(&f.nodes, f.heartbeat_timeout, f.now);
    let heartbeats = conditions::heartbeats(stall);
    let events = if f.heartbeats_flowed && !heartbeats.ok {
        vec![PoolEvent::HeartbeatsStalled(heartbeats.message.clone())]
    } else {
        Vec::new()
    };
    let mut set = vec![
        conditions::up_to_date(left, &rollout, f.rollout, f.scaling.max_nodes),
        conditions::ready(figures.ready_nodes, figures.nodes, free),
        heartbeats,
    ];
    let mut absent = Vec::new();
    // A condition whose subject went away (TURN, or a TLS Secret, turned off) is removed,
    // not left saying what it said last.
    match &f.turn_peers {
        Some(peers) => set.push(conditions::turn_peers(peers)),
        None => absent.push(condition::TURN_PEERS),
    }
    match &f.relay_tls {
        Some(tls) => set.push(conditions::relay_certificate(tls)),
        None => absent.push(condition::TURN_TLS),
    }
    match &f.signaling {
        Some(tls) => set.push(conditions::signaling_certificate(tls)),
        None => absent.push(condition::SIGNALING_TLS),
    }
    set.push(conditions::reconciled(
        &f.spec_problems,
        f.secret_problem.as_deref(),
    ));
    PoolStep {
        scaling,
        relays,
        figures,
        conditions: set,
        absent,
        events,
        recheck_seconds: recheck_seconds(plan.recheck_after),
    }
}

/// The autoscaler's plan and the rollout's. Nothing new is created from a spec that cannot
/// run (a new media node could not serve TLS signaling without its certificate), so nothing
/// old is replaced either; what runs is left alone, but surplus is still drained and failed
/// nodes deleted.
fn plans(f: &PoolFacts, startup_lead: i64) -> (ScalingPlan, RolloutPlan) {
    let input = ScalingInput {
        policy: &f.scaling,
        nodes: &f.nodes,
        waiting: &f.waiting,
        surplus_since: f.surplus_since,
        startup_lead,
        now: f.now,
    };
    let mut plan = autoscale::plan(&input);
    let signaling_usable = f.signaling.as_ref().is_none_or(|s| s.problem.is_none());
    if !f.spec_problems.is_empty() || !signaling_usable {
        plan.add = 0;
        return (plan, RolloutPlan::default());
    }
    let rollout = rollout::plan(&RolloutInput {
        policy: f.rollout,
        nodes: &f.nodes,
        needed: needed_nodes(&input),
        max_nodes: f.scaling.max_nodes,
        autoscaler_adds: plan.add,
        autoscaler_drains: &plan.drain,
        now: f.now,
    });
    (plan, rollout)
}

/// The node counts and participants of the pool's status.
fn count(nodes: &[NodeView]) -> PoolFigures {
    let ready: Vec<&NodeView> = nodes
        .iter()
        .filter(|v| v.phase == MediaNodePhase::Ready && !v.draining)
        .collect();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    PoolFigures {
        nodes: count(nodes.len()),
        ready_nodes: count(ready.len()),
        draining_nodes: count(nodes.iter().filter(|v| v.draining).count()),
        participants: nodes.iter().map(|v| v.reported.participants).sum(),
        reserved_participants: nodes.iter().map(|v| v.reserved.total().participants).sum(),
        capacity: ready.iter().map(|v| v.capacity.participants).sum(),
        ..PoolFigures::default()
    }
}

/// The next look: when the autoscaler's plan may change by itself, else the default, within
/// the bounds.
fn recheck_seconds(recheck_after: Option<i64>) -> u64 {
    recheck_after
        .unwrap_or(DEFAULT_RECHECK_SECONDS)
        .clamp(MIN_RECHECK_SECONDS, MAX_RECHECK_SECONDS)
        .unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::pool_conditions::{PoolReason, PublishedAddress};
    use crate::decide::reservation::Span;
    use conclave_crds::NodeCapacity;
    use conclave_crds::capacity::Usage;

    const NOW: UnixSeconds = 1_000_000;
    const NODE: NodeCapacity = NodeCapacity {
        participants: 20,
        rooms: 5,
        egress_mbps: 1000,
    };

    /// A Ready node created at NOW - 600 that heartbeats, with `participants` reserved in one
    /// room (none when 0), of an older template when `old`.
    fn node(name: &str, participants: u32, old: bool) -> NodeView {
        NodeView {
            name: name.to_owned(),
            phase: MediaNodePhase::Ready,
            created_at: NOW - 600,
            last_heartbeat: Some(NOW),
            capacity: NODE,
            reserved: Usage {
                participants,
                rooms: u32::from(participants > 0),
            }
            .into(),
            outdated: old,
            ..NodeView::default()
        }
    }

    /// A pool of at least one node, nothing waiting, nothing wrong, no TLS, no TURN.
    fn facts(nodes: Vec<NodeView>) -> PoolFacts {
        PoolFacts {
            scaling: ScalingPolicy {
                min_nodes: 1,
                max_nodes: 10,
                buffer_participants: 0,
                warmup_seconds: 300,
                scale_down_delay_seconds: 300,
                drain_timeout_seconds: 3600,
                node_capacity: NODE,
            },
            rollout: RolloutPolicy {
                max_surge: 1,
                max_unavailable: 0,
            },
            heartbeat_timeout: 15,
            nodes,
            waiting: Vec::new(),
            in_flight: 0,
            surplus_since: None,
            node_startup_seconds: None,
            heartbeats_flowed: true,
            secret_problem: None,
            spec_problems: Vec::new(),
            signaling: None,
            relay_tls: None,
            turn_peers: None,
            now: NOW,
        }
    }

    fn condition<'a>(step: &'a PoolStep, type_: &str) -> &'a PoolCondition {
        step.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} in {:?}", step.conditions))
    }

    fn state(step: &PoolStep, type_: &str) -> (bool, PoolReason) {
        let c = condition(step, type_);
        (c.ok, c.reason)
    }

    fn signaling(problem: Option<&str>) -> Option<SignalingTls> {
        Some(SignalingTls {
            secret_name: "media-tls".into(),
            domain: "media.example.org".into(),
            problem: problem.map(str::to_owned),
        })
    }

    #[test]
    fn a_settled_pool_sets_its_conditions_in_order_and_looks_again_in_a_minute() {
        let step = pool_step(&facts(vec![node("a", 5, false)]));
        let types: Vec<_> = step.conditions.iter().map(|c| c.type_).collect();
        assert_eq!(
            types,
            [
                condition::UP_TO_DATE,
                condition::READY,
                condition::HEARTBEATS,
                condition::RECONCILED
            ]
        );
        assert_eq!(
            step.absent,
            [
                condition::TURN_PEERS,
                condition::TURN_TLS,
                condition::SIGNALING_TLS
            ]
        );
        for (type_, want) in [
            (condition::UP_TO_DATE, PoolReason::AllNodesUpdated),
            (condition::READY, PoolReason::CapacityAvailable),
            (condition::HEARTBEATS, PoolReason::Current),
            (condition::RECONCILED, PoolReason::Applied),
        ] {
            assert_eq!(state(&step, type_), (true, want), "{type_}");
        }
        assert_eq!(
            step.scaling,
            Scaling {
                desired_nodes: 1,
                ..Scaling::default()
            }
        );
        assert_eq!(step.relays, Relays::Reconcile { certificate: None });
        assert!(step.events.is_empty());
        assert_eq!(step.recheck_seconds, 60);
    }

    #[test]
    fn ready_counts_the_ready_nodes_and_the_room_left() {
        let mut busy = node("a", 5, false);
        busy.reported = Usage {
            participants: 8,
            rooms: 1,
        };
        let draining = NodeView {
            draining: true,
            ..node("b", 0, false)
        };
        let step = pool_step(&facts(vec![busy, draining]));
        let ready = condition(&step, condition::READY);
        assert_eq!(
            (ready.ok, ready.reason),
            (true, PoolReason::CapacityAvailable)
        );
        assert_eq!(
            ready.message,
            "1 of 2 media nodes Ready, 12 participants of capacity free"
        );
        assert_eq!(
            (
                step.figures.nodes,
                step.figures.ready_nodes,
                step.figures.draining_nodes
            ),
            (2, 1, 1)
        );
        assert_eq!(
            (
                step.figures.participants,
                step.figures.reserved_participants,
                step.figures.capacity
            ),
            (8, 5, 20)
        );
        let starting = NodeView {
            phase: MediaNodePhase::Starting,
            ..node("a", 0, false)
        };
        let step = pool_step(&facts(vec![starting]));
        let ready = condition(&step, condition::READY);
        assert_eq!((ready.ok, ready.reason.as_str()), (false, "NoReadyNodes"));
        assert_eq!(
            ready.message,
            "0 of 1 media nodes Ready, 0 participants of capacity free"
        );
    }

    #[test]
    fn heartbeats_stalled_is_an_event_only_on_the_transition() {
        let silent = |name: &str| NodeView {
            last_heartbeat: Some(NOW - 40),
            ..node(name, 0, false)
        };
        let stalled = || vec![silent("a"), silent("b"), silent("c")];
        let message = "3 of 3 media nodes stopped heartbeating at once: treated as a control-plane problem (an overloaded or unreachable API server), so none is failed for it and no conference moves until heartbeats resume; a media-node pod that fails or goes away is still failed over";
        for (nodes, flowed, ok, event) in [
            (stalled(), true, false, true),
            (stalled(), false, false, false),
            (vec![node("a", 0, false)], true, true, false),
            (vec![node("a", 0, false)], false, true, false),
        ] {
            let step = pool_step(&PoolFacts {
                heartbeats_flowed: flowed,
                ..facts(nodes)
            });
            let c = condition(&step, condition::HEARTBEATS);
            assert_eq!(c.ok, ok, "flowed {flowed}");
            let want: Vec<PoolEvent> = if event {
                vec![PoolEvent::HeartbeatsStalled(message.to_owned())]
            } else {
                Vec::new()
            };
            assert_eq!(step.events, want, "flowed {flowed}, ok {ok}");
            if !ok {
                assert_eq!(
                    (c.reason.as_str(), c.message.as_str()),
                    ("Stalled", message)
                );
            } else {
                assert_eq!(
                    c.message,
                    "media nodes heartbeat; one that stops is failed and its conferences move"
                );
            }
        }
        let event = PoolEvent::HeartbeatsStalled(message.to_owned());
        assert_eq!(
            (event.reason(), event.warning(), event.message()),
            ("HeartbeatsStalled", true, message)
        );
    }

    #[test]
    fn an_invalid_spec_adds_nothing_replaces_nothing_and_leaves_the_relays() {
        let failed = NodeView {
            phase: MediaNodePhase::Failed,
            ..node("f", 0, false)
        };
        let mut f = PoolFacts {
            surplus_since: Some(NOW - 1000),
            spec_problems: vec!["spec.image: bad".into(), "spec.turn.port: taken".into()],
            secret_problem: Some("Secret p lacks keys".into()),
            ..facts(vec![
                node("a", 0, true),
                node("b", 0, true),
                node("c", 0, true),
                failed,
            ])
        };
        f.scaling.min_nodes = 2;
        let step = pool_step(&f);
        // The autoscaler still drains surplus and deletes what failed; the rollout is off.
        assert_eq!(step.scaling.add, 0);
        assert_eq!(
            step.scaling.drain,
            [Drain {
                node: "a".into(),
                why: DrainWhy::Surplus
            }]
        );
        assert_eq!(step.scaling.delete, ["f"]);
        assert_eq!(step.relays, Relays::Untouched);
        assert_eq!(step.figures.updated_nodes, 0);
        assert_eq!(
            state(&step, condition::UP_TO_DATE),
            (false, PoolReason::RollingUpdate)
        );
        let reconciled = condition(&step, condition::RECONCILED);
        assert_eq!(
            (reconciled.ok, reconciled.reason),
            (false, PoolReason::InvalidSpec)
        );
        assert_eq!(
            reconciled.message,
            "no media nodes or TURN relays are created until the spec is fixed: spec.image: bad; spec.turn.port: taken"
        );
        let mut empty = facts(Vec::new());
        empty.spec_problems = vec!["spec.image: bad".into()];
        assert_eq!(pool_step(&empty).scaling.add, 0);
    }

    #[test]
    fn reconciled_says_what_is_missing() {
        let step = pool_step(&PoolFacts {
            secret_problem: Some("Secret p is missing".into()),
            ..facts(vec![node("a", 0, false)])
        });
        let c = condition(&step, condition::RECONCILED);
        assert_eq!(
            (c.ok, c.reason.as_str(), c.message.as_str()),
            (false, "SecretMissing", "Secret p is missing")
        );
        let step = pool_step(&facts(vec![node("a", 0, false)]));
        assert_eq!(
            condition(&step, condition::RECONCILED).message,
            "the pool's Secret, media nodes and TURN relays are in place"
        );
    }

    #[test]
    fn an_unusable_signaling_certificate_stops_new_nodes_but_not_the_relays() {
        let mut f = PoolFacts {
            signaling: signaling(Some("Secret media-tls is missing")),
            ..facts(vec![node("a", 0, true)])
        };
        f.scaling.min_nodes = 2;
        let step = pool_step(&f);
        assert_eq!(step.scaling.add, 0);
        assert!(step.scaling.drain.is_empty());
        assert_eq!(step.relays, Relays::Reconcile { certificate: None });
        let tls = condition(&step, condition::SIGNALING_TLS);
        assert_eq!(
            (tls.ok, tls.reason, tls.message.as_str()),
            (
                false,
                PoolReason::CertificateInvalid,
                "Secret media-tls is missing"
            )
        );
        assert_eq!(
            state(&step, condition::RECONCILED),
            (true, PoolReason::Applied)
        );
        assert_eq!(step.absent, [condition::TURN_PEERS, condition::TURN_TLS]);

        f.signaling = signaling(None);
        let step = pool_step(&f);
        assert_eq!(
            step.scaling.add, 2,
            "one for minNodes, one to replace the old node"
        );
        let tls = condition(&step, condition::SIGNALING_TLS);
        assert_eq!(
            (tls.ok, tls.reason, tls.message.as_str()),
            (
                true,
                PoolReason::CertificateValid,
                "Secret media-tls holds a certificate for *.media.example.org; media nodes serve https and wss"
            )
        );
    }

    #[test]
    fn the_relays_serve_a_usable_certificate_and_say_what_is_wrong_with_another() {
        let f = |tls| PoolFacts {
            relay_tls: Some(tls),
            ..facts(vec![node("a", 0, false)])
        };
        let step = pool_step(&f(RelayTls::Serving("abc123".into())));
        assert_eq!(
            step.relays,
            Relays::Reconcile {
                certificate: Some("abc123".into())
            }
        );
        let c = condition(&step, condition::TURN_TLS);
        assert_eq!(
            (c.ok, c.reason, c.message.as_str()),
            (
                true,
                PoolReason::CertificateValid,
                "the relays serve TURN over TLS with the Secret's certificate"
            )
        );
        assert_eq!(
            step.absent,
            [condition::TURN_PEERS, condition::SIGNALING_TLS]
        );
        let step = pool_step(&f(RelayTls::Refused("it expired".into())));
        assert_eq!(step.relays, Relays::Reconcile { certificate: None });
        let c = condition(&step, condition::TURN_TLS);
        assert_eq!(
            (c.ok, c.reason, c.message.as_str()),
            (
                false,
                PoolReason::CertificateInvalid,
                "it expired; the relays run without TLS until it is fixed"
            )
        );
    }

    #[test]
    fn turn_peers_is_set_only_with_turn_and_in_its_place() {
        let peers = |ip: &str| TurnPeers {
            allowed: Vec::new(),
            allow_loopback: false,
            addresses: vec![PublishedAddress {
                node: "a".into(),
                ip: ip.parse().unwrap(),
            }],
        };
        for (ip, want) in [
            ("203.0.113.5", (true, PoolReason::MediaNodesAllowed)),
            ("10.0.0.5", (false, PoolReason::MediaNodeAddressRefused)),
        ] {
            let step = pool_step(&PoolFacts {
                turn_peers: Some(peers(ip)),
                relay_tls: Some(RelayTls::Serving("h".into())),
                signaling: signaling(None),
                ..facts(vec![node("a", 0, false)])
            });
            assert_eq!(state(&step, condition::TURN_PEERS), want, "{ip}");
            let types: Vec<_> = step.conditions.iter().map(|c| c.type_).collect();
            assert_eq!(
                types,
                [
                    condition::UP_TO_DATE,
                    condition::READY,
                    condition::HEARTBEATS,
                    condition::TURN_PEERS,
                    condition::TURN_TLS,
                    condition::SIGNALING_TLS,
                    condition::RECONCILED
                ]
            );
            assert!(step.absent.is_empty());
        }
    }

    #[test]
    fn nodes_in_flight_are_not_created_again() {
        // minNodes 2 over one old node: the autoscaler adds one, the rollout one more.
        for (in_flight, add) in [(0, 2), (1, 1), (2, 0), (5, 0)] {
            let mut f = PoolFacts {
                in_flight,
                ..facts(vec![node("a", 0, true)])
            };
            f.scaling.min_nodes = 2;
            let step = pool_step(&f);
            assert_eq!(step.scaling.add, add, "{in_flight} in flight");
            assert_eq!(step.scaling.desired_nodes, 2);
        }
    }

    #[test]
    fn the_rollout_drains_an_old_node_once_a_current_one_is_ready() {
        let step = pool_step(&facts(vec![node("a", 0, true), node("b", 0, false)]));
        assert_eq!(
            step.scaling.drain,
            [Drain {
                node: "a".into(),
                why: DrainWhy::Outdated
            }]
        );
        assert_eq!(step.scaling.add, 0);
        assert_eq!(step.figures.updated_nodes, 1);
        assert_eq!(
            state(&step, condition::UP_TO_DATE),
            (false, PoolReason::RollingUpdate)
        );
        assert_eq!(
            (DrainWhy::Outdated.reason(), DrainWhy::Surplus.reason()),
            ("RollingUpdate", "ScalingDown")
        );
    }

    #[test]
    fn the_next_look_is_clamped_between_a_second_and_five_minutes() {
        for (after, want) in [
            (None, 60),
            (Some(-5), 1),
            (Some(0), 1),
            (Some(1), 1),
            (Some(42), 42),
            (Some(300), 300),
            (Some(100_000), 300),
        ] {
            assert_eq!(recheck_seconds(after), want, "{after:?}");
        }
        let scheduled = |starts_in: i64| {
            pool_step(&PoolFacts {
                waiting: vec![WaitingConference::conference(
                    10,
                    10,
                    Span::of(Some(NOW + starts_in), None),
                )],
                ..facts(vec![node("a", 0, false)])
            })
            .recheck_seconds
        };
        // Warm-up is 300 s: the conference counts 10 s from now, or in over a day.
        assert_eq!(scheduled(310), 10);
        assert_eq!(scheduled(100_000), 300);
    }
}
