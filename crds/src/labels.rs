//! Names shared through the Kubernetes API: labels, annotations, finalizers, field managers,
//! condition types and Secret keys. Every one is prefixed with the API group.

/// Label on MediaNodes, their Pods and the TURN objects: the MediaPool they belong to.
pub const POOL: &str = "conclave.dev/pool";
/// Label on a Conference: the MediaNode hosting it, written only for media nodes of earlier
/// versions, which watch it (current ones select `status.mediaNode`, see
/// `report::conferences_on`).
pub const MEDIA_NODE: &str = "conclave.dev/media-node";
/// Label on Pods and Deployments: which Conclave component runs in them.
pub const COMPONENT: &str = "conclave.dev/component";
/// Value of [`COMPONENT`] for media-node pods.
pub const COMPONENT_MEDIA_NODE: &str = "media-node";
/// Value of [`COMPONENT`] for TURN relay pods.
pub const COMPONENT_TURN: &str = "turn";

/// Annotation on a Kubernetes Node: the public IP clients reach it at, when the Node's own
/// ExternalIP is missing or wrong (for example behind a 1:1 NAT).
pub const PUBLIC_IP: &str = "conclave.dev/public-ip";
/// Annotation on a MediaNode the operator drains: why (the drain Event's reason, such as
/// `ScalingDown`, `RollingUpdate` or `NodeDraining`). Only a node drained as `ScalingDown` is
/// taken back by the autoscaler when the pool needs capacity again; one drained by hand has
/// none and is never taken back.
pub const DRAIN_REASON: &str = "conclave.dev/drain-reason";
/// Value of [`DRAIN_REASON`] for a node drained because the pool's capacity was surplus.
pub const DRAIN_SCALING_DOWN: &str = "ScalingDown";

/// Finalizer earlier versions put on every Conference; the operator removes it from those
/// that carry it (a deleted conference's reservation is released from the watch's delete
/// event, and its media node closes the room from its own watch).
pub const CONFERENCE_FINALIZER: &str = "conclave.dev/conference";
/// Finalizer on a MediaNode: its pod is stopped only after its rooms left or timed out.
pub const NODE_FINALIZER: &str = "conclave.dev/media-node";

/// Field manager of the operator for every object and status it writes.
pub const OPERATOR_MANAGER: &str = "conclave.dev/operator";
/// Field manager of the media node for `status.load`, `status.lastHeartbeat` and
/// conference `status.participants`.
pub const MEDIA_NODE_MANAGER: &str = "conclave-media-node";

/// Key in the pool Secret holding the HS256 join-token signing key.
pub const SECRET_JOIN_KEY: &str = "join-token-key";
/// Key in the pool Secret holding coturn's `static-auth-secret`.
pub const SECRET_TURN_SECRET: &str = "turn-shared-secret";

/// Name of the Secret a pool's keys live in.
pub fn pool_secret_name(pool: &str) -> String {
    format!("{pool}-conclave-keys")
}

/// Name of a pool's TURN Deployment and Service.
pub fn turn_name(pool: &str) -> String {
    format!("{pool}-turn")
}

/// Condition types, shared so operator, media node and tests spell them alike.
pub mod condition {
    /// Pool: at least one node is Ready and can take conferences.
    pub const READY: &str = "Ready";
    /// Pool: the spec can be turned into running objects (image, Secret, TURN).
    pub const RECONCILED: &str = "Reconciled";
    /// Node: the published address answered a STUN binding request.
    pub const ADDRESS_REACHABLE: &str = "AddressReachable";
    /// Node: the pod runs and the heartbeat is fresh.
    pub const HEALTHY: &str = "Healthy";
    /// Node: draining, with progress of evacuation in the message.
    pub const DRAINING: &str = "Draining";
    /// Conference: it has a node.
    pub const PLACED: &str = "Placed";
    /// Pool: its media nodes' heartbeats arrive; False when most stopped at once, which the
    /// operator treats as a control-plane problem rather than failing every node.
    pub const HEARTBEATS: &str = "Heartbeats";
    /// Pool with TURN: its relays may forward to every media node's published address; False
    /// names a node whose address `spec.turn.allowedPeers` must cover.
    pub const TURN_PEERS: &str = "TurnPeers";
    /// Pool with `spec.signaling`: its TLS Secret holds a certificate and key for
    /// `*.<domain>`; False names the problem, and no new media node or signaling URL is made.
    pub const SIGNALING_TLS: &str = "SignalingTLS";
    /// Pool: every live media node runs the pool's current pod template; False (reason
    /// `RollingUpdate`) while old ones are replaced, with progress and what holds it up.
    pub const UP_TO_DATE: &str = "UpToDate";
    /// Pool with `spec.turn.tls`: its Secret holds a certificate and key for the relays' host;
    /// False names the problem, and the relays run without TLS until it is fixed.
    pub const TURN_TLS: &str = "TurnTLS";
}
