//! Placement never over-commits a media node: a burst of 100 conferences created at once
//! (the reservation ledger serialises placement, and the autoscaler adds the node the burst
//! needs beyond minNodes), and a placement whose answer the operator never got (it keeps the
//! room until the API server says whether the write landed).

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_crds::{Conference, ConferencePhase, MediaNode};
use conclave_testenv::{TestEnv, wait};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

mod common;
use common::api_proxy::ApiProxy;
use common::fixtures::{conference, create, pool, ports, rfc3339, wait_for_ready_nodes};
use common::{install_media_node_role, report, start_operator_at};
use serde_json::json;

const BURST: usize = 100;
const PER_CONFERENCE: u32 = 5;
const NODE_PARTICIPANTS: u32 = 200;
const NODE_ROOMS: u32 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_conferences_never_over_commits_a_node() {
    let (env, ns, _operator) = common::start("burst").await;
    let spec = json!({
        "nodeCapacity": {"participants": NODE_PARTICIPANTS, "rooms": NODE_ROOMS},
        "scaling": {"minNodes": 2, "maxNodes": 3, "bufferParticipants": 0}
    });
    create(&ns, &pool("default", ports(), spec)).await;

    // 100 × 5 = 500 participants: more than the two initial nodes carry (400).
    let api = ns.api::<Conference>();
    let creates = (0..BURST).map(|i| {
        let api = api.clone();
        async move {
            let c = conference(&format!("c{i:03}"), "default", PER_CONFERENCE, json!({}));
            api.create(&PostParams::default(), &c).await.unwrap();
        }
    });
    join_all(creates).await;

    let placed = wait::until(
        "all 100 conferences Active",
        Duration::from_secs(120),
        || async {
            let list = api.list(&ListParams::default()).await.ok()?.items;
            let active = list
                .iter()
                .filter(|c| {
                    c.status.as_ref().and_then(|s| s.phase) == Some(ConferencePhase::Active)
                })
                .count();
            (active == BURST).then_some(list)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(env, &ns)));

    let mut per_node: HashMap<String, (u32, u32)> = HashMap::new();
    for c in &placed {
        let node = c.status.as_ref().unwrap().media_node.clone().unwrap();
        let entry = per_node.entry(node).or_default();
        entry.0 += c.spec.max_participants;
        entry.1 += 1;
    }
    for (node, (participants, rooms)) in &per_node {
        assert!(
            *participants <= NODE_PARTICIPANTS,
            "{node} over-committed: {participants} participants"
        );
        assert!(*rooms <= NODE_ROOMS, "{node} over-committed: {rooms} rooms");
    }
    assert_eq!(
        per_node.values().map(|v| v.0).sum::<u32>(),
        BURST as u32 * PER_CONFERENCE
    );
    assert!(
        per_node.len() >= 3,
        "the burst needed a third node: {per_node:?}"
    );
    // The operator's own accounting agrees.
    let nodes = ns
        .api::<MediaNode>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    for n in nodes {
        let reserved = n.status.and_then(|s| s.reserved_participants).unwrap_or(0);
        assert!(
            reserved <= NODE_PARTICIPANTS,
            "node reports {reserved} reserved"
        );
    }
}

/// The operator places conference X; the write lands, but its answer is lost and the
/// operator's Conference watch lags for 12 s. The node has one room, which Y, due at the
/// same moment, also wants. The operator must not give X's room to Y before it knows
/// whether X's write landed: it asks the API server, finds X placed, and Y waits until X
/// is deleted. (Releasing the room on any failed write, as the operator once did, placed Y
/// beside X.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_whose_answer_was_lost_keeps_its_room() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("lost").await.unwrap();
    install_media_node_role(&ns).await;
    let proxy = ApiProxy::start(ns.client()).await;
    let kubeconfig = proxy.kubeconfig(env.artifacts());
    let _operator = start_operator_at(env, &ns, &kubeconfig, &[]);
    let spec = json!({
        "nodeCapacity": {"participants": 50, "rooms": 1},
        "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0, "warmupSeconds": 3}
    });
    create(&ns, &pool("default", ports(), spec)).await;
    let node = wait_for_ready_nodes(env, &ns, 1).await[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let both_placed = record_both_placed(&ns);

    proxy.lose_next_placement_answer(Duration::from_secs(12));
    let start = Timestamp::from_second(Timestamp::now().as_second() + 10).unwrap();
    let end = start + SignedDuration::from_mins(10);
    let booking = json!({"startTime": rfc3339(start), "endTime": rfc3339(end)});
    for name in ["a", "b"] {
        create(&ns, &conference(name, "default", 5, booking.clone())).await;
    }
    let fail = |what: String| panic!("{what}\n{}", report(env, &ns));
    let Some(x) = proxy.lost_answer(Duration::from_secs(30)).await else {
        fail("no placement passed the proxy within 30 s".into())
    };
    let y = if x == "a" { "b" } else { "a" };
    let api = ns.api::<Conference>();
    let on_node = |c: &Conference| c.status.as_ref()?.media_node.clone();
    let placed = api.get(&x).await.unwrap();
    assert_eq!(
        on_node(&placed).as_deref(),
        Some(node.as_str()),
        "the lost answer's write landed"
    );
    if !proxy.read_back(&x, Duration::from_secs(20)).await {
        fail(format!(
            "the operator never read {x} back after its answer was lost"
        ));
    }
    // Once its watch caught up, the operator starts X on the node it placed it on.
    wait::until(
        &format!("{x} Active on {node}"),
        Duration::from_secs(60),
        || async {
            let c = api.get(&x).await.ok()?;
            let active = c.status.as_ref()?.phase == Some(ConferencePhase::Active);
            (active && on_node(&c).as_deref() == Some(node.as_str())).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| fail(e.to_string()));
    let waiting = api.get(y).await.unwrap();
    assert_eq!(on_node(&waiting), None, "{y} took the room {x} holds");
    assert_eq!(*both_placed.lock().unwrap(), None);

    api.delete(&x, &DeleteParams::default()).await.unwrap();
    wait::until(
        &format!("{y} placed on {node} once {x} left"),
        Duration::from_secs(30),
        || async {
            (on_node(&api.get(y).await.ok()?).as_deref() == Some(node.as_str())).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| fail(e.to_string()));
    let seen = both_placed.lock().unwrap().clone();
    assert_eq!(seen, None, "two conferences held the node's one room");
}

/// Watches the namespace's conferences and records the first moment two of them were placed
/// at once (the node has one room).
fn record_both_placed(ns: &conclave_testenv::TestNamespace) -> Arc<Mutex<Option<String>>> {
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let events = watcher(ns.api::<Conference>(), watcher::Config::default()).default_backoff();
    tokio::spawn(async move {
        let mut placed: HashMap<String, String> = HashMap::new();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            // A failed watch call is retried (with backoff) and re-lists; it does not end
            // the record.
            let Ok(event) = event else { continue };
            match event {
                watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                    let name = c.metadata.name.clone().unwrap_or_default();
                    let status = c.status.unwrap_or_default();
                    let live = !matches!(
                        status.phase,
                        Some(ConferencePhase::Ended | ConferencePhase::Failed)
                    );
                    match status.media_node.filter(|_| live) {
                        Some(node) => placed.insert(name, node),
                        None => placed.remove(&name),
                    };
                }
                watcher::Event::Delete(c) => {
                    placed.remove(&c.metadata.name.unwrap_or_default());
                }
                // A re-list: its InitApply events bring back what is placed.
                watcher::Event::Init => placed.clear(),
                watcher::Event::InitDone => {}
            }
            if placed.len() > 1 {
                let mut first = record.lock().unwrap();
                first.get_or_insert_with(|| format!("placed at once: {placed:?}"));
            }
        }
    });
    seen
}
