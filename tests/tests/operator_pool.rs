//! The operator on the real control plane, with media-node pods run by real kubelets from the
//! media-node image: a pool of two nodes comes up Ready with the local Nodes' addresses, a
//! conference is placed on one of them with join info, and deleting a media-node pod by hand
//! fails that node and brings a replacement.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::time::Duration;

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase};
use conclave_testenv::wait;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::DeleteParams;

mod common;
use common::fixtures::{conference, create, pool, ports, ready_nodes, wait_for_ready_nodes};
use common::report;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_comes_up_places_a_conference_and_replaces_a_lost_node() {
    let (env, ns, _operator) = common::start("pool").await;
    let ports = ports();
    let port = ports.signaling;
    create(
        &ns,
        &pool(
            "default",
            ports,
            json!({"scaling": {"minNodes": 2, "maxNodes": 3}}),
        ),
    )
    .await;

    let local: Vec<String> = env.nodes().iter().map(|n| n.address.to_string()).collect();
    let nodes = wait_for_ready_nodes(env, &ns, 2).await;
    for n in &nodes {
        let addresses = n.status.clone().unwrap().addresses.unwrap();
        let public = addresses.public.unwrap();
        assert!(
            local.contains(&public),
            "{public} is not a local Node address {local:?}"
        );
        assert_eq!(
            addresses.signaling_url.unwrap(),
            format!("ws://{public}:{port}/rtc")
        );
    }
    let mut publics: Vec<_> = nodes
        .iter()
        .map(|n| n.status.clone().unwrap().addresses.unwrap().public)
        .collect();
    publics.dedup();
    assert_eq!(publics.len(), 2, "one media node per local Node (hostPort)");

    create(&ns, &conference("standup", "default", 8, json!({}))).await;
    let placed = wait::until("conference Active with join info", TIMEOUT, || async {
        let c = ns.api::<Conference>().get("standup").await.ok()?;
        let s = c.status.clone()?;
        (s.phase == Some(ConferencePhase::Active) && s.join.is_some()).then_some(c)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let status = placed.status.clone().unwrap();
    let host = status.media_node.clone().unwrap();
    assert_eq!(placed.labels()["conclave.dev/media-node"], host);
    let hosting = nodes
        .iter()
        .find(|n| n.name_any() == host)
        .expect("placed on a Ready node");
    let join = status.join.unwrap();
    assert_eq!(
        Some(join.signaling_url),
        hosting
            .status
            .clone()
            .unwrap()
            .addresses
            .unwrap()
            .signaling_url
    );

    // Deleting the hosting node's pod by hand: it goes Failed, the conference moves to the
    // other node with new join info, and a replacement node is created.
    ns.api::<Pod>()
        .delete(&host, &DeleteParams::default())
        .await
        .unwrap();
    wait::until(
        "the node whose pod was deleted goes Failed or is replaced",
        TIMEOUT,
        || async {
            let n = ns.api::<MediaNode>().get(&host).await;
            match n {
                Ok(n) => {
                    (n.status.and_then(|s| s.phase) == Some(MediaNodePhase::Failed)).then_some(())
                }
                Err(_) => Some(()),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let moved = wait::until("conference moved off the lost node", TIMEOUT, || async {
        let c = ns.api::<Conference>().get("standup").await.ok()?;
        let s = c.status?;
        (s.media_node.as_deref() != Some(host.as_str()) && s.phase == Some(ConferencePhase::Active))
            .then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    assert_eq!(moved.moves, 1);
    assert_ne!(
        moved.join.unwrap().signaling_url,
        join_url_of(&nodes, &host)
    );
    wait::until("two Ready media nodes again", TIMEOUT, || async {
        let ready = ready_nodes(&ns).await;
        (ready.len() == 2 && ready.iter().all(|n| n.name_any() != host)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
}

fn join_url_of(nodes: &[MediaNode], name: &str) -> String {
    let node = nodes.iter().find(|n| n.name_any() == name).unwrap();
    node.status
        .clone()
        .unwrap()
        .addresses
        .unwrap()
        .signaling_url
        .unwrap()
}
