//! Calls in real browsers: headless Chromium with fake camera and microphone opens the media
//! node's call page from join links built out of the Conference status, on a pool the operator
//! runs. Each participant sees the others' video (inbound-rtp `framesDecoded` and
//! `bytesReceived` keep growing), chat arrives, a shared screen appears; the same call forced
//! through the pool's coturn (`iceTransportPolicy: relay`) flows while expired TURN credentials
//! are refused; when the hosting node's pod is killed the browsers find the node the operator
//! chose and video resumes, and when that node is drained it sends them on itself. Refused or
//! missing devices are explained on the page. Screenshots go to the test artifacts.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

mod chromium;
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chromium::Chromium;
use common::fixtures::{create, drain, pool, ports, ready_nodes};
use conclave_crds::token::{JoinClaims, mint};
use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaPool, labels};
use conclave_testenv::operator::Operator;
use conclave_testenv::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
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
        // The local Nodes listen on 127.0.0.x: the relay must reach loopback.
        "turn": {"enabled": turn, "minReplicas": 1, "allowLoopbackPeers": true}
    });
    create(&ns, &pool("web", ports(), spec)).await;
    (one_at_a_time, env, ns, operator)
}

/// A conference, placed and Active with join info.
async fn conference(env: &TestEnv, ns: &TestNamespace) -> Conference {
    let conf: Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": CONFERENCE}, "spec": {"pool": "web", "maxParticipants": 8}
    }))
    .unwrap();
    ns.api::<Conference>()
        .create(&PostParams::default(), &conf)
        .await
        .unwrap();
    active(env, ns, None).await
}

/// The conference once Active with join info, on another node than `not_on` when given.
async fn active(env: &TestEnv, ns: &TestNamespace, not_on: Option<&str>) -> Conference {
    wait::until("conference Active with join info", TIMEOUT, || async {
        let c = ns.api::<Conference>().get(CONFERENCE).await.ok()?;
        let s = c.status.clone()?;
        let placed = s.phase == Some(ConferencePhase::Active)
            && s.join.is_some()
            && s.media_node.is_some()
            && s.media_node.as_deref() != not_on;
        placed.then_some(c)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, ns)))
}

fn join_url(c: &Conference) -> String {
    c.status.clone().unwrap().join.unwrap().signaling_url
}

fn host(c: &Conference) -> String {
    c.status.clone().unwrap().media_node.unwrap()
}

/// The pool's keys: (join-token key, TURN shared secret).
async fn keys(ns: &TestNamespace) -> (Vec<u8>, Vec<u8>) {
    let secret = ns
        .api::<Secret>()
        .get(&labels::pool_secret_name("web"))
        .await
        .unwrap();
    let data = secret.data.unwrap();
    (
        data[labels::SECRET_JOIN_KEY].0.clone(),
        data[labels::SECRET_TURN_SECRET].0.clone(),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The join link an application would hand out: the node's page with the signaling URL and
/// a token, capturing small video (two cores run all the browsers).
fn link(signaling_url: &str, key: &[u8], identity: &str, extra: &str) -> String {
    let token = mint(
        key,
        &JoinClaims {
            conference: CONFERENCE.into(),
            identity: identity.into(),
            exp: now() + 3600,
            publish: true,
        },
    );
    let page = signaling_url
        .replacen("ws://", "http://", 1)
        .trim_end_matches("rtc")
        .to_owned();
    format!("{page}?url={signaling_url}&token={token}&quality=low{extra}")
}

/// Inbound video of `name` keyed by (identity, source): (framesDecoded, bytesReceived).
async fn inbound(browsers: &mut Chromium, name: &str) -> BTreeMap<(String, String), (u64, u64)> {
    let v = browsers.send(json!({"op": "video", "name": name})).await;
    let mut out = BTreeMap::new();
    for t in v["tracks"].as_array().unwrap() {
        // Tracks the page could not attribute show up as "?<track id>" in failure messages.
        let identity = t["identity"]
            .as_str()
            .map_or_else(|| format!("?{}", t["trackId"]), str::to_owned);
        let source = t["source"].as_str().unwrap_or("?").to_owned();
        out.insert(
            (identity, source),
            (
                t["framesDecoded"].as_u64().unwrap_or(0),
                t["bytesReceived"].as_u64().unwrap_or(0),
            ),
        );
    }
    out
}

/// Waits until `name` receives video from every (identity, source) in `from` with decoded
/// frames and received bytes growing over three samples; returns the last sample.
async fn video_flows(
    browsers: &mut Chromium,
    name: &str,
    from: &[(&str, &str)],
) -> Result<BTreeMap<(String, String), (u64, u64)>, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let mut samples = Vec::new();
        for _ in 0..3 {
            samples.push(inbound(browsers, name).await);
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let growing = from.iter().all(|(identity, source)| {
            let key = ((*identity).to_owned(), (*source).to_owned());
            let series: Vec<(u64, u64)> = samples
                .iter()
                .filter_map(|s| s.get(&key).copied())
                .collect();
            series.len() == 3
                && series
                    .windows(2)
                    .all(|w| w[1].0 > w[0].0 && w[1].1 > w[0].1)
        });
        last = format!("{:?}", samples.last());
        if growing {
            return Ok(samples.pop().unwrap_or_default());
        }
    }
    Err(format!(
        "{name} did not receive growing video from {from:?}; last sample {last}"
    ))
}

async fn screenshot(env: &TestEnv, browsers: &mut Chromium, name: &str, what: &str) {
    let dir = env.artifacts().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{what}-{name}.png"));
    browsers
        .send(json!({"op": "screenshot", "name": name, "path": path}))
        .await;
}

/// Fails with the browsers' consoles and peer connections, and the cluster's logs.
async fn fail(
    env: &TestEnv,
    ns: &TestNamespace,
    browsers: &mut Chromium,
    names: &[&str],
    e: &str,
) -> ! {
    let mut consoles = String::new();
    for n in names {
        let peer = browsers
            .try_send(json!({"op": "peer", "name": n}))
            .await
            .unwrap_or_else(|e| json!(e));
        consoles.push_str(&format!(
            "--- {n}: peer {}\nconsole:\n{}\n",
            peer["peer"],
            browsers.console(n).await
        ));
    }
    panic!("{e}\n{consoles}\n{}", common::report(env, ns));
}

async fn open_all(browsers: &mut Chromium, links: &[(&str, String)]) {
    for (name, link) in links {
        browsers
            .send(json!({"op": "open", "name": name, "link": link}))
            .await;
    }
}

async fn connected(browsers: &mut Chromium, name: &str) -> Result<Value, String> {
    browsers
        .try_send(
            json!({"op": "waitState", "name": name, "state": "connected", "timeoutMs": 45000}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_browsers_see_each_other_chat_and_share_a_screen() {
    let (_one_at_a_time, env, ns, _operator) = setup("browser-call", 1, false).await;
    let conf = conference(env, &ns).await;
    let url = join_url(&conf);
    let (key, _) = keys(&ns).await;
    let names = ["alice", "bob", "carol"];
    let mut browsers = Chromium::start(&env.artifacts().join("browser-call")).await;
    let links: Vec<(&str, String)> = names
        .iter()
        .map(|n| (*n, link(&url, &key, n, "")))
        .collect();
    open_all(&mut browsers, &links).await;
    for n in names {
        if let Err(e) = connected(&mut browsers, n).await {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
    }

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

    // Bob mutes and unmutes his microphone; carol turns her camera off and on again.
    for (muted, what) in [(true, "bob shown muted"), (false, "bob shown unmuted")] {
        browsers
            .send(json!({"op": "click", "name": "bob", "selector": "#mic"}))
            .await;
        if let Err(e) =
            tile_until(&mut browsers, "alice", "bob", what, |t| t["muted"] == muted).await
        {
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
    browsers.close().await;
}

/// Waits until `viewer` shows the camera tile of `identity` in a state `check` accepts.
async fn tile_until(
    browsers: &mut Chromium,
    viewer: &str,
    identity: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Result<(), String> {
    let mut last = Value::Null;
    for _ in 0..60 {
        let tiles = browsers.send(json!({"op": "tiles", "name": viewer})).await;
        last = tiles["tiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["identity"] == identity && t["source"] == "camera")
            .cloned()
            .unwrap_or(Value::Null);
        if check(&last) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("{viewer} never showed {what}; tile {last}"))
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
        let ready = pods.items.iter().any(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
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
    let links: Vec<(&str, String)> = names
        .iter()
        .map(|n| (*n, link(&url, &key, n, "&relay=1")))
        .collect();
    open_all(&mut browsers, &links).await;
    for n in names {
        if let Err(e) = connected(&mut browsers, n).await {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
    }
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
    wait::until("two Ready media nodes", TIMEOUT, || async {
        let pool = ns.api::<MediaPool>().get("web").await.ok()?;
        (pool.status?.ready_nodes >= 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, &ns)));
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
    for n in names {
        if let Err(e) = connected(&mut browsers, n).await {
            fail(env, &ns, &mut browsers, &names, &e).await;
        }
    }
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
