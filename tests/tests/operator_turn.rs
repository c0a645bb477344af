//! End to end: a pool with TURN enabled gets a coturn relay, run by a real kubelet from the
//! Deployment the operator made; its address is published in the pool status and selected by
//! the TURN Service, and a TURN client allocates a relay there with credentials minted from the
//! pool's shared secret, while expired or forged credentials are refused and one user's
//! allocations beyond `userQuota` too; without
//! `allowLoopbackPeers` the relay refuses loopback peers, and without `allowedPeers` private
//! ones, and the pool's TurnPeers condition names the media nodes it would refuse. A deleted relay pod exits on SIGTERM
//! (tini forwards it to coturn) instead of waiting out its grace period. Relay and media-node
//! pods run in a namespace enforcing the `privileged` Pod Security level and break
//! `restricted` only by their host network.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_crds::{MediaPool, labels, turn};
use conclave_testenv::turn_probe::{ProbeError, TurnLogin, permit_peer, relay_round_trip};
use conclave_testenv::wait;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

mod common;
use common::fixtures::{create, pod_ready, pool, ports};
use common::report;

const TIMEOUT: Duration = Duration::from_secs(90);
const REALM: &str = "conclave.test";

/// The address of the pool's relay from its status, once published, and all its URLs.
async fn relay_address(
    env: &conclave_testenv::TestEnv,
    ns: &conclave_testenv::TestNamespace,
    pool: &str,
) -> (String, Vec<String>) {
    let urls = wait::until("TURN URLs in the pool status", TIMEOUT, || async {
        let p = ns.api::<MediaPool>().get(pool).await.ok()?;
        let t = p.status?.turn?;
        (!t.urls.is_empty()).then_some(t.urls)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, ns)));
    let host = urls[0]
        .strip_prefix("stun:")
        .and_then(|u| u.rsplit_once(':'))
        .map(|(h, _)| h.to_owned())
        .unwrap_or_else(|| panic!("first URL is stun:<host>:<port>: {urls:?}"));
    (host, urls)
}

/// Waits until the pool's TurnPeers condition has `status`; returns its message.
async fn turn_peers_condition(
    env: &conclave_testenv::TestEnv,
    ns: &conclave_testenv::TestNamespace,
    pool: &str,
    status: &str,
) -> String {
    wait::until(
        &format!("pool {pool} TurnPeers={status}"),
        TIMEOUT,
        || async {
            let p = ns.api::<MediaPool>().get(pool).await.ok()?;
            // Only once a media node published its address is the condition about one.
            let c = p
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == labels::condition::TURN_PEERS)?;
            (c.status == status).then_some(c.message)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, ns)))
}

/// A TURN login on the relay at `host`:`port` with fresh credentials from `shared`.
fn login_for(shared: &[u8], port: u16, host: &str) -> TurnLogin {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let credential = turn::mint(shared, "alice", now, 600);
    TurnLogin {
        server: format!("{host}:{port}").parse().unwrap(),
        username: credential.username,
        password: credential.credential,
        realm: REALM.to_owned(),
    }
}

/// The pool's TURN shared secret.
async fn turn_secret(ns: &conclave_testenv::TestNamespace, pool: &str) -> Vec<u8> {
    let secret = ns
        .api::<Secret>()
        .get(&labels::pool_secret_name(pool))
        .await
        .unwrap();
    secret.data.unwrap()[labels::SECRET_TURN_SECRET].0.clone()
}

async fn probe(login: TurnLogin) -> Result<SocketAddr, ProbeError> {
    tokio::task::spawn_blocking(move || relay_round_trip(&login, Duration::from_secs(5)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_serves_relays_on_the_published_address_with_pool_credentials() {
    let (env, ns, _operator) = common::start("turn").await;
    let ports = ports();
    create(
        &ns,
        &pool(
            "relayed",
            ports,
            // Loopback peers and the nodes' private range allowed: checked below against
            // the strict pool's refusals.
            json!({"turn": {"enabled": true, "minReplicas": 1, "maxReplicas": 2, "realm": REALM,
                            "allowLoopbackPeers": true, "allowedPeers": [env.nodes_range().unwrap()],
                            "userQuota": 3}}),
        ),
    )
    .await;
    let (host, urls) = relay_address(env, &ns, "relayed").await;
    let local: Vec<String> = env.nodes().iter().map(|n| n.address.to_string()).collect();
    assert!(local.contains(&host), "{host} is a local Node address");
    assert!(
        urls.contains(&format!("turn:{host}:{}?transport=udp", ports.turn)),
        "{urls:?}"
    );
    let server: SocketAddr = format!("{host}:{}", ports.turn).parse().unwrap();

    // The TURN Service selects the relay pod, Ready on that address, and its EndpointSlice
    // lists that address.
    let service = ns
        .api::<Service>()
        .get(&labels::turn_name("relayed"))
        .await
        .unwrap();
    let spec = service.spec.unwrap();
    let selector: Vec<String> = spec
        .selector
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let selected = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&selector.join(",")))
        .await
        .unwrap();
    assert!(
        selected.items.iter().any(|p| {
            p.status.as_ref().and_then(|s| s.pod_ip.as_deref()) == Some(host.as_str())
                && pod_ready(p)
        }),
        "the Service selects a Ready relay pod on {host}"
    );
    let service_ports: Vec<(i32, String)> = spec
        .ports
        .unwrap()
        .iter()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_default()))
        .collect();
    let turn_port = i32::from(ports.turn);
    assert!(
        service_ports.contains(&(turn_port, "UDP".into()))
            && service_ports.contains(&(turn_port, "TCP".into())),
        "{service_ports:?}"
    );

    let listed = wait::until("the TURN EndpointSlice", TIMEOUT, || async {
        let slices = ns
            .api::<EndpointSlice>()
            .list(&ListParams::default().labels(&format!(
                "kubernetes.io/service-name={}",
                labels::turn_name("relayed")
            )))
            .await
            .ok()?;
        slices
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .any(|e| e.addresses.contains(&host))
            .then_some(())
    })
    .await;
    assert!(listed.is_ok(), "the EndpointSlice lists {host}");

    let shared = turn_secret(&ns, "relayed").await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let login = |c: turn::TurnCredential| TurnLogin {
        server,
        username: c.username,
        password: c.credential,
        realm: REALM.to_owned(),
    };

    // Coturn may take a moment after Ready to answer on UDP; a valid login must get through.
    let mut relayed = Err(ProbeError::Other("not tried".into()));
    for _ in 0..5 {
        relayed = probe(login(turn::mint(&shared, "alice", now, 600))).await;
        if relayed.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let relayed =
        relayed.unwrap_or_else(|e| panic!("valid credentials: {e}\n{}", report(env, &ns)));
    assert_eq!(
        relayed.ip().to_string(),
        host,
        "relayed on the TURN pod's address"
    );
    assert!(
        (ports.relay_min..=ports.relay_max).contains(&relayed.port()),
        "relay port {} within the pool's relayPortRange",
        relayed.port()
    );

    // This pool allows loopback peers: a permission for the relay node's own loopback is
    // granted (the strict pool below refuses it).
    let allowed = login(turn::mint(&shared, "alice", now, 600));
    let granted = tokio::task::spawn_blocking(move || {
        permit_peer(
            &allowed,
            "127.0.0.1:9".parse().unwrap(),
            Duration::from_secs(5),
        )
    })
    .await
    .unwrap();
    assert!(
        granted.is_ok(),
        "allowLoopbackPeers grants loopback: {granted:?}"
    );

    // The nodes' private range is allowed: a permission for a node's address is granted, and
    // the pool says its relays reach every media node.
    let allowed = login(turn::mint(&shared, "alice", now, 600));
    let node_peer = SocketAddr::new(env.nodes()[0].address.into(), 9);
    let granted = tokio::task::spawn_blocking(move || {
        permit_peer(&allowed, node_peer, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(
        granted.is_ok(),
        "allowedPeers grants {node_peer}: {granted:?}"
    );
    turn_peers_condition(env, &ns, "relayed", "True").await;

    // Alice holds three allocations (each probe leaves its own): her quota. A fourth is
    // refused, while another user still gets one.
    let over = probe(login(turn::mint(&shared, "alice", now, 600))).await;
    assert!(
        matches!(&over, Err(ProbeError::Refused(e)) if e.contains("486") || e.to_lowercase().contains("quota")),
        "a fourth allocation of one user is refused by the quota: {over:?}"
    );
    let other = probe(login(turn::mint(&shared, "bob", now, 600))).await;
    assert!(
        other.is_ok(),
        "another user is not held by alice's quota: {other:?}"
    );

    let expired = probe(login(turn::mint(&shared, "alice", now - 7200, 600))).await;
    assert!(
        matches!(expired, Err(ProbeError::Refused(_))),
        "expired credentials are refused: {expired:?}"
    );
    let forged = probe(login(turn::mint(
        b"not the pool secret",
        "mallory",
        now,
        600,
    )))
    .await;
    assert!(
        matches!(forged, Err(ProbeError::Refused(_))),
        "credentials from another secret are refused: {forged:?}"
    );

    // The relay stops on SIGTERM, long before the kubelet would kill it at the end of its 30 s
    // grace period.
    let pods = ns.api::<Pod>();
    for pod in selected.items {
        let name = pod.metadata.name.unwrap();
        pods.delete(&name, &DeleteParams::default()).await.unwrap();
        ns.pod_gone(&name, Duration::from_secs(12))
            .await
            .unwrap_or_else(|e| panic!("relay pod after SIGTERM: {e}\n{}", report(env, &ns)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_refuses_to_relay_to_loopback_unless_the_pool_allows_it() {
    let (env, ns, _operator) = common::start("turn-strict").await;
    let ports = ports();
    create(
        &ns,
        &pool(
            "strict",
            ports,
            json!({"turn": {"enabled": true, "minReplicas": 1, "realm": REALM}}),
        ),
    )
    .await;
    let (host, _) = relay_address(env, &ns, "strict").await;
    let shared = turn_secret(&ns, "strict").await;
    let login = login_for(&shared, ports.turn, &host);
    // The allocation succeeds; the permission for a peer on 127.0.0.1 (the relay's own node)
    // is refused. Retry while coturn may still be starting (a timeout), not on a refusal.
    let loopback: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut outcome = Err(ProbeError::Other("not tried".into()));
    for _ in 0..5 {
        let login = login.clone();
        outcome = tokio::task::spawn_blocking(move || {
            permit_peer(&login, loopback, Duration::from_secs(5))
        })
        .await
        .unwrap();
        if !matches!(outcome, Err(ProbeError::Timeout(_))) {
            break;
        }
    }
    assert!(
        matches!(&outcome, Err(ProbeError::Refused(why)) if why.contains("403") || why.to_lowercase().contains("forbidden")),
        "a loopback peer is refused: {outcome:?}\n{}",
        report(env, &ns)
    );
    // So is a private one: another Node's address, which this pool does not allow.
    let private = SocketAddr::new(env.nodes()[1].address.into(), 9);
    let refused =
        tokio::task::spawn_blocking(move || permit_peer(&login, private, Duration::from_secs(5)))
            .await
            .unwrap();
    assert!(
        matches!(&refused, Err(ProbeError::Refused(why)) if why.contains("403") || why.to_lowercase().contains("forbidden")),
        "a private peer is refused: {refused:?}"
    );
    // A public peer is not: the default refuses ranges, not everything.
    let public: SocketAddr = "192.0.2.10:9".parse().unwrap();
    let relay_login = login_for(&shared, ports.turn, &host);
    let granted = tokio::task::spawn_blocking(move || {
        permit_peer(&relay_login, public, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(granted.is_ok(), "a public peer is permitted: {granted:?}");
    // And the pool names the media nodes its relays would refuse, with the field to set.
    let message = turn_peers_condition(env, &ns, "strict", "False").await;
    assert!(
        message.contains("spec.turn.allowedPeers") && message.contains("private"),
        "{message}"
    );
}

/// Labels the namespace with the Pod Security level `level` enforced.
async fn enforce(ns: &conclave_testenv::TestNamespace, level: &str) {
    let patch = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}});
    Api::<Namespace>::all(ns.client())
        .patch(ns.name(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// The Pod Security checks a refusal message names, e.g. `host namespaces` and `hostPort` in
/// `... violates PodSecurity "restricted:latest": host namespaces (hostNetwork=true), hostPort
/// (container "turn" uses hostPorts 3478, 3478)`.
fn violated_checks(message: &str) -> BTreeSet<String> {
    let Some((_, list)) = message.split_once("\": ") else {
        return BTreeSet::new();
    };
    list.split("), ")
        .map(|item| item.split(" (").next().unwrap_or(item).trim().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operand_pods_run_at_privileged_and_break_restricted_only_by_host_network_and_ports() {
    let (env, ns, _operator) = common::start("turn-psa").await;
    // The level docs/operations.md says a pool's namespace needs while it uses the host
    // network: its media-node and relay pods are admitted and become Ready.
    enforce(&ns, "privileged").await;
    let ports = ports();
    create(
        &ns,
        &pool(
            "hardened",
            ports,
            json!({"turn": {"enabled": true, "minReplicas": 1, "realm": REALM}}),
        ),
    )
    .await;
    // A second pool behind NodePort Services, without TURN: its pods hold no host port.
    create(
        &ns,
        &pool(
            "behind",
            common::fixtures::ports(),
            json!({"mediaNode": {"exposure": "NodePort"}}),
        ),
    )
    .await;
    relay_address(env, &ns, "hardened").await;
    for name in ["hardened", "behind"] {
        wait::until(
            &format!("a Ready media node of {name}"),
            TIMEOUT,
            || async {
                let p = ns.api::<MediaPool>().get(name).await.ok()?;
                (p.status?.ready_nodes >= 1).then_some(())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    }

    // Under `restricted`, copies of those very pods are refused for host networking and host
    // ports alone: non-root, no capabilities, no privilege escalation and seccomp all pass.
    enforce(&ns, "restricted").await;
    let pods = ns.api::<Pod>();
    let running = pods
        .list(&ListParams::default().labels(labels::COMPONENT))
        .await
        .unwrap();
    let components: BTreeSet<String> = running
        .items
        .iter()
        .filter_map(|p| p.labels().get(labels::COMPONENT).cloned())
        .collect();
    assert!(
        components.contains(labels::COMPONENT_TURN)
            && components.contains(labels::COMPONENT_MEDIA_NODE),
        "{components:?}"
    );
    let pools: BTreeSet<&str> = running
        .items
        .iter()
        .filter_map(|p| p.labels().get(labels::POOL).map(String::as_str))
        .collect();
    assert_eq!(pools, BTreeSet::from(["behind", "hardened"]));
    for pod in running.items {
        let copy = Pod {
            metadata: ObjectMeta {
                name: Some(format!("copy-of-{}", pod.name_any())),
                ..Default::default()
            },
            spec: pod.spec.clone().map(|mut s| {
                s.node_name = None;
                s
            }),
            status: None,
        };
        let refused = pods
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &copy,
            )
            .await;
        let message = match refused {
            Err(kube::Error::Api(status)) => status.message,
            Ok(_) => String::new(),
            Err(other) => panic!("{}: {other}", pod.name_any()),
        };
        // Relays use the host network; media nodes only publish two hostPorts, and behind
        // NodePort Services not even those: they meet restricted.
        let component = pod.labels().get(labels::COMPONENT).map(String::as_str);
        let pool_name = pod.labels().get(labels::POOL).map(String::as_str);
        let expected: &[&str] = match (component, pool_name) {
            (Some(labels::COMPONENT_TURN), _) => &["host namespaces", "hostPort"],
            (_, Some("behind")) => &[],
            _ => &["hostPort"],
        };
        assert_eq!(
            violated_checks(&message),
            expected
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>(),
            "{}: {message}",
            pod.name_any()
        );
    }
}
