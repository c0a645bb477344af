//! Command-line and environment configuration of the media node (the pod contract in
//! `docs/pod-contract.md`). Nothing else reads the environment.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::signaling::SignalingLimits;
use crate::signaling::limits::{ConnectionCaps, RateLimit};

/// How often the load is checked for news worth a report, unless `--heartbeat-seconds` says.
const DEFAULT_LOAD_CHECK: Duration = Duration::from_secs(5);

/// Configuration of one media node process.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "media-node",
    version,
    about = "Conclave media node: SFU with WebSocket signaling"
)]
pub struct Config {
    /// Name of this node's MediaNode object.
    #[arg(long, env = "MEDIA_NODE_NAME")]
    pub node_name: String,
    /// Namespace of the MediaNode, its MediaPool and Conferences.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Address to bind signaling and media sockets on (the pod IP; with hostNetwork the
    /// Node's address).
    #[arg(long, env = "POD_IP", default_value = "0.0.0.0")]
    pub pod_ip: IpAddr,
    /// HS256 key join tokens are verified with.
    #[arg(long, env = "CONCLAVE_JOIN_KEY", hide_env_values = true)]
    pub join_key: String,
    /// Shared secret of the pool's TURN servers (TURN REST credentials).
    #[arg(
        long,
        env = "CONCLAVE_TURN_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub turn_secret: String,
    /// TCP port of the signaling WebSocket and HTTP probes.
    #[arg(long, default_value_t = 7880)]
    pub signaling_port: u16,
    /// TCP port of `/metrics`, kept off the public signaling port (do not expose it);
    /// default the signaling port + 1.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// The UDP port every peer connection of the node shares (ICE, DTLS, SRTP).
    #[arg(long, default_value_t = 7882)]
    pub udp_port: u16,
    /// The TCP port every peer connection of the node shares for ICE-TCP, for clients whose
    /// networks block UDP; none: the node offers no TCP candidates.
    #[arg(long)]
    pub tcp_port: Option<u16>,
    /// Seconds between Lease renewals (heartbeats) and between checks of the load worth a
    /// report; by default the Lease is renewed three times per heartbeatTimeoutSeconds of
    /// the pool and the load checked every 5 seconds.
    #[arg(long, env = "CONCLAVE_HEARTBEAT_SECONDS")]
    pub heartbeat_seconds: Option<u64>,
    /// Seconds a draining node keeps its rooms before it exits anyway.
    #[arg(long, env = "CONCLAVE_DRAIN_GRACE_SECONDS", default_value_t = 3600)]
    pub drain_grace_seconds: u64,
    /// Seconds a disconnected peer may take to come back before it is removed.
    #[arg(long, env = "CONCLAVE_PEER_DISCONNECT_SECONDS", default_value_t = 10)]
    pub peer_disconnect_seconds: u64,
    /// PEM certificate chain: with it (and --tls-key) the signaling port serves https and
    /// wss only. Reloaded when the file changes.
    #[arg(long, env = "CONCLAVE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CONCLAVE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest chat message relayed, bytes.
    #[arg(long, env = "CONCLAVE_CHAT_MAX_BYTES", default_value_t = 16 * 1024)]
    pub chat_max_bytes: usize,
    /// Seconds a signaling socket may stay open without sending `join` before it is closed.
    #[arg(long, env = "CONCLAVE_JOIN_TIMEOUT_SECONDS", default_value_t = 5)]
    pub join_timeout_seconds: u64,
    /// Signaling sockets the node holds at once, joined or not; more are refused with 503.
    #[arg(long, env = "CONCLAVE_MAX_CONNECTIONS", default_value_t = 4000)]
    pub max_connections: u32,
    /// Signaling sockets one source address (IPv6: one /64) may hold; more are refused with
    /// 429. Raise it when clients reach the node through a proxy or a shared NAT.
    #[arg(
        long,
        env = "CONCLAVE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_connections_per_address: u32,
    /// Signaling messages per second one client may send, sustained.
    #[arg(long, env = "CONCLAVE_SIGNALING_RATE", default_value_t = 20.0)]
    pub signaling_rate: f64,
    /// Signaling messages one client may send at once (bursts above the rate).
    #[arg(long, env = "CONCLAVE_SIGNALING_BURST", default_value_t = 200)]
    pub signaling_burst: u32,
}

impl Config {
    /// The port `/metrics` is served on.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
            .unwrap_or_else(|| conclave_crds::pool::default_metrics_port(self.signaling_port))
    }

    /// Interval between Lease renewals when set on the command line; else the pool's
    /// heartbeat timeout decides it.
    pub fn heartbeat(&self) -> Option<Duration> {
        self.heartbeat_seconds
            .map(|seconds| Duration::from_secs(seconds.max(1)))
    }

    /// Interval between checks of whether the load is worth a report.
    pub fn load_check(&self) -> Duration {
        self.heartbeat().unwrap_or(DEFAULT_LOAD_CHECK)
    }

    /// Limits of the signaling endpoint.
    pub fn signaling_limits(&self) -> SignalingLimits {
        SignalingLimits {
            join_timeout: Duration::from_secs(self.join_timeout_seconds.max(1)),
            connections: ConnectionCaps {
                per_node: self.max_connections.max(1),
                per_address: self.max_connections_per_address.max(1),
            },
            rate: RateLimit {
                per_second: self.signaling_rate,
                burst: self.signaling_burst.max(1),
            },
        }
    }

    /// How long draining may keep rooms open.
    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs(self.drain_grace_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_contract_arguments_parse() {
        let c = Config::try_parse_from([
            "media-node",
            "--signaling-port=7881",
            "--udp-port=50000",
            "--node-name=n1",
            "--join-key=k",
            "--pod-ip=127.0.0.2",
        ])
        .expect("parses");
        assert_eq!(c.signaling_port, 7881);
        assert_eq!(c.udp_port, 50000);
        assert_eq!(c.pod_ip.to_string(), "127.0.0.2");
        assert_eq!(c.heartbeat(), None);
        assert_eq!(c.load_check(), Duration::from_secs(5));
        assert_eq!(c.signaling_limits(), SignalingLimits::default());
        assert_eq!(c.tls_cert, None);
    }

    #[test]
    fn signaling_limits_parse() {
        let c = Config::try_parse_from([
            "media-node",
            "--node-name=n1",
            "--join-key=k",
            "--join-timeout-seconds=3",
            "--max-connections=100",
            "--max-connections-per-address=4",
            "--signaling-rate=5",
            "--signaling-burst=50",
        ])
        .expect("parses");
        let l = c.signaling_limits();
        assert_eq!(l.join_timeout, Duration::from_secs(3));
        assert_eq!(
            (l.connections.per_node, l.connections.per_address),
            (100, 4)
        );
        assert_eq!((l.rate.per_second, l.rate.burst), (5.0, 50));
    }

    #[test]
    fn tls_needs_both_certificate_and_key() {
        let base = ["media-node", "--node-name=n1", "--join-key=k"];
        let with = |extra: &[&'static str]| Config::try_parse_from(base.iter().chain(extra));
        let c = with(&["--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"]).expect("parses");
        assert_eq!(c.tls_key, Some(PathBuf::from("/tls/tls.key")));
        assert!(with(&["--tls-cert=/tls/tls.crt"]).is_err());
        assert!(with(&["--tls-key=/tls/tls.key"]).is_err());
    }
}
