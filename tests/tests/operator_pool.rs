//! The operator on the real control plane, with media-node pods run by real kubelets from the
//! media-node image: a pool of two nodes comes up Ready with the local Nodes' addresses (and
//! metrics on their own port, not the public signaling one), a conference is placed on one of
//! them with join info, and deleting a media-node pod by hand fails that node and brings a
//! replacement; the operator's series of the pool name its namespace and go when it is
//! deleted, and it counts conferences by namespace and phase. A new media-node image rolls
//! the pool a new node first (the default surge of one), never fewer Ready nodes than the
//! pool needs, and the conference moves once, onto a new node. Conferences that name a region
//! take the pool they land on: its relays in their join info, and its autoscaler when they
//! wait.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::time::Duration;

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase, MediaPool, labels};
use conclave_testenv::images::Image;
use conclave_testenv::{TestNamespace, wait};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

mod common;
use common::fixtures::{
    all_nodes, conference, create, media_pods_on, pool, ports, ready_nodes, wait_for_ready_nodes,
};
use common::report;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_comes_up_places_a_conference_and_replaces_a_lost_node() {
    let (env, ns, operator) = common::start("pool").await;
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

    // Metrics on their own port (signaling + 1), at the pod's address only, and not on the
    // public signaling port.
    let pod_ip: std::net::IpAddr = nodes[0]
        .status
        .clone()
        .unwrap()
        .addresses
        .unwrap()
        .internal
        .unwrap()
        .parse()
        .unwrap();
    let metrics = conclave_testenv::http::get(
        (pod_ip, port + 1).into(),
        "/metrics",
        &[],
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        metrics.status == 200 && metrics.body.contains("conclave_media_node_rooms"),
        "{metrics:?}"
    );
    let public: std::net::IpAddr = publics[0].clone().unwrap().parse().unwrap();
    let on_node = |port: u16| {
        conclave_testenv::http::get(
            (public, port).into(),
            "/metrics",
            &[],
            Duration::from_secs(5),
        )
    };
    assert_eq!(
        on_node(port).await.unwrap().status,
        404,
        "no metrics on the signaling port"
    );
    assert!(
        on_node(port + 1).await.is_err(),
        "the metrics port is not published on the Node's address"
    );

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
    // Placed with its status alone: the node finds it by `status.mediaNode`.
    assert!(
        !placed.labels().contains_key(labels::MEDIA_NODE),
        "{:?}",
        placed.labels()
    );
    let on_host = ns
        .api::<Conference>()
        .list(&ListParams::default().fields(&conclave_crds::report::conferences_on(&host)))
        .await
        .unwrap();
    assert_eq!(
        on_host
            .items
            .iter()
            .map(|c| c.name_any())
            .collect::<Vec<_>>(),
        ["standup"]
    );
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

    // The operator's series of the pool carry its namespace, and go with the pool.
    let series = format!(
        r#"conclave_operator_media_nodes{{namespace="{}",pool="default",phase="Ready"}} 2"#,
        ns.name()
    );
    let metrics = || async {
        let addr = operator.metrics_address()?;
        let r = conclave_testenv::http::get(addr, "/metrics", &[], Duration::from_secs(5))
            .await
            .ok()?;
        Some(r.body)
    };
    let conferences = format!(
        r#"conclave_operator_conferences{{namespace="{}",phase="Active"}} 1"#,
        ns.name()
    );
    wait::until(
        "the pool's series in the operator's metrics",
        TIMEOUT,
        || async {
            metrics()
                .await
                .filter(|m| m.contains(&series) && m.contains(&conferences))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    ns.api::<MediaPool>()
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    wait::until("the deleted pool's series gone", TIMEOUT, || async {
        metrics().await.filter(|m| {
            !m.contains(r#"pool="default""#) && m.contains("conclave_operator_reconciles")
        })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_adds_a_node_before_draining_an_old_one() {
    let (env, ns, _operator) = common::start("pool-rollout").await;
    create(
        &ns,
        &pool(
            "default",
            ports(),
            json!({"scaling": {"minNodes": 2, "maxNodes": 3}}),
        ),
    )
    .await;
    wait_for_ready_nodes(env, &ns, 2).await;
    create(&ns, &conference("standup", "default", 8, json!({}))).await;
    let host = wait::until("conference Active", TIMEOUT, || async {
        let s = ns.api::<Conference>().get("standup").await.ok()?.status?;
        (s.phase == Some(ConferencePhase::Active)).then_some(s.media_node?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    let next = Image::MediaNode.next_reference();
    ns.api::<MediaPool>()
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mediaNode": {"image": next}}})),
        )
        .await
        .unwrap();
    // Watch the fleet until the pool is up to date and runs two Ready pods of the new image.
    let started = tokio::time::Instant::now();
    let (mut fewest_ready, mut most_live) = (usize::MAX, 0);
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the rollout did not finish in 240 s\n{}",
            report(env, &ns)
        );
        let live = all_nodes(&ns).await.iter().filter(|n| is_live(n)).count();
        fewest_ready = fewest_ready.min(ready_nodes(&ns).await.len());
        most_live = most_live.max(live);
        let new_ready = media_pods_on(&ns, &next).await.map(|(_, ready)| ready);
        if up_to_date(&ns).await && new_ready == Some(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "rolled 2 media nodes in {:?}: at least {fewest_ready} Ready throughout, at most {most_live} live",
        started.elapsed()
    );
    assert!(fewest_ready >= 2, "Ready nodes fell to {fewest_ready}");
    assert_eq!(most_live, 3, "one node added above the two needed, no more");
    let moved = ns
        .api::<Conference>()
        .get("standup")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(moved.phase, Some(ConferencePhase::Active));
    assert_ne!(moved.media_node.as_deref(), Some(host.as_str()));
    assert_eq!(moved.moves, 1, "moved once, onto a new node");
}

/// Not draining, and Pending, Starting or Ready.
fn is_live(n: &MediaNode) -> bool {
    let phase = n.status.as_ref().and_then(|s| s.phase);
    !n.spec.draining
        && matches!(
            phase,
            None | Some(MediaNodePhase::Pending | MediaNodePhase::Starting | MediaNodePhase::Ready)
        )
}

/// Whether the pool `default` says every media node runs its current template.
async fn up_to_date(ns: &TestNamespace) -> bool {
    let Ok(pool) = ns.api::<MediaPool>().get("default").await else {
        return false;
    };
    pool.status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == labels::condition::UP_TO_DATE && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conferences_of_a_region_take_the_pool_they_land_on() {
    let (env, ns, _operator) = common::start("pool-region").await;
    // Two pools of region east with nodes of 10 participants: east-a of one node and no TURN,
    // east-b of up to two nodes with TURN.
    let sized = |max_nodes: u32, turn: bool| {
        json!({"region": "east", "nodeCapacity": {"participants": 10, "rooms": 5},
               "scaling": {"minNodes": 1, "maxNodes": max_nodes, "bufferParticipants": 0},
               "turn": {"enabled": turn, "minReplicas": 1, "allowedPeers": [env.nodes_range().unwrap()]}})
    };
    create(&ns, &pool("east-a", ports(), sized(1, false))).await;
    create(&ns, &pool("east-b", ports(), sized(2, true))).await;
    let relays = wait::until(
        "both pools Ready, east-b with relay URLs",
        TIMEOUT,
        || async {
            let pools = ns.api::<MediaPool>();
            let a = pools.get("east-a").await.ok()?.status?;
            let b = pools.get("east-b").await.ok()?.status?;
            let urls = b.turn?.urls;
            (a.ready_nodes == 1 && b.ready_nodes == 1 && !urls.is_empty()).then_some(urls)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    // Placed in name order where there is room, each with its own pool's relays.
    let first = placed_in_region(env, &ns, "first").await;
    assert_eq!(first.pool.as_deref(), Some("east-a"));
    assert!(
        first.join.unwrap().ice_servers.is_empty(),
        "east-a has no relays"
    );
    let second = placed_in_region(env, &ns, "second").await;
    assert_eq!(second.pool.as_deref(), Some("east-b"), "east-a is full");
    let ice: Vec<String> = second
        .join
        .unwrap()
        .ice_servers
        .into_iter()
        .flat_map(|s| s.urls)
        .collect();
    assert_eq!(
        ice.len(),
        relays.len(),
        "east-b's relays: {ice:?} vs {relays:?}"
    );
    assert!(relays.iter().all(|u| ice.contains(u)), "{ice:?}");

    // Both full, east-a at its maxNodes: east-b grows for the third.
    let third = placed_in_region(env, &ns, "third").await;
    assert_eq!(third.pool.as_deref(), Some("east-b"));
    assert_ne!(third.media_node, second.media_node, "on east-b's new node");
}

/// Creates conference `name` of region east for 8 and returns its status once Active.
async fn placed_in_region(
    env: &conclave_testenv::TestEnv,
    ns: &TestNamespace,
    name: &str,
) -> conclave_crds::ConferenceStatus {
    let mut c = conference(name, "unused", 8, json!({"region": "east"}));
    c.spec.pool = None;
    create(ns, &c).await;
    wait::until(&format!("conference {name} Active"), TIMEOUT, || async {
        let s = ns.api::<Conference>().get(name).await.ok()?.status?;
        (s.phase == Some(ConferencePhase::Active) && s.join.is_some()).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, ns)))
}
