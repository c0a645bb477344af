//! Objects the operator tests create: pools on ports of their own, conferences, and queries
//! of what the operator made of them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use conclave_crds::{Conference, MediaNode, MediaNodePhase, MediaPool, labels};
use conclave_testenv::images::Image;
use conclave_testenv::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use rand::Rng;
use serde_json::{Value, json};

/// Ports of one pool on the host network of the local Nodes: distinct for every pool of a
/// test binary, so tests running side by side never collide.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub signaling: u16,
    pub udp: u16,
    pub turn: u16,
    pub relay_min: u16,
    pub relay_max: u16,
}

/// The next free set of ports (40 sets per test binary, starting at a random one).
pub fn ports() -> Ports {
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let slot = NEXT
        .get_or_init(|| AtomicU16::new(rand::rng().random_range(0..40)))
        .fetch_add(1, Ordering::Relaxed)
        % 40;
    Ports {
        signaling: 31000 + slot * 10,
        udp: 50000 + slot * 200,
        turn: 34000 + slot * 10,
        relay_min: 40000 + slot * 100,
        relay_max: 40099 + slot * 100,
    }
}

/// A MediaPool named `name` on `ports`, TURN off, with `spec` merged over the defaults here.
pub fn pool(name: &str, ports: Ports, spec: Value) -> MediaPool {
    let mut manifest = json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "MediaPool", "metadata": {"name": name},
        "spec": {
            "nodeCapacity": {"participants": 50, "rooms": 10},
            "scaling": {"minNodes": 1, "maxNodes": 3, "bufferParticipants": 10},
            "mediaNode": {
                "image": Image::MediaNode.reference(),
                "signalingPort": ports.signaling,
                "udpPort": ports.udp,
                "heartbeatTimeoutSeconds": 6
            },
            "turn": {
                "enabled": false, "port": ports.turn,
                "relayPortRange": {"min": ports.relay_min, "max": ports.relay_max}
            }
        }
    });
    merge(&mut manifest["spec"], spec);
    serde_json::from_value(manifest).expect("a MediaPool")
}

/// A Conference of `pool` for `max` participants, with `spec` merged over that.
pub fn conference(name: &str, pool: &str, max: u32, spec: Value) -> Conference {
    let mut manifest = json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": name}, "spec": {"pool": pool, "maxParticipants": max}
    });
    merge(&mut manifest["spec"], spec);
    serde_json::from_value(manifest).expect("a Conference")
}

/// `t` as a Conference's `startTime` or `endTime` (whole seconds, as the operator reads them).
pub fn rfc3339(t: k8s_openapi::jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Creates `object` in the test namespace.
pub async fn create<K>(ns: &TestNamespace, object: &K) -> K
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    ns.api::<K>()
        .create(&PostParams::default(), object)
        .await
        .unwrap_or_else(|e| panic!("creating {object:?}: {e}"))
}

/// Media nodes of the namespace that are Ready and not draining.
pub async fn ready_nodes(ns: &TestNamespace) -> Vec<MediaNode> {
    all_nodes(ns)
        .await
        .into_iter()
        .filter(|n| {
            n.status.as_ref().and_then(|s| s.phase) == Some(MediaNodePhase::Ready)
                && !n.spec.draining
        })
        .collect()
}

/// Waits until exactly `count` media nodes of the namespace are Ready and not draining, and
/// returns them; fails the test with the cluster's logs when that takes over 90 s.
pub async fn wait_for_ready_nodes(
    env: &TestEnv,
    ns: &TestNamespace,
    count: usize,
) -> Vec<MediaNode> {
    wait::until(
        &format!("{count} Ready media nodes"),
        Duration::from_secs(90),
        || async {
            let ready = ready_nodes(ns).await;
            (ready.len() == count).then_some(ready)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", super::report(env, ns)))
}

/// Marks the media node `name` draining, as a person would with kubectl.
pub async fn drain(ns: &TestNamespace, name: &str) {
    ns.api::<MediaNode>()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"draining": true}})),
        )
        .await
        .unwrap_or_else(|e| panic!("draining {name}: {e}"));
}

/// Every media node of the namespace.
pub async fn all_nodes(ns: &TestNamespace) -> Vec<MediaNode> {
    ns.api::<MediaNode>()
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Whether `pod`'s Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The media-node pods of the namespace as (all, Ready) once every one runs `image`; `None`
/// while any runs another (or they cannot be listed).
pub async fn media_pods_on(ns: &TestNamespace, image: &str) -> Option<(usize, usize)> {
    let pods = ns.api::<Pod>().list(&ListParams::default()).await.ok()?;
    let media: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| {
            p.labels().get(labels::COMPONENT).map(String::as_str)
                == Some(labels::COMPONENT_MEDIA_NODE)
        })
        .collect();
    let image_of = |p: &Pod| p.spec.as_ref()?.containers.first()?.image.clone();
    if media.iter().any(|p| image_of(p).as_deref() != Some(image)) {
        return None;
    }
    Some((media.len(), media.iter().filter(|p| pod_ready(p)).count()))
}

/// Merges `patch` into `base` (objects key by key, anything else replaced).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}
