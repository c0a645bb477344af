//! The cluster's Nodes as tests see them: their names and addresses, and waiting until they
//! are schedulable.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::error::{Context, Error};

/// A Node of the local cluster and the address its hostNetwork pods listen on (its
/// InternalIP: on real nodes, the address of the node's own network namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    pub address: Ipv4Addr,
}

impl LocalNode {
    /// The node's network namespace (`ip netns exec <name>`): the control plane names it
    /// `conclave<slot>-<node>`, its slot being the third octet of the node network
    /// 10.213.<slot>.0/24.
    pub fn netns(&self) -> String {
        format!("conclave{}-{}", self.address.octets()[2], self.name)
    }
}

/// The /16 holding the nodes' addresses (a cluster's nodes share a /24 of it): what a pool's
/// `spec.turn.allowedPeers` lists so that its relays reach media nodes at these private
/// addresses. None without nodes.
pub fn private_range(nodes: &[LocalNode]) -> Option<String> {
    let [a, b, _, _] = nodes.first()?.address.octets();
    Some(format!("{a}.{b}.0.0/16"))
}

/// True when `node` is Ready and carries no not-ready/unreachable taint, so the
/// scheduler places pods on it.
pub fn schedulable(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter().any(|t| {
                t.key == "node.kubernetes.io/not-ready" || t.key == "node.kubernetes.io/unreachable"
            })
        });
    ready
        && !tainted
        && !node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
}

/// The schedulable Nodes of the cluster with an InternalIP, by name.
pub async fn schedulable_nodes(client: &Client) -> Result<Vec<LocalNode>, Error> {
    let listed = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("list Nodes")?;
    let mut nodes: Vec<LocalNode> = listed
        .iter()
        .filter(|n| schedulable(n))
        .filter_map(|n| {
            Some(LocalNode {
                name: n.name_any(),
                address: internal_ip(n)?,
            })
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// Waits until at least `count` Nodes are schedulable; returns them.
pub async fn wait_schedulable(
    client: &Client,
    count: usize,
    timeout: Duration,
) -> Result<Vec<LocalNode>, Error> {
    crate::wait::until(&format!("{count} schedulable Nodes"), timeout, || async {
        schedulable_nodes(client)
            .await
            .ok()
            .filter(|n| n.len() >= count)
    })
    .await
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
}
