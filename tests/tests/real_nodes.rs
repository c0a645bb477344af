//! The local cluster's real nodes: kubelets with containerd at their own addresses, pods from
//! Conclave's images run under a restrictive securityContext with `kubectl logs` and `exec`
//! working through the apiserver, and a cluster whose owner is killed leaves nothing on the
//! machine once `controlplane cleanup` ran.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic fails the test"
)]

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use conclave_testenv::images::Image;
use conclave_testenv::testenv::Settings;
use conclave_testenv::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{AttachParams, ListParams, LogParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::io::AsyncReadExt;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn nodes_run_containerd_at_their_own_addresses() {
    let env = TestEnv::shared().await.unwrap();
    let nodes = Api::<Node>::all(env.client().await.unwrap())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(nodes.items.len(), conclave_testenv::testenv::TEST_NODES);
    let mut addresses = HashSet::new();
    for node in &nodes {
        let info = node.status.as_ref().unwrap().node_info.as_ref().unwrap();
        assert_eq!(info.container_runtime_version, "containerd://2.4.2");
        assert_eq!(info.kubelet_version, "v1.36.3");
        let address = env.node(&node.name_any()).unwrap().address;
        assert!(!address.is_loopback(), "{address}");
        assert!(addresses.insert(address), "two nodes share {address}");
    }
}

#[tokio::test]
async fn pods_run_conclave_images_as_non_root_with_logs_and_exec() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("real-pod").await.unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "turn"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "turn",
                "image": Image::Turn.reference(),
                "imagePullPolicy": "Never",
                "args": ["--no-cli", "--listening-port=3480", "--log-file=stdout", "--no-tls", "--no-dtls"],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        }
    }))
    .unwrap();
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let running = running_pod(&ns, "turn").await;
    let status = &running
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(
        status
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("containerd://"),
        "{status:?}"
    );

    // `kubectl logs`: the apiserver reaches the kubelet at the Node's InternalIP.
    let pods = ns.api::<Pod>();
    let log = wait::until("coturn's log through the apiserver", TIMEOUT, || async {
        let log = pods.logs("turn", &LogParams::default()).await.ok()?;
        log.contains("Relay ports initialization done")
            .then_some(log)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ns.container_logs()));
    assert!(log.contains("turn server id=0 created"), "{log}");

    // `kubectl exec`: a second process in the running container, as the image's user.
    let mut exec = pods
        .exec(
            "turn",
            ["/usr/bin/turnserver", "--version"],
            &AttachParams::default().stderr(false),
        )
        .await
        .unwrap();
    let mut out = String::new();
    exec.stdout()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    exec.join().await.unwrap();
    assert!(
        out.starts_with("4."),
        "turnserver --version printed {out:?}"
    );
}

async fn running_pod(ns: &TestNamespace, name: &str) -> Pod {
    let pods = ns.api::<Pod>();
    wait::until(&format!("pod {name} Running"), TIMEOUT, || async {
        let pod = pods.get(name).await.ok()?;
        let phase = pod.status.as_ref()?.phase.clone()?;
        (phase == "Running").then_some(pod)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ns.container_logs()))
}

/// A cluster whose `up` is killed (SIGKILL: no chance to tear down) with a pod running leaves
/// its bridge, namespaces, containers and cgroups behind; `controlplane cleanup` removes them.
#[tokio::test]
async fn a_killed_cluster_leaves_nothing_after_cleanup() {
    // The shared cluster holds its own slot; this test takes another one.
    let env = TestEnv::shared().await.unwrap();
    let settings = Settings::from_env();
    let dir = env.artifacts().join("killed-cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let mut up = Command::new(&settings.controlplane)
        .args(["up", "--dir"])
        .arg(&dir)
        .args(["--nodes", "1", "--sandbox-image", &Image::Pause.reference()])
        .args([
            "--image".as_ref(),
            Image::Pause.archive(&settings.images).as_os_str(),
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let ready = wait::until("the second cluster", Duration::from_secs(180), || async {
        kubeconfig.is_file().then_some(())
    })
    .await;
    if ready.is_err() {
        let _ = up.kill();
        panic!(
            "{}",
            conclave_testenv::logs::tail(&dir.with_extension("log"), 40)
        );
    }
    let slot = slot_of(&kubeconfig);

    // A running pod, so that containers and their shims are among what is left.
    let client = conclave_testenv::client::from_kubeconfig(&kubeconfig)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "left-behind"},
        "spec": {"containers": [{"name": "c", "image": Image::Pause.reference(), "imagePullPolicy": "Never"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait::until("the pod to run", TIMEOUT, || async {
        let phase = pods.get("left-behind").await.ok()?.status?.phase?;
        (phase == "Running").then_some(())
    })
    .await
    .unwrap();

    up.kill().unwrap();
    up.wait().unwrap();
    let left = leftovers(slot);
    assert!(
        left.iter().any(|l| l.starts_with("bridge"))
            && left.iter().any(|l| l.starts_with("process")),
        "killing up should have left its bridge and containers: {left:?}"
    );

    let cleanup = Command::new(&settings.controlplane)
        .arg("cleanup")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&cleanup.stdout);
    assert!(cleanup.status.success(), "{said}");
    assert!(said.contains(&format!("slot {slot}: removed")), "{said}");
    assert_eq!(
        leftovers(slot),
        Vec::<String>::new(),
        "cleanup said: {said}"
    );
}

/// The slot of a local cluster: the third byte of its apiserver's address 10.213.<slot>.1.
fn slot_of(kubeconfig: &Path) -> u8 {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://10.213."))
        .unwrap();
    server.split('.').next().unwrap().parse().unwrap()
}

/// What of slot `slot` is on the machine: its bridge, network namespaces, cgroups in any
/// hierarchy, and the processes in them.
fn leftovers(slot: u8) -> Vec<String> {
    let mut left = Vec::new();
    let bridge = format!("conclave{slot}");
    if Path::new("/sys/class/net").join(&bridge).exists() {
        left.push(format!("bridge {bridge}"));
    }
    for entry in std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("conclave{slot}-")) {
            left.push(format!("netns {name}"));
        }
    }
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let root = hierarchy.path().join(&bridge);
        if root.exists() {
            left.push(format!("cgroup {}", root.display()));
            let procs = walk_procs(&root);
            if !procs.is_empty() {
                left.push(format!("processes {procs:?} in {}", root.display()));
            }
        }
    }
    left
}

fn walk_procs(dir: &Path) -> Vec<u32> {
    let mut procs: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            procs.extend(walk_procs(&entry.path()));
        }
    }
    procs
}
