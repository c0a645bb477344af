//! End to end: a pool with TURN enabled gets a coturn relay run by the harness kubelet from the
//! Deployment the operator made; its address is published in the pool status and selected by
//! the TURN Service, and a TURN client allocates a relay there with credentials minted from the
//! pool's shared secret, while expired or forged credentials are refused; without
//! `allowLoopbackPeers` the relay refuses loopback peers.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_crds::{MediaPool, labels, turn};
use conclave_testenv::turn_probe::{ProbeError, TurnLogin, permit_peer, relay_round_trip};
use conclave_testenv::wait;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use serde_json::json;

mod common;
use common::fixtures::{create, pool, ports};
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
            // Loopback peers allowed: checked below against the strict pool's refusal.
            json!({"turn": {"enabled": true, "minReplicas": 1, "maxReplicas": 2, "realm": REALM,
                            "allowLoopbackPeers": true}}),
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
            let s = p.status.clone().unwrap_or_default();
            s.pod_ip.as_deref() == Some(host.as_str())
                && s.conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let credential = turn::mint(&shared, "alice", now, 600);
    let login = TurnLogin {
        server: format!("{host}:{}", ports.turn).parse().unwrap(),
        username: credential.username,
        password: credential.credential,
        realm: REALM.to_owned(),
    };
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
}
