//! Command-line and environment configuration of the operator binary.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

/// The Conclave operator.
#[derive(Debug, Parser)]
#[command(name = "conclave-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers.
    Run(RunConfig),
    /// Mint a join token for a conference, signed with its pool's key.
    Token(TokenConfig),
    /// Stop the operator and release its finalizers (the chart's pre-delete hook).
    Release(ReleaseConfig),
    /// Check an installed release (the chart's `helm test`).
    Check(CheckConfig),
}

/// Settings of `conclave-operator check`.
#[derive(Debug, Clone, Args)]
pub struct CheckConfig {
    /// Namespace of the operator's Deployment and its leader Lease.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// The operator's Deployment.
    #[arg(long)]
    pub deployment: String,
    /// Whether the operator elects a leader (then its Lease must be held and renewed).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "conclave-operator")]
    pub lease_name: String,
    /// Namespace the operator manages; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
}

/// Settings of `conclave-operator release`.
#[derive(Debug, Clone, Args)]
pub struct ReleaseConfig {
    /// Namespace of the operator's Deployment.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// The operator's Deployment.
    #[arg(long)]
    pub deployment: String,
    /// Namespace the operator manages; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Longest wait for the operator's pods to stop.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u32,
}

/// Settings of `conclave-operator run`.
#[derive(Debug, Clone, Args)]
pub struct RunConfig {
    /// Namespace to watch; all namespaces when unset.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader with a Lease so that several replicas can run; only the leader acts.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "conclave-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader holds the Lease without renewing it.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u32,
    /// ClusterRole bound (per pool namespace) to the media nodes' ServiceAccount.
    #[arg(
        long,
        env = "MEDIA_NODE_CLUSTER_ROLE",
        default_value = "conclave-media-node"
    )]
    pub media_node_cluster_role: String,
    /// RUST_LOG value passed to media-node pods.
    #[arg(long, env = "MEDIA_NODE_LOG", default_value = "info")]
    pub media_node_log: String,
    /// Probe each media node's published address and UDP port (a STUN binding request) before
    /// it takes conferences. Turn off only where the operator cannot reach the addresses
    /// clients use (then they are assumed to work).
    #[arg(
        long,
        env = "PROBE_MEDIA_ADDRESSES",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub probe_media_addresses: bool,
    /// DNS server (`ip:port`) that resolves the hostnames load balancers give; the pod's own
    /// resolver (`/etc/resolv.conf`) when unset.
    #[arg(long, env = "DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,
}

/// Settings of `conclave-operator token`.
#[derive(Debug, Clone, Args)]
pub struct TokenConfig {
    /// MediaPool whose key signs the token.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// Namespace of the pool and conference.
    #[arg(long, short = 'n', env = "NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Conference the token admits to.
    #[arg(long)]
    pub conference: String,
    /// Identity of the participant.
    #[arg(long)]
    pub identity: String,
    /// Lifetime, e.g. `90s`, `30m`, `1h`, `2d`.
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// Admit as a viewer who may not publish media.
    #[arg(long)]
    pub no_publish: bool,
}
