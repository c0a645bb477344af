//! The local Nodes: registering them (addresses, capacity, labels), keeping them Ready, and
//! renewing their Leases in kube-node-lease so the node-lifecycle controller sees them alive.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use super::{KubeletConfig, LocalNode};
use crate::error::{Context, Error};

/// Field manager of everything the harness kubelet writes.
pub const MANAGER: &str = "harness-kubelet";
/// Label on every Node the harness kubelet runs.
pub const HARNESS_LABEL: &str = "testenv.conclave.dev/harness-kubelet";
/// Annotation on every harness Node: the directory its container logs go to.
pub const LOG_DIR_ANNOTATION: &str = "testenv.conclave.dev/log-dir";
/// Namespace of the Node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Lease duration the harness announces; renewals come every quarter of it.
const LEASE_SECONDS: i32 = 40;
/// How often the Lease is renewed; the Node status is rewritten every third time.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Creates or updates the Node object of `node` and reports it Ready.
pub async fn register(
    client: &Client,
    config: &KubeletConfig,
    node: &LocalNode,
) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let object = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch(),
                HARNESS_LABEL: "true",
            },
            "annotations": { LOG_DIR_ANNOTATION: config.log_dir.display().to_string() },
        },
    });
    let registered = nodes
        .patch(
            &node.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .context(format!("register Node {}", node.name))?;
    report_ready(client, config, node, &registered).await
}

/// Rewrites the Node's status (addresses, capacity, Ready and the pressure conditions);
/// `current` is the Node as last read, whose condition transition times are kept.
pub async fn report_ready(
    client: &Client,
    config: &KubeletConfig,
    node: &LocalNode,
    current: &Node,
) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = json!({ "status": node_status(config, node, Timestamp::now(), Some(current)) });
    nodes
        .patch_status(
            &node.name,
            &PatchParams::default(),
            &Patch::Strategic(&status),
        )
        .await
        .context(format!("report status of Node {}", node.name))?;
    Ok(())
}

/// Renews the Node's Lease (creating it, owned by the Node, if missing); returns the Node.
pub async fn renew_lease(client: &Client, node: &LocalNode) -> Result<Node, Error> {
    let owner = Api::<Node>::all(client.clone())
        .get(&node.name)
        .await
        .context(format!("get Node {}", node.name))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node.name,
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": node.name, "uid": owner.uid() }],
        },
        "spec": {
            "holderIdentity": node.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(Timestamp::now()),
        },
    });
    leases
        .patch(
            &node.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .context(format!("renew Lease of Node {}", node.name))?;
    Ok(owner)
}

/// Keeps every Node alive until the task is dropped: Lease renewals every [`HEARTBEAT`],
/// status every third beat or as soon as the Node is not shown Ready (the node-lifecycle
/// controller marks it Unknown after a missed Lease), re-registration if it was deleted.
pub async fn heartbeat(client: Client, config: KubeletConfig) {
    let mut beat = 0u64;
    let mut ticker = tokio::time::interval(HEARTBEAT);
    loop {
        ticker.tick().await;
        for node in &config.nodes {
            let result = match renew_lease(&client, node).await {
                Err(Error::Kube { source, .. }) if crate::error::is_not_found(&source) => {
                    tracing::warn!(node = %node.name, "Node is gone: registering it again");
                    register(&client, &config, node).await
                }
                Ok(current)
                    if beat.is_multiple_of(3) || !condition_is(&current, "Ready", "True") =>
                {
                    report_ready(&client, &config, node, &current).await
                }
                other => other.map(|_| ()),
            };
            if let Err(e) = result {
                tracing::warn!(node = %node.name, error = %e, "heartbeat failed");
            }
        }
        beat += 1;
    }
}

/// True when `node` shows condition `kind` with `status`.
fn condition_is(node: &Node, kind: &str, status: &str) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == status))
}

/// The status of a Ready local Node (pure). Conditions that `current` already shows with
/// the same status keep their transition time.
pub fn node_status(
    config: &KubeletConfig,
    node: &LocalNode,
    now: Timestamp,
    current: Option<&Node>,
) -> Value {
    let time = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let since = |kind: &str, status: &str| {
        let conditions = current.and_then(|n| n.status.as_ref()?.conditions.as_ref());
        conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or_else(
                || time.clone(),
                |t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": time, "lastTransitionTime": since(kind, status) })
    };
    let resources = json!({
        "cpu": config.capacity.cpu, "memory": config.capacity.memory, "pods": config.capacity.pods.to_string(),
    });
    json!({
        "addresses": [
            { "type": "InternalIP", "address": node.address.to_string() },
            { "type": "ExternalIP", "address": node.address.to_string() },
            { "type": "Hostname", "address": node.name },
        ],
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("Ready", "True", "KubeletReady", "harness kubelet is posting ready status"),
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "harness kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "harness kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "harness kubelet has sufficient PID available"),
        ],
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": "", "osImage": "conclave harness kubelet",
            "containerRuntimeVersion": "harness://local-processes",
            "kubeletVersion": "v1.36.0-harness", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": arch(),
        },
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A Lease `renewTime` (RFC 3339 with microseconds).
fn micro_time(now: Timestamp) -> String {
    now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::NodeCapacity;

    #[test]
    fn status_publishes_the_address_and_capacity() {
        let config = KubeletConfig::for_tests(2);
        let node = &config.nodes[1];
        assert_eq!(node.name, "local-2");
        let status = node_status(&config, node, Timestamp::UNIX_EPOCH, None);
        let addresses = status["addresses"].as_array().unwrap();
        assert!(addresses.contains(&json!({ "type": "ExternalIP", "address": "127.0.0.3" })));
        assert!(addresses.contains(&json!({ "type": "InternalIP", "address": "127.0.0.3" })));
        assert_eq!(
            status["allocatable"]["pods"],
            json!(NodeCapacity::default().pods.to_string())
        );
        assert_eq!(status["conditions"][0]["status"], "True");
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let config = KubeletConfig::for_tests(1);
        let node = &config.nodes[0];
        let then: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let current: Node = serde_json::from_value(json!({
            "metadata": {"name": "local-1"},
            "status": {"conditions": [node_status(&config, node, then, None)["conditions"][0].clone()]},
        }))
        .unwrap();
        let status = node_status(&config, node, now, Some(&current));
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            status["conditions"][0]["lastHeartbeatTime"],
            "2026-01-01T01:00:00Z"
        );
        let mut unknown = current.clone();
        unknown
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "Unknown".into();
        let status = node_status(&config, node, now, Some(&unknown));
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            "2026-01-01T01:00:00Z"
        );
    }

    #[test]
    fn renew_time_has_microseconds() {
        let t: Timestamp = "2026-01-02T03:04:05.123456789Z".parse().unwrap();
        assert_eq!(micro_time(t), "2026-01-02T03:04:05.123456Z");
    }
}
