//! End to end against the real control plane and real kubelets: a pool grows past its buffer
//! when conferences reserve capacity and shrinks after the delay by draining its emptiest node
//! (never the one with a live conference) and takes a node drained as surplus back before
//! starting another when capacity is needed again; a scheduled conference gets a Ready node
//! before it starts, and the pool starts a node for one its measured node start before the
//! warm-up; conferences that expect fewer than their maximum share a node their maxima would
//! not fit; a spec no cluster can run and a lost Secret are reported and recover once fixed; a
//! restarted operator rebuilds its state from the API without duplicates or orphans.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase, MediaPool, labels};
use conclave_testenv::images::Image;
use conclave_testenv::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

mod common;
use common::fixtures::{
    all_nodes, conference, create, pool, ports, ready_nodes, rfc3339, wait_for_ready_nodes,
};
use common::report;

const TIMEOUT: Duration = Duration::from_secs(90);

/// Creates pool `elastic`: nodes of 20 participants and 10 rooms, 1 to 3 of them, a buffer
/// of 10 participants, and `scaling` over that; then waits for its first Ready node.
async fn elastic_pool(env: &TestEnv, ns: &TestNamespace, scaling: serde_json::Value) {
    let mut spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 10},
        "scaling": {"minNodes": 1, "maxNodes": 3, "bufferParticipants": 10}
    });
    spec["scaling"]
        .as_object_mut()
        .unwrap()
        .extend(scaling.as_object().unwrap().clone());
    create(ns, &pool("elastic", ports(), spec)).await;
    wait_for_ready_nodes(env, ns, 1).await;
}

/// Conferences by the node hosting them, once all of `names` are Active.
async fn active_by_node(ns: &TestNamespace, names: &[&str]) -> BTreeMap<String, Vec<String>> {
    wait::until("conferences Active", TIMEOUT, || async {
        let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in names {
            let c = ns.api::<Conference>().get(name).await.ok()?;
            let s = c.status?;
            if s.phase != Some(ConferencePhase::Active) {
                return None;
            }
            by_node
                .entry(s.media_node?)
                .or_default()
                .push(name.to_string());
        }
        Some(by_node)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn pool_condition(p: &MediaPool, type_: &str) -> Option<Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conferences_reserve_their_expected_attendance_with_room_to_grow() {
    let (env, ns, _operator) = common::start("expect").await;
    elastic_pool(env, &ns, json!({})).await;

    // Two of at most 12 expecting 6: 6 + 6 and room for one to grow by 6 fit a node of 20,
    // where their maxima (24) would not.
    let expecting = json!({"expectedParticipants": 6});
    for name in ["a", "b"] {
        create(&ns, &conference(name, "elastic", 12, expecting.clone())).await;
    }
    let by_node = active_by_node(&ns, &["a", "b"]).await;
    assert_eq!(by_node.len(), 1, "both share one node: {by_node:?}");
    let shared = by_node.keys().next().unwrap().clone();
    // The node's status shows what it holds: their expectations.
    wait::until("the node reports 12 reserved", TIMEOUT, || async {
        let node = ns.api::<MediaNode>().get(&shared).await.ok()?;
        (node.status?.reserved_participants == Some(12)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    // One reserving its maximum of 12 does not fit beside them (18 + 12 > 20).
    create(&ns, &conference("c", "elastic", 12, json!({}))).await;
    let by_node = active_by_node(&ns, &["a", "b", "c"]).await;
    assert_eq!(by_node.len(), 2, "c went to another node: {by_node:?}");
    assert_eq!(by_node[&shared], ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_grows_the_pool_past_its_buffer_and_the_emptiest_node_drains_after_the_delay() {
    let (env, ns, operator) = common::start("scale").await;
    let delay = 3;
    elastic_pool(
        env,
        &ns,
        json!({"scaleDownDelaySeconds": delay, "drainTimeoutSeconds": 120}),
    )
    .await;

    // 3 × 8 reserved participants: with the buffer of 10 that needs two nodes of 20.
    for name in ["a", "b", "c"] {
        create(&ns, &conference(name, "elastic", 8, json!({}))).await;
    }
    let by_node = active_by_node(&ns, &["a", "b", "c"]).await;
    wait_for_ready_nodes(env, &ns, 2).await;
    assert_eq!(by_node.len(), 2, "no node carries all 24: {by_node:?}");

    // Keep "c" alive; end every other conference, so the node without "c" is the emptiest.
    let (keep, _) = by_node
        .iter()
        .find(|(_, names)| names.contains(&"c".to_owned()))
        .map(|(n, v)| (n.clone(), v.clone()))
        .unwrap();
    let emptied = by_node.keys().find(|n| **n != keep).unwrap().clone();
    for name in ["a", "b"] {
        ns.api::<Conference>()
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    // The surplus may have begun before the load went (a node started for the buffer became
    // Ready late): the delay counts from the pool's surplusSince, the earliest one seen.
    let surplus_since = std::sync::Mutex::new(None::<i64>);
    // An empty node is deleted as soon as it drains, often before its own status says so:
    // the pool's Event says when it was drained.
    let drained = format!("draining media node {emptied}");
    let draining_since = wait::until("the emptied node drains", TIMEOUT, || async {
        let pool = ns.api::<MediaPool>().get("elastic").await.ok()?;
        if let Some(since) = pool.status.and_then(|s| s.surplus_since) {
            let mut seen = surplus_since.lock().unwrap();
            *seen = Some(seen.map_or(since.0.as_second(), |s| s.min(since.0.as_second())));
        }
        let nodes = all_nodes(&ns).await;
        let kept = nodes.iter().find(|n| n.name_any() == keep);
        assert!(
            kept.is_some_and(|n| !n.spec.draining),
            "the node hosting live conference c was drained or removed"
        );
        let events = ns.api::<Event>().list(&Default::default()).await.ok()?;
        events
            .items
            .iter()
            .find(|e| {
                e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(&drained))
            })
            .and_then(|e| e.metadata.creation_timestamp.as_ref())
            .map(|t| t.0.as_second())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let surplus_since = surplus_since
        .lock()
        .unwrap()
        .expect("the pool reported its surplus before draining");
    // Both are whole seconds, of the API server and of the operator beside it.
    assert!(
        draining_since - surplus_since >= delay as i64 - 1,
        "drained {}s after the surplus began, before scaleDownDelaySeconds {delay}",
        draining_since - surplus_since
    );
    wait::until("the drained node is deleted", TIMEOUT, || async {
        let nodes = all_nodes(&ns).await;
        let names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
        (names == [keep.clone()]).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    let c = ns.api::<Conference>().get("c").await.unwrap();
    let s = c.status.unwrap();
    assert_eq!(s.phase, Some(ConferencePhase::Active));
    assert_eq!(s.media_node.as_deref(), Some(keep.as_str()));
    assert_eq!(s.moves, 0, "the live conference was never moved");

    // No flapping: with 8 of 20 reserved the buffer is met, so nothing is added back. The
    // pool is touched once the delay has passed, and the nodes are looked at only after the
    // operator finished reconciling it (a node it added would exist by then).
    tokio::time::sleep(Duration::from_secs(delay)).await;
    touch_and_wait_for_pool_reconcile(env, &ns, &operator, "elastic").await;
    let names: Vec<String> = all_nodes(&ns).await.iter().map(|n| n.name_any()).collect();
    assert_eq!(names, [keep]);
}

/// Touches pool `name` (an annotation) and waits until the operator finished a reconcile after
/// that: what the pool controller would create, it has created by then.
async fn touch_and_wait_for_pool_reconcile(
    env: &TestEnv,
    ns: &TestNamespace,
    operator: &conclave_testenv::operator::Operator,
    name: &str,
) {
    let before = pool_reconciles(operator)
        .await
        .expect("the operator's metrics");
    let touched = k8s_openapi::jiff::Timestamp::now().to_string();
    ns.api::<MediaPool>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"test/touched": touched}}})),
        )
        .await
        .unwrap();
    wait::until(
        "the operator reconciles the touched pool",
        TIMEOUT,
        || async {
            pool_reconciles(operator)
                .await
                .filter(|count| *count > before)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, ns)));
}

/// How many pool reconciles the operator finished (its duration histogram's count: the
/// reconcile counter goes up when one starts).
async fn pool_reconciles(operator: &conclave_testenv::operator::Operator) -> Option<u64> {
    let addr = operator.metrics_address()?;
    let metrics = conclave_testenv::http::get(addr, "/metrics", &[], Duration::from_secs(5))
        .await
        .ok()?;
    metrics
        .body
        .lines()
        .find(|l| {
            l.starts_with(
                r#"conclave_operator_reconcile_duration_seconds_count{controller="pool"}"#,
            )
        })?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_drained_as_surplus_is_taken_back_when_capacity_is_needed_again() {
    let (env, ns, _operator) = common::start("reclaim").await;
    // Distributed, so the second node gets a conference of its own; evacuation off, so a
    // draining node keeps its conferences until they end.
    elastic_pool(
        env,
        &ns,
        json!({"scaleDownDelaySeconds": 2, "drainTimeoutSeconds": 600,
               "evacuationRate": 0, "strategy": "Distributed"}),
    )
    .await;
    // 4 + 8 of 20 leaves less than the buffer free: a second node starts.
    for (name, size) in [("keep", 4), ("grow", 8)] {
        create(&ns, &conference(name, "elastic", size, json!({}))).await;
    }
    let first = active_by_node(&ns, &["keep", "grow"]).await;
    let first = first.keys().next().unwrap().clone();
    wait_for_ready_nodes(env, &ns, 2).await;
    create(&ns, &conference("small", "elastic", 2, json!({}))).await;
    let by_node = active_by_node(&ns, &["small"]).await;
    let second = by_node.keys().next().unwrap().clone();
    assert_ne!(second, first, "Distributed placed small on the empty node");

    // 4 + 2 reserved: one node carries that and the buffer, so the emptier one drains, its
    // conference staying.
    ns.api::<Conference>()
        .delete("grow", &DeleteParams::default())
        .await
        .unwrap();
    wait::until("the second node drains as surplus", TIMEOUT, || async {
        let node = ns.api::<MediaNode>().get(&second).await.ok()?;
        let reason = node.annotations().get(labels::DRAIN_REASON).cloned();
        let phase = node.status?.phase;
        (node.spec.draining
            && reason.as_deref() == Some(labels::DRAIN_SCALING_DOWN)
            && phase == Some(MediaNodePhase::Draining))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    // 4 + 12 on the first node leaves less than the buffer: the draining node is taken back
    // instead of a third one being started.
    create(&ns, &conference("big", "elastic", 12, json!({}))).await;
    wait::until("the drained node is taken back", TIMEOUT, || async {
        let node = ns.api::<MediaNode>().get(&second).await.ok()?;
        let status = node.status.clone()?;
        let draining_condition = status
            .conditions
            .iter()
            .any(|c| c.type_ == labels::condition::DRAINING);
        (!node.spec.draining
            && !node.annotations().contains_key(labels::DRAIN_REASON)
            && status.phase == Some(MediaNodePhase::Ready)
            && status.draining_since.is_none()
            && !draining_condition)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    // The pool counts both nodes as the capacity it wants: nothing else is coming.
    wait::until("the pool wants the two nodes it has", TIMEOUT, || async {
        let s = ns.api::<MediaPool>().get("elastic").await.ok()?.status?;
        (s.desired_nodes == 2 && s.ready_nodes == 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let names: Vec<String> = all_nodes(&ns).await.iter().map(|n| n.name_any()).collect();
    assert_eq!(names.len(), 2, "no third node was created: {names:?}");

    let small = ns.api::<Conference>().get("small").await.unwrap();
    let s = small.status.unwrap();
    assert_eq!(s.media_node.as_deref(), Some(second.as_str()));
    assert_eq!(s.phase, Some(ConferencePhase::Active));
    assert_eq!(
        s.moves, 0,
        "the conference on the drained node stayed through it all"
    );

    // The media node takes rooms again: the next conference goes to it and it opens the room.
    create(&ns, &conference("after", "elastic", 2, json!({}))).await;
    let by_node = active_by_node(&ns, &["after"]).await;
    assert!(by_node.contains_key(&second), "{by_node:?}");
    wait::until(
        "the taken-back media node opens the new room",
        TIMEOUT,
        || async {
            let node = ns.api::<MediaNode>().get(&second).await.ok()?;
            (node.status?.load?.rooms == 2).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_conference_has_a_ready_node_before_it_starts() {
    let (env, ns, operator) = common::start("warmup").await;
    create(
        &ns,
        &pool(
            "scheduled",
            ports(),
            json!({"scaling": {"minNodes": 0, "maxNodes": 2, "bufferParticipants": 0,
                               "warmupSeconds": 60}}),
        ),
    )
    .await;
    let now = k8s_openapi::jiff::Timestamp::now;
    wait::until("the pool reconciled with no node", TIMEOUT, || async {
        let p = ns.api::<MediaPool>().get("scheduled").await.ok()?;
        let s = p.status?;
        (s.observed_generation.is_some() && s.desired_nodes == 0).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    // The pool has no node, and remembers that its nodes took 30 s to start (here they take
    // about one): capacity for a booking comes up that long before its warm-up.
    ns.api::<MediaPool>()
        .patch_status(
            "scheduled",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"nodeStartupSeconds": 30}})),
        )
        .await
        .unwrap();
    // Beyond the warm-up window and the start lead: no capacity yet.
    let later = now() + k8s_openapi::jiff::SignedDuration::from_hours(2);
    create(
        &ns,
        &conference(
            "quarterly",
            "scheduled",
            10,
            json!({"startTime": rfc3339(later)}),
        ),
    )
    .await;
    touch_and_wait_for_pool_reconcile(env, &ns, &operator, "scheduled").await;
    assert!(
        all_nodes(&ns).await.is_empty(),
        "no node for a conference 2 h away"
    );

    // Whole seconds: the startTime the operator reads is written to the second. The retro's
    // warm-up begins in 20 s, within the 30 s lead: its node starts now.
    let retro_start =
        k8s_openapi::jiff::Timestamp::from_second(now().as_second() + 60 + 20).unwrap();
    let warmup_begins = retro_start - k8s_openapi::jiff::SignedDuration::from_secs(60);
    create(
        &ns,
        &conference(
            "retro",
            "scheduled",
            10,
            json!({"startTime": rfc3339(retro_start)}),
        ),
    )
    .await;
    let node = wait::until("a node for the retro", TIMEOUT, || async {
        all_nodes(&ns).await.into_iter().next()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let created = node.metadata.creation_timestamp.clone().unwrap().0;
    assert!(
        created < warmup_begins,
        "the retro's node was created at {created}, not before its warm-up began at {warmup_begins}"
    );
    let node = node.name_any();
    // Once it ran, the pool's figure is its own measured start.
    let measured = wait::until("the node's measured start", TIMEOUT, || async {
        let n = ns.api::<MediaNode>().get(&node).await.ok()?;
        n.status?.startup_seconds
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    wait::until("the pool's figure from its node", TIMEOUT, || async {
        let p = ns.api::<MediaPool>().get("scheduled").await.ok()?;
        (p.status?.node_startup_seconds == Some(measured)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    let start = k8s_openapi::jiff::Timestamp::from_second(now().as_second() + 25).unwrap();
    create(
        &ns,
        &conference(
            "standup",
            "scheduled",
            10,
            json!({"startTime": rfc3339(start)}),
        ),
    )
    .await;
    let placed = wait::until("the standup placed", TIMEOUT, || async {
        let c = ns.api::<Conference>().get("standup").await.ok()?;
        let s = c.status?;
        s.media_node.clone().map(|n| (n, s.phase, now()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let (on, phase, placed_at) = placed;
    assert!(
        placed_at < start,
        "placed at {placed_at}, after the start at {start}"
    );
    assert_eq!(
        phase,
        Some(ConferencePhase::Scheduled),
        "before its start the standup is Scheduled"
    );
    assert!(
        ready_nodes(&ns).await.iter().any(|n| n.name_any() == on),
        "placed on a Ready node"
    );
    let active = wait::until("the standup Active at its start", TIMEOUT, || async {
        let c = ns.api::<Conference>().get("standup").await.ok()?;
        let s = c.status?;
        (s.phase == Some(ConferencePhase::Active)).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    assert!(now() >= start, "Active before its startTime");
    assert_eq!(active.media_node, Some(on));
    let quarterly = ns.api::<Conference>().get("quarterly").await.unwrap();
    assert!(
        quarterly.status.and_then(|s| s.media_node).is_none(),
        "the conference 2 h away is not placed yet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrunnable_spec_and_a_lost_secret_are_reported_and_recover_once_fixed() {
    let (env, ns, _operator) = common::start("badspec").await;
    create(
        &ns,
        &pool(
            "typo",
            ports(),
            json!({"mediaNode": {"image": Image::MediaNode.reference().replace("conclave/", "Conclave/")}}),
        ),
    )
    .await;
    let pools = ns.api::<MediaPool>();
    let reconciled = |want: bool, reason: &'static str| {
        let pools = pools.clone();
        move || {
            let pools = pools.clone();
            async move {
                let p = pools.get("typo").await.ok()?;
                let c = pool_condition(&p, labels::condition::RECONCILED)?;
                (c.status == if want { "True" } else { "False" } && c.reason == reason)
                    .then_some(c.message)
            }
        }
    };
    let message = wait::until(
        "Reconciled=False InvalidSpec",
        TIMEOUT,
        reconciled(false, "InvalidSpec"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    assert!(
        message.contains("spec.mediaNode.image"),
        "the message names the field: {message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        all_nodes(&ns).await.is_empty(),
        "no media node is created from a spec that cannot run"
    );

    pools
        .patch(
            "typo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mediaNode": {"image": Image::MediaNode.reference()}}})),
        )
        .await
        .unwrap();
    wait::until(
        "Reconciled=True once fixed",
        TIMEOUT,
        reconciled(true, "Applied"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    wait::until("a Ready media node once fixed", TIMEOUT, || async {
        (!ready_nodes(&ns).await.is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    // A person deletes the pool's keys: reported, not silently regenerated.
    let secret_name = labels::pool_secret_name("typo");
    let secrets = ns.api::<Secret>();
    let before = secrets.get(&secret_name).await.unwrap();
    secrets
        .delete(&secret_name, &DeleteParams::default())
        .await
        .unwrap();
    let message = wait::until(
        "Reconciled=False SecretMissing",
        TIMEOUT,
        reconciled(false, "SecretMissing"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    assert!(message.contains(&secret_name), "{message}");
    assert!(secrets.get_opt(&secret_name).await.unwrap().is_none());
    assert!(
        !ready_nodes(&ns).await.is_empty(),
        "running media nodes are not harmed"
    );

    pools
        .patch(
            "typo",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"conclave.dev/regenerate-keys": "true"}}}),
            ),
        )
        .await
        .unwrap();
    wait::until(
        "Reconciled=True with new keys",
        TIMEOUT,
        reconciled(true, "Applied"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));
    let after = secrets.get(&secret_name).await.unwrap();
    assert_ne!(after.data, before.data, "new keys were generated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_operator_rebuilds_its_state_without_duplicates_or_orphans() {
    let (env, ns, operator) = common::start("restart").await;
    create(
        &ns,
        &pool(
            "steady",
            ports(),
            json!({"scaling": {"minNodes": 2, "maxNodes": 3}}),
        ),
    )
    .await;
    wait_for_ready_nodes(env, &ns, 2).await;
    let before: Vec<&str> = vec!["one", "two", "three", "four"];
    for name in &before {
        create(&ns, &conference(name, "steady", 5, json!({}))).await;
    }
    let hosts_before = active_by_node(&ns, &before).await;
    let nodes_before: Vec<String> = all_nodes(&ns).await.iter().map(|n| n.name_any()).collect();

    drop(operator);
    // Work arrives while no operator runs.
    for name in ["five", "six"] {
        create(&ns, &conference(name, "steady", 5, json!({}))).await;
    }
    let _operator = common::start_operator(env, &ns);
    let all = ["one", "two", "three", "four", "five", "six"];
    let hosts_after = active_by_node(&ns, &all).await;

    // The earlier conferences stay where they were, never moved.
    for (node, names) in &hosts_before {
        for name in names {
            assert!(
                hosts_after[node].contains(name),
                "{name} left {node}: {hosts_after:?}"
            );
            let moves = ns
                .api::<Conference>()
                .get(name)
                .await
                .unwrap()
                .status
                .unwrap()
                .moves;
            assert_eq!(moves, 0, "{name} was moved");
        }
    }
    // 6 × 5 participants on 2 × 50 leaves the buffer of 10: still the same two nodes, each
    // with exactly one pod, and no media-node pod without its MediaNode.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let nodes_after: Vec<String> = all_nodes(&ns).await.iter().map(|n| n.name_any()).collect();
    assert_eq!(nodes_after, nodes_before, "no MediaNode added or lost");
    let pods = ns
        .api::<k8s_openapi::api::core::v1::Pod>()
        .list(&kube::api::ListParams::default().labels(&format!(
            "{}={}",
            labels::COMPONENT,
            labels::COMPONENT_MEDIA_NODE
        )))
        .await
        .unwrap();
    let mut pod_names: Vec<String> = pods.items.iter().map(|p| p.name_any()).collect();
    pod_names.sort();
    assert_eq!(pod_names, nodes_after, "one pod per MediaNode, no orphans");
}
