//! The call page in Chromium as the browser tests drive it: opening links, waiting until a
//! participant is connected and receives video, screenshots, and failing with what the
//! browsers saw.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_testenv::{TestEnv, TestNamespace};
use serde_json::{Value, json};

use super::Chromium;

/// Inbound video of `name` keyed by (identity, source): (framesDecoded, bytesReceived).
pub async fn inbound(
    browsers: &mut Chromium,
    name: &str,
) -> BTreeMap<(String, String), (u64, u64)> {
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
pub async fn video_flows(
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

/// Fails with the browsers' consoles and peer connections, and the cluster's logs.
pub async fn fail(
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
        let state = browsers
            .try_send(json!({"op": "state", "name": n}))
            .await
            .unwrap_or_else(|e| json!(e));
        consoles.push_str(&format!(
            "--- {n}: state {} ({}), notice {}\npeer {}\nconsole:\n{}\n",
            state["state"],
            state["reason"],
            state["notice"],
            peer["peer"],
            browsers.console(n).await
        ));
    }
    panic!("{e}\n{consoles}\n{}", crate::common::report(env, ns));
}

/// Saves what `name` shows as `screenshots/<what>-<name>.png` in the test artifacts.
pub async fn screenshot(env: &TestEnv, browsers: &mut Chromium, name: &str, what: &str) {
    let dir = env.artifacts().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(format!("{what}-{name}.png"));
    browsers
        .send(json!({"op": "screenshot", "name": name, "path": path}))
        .await;
}

pub async fn open_all(browsers: &mut Chromium, links: &[(&str, String)]) {
    for (name, link) in links {
        browsers
            .send(json!({"op": "open", "name": name, "link": link}))
            .await;
    }
}

/// Waits until `name` is connected; its state, or what went wrong.
pub async fn connected(browsers: &mut Chromium, name: &str) -> Result<Value, String> {
    browsers
        .try_send(
            json!({"op": "waitState", "name": name, "state": "connected", "timeoutMs": 45000}),
        )
        .await
}

/// Waits until every one of `names` is connected; fails the test with the browsers' state and
/// the cluster's logs otherwise.
pub async fn all_connected(
    env: &TestEnv,
    ns: &TestNamespace,
    browsers: &mut Chromium,
    names: &[&str],
) {
    for n in names {
        if let Err(e) = connected(browsers, n).await {
            fail(env, ns, browsers, names, &e).await;
        }
    }
}

/// Waits until `viewer`'s camera tile of `identity` passes `check` (its `tiles` entry);
/// what it showed last otherwise.
pub async fn tile_until(
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
