//! The Conclave API (`conclave.dev/v1alpha1`): the MediaPool, MediaNode and Conference
//! custom resources, the names both binaries agree on, and the pure helpers both sides need
//! (capacity arithmetic, phase rules, join tokens, TURN credentials). No client, no async.

pub mod capacity;
pub mod conference;
pub mod examples;
pub mod labels;
pub mod node;
pub mod pool;
pub mod report;
pub mod shared;
pub mod token;
pub mod turn;

pub use conference::{Conference, ConferencePhase, ConferenceSpec, ConferenceStatus};
pub use node::{MediaNode, MediaNodePhase, MediaNodeSpec, MediaNodeStatus};
pub use pool::{MediaPool, MediaPoolSpec, MediaPoolStatus};
pub use shared::{NodeCapacity, PortRange};

/// The API group of every Conclave kind.
pub const GROUP: &str = "conclave.dev";
/// The API version of every Conclave kind.
pub const VERSION: &str = "v1alpha1";

/// Upper bound on participants one media node may be sized for, and so on a conference's
/// `maxParticipants`. One webrtc peer connection per participant, each with its own UDP
/// port and forwarding tasks, keeps a single SFU process well below this on real hardware.
pub const PARTICIPANTS_CEILING: u32 = 1000;
/// Upper bound on rooms one media node may be sized for.
pub const ROOMS_CEILING: u32 = 500;

/// Every custom resource definition, in the order they are written out.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    [MediaPool::crd(), MediaNode::crd(), Conference::crd()]
        .into_iter()
        .map(without_unknown_formats)
        .collect()
}

/// Removes the integer formats schemars emits for Rust's unsigned types (`uint16`,
/// `uint32`, ...), which the API server does not know and warns about on every apply; the
/// bounds (`minimum`, `maximum`) already say what the field accepts.
fn without_unknown_formats(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if map
                    .get("format")
                    .and_then(|f| f.as_str())
                    .is_some_and(|f| f.starts_with("uint") || f == "int8" || f == "int16")
                {
                    map.remove("format");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    // A CRD always serialises, and removing a format keeps it a valid CRD.
    let mut value = serde_json::to_value(&crd).expect("CRD serialises");
    strip(&mut value);
    serde_json::from_value(value).expect("CRD without formats deserialises")
}
