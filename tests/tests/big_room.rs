//! A big room in real browsers on a real node: five Chromium participants (fake cameras at
//! 320×180 and 5 fps, all muted) in a conference with `lastN: 2`; four share one Chromium,
//! each in a context of its own, and the one measured has its own. Each page decodes exactly
//! two camera videos, those of the first to join. Dynacast: the cameras nobody is forwarded
//! stop being sent (their publishers' packets stop). The grid pages: the first page shows the
//! two forwarded, the second the others, whose videos the node forwards once that page is
//! shown. The CPU of one receiving browser is measured over ten seconds in this room and, for
//! comparison, in the same call without last-N (every page decoding four videos); the
//! figures go to the test output and to `big-room.json` in the artifacts. Twelve browsers do
//! not fit on two cores (load average above 90: the media node's lease lapsed and its
//! conference was moved), so the room is five, with the same rules at a limit of two.
//!
//! The twelve-person room with `lastN: 6` is one browser and eleven synthetic participants
//! (the media node's test client, each sending a real VP8 keyframe of 320×180 as every frame,
//! 5 a second, which the browser decodes; the last to join also sends audio with a voice
//! level, so it speaks): the page decodes the cameras of the speaker and the first five to
//! join, and, in the same room without last-N, all eleven; its browser's CPU is measured in
//! both (`big-room-12.json`).

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

mod chromium;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chromium::Chromium;
use chromium::call::{connected, fail, screenshot, video_flows};
use common::call::{active_named, join_url, keys_of, link_to, token};
use common::fixtures::{conference, create, pool, ports};
use conclave_media_node::client::{Client, ClientConfig, MediaShape, Publish};
use conclave_testenv::{TestEnv, TestNamespace};
use serde_json::{Value, json};

const PEOPLE: usize = 5;
const LAST_N: usize = 2;
/// The receiving participant whose browser's CPU is measured.
const MEASURED: &str = "p01";
/// The fake cameras' frame rate: twelve browsers at 15 fps overwhelm two cores.
const CAMERA_FPS: u32 = 5;
/// How long a browser's CPU is measured in each call.
const CPU_WINDOW: Duration = Duration::from_secs(10);

fn names() -> Vec<String> {
    (1..=PEOPLE).map(|i| format!("p{i:02}")).collect()
}

/// The cameras the node forwards to `viewer`: those of the first to join, [`LAST_N`] in all
/// (nobody speaks: Chromium's fake microphone beeps too briefly to count as a speaker; the
/// media node's tests cover speakers).
fn expected(viewer: &str) -> BTreeSet<String> {
    names()
        .into_iter()
        .filter(|o| o != viewer)
        .take(LAST_N)
        .collect()
}

/// Identity → camera frames decoded by `name`.
async fn decoded(browsers: &mut Chromium, name: &str) -> BTreeMap<String, u64> {
    let v = browsers.send(json!({"op": "video", "name": name})).await;
    v["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["source"] == "camera")
        .filter_map(|t| {
            Some((
                t["identity"].as_str()?.to_owned(),
                t["framesDecoded"].as_u64()?,
            ))
        })
        .collect()
}

/// The participants whose camera `name` keeps decoding over two seconds.
async fn decoding(browsers: &mut Chromium, name: &str) -> BTreeSet<String> {
    let before = decoded(browsers, name).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    decoded(browsers, name)
        .await
        .into_iter()
        .filter(|(who, frames)| *frames > before.get(who).copied().unwrap_or(0))
        .map(|(who, _)| who)
        .collect()
}

/// Video packets `name` has sent.
async fn video_sent(browsers: &mut Chromium, name: &str) -> u64 {
    let v = browsers.send(json!({"op": "videoRtp", "name": name})).await;
    v["rtp"]["outbound"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["packetsSent"].as_u64())
        .sum()
}

/// Waits until `check` holds for `name`'s decoding set, for up to 30 s; the set.
async fn decoding_until(
    browsers: &mut Chromium,
    name: &str,
    what: &str,
    check: impl Fn(&BTreeSet<String>) -> bool,
) -> Result<BTreeSet<String>, String> {
    let mut last = BTreeSet::new();
    for _ in 0..10 {
        last = decoding(browsers, name).await;
        if check(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("{name} never decoded {what}; decoding {last:?}"))
}

/// The CPU share of one core `name`'s browser uses over [`CPU_WINDOW`], and the camera frames
/// a second it decodes meanwhile.
async fn cpu_of(browsers: &mut Chromium, name: &str) -> (f64, f64) {
    let cpu = |v: Value| v["seconds"].as_f64().unwrap();
    let frames = |d: BTreeMap<String, u64>| d.values().sum::<u64>() as f64;
    let started = Instant::now();
    let cpu0 = cpu(browsers.send(json!({"op": "cpu", "name": name})).await);
    let frames0 = frames(decoded(browsers, name).await);
    tokio::time::sleep(CPU_WINDOW).await;
    let cpu1 = cpu(browsers.send(json!({"op": "cpu", "name": name})).await);
    let frames1 = frames(decoded(browsers, name).await);
    let secs = started.elapsed().as_secs_f64();
    ((cpu1 - cpu0) / secs, (frames1 - frames0) / secs)
}

/// A pool of one media node, and two conferences of `people` on it, `name` with `last_n`
/// and `name`-all without: their signaling URLs, and the pool's join key.
async fn room_with_and_without_last_n(
    env: &TestEnv,
    ns: &TestNamespace,
    name: &str,
    people: usize,
    last_n: usize,
) -> ((String, String), Vec<u8>) {
    let spec = json!({
        "nodeCapacity": {"participants": 30, "rooms": 5},
        "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0}
    });
    create(ns, &pool("web", ports(), spec)).await;
    let everyone = format!("{name}-all");
    let max = people as u32;
    let limited = json!({"media": {"lastN": last_n}});
    create(ns, &conference(name, "web", max, limited)).await;
    create(ns, &conference(&everyone, "web", max, json!({}))).await;
    let urls = (
        join_url(&active_named(env, ns, name, None).await),
        join_url(&active_named(env, ns, &everyone, None).await),
    );
    (urls, keys_of(ns, "web").await.0)
}

async fn join_all(
    browsers: &mut Chromium,
    link: &dyn Fn(&str) -> String,
    op: &str,
) -> Result<(), String> {
    // One at a time: twelve browsers starting together overwhelm two cores.
    for n in names() {
        // The measured browser is one of its own; the others share one Chromium.
        let shared = (n != MEASURED).then_some("room");
        browsers
            .send(json!({"op": op, "name": n, "link": link(&n), "muted": true,
                         "shared": shared, "cameraFps": CAMERA_FPS,
                         "viewport": {"width": 960, "height": 600}}))
            .await;
        connected(browsers, &n).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_people_with_last_n_two_decode_two_videos_and_page_to_the_others() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("big-room").await;
    let ((big, all), key) = room_with_and_without_last_n(env, &ns, "big", PEOPLE, LAST_N).await;
    let mut browsers = Chromium::start(&env.artifacts().join("big-room")).await;
    let names = names();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let result = big_room(env, &ns, &mut browsers, &key, &(big, all)).await;
    if let Err(e) = result {
        fail(env, &ns, &mut browsers, &name_refs, &e).await;
    }
    browsers.close().await;
}

async fn big_room(
    env: &TestEnv,
    _ns: &TestNamespace,
    browsers: &mut Chromium,
    key: &[u8],
    (big, all): &(String, String),
) -> Result<(), String> {
    let to_big = |n: &str| link_to("big", big, key, n, "");
    join_all(browsers, &to_big, "open").await?;

    // Each page decodes LAST_N cameras: those of the first to join.
    for n in names() {
        let want = expected(&n);
        let got = decoding_until(browsers, &n, "the first to join", |d| *d == want).await?;
        println!("{n} decodes {} cameras: {got:?}", got.len());
    }
    screenshot(env, browsers, MEASURED, "big-room-page-1").await;

    // Dynacast: the cameras nobody receives stop being sent.
    let received: BTreeSet<String> = names().iter().flat_map(|n| expected(n)).collect();
    for n in names().into_iter().filter(|n| !received.contains(n)) {
        let mut last = (0, 0);
        let mut stopped = false;
        for _ in 0..20 {
            let a = video_sent(browsers, &n).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let b = video_sent(browsers, &n).await;
            last = (a, b);
            if b == a {
                stopped = true;
                break;
            }
        }
        if !stopped {
            return Err(format!(
                "{n}'s camera, received by nobody, still sends: {last:?}"
            ));
        }
        println!("{n} sends no video: nobody receives it");
    }

    // The measured participant pages on: the second page shows the others, whose cameras
    // now reach it.
    let label = browsers
        .send(json!({"op": "text", "name": MEASURED, "selector": "#page-label"}))
        .await;
    let pages = (PEOPLE - 1).div_ceil(LAST_N);
    if label["text"] != format!("Page 1 of {pages}") || label["visible"] != true {
        return Err(format!("{MEASURED}'s pager: {label}"));
    }
    browsers
        .send(json!({"op": "click", "name": MEASURED, "selector": "#page-next"}))
        .await;
    let first_page = expected(MEASURED);
    let second: Vec<String> = names()
        .into_iter()
        .filter(|n| n != MEASURED && !first_page.contains(n))
        .take(LAST_N)
        .collect();
    let from: Vec<(&str, &str)> = second.iter().map(|n| (n.as_str(), "camera")).collect();
    video_flows(browsers, MEASURED, &from).await?;
    let on_page = decoding(browsers, MEASURED).await;
    if on_page.len() > LAST_N {
        return Err(format!(
            "{MEASURED} decodes {} cameras on page 2: {on_page:?}",
            on_page.len()
        ));
    }
    println!("{MEASURED} on page 2 decodes {on_page:?}");
    screenshot(env, browsers, MEASURED, "big-room-page-2").await;
    browsers
        .send(json!({"op": "click", "name": MEASURED, "selector": "#page-prev"}))
        .await;
    decoding_until(browsers, MEASURED, "the first page again", |d| {
        *d == first_page
    })
    .await?;

    // The CPU of a receiving browser with last-N, then in the same call without it.
    let with_last_n = cpu_of(browsers, MEASURED).await;
    let to_all = |n: &str| link_to("big-all", all, key, n, "");
    join_all(browsers, &to_all, "enter").await?;
    let (_, without) = measured_without_last_n(browsers, PEOPLE).await?;
    keep_figures(
        env,
        "big-room.json",
        room_figures(PEOPLE, LAST_N, with_last_n, without),
    )
}

/// Waits until the measured page decodes every other camera of a room of `people` without
/// last-N, then measures its browser: the cameras, and its CPU and frames (see [`cpu_of`]).
async fn measured_without_last_n(
    browsers: &mut Chromium,
    people: usize,
) -> Result<(BTreeSet<String>, (f64, f64)), String> {
    let everyone = decoding_until(browsers, MEASURED, "every camera", |d| {
        d.len() == people - 1
    })
    .await?;
    println!(
        "without last-N {MEASURED} decodes {} cameras",
        everyone.len()
    );
    Ok((everyone, cpu_of(browsers, MEASURED).await))
}

/// The measured browser's CPU and decoded frames in a room of `people`, with `last_n` and
/// without.
fn room_figures(people: usize, last_n: usize, with: (f64, f64), without: (f64, f64)) -> Value {
    json!({
        "people": people,
        "lastN": last_n,
        "receivingBrowserCpuCores": {"withLastN": with.0, "withoutLastN": without.0},
        "decodedFramesPerSecond": {"withLastN": with.1, "withoutLastN": without.1},
    })
}

/// Prints `figures` and keeps them in the artifacts as `file`.
fn keep_figures(env: &TestEnv, file: &str, figures: Value) -> Result<(), String> {
    println!("{file}: {figures}");
    std::fs::write(env.artifacts().join(file), figures.to_string()).map_err(|e| e.to_string())
}

/// People in the twelve-person room, and its limit.
const TWELVE: usize = 12;
const TWELVE_LAST_N: usize = 6;

/// The synthetic participants of the twelve-person room, in the order they join.
fn synthetic_names() -> Vec<String> {
    (2..=TWELVE).map(|i| format!("s{i:02}")).collect()
}

/// The one synthetic participant who speaks (sends audio with a voice level): the last to
/// join, so only speaking earns it a place among the six.
const SPEAKER: &str = "s12";

/// The address this host reaches the media node of `signaling_url` from.
fn local_address_towards(signaling_url: &str) -> std::net::IpAddr {
    let host = signaling_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([':', '/']).next())
        .unwrap();
    let probe = std::net::UdpSocket::bind(("0.0.0.0", 0)).unwrap();
    probe.connect((host, 9)).unwrap();
    probe.local_addr().unwrap().ip()
}

/// Joins the synthetic participants to `conference` one after another, each publishing a
/// decodable camera at [`CAMERA_FPS`].
async fn synthetic_cameras(
    conference: &str,
    signaling_url: &str,
    key: &[u8],
) -> Result<Vec<(Client, tokio::task::JoinHandle<()>)>, String> {
    let bind_ip = local_address_towards(signaling_url);
    let mut joined = Vec::new();
    for n in synthetic_names() {
        let client = Client::connect(ClientConfig {
            url: signaling_url.to_owned(),
            conference: conference.to_owned(),
            token: token(conference, key, &n),
            bind_ip,
            publish: Publish {
                audio: n == SPEAKER,
                video_layers: 1,
                chat: false,
            },
            transport_feedback: true,
            offer_first: true,
            tcp_only: false,
        })
        .await
        .map_err(|e| format!("{n} could not join {conference}: {e:?}"))?;
        let media = client.start_media(MediaShape {
            fps: CAMERA_FPS,
            decodable: true,
            ..MediaShape::default()
        });
        joined.push((client, media));
    }
    Ok(joined)
}

/// Stops the synthetic cameras and closes their connections.
async fn leave(cameras: Vec<(Client, tokio::task::JoinHandle<()>)>) {
    for (client, media) in cameras {
        media.abort();
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_people_with_last_n_six_decode_six_videos() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("big-room-12").await;
    let ((limited, all), key) =
        room_with_and_without_last_n(env, &ns, "twelve", TWELVE, TWELVE_LAST_N).await;
    let mut browsers = Chromium::start(&env.artifacts().join("big-room-12")).await;
    let result = twelve(env, &mut browsers, &key, &limited, &all).await;
    if let Err(e) = result {
        fail(env, &ns, &mut browsers, &[MEASURED], &e).await;
    }
    browsers.close().await;
}

async fn twelve(
    env: &TestEnv,
    browsers: &mut Chromium,
    key: &[u8],
    limited: &str,
    all: &str,
) -> Result<(), String> {
    let cameras = synthetic_cameras("twelve", limited, key).await?;
    browsers
        .send(json!({"op": "open", "name": MEASURED, "link": link_to("twelve", limited, key, MEASURED, ""),
                     "devices": "none", "viewport": {"width": 960, "height": 600}}))
        .await;
    connected(browsers, MEASURED).await?;
    // The speaker, then the first five to join.
    let six: BTreeSet<String> = synthetic_names()
        .into_iter()
        .take(TWELVE_LAST_N - 1)
        .chain([SPEAKER.to_owned()])
        .collect();
    let six = decoding_until(
        browsers,
        MEASURED,
        "the speaker and the first five to join",
        |d| *d == six,
    )
    .await?;
    println!(
        "with lastN {TWELVE_LAST_N}, {MEASURED} decodes {} cameras: {six:?}",
        six.len()
    );
    screenshot(env, browsers, MEASURED, "big-room-12").await;
    let with_last_n = cpu_of(browsers, MEASURED).await;
    leave(cameras).await;

    let cameras = synthetic_cameras("twelve-all", all, key).await?;
    browsers
        .send(json!({"op": "enter", "name": MEASURED, "link": link_to("twelve-all", all, key, MEASURED, "")}))
        .await;
    connected(browsers, MEASURED).await?;
    let (everyone, without) = measured_without_last_n(browsers, TWELVE).await?;
    leave(cameras).await;
    let mut figures = room_figures(TWELVE, TWELVE_LAST_N, with_last_n, without);
    figures["decodedCameras"] = json!({"withLastN": six.len(), "withoutLastN": everyone.len()});
    keep_figures(env, "big-room-12.json", figures)
}
