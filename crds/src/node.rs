//! MediaNode: one SFU instance (one pod) of a pool, its lifecycle phase and its load.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shared::NodeCapacity;

/// One media node (SFU pod). Created by the operator for its MediaPool; a person may set
/// `spec.draining` to drain it by hand.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "conclave.dev",
    version = "v1alpha1",
    kind = "MediaNode",
    namespaced,
    status = "MediaNodeStatus",
    shortname = "mn",
    category = "conclave",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Pool","type":"string","jsonPath":".spec.pool"}"#,
    printcolumn = r#"{"name":"Address","type":"string","jsonPath":".status.addresses.public"}"#,
    printcolumn = r#"{"name":"Rooms","type":"integer","jsonPath":".status.load.rooms"}"#,
    printcolumn = r#"{"name":"Participants","type":"integer","jsonPath":".status.load.participants"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MediaNodeSpec {
    /// The MediaPool this node belongs to. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.pool is immutable: a media node cannot move between pools"))]
    pub pool: String,
    /// What this node carries at most, copied from the pool when the node is created.
    /// Immutable: conferences were reserved against it.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.capacity is immutable: conferences were reserved against it; change the pool's nodeCapacity and let new nodes replace this one"))]
    pub capacity: NodeCapacity,
    /// Drain this node: it takes no new conferences, its conferences are moved or end, then
    /// its pod is removed. Set by the autoscaler or by a person; the autoscaler clears it
    /// again on a node it drained as surplus that still hosts conferences when the pool needs
    /// capacity again (`conclave.dev/drain-reason: ScalingDown`).
    #[serde(default)]
    pub draining: bool,
}

/// Lifecycle phase of a media node.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
pub enum MediaNodePhase {
    /// Created; its pod is not yet scheduled.
    #[default]
    Pending,
    /// The pod is scheduled or running, but not yet ready with a published address.
    Starting,
    /// Takes conferences.
    Ready,
    /// Takes no new conferences; existing ones move away or end.
    Draining,
    /// Drained: no conferences left; the pod is being removed.
    Drained,
    /// The pod failed or the heartbeat went stale; its conferences are re-placed.
    Failed,
}

impl MediaNodePhase {
    /// Whether the operator may move a node from `self` to `next`. Staying put is allowed.
    /// Failed and Drained are terminal: such a node is removed and replaced, never revived. A
    /// Draining node becomes Ready again when its drain is taken back before it drained (the
    /// autoscaler reclaims a node it drained as surplus while it still hosts rooms).
    pub fn may_become(self, next: MediaNodePhase) -> bool {
        use MediaNodePhase::*;
        if self == next {
            return true;
        }
        matches!(
            (self, next),
            (Pending | Starting | Ready | Draining, Failed)
                | (Pending, Starting | Draining | Drained)
                | (Starting, Ready | Draining | Drained)
                | (Ready, Draining | Starting)
                | (Draining, Drained | Ready)
        )
    }

    /// True for phases in which the node may still host conferences.
    pub fn hosts_rooms(self) -> bool {
        matches!(self, MediaNodePhase::Ready | MediaNodePhase::Draining)
    }
}

/// Where clients and peers reach a media node.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddresses {
    /// Public IP clients send media to (Node ExternalIP, the `conclave.dev/public-ip`
    /// annotation of the Node, else its InternalIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// Address inside the cluster (the pod IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal: Option<String>,
    /// WebSocket URL of the signaling endpoint clients connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signaling_url: Option<String>,
    /// The UDP port media arrives on, at the public address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_port: Option<u16>,
    /// The TCP port clients without UDP reach the media node on (ICE-TCP), at the public
    /// address; absent when the pool sets no `spec.mediaNode.tcpPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
}

/// Load of a media node, written by the media node itself.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeLoad {
    /// Open rooms.
    #[serde(default)]
    pub rooms: u32,
    /// Connected participants.
    #[serde(default)]
    pub participants: u32,
    /// Tracks published to this node.
    #[serde(default)]
    pub tracks_in: u32,
    /// Tracks forwarded to subscribers.
    #[serde(default)]
    pub tracks_out: u32,
    /// Media received, Mbit/s.
    #[serde(default)]
    pub ingress_mbps: f64,
    /// Media sent, Mbit/s.
    #[serde(default)]
    pub egress_mbps: f64,
    /// CPU used, in cores.
    #[serde(default)]
    pub cpu: f64,
}

/// Observed state of a media node. The operator writes phase, pod, addresses and conditions;
/// the media node writes `load` and `lastHeartbeat` under its own field manager.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaNodeStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MediaNodePhase>,
    /// Name of the pod running this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Kubernetes Node the pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Where clients reach this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<NodeAddresses>,
    /// Participants reserved here by placed conferences (sum of their maxParticipants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_participants: Option<u32>,
    /// When draining started; the pod is removed at this time plus drainTimeoutSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_since: Option<Time>,
    /// Seconds from the MediaNode's creation to its first Ready: how long this pool took to
    /// start it (pod scheduled, image pulled, process up, address published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_seconds: Option<u32>,
    /// Load reported by the media node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<NodeLoad>,
    /// Last time the media node reported its load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// True when the media node finds its conferences by their `status.mediaNode` (a field
    /// selector), reported with its load: the operator then places a conference with its
    /// status alone. Unset on media nodes of earlier versions, which watch the
    /// `conclave.dev/media-node` label, so the operator labels conferences placed on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watches_conference_status: Option<bool>,
    /// `Healthy`, `AddressReachable`, `Draining`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::MediaNodePhase::{self, *};

    const ALL: [MediaNodePhase; 6] = [Pending, Starting, Ready, Draining, Drained, Failed];

    #[test]
    fn lifecycle_moves_forward_except_a_drain_taken_back() {
        let allowed = [
            (Pending, Starting),
            (Starting, Ready),
            (Ready, Draining),
            (Draining, Drained),
            (Pending, Draining),
            (Starting, Draining),
            (Pending, Drained),
            (Starting, Drained),
            (Ready, Starting),
            (Draining, Ready),
        ];
        for from in ALL {
            for to in ALL {
                let live = !matches!(from, Failed | Drained);
                let expected =
                    from == to || allowed.contains(&(from, to)) || (to == Failed && live);
                assert_eq!(from.may_become(to), expected, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn failed_and_drained_are_terminal() {
        for to in ALL {
            assert_eq!(Failed.may_become(to), to == Failed);
            assert_eq!(Drained.may_become(to), to == Drained);
        }
    }

    #[test]
    fn only_ready_and_draining_host_rooms() {
        let hosting: Vec<_> = ALL.into_iter().filter(|p| p.hosts_rooms()).collect();
        assert_eq!(hosting, vec![Ready, Draining]);
    }
}
