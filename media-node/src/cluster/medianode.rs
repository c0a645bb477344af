//! Watches this node's MediaNode: publishes its public address (NAT 1:1) and ports, signaling
//! URL and capacity into the node state, reports its pool, and signals drain when `spec.draining` is
//! set.

use std::net::IpAddr;
use std::sync::Arc;

use conclave_crds::MediaNode;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::node::{NodeState, PublishedPorts};

/// What the node learned from its MediaNode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// spec.pool.
    pub pool: Option<String>,
    /// metadata.uid (its Lease's owner).
    pub uid: Option<String>,
    /// status.addresses.public, parsed.
    pub public_ip: Option<IpAddr>,
    /// spec.draining.
    pub draining: bool,
}

/// Reads the facts of a MediaNode object.
pub fn facts(node: &MediaNode) -> NodeFacts {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    NodeFacts {
        pool: Some(node.spec.pool.clone()).filter(|p| !p.is_empty()),
        uid: node.metadata.uid.clone(),
        public_ip: addresses
            .and_then(|a| a.public.as_deref())
            .and_then(|ip| ip.parse().ok()),
        draining: node.spec.draining,
    }
}

/// The media ports the operator published for the node (its own, or its Service's node
/// ports).
pub fn published_ports(node: &MediaNode) -> PublishedPorts {
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    PublishedPorts {
        udp: addresses.and_then(|a| a.udp_port),
        tcp: addresses.and_then(|a| a.tcp_port),
    }
}

/// Watches the MediaNode `name` forever, applying what it says to `state` and sending its
/// facts on `facts`.
pub async fn run(
    client: Client,
    namespace: String,
    state: Arc<NodeState>,
    facts_tx: watch::Sender<NodeFacts>,
) {
    let api: Api<MediaNode> = Api::namespaced(client, &namespace);
    let config =
        watcher::Config::default().fields(&format!("metadata.name={}", state.settings.name));
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(node) => {
                let f = facts(&node);
                if let Some(ip) = f.public_ip
                    && state.public_ip() != Some(ip)
                {
                    tracing::info!(node = %state.settings.name, public = %ip, "public address known");
                    state.set_public_ip(ip);
                }
                state.set_published_ports(published_ports(&node));
                state.set_signaling_url(
                    node.status
                        .as_ref()
                        .and_then(|s| s.addresses.as_ref())
                        .and_then(|a| a.signaling_url.clone()),
                );
                state.set_capacity(node.spec.capacity);
                facts_tx.send_if_modified(|old| {
                    let changed = *old != f;
                    *old = f;
                    changed
                });
            }
            Err(e) => tracing::warn!(node = %state.settings.name, error = %e, "MediaNode watch"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::node::{MediaNodeStatus, NodeAddresses};
    use conclave_crds::{MediaNodeSpec, NodeCapacity};

    #[test]
    fn reads_address_pool_and_drain() {
        let mut n = MediaNode::new(
            "n1",
            MediaNodeSpec {
                pool: "default".into(),
                capacity: NodeCapacity {
                    participants: 10,
                    rooms: 2,
                    egress_mbps: 100,
                },
                draining: true,
            },
        );
        assert_eq!(facts(&n).public_ip, None);
        assert_eq!(published_ports(&n), PublishedPorts::default());
        n.status = Some(MediaNodeStatus {
            addresses: Some(NodeAddresses {
                public: Some("203.0.113.21".into()),
                udp_port: Some(31002),
                tcp_port: Some(31003),
                ..Default::default()
            }),
            ..Default::default()
        });
        let f = facts(&n);
        assert_eq!(f.public_ip, Some("203.0.113.21".parse().expect("ip")));
        assert_eq!(f.pool.as_deref(), Some("default"));
        assert!(f.draining);
        assert_eq!(
            published_ports(&n),
            PublishedPorts {
                udp: Some(31002),
                tcp: Some(31003)
            }
        );
    }
}
