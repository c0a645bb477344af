//! The harness Nodes as the API shows them: waiting until they are schedulable, and
//! finding ones a running harness kubelet already serves (reused instead of starting one).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::error::{Context, Error};
use crate::kubelet::LocalNode;
use crate::kubelet::node::{HARNESS_LABEL, LEASE_NAMESPACE, LOG_DIR_ANNOTATION};

/// A Lease renewed more recently than this means its kubelet is alive.
const FRESH_LEASE: SignedDuration = SignedDuration::from_secs(40);

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

/// Waits until every Node in `nodes` is schedulable; `alive` is checked meanwhile so a dead
/// kubelet fails fast.
pub async fn wait_schedulable(
    client: &Client,
    nodes: &[LocalNode],
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), Error>,
) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = std::time::Instant::now() + timeout;
    loop {
        alive()?;
        let mut pending = Vec::new();
        for node in nodes {
            match api.get_opt(&node.name).await.context("get Node")? {
                Some(n) if schedulable(&n) => {}
                _ => pending.push(node.name.as_str()),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("Nodes {pending:?} to be Ready"),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Harness Nodes whose kubelet renewed their Lease recently, and the log directory the
/// first of them announces.
pub async fn live_harness_nodes(
    client: &Client,
) -> Result<(Vec<LocalNode>, Option<PathBuf>), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let listed = nodes
        .list(&ListParams::default().labels(HARNESS_LABEL))
        .await
        .context("list harness Nodes")?;
    let now = Timestamp::now();
    let mut live = Vec::new();
    let mut log_dir = None;
    for node in listed {
        let renewed = leases
            .get_opt(&node.name_any())
            .await
            .context("get Node Lease")?
            .and_then(|l| l.spec?.renew_time)
            .map(|t| t.0);
        let fresh = renewed.is_some_and(|t| now.duration_since(t) < FRESH_LEASE);
        let address = internal_ip(&node);
        if let (true, Some(address)) = (fresh, address) {
            log_dir = log_dir.or_else(|| {
                node.annotations()
                    .get(LOG_DIR_ANNOTATION)
                    .map(PathBuf::from)
            });
            live.push(LocalNode {
                name: node.name_any(),
                address,
            });
        }
    }
    live.sort_by_key(|n| n.address);
    Ok((live, log_dir))
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
