//! What a media node writes about itself, as server-side apply patches under its own field
//! manager (`labels::MEDIA_NODE_MANAGER`): its load and heartbeat on its MediaNode, and the
//! connected participants of each conference it hosts. They carry only those fields, so
//! fields the operator owns are never touched. The media node and the scale benchmark's load
//! simulator both write exactly these.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use serde_json::{Value, json};

use crate::node::NodeLoad;
use crate::{Conference, MediaNode};

/// The MediaNode status patch: only `load` and `lastHeartbeat`.
pub fn load_report(load: &NodeLoad, now: &Time) -> Value {
    json!({
        "apiVersion": MediaNode::api_version(&()),
        "kind": MediaNode::kind(&()),
        "status": {"load": load, "lastHeartbeat": now},
    })
}

/// The Conference status patch: only `participants`.
pub fn participants_report(participants: u32) -> Value {
    json!({
        "apiVersion": Conference::api_version(&()),
        "kind": Conference::kind(&()),
        "status": {"participants": participants},
    })
}
