//! What a media node writes about itself, as server-side apply patches under its own field
//! manager (`labels::MEDIA_NODE_MANAGER`): its Lease (its liveness), its load on its MediaNode,
//! and the connected participants of each conference it hosts. They carry only those fields, so
//! fields the operator owns are never touched. The media node and the scale benchmark's load
//! simulator both write exactly these.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::Resource;
use serde_json::{Value, json};

use crate::node::NodeLoad;
use crate::{Conference, MediaNode, labels};

/// Renewals per heartbeat timeout: a node that misses one renewal (a slow API server, a
/// garbage-collection pause) is not failed for it.
pub const RENEWALS_PER_TIMEOUT: u32 = 3;

/// How often a media node renews its Lease in a pool whose `heartbeatTimeoutSeconds` is
/// `timeout_seconds` (at least every second): a longer timeout, chosen for a large pool,
/// also makes its nodes' renewals, most of the API server's writes at rest, rarer.
pub fn lease_renewal_interval(timeout_seconds: u32) -> Duration {
    Duration::from_secs(u64::from(timeout_seconds / RENEWALS_PER_TIMEOUT).max(1))
}

/// The Lease of media node `name` of `pool` (MediaNode uid `uid`), renewed at `now`, named
/// and owned like the MediaNode (so it goes with it), held for `duration` (informational:
/// the operator judges staleness by the pool's heartbeat timeout).
pub fn lease_renewal(
    name: &str,
    pool: &str,
    uid: &str,
    duration: Duration,
    now: &MicroTime,
) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "labels": {
                labels::COMPONENT: labels::COMPONENT_MEDIA_NODE,
                labels::POOL: pool,
            },
            "ownerReferences": [{
                "apiVersion": MediaNode::api_version(&()),
                "kind": MediaNode::kind(&()),
                "name": name,
                "uid": uid,
            }],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration.as_secs(),
            "renewTime": now,
        },
    })
}

/// The MediaNode status patch: only `load`, `lastHeartbeat`, and that the node finds its
/// conferences by `status.mediaNode` (see [`CONFERENCE_NODE_FIELD`]).
pub fn load_report(load: &NodeLoad, now: &Time) -> Value {
    json!({
        "apiVersion": MediaNode::api_version(&()),
        "kind": MediaNode::kind(&()),
        "status": {"load": load, "lastHeartbeat": now, "watchesConferenceStatus": true},
    })
}

/// The field selector path of a Conference's media node (`status.mediaNode`, a selectable
/// field of the CRD): a media node watches `status.mediaNode=<its name>`.
pub const CONFERENCE_NODE_FIELD: &str = "status.mediaNode";

/// The field selector of the conferences placed on media node `node`.
pub fn conferences_on(node: &str) -> String {
    format!("{CONFERENCE_NODE_FIELD}={node}")
}

/// The Conference status patch: only `participants`.
pub fn participants_report(participants: u32) -> Value {
    json!({
        "apiVersion": Conference::api_version(&()),
        "kind": Conference::kind(&()),
        "status": {"participants": participants},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::Lease;

    #[test]
    fn a_lease_is_renewed_three_times_per_heartbeat_timeout_and_at_least_every_second() {
        for (timeout, every) in [
            (15, 5),
            (60, 20),
            (16, 5),
            (3, 1),
            (2, 1),
            (0, 1),
            (600, 200),
        ] {
            assert_eq!(
                lease_renewal_interval(timeout),
                Duration::from_secs(every),
                "{timeout}"
            );
        }
    }

    #[test]
    fn the_lease_is_the_nodes_own_and_goes_with_its_medianode() {
        let now =
            MicroTime(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time"));
        let l = lease_renewal("eu-abc12", "eu", "uid-1", Duration::from_secs(15), &now);
        let parsed: Lease = serde_json::from_value(l.clone()).expect("a Lease");
        let spec = parsed.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("eu-abc12"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(l["spec"]["renewTime"], "2023-11-14T22:13:20.000000Z");
        let owner = &parsed.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("MediaNode", "uid-1")
        );
        let labels = parsed.metadata.labels.expect("labels");
        assert_eq!(labels[labels::POOL], "eu");
        assert_eq!(labels[labels::COMPONENT], labels::COMPONENT_MEDIA_NODE);
    }
}
