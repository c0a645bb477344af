//! End to end: conferences leave their media node. A node a person drains hands its
//! conferences to another node at the pool's evacuation rate and is deleted once empty; a node
//! whose process freezes (its Lease is no longer renewed: its heartbeat goes stale) has its conference re-placed with new join
//! info within seconds of the heartbeat timeout; but when every node of a pool goes quiet at
//! once, nothing is failed or moved until the heartbeats come back.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase, MediaPool, labels};
use conclave_testenv::freezer::{self, FrozenContainer};
use conclave_testenv::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::json;

mod common;
use common::fixtures::{all_nodes, conference, create, drain, pool, ports, wait_for_ready_nodes};
use common::report;

const TIMEOUT: Duration = Duration::from_secs(90);

/// Where each of `names` is hosted now (None while unplaced).
async fn hosts(ns: &TestNamespace, names: &[String]) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for name in names {
        let c = ns.api::<Conference>().get(name).await.unwrap();
        let s = c.status.unwrap_or_default();
        let active = s.phase == Some(ConferencePhase::Active);
        out.insert(name.clone(), s.media_node.filter(|_| active));
    }
    out
}

/// Waits until every one of `names` is Active, and returns where each is hosted.
async fn all_active(
    env: &TestEnv,
    ns: &TestNamespace,
    names: &[String],
) -> BTreeMap<String, Option<String>> {
    wait::until(
        &format!("{} conferences Active", names.len()),
        TIMEOUT,
        || async {
            let h = hosts(ns, names).await;
            h.values().all(Option::is_some).then_some(h)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, ns)))
}

/// Freezes the media node `name`'s container (the cgroup freezer on its node): the pod
/// stays, its process does nothing, its heartbeat stops. Thawed when dropped.
async fn freeze(ns: &TestNamespace, name: &str) -> FrozenContainer {
    let pod = ns.api::<Pod>().get(name).await.unwrap();
    let id = pod.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .clone()
        .expect("the kubelet reports the container's id");
    freezer::freeze(&id).unwrap()
}

fn signaling_url(node: &MediaNode) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .signaling_url
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_conferences_over_at_the_evacuation_rate_and_goes() {
    let (env, ns, _operator) = common::start("evacuate").await;
    let rate = 2; // per minute, with a burst of 2: two move at once, the third ~30 s later.
    create(
        &ns,
        &pool(
            "drain",
            ports(),
            json!({"scaling": {"minNodes": 2, "maxNodes": 3, "bufferParticipants": 0,
                               "evacuationRate": rate, "drainTimeoutSeconds": 300}}),
        ),
    )
    .await;
    wait_for_ready_nodes(env, &ns, 2).await;
    let names: Vec<String> = (1..=3).map(|i| format!("meeting-{i}")).collect();
    for name in &names {
        create(&ns, &conference(name, "drain", 5, json!({}))).await;
    }
    let placed = all_active(env, &ns, &names).await;
    let drained = placed.values().next().unwrap().clone().unwrap();
    assert!(
        placed
            .values()
            .all(|h| h.as_deref() == Some(drained.as_str())),
        "Packed placement puts all three on one node: {placed:?}"
    );
    let old_url = signaling_url(&ns.api::<MediaNode>().get(&drained).await.unwrap());

    drain(&ns, &drained).await;
    let drain_started = Instant::now();
    let moved_at: Mutex<BTreeMap<String, Duration>> = Mutex::default();
    wait::until(
        "all three conferences moved off the drained node",
        TIMEOUT,
        || async {
            let now = hosts(&ns, &names).await;
            let mut moved_at = moved_at.lock().unwrap();
            for (name, host) in now {
                if host.is_some_and(|h| h != drained) {
                    moved_at
                        .entry(name)
                        .or_insert_with(|| drain_started.elapsed());
                }
            }
            (moved_at.len() == names.len()).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let mut times: Vec<Duration> = moved_at.lock().unwrap().values().copied().collect();
    times.sort();
    println!("evacuation: moves at {times:?} after the drain began (rate {rate}/min)");
    assert!(
        times[2] - times[0] >= Duration::from_secs(20),
        "the third move waits for the rate ({rate}/min): {times:?}"
    );

    for name in &names {
        let s = ns
            .api::<Conference>()
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(s.moves, 1, "{name} moved once");
        assert_ne!(
            Some(s.join.unwrap().signaling_url),
            old_url,
            "{name} has new join info"
        );
    }
    wait::until(
        "the drained node and its pod are deleted",
        TIMEOUT,
        || async {
            let nodes = all_nodes(&ns).await;
            let phase = nodes
                .iter()
                .find(|n| n.name_any() == drained)
                .and_then(|n| n.status.as_ref()?.phase);
            assert_ne!(
                phase,
                Some(MediaNodePhase::Failed),
                "a drain is not a failure"
            );
            let node_gone = nodes.iter().all(|n| n.name_any() != drained);
            let pod_gone = ns.api::<Pod>().get_opt(&drained).await.ok()?.is_none();
            (node_gone && pod_gone).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_loses_its_conference_within_seconds_of_its_heartbeat_going_stale() {
    let (env, ns, _operator) = common::start("failover").await;
    // The default timeout: the kubelet's readiness probe (every 2 s, 3 failures) sees the
    // frozen pod unready before the heartbeat goes stale, so the node is back in Starting
    // when it has to be failed, as a hung process's node is.
    let timeout = 15;
    create(
        &ns,
        &pool(
            "fragile",
            ports(),
            json!({"scaling": {"minNodes": 2, "maxNodes": 3},
                   "mediaNode": {"heartbeatTimeoutSeconds": timeout}}),
        ),
    )
    .await;
    wait_for_ready_nodes(env, &ns, 2).await;
    create(&ns, &conference("standup", "fragile", 8, json!({}))).await;
    let names = vec!["standup".to_owned()];
    let host = wait::until("the standup Active", TIMEOUT, || async {
        hosts(&ns, &names).await["standup"].clone()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let old_url = signaling_url(&ns.api::<MediaNode>().get(&host).await.unwrap());

    // Freeze the media node: the pod stays, the heartbeat stops.
    let frozen = freeze(&ns, &host).await;

    // The node's last heartbeat (its Lease's renew time), as seen while waiting (a renewal
    // in flight at the freeze may still land; once deleted, the last value seen stays).
    let last_heartbeat = Mutex::new(None);
    let unready_first = Mutex::new(false);
    let leases = ns.api::<k8s_openapi::api::coordination::v1::Lease>();
    let moved = wait::until("the standup moved to another node", TIMEOUT, || async {
        if let Ok(Some(lease)) = leases.get_opt(&host).await
            && let Some(beat) = lease.spec.and_then(|s| s.renew_time)
        {
            *last_heartbeat.lock().unwrap() = Some(beat.0);
        }
        if let Ok(Some(node)) = ns.api::<MediaNode>().get_opt(&host).await
            && node.status.and_then(|s| s.phase) == Some(MediaNodePhase::Starting)
        {
            *unready_first.lock().unwrap() = true;
        }
        let c = ns.api::<Conference>().get("standup").await.ok()?;
        let s = c.status?;
        (s.media_node.as_deref() != Some(host.as_str()) && s.join.is_some()).then_some(s)
    })
    .await;
    let observed = k8s_openapi::jiff::Timestamp::now();
    frozen.thaw();
    let moved = moved.unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let last_heartbeat = last_heartbeat
        .lock()
        .unwrap()
        .expect("the frozen node had heartbeated");
    let stale_at = last_heartbeat + k8s_openapi::jiff::SignedDuration::from_secs(timeout);
    let after_stale = observed.duration_since(stale_at);
    println!("failover: conference moved {after_stale:#} after the heartbeat went stale");
    // The operator reads heartbeat times to the second and the check polls every 200 ms: 1 s
    // of slack.
    assert!(
        after_stale <= k8s_openapi::jiff::SignedDuration::from_secs(6),
        "moved {after_stale:#} after the heartbeat went stale (limit 5 s)"
    );
    assert_eq!(moved.moves, 1);
    assert_ne!(Some(moved.join.unwrap().signaling_url), old_url);
    assert!(
        *unready_first.lock().unwrap(),
        "the frozen node was not seen back in Starting (pod unready) before it was failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_heartbeats_all_stop_at_once_fails_no_node_and_moves_nothing() {
    let (env, ns, _operator) = common::start("stall").await;
    // As in the failover test, the pods go unready (Starting) before their heartbeats go stale.
    let timeout = 15;
    create(
        &ns,
        &pool(
            "quiet",
            ports(),
            json!({"scaling": {"minNodes": 3, "maxNodes": 3, "bufferParticipants": 0},
                   "mediaNode": {"heartbeatTimeoutSeconds": timeout}}),
        ),
    )
    .await;
    let nodes = wait_for_ready_nodes(env, &ns, 3).await;
    let names = vec!["retro".to_owned(), "planning".to_owned()];
    for name in &names {
        create(&ns, &conference(name, "quiet", 4, json!({}))).await;
    }
    let placed = all_active(env, &ns, &names).await;

    // Every media node of the pool goes quiet at once, as when the API server stops
    // answering their writes.
    let mut frozen = Vec::new();
    for node in &nodes {
        frozen.push(freeze(&ns, &node.name_any()).await);
    }
    let pools = ns.api::<MediaPool>();
    let heartbeats = |ok: &'static str| {
        let pools = pools.clone();
        async move {
            let p = pools.get("quiet").await.ok()?;
            p.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == labels::condition::HEARTBEATS && c.status == ok)
        }
    };
    let stalled = wait::until("the pool's Heartbeats condition False", TIMEOUT, || {
        heartbeats("False")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    assert_eq!(stalled.reason, "Stalled");
    assert!(stalled.message.contains("3 of 3"), "{}", stalled.message);

    // Well past the timeout: no node failed, no conference moved.
    let quiet_until = Instant::now() + Duration::from_secs(2 * timeout);
    while Instant::now() < quiet_until {
        for n in all_nodes(&ns).await {
            let phase = n.status.as_ref().and_then(|s| s.phase);
            assert_ne!(
                phase,
                Some(MediaNodePhase::Failed),
                "{} failed",
                n.name_any()
            );
        }
        assert_eq!(hosts(&ns, &names).await, placed, "a conference moved");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The kubelet saw the frozen pods unready meanwhile: the guard held for nodes back in
    // Starting too.
    let starting = all_nodes(&ns)
        .await
        .iter()
        .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(MediaNodePhase::Starting))
        .count();
    assert_eq!(starting, 3, "every frozen node's pod went unready");

    drop(frozen);
    wait::until(
        "the pool's Heartbeats condition True again",
        TIMEOUT,
        || heartbeats("True"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    // Recovery fails no node either: the heartbeats land one by one, and the last ones get a
    // heartbeat timeout's grace after the stall.
    wait::until("all three media nodes healthy again", TIMEOUT, || async {
        let healthy = all_nodes(&ns)
            .await
            .into_iter()
            .filter(|n| {
                n.status.as_ref().is_some_and(|s| {
                    s.phase == Some(MediaNodePhase::Ready)
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == labels::condition::HEALTHY && c.status == "True")
                })
            })
            .count();
        (healthy == 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    assert_eq!(hosts(&ns, &names).await, placed, "a conference moved");
}
