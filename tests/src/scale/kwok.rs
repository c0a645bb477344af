//! KWOK for the scale harness: the Stage objects that make simulated Nodes Ready and their
//! Pods Running (after a configurable start delay) and delete Pods once deleted, the kwok
//! process itself, and the simulated Kubernetes Nodes with addresses and capacity.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::error::{Context, Error};
use crate::{logs, wait};

/// Label on every simulated Node.
pub const NODE_LABEL: &str = "bench.conclave.dev/kwok";

/// Stops kwok when our end of its stdin closes. $0: binary, $1: log, then kwok's flags.
const WRAPPER: &str = r#"
exec 3<&0
bin=$0 log=$1
shift
"$bin" kwok "$@" </dev/null >>"$log" 2>&1 &
kwok=$!
(cat <&3 >/dev/null; kill -TERM "$kwok" 2>/dev/null) &
exec 3<&-
wait "$kwok"
"#;

/// The Stage objects kwok plays: a new Node becomes Ready at once; a scheduled Pod becomes
/// Running and Ready after `pod_start` (the time a media node takes to start: image pull,
/// process start); a Pod being deleted is removed. Node Leases are renewed by kwok itself
/// (`--node-lease-duration-seconds`), so no Node heartbeat Stage is needed for health;
/// a slow status refresh keeps the Node conditions' heartbeat times moving. A running Pod
/// marked not ready (its Node's Lease was late) becomes ready again.
pub fn stages(pod_start: Duration) -> String {
    let delay = pod_start.as_millis();
    format!(
        r#"apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef: {{apiGroup: v1, kind: Node}}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
{NODE_STATUS}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-status-refresh
spec:
  resourceRef: {{apiGroup: v1, kind: Node}}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: In
      values: ['True']
  delay:
    durationMilliseconds: 240000
    jitterDurationMilliseconds: 300000
  next:
    statusTemplate: |
{NODE_STATUS}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef: {{apiGroup: v1, kind: Pod}}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.phase'
      operator: In
      values: ['Pending']
  delay:
    durationMilliseconds: {delay}
  next:
    statusTemplate: |
{POD_STATUS}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready-again
spec:
  resourceRef: {{apiGroup: v1, kind: Pod}}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.phase'
      operator: In
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  delay:
    durationMilliseconds: 1000
  next:
    statusTemplate: |
{POD_READY_AGAIN}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef: {{apiGroup: v1, kind: Pod}}
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: Exists
  next:
    delete: true
"#
    )
}

/// A running Pod the node controller marked not ready (its Node missed a Lease renewal
/// under load) is ready again, as its kubelet would report once the Node is back.
const POD_READY_AGAIN: &str = r#"      {{ $now := Now }}
      conditions:
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Ready}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: ContainersReady}"#;

/// Node conditions from kwok's defaults, all healthy; addresses and capacity stay as created.
const NODE_STATUS: &str = r#"      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      phase: Running"#;

/// A running, ready Pod whose IP is its Node's (media-node pods use the host network).
const POD_STATUS: &str = r#"      {{ $now := Now }}
      conditions:
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Initialized}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: Ready}
      - {lastTransitionTime: {{ $now | Quote }}, status: "True", type: ContainersReady}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        started: true
        state: {running: {startedAt: {{ $now | Quote }}}}
      {{ end }}
      {{ with NodeIPsWith .spec.nodeName }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}"#;

/// A running kwok, stopped when dropped (or when this process dies: its stdin closes).
pub struct Kwok {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Kwok {
    /// Writes the stages under `dir` and starts `binary kwok` managing every Node.
    pub fn start(
        binary: &Path,
        dir: &Path,
        kubeconfig: &Path,
        pod_start: Duration,
    ) -> Result<Kwok, Error> {
        let config = dir.join("kwok-stages.yaml");
        std::fs::write(&config, stages(pod_start))
            .context(format!("write {}", config.display()))?;
        let log = dir.join("kwok.log");
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(binary)
            .arg(&log)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--config={}", config.display()))
            .args([
                "--manage-all-nodes=true",
                "--node-lease-duration-seconds=40",
                "--server-address=127.0.0.1:0",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::Spawn {
                what: format!("{} kwok", binary.display()),
                source,
            })?;
        let stdin = wrapper.stdin.take();
        Ok(Kwok {
            wrapper,
            stdin,
            log,
        })
    }

    /// Fails when kwok has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        logs::check_running(&mut self.wrapper, "kwok", &self.log, 20)
    }
}

impl Drop for Kwok {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }
}

/// Name of simulated Node `i`.
pub fn node_name(i: usize) -> String {
    format!("kwok-node-{i:04}")
}

/// Simulated Node `i`: InternalIP in 10.64.0.0/16, ExternalIP in the benchmarking range
/// 198.18.0.0/15 (what the operator publishes as the media node's public address), and the
/// capacity of a 16-core machine.
pub fn node(i: usize) -> Node {
    let (hi, lo) = (i / 250, i % 250 + 1);
    let capacity = json!({"cpu": "16", "memory": "64Gi", "pods": "110"});
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name(i), "labels": {NODE_LABEL: "true"}},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": format!("10.64.{hi}.{lo}")},
                {"type": "ExternalIP", "address": format!("198.18.{hi}.{lo}")},
                {"type": "Hostname", "address": node_name(i)}
            ],
            "capacity": capacity, "allocatable": capacity
        }
    }))
    .expect("a Node manifest")
}

/// Creates `count` simulated Nodes (those that exist are kept) and waits until kwok made
/// them all Ready.
pub async fn create_nodes(client: &Client, count: usize, timeout: Duration) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            async move {
                match api.create(&PostParams::default(), &node(i)).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    other => other
                        .map(|_| ())
                        .context(format!("create {}", node_name(i))),
                }
            }
        })
        .buffer_unordered(32)
        .try_collect::<()>()
        .await?;
    wait::until(
        &format!("{count} simulated Nodes Ready"),
        timeout,
        || async {
            let list = api
                .list(&ListParams::default().labels(&format!("{NODE_LABEL}=true")))
                .await
                .ok()?;
            let ready = list.items.iter().filter(|n| is_ready(n)).count();
            (ready >= count).then_some(())
        },
    )
    .await
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn stages_are_yaml_with_the_pod_start_delay() {
        let text = stages(Duration::from_millis(1500));
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<_, _>>()
            .expect("YAML");
        let names: Vec<_> = docs
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "node-initialize",
                "node-status-refresh",
                "pod-ready",
                "pod-ready-again",
                "pod-delete"
            ]
        );
        assert_eq!(docs[2]["spec"]["delay"]["durationMilliseconds"], 1500);
    }

    #[test]
    fn nodes_have_distinct_addresses() {
        let a = node(0);
        let b = node(250);
        let ip = |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.addresses.clone())
                .unwrap_or_default()[1]
                .address
                .clone()
        };
        assert_eq!(ip(&a), "198.18.0.1");
        assert_eq!(ip(&b), "198.18.1.1");
    }
}
