//! The operator's decisions as pure functions over plain data: a conference's next step
//! (`conference`), where it goes (`placement`), which pool of a region it lands on or grows
//! (`region`), whether a media node is alive (`liveness`), how big a pool should be
//! (`autoscale`), when the next conference may be moved off a draining node (`evacuation`),
//! when the cluster's disruptions make a node drain (`disruption`), what a node's phase is
//! (`lifecycle`) and what its status says (`node_status`), when a node's reservations occupy
//! it (`reservation`), what in a pool spec cannot run (`pool_spec`), what the pool controller
//! does and publishes in one pass (`pool_step`, its conditions' words in `pool_conditions`),
//! which nodes a template change replaces and how fast (`rollout`), the signaling URL of a
//! pool (`signaling`) and whether its TLS Secrets can be served (`certificate`), whether a
//! pool's heartbeats stalled together (`stall`) and which peers its TURN relays may reach
//! (`turn_peers`). No Kubernetes types, no I/O, no clock: the reconcilers gather these inputs
//! from the API, call the functions, and apply the result.

pub mod autoscale;
pub mod certificate;
pub mod conference;
pub mod disruption;
pub mod evacuation;
pub mod lifecycle;
pub mod liveness;
pub mod node_status;
pub mod placement;
pub mod pool_conditions;
pub mod pool_spec;
pub mod pool_step;
pub mod reachability;
pub mod region;
pub mod reservation;
pub mod rollout;
pub mod signaling;
pub mod stall;
pub mod turn_peers;

use conclave_crds::capacity::Usage;
use conclave_crds::{MediaNodePhase, NodeCapacity};
use reservation::{Reservations, Span};

/// Seconds since the Unix epoch; every time input is one of these.
pub type UnixSeconds = i64;

/// What the decisions need to know about one media node. The default is a Pending node that
/// never heartbeated, of no capacity, holding nothing: a base for the fields a caller sets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    /// MediaNode name; also the deterministic tie-breaker (lexicographic).
    pub name: String,
    /// Lifecycle phase (None until the node controller set one: treat as Pending).
    pub phase: MediaNodePhase,
    /// `spec.draining`.
    pub draining: bool,
    /// When draining started, if it has.
    pub draining_since: Option<UnixSeconds>,
    /// When the MediaNode was created.
    pub created_at: UnixSeconds,
    /// Last heartbeat written by the media node, if any.
    pub last_heartbeat: Option<UnixSeconds>,
    /// `spec.capacity`.
    pub capacity: NodeCapacity,
    /// The reservations of the conferences placed here: each its maxParticipants and one
    /// room, over its span.
    pub reserved: Reservations,
    /// Participants and rooms the media node reports (status.load).
    pub reported: Usage,
    /// Region of the node's pool, if any.
    pub region: Option<String>,
    /// Its pod was made from an older template of the pool: the rollout replaces it, and
    /// placement prefers other nodes.
    pub outdated: bool,
    /// Its published address did not answer the operator's last probe (`AddressReachable`
    /// False): it keeps what it hosts but takes no new conference.
    pub unreachable: bool,
    /// The autoscaler drained it as surplus (`conclave.dev/drain-reason: ScalingDown`): it may
    /// take the drain back when the pool needs capacity again. False for a node drained by
    /// hand, by a rollout or because its Kubernetes node is leaving.
    pub drained_as_surplus: bool,
    /// `status.startupSeconds`: how long it took from creation to its first Ready.
    pub startup_seconds: Option<i64>,
}

/// Whether a node in `phase`, with `spec.draining` as `draining`, is live: Pending, Starting
/// or Ready and not draining, or still Draining in status after its drain was taken back
/// (the node controller makes it Ready again). The autoscaler sizes the pool (and maxNodes
/// bounds it) by these.
pub fn is_live(phase: MediaNodePhase, draining: bool) -> bool {
    !draining
        && matches!(
            phase,
            MediaNodePhase::Pending
                | MediaNodePhase::Starting
                | MediaNodePhase::Ready
                | MediaNodePhase::Draining
        )
}

impl NodeView {
    /// [`is_live`] for this node.
    pub fn is_live(&self) -> bool {
        is_live(self.phase, self.draining)
    }

    /// What the node has committed, whenever: the larger of everything reserved and what it
    /// reports connected. A node with any commitment is not empty.
    pub fn committed(&self) -> Usage {
        Usage::committed(self.reserved.total(), self.reported)
    }

    /// What the node has committed at the worst moment of `span` from `now` on: the
    /// reservations occupied then, plus what it reports connected beyond the reservations
    /// occupied now (participants who joined early, or a conference reserved elsewhere).
    pub fn committed_over(&self, span: Span, now: UnixSeconds) -> Usage {
        self.reserved.committed_over(self.reported, span, now)
    }
}
