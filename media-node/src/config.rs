//! Command-line and environment configuration of the media node (the pod contract in
//! `docs/pod-contract.md`). Nothing else reads the environment.

use std::net::IpAddr;
use std::time::Duration;

use clap::Parser;

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
    /// First UDP port peer connections may bind.
    #[arg(long, default_value_t = 50000)]
    pub udp_port_min: u16,
    /// Last UDP port peer connections may bind.
    #[arg(long, default_value_t = 59999)]
    pub udp_port_max: u16,
    /// Seconds between load reports (heartbeats) to the MediaNode status.
    #[arg(long, env = "CONCLAVE_HEARTBEAT_SECONDS", default_value_t = 5)]
    pub heartbeat_seconds: u64,
    /// Seconds a draining node keeps its rooms before it exits anyway.
    #[arg(long, env = "CONCLAVE_DRAIN_GRACE_SECONDS", default_value_t = 3600)]
    pub drain_grace_seconds: u64,
    /// Seconds a disconnected peer may take to come back before it is removed.
    #[arg(long, env = "CONCLAVE_PEER_DISCONNECT_SECONDS", default_value_t = 10)]
    pub peer_disconnect_seconds: u64,
    /// Largest chat message relayed, bytes.
    #[arg(long, env = "CONCLAVE_CHAT_MAX_BYTES", default_value_t = 16 * 1024)]
    pub chat_max_bytes: usize,
}

impl Config {
    /// Interval between load reports.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_seconds.max(1))
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
            "--udp-port-min=50000",
            "--udp-port-max=50099",
            "--node-name=n1",
            "--join-key=k",
            "--pod-ip=127.0.0.2",
        ])
        .expect("parses");
        assert_eq!(c.signaling_port, 7881);
        assert_eq!((c.udp_port_min, c.udp_port_max), (50000, 50099));
        assert_eq!(c.pod_ip.to_string(), "127.0.0.2");
        assert_eq!(c.heartbeat(), Duration::from_secs(5));
    }
}
