//! MediaPool: a fleet of media nodes, its sizing, scaling policy, pod template and TURN relays.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::shared::{NodeCapacity, PortRange};

/// A fleet of media nodes (SFU pods) and the policy that keeps it sized to room load.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "conclave.dev",
    version = "v1alpha1",
    kind = "MediaPool",
    namespaced,
    status = "MediaPoolStatus",
    shortname = "mpool",
    category = "conclave",
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredNodes","description":"Media nodes the autoscaler wants"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyNodes","description":"Media nodes that take conferences"}"#,
    printcolumn = r#"{"name":"Up-to-date","type":"integer","jsonPath":".status.updatedNodes","description":"Media nodes running the pool's current pod template"}"#,
    printcolumn = r#"{"name":"Draining","type":"integer","jsonPath":".status.drainingNodes","description":"Media nodes being drained"}"#,
    printcolumn = r#"{"name":"Participants","type":"integer","jsonPath":".status.participants","description":"Participants connected across the pool"}"#,
    printcolumn = r#"{"name":"Capacity","type":"integer","jsonPath":".status.capacity","description":"Participants the Ready nodes can carry"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.mediaNode.udpPort) || !has(self.mediaNode.udpPortRange)").message("spec.mediaNode.udpPortRange is replaced by spec.mediaNode.udpPort (media nodes use one UDP port): remove udpPortRange"))]
#[x_kube(validation = Rule::new("!self.turn.enabled || (has(self.mediaNode.udpPort) ? self.mediaNode.udpPort : (has(self.mediaNode.udpPortRange) ? self.mediaNode.udpPortRange.min : 7882)) < self.turn.relayPortRange.min || (has(self.mediaNode.udpPort) ? self.mediaNode.udpPort : (has(self.mediaNode.udpPortRange) ? self.mediaNode.udpPortRange.min : 7882)) > self.turn.relayPortRange.max").message("spec.turn.relayPortRange must not contain spec.mediaNode.udpPort (default 7882): TURN relays and media nodes may share a host"))]
#[x_kube(validation = Rule::new("!has(self.turn.tls) || (self.turn.tls.port != self.turn.port && self.turn.tls.port != self.mediaNode.signalingPort)").message("spec.turn.tls.port must differ from spec.turn.port and spec.mediaNode.signalingPort: relays and media nodes listen on their Nodes' own ports"))]
#[x_kube(validation = Rule::new("has(self.mediaNode.metricsPort) ? self.mediaNode.metricsPort != self.mediaNode.signalingPort : self.mediaNode.signalingPort < 65535").message("spec.mediaNode.metricsPort must differ from spec.mediaNode.signalingPort (it defaults to signalingPort + 1, so set it when signalingPort is 65535)"))]
#[x_kube(validation = Rule::new("(has(self.mediaNode.metricsPort) ? self.mediaNode.metricsPort : self.mediaNode.signalingPort + 1) != self.turn.port").message("spec.mediaNode.metricsPort (default signalingPort + 1) must differ from spec.turn.port: media nodes and relays listen on their Nodes' own ports"))]
#[x_kube(validation = Rule::new("!has(self.mediaNode.tcpPort) || (self.mediaNode.tcpPort != self.mediaNode.signalingPort && self.mediaNode.tcpPort != (has(self.mediaNode.metricsPort) ? self.mediaNode.metricsPort : self.mediaNode.signalingPort + 1))").message("spec.mediaNode.tcpPort must differ from spec.mediaNode.signalingPort and spec.mediaNode.metricsPort (default signalingPort + 1)"))]
#[x_kube(validation = Rule::new("!(self.mediaNode.hostNetwork && self.mediaNode.exposure != 'HostPort')").message("spec.mediaNode.exposure NodePort or LoadBalancer needs spec.mediaNode.hostNetwork false: a media node on the host network is reached on its own ports; remove one of the two"))]
#[x_kube(validation = Rule::new("!has(self.mediaNode.service) || self.mediaNode.exposure != 'HostPort'").message("spec.mediaNode.service needs spec.mediaNode.exposure NodePort or LoadBalancer: with HostPort there is no Service to apply it to"))]
#[x_kube(validation = Rule::new("!has(self.mediaNode.service) || !has(self.mediaNode.service.loadBalancerClass) || self.mediaNode.exposure == 'LoadBalancer'").message("spec.mediaNode.service.loadBalancerClass needs spec.mediaNode.exposure LoadBalancer"))]
#[x_kube(validation = Rule::new("!has(self.mediaNode.tcpPort) || !self.turn.enabled || (self.mediaNode.tcpPort != self.turn.port && (!has(self.turn.tls) || self.mediaNode.tcpPort != self.turn.tls.port))").message("spec.mediaNode.tcpPort must differ from spec.turn.port and spec.turn.tls.port: relays and media nodes listen on their Nodes' own ports"))]
#[x_kube(validation = Rule::new("(has(self.region) ? self.region : '') == (has(oldSelf.region) ? oldSelf.region : '')").message("spec.region is immutable: conferences were placed by it; create a new pool for another region"))]
pub struct MediaPoolSpec {
    /// Region of this pool (a DNS label such as `eu-west-1`). Conferences that ask for a
    /// region are placed on pools of that region. Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// What one media node carries at most: participants, rooms and egress bandwidth.
    #[serde(default = "default_node_capacity")]
    pub node_capacity: NodeCapacity,
    /// How many media nodes run and how the pool grows and shrinks.
    #[serde(default)]
    pub scaling: Scaling,
    /// The pod each media node runs in: image, resources, ports and where it may run.
    #[serde(default)]
    pub media_node: MediaNodeTemplate,
    /// TURN relays (coturn) for clients that cannot reach the media nodes over UDP.
    #[serde(default)]
    pub turn: TurnSpec,
    /// TLS signaling terminated by the media nodes themselves: node `<name>` serves its call
    /// page at `https://<name>.<domain>:<signalingPort>/` and signaling at
    /// `wss://<name>.<domain>:<signalingPort>/rtc`. Without it the signaling URL is
    /// `ws://<public address>:<signalingPort>/rtc` (local clusters and tests only: browsers
    /// give the camera to pages on no other origin but `localhost` without TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signaling: Option<SignalingTls>,
    /// Secrets the kubelet uses to pull the media-node and TURN images from a private
    /// registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// How running media nodes are replaced when the pod they would get changes (image,
    /// resources, scheduling, TLS): new nodes are added and old ones drained, their
    /// conferences moved at `scaling.evacuationRate`, never cut.
    #[serde(default)]
    pub rollout: Rollout,
}

/// Pace of replacing media nodes whose pod no longer matches the pool's template.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxSurge + self.maxUnavailable >= 1").message("spec.rollout.maxSurge and spec.rollout.maxUnavailable cannot both be 0: no media node could be replaced; set maxSurge: 1 (add a node first) or maxUnavailable: 1 (drain one first)"))]
pub struct Rollout {
    /// Media nodes added above the pool's current need while old ones are replaced. With
    /// hostNetwork each Kubernetes node runs one media node of a pool, so a surge needs a
    /// free Kubernetes node; where there is none, use maxSurge 0 and maxUnavailable 1.
    #[schemars(range(max = 100))]
    #[serde(default = "default_max_surge")]
    pub max_surge: u32,
    /// Media nodes that may be taken out of service (drained) before their replacement is
    /// Ready. A node is drained only when the other Ready nodes have room for its
    /// conferences.
    #[schemars(range(max = 100))]
    #[serde(default)]
    pub max_unavailable: u32,
}

fn default_max_surge() -> u32 {
    1
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_surge: default_max_surge(),
            max_unavailable: 0,
        }
    }
}

fn default_node_capacity() -> NodeCapacity {
    NodeCapacity {
        participants: 200,
        rooms: 50,
        egress_mbps: 1000,
    }
}

/// How a pool chooses among nodes that fit a conference.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Strategy {
    /// Fill the most-loaded node that still fits, so other nodes empty and can be removed.
    #[default]
    Packed,
    /// Spread conferences onto the least-loaded node, to limit the blast radius of a node.
    Distributed,
}

/// How clients reach a media node's signaling and media ports.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Exposure {
    /// The pod publishes its ports as hostPorts (or binds them on the host network): clients
    /// reach them at the Node's address, on the pool's own port numbers. One media node of
    /// the pool per Kubernetes node.
    #[default]
    HostPort,
    /// A NodePort Service per media node, `externalTrafficPolicy: Local` (the client's
    /// address reaches the media node unchanged): clients reach it at the Node's address on
    /// the ports the API server allocated, which the operator publishes. The pod holds no
    /// host port, so several media nodes of one pool can share a Kubernetes node. Open the
    /// cluster's NodePort range (30000-32767 by default) instead of the pool's ports.
    NodePort,
    /// A Service of type LoadBalancer per media node, `externalTrafficPolicy: Local`: clients
    /// reach it at the address the cluster's load balancer gives the Service
    /// (`status.loadBalancer.ingress`), on the pool's own ports; a load balancer that gives
    /// a hostname (AWS's NLB) is published at an address the name resolves to, since ICE
    /// candidates carry addresses. A node takes no conference before its load balancer has
    /// an address that answers. The load balancer must carry TCP and UDP on one address and
    /// keep the client's address (most do with `Local`). Like NodePort, several media nodes
    /// of one pool can share a Kubernetes node.
    LoadBalancer,
}

/// The Service each media node gets with `exposure` NodePort or LoadBalancer.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeServiceTemplate {
    /// Annotations of each Service, for the cloud's or cluster's load balancer (for example
    /// its type, address pool or health check).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `spec.loadBalancerClass` of each Service (exposure LoadBalancer only): which load
    /// balancer implementation serves it, where a cluster has several. Immutable on a
    /// Service once set.
    #[schemars(length(min = 1, max = 253))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
}

/// Scaling policy of a pool.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minNodes <= self.maxNodes").message("spec.scaling.minNodes must be less than or equal to spec.scaling.maxNodes"))]
pub struct Scaling {
    /// Fewest media nodes kept running, even with no load. Between 0 and 1000.
    #[schemars(range(max = 1000))]
    #[serde(default = "default_min_nodes")]
    pub min_nodes: u32,
    /// Most media nodes the pool may run. Between 1 and 1000.
    #[schemars(range(min = 1, max = 1000))]
    #[serde(default = "default_max_nodes")]
    pub max_nodes: u32,
    /// Spare participant capacity kept warm on Ready nodes beyond reserved and actual load,
    /// so that ad-hoc conferences never wait for a node to start.
    #[schemars(range(max = 1000000))]
    #[serde(default = "default_buffer")]
    pub buffer_participants: u32,
    /// How long before a scheduled conference's startTime it is placed on a Ready node. The
    /// autoscaler starts nodes for it earlier by the pool's measured node start
    /// (status.nodeStartupSeconds).
    #[schemars(range(max = 86400))]
    #[serde(default = "default_warmup")]
    pub warmup_seconds: u32,
    /// How long the pool must have had surplus capacity before a node is drained (no flapping).
    #[schemars(range(max = 86400))]
    #[serde(default = "default_scale_down_delay")]
    pub scale_down_delay_seconds: u32,
    /// Longest a draining node keeps live conferences before its pod is deleted anyway.
    #[schemars(range(max = 604800))]
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_seconds: u32,
    /// Conferences per minute moved off draining nodes onto other nodes (evacuation).
    /// 0 disables evacuation: draining nodes keep their conferences until they end.
    #[schemars(range(max = 6000))]
    #[serde(default = "default_evacuation_rate")]
    pub evacuation_rate: u32,
    /// `Packed` (default) fills nodes so others can drain, putting meetings that end together
    /// on the same nodes; `Distributed` spreads load.
    #[serde(default)]
    pub strategy: Strategy,
}

fn default_min_nodes() -> u32 {
    1
}
fn default_max_nodes() -> u32 {
    10
}
fn default_buffer() -> u32 {
    50
}
fn default_warmup() -> u32 {
    300
}
fn default_scale_down_delay() -> u32 {
    300
}
fn default_drain_timeout() -> u32 {
    3600
}
fn default_evacuation_rate() -> u32 {
    5
}

impl MediaPool {
    /// The STUN and TURN URLs published for the pool's relays (`status.turn.urls`): empty
    /// until a relay is Ready, and when TURN is off.
    pub fn relay_urls(&self) -> &[String] {
        self.status
            .as_ref()
            .and_then(|s| s.turn.as_ref())
            .map_or(&[], |t| t.urls.as_slice())
    }
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            min_nodes: default_min_nodes(),
            max_nodes: default_max_nodes(),
            buffer_participants: default_buffer(),
            warmup_seconds: default_warmup(),
            scale_down_delay_seconds: default_scale_down_delay(),
            drain_timeout_seconds: default_drain_timeout(),
            evacuation_rate: default_evacuation_rate(),
            strategy: Strategy::Packed,
        }
    }
}

/// The pod template of a pool's media nodes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaNodeTemplate {
    /// Container image of the media node.
    #[schemars(length(min = 1))]
    #[serde(default = "default_media_image")]
    pub image: String,
    /// CPU and memory requests and limits of the media-node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// TCP port of the signaling WebSocket (`/rtc`), health and metrics endpoints.
    #[schemars(range(min = 1024, max = 65535))]
    #[serde(default = "default_signaling_port")]
    pub signaling_port: u16,
    /// TCP port of the media node's `/metrics`, kept off the public signaling port: scrape it
    /// from inside the cluster, do not expose it. Default: `signalingPort` + 1.
    #[schemars(range(min = 1024, max = 65535))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
    /// The one UDP port all of a media node's peer connections share (ICE, DTLS, SRTP):
    /// open it in firewalls, on the Nodes the pool runs on. Default 7882 (or the first port of
    /// a pool's deprecated `udpPortRange`). Pools on the same Nodes need distinct ports.
    #[schemars(range(min = 1024, max = 65535))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_port: Option<u16>,
    /// Deprecated: media nodes bind one UDP port, `udpPort`. A pool that still sets a range
    /// keeps working on the range's first port (so firewall rules made for it hold); replace
    /// it with `udpPort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_port_range: Option<PortRange>,
    /// The one TCP port all of a media node's peer connections share for ICE-TCP: clients
    /// whose networks let no UDP out (some offices, some proxies) connect to it, without a
    /// TURN relay. Unset: the media nodes offer no TCP candidates. Open it in firewalls, like
    /// `udpPort`; pools on the same Nodes need distinct ports.
    #[schemars(range(min = 1024, max = 65535))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_port: Option<u16>,
    /// Run on the host network instead of publishing the signaling and media ports as
    /// hostPorts of the pod. Default false: the pod keeps its own network namespace and the
    /// Node's address serves both ports through the CNI's port mapping.
    #[serde(default)]
    pub host_network: bool,
    /// How clients reach the media nodes: `HostPort` (the default: the pod's hostPorts, or
    /// the host network), `NodePort` (a NodePort Service per media node) or `LoadBalancer`
    /// (a LoadBalancer Service per media node); the last two not with hostNetwork.
    #[serde(default)]
    pub exposure: Exposure,
    /// Annotations and load balancer class of the per-node Services (exposure NodePort or
    /// LoadBalancer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<NodeServiceTemplate>,
    /// Nodes the media-node pods may be scheduled on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the media-node pods (for example of dedicated media Nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the media-node pods (for example zones, or away from other workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the media-node pods: give live calls a class that is not preempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Signaling sockets one source address (IPv6: one /64) may hold on a media node; more
    /// are refused with HTTP 429. Raise it when many users share one address (a large office,
    /// carrier-grade NAT) or reach the nodes through a proxy that hides their addresses.
    #[schemars(range(min = 1, max = 100000))]
    #[serde(default = "default_connections_per_address")]
    pub max_connections_per_address: u32,
    /// A media node whose heartbeat is older than this is Failed and its conferences move,
    /// unless most of the pool's nodes (at least 3) went quiet at once: that is treated as a
    /// control-plane problem and nothing is failed for it (the `Heartbeats` condition). Media
    /// nodes renew their Lease three times per timeout, so a longer one also means fewer API
    /// writes (1,000 nodes: 200 renewals a second at 15 s, 50 at 60 s).
    #[schemars(range(min = 3, max = 600))]
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout_seconds: u32,
}

/// The media-node image `make images` builds, of this version.
fn default_media_image() -> String {
    concat!("localhost/conclave/media-node:", env!("CARGO_PKG_VERSION")).to_owned()
}
/// The media node's metrics port when none is set: the one after its signaling port.
pub fn default_metrics_port(signaling_port: u16) -> u16 {
    signaling_port.saturating_add(1)
}
fn default_connections_per_address() -> u32 {
    256
}
fn default_signaling_port() -> u16 {
    7880
}
/// The media node's UDP port when a pool sets none.
pub const DEFAULT_UDP_PORT: u16 = 7882;
/// `spec.mediaNode.heartbeatTimeoutSeconds` when a pool sets none.
pub const DEFAULT_HEARTBEAT_TIMEOUT_SECONDS: u32 = 15;
fn default_true() -> bool {
    true
}
fn default_heartbeat_timeout() -> u32 {
    DEFAULT_HEARTBEAT_TIMEOUT_SECONDS
}

impl MediaNodeTemplate {
    /// The port of the media node's `/metrics`: `metricsPort`, or the default for its
    /// signaling port.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
            .unwrap_or_else(|| default_metrics_port(self.signaling_port))
    }

    /// The media node's UDP port: `udpPort`, else the first port of the deprecated
    /// `udpPortRange`, else 7882.
    pub fn udp_port(&self) -> u16 {
        self.udp_port
            .or(self.udp_port_range.map(|r| r.min))
            .unwrap_or(DEFAULT_UDP_PORT)
    }
}

impl Default for MediaNodeTemplate {
    fn default() -> Self {
        Self {
            image: default_media_image(),
            resources: None,
            signaling_port: default_signaling_port(),
            metrics_port: None,
            udp_port: None,
            udp_port_range: None,
            tcp_port: None,
            host_network: false,
            exposure: Exposure::HostPort,
            service: None,
            node_selector: None,
            tolerations: None,
            affinity: None,
            priority_class_name: None,
            max_connections_per_address: default_connections_per_address(),
            heartbeat_timeout_seconds: default_heartbeat_timeout(),
        }
    }
}

/// TURN relays (coturn) run for a pool.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.turn.minReplicas must be less than or equal to spec.turn.maxReplicas"))]
pub struct TurnSpec {
    /// Run TURN relays for this pool. About 10–20 % of clients need one.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Container image of the TURN server (coturn).
    #[schemars(length(min = 1))]
    #[serde(default = "default_turn_image")]
    pub image: String,
    /// Fewest TURN replicas. Between 0 and 100.
    #[schemars(range(max = 100))]
    #[serde(default = "default_turn_min")]
    pub min_replicas: u32,
    /// Most TURN replicas. Between 1 and 100.
    #[schemars(range(min = 1, max = 100))]
    #[serde(default = "default_turn_max")]
    pub max_replicas: u32,
    /// Expected share of participants that relay through TURN, between 0 and 1.
    #[schemars(range(min = 0.0, max = 1.0))]
    #[serde(default = "default_relay_fraction")]
    pub relay_fraction: f64,
    /// Relay allocations one TURN replica carries.
    #[schemars(range(min = 1, max = 100000))]
    #[serde(default = "default_allocations")]
    pub allocations_per_replica: u32,
    /// UDP and TCP port TURN listens on.
    #[schemars(range(min = 1, max = 65535))]
    #[serde(default = "default_turn_port")]
    pub port: u16,
    /// UDP ports TURN allocates relays from. Must not overlap the media nodes' range.
    #[serde(default = "default_relay_range")]
    pub relay_port_range: PortRange,
    /// TURN realm.
    #[schemars(length(min = 1, max = 253))]
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Lifetime of the TURN credentials media nodes hand to clients, in seconds.
    #[schemars(range(min = 60, max = 604800))]
    #[serde(default = "default_credential_ttl")]
    pub credential_ttl_seconds: u32,
    /// Relay allocations one TURN user (one participant: media nodes mint credentials per
    /// participant) may hold at once on a relay; more are refused (486 Allocation Quota
    /// Reached), so that one client cannot exhaust a relay's ports. A browser takes about two
    /// per relay address it is given (UDP and TCP), and new ones on an ICE restart.
    #[schemars(range(min = 1, max = 10000))]
    #[serde(default = "default_user_quota")]
    pub user_quota: u32,
    /// TURN over TLS (`turns:`), for clients behind firewalls that pass only TLS: each relay
    /// also listens for TLS on `port` with the certificate of a `kubernetes.io/tls` Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TurnTls>,
    /// Let the relays forward to loopback addresses. Only for a cluster on one machine whose
    /// Nodes listen on 127.0.0.x (local development); never on a real cluster, where it would
    /// open the Node's local services to anyone holding TURN credentials.
    #[serde(default)]
    pub allow_loopback_peers: bool,
    /// Private address ranges (CIDR, IPv4 or IPv6) the relays may forward to. By default they
    /// refuse private (RFC 1918, RFC 6598, unique-local), loopback and link-local peers, so
    /// that TURN credentials do not open the cluster's network. List here the ranges of
    /// media-node addresses that are private (the Nodes' subnet when media nodes publish an
    /// InternalIP); the pool's `TurnPeers` condition names any media node the relays would
    /// refuse.
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("spec.turn.allowedPeers must hold CIDR ranges such as 10.0.0.0/16 or fd00::/64"))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_peers: Vec<String>,
    /// CPU and memory requests and limits of the relay container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Nodes the relay pods may be scheduled on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the relay pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the relay pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the relay pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// TURN over TLS for a pool's relays.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnTls {
    /// DNS name clients reach the relays by, published as `turns:<host>:<port>`: resolve it
    /// to the relays' addresses (one record per relay Node, or a load balancer in front of
    /// them). Any relay serves any client: credentials come from the pool's shared secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])+[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')").message("spec.turn.tls.host must be a lowercase DNS name such as turn.example.com"))]
    pub host: String,
    /// TCP port of the TLS listener on each relay's Node. Ports below 1024 (443 passes most
    /// firewalls) are bound by coturn as root with only the capability to do so, before it
    /// drops to its unprivileged user.
    #[schemars(range(min = 1, max = 65535))]
    #[serde(default = "default_turn_tls_port")]
    pub port: u16,
    /// `kubernetes.io/tls` Secret in the pool's namespace with a certificate (`tls.crt`) valid
    /// for `host` and its key (`tls.key`), e.g. issued by cert-manager. A renewed certificate
    /// restarts the relays one at a time (a relayed client reconnects through another).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

fn default_turn_tls_port() -> u16 {
    5349
}

/// The TURN image `make images` builds (Debian's coturn), of this version.
fn default_turn_image() -> String {
    concat!("localhost/conclave/turn:", env!("CARGO_PKG_VERSION")).to_owned()
}
fn default_turn_min() -> u32 {
    1
}
fn default_turn_max() -> u32 {
    4
}
fn default_relay_fraction() -> f64 {
    0.2
}
fn default_allocations() -> u32 {
    500
}
fn default_turn_port() -> u16 {
    3478
}
fn default_relay_range() -> PortRange {
    PortRange {
        min: 40000,
        max: 49999,
    }
}
fn default_realm() -> String {
    "conclave".to_owned()
}
fn default_credential_ttl() -> u32 {
    3600
}
fn default_user_quota() -> u32 {
    32
}

impl Default for TurnSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: default_turn_image(),
            min_replicas: default_turn_min(),
            max_replicas: default_turn_max(),
            relay_fraction: default_relay_fraction(),
            allocations_per_replica: default_allocations(),
            port: default_turn_port(),
            relay_port_range: default_relay_range(),
            realm: default_realm(),
            credential_ttl_seconds: default_credential_ttl(),
            user_quota: default_user_quota(),
            tls: None,
            allow_loopback_peers: false,
            allowed_peers: Vec::new(),
            resources: None,
            node_selector: None,
            tolerations: None,
            affinity: None,
            priority_class_name: None,
        }
    }
}

/// TLS signaling served by each media node with a certificate for `*.<domain>`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalingTls {
    /// DNS domain under which each media node gets its own host name `<media node>.<domain>`,
    /// e.g. `media.example.com`. DNS must resolve each such name to its node's public address
    /// (see docs/operations.md, "TLS signaling").
    #[schemars(length(min = 1, max = 240))]
    #[x_kube(validation = Rule::new("self.matches('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?[.])*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')").message("spec.signaling.domain must be a lowercase DNS name such as media.example.com: labels of letters, digits and '-' separated by dots"))]
    pub domain: String,
    /// `kubernetes.io/tls` Secret in the pool's namespace holding a certificate (`tls.crt`)
    /// valid for `*.<domain>` and its key (`tls.key`), e.g. issued by cert-manager. Mounted
    /// read-only into every media node, which picks up a renewed certificate without a
    /// restart.
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: String,
}

/// Observed state of a pool, written by the operator.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaPoolStatus {
    /// Media nodes the autoscaler wants running (not counting draining ones).
    #[serde(default)]
    pub desired_nodes: u32,
    /// MediaNode objects of this pool, in any phase.
    #[serde(default)]
    pub nodes: u32,
    /// Media nodes that are Ready and not draining.
    #[serde(default)]
    pub ready_nodes: u32,
    /// Media nodes that are draining.
    #[serde(default)]
    pub draining_nodes: u32,
    /// Participants connected across the pool, as reported by the media nodes.
    #[serde(default)]
    pub participants: u32,
    /// Participants reserved by placed conferences (their maxParticipants).
    #[serde(default)]
    pub reserved_participants: u32,
    /// Participants the Ready, non-draining nodes can carry.
    #[serde(default)]
    pub capacity: u32,
    /// Live media nodes (not draining) whose pod matches the pool's current template.
    #[serde(default)]
    pub updated_nodes: u32,
    /// Since when the pool has had more capacity than it needs; the autoscaler drains a node
    /// once this is older than scaleDownDelaySeconds. Unset while capacity is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surplus_since: Option<Time>,
    /// The slowest start (creation to Ready) among the pool's media nodes, or the last one
    /// known when none has started yet. The autoscaler starts nodes for a scheduled
    /// conference this long before its warm-up begins, so they are Ready when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_startup_seconds: Option<u32>,
    /// TURN relays serving this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnStatus>,
    /// `Ready` (a node takes conferences), `Reconciled` (the spec could be applied),
    /// `Heartbeats` (False, reason `Stalled`, when most media nodes stopped heartbeating at
    /// once: then none is failed for it) and `UpToDate` (False, reason `RollingUpdate`, while
    /// media nodes are replaced after a template change).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// TURN relays of a pool.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TurnStatus {
    /// Replicas the TURN Deployment runs.
    #[serde(default)]
    pub replicas: u32,
    /// `stun:` and `turn:` URLs clients use, published into each conference's join info.
    #[serde(default)]
    pub urls: Vec<String>,
}
