//! A burst of 100 conferences created at once is placed without over-committing any media
//! node: the reservation ledger serialises placement, and the autoscaler adds the node the
//! burst needs beyond minNodes.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::collections::HashMap;
use std::time::Duration;

use conclave_crds::{Conference, ConferencePhase, MediaNode};
use conclave_testenv::wait;
use futures::future::join_all;
use kube::api::{ListParams, PostParams};

mod common;
use common::fixtures::{conference, create, pool, ports};
use common::report;
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
