//! End to end: conferences leave their media node. A node a person drains hands its
//! conferences to another node at the pool's evacuation rate and is deleted once empty; a node
//! whose process freezes (its heartbeat goes stale) has its conference re-placed with new join
//! info within seconds of the heartbeat timeout.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase};
use conclave_testenv::{TestNamespace, wait};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;

mod common;
use common::fixtures::{all_nodes, conference, create, pool, ports, ready_nodes};
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
    wait::until("two Ready media nodes", TIMEOUT, || async {
        (ready_nodes(&ns).await.len() == 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let names: Vec<String> = (1..=3).map(|i| format!("meeting-{i}")).collect();
    for name in &names {
        create(&ns, &conference(name, "drain", 5, json!({}))).await;
    }
    let placed = wait::until("three conferences Active", TIMEOUT, || async {
        let h = hosts(&ns, &names).await;
        h.values().all(Option::is_some).then_some(h)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let drained = placed.values().next().unwrap().clone().unwrap();
    assert!(
        placed
            .values()
            .all(|h| h.as_deref() == Some(drained.as_str())),
        "Packed placement puts all three on one node: {placed:?}"
    );
    let old_url = signaling_url(&ns.api::<MediaNode>().get(&drained).await.unwrap());

    ns.api::<MediaNode>()
        .patch(
            &drained,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"draining": true}})),
        )
        .await
        .unwrap();
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
    let timeout = 6;
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
    wait::until("two Ready media nodes", TIMEOUT, || async {
        (ready_nodes(&ns).await.len() == 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    create(&ns, &conference("standup", "fragile", 8, json!({}))).await;
    let names = vec!["standup".to_owned()];
    let host = wait::until("the standup Active", TIMEOUT, || async {
        hosts(&ns, &names).await["standup"].clone()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let old_url = signaling_url(&ns.api::<MediaNode>().get(&host).await.unwrap());

    // Freeze the media node's process group: the pod stays, the heartbeat stops.
    let pod = ns.api::<Pod>().get(&host).await.unwrap();
    let pid: i32 = pod.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .as_deref()
        .and_then(|id| id.strip_prefix("harness://"))
        .and_then(|pid| pid.parse().ok())
        .expect("the harness kubelet reports the container's process id");
    killpg(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();

    // The node's last heartbeat, as seen while waiting (a write in flight at the freeze may
    // still land; once deleted, the node's last value stays).
    let last_heartbeat = Mutex::new(None);
    let moved = wait::until("the standup moved to another node", TIMEOUT, || async {
        if let Ok(Some(n)) = ns.api::<MediaNode>().get_opt(&host).await
            && let Some(beat) = n.status.and_then(|s| s.last_heartbeat)
        {
            *last_heartbeat.lock().unwrap() = Some(beat.0);
        }
        let c = ns.api::<Conference>().get("standup").await.ok()?;
        let s = c.status?;
        (s.media_node.as_deref() != Some(host.as_str()) && s.join.is_some()).then_some(s)
    })
    .await;
    let observed = k8s_openapi::jiff::Timestamp::now();
    let _ = killpg(Pid::from_raw(pid), Signal::SIGCONT);
    let moved = moved.unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let last_heartbeat = last_heartbeat
        .lock()
        .unwrap()
        .expect("the frozen node had heartbeated");
    let stale_at = last_heartbeat + k8s_openapi::jiff::SignedDuration::from_secs(timeout);
    let after_stale = observed.duration_since(stale_at);
    println!("failover: conference moved {after_stale:#} after the heartbeat went stale");
    // The heartbeat time has second precision and the check polls every 200 ms: 1 s of slack.
    assert!(
        after_stale <= k8s_openapi::jiff::SignedDuration::from_secs(6),
        "moved {after_stale:#} after the heartbeat went stale (limit 5 s)"
    );
    assert_eq!(moved.moves, 1);
    assert_ne!(Some(moved.join.unwrap().signaling_url), old_url);
}
