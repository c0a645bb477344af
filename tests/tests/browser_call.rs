//! Calls in real browsers: headless Chromium with fake camera and microphone opens the media
//! node's call page from join links built out of the Conference status, on a pool the operator
//! runs. Each participant sees the others' video (inbound-rtp `framesDecoded` and
//! `bytesReceived` keep growing), chat arrives, a shared screen appears; the same call forced
//! through the pool's coturn (`iceTransportPolicy: relay`) flows while expired TURN credentials
//! are refused, and renews its credentials before they expire, moving onto a fresh relay
//! allocation; when the hosting node's pod is killed the browsers find the node the operator
//! chose and video resumes, and when that node is drained it sends them on itself; `kubectl
//! drain` of the hosting Kubernetes node waits (the pod's PodDisruptionBudget) until the call
//! moved, and each participant's media gap is reported; a pool of three rolls to a new
//! media-node image (first held up by maxNodes, as its UpToDate condition says, then node by
//! node) while the call goes on, with the gap reported. Refused or missing devices are
//! explained on the page. With `spec.signaling` the page comes over https and signaling over
//! wss from each node's own name under the pool's domain, with a certificate of a test CA that
//! Chromium trusts through its NSS store; a missing Secret is reported on the pool and no URL
//! is published until it exists, then every placed conference's URL answers; a call relayed
//! only over TURN TLS on port 443 (`relay=tls`) flows once the pool's Secret exists (before,
//! its TurnTLS condition names the missing Secret). Two pools pinned to one Kubernetes node, off
//! the host network, each carry a call, and each media node holds one UDP socket, idle or in
//! the call (`ss -uanp` in its pod); two media nodes of one pool share a Kubernetes node behind
//! NodePort Services, with no host port, each carrying a call; a media node behind a
//! LoadBalancer Service waits for its load balancer's address, then carries a call through it.
//! Browsers whose network drops all
//! UDP to the media node call over its one TCP port (ICE-TCP). Screenshots go to the test
//! artifacts.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

mod chromium;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chromium::Chromium;
use chromium::call::{all_connected, fail, open_all, screenshot, tile_until, video_flows};
use common::call::{active_named, conference_named, join_url, keys_of, link_to, now};
use common::fixtures::{create, drain, media_pods_on, pod_ready, pool, ports, ready_nodes};
use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase, MediaPool, labels};
use conclave_testenv::dns::DnsServer;
use conclave_testenv::images::Image;
use conclave_testenv::load_balancer::LoadBalancer;
use conclave_testenv::operator::Operator;
use conclave_testenv::{LocalNode, TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);
const CONFERENCE: &str = "standup";

/// One browser test's world: Chromium to itself (the tests run one at a time), the operator
/// on a fresh namespace, and the pool `web` of `min_nodes` small media nodes, with TURN when
/// `turn`.
async fn setup(
    prefix: &str,
    min_nodes: u32,
    turn: bool,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    &'static TestEnv,
    TestNamespace,
    Operator,
) {
    let one_at_a_time = chromium::exclusive().await;
    let (env, ns, operator) = common::start(prefix).await;
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": min_nodes, "maxNodes": 3, "bufferParticipants": 5},
        // Relays reach media nodes at their Nodes' own (private) addresses.
        "turn": {"enabled": turn, "minReplicas": 1, "allowedPeers": [env.nodes_range().unwrap()]}
    });
    create(&ns, &pool("web", ports(), spec)).await;
    (one_at_a_time, env, ns, operator)
}

/// Waits until the pool `web` counts at least two Ready media nodes.
async fn two_ready_nodes(env: &TestEnv, ns: &TestNamespace) {
    wait::until("two Ready media nodes", TIMEOUT, || async {
        let pool = ns.api::<MediaPool>().get("web").await.ok()?;
        (pool.status?.ready_nodes >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, ns)));
}

/// A conference of the pool `web`, placed and Active with join info.
async fn conference(env: &TestEnv, ns: &TestNamespace) -> Conference {
    conference_named(env, ns, "web", CONFERENCE, 8).await
}

/// The conference once Active with join info, on another node than `not_on` when given.
async fn active(env: &TestEnv, ns: &TestNamespace, not_on: Option<&str>) -> Conference {
    active_named(env, ns, CONFERENCE, not_on).await
}

fn host(c: &Conference) -> String {
    c.status.clone().unwrap().media_node.unwrap()
}

/// The pool's keys: (join-token key, TURN shared secret).
async fn keys(ns: &TestNamespace) -> (Vec<u8>, Vec<u8>) {
    keys_of(ns, "web").await
}

/// The join link an application would hand out: the node's page with the signaling URL and
/// a token, capturing small video (two cores run all the browsers).
fn link(signaling_url: &str, key: &[u8], identity: &str, extra: &str) -> String {
    link_to(CONFERENCE, signaling_url, key, identity, extra)
}

/// Opens the call page for each of `names` with a link to `signaling_url` (and `extra` query).
async fn open_each(
    browsers: &mut Chromium,
    names: &[&str],
    signaling_url: &str,
    key: &[u8],
    extra: &str,
) {
    let links: Vec<(&str, String)> = names
        .iter()
        .map(|n| (*n, link(signaling_url, key, n, extra)))
        .collect();
    open_all(browsers, &links).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_browsers_see_each_other_chat_and_share_a_screen() {
    let (_one_at_a_time, env, ns, _operator) = setup("browser-call", 1, false).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let (key, _) = keys(&ns).await;
    let names = ["alice", "bob", "carol"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-call")).await;
    open_each(&mut browsers, &names, &url, &key, "").await;
    all_connected(env, &ns, &mut browsers, &names).await;

    // Everyone sees the two others' cameras.
    for n in names {
        let others: Vec<(&str, &str)> = names
            .iter()
            .filter(|o| **o != n)
            .map(|o| (*o, "camera"))
            .collect();
        match video_flows(&mut browsers, n, &others).await {
            Ok(figures) => println!("{n} receives {figures:?}"),
            Err(e) => fail(env, &ns, &mut browsers, &names, &e).await,
        }
    }

    // The page passes axe-core's checks, and its controls keep their size at 1100×700.
    let axe = browsers.send(json!({"op": "axe", "name": "alice"})).await;
    println!("axe-core on alice's page: {}", axe["violations"]);
    assert_eq!(
        axe["violations"],
        json!([]),
        "accessibility violations on alice's page"
    );
    let mic = browsers
        .send(json!({"op": "box", "name": "alice", "selector": "#mic"}))
        .await;
    let height = mic["box"]["height"].as_f64().unwrap();
    assert!(height < 60.0, "the mute button is {height} px high: {mic}");
    // On loopback, alice's page grades both others' connections good.
    for other in ["bob", "carol"] {
        let what = format!("{other}'s connection as good");
        if let Err(e) = tile_until(&mut browsers, "alice", other, &what, |t| {
            t["quality"] == "good"
        })
        .await
        {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
    }

    // Chat over the data channel reaches the others, not the sender's own log.
    browsers
        .send(json!({"op": "chat", "name": "alice", "text": "hello from alice"}))
        .await;
    browsers
        .send(json!({"op": "chat", "name": "carol", "text": "carol here"}))
        .await;
    let mut delivered = false;
    for _ in 0..40 {
        let bob = chat_log(&mut browsers, "bob").await;
        let alice = chat_log(&mut browsers, "alice").await;
        if bob.contains(&("alice".into(), "hello from alice".into()))
            && bob.contains(&("carol".into(), "carol here".into()))
            && alice == vec![("carol".to_owned(), "carol here".to_owned())]
        {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !delivered {
        let e = format!(
            "chat not delivered: bob has {:?}, alice has {:?}",
            chat_log(&mut browsers, "bob").await,
            chat_log(&mut browsers, "alice").await
        );
        fail(env, &ns, &mut browsers, &names, &e).await;
    }

    // The fake microphones beep: the node names an active speaker and the page frames it.
    let mut speaking = Value::Null;
    for _ in 0..60 {
        let tiles = browsers.send(json!({"op": "tiles", "name": "alice"})).await;
        if let Some(t) = tiles["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["speaking"] == true)
        {
            speaking = t.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if speaking.is_null() {
        fail(
            env,
            &ns,
            &mut browsers,
            &names,
            "alice never saw an active speaker",
        )
        .await;
    }
    println!("alice sees {} speaking", speaking["identity"]);

    // Bob mutes and unmutes his microphone, with the button and then with the M key, and the
    // button says it is pressed; carol turns her camera off and on again.
    let steps = [
        (
            json!({"op": "click", "name": "bob", "selector": "#mic"}),
            true,
        ),
        (
            json!({"op": "click", "name": "bob", "selector": "#mic"}),
            false,
        ),
        (json!({"op": "key", "name": "bob", "key": "m"}), true),
        (json!({"op": "key", "name": "bob", "key": "m"}), false),
    ];
    for (step, muted) in steps {
        browsers.send(step).await;
        let what = if muted {
            "bob shown muted"
        } else {
            "bob shown unmuted"
        };
        if let Err(e) =
            tile_until(&mut browsers, "alice", "bob", what, |t| t["muted"] == muted).await
        {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
        let pressed = browsers
            .send(json!({"op": "attribute", "name": "bob", "selector": "#mic", "attribute": "aria-pressed"}))
            .await;
        assert_eq!(
            pressed["value"],
            json!(muted.to_string()),
            "bob's mute button"
        );
        // His fake microphone beeps: muted, he is told so; unmuted, the hint goes.
        if let Err(e) = hint_until(&mut browsers, "bob", muted).await {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
    }
    browsers
        .send(json!({"op": "click", "name": "carol", "selector": "#camera"}))
        .await;
    if let Err(e) = tile_until(&mut browsers, "alice", "carol", "carol's camera off", |t| {
        t["video"] == false
    })
    .await
    {
        fail(env, &ns, &mut browsers, &names, &e).await;
    }
    browsers
        .send(json!({"op": "click", "name": "carol", "selector": "#camera"}))
        .await;
    if let Err(e) = video_flows(&mut browsers, "alice", &[("carol", "camera")]).await {
        fail(env, &ns, &mut browsers, &names, &e).await;
    }

    // Alice shares her screen: bob and carol get a screen tile with moving video.
    browsers
        .send(json!({"op": "shareScreen", "name": "alice"}))
        .await;
    for n in ["bob", "carol"] {
        if let Err(e) = video_flows(
            &mut browsers,
            n,
            &[("alice", "screen"), ("alice", "camera")],
        )
        .await
        {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
        let tiles = browsers.send(json!({"op": "tiles", "name": n})).await;
        let screen = tiles["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["identity"] == "alice" && t["source"] == "screen")
            .cloned();
        assert!(
            screen
                .as_ref()
                .is_some_and(|t| t["width"].as_u64() > Some(0)),
            "{n} shows no playing screen tile of alice: {tiles}"
        );
    }
    for n in names {
        screenshot(env, &mut browsers, n, "call").await;
    }

    // Alice stops sharing: the others' screen tiles of her go.
    browsers
        .send(json!({"op": "click", "name": "alice", "selector": "#screen"}))
        .await;
    for n in ["bob", "carol"] {
        let mut gone = false;
        for _ in 0..40 {
            let tiles = browsers.send(json!({"op": "tiles", "name": n})).await;
            gone = !tiles["tiles"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["identity"] == "alice" && t["source"] == "screen");
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !gone {
            let e = format!("{n} still shows alice's screen after she stopped sharing");
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
    }
    // Sharing again shows again: a new track, whose tile plays (the stopped one's inbound
    // stream stays, idle).
    browsers
        .send(json!({"op": "shareScreen", "name": "alice"}))
        .await;
    let mut shown = Value::Null;
    for _ in 0..80 {
        let tiles = browsers.send(json!({"op": "tiles", "name": "bob"})).await;
        shown = tiles["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["identity"] == "alice" && t["source"] == "screen")
            .cloned()
            .unwrap_or(Value::Null);
        if shown["width"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if shown["width"].as_u64() <= Some(0) {
        let e =
            format!("bob shows no playing screen tile of alice after she shared again: {shown}");
        fail(env, &ns, &mut browsers, &names, &e).await;
    }
    browsers.close().await;
}

/// Waits until `name`'s "you are muted" hint is shown (or hidden when not `shown`).
async fn hint_until(browsers: &mut Chromium, name: &str, shown: bool) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let hidden = browsers
            .send(json!({"op": "attribute", "name": name, "selector": "#muted-hint", "attribute": "hidden"}))
            .await;
        if hidden["value"].is_null() == shown {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{name}'s muted hint never became shown={shown}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn chat_log(browsers: &mut Chromium, name: &str) -> Vec<(String, String)> {
    let log = browsers.send(json!({"op": "chatLog", "name": name})).await;
    log["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["identity"].as_str().unwrap_or_default().to_owned(),
                m["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The pool's TURN URLs once its coturn pod is Ready.
async fn turn_ready(env: &TestEnv, ns: &TestNamespace) -> Vec<String> {
    wait::until("TURN relay Ready with URLs", TIMEOUT, || async {
        let pool = ns.api::<MediaPool>().get("web").await.ok()?;
        let urls = pool.status?.turn?.urls;
        let pods = ns
            .api::<Pod>()
            .list(&kube::api::ListParams::default().labels(&format!(
                "{}={}",
                labels::COMPONENT,
                labels::COMPONENT_TURN
            )))
            .await
            .ok()?;
        let ready = pods.items.iter().any(pod_ready);
        (ready && !urls.is_empty()).then_some(urls)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, ns)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_forced_through_turn_flows_and_expired_credentials_are_refused() {
    let (_one_at_a_time, env, ns, _operator) = setup("browser-turn", 1, true).await;
    let turn_urls = turn_ready(env, &ns).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let (key, turn_secret) = keys(&ns).await;
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-turn")).await;
    open_each(&mut browsers, &names, &url, &key, "&relay=1").await;
    all_connected(env, &ns, &mut browsers, &names).await;
    for (n, other) in [("alice", "bob"), ("bob", "alice")] {
        if let Err(e) = video_flows(&mut browsers, n, &[(other, "camera")]).await {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
        let path = browsers.send(json!({"op": "mediaPath", "name": n})).await;
        assert_eq!(
            path["path"]["local"], "relay",
            "{n}'s media does not go through the TURN relay: {path}"
        );
        println!("{n} media path {}", path["path"]);
    }
    screenshot(env, &mut browsers, "alice", "turn").await;

    // coturn itself: fresh credentials of the pool's secret get a relay candidate, expired
    // ones (same secret, expiry an hour ago) get none.
    let probe = |c: conclave_crds::turn::TurnCredential| {
        json!({"op": "turnProbe", "name": "alice",
               "iceServers": [{"urls": turn_urls.clone(), "username": c.username, "credential": c.credential}]})
    };
    let fresh = browsers
        .send(probe(conclave_crds::turn::mint(
            &turn_secret,
            "probe",
            now(),
            600,
        )))
        .await;
    assert!(
        fresh["relay"].as_u64() > Some(0),
        "valid TURN credentials got no relay candidate: {fresh}"
    );
    let expired = browsers
        .send(probe(conclave_crds::turn::mint(
            &turn_secret,
            "probe",
            now() - 7200,
            3600,
        )))
        .await;
    assert_eq!(
        expired["relay"].as_u64(),
        Some(0),
        "expired TURN credentials were accepted: {expired}"
    );
    assert!(
        expired["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap_or_default().starts_with("401")),
        "coturn did not answer 401 to expired credentials: {expired}"
    );
    println!("TURN probe: fresh {fresh}, expired {expired}");
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_call_renews_its_turn_credentials_and_moves_to_a_fresh_allocation() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("browser-turn-renewal").await;
    // Credentials of 60 s, the shortest: the node hands out fresh ones after 45 s.
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": 1, "maxNodes": 3, "bufferParticipants": 5},
        "turn": {"enabled": true, "minReplicas": 1, "allowedPeers": [env.nodes_range().unwrap()],
                 "credentialTtlSeconds": 60}
    });
    create(&ns, &pool("web", ports(), spec)).await;
    turn_ready(env, &ns).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let (key, _) = keys(&ns).await;
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-turn-renewal")).await;
    open_each(&mut browsers, &names, &url, &key, "&relay=1").await;
    call_flows_through(env, &ns, &mut browsers, &names, &url, "relayed").await;
    let mut first = BTreeMap::new();
    for n in names {
        let path = browsers.send(json!({"op": "mediaPath", "name": n})).await;
        assert_eq!(path["path"]["local"], "relay", "{path}");
        first.insert(n, path["path"]["localAddress"].clone());
    }
    let started = tokio::time::Instant::now();
    for n in names {
        let deadline = started + Duration::from_secs(90);
        loop {
            let state = browsers.send(json!({"op": "state", "name": n})).await;
            let path = browsers.send(json!({"op": "mediaPath", "name": n})).await;
            let renewed = state["credentialRenewals"].as_u64() >= Some(1);
            let moved = path["path"]["local"] == "relay"
                && path["path"]["localAddress"] != first[n]
                && !path["path"]["localAddress"].is_null();
            if renewed && moved {
                println!(
                    "{n} got fresh credentials and moved from relay {} to {} after {:?}",
                    first[n],
                    path["path"]["localAddress"],
                    started.elapsed()
                );
                break;
            }
            if tokio::time::Instant::now() > deadline {
                let e = format!(
                    "{n} did not renew and move to a fresh relay allocation: {state} {path}"
                );
                fail(env, &ns, &mut browsers, &names, &e).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Renewed 45 s after joining: 20 s later the first credentials have expired, and media
    // still flows through the relay.
    tokio::time::sleep(Duration::from_secs(20)).await;
    call_flows_through(env, &ns, &mut browsers, &names, &url, "after renewal").await;
    browsers.close().await;
}

/// Waits until `name` is connected through `signaling_url`.
async fn connected_to(
    browsers: &mut Chromium,
    name: &str,
    signaling_url: &str,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        last = browsers.send(json!({"op": "state", "name": name})).await;
        if last["state"] == "connected" && last["signalingUrl"] == signaling_url {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("{name} not connected to {signaling_url}: {last}"))
}

/// Every one of `names` is connected through `signaling_url` and receives every other's
/// camera; fails the test otherwise. Prints what each receives, `when`.
async fn call_flows_through(
    env: &TestEnv,
    ns: &TestNamespace,
    browsers: &mut Chromium,
    names: &[&str],
    signaling_url: &str,
    when: &str,
) {
    for n in names {
        if let Err(e) = connected_to(browsers, n, signaling_url).await {
            fail(env, ns, browsers, names, &e).await;
        }
    }
    for n in names {
        let cameras: Vec<(&str, &str)> = names
            .iter()
            .filter(|other| *other != n)
            .map(|other| (*other, "camera"))
            .collect();
        match video_flows(browsers, n, &cameras).await {
            Ok(figures) => println!("{when} {n} receives {figures:?}"),
            Err(e) => fail(env, ns, browsers, names, &e).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_follow_their_conference_when_its_node_is_killed_or_drained() {
    let (_one_at_a_time, env, ns, _operator) = setup("browser-failover", 2, false).await;
    // Both nodes Ready first, so the clients learn the other one (`fallbackUrls`) at join.
    two_ready_nodes(env, &ns).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let old_host = host(&conf);
    let (key, _) = keys(&ns).await;
    // Bob's link names the other node: it redirects him (`reconnect`) to the hosting one.
    let other_url = ns
        .api::<MediaNode>()
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|n| n.name_any() != old_host)
        .find_map(|n| n.status?.addresses?.signaling_url)
        .unwrap();
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-failover")).await;
    let links = [
        ("alice", link(&url, &key, "alice", "")),
        ("bob", link(&other_url, &key, "bob", "")),
    ];
    open_all(&mut browsers, &links).await;
    call_flows_through(env, &ns, &mut browsers, &names, &url, "at first").await;

    // Kill the hosting node at once: it cannot tell its clients anything.
    ns.api::<Pod>()
        .delete(&old_host, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let moved = active(env, &ns, Some(&old_host)).await;
    let new_url = join_url(&moved);
    assert_ne!(new_url, url);
    println!(
        "conference moved from {old_host} to {} ({new_url})",
        host(&moved)
    );
    call_flows_through(env, &ns, &mut browsers, &names, &new_url, "after failover").await;
    for n in names {
        screenshot(env, &mut browsers, n, "failover").await;
    }

    // Then drain the node now hosting it once a replacement is Ready: that node is alive, so
    // it tells its clients where the conference went (`reconnect`).
    let second_host = host(&moved);
    let replacement = wait::until("a replacement media node Ready", TIMEOUT, || async {
        ready_nodes(&ns)
            .await
            .into_iter()
            .find(|n| n.name_any() != second_host)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    drain(&ns, &second_host).await;
    let evacuated = active(env, &ns, Some(&second_host)).await;
    assert_eq!(host(&evacuated), replacement.name_any());
    let third_url = join_url(&evacuated);
    println!(
        "drained {second_host}: conference evacuated to {} ({third_url})",
        host(&evacuated)
    );
    call_flows_through(
        env,
        &ns,
        &mut browsers,
        &names,
        &third_url,
        "after evacuation",
    )
    .await;
    screenshot(env, &mut browsers, "alice", "evacuated").await;
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_or_missing_devices_are_explained_and_the_call_still_works() {
    let (_one_at_a_time, env, ns, _operator) = setup("browser-devices", 1, false).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let (key, _) = keys(&ns).await;
    let names = ["alice", "dave", "erin"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-devices")).await;
    for (name, devices) in [("alice", "fake"), ("dave", "denied"), ("erin", "none")] {
        browsers
            .send(json!({"op": "open", "name": name, "devices": devices,
                         "link": link(&url, &key, name, "")}))
            .await;
    }
    all_connected(env, &ns, &mut browsers, &names).await;
    for (n, code, words) in [
        (
            "dave",
            "denied",
            "Access to the camera and microphone was denied",
        ),
        ("erin", "missing", "No camera or microphone was found"),
    ] {
        let state = browsers.send(json!({"op": "state", "name": n})).await;
        let problems = state["deviceProblems"].as_array().unwrap();
        assert_eq!(
            problems.len(),
            2,
            "{n}: microphone and camera both fail: {state}"
        );
        assert!(
            problems.iter().all(|p| p["code"] == code),
            "{n}: expected {code}: {state}"
        );
        let notice = state["notice"].as_str().unwrap();
        assert!(notice.contains(words), "{n} is not told why: {notice:?}");
        println!("{n} sees: {notice}");
        screenshot(env, &mut browsers, n, "devices").await;
        // Without devices one still watches: alice's camera plays.
        if let Err(e) = video_flows(&mut browsers, n, &[("alice", "camera")]).await {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
    }
    browsers.close().await;
}

/// Uncordons a Kubernetes node when dropped, so that a failed test leaves its cluster's nodes
/// schedulable for the next.
struct Uncordon(conclave_testenv::kubectl::Kubectl, String);

impl Drop for Uncordon {
    fn drop(&mut self) {
        if let Err(e) = self.0.run_blocking(&["uncordon", &self.1]) {
            eprintln!("uncordon {}: {e}", self.1);
        }
    }
}

/// Each participant's longest time without a newly decoded frame from each other one since
/// `gapWatch`, milliseconds: (receiver, sender, gap).
async fn media_gaps(browsers: &mut Chromium, names: &[&str]) -> Vec<(String, String, u64)> {
    let mut gaps = Vec::new();
    for n in names {
        let report = browsers.send(json!({"op": "gapReport", "name": n})).await;
        for (sender, g) in report["gaps"].as_object().cloned().unwrap_or_default() {
            gaps.push((
                (*n).to_owned(),
                sender,
                g["longestMs"].as_u64().unwrap_or(u64::MAX),
            ));
        }
    }
    gaps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_of_the_hosting_node_waits_for_the_call_to_move() {
    let (_one_at_a_time, env, ns, _operator) = setup("browser-kubectl-drain", 2, false).await;
    two_ready_nodes(env, &ns).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let old_host = host(&conf);
    let kube_node = ns
        .api::<MediaNode>()
        .get(&old_host)
        .await
        .unwrap()
        .status
        .and_then(|s| s.node_name)
        .unwrap();
    let (key, _) = keys(&ns).await;
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-kubectl-drain")).await;
    open_each(&mut browsers, &names, &url, &key, "").await;
    call_flows_through(env, &ns, &mut browsers, &names, &url, "before the drain").await;

    // The hosting pod's budget protects it: no eviction is allowed.
    let budget = wait::until(
        "the hosting pod's PodDisruptionBudget counted it",
        TIMEOUT,
        || async {
            let pdb = ns.api::<PodDisruptionBudget>().get(&old_host).await.ok()?;
            let s = pdb.status?;
            (s.current_healthy == Some(1)).then_some(s)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    assert_eq!(budget.disruptions_allowed, Some(0), "{budget:?}");

    for n in names {
        browsers.send(json!({"op": "gapWatch", "name": n})).await;
    }
    let kubectl = env.kubectl().unwrap();
    let _uncordon = Uncordon(kubectl.clone(), kube_node.clone());
    let started = tokio::time::Instant::now();
    let drained = kubectl
        .run(&[
            "drain",
            &kube_node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=180s",
        ])
        .await;
    let took = started.elapsed();
    let drained = drained.unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    println!("kubectl drain {kube_node} finished in {took:?}:\n{drained}");
    // The drain waited for the media node: its pod was evicted only after it emptied (or the
    // operator deleted it), and the conference now runs elsewhere.
    let moved = active(env, &ns, Some(&old_host)).await;
    let new_url = join_url(&moved);
    assert!(
        ns.api::<Pod>().get_opt(&old_host).await.unwrap().is_none(),
        "the drained media node's pod is gone"
    );
    println!("conference moved from {old_host} to {}", host(&moved));
    call_flows_through(env, &ns, &mut browsers, &names, &new_url, "after the drain").await;
    let gaps = media_gaps(&mut browsers, &names).await;
    println!("media gaps during kubectl drain (receiver, sender, ms): {gaps:?}");
    assert_eq!(gaps.len(), 2, "each participant timed the other: {gaps:?}");
    for (receiver, sender, gap) in &gaps {
        assert!(
            *gap <= 5000,
            "{receiver} saw no new frame from {sender} for {gap} ms"
        );
    }
    screenshot(env, &mut browsers, "alice", "kubectl-drain").await;
    browsers.close().await;
}

/// The pool `web`'s UpToDate condition once `matches` accepts it.
async fn up_to_date_condition(
    env: &TestEnv,
    ns: &TestNamespace,
    what: &str,
    timeout: Duration,
    matches: impl Fn(&Condition) -> bool,
) -> (MediaPool, Condition) {
    wait::until(what, timeout, || async {
        let pool = ns.api::<MediaPool>().get("web").await.ok()?;
        let condition = pool
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == labels::condition::UP_TO_DATE)?
            .clone();
        matches(&condition).then_some((pool, condition))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, ns)))
}

async fn patch_pool(ns: &TestNamespace, spec: Value) {
    ns.api::<MediaPool>()
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_three_rolls_to_a_new_image_and_the_call_goes_on() {
    let (_one_at_a_time, env, ns, _operator) = setup("browser-rollout", 3, false).await;
    wait::until("three Ready media nodes", TIMEOUT, || async {
        let pool = ns.api::<MediaPool>().get("web").await.ok()?;
        (pool.status?.ready_nodes == 3).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let old_host = host(&conf);
    let (key, _) = keys(&ns).await;
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-rollout")).await;
    open_each(&mut browsers, &names, &url, &key, "").await;
    call_flows_through(env, &ns, &mut browsers, &names, &url, "before the rollout").await;
    for n in names {
        browsers.send(json!({"op": "gapWatch", "name": n})).await;
    }

    // Three Kubernetes nodes, hostNetwork, maxNodes 3: the default surge of one new node
    // first cannot happen, and the pool says which field to change.
    let next = Image::MediaNode.next_reference();
    patch_pool(&ns, json!({"mediaNode": {"image": next}})).await;
    let (_, held) =
        up_to_date_condition(env, &ns, "the rollout held up by maxNodes", TIMEOUT, |c| {
            c.reason == "RolloutBlocked"
        })
        .await;
    println!("held: {}", held.message);
    assert!(
        held.message.contains("spec.scaling.maxNodes")
            && held.message.contains("spec.rollout.maxUnavailable"),
        "{held:?}"
    );

    // Replace in place: drain one node (its conferences moved first), then its replacement.
    let started = tokio::time::Instant::now();
    patch_pool(
        &ns,
        json!({"rollout": {"maxSurge": 0, "maxUnavailable": 1}}),
    )
    .await;
    let (pool, _) = up_to_date_condition(
        env,
        &ns,
        "every media node on the new image",
        Duration::from_secs(300),
        |c| c.status == "True",
    )
    .await;
    let status = pool.status.unwrap();
    assert_eq!(status.updated_nodes, 3, "{status:?}");
    // The last old pod goes once its node emptied; then three Ready pods of the new image.
    wait::until(
        "three Ready media-node pods, all of the new image",
        TIMEOUT,
        || async { (media_pods_on(&ns, &next).await == Some((3, 3))).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    let took = started.elapsed();
    let moved = active(env, &ns, Some(&old_host)).await;
    println!(
        "rolled 3 media nodes to {next} in {took:?}; conference moved from {old_host} to {}",
        host(&moved)
    );
    let new_url = join_url(&moved);
    call_flows_through(
        env,
        &ns,
        &mut browsers,
        &names,
        &new_url,
        "after the rollout",
    )
    .await;
    let gaps = media_gaps(&mut browsers, &names).await;
    println!("media gaps during the rollout (receiver, sender, ms): {gaps:?}");
    assert_eq!(gaps.len(), 2, "each participant timed the other: {gaps:?}");
    for (receiver, sender, gap) in &gaps {
        assert!(
            *gap <= 5000,
            "{receiver} saw no new frame from {sender} for {gap} ms"
        );
    }
    let c = ns.api::<Conference>().get(CONFERENCE).await.unwrap();
    assert_eq!(
        c.status.and_then(|s| s.phase),
        Some(ConferencePhase::Active),
        "the conference lives on"
    );
    screenshot(env, &mut browsers, "alice", "rollout").await;
    browsers.close().await;
}

/// Domain of the TLS tests' pools; names under it resolve only through Chromium's rules.
const TLS_DOMAIN: &str = "media.test";

/// A pool `web` of `min_nodes` nodes serving TLS signaling under [`TLS_DOMAIN`] with Secret
/// `media-tls`; the Secret is created from `ca` when given.
async fn setup_tls(
    prefix: &str,
    min_nodes: u32,
    ca: Option<&common::tls::TestCa>,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    &'static TestEnv,
    TestNamespace,
    Operator,
) {
    let one_at_a_time = chromium::exclusive().await;
    let (env, ns, operator) = common::start(prefix).await;
    if let Some(ca) = ca {
        create(&ns, &ca.secret("media-tls")).await;
    }
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": min_nodes, "maxNodes": 3, "bufferParticipants": 5},
        "signaling": {"domain": TLS_DOMAIN, "tlsSecretName": "media-tls"}
    });
    create(&ns, &pool("web", ports(), spec)).await;
    (one_at_a_time, env, ns, operator)
}

/// Public address of each media node of the pool that published one, by node name.
async fn node_addresses(ns: &TestNamespace) -> BTreeMap<String, String> {
    ns.api::<MediaNode>()
        .list(&kube::api::ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| Some((n.name_any(), n.status?.addresses?.public?)))
        .collect()
}

/// Chromium's rules mapping each media node's name under the domain to its address.
fn host_rules(addresses: &BTreeMap<String, String>) -> String {
    addresses
        .iter()
        .map(|(node, ip)| format!("MAP {node}.{TLS_DOMAIN} {ip}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The socket address `signaling_url` (`wss://<node>.<domain>:<port>/rtc`) names, through
/// the node's public address.
fn wss_target(signaling_url: &str, addresses: &BTreeMap<String, String>) -> std::net::SocketAddr {
    let authority = signaling_url
        .strip_prefix("wss://")
        .and_then(|r| r.split('/').next())
        .unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    let node = host.strip_suffix(&format!(".{TLS_DOMAIN}")).unwrap();
    format!("{}:{port}", addresses[node]).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_https_and_wss_with_the_pools_certificate() {
    let ca = common::tls::TestCa::issue(TLS_DOMAIN);
    let (_one_at_a_time, env, ns, _operator) = setup_tls("browser-tls", 1, Some(&ca)).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let node = host(&conf);
    assert!(
        url.starts_with(&format!("wss://{node}.{TLS_DOMAIN}:")) && url.ends_with("/rtc"),
        "signaling URL under the pool's domain: {url}"
    );
    let addresses = node_addresses(&ns).await;
    let (key, _) = keys(&ns).await;
    let dir = env.artifacts().join("browser-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let home = ca.chromium_home(&dir);
    let tls = json!({"home": home, "hostResolverRules": host_rules(&addresses)});
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&dir).await;
    let started = tokio::time::Instant::now();
    for n in names {
        let link = link(&url, &key, n, "");
        assert!(
            link.starts_with(&format!("https://{node}.{TLS_DOMAIN}:")),
            "{link}"
        );
        browsers
            .send(json!({"op": "open", "name": n, "link": link, "tls": tls}))
            .await;
    }
    all_connected(env, &ns, &mut browsers, &names).await;
    let to_connect = started.elapsed();
    for n in names {
        let state = browsers.send(json!({"op": "state", "name": n})).await;
        assert_eq!(
            state["secure"], true,
            "{n}'s page is a secure context: {state}"
        );
        assert!(
            state["origin"]
                .as_str()
                .unwrap()
                .starts_with(&format!("https://{node}.{TLS_DOMAIN}")),
            "{state}"
        );
        assert!(
            state["deviceProblems"].as_array().unwrap().is_empty(),
            "{n} got camera and microphone: {state}"
        );
    }
    println!("two browsers opened the https page and connected over wss in {to_connect:?}");
    call_flows_through(env, &ns, &mut browsers, &names, &url, "over TLS").await;
    for n in names {
        screenshot(env, &mut browsers, n, "tls").await;
    }
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_wss_urls_answer_and_a_missing_secret_is_reported_first() {
    let ca = common::tls::TestCa::issue(TLS_DOMAIN);
    let (_one_at_a_time, env, ns, _operator) = setup_tls("tls-urls", 2, None).await;
    // Without the Secret: the pool says what is wrong and how to fix it, and adds no node.
    let condition = wait::until("the pool's SignalingTLS condition", TIMEOUT, || async {
        let pool = ns.api::<MediaPool>().get("web").await.ok()?;
        pool.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == labels::condition::SIGNALING_TLS)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    assert_eq!(condition.status, "False", "{condition:?}");
    assert!(
        condition.message.contains("spec.signaling.tlsSecretName")
            && condition.message.contains("no such Secret")
            && condition.message.contains("*.media.test"),
        "{}",
        condition.message
    );
    println!("without the Secret: {}", condition.message);
    let nodes = ns
        .api::<MediaNode>()
        .list(&kube::api::ListParams::default())
        .await
        .unwrap();
    assert!(
        nodes.items.is_empty(),
        "no media node before the Secret exists"
    );

    // With it: nodes start, and each placed conference's published URL answers over TLS.
    let started = tokio::time::Instant::now();
    create(&ns, &ca.secret("media-tls")).await;
    two_ready_nodes(env, &ns).await;
    println!(
        "two nodes Ready {:?} after the Secret was created",
        started.elapsed()
    );
    for name in ["standup", "retro", "planning"] {
        let conf: Conference = serde_json::from_value(json!({
            "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
            "metadata": {"name": name}, "spec": {"pool": "web", "maxParticipants": 4}
        }))
        .unwrap();
        create(&ns, &conf).await;
    }
    let placed = wait::until(
        "three conferences Active with join info",
        TIMEOUT,
        || async {
            let all = ns
                .api::<Conference>()
                .list(&kube::api::ListParams::default())
                .await
                .ok()?;
            let urls: Vec<(String, String)> = all
                .items
                .iter()
                .filter_map(|c| Some((c.name_any(), c.status.clone()?.join?.signaling_url)))
                .collect();
            (urls.len() == 3).then_some(urls)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    let addresses = node_addresses(&ns).await;
    for (conference, url) in &placed {
        assert!(url.starts_with("wss://"), "{conference}: {url}");
        let target = wss_target(url, &addresses);
        let opened = tokio::time::Instant::now();
        if let Err(e) = ca.open_wss(url, target).await {
            panic!("{conference}: {e}\n{}", common::report(env, &ns));
        }
        println!(
            "{conference}: {url} answered at {target} in {:?}",
            opened.elapsed()
        );
        // Another CA's client refuses the node's certificate.
        let stranger = common::tls::TestCa::issue(TLS_DOMAIN);
        assert!(stranger.open_wss(url, target).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_relayed_only_over_turn_tls_on_port_443() {
    let ca = common::tls::TestCa::issue(TLS_DOMAIN);
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("browser-turn-tls").await;
    let relay_host = format!("turn.{TLS_DOMAIN}");
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": 1, "maxNodes": 3, "bufferParticipants": 5},
        "signaling": {"domain": TLS_DOMAIN, "tlsSecretName": "media-tls"},
        // The wildcard certificate covers the relays' host too. Port 443: coturn binds it as
        // root with only that capability, then drops to its user.
        "turn": {"enabled": true, "minReplicas": 1, "allowedPeers": [env.nodes_range().unwrap()],
                 "tls": {"host": relay_host, "port": 443, "secretName": "media-tls"}}
    });
    create(&ns, &pool("web", ports(), spec)).await;
    // No Secret yet: the pool says so, naming the field.
    let refused = wait::until("the TurnTLS condition False", TIMEOUT, || async {
        let pool = ns.api::<MediaPool>().get("web").await.ok()?;
        pool.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == labels::condition::TURN_TLS && c.status == "False")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    assert!(
        refused
            .message
            .starts_with("spec.turn.tls.secretName \"media-tls\": no such Secret"),
        "{refused:?}"
    );
    create(&ns, &ca.secret("media-tls")).await;
    let turns = format!("turns:{relay_host}:443?transport=tcp");
    // Turning TLS on replaced the relay: wait for the one serving it alone.
    let urls = wait::until("one relay, serving TLS", TIMEOUT, || async {
        let urls = turn_ready(env, &ns).await;
        let relays = urls.iter().filter(|u| u.starts_with("stun:")).count();
        (urls.contains(&turns) && relays == 1).then_some(urls)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    let relay_ip = urls
        .iter()
        .find_map(|u| u.strip_prefix("stun:")?.split(':').next())
        .unwrap()
        .to_owned();
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let mut rules = host_rules(&node_addresses(&ns).await);
    rules.push_str(&format!(",MAP {relay_host} {relay_ip}"));
    let (key, _) = keys(&ns).await;
    let dir = env.artifacts().join("browser-turn-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let tls = json!({"home": ca.chromium_home(&dir), "hostResolverRules": rules});
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&dir).await;
    for n in names {
        let link = link(&url, &key, n, "&relay=tls");
        browsers
            .send(json!({"op": "open", "name": n, "link": link, "tls": tls}))
            .await;
    }
    call_flows_through(env, &ns, &mut browsers, &names, &url, "relayed over TLS").await;
    for n in names {
        let path = browsers.send(json!({"op": "mediaPath", "name": n})).await;
        println!("{n} media path {}", path["path"]);
        assert_eq!(
            (&path["path"]["local"], &path["path"]["localProtocol"]),
            (&json!("relay"), &json!("tls")),
            "{n}'s media goes through the relay over TLS: {path}"
        );
    }
    screenshot(env, &mut browsers, "alice", "turn-tls").await;
    browsers.close().await;
}

/// Two pools on their own ports, both pinned to one Kubernetes node, neither on the host
/// network: two media nodes share the Node, each carries its own call of two browsers, and
/// each holds as many UDP sockets in the call as it did idle (`ss -uanp` in its pod).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_media_nodes_share_a_kubernetes_node_and_each_call_uses_one_udp_port() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("browser-port").await;
    let target = env.nodes()[0].name.clone();
    let calls = [
        ("web", "standup", ["alice", "bob"]),
        ("side", "review", ["carol", "dave"]),
    ];
    for (pool_name, _, _) in calls {
        let spec = json!({
            "nodeCapacity": {"participants": 20, "rooms": 5},
            "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0},
            "mediaNode": {"nodeSelector": {"kubernetes.io/hostname": target}}
        });
        create(&ns, &pool(pool_name, ports(), spec)).await;
    }
    let nodes = common::fixtures::wait_for_ready_nodes(env, &ns, 2).await;
    let mut idle = BTreeMap::new();
    for n in &nodes {
        let pod = ns.api::<Pod>().get(&n.name_any()).await.unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(target.as_str()),
            "{} elsewhere",
            n.name_any()
        );
        assert_ne!(
            spec.host_network,
            Some(true),
            "{} on the host network",
            n.name_any()
        );
        let pid = conclave_testenv::sockets::process_with_env("MEDIA_NODE_NAME", &n.name_any())
            .unwrap_or_else(|| panic!("no process of media node {}", n.name_any()));
        let sockets = conclave_testenv::sockets::udp_sockets(pid).await.unwrap();
        println!("{} idle, ss -uanp:\n{}", n.name_any(), sockets.join("\n"));
        idle.insert(n.name_any(), (pid, sockets.len()));
    }

    let mut browsers = Chromium::start(&env.artifacts().join("browser-port")).await;
    two_calls(env, &ns, &mut browsers, calls).await;
    for (name, (pid, idle_count)) in &idle {
        let sockets = conclave_testenv::sockets::udp_sockets(*pid).await.unwrap();
        println!("{name} in a call, ss -uanp:\n{}", sockets.join("\n"));
        assert_eq!(
            sockets.len(),
            *idle_count,
            "media node {name} holds as many UDP sockets in a call as idle"
        );
    }
    screenshot(env, &mut browsers, "carol", "two-nodes-one-host").await;
    browsers.close().await;
}

/// Two calls of two browsers each, `(pool, conference, [names])`: each conference placed on
/// its own media node, every browser connected and receiving the other's camera; returns
/// their join URLs.
async fn two_calls(
    env: &TestEnv,
    ns: &TestNamespace,
    browsers: &mut Chromium,
    calls: [(&str, &str, [&str; 2]); 2],
) -> Vec<String> {
    let all: Vec<&str> = calls.iter().flat_map(|(_, _, names)| *names).collect();
    let mut urls = Vec::new();
    for (pool_name, conference_name, names) in calls {
        let placed = conference_named(env, ns, pool_name, conference_name, 4).await;
        let url = join_url(&placed);
        let (key, _) = keys_of(ns, pool_name).await;
        let links: Vec<(&str, String)> = names
            .iter()
            .map(|n| (*n, link_to(conference_name, &url, &key, n, "")))
            .collect();
        open_all(browsers, &links).await;
        urls.push(url);
    }
    assert_ne!(urls[0], urls[1], "each call has its own media node");
    all_connected(env, ns, browsers, &all).await;
    for (_, _, [a, b]) in calls {
        for (n, other) in [(a, b), (b, a)] {
            if let Err(e) = video_flows(browsers, n, &[(other, "camera")]).await {
                fail(env, ns, browsers, &all, &e).await;
            }
        }
    }
    urls
}

/// NodePort exposure: one pool, two media nodes pinned to one Kubernetes node with no host
/// port at all, each behind its own NodePort Service (`externalTrafficPolicy: Local`); the
/// operator publishes the allocated node ports (signaling URL, `udpPort`) and the media
/// nodes advertise them in their candidates; each node carries a call of two browsers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_media_nodes_of_one_pool_share_a_kubernetes_node_behind_node_port_services() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("browser-nodeport").await;
    let target = env.nodes()[0].name.clone();
    let ports = ports();
    // One room per node: the two conferences land on the two nodes.
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 1},
        "scaling": {"minNodes": 2, "maxNodes": 2, "bufferParticipants": 0},
        "mediaNode": {"exposure": "NodePort",
                      "nodeSelector": {"kubernetes.io/hostname": target}}
    });
    create(&ns, &pool("web", ports, spec)).await;
    let nodes = common::fixtures::wait_for_ready_nodes(env, &ns, 2).await;
    let mut published = Vec::new();
    for n in &nodes {
        let name = n.name_any();
        let pod = ns.api::<Pod>().get(&name).await.unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(target.as_str()));
        let host_ports: Vec<i32> = spec.containers[0]
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.host_port)
            .collect();
        assert!(
            host_ports.is_empty(),
            "{name} holds host ports {host_ports:?}"
        );
        let service = ns.api::<Service>().get(&name).await.unwrap();
        let service_spec = service.spec.unwrap();
        assert_eq!(service_spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(
            service_spec.external_traffic_policy.as_deref(),
            Some("Local")
        );
        let node_port = |protocol: &str| {
            service_spec
                .ports
                .iter()
                .flatten()
                .find(|p| p.protocol.as_deref() == Some(protocol))
                .and_then(|p| p.node_port)
                .and_then(|p| u16::try_from(p).ok())
        };
        let addresses = n.status.clone().unwrap().addresses.unwrap();
        assert_eq!(
            addresses.udp_port,
            node_port("UDP"),
            "{name}'s published UDP port"
        );
        assert_ne!(addresses.udp_port, Some(ports.udp));
        let signaling = addresses.signaling_url.unwrap();
        assert!(
            signaling.ends_with(&format!(":{}/rtc", node_port("TCP").unwrap())),
            "{name} publishes {signaling}"
        );
        println!("{name}: {signaling}, media on UDP {:?}", addresses.udp_port);
        published.push(signaling);
    }
    assert_ne!(published[0], published[1]);

    let mut browsers = Chromium::start(&env.artifacts().join("browser-nodeport")).await;
    let urls = two_calls(
        env,
        &ns,
        &mut browsers,
        [
            ("web", "standup", ["alice", "bob"]),
            ("web", "review", ["carol", "dave"]),
        ],
    )
    .await;
    for url in &urls {
        assert!(published.contains(url), "{url} is a published node port");
    }
    screenshot(env, &mut browsers, "carol", "node-port").await;
    browsers.close().await;

    // A Service deleted by hand comes back, and the node publishes its new node ports.
    let name = nodes[0].name_any();
    let services = ns.api::<Service>();
    let old = services.get(&name).await.unwrap();
    services
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let (service, url) = wait::until(
        "the deleted Service back and published",
        TIMEOUT,
        || async {
            let service = services.get(&name).await.ok()?;
            if service.uid() == old.uid() {
                return None;
            }
            let signaling = service
                .spec
                .as_ref()?
                .ports
                .iter()
                .flatten()
                .find(|p| p.protocol.as_deref() == Some("TCP"))?
                .node_port?;
            let node = ns.api::<MediaNode>().get(&name).await.ok()?;
            let url = node.status?.addresses?.signaling_url?;
            url.ends_with(&format!(":{signaling}/rtc"))
                .then_some((service, url))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
    println!(
        "{name}'s Service recreated ({:?}), published as {url}",
        service.uid()
    );
}

/// The first MediaNode of a LoadBalancer pool, once its `AddressReachable` condition says it
/// waits for its load balancer (not Ready meanwhile).
async fn awaiting_load_balancer(env: &TestEnv, ns: &TestNamespace) -> MediaNode {
    let (node, waiting) = wait::until(
        "a MediaNode awaiting its load balancer",
        TIMEOUT,
        || async {
            let nodes = ns.api::<MediaNode>().list(&Default::default()).await.ok()?;
            let node = nodes.items.into_iter().next()?;
            let c = node.status.as_ref()?.conditions.iter().find(|c| {
                c.type_ == labels::condition::ADDRESS_REACHABLE && c.reason == "LoadBalancerPending"
            })?;
            let message = c.message.clone();
            Some((node, message))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, ns)));
    println!("{} waits: {waiting}", node.name_any());
    assert_ne!(
        node.status.as_ref().unwrap().phase,
        Some(MediaNodePhase::Ready),
        "Ready without an address"
    );
    node
}

/// The Kubernetes node running media node `name`'s pod, and the pod's address, once it has one.
async fn hosting_pod<'e>(
    env: &'e TestEnv,
    ns: &TestNamespace,
    name: &str,
) -> (&'e LocalNode, std::net::Ipv4Addr) {
    let (node_name, pod_ip) =
        wait::until("the media node's pod and its address", TIMEOUT, || async {
            let pod = ns.api::<Pod>().get(name).await.ok()?;
            let node_name = pod.spec?.node_name?;
            let pod_ip = pod.status?.pod_ip?.parse().ok()?;
            Some((node_name, pod_ip))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, ns)));
    (env.node(&node_name).unwrap(), pod_ip)
}

/// Once the load balancer gave `ip`: the node is Ready, published at `ip` with the pool's own
/// ports, its probe answered there, and two browsers call through it (`what`, the artifacts'
/// directory `artifacts`).
async fn call_through_load_balancer(
    env: &TestEnv,
    ns: &TestNamespace,
    ip: &str,
    ports: common::fixtures::Ports,
    what: &str,
    artifacts: &str,
) {
    let nodes = common::fixtures::wait_for_ready_nodes(env, ns, 1).await;
    let name = nodes[0].name_any();
    let status = nodes[0].status.clone().unwrap();
    let addresses = status.addresses.unwrap();
    assert_eq!(addresses.public.as_deref(), Some(ip));
    assert_eq!(addresses.udp_port, Some(ports.udp), "the pool's own port");
    let signaling = format!("ws://{ip}:{}/rtc", ports.signaling);
    assert_eq!(addresses.signaling_url.as_deref(), Some(signaling.as_str()));
    let reachable = status
        .conditions
        .iter()
        .find(|c| c.type_ == labels::condition::ADDRESS_REACHABLE)
        .unwrap();
    assert_eq!(reachable.reason, "ProbeAnswered", "{}", reachable.message);
    println!("{name} reached at {signaling}: {}", reachable.message);

    let placed = conference(env, ns).await;
    let url = join_url(&placed);
    assert_eq!(url, signaling);
    let (key, _) = keys(ns).await;
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&env.artifacts().join(artifacts)).await;
    open_each(&mut browsers, &names, &url, &key, "").await;
    call_flows_through(env, ns, &mut browsers, &names, &url, what).await;
    screenshot(env, &mut browsers, "alice", artifacts).await;
    browsers.close().await;
}

/// LoadBalancer exposure: the media node's Service is of type LoadBalancer; until a load
/// balancer gives it an address the node takes no conference and its `AddressReachable`
/// condition says what it waits for; once one does (this test's stand-in for MetalLB's
/// layer 2), the operator publishes that address with the pool's own ports, its probe
/// answers through kube-proxy, and two browsers call through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_node_behind_a_load_balancer_takes_calls_once_its_address_is_given() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("browser-lb").await;
    let ports = ports();
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0},
        "mediaNode": {"exposure": "LoadBalancer",
                      "service": {"annotations": {"lb.conclave.test/pool": "media"}}}
    });
    create(&ns, &pool("web", ports, spec)).await;
    let node = awaiting_load_balancer(env, &ns).await;
    let name = node.name_any();
    let services = ns.api::<Service>();
    let service = services.get(&name).await.unwrap();
    assert_eq!(service.annotations()["lb.conclave.test/pool"], "media");
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        service_spec.external_traffic_policy.as_deref(),
        Some("Local")
    );

    let (kube_node, _) = hosting_pod(env, &ns, &name).await;
    let load_balancer = LoadBalancer::assign(&services, &name, kube_node)
        .await
        .unwrap();
    let ip = load_balancer.ip().to_string();
    call_through_load_balancer(
        env,
        &ns,
        &ip,
        ports,
        "through the load balancer",
        "load-balancer",
    )
    .await;
}

/// A load balancer that names a host instead of an address, as AWS's Network Load Balancer
/// does (this test's stand-in: a hostname in the Service's status, resolved by the test's own
/// DNS server, whose address forwards straight to the pod, as IP targets do): the operator
/// publishes the address the name resolves to, and two browsers call through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_call_through_a_load_balancer_that_names_a_host() {
    let _one_at_a_time = chromium::exclusive().await;
    let dns = DnsServer::start().await.unwrap();
    let dns_server = format!("--dns-server={}", dns.address());
    let (env, ns, _operator) = common::start_with("browser-lb-host", &[&dns_server]).await;
    let ports = ports();
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0},
        "mediaNode": {"exposure": "LoadBalancer"}
    });
    create(&ns, &pool("web", ports, spec)).await;
    let node = awaiting_load_balancer(env, &ns).await;
    let name = node.name_any();
    let (kube_node, pod_ip) = hosting_pod(env, &ns, &name).await;
    let host = format!("{name}.lb.conclave.test");
    let services = ns.api::<Service>();
    let load_balancer = LoadBalancer::assign_hostname(&services, &name, kube_node, &host, pod_ip)
        .await
        .unwrap();
    dns.set(&host, &[load_balancer.ip()]);
    let ip = load_balancer.ip().to_string();
    call_through_load_balancer(
        env,
        &ns,
        &ip,
        ports,
        &format!("through the load balancer named {host}"),
        "load-balancer-hostname",
    )
    .await;
}

/// ICE-TCP: a network that drops every UDP datagram to and from the media node's port (an
/// nftables table on the hosting Kubernetes node) still carries the call, over the node's one
/// TCP port; the browsers' own statistics name TCP, and the table saw them try UDP first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_whose_network_blocks_udp_call_over_the_media_nodes_tcp_port() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("browser-ice-tcp").await;
    let ports = ports();
    // Inside this test's own range of UDP ports, which no TCP listener uses.
    let tcp_port = ports.udp + 1;
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0},
        "mediaNode": {"tcpPort": tcp_port}
    });
    create(&ns, &pool("web", ports, spec)).await;
    let placed = conference(env, &ns).await;
    let node_name = host(&placed);
    let node = ns.api::<MediaNode>().get(&node_name).await.unwrap();
    let addresses = node.status.unwrap().addresses.unwrap();
    assert_eq!(
        addresses.tcp_port,
        Some(tcp_port),
        "the MediaNode publishes its TCP port"
    );
    let pod = ns.api::<Pod>().get(&node_name).await.unwrap();
    let netns = env
        .node(&pod.spec.unwrap().node_name.unwrap())
        .unwrap()
        .netns();
    let blocked = conclave_testenv::lossy_link::LossyLink::start(&netns, ports.udp, 100)
        .await
        .unwrap();

    let url = join_url(&placed);
    let (key, _) = keys(&ns).await;
    let names = ["alice", "bob"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-ice-tcp")).await;
    open_each(&mut browsers, &names, &url, &key, "").await;
    call_flows_through(env, &ns, &mut browsers, &names, &url, "over TCP").await;
    for n in names {
        let path = browsers.send(json!({"op": "mediaPath", "name": n})).await;
        println!("{n} media path {}", path["path"]);
        assert_eq!(
            (&path["path"]["localProtocol"], &path["path"]["remote"]),
            (&json!("tcp"), &json!("host")),
            "{n}'s media does not go over TCP to the node's host candidate: {path}"
        );
    }
    let udp = blocked.counters().await.unwrap();
    println!("UDP to and from the media port, dropped: {udp:?}");
    assert!(
        udp.arrived > 0 && udp.arrived_dropped == udp.arrived,
        "the browsers tried UDP first and the network dropped it all: {udp:?}"
    );
    screenshot(env, &mut browsers, "alice", "ice-tcp").await;
    browsers.close().await;
}
