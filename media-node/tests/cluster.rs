//! The node against a real Kubernetes API server (the project's local control plane, see
//! tests/controlplane): it waits for its published address, opens a room for the Conference
//! whose status names it (a field selector), hands out TURN credentials from its pool, reports load by
//! server-side apply without touching operator fields, renews its own Lease, tells clients to reconnect when the
//! conference moves, drains when its MediaNode is set to draining, and takes rooms again when the
//! drain is taken back before its rooms are gone.
//!
//! Needs the control plane binary (`make controlplane`; path in CONCLAVE_CONTROLPLANE or
//! tests/controlplane/bin/controlplane); without it the test says so and does nothing.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use common::{KEY, LOOPBACK, eventually, token};
use conclave_crds::{Conference, MediaNode, MediaPool, labels};
use conclave_media_node::client::{Client, ClientConfig};
use conclave_media_node::config::Config;
use conclave_media_node::signaling::protocol::ServerMessage;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client as KubeClient};
use serde_json::json;

const NS: &str = "media-node-test";
const WAIT: Duration = Duration::from_secs(30);

struct ControlPlane {
    child: Child,
    dir: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        // A failed run's log stays for reading.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(self.dir.with_extension("log"));
        }
    }
}

fn control_plane_binary() -> Option<PathBuf> {
    let path = std::env::var_os("CONCLAVE_CONTROLPLANE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/controlplane/bin/controlplane")
        });
    path.exists().then_some(path)
}

async fn start_control_plane(binary: PathBuf) -> (ControlPlane, KubeClient) {
    // Under the build's own scratch directory: the log stays there for a failed run to read,
    // nothing is left in the system's temporary directory.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("media-node-cluster-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = std::fs::File::create(dir.with_extension("log")).expect("log file");
    let child = Command::new(binary)
        .args(["up", "--dir"])
        .arg(&dir)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("control plane starts");
    let cp = ControlPlane {
        child,
        dir: dir.clone(),
    };
    let kubeconfig = dir.join("kubeconfig");
    assert!(
        eventually(Duration::from_secs(240), || kubeconfig.exists()).await,
        "control plane up (log: {})",
        dir.with_extension("log").display()
    );
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    (cp, KubeClient::try_from(config).expect("client"))
}

async fn install(client: &KubeClient) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in conclave_crds::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD created");
    }
    let nodes: Api<MediaNode> = Api::namespaced(client.clone(), NS);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": NS}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    for _ in 0..100 {
        if nodes.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("CRDs never became established");
}

fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("object")
}

async fn http_status(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let _ = s
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// Asks `addr` for `/readyz` every 100 ms until the response satisfies `want` or `limit`
/// passed; the last response.
async fn readyz_until(addr: &str, limit: Duration, want: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let seen = http_status(addr, "/readyz").await;
        if want(&seen) || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_follows_its_medianode_pool_and_conferences() {
    let Some(binary) = control_plane_binary() else {
        eprintln!(
            "SKIPPED: no control plane binary (run `make controlplane` or set CONCLAVE_CONTROLPLANE)"
        );
        return;
    };
    let (_cp, kube) = start_control_plane(binary).await;
    install(&kube).await;
    let operator = PatchParams::apply(labels::OPERATOR_MANAGER).force();
    let pools: Api<MediaPool> = Api::namespaced(kube.clone(), NS);
    let nodes: Api<MediaNode> = Api::namespaced(kube.clone(), NS);
    let conferences: Api<Conference> = Api::namespaced(kube.clone(), NS);

    pools
        .create(
            &PostParams::default(),
            // The shortest heartbeat timeout: the node renews its Lease every second.
            &object(json!({"metadata": {"name": "pool"},
                "spec": {"mediaNode": {"heartbeatTimeoutSeconds": 3}}})),
        )
        .await
        .expect("pool");
    pools
        .patch_status(
            "pool",
            &operator,
            &Patch::Apply(json!({"apiVersion": "conclave.dev/v1alpha1", "kind": "MediaPool",
                "status": {"turn": {"replicas": 1, "urls": ["stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp"]}}})),
        )
        .await
        .expect("pool status");
    nodes
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "node-a", "labels": {labels::POOL: "pool"}},
                "spec": {"pool": "pool", "capacity": {"participants": 10, "rooms": 5, "egressMbps": 100}}})),
        )
        .await
        .expect("media node");
    conferences
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "standup"},
                "spec": {"pool": "pool", "maxParticipants": 5}})),
        )
        .await
        .expect("conference");
    // Placed on node-a, as the operator does: its status names the node.
    conferences
        .patch_status(
            "standup",
            &operator,
            &Patch::Apply(
                json!({"apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
                "status": {"mediaNode": "node-a"}}),
            ),
        )
        .await
        .expect("placed");

    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let url = format!("ws://{addr}/rtc");
    let config = Config::try_parse_from([
        "media-node",
        "--node-name=node-a",
        &format!("--namespace={NS}"),
        "--pod-ip=127.0.0.1",
        &format!("--join-key={}", std::str::from_utf8(KEY).expect("utf8")),
        "--turn-secret=turn-secret",
        "--udp-port=0",
        "--drain-grace-seconds=30",
    ])
    .expect("config");
    let (_stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_kube = kube.clone();
    let node = tokio::spawn(async move {
        conclave_media_node::app::run_node(
            &config,
            node_kube,
            listener,
            None,
            async {
                let _ = stop_rx.await;
            },
            async {},
        )
        .await
    });

    // Not ready until the operator publishes the address.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        http_status(&addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 503")
    );
    nodes
        .patch_status(
            "node-a",
            &operator,
            &Patch::Apply(json!({"apiVersion": "conclave.dev/v1alpha1", "kind": "MediaNode",
                "status": {"phase": "Ready", "addresses": {"public": "127.0.0.1", "signalingUrl": url}}})),
        )
        .await
        .expect("address published");
    let seen = readyz_until(&addr, Duration::from_secs(20), |r| {
        r.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(
        seen.starts_with("HTTP/1.1 200"),
        "ready once the address is published and conferences are synced: {seen}"
    );

    let mut alice = Client::connect(ClientConfig {
        url: url.clone(),
        conference: "standup".into(),
        token: token("alice"),
        bind_ip: LOOPBACK,
        publish: common::viewer(),
        transport_feedback: true,
        offer_first: true,
        tcp_only: false,
    })
    .await
    .expect("alice joins the conference the watch opened");
    let ServerMessage::Joined { ice_servers, .. } = &alice.joined else {
        panic!("joined");
    };
    let turn = ice_servers
        .iter()
        .find(|s| s.urls.iter().any(|u| u.starts_with("turn:")))
        .expect("turn server");
    let username = turn.username.clone().expect("TURN username");
    assert!(username.ends_with(":alice"), "{username}");
    assert_eq!(
        turn.credential.as_deref(),
        Some(conclave_crds::turn::password(b"turn-secret", &username).as_str())
    );

    // Load reports: participants on the node and the conference, operator fields kept.
    let mut reported = false;
    for _ in 0..50 {
        let n = nodes.get("node-a").await.expect("node");
        let c = conferences.get("standup").await.expect("conference");
        let status = n.status.clone().unwrap_or_default();
        if status.load.as_ref().is_some_and(|l| l.participants == 1)
            && status.last_heartbeat.is_some()
            && c.status.as_ref().and_then(|s| s.participants) == Some(1)
        {
            assert_eq!(
                status.phase,
                Some(conclave_crds::MediaNodePhase::Ready),
                "operator's phase kept"
            );
            assert!(
                status.addresses.as_ref().and_then(|a| a.public.as_deref()) == Some("127.0.0.1")
            );
            assert_eq!(
                status.watches_conference_status,
                Some(true),
                "says it finds its conferences by status.mediaNode"
            );
            let managers: Vec<String> = n
                .metadata
                .managed_fields
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.manager)
                .collect();
            assert!(
                managers.iter().any(|m| m == labels::MEDIA_NODE_MANAGER),
                "{managers:?}"
            );
            reported = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reported, "load reported by server-side apply");

    // Liveness: the node's own Lease, owned by its MediaNode, renewed three times per
    // heartbeat timeout of its pool (every second), held for that timeout.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(kube.clone(), NS);
    let renewed = || async {
        let lease = leases.get("node-a").await.ok()?;
        let owner = lease
            .metadata
            .owner_references
            .clone()?
            .first()?
            .kind
            .clone();
        assert_eq!(owner, "MediaNode");
        let spec = lease.spec?;
        (spec.lease_duration_seconds == Some(3)).then_some(spec.renew_time?.0)
    };
    let mut first = None;
    for _ in 0..50 {
        first = renewed().await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = first.expect("the node's Lease exists, held for the pool's 3-s timeout");
    let mut later = None;
    for _ in 0..50 {
        later = renewed().await.filter(|t| *t > first);
        if later.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(later.is_some(), "the Lease is renewed (first {first})");

    // A drain taken back while its room is open: the node drains (no new rooms), then takes
    // rooms again, and alice's room stays (the move below reaches her through it).
    for draining in [true, false] {
        nodes
            .patch(
                "node-a",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"draining": draining}})),
            )
            .await
            .expect("drain set");
        // Ready either way; the body says "ready: draining, ..." while draining, "ready" not.
        let expected = |seen: &str| {
            seen.starts_with("HTTP/1.1 200")
                && if draining {
                    seen.contains("\r\n\r\nready: draining")
                } else {
                    seen.ends_with("\r\n\r\nready")
                }
        };
        let seen = readyz_until(&addr, Duration::from_secs(10), expected).await;
        assert!(expected(&seen), "draining {draining}: {seen}");
    }

    // The operator moves the conference: clients are sent to the new node.
    conferences
        .patch_status(
            "standup",
            &operator,
            &Patch::Apply(json!({"apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
                "status": {"mediaNode": "node-b", "join": {"signalingUrl": "ws://127.0.0.9:7880/rtc"}}})),
        )
        .await
        .expect("status moved");
    let reconnect = alice
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Reconnect { .. }))
        .await;
    assert!(
        matches!(&reconnect, Some(ServerMessage::Reconnect { signaling_url, .. }) if signaling_url == "ws://127.0.0.9:7880/rtc"),
        "{reconnect:?}"
    );

    // Drain: not ready any more, and with no rooms left the node exits cleanly.
    nodes
        .patch(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"draining": true}})),
        )
        .await
        .expect("drain");
    let finished = tokio::time::timeout(WAIT, node).await;
    assert!(
        matches!(finished, Ok(Ok(Ok(())))),
        "node drained and exited: {finished:?}"
    );
}
