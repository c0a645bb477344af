//! Load reports, server-side applied under the media node's own field manager (the patches are
//! `conclave_crds::report`'s): `status.load` (with `status.lastHeartbeat`, the time of the
//! report) on this node's MediaNode when the load changed meaningfully (see
//! `worth_reporting`), at most every half second after a burst of joins or leaves and at least
//! every minute; and `status.participants` on each of its conferences whose count changed.
//! Liveness is the node's Lease (see `lease`), not these reports.

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
/// The load is written at least this often, changed or not.
const REFRESH: Duration = Duration::from_secs(60);
/// Rates that moved less than this fraction (and than the floors below) are not news.
const RELATIVE_CHANGE: f64 = 0.2;
const CPU_FLOOR_CORES: f64 = 0.05;
const BITRATE_FLOOR_MBPS: f64 = 1.0;

/// Whether `now` is worth a status write after `last` was written `since` ago: any change of
/// rooms, participants or tracks (placement and the autoscaler count them), a rate that moved
/// by a fifth and more than its floor, or the refresh being due.
pub fn worth_reporting(last: Option<&LoadSnapshot>, now: &LoadSnapshot, since: Duration) -> bool {
    let Some(last) = last else {
        return true;
    };
    let moved = |a: f64, b: f64, floor: f64| (a - b).abs() > floor.max(RELATIVE_CHANGE * a.max(b));
    since >= REFRESH
        || (
            last.rooms,
            last.participants,
            last.tracks_in,
            last.tracks_out,
        ) != (now.rooms, now.participants, now.tracks_in, now.tracks_out)
        || moved(last.cpu, now.cpu, CPU_FLOOR_CORES)
        || moved(last.ingress_mbps, now.ingress_mbps, BITRATE_FLOOR_MBPS)
        || moved(last.egress_mbps, now.egress_mbps, BITRATE_FLOOR_MBPS)
}

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

/// `status.load` and `status.lastHeartbeat` on this node's MediaNode, looked at every
/// interval and after joins and leaves, written when worth it. A write that takes longer than
/// the interval is abandoned for a fresh one (and the load is written again next time).
async fn heartbeats(nodes: Api<MediaNode>, state: Arc<NodeState>, interval: Duration) {
    let params = PatchParams::apply(labels::MEDIA_NODE_MANAGER).force();
    let mut changed = state.load_changed.subscribe();
    let mut last: Option<(LoadSnapshot, tokio::time::Instant)> = None;
    loop {
        let load = state.stats.load();
        let since = last.map_or(Duration::MAX, |(_, at)| at.elapsed());
        if worth_reporting(last.as_ref().map(|(l, _)| l), &load, since) {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let patch = node_patch(&load, now);
            let patch = Patch::Apply(&patch);
            let write = nodes.patch_status(&state.settings.name, &params, &patch);
            match tokio::time::timeout(interval, write).await {
                Ok(Ok(_)) => last = Some((load, tokio::time::Instant::now())),
                Ok(Err(e)) => {
                    tracing::warn!(node = %state.settings.name, error = %e, "load report failed")
                }
                Err(_) => {
                    tracing::warn!(node = %state.settings.name, ?interval, "load report timed out")
                }
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
    fn only_meaningful_load_changes_are_written_before_the_refresh() {
        let base = LoadSnapshot {
            rooms: 2,
            participants: 9,
            tracks_in: 4,
            tracks_out: 20,
            ingress_mbps: 10.0,
            egress_mbps: 40.0,
            cpu: 0.5,
        };
        let soon = Duration::from_secs(5);
        assert!(worth_reporting(None, &base, soon), "the first report");
        assert!(!worth_reporting(Some(&base), &base, soon));
        assert!(worth_reporting(Some(&base), &base, REFRESH), "the refresh");
        let joined = LoadSnapshot {
            participants: 10,
            ..base
        };
        assert!(worth_reporting(Some(&base), &joined, soon), "a join");
        let jitter = LoadSnapshot {
            cpu: 0.55,
            egress_mbps: 44.0,
            ..base
        };
        assert!(
            !worth_reporting(Some(&base), &jitter, soon),
            "10 % is jitter"
        );
        let busier = LoadSnapshot {
            egress_mbps: 60.0,
            ..base
        };
        assert!(
            worth_reporting(Some(&base), &busier, soon),
            "half as much again"
        );
        let idle = LoadSnapshot::default();
        let tiny = LoadSnapshot { cpu: 0.04, ..idle };
        assert!(
            !worth_reporting(Some(&idle), &tiny, soon),
            "below the floor"
        );
    }

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
        assert_eq!(keys, ["lastHeartbeat", "load", "watchesConferenceStatus"]);
        assert_eq!(p["status"]["watchesConferenceStatus"], true);
        assert_eq!(p["status"]["load"]["participants"], 9);
        assert_eq!(p["status"]["load"]["egressMbps"], 1.23);
        assert_eq!(p["status"]["lastHeartbeat"], "2023-11-14T22:13:20Z");
        let c = participants_report(4);
        assert_eq!(c["status"].as_object().map(|o| o.len()), Some(1));
        assert_eq!(c["status"]["participants"], 4);
    }
}
