//! The call page as people use it, in real browsers on a media node on a real node: a
//! participant gets ready in the lobby (her camera's preview, a name of her own, another
//! camera, camera off and on again, joining muted), on a phone-sized screen and a desktop one;
//! the others see her by that name, muted; in the call she switches camera and microphone and
//! the others keep seeing and hearing her; another participant picks a speaker and every
//! sound plays there; a participant on a phone whose browser plays sound only after a gesture
//! (a link that skips the lobby) is offered "Play sound", and hears the call after pressing
//! it, with the page fitting the phone's width and its controls on screen. axe-core checks
//! the lobby. Screenshots of each state go to the test artifacts.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

mod chromium;
mod common;

use std::time::Duration;

use chromium::Chromium;
use chromium::call::{connected, fail, screenshot, tile_until, video_flows};
use common::call::{conference_named, join_url, keys_of, link_to};
use common::fixtures::{create, pool, ports};
use conclave_testenv::TestEnv;
use serde_json::{Value, json};

const PHONE: (u64, u64) = (390, 844);
const DESKTOP: (u64, u64) = (1100, 700);

/// Sends `command` every 250 ms for up to 20 s until its reply passes `check`; what it said
/// last otherwise.
async fn until(
    browsers: &mut Chromium,
    what: &str,
    command: Value,
    check: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let mut last = Value::Null;
    for _ in 0..80 {
        last = browsers.send(command.clone()).await;
        if check(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("{what}: never; last seen {last}"))
}

/// Picks option `index` of the device picker `selector` for `name`; the device's id.
async fn choose(browsers: &mut Chromium, name: &str, selector: &str, index: u64) -> String {
    let option = browsers
        .send(json!({"op": "choose", "name": name, "selector": selector, "index": index}))
        .await;
    println!("{name} picks {selector}: {}", option["label"]);
    option["value"].as_str().unwrap().to_owned()
}

/// Waits until `name`'s local `kind` track (microphone or camera) comes from `device` and is
/// what its sender sends (when in a call).
async fn uses_device(
    browsers: &mut Chromium,
    name: &str,
    kind: &str,
    device: &str,
    in_call: bool,
) -> Result<(), String> {
    let check = |l: &Value| {
        let track = &l[kind];
        let sent = l["sending"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["source"] == kind && s["track"] == track["id"]);
        track["deviceId"] == device && track["live"] == true && (sent || !in_call)
    };
    let what = format!("{name}'s {kind} is {device}");
    until(browsers, &what, json!({"op": "local", "name": name}), check)
        .await
        .map(drop)
}

/// Checks that the page of `name` fits its width (no sideways scrolling) and that each of
/// `selectors` is inside the screen; with `buttons`, that those are easy to press and not
/// stretched (40 to 60 px high).
async fn fits(
    browsers: &mut Chromium,
    name: &str,
    selectors: &[&str],
    buttons: &[&str],
) -> Result<(), String> {
    let all: Vec<&str> = selectors.iter().chain(buttons).copied().collect();
    let l = browsers
        .send(json!({"op": "layout", "name": name, "selectors": all}))
        .await;
    let (width, height) = (
        l["page"]["width"].as_f64().unwrap(),
        l["page"]["height"].as_f64().unwrap(),
    );
    if l["page"]["scrollWidth"].as_f64().unwrap() > width {
        return Err(format!("{name}'s page scrolls sideways: {l}"));
    }
    for s in &all {
        let b = &l["boxes"][s];
        let (x, y, w, h) = (
            b["x"].as_f64().unwrap_or(-1.0),
            b["y"].as_f64().unwrap_or(-1.0),
            b["width"].as_f64().unwrap_or(0.0),
            b["height"].as_f64().unwrap_or(0.0),
        );
        if x < 0.0 || y < 0.0 || x + w > width + 0.5 || y + h > height + 0.5 || w == 0.0 {
            return Err(format!(
                "{s} is not on {name}'s {width}x{height} screen: {b}"
            ));
        }
        if buttons.contains(s) && !(40.0..=60.0).contains(&h) {
            return Err(format!(
                "{s} is {h} px high on {name}'s screen (40 to 60 wanted)"
            ));
        }
    }
    Ok(())
}

/// Waits until `viewer` receives growing audio from `identity`'s microphone.
async fn hears(browsers: &mut Chromium, viewer: &str, identity: &str) -> Result<(), String> {
    let packets = |v: &Value| {
        v["tracks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["identity"] == identity)
            .filter_map(|t| t["packetsReceived"].as_u64())
            .sum::<u64>()
    };
    let command = json!({"op": "audio", "name": viewer});
    let before = packets(&browsers.send(command.clone()).await);
    let what = format!("{viewer} hears {identity}");
    until(browsers, &what, command, |now| packets(now) > before + 50)
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_get_ready_in_the_lobby_switch_devices_in_the_call_and_join_from_a_phone() {
    let _one_at_a_time = chromium::exclusive().await;
    let (env, ns, _operator) = common::start("call-page").await;
    let spec = json!({
        "nodeCapacity": {"participants": 20, "rooms": 5},
        "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0}
    });
    create(&ns, &pool("web", ports(), spec)).await;
    let conference = conference_named(env, &ns, "web", "standup", 4).await;
    let url = join_url(&conference);
    let (key, _) = keys_of(&ns, "web").await;
    let link = |name: &str, extra: &str| link_to("standup", &url, &key, name, extra);
    let mut browsers = Chromium::start(&env.artifacts().join("call-page")).await;
    let names = ["alice", "bob", "carol"];
    let result = lobby_call_and_phone(env, &mut browsers, &link).await;
    if let Err(e) = result {
        fail(env, &ns, &mut browsers, &names, &e).await;
    }
    browsers.close().await;
}

async fn lobby_call_and_phone(
    env: &TestEnv,
    browsers: &mut Chromium,
    link: &dyn Fn(&str, &str) -> String,
) -> Result<(), String> {
    // Alice opens her link on a phone: the lobby shows her camera and fits the screen.
    browsers
        .send(
            json!({"op": "open", "name": "alice", "link": link("alice", ""), "lobby": "stay",
                     "viewport": {"width": PHONE.0, "height": PHONE.1}}),
        )
        .await;
    let local_of = |name: &str| json!({"op": "local", "name": name});
    until(browsers, "alice's preview plays", local_of("alice"), |l| {
        l["preview"]["width"].as_u64().unwrap_or(0) > 0
    })
    .await?;
    fits(
        browsers,
        "alice",
        &["#preview", "#lobby-name", "#lobby-join"],
        &["#lobby-join"],
    )
    .await?;
    screenshot(env, browsers, "alice", "lobby-phone").await;
    let violations =
        browsers.send(json!({"op": "axe", "name": "alice"})).await["violations"].clone();
    if violations.as_array().is_some_and(|v| !v.is_empty()) {
        return Err(format!(
            "the lobby has accessibility violations: {violations}"
        ));
    }

    // On a desktop she picks a name, another camera, turns it off and on, and mutes.
    browsers
        .send(json!({"op": "viewport", "name": "alice", "width": DESKTOP.0, "height": DESKTOP.1}))
        .await;
    browsers
        .send(
            json!({"op": "fill", "name": "alice", "selector": "#lobby-name", "text": "Ana María"}),
        )
        .await;
    // The third fake camera: the second sends depth frames, which no encoder takes.
    let other_camera = choose(browsers, "alice", "#lobby-videoinput", 2).await;
    uses_device(browsers, "alice", "camera", &other_camera, false).await?;
    browsers
        .send(json!({"op": "click", "name": "alice", "selector": "#lobby-camera"}))
        .await;
    until(
        browsers,
        "alice's camera is off in the lobby",
        local_of("alice"),
        |l| l["camera"].is_null() && l["preview"]["playing"] == false,
    )
    .await?;
    screenshot(env, browsers, "alice", "lobby-camera-off").await;
    browsers
        .send(json!({"op": "click", "name": "alice", "selector": "#lobby-camera"}))
        .await;
    uses_device(browsers, "alice", "camera", &other_camera, false).await?;
    browsers
        .send(json!({"op": "click", "name": "alice", "selector": "#lobby-mic"}))
        .await;
    let pressed = browsers
        .send(json!({"op": "attribute", "name": "alice", "selector": "#lobby-mic", "attribute": "aria-pressed"}))
        .await;
    if pressed["value"] != "true" {
        return Err(format!("the lobby's mute button is not pressed: {pressed}"));
    }
    screenshot(env, browsers, "alice", "lobby").await;
    browsers
        .send(json!({"op": "click", "name": "alice", "selector": "#lobby-join"}))
        .await;

    // Bob joins from his lobby as he finds it; he sees Ana María, muted, on camera.
    browsers
        .send(json!({"op": "open", "name": "bob", "link": link("bob", "")}))
        .await;
    for n in ["alice", "bob"] {
        connected(browsers, n).await?;
    }
    tile_until(
        browsers,
        "bob",
        "alice",
        "Ana María, muted, on camera",
        |t| t["name"] == "Ana María" && t["muted"] == true && t["video"] == true,
    )
    .await?;
    let mine = browsers.send(local_of("alice")).await;
    if mine["micMuted"] != true {
        return Err(format!(
            "alice joined unmuted after muting in the lobby: {mine}"
        ));
    }

    // In the call she switches back to the first camera: bob keeps seeing her.
    browsers
        .send(json!({"op": "click", "name": "alice", "selector": "#devices summary"}))
        .await;
    let first_camera = choose(browsers, "alice", "#device-videoinput", 0).await;
    uses_device(browsers, "alice", "camera", &first_camera, true).await?;
    video_flows(browsers, "bob", &[("alice", "camera")]).await?;
    // And to another microphone, unmuted: bob hears her.
    let other_mic = choose(browsers, "alice", "#device-audioinput", 2).await;
    uses_device(browsers, "alice", "microphone", &other_mic, true).await?;
    browsers
        .send(json!({"op": "key", "name": "alice", "key": "m"}))
        .await;
    tile_until(browsers, "bob", "alice", "alice unmuted", |t| {
        t["muted"] == false
    })
    .await?;
    hears(browsers, "bob", "alice").await?;
    screenshot(env, browsers, "alice", "switched-devices").await;

    // Bob picks a speaker: every sound he hears plays there.
    browsers
        .send(json!({"op": "click", "name": "bob", "selector": "#devices summary"}))
        .await;
    let speaker = choose(browsers, "bob", "#device-audiooutput", 1).await;
    let sounds_of = |name: &str| json!({"op": "sounds", "name": name});
    until(
        browsers,
        "bob's sounds play on the speaker he picked",
        sounds_of("bob"),
        |s| {
            let all = s["sounds"].as_array().unwrap();
            !all.is_empty()
                && all
                    .iter()
                    .all(|a| a["sinkId"] == speaker.as_str() && a["playing"] == true)
        },
    )
    .await?;

    // Carol joins from a phone with a link that skips the lobby, in a browser that plays sound
    // only after a gesture: she is offered Play sound, and hears the call after pressing it.
    browsers
        .send(
            json!({"op": "open", "name": "carol", "link": link("carol", "&join=now"),
                     "devices": "none", "autoplay": "gesture",
                     "viewport": {"width": PHONE.0, "height": PHONE.1}}),
        )
        .await;
    connected(browsers, "carol").await?;
    until(
        browsers,
        "carol is offered Play sound",
        sounds_of("carol"),
        |s| {
            let blocked = s["sounds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["playing"] == false);
            s["playSoundShown"] == true && blocked
        },
    )
    .await?;
    // (The driver's other reads carry a user gesture: from here on, they may.)
    screenshot(env, browsers, "carol", "play-sound-phone").await;
    fits(
        browsers,
        "carol",
        &["#grid .tile", "#sound"],
        &["#mic", "#camera", "#leave"],
    )
    .await?;
    browsers
        .send(json!({"op": "click", "name": "carol", "selector": "#sound"}))
        .await;
    until(browsers, "carol's sounds play", sounds_of("carol"), |s| {
        let all = s["sounds"].as_array().unwrap();
        s["playSoundShown"] == false && !all.is_empty() && all.iter().all(|a| a["playing"] == true)
    })
    .await?;
    video_flows(browsers, "carol", &[("alice", "camera"), ("bob", "camera")]).await?;
    fits(
        browsers,
        "carol",
        &["#grid .tile"],
        &["#mic", "#camera", "#leave"],
    )
    .await?;
    screenshot(env, browsers, "carol", "call-phone").await;
    for n in ["alice", "bob"] {
        screenshot(env, browsers, n, "call-desktop").await;
    }
    Ok(())
}
