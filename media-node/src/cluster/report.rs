//! Load reports: every heartbeat interval, and at once after a burst of joins or leaves,
//! server-side apply of `status.load` and `status.lastHeartbeat` on this node's MediaNode and
//! `status.participants` on each of its conferences, under the media node's own field manager
//! (the patches are `conclave_crds::report`'s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use conclave_crds::node::NodeLoad;
use conclave_crds::report::{load_report, participants_report};
use conclave_crds::{Conference, MediaNode, labels};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::node::{LoadSnapshot, NodeState};

/// Reports at most this often, however many joins and leaves happen.
const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The MediaNode status patch of `load`, rounded to two decimals.
pub fn node_patch(load: &LoadSnapshot, now: Time) -> Value {
    let load = NodeLoad {
        rooms: load.rooms,
        participants: load.participants,
        tracks_in: load.tracks_in,
        tracks_out: load.tracks_out,
        ingress_mbps: round(load.ingress_mbps),
        egress_mbps: round(load.egress_mbps),
        cpu: round(load.cpu),
    };
    load_report(&load, &now)
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Reports load forever: the heartbeat and the participant counts in two tasks, so that a
/// slow API server answering many conference writes never delays the heartbeat past the
/// operator's staleness threshold.
pub async fn run(client: Client, namespace: String, state: Arc<NodeState>, interval: Duration) {
    let nodes: Api<MediaNode> = Api::namespaced(client.clone(), &namespace);
    let conferences: Api<Conference> = Api::namespaced(client, &namespace);
    tokio::join!(
        heartbeats(nodes, state.clone(), interval),
        participants(conferences, state, interval)
    );
}

/// `status.load` and `status.lastHeartbeat` on this node's MediaNode. A write that takes
/// longer than the interval is abandoned for a fresh one.
async fn heartbeats(nodes: Api<MediaNode>, state: Arc<NodeState>, interval: Duration) {
    let params = PatchParams::apply(labels::MEDIA_NODE_MANAGER).force();
    let mut changed = state.load_changed.subscribe();
    loop {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let patch = node_patch(&state.stats.load(), now);
        let patch = Patch::Apply(&patch);
        let write = nodes.patch_status(&state.settings.name, &params, &patch);
        match tokio::time::timeout(interval, write).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(node = %state.settings.name, error = %e, "load report failed")
            }
            Err(_) => {
                tracing::warn!(node = %state.settings.name, ?interval, "load report timed out")
            }
        }
        next_report(&mut changed, interval).await;
    }
}

/// `status.participants` on each conference whose count changed.
async fn participants(conferences: Api<Conference>, state: Arc<NodeState>, interval: Duration) {
    let params = PatchParams::apply(labels::MEDIA_NODE_MANAGER).force();
    let mut changed = state.load_changed.subscribe();
    let mut reported: HashMap<String, u32> = HashMap::new();
    loop {
        let rooms = state.room_names();
        reported.retain(|name, _| rooms.contains(name));
        for name in rooms {
            let Some(room) = state.room(&name) else {
                continue;
            };
            let n = room.participants();
            // A new room starts empty: nothing to say until someone joins (one write fewer
            // per placement).
            if reported.get(&name).copied().unwrap_or(0) == n {
                reported.insert(name, n);
                continue;
            }
            match conferences
                .patch_status(&name, &params, &Patch::Apply(&participants_report(n)))
                .await
            {
                Ok(_) => {
                    reported.insert(name, n);
                }
                Err(e) => {
                    tracing::warn!(conference = %name, error = %e, "participants report failed")
                }
            }
        }
        next_report(&mut changed, interval).await;
    }
}

/// Waits for the interval, or for a join or leave plus a moment for the burst to settle.
async fn next_report(changed: &mut tokio::sync::watch::Receiver<()>, interval: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(interval) => {}
        r = changed.changed() => {
            // Err only when the node state is gone; then the interval still paces the loop.
            tokio::time::sleep(if r.is_ok() { MIN_INTERVAL } else { interval }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_carry_only_media_node_fields() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time"));
        let p = node_patch(
            &LoadSnapshot {
                rooms: 2,
                participants: 9,
                egress_mbps: 1.234_567,
                ..Default::default()
            },
            now,
        );
        let status = p["status"].as_object().expect("status");
        let mut keys: Vec<_> = status.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["lastHeartbeat", "load"]);
        assert_eq!(p["status"]["load"]["participants"], 9);
        assert_eq!(p["status"]["load"]["egressMbps"], 1.23);
        assert_eq!(p["status"]["lastHeartbeat"], "2023-11-14T22:13:20Z");
        let c = participants_report(4);
        assert_eq!(c["status"].as_object().map(|o| o.len()), Some(1));
        assert_eq!(c["status"]["participants"], 4);
    }
}
