//! The node controller: for each MediaNode, keeps its Pod, publishes its addresses and
//! signaling URL from the Pod and its Kubernetes Node, and drives its phase with conditions
//! and an Event on every transition.

use std::sync::Arc;
use std::time::Duration;

use conclave_crds::node::NodeAddresses;
use conclave_crds::shared::set_condition;
use conclave_crds::{MediaNode, MediaNodePhase, MediaNodeStatus, MediaPool, labels};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::{apply_params, apply_status, event, paced};
use crate::decide::lifecycle::{NodeObservation, PodObservation, node_phase};
use crate::decide::pool_spec;
use crate::error::{KubeContext, Result};
use crate::resources::media_node::{PodSettings, media_node_pod};
use crate::state::{Context, key, lock};
use crate::time::{now, secs};

/// Reconciles one MediaNode.
pub async fn reconcile(node: Arc<MediaNode>, ctx: Arc<Context>) -> Result<Action> {
    let ns = node.namespace().unwrap_or_default();
    if let Some(action) = paced(&ctx.node_pacer, node.as_ref()) {
        return Ok(action);
    }
    let _timer = ctx.metrics.reconcile("node");
    let Some(pool) = ctx.pool(&ns, &node.spec.pool) else {
        // The pool's cache may not have caught up (an operator that just started, a pool
        // created a moment ago); a pool event would not trigger this node again.
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let old = node.status.clone().unwrap_or_default();
    let mut pod = ctx
        .caches
        .pods
        .get(&ObjectRef::new(&node.name_any()).within(&ns));
    let current = old.phase;
    if pod.is_none()
        && matches!(current, None | Some(MediaNodePhase::Pending))
        && !node.spec.draining
        && pool_spec::problems(&pool.spec).is_empty()
    {
        pod = Some(Arc::new(create_pod(&ctx, &node, &pool).await?));
    }
    let kube_node = pod
        .as_ref()
        .and_then(|p| p.spec.as_ref()?.node_name.clone())
        .and_then(|n| ctx.caches.kube_nodes.get(&ObjectRef::new(&n)));
    let addresses = addresses(&node, &pool, pod.as_deref(), kube_node.as_deref());
    let t = now();
    let timeout = i64::from(pool.spec.media_node.heartbeat_timeout_seconds);
    let heartbeat_age = old.last_heartbeat.as_ref().map(|h| secs(&t) - secs(h));
    let reserved = lock(&ctx.ledger).reserved_on(&key(node.as_ref()));
    let load = old.load.clone().unwrap_or_default();
    let hosting = reserved.rooms > 0 || load.participants > 0 || load.rooms > 0;
    let stale = heartbeat_age.is_some_and(|a| a > timeout);
    let pool_stalled = stale && ctx.heartbeats_stalled(&pool, secs(&t));
    let verdict = node_phase(&NodeObservation {
        current,
        draining: node.spec.draining,
        pod: pod.as_deref().map(observe_pod),
        has_address: addresses.public.is_some(),
        heartbeat_age,
        heartbeat_timeout: timeout,
        hosting,
        reserved: reserved.rooms > 0,
        pool_stalled,
    });

    let mut status = MediaNodeStatus {
        phase: Some(verdict.phase),
        pod_name: pod.as_ref().map(|p| p.name_any()),
        node_name: kube_node.as_ref().map(|n| n.name_any()),
        addresses: Some(addresses),
        reserved_participants: Some(reserved.participants),
        draining_since: node
            .spec
            .draining
            .then(|| old.draining_since.clone().unwrap_or_else(|| t.clone())),
        load: None,
        last_heartbeat: None,
        conditions: old.conditions.clone(),
    };
    let healthy = matches!(
        verdict.phase,
        MediaNodePhase::Ready | MediaNodePhase::Draining
    ) && !pool_stalled;
    set_condition(
        &mut status.conditions,
        labels::condition::HEALTHY,
        healthy,
        verdict.reason,
        &health_message(verdict.reason, heartbeat_age, timeout),
        None,
        &t,
    );
    if node.spec.draining {
        let rooms = reserved.rooms;
        let deadline = status.draining_since.as_ref().map(secs).unwrap_or(0)
            + i64::from(pool.spec.scaling.drain_timeout_seconds);
        let message = if rooms == 0 {
            "no conferences left; the pod is being removed".to_owned()
        } else if pool.spec.scaling.evacuation_rate == 0 {
            format!(
                "{rooms} conferences left; evacuation is off (evacuationRate 0), waiting for them to end until {}",
                crate::time::at(deadline).0
            )
        } else {
            format!(
                "{rooms} conferences left, moving at {} per minute where other nodes have room; the pod is removed at {} at the latest",
                pool.spec.scaling.evacuation_rate,
                crate::time::at(deadline).0
            )
        };
        set_condition(
            &mut status.conditions,
            labels::condition::DRAINING,
            true,
            "Draining",
            &message,
            None,
            &t,
        );
    }

    if operator_view(&old) != operator_view(&status) {
        apply_status(&ctx, node.as_ref(), &status).await?;
        if current != Some(verdict.phase) {
            let from = current.map_or("none".to_owned(), |p| format!("{p:?}"));
            info!(node = %node.name_any(), pool = %pool.name_any(), from, to = ?verdict.phase, reason = verdict.reason, "media node phase");
            let warning = verdict.phase == MediaNodePhase::Failed;
            event(
                &ctx,
                node.as_ref(),
                warning,
                verdict.reason,
                format!("{from} -> {:?}", verdict.phase),
            )
            .await;
        }
    }
    // Recheck when the heartbeat would go stale, so a silent node is failed in time.
    let recheck = heartbeat_age.map_or(10, |age| (timeout - age + 1).clamp(1, 30));
    Ok(Action::requeue(Duration::from_secs(recheck as u64)))
}

/// The status fields the operator owns, for change detection (timestamps of conditions are
/// kept by `set_condition` when nothing else changed).
fn operator_view(s: &MediaNodeStatus) -> MediaNodeStatus {
    MediaNodeStatus {
        load: None,
        last_heartbeat: None,
        ..s.clone()
    }
}

fn health_message(reason: &str, age: Option<i64>, timeout: i64) -> String {
    match reason {
        "HeartbeatStale" => format!(
            "no heartbeat for {}s (timeout {timeout}s)",
            age.unwrap_or(0)
        ),
        "HeartbeatsStalled" => format!(
            "no heartbeat for {}s (timeout {timeout}s), like most of its pool: treated as a control-plane problem, so the node is not failed and its conferences stay; see the pool's Heartbeats condition",
            age.unwrap_or(0)
        ),
        "PodGone" => "the media-node pod disappeared after starting; a replacement node is created"
            .to_owned(),
        "PodFailed" => "the media-node pod ended".to_owned(),
        "Ready" => "the media node runs, heartbeats and has a public address".to_owned(),
        other => other.to_owned(),
    }
}

fn observe_pod(pod: &Pod) -> PodObservation {
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or("Pending");
    PodObservation {
        scheduled: pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()),
        ready: status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        ended: matches!(phase, "Failed" | "Succeeded") || pod.metadata.deletion_timestamp.is_some(),
    }
}

async fn create_pod(ctx: &Context, node: &MediaNode, pool: &MediaPool) -> Result<Pod> {
    let settings = PodSettings {
        log: &ctx.config.media_node_log,
    };
    let pod = media_node_pod(node, pool, &settings);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &node.namespace().unwrap_or_default());
    api.patch(&node.name_any(), &apply_params(), &Patch::Apply(&pod))
        .await
        .action(|| format!("creating pod of media node {}", node.name_any()))
}

/// The public address of a Kubernetes Node: the `conclave.dev/public-ip` annotation, else
/// its ExternalIP, else its InternalIP.
pub fn public_address(node: &Node) -> Option<String> {
    if let Some(ip) = node.annotations().get(labels::PUBLIC_IP) {
        return Some(ip.clone());
    }
    let addrs = node.status.as_ref()?.addresses.clone().unwrap_or_default();
    ["ExternalIP", "InternalIP"].iter().find_map(|t| {
        addrs
            .iter()
            .find(|a| a.type_ == *t)
            .map(|a| a.address.clone())
    })
}

fn addresses(
    node: &MediaNode,
    pool: &MediaPool,
    pod: Option<&Pod>,
    kube_node: Option<&Node>,
) -> NodeAddresses {
    let public = kube_node.and_then(public_address);
    let internal = pod.and_then(|p| p.status.as_ref()?.pod_ip.clone());
    let port = pool.spec.media_node.signaling_port;
    let signaling_url = match (&pool.spec.signaling, &public) {
        (Some(ingress), _) => Some(format!("wss://{}/{}/rtc", ingress.host, node.name_any())),
        (None, Some(ip)) if ip.contains(':') => Some(format!("ws://[{ip}]:{port}/rtc")),
        (None, Some(ip)) => Some(format!("ws://{ip}:{port}/rtc")),
        (None, None) => None,
    };
    NodeAddresses {
        public,
        internal,
        signaling_url,
        udp_port_range: Some(pool.spec.media_node.udp_port_range),
    }
}
