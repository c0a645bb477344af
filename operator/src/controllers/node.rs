//! The node controller: for each MediaNode, keeps its Pod, publishes its addresses and
//! signaling URL from the Pod and its Kubernetes Node, and drives its phase with conditions
//! and an Event on every transition.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use conclave_crds::node::NodeAddresses;
use conclave_crds::pool::Exposure;
use conclave_crds::shared::set_condition;
use conclave_crds::{MediaNode, MediaNodePhase, MediaNodeStatus, MediaPool, labels};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::{apply_params, apply_status, event, paced};
use crate::decide::disruption::{DisruptionObservation, drain_cause};
use crate::decide::lifecycle::{NodeObservation, PodObservation, node_phase};
use crate::decide::node_status::{
    DrainProgress, NodeFacts, node_step, should_create_pod, startup_seconds,
};
use crate::decide::pool_spec;
use crate::decide::reachability::{
    self, AddressOrigin, ProbeRecord, ProbeTarget, Reachability, Unanswered, Unresolved,
};
use crate::decide::signaling::{Signaling, signaling_url};
use crate::error::{KubeContext, Result, deleted};
use crate::resources::media_node::{
    PodSettings, disruption_budget, drain_patch, drained_as_surplus, media_node_pod,
};
use crate::resources::node_service::{Reach, needs_apply, node_service, reach};
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
    let spec_runs = pool_spec::problems(&pool.spec).is_empty();
    if should_create_pod(current, pod.is_some(), node.spec.draining, spec_runs) {
        pod = Some(Arc::new(create_pod(&ctx, &node, &pool).await?));
    }
    if pod.is_some() {
        ensure_disruption_budget(&ctx, &node, &pool).await?;
    }
    let reach = if pod.is_some() {
        ensure_node_service(&ctx, &node, &pool).await?
    } else {
        None
    };
    let (reach, unresolved) = resolve_load_balancer_host(&ctx, &node, reach).await;
    let kube_node = pod
        .as_ref()
        .and_then(|p| p.spec.as_ref()?.node_name.clone())
        .and_then(|n| ctx.caches.kube_nodes.get(&ObjectRef::new(&n)));
    let addresses = addresses(
        &node,
        &pool,
        pod.as_deref(),
        kube_node.as_deref(),
        reach.as_ref(),
    );
    let t = now();
    let observed_pod = pod.as_deref().map(observe_pod);
    let public_ip = addresses
        .public
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
    let probe_target = public_ip
        .zip(addresses.udp_port)
        .map(|(ip, port)| ProbeTarget {
            udp: std::net::SocketAddr::new(ip, port),
            tcp: addresses
                .tcp_port
                .map(|tcp| std::net::SocketAddr::new(ip, tcp)),
        })
        .filter(|_| observed_pod.is_some_and(|p| p.ready));
    let reachability = probe_address(&ctx, node.as_ref(), probe_target, secs(&t)).await;
    let timeout = i64::from(pool.spec.media_node.heartbeat_timeout_seconds);
    let heartbeat_age = ctx.heartbeat(&node).map(|h| secs(&t) - h);
    // A node drained as surplus may be taken back, so a disruption still marks it (with its
    // own reason) to keep it drained.
    let disrupted = if !node.spec.draining || drained_as_surplus(&node) {
        start_drain(&ctx, &node, pod.as_deref(), kube_node.as_deref()).await?
    } else {
        false
    };
    let draining = node.spec.draining || disrupted;
    let reserved = lock(&ctx.ledger).reserved_on(&key(node.as_ref())).total();
    let load = old.load.clone().unwrap_or_default();
    let hosting = reserved.rooms > 0 || load.participants > 0 || load.rooms > 0;
    let stale = heartbeat_age.is_some_and(|a| a > timeout);
    let pool_stalled = stale && ctx.heartbeats_stalled(&pool, secs(&t));
    let verdict = node_phase(&NodeObservation {
        current,
        draining,
        pod: observed_pod,
        has_address: addresses.public.is_some(),
        reachability,
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
        draining_since: draining.then(|| old.draining_since.clone().unwrap_or_else(|| t.clone())),
        startup_seconds: startup_seconds(
            old.startup_seconds,
            current,
            verdict.phase,
            node.metadata.creation_timestamp.as_ref().map(secs),
            secs(&t),
        ),
        load: None,
        last_heartbeat: None,
        watches_conference_status: None,
        conditions: old.conditions.clone(),
    };
    if !draining {
        // A drain taken back leaves no Draining condition behind.
        status
            .conditions
            .retain(|c| c.type_ != labels::condition::DRAINING);
    }
    let step = node_step(&NodeFacts {
        verdict,
        pool_stalled,
        heartbeat_age,
        heartbeat_timeout: timeout,
        reachability,
        probe_target,
        address_origin: address_origin(
            &node,
            pool.spec.media_node.exposure,
            kube_node.as_deref(),
            reach.as_ref(),
            unresolved,
        ),
        draining: draining.then(|| DrainProgress {
            rooms: reserved.rooms,
            deadline: status.draining_since.as_ref().map(secs).unwrap_or(0)
                + i64::from(pool.spec.scaling.drain_timeout_seconds),
            evacuation_rate: pool.spec.scaling.evacuation_rate,
        }),
    });
    for c in &step.conditions {
        set_condition(
            &mut status.conditions,
            c.type_,
            c.ok,
            c.reason,
            &c.message,
            None,
            &t,
        );
    }
    if step.release_budget {
        lock(&ctx.budgets_applied).remove(&key(node.as_ref()));
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
    Ok(Action::requeue(Duration::from_secs(step.recheck_seconds)))
}

/// Probes the node's published address when due and returns what is known of it.
async fn probe_address(
    ctx: &Context,
    node: &MediaNode,
    target: Option<ProbeTarget>,
    now: i64,
) -> Reachability {
    let node_key = key(node);
    let last = lock(&ctx.probes).get(&node_key).copied();
    let Some(target) = target else {
        return Reachability::Unknown;
    };
    if !ctx.config.probe_media_addresses {
        return Reachability::Assumed;
    }
    if !reachability::probe_due(last.as_ref(), target, now) {
        return reachability::reachability(last.as_ref(), Some(target));
    }
    let (udp_answered, tcp_answered) =
        tokio::join!(crate::probe::answers_binding(target.udp), async {
            match target.tcp {
                Some(tcp) => crate::probe::answers_binding_over_tcp(tcp).await,
                None => true,
            }
        });
    let unanswered = Unanswered::of(udp_answered, tcp_answered);
    if last.is_none_or(|l| l.unanswered != unanswered || l.target != target) {
        info!(node = %node.name_any(), %target, ?unanswered, "probed the media node's published address");
    }
    let record = ProbeRecord {
        target,
        unanswered,
        at: now,
    };
    lock(&ctx.probes).insert(node_key, record);
    reachability::reachability(Some(&record), Some(target))
}

/// The status fields the operator owns, for change detection (timestamps of conditions are
/// kept by `set_condition` when nothing else changed).
fn operator_view(s: &MediaNodeStatus) -> MediaNodeStatus {
    MediaNodeStatus {
        load: None,
        last_heartbeat: None,
        watches_conference_status: None,
        ..s.clone()
    }
}

/// Applies the PodDisruptionBudget of the node's pod, once per node and operator process.
async fn ensure_disruption_budget(ctx: &Context, node: &MediaNode, pool: &MediaPool) -> Result<()> {
    let node_key = key(node);
    if lock(&ctx.budgets_applied).contains(&node_key) {
        return Ok(());
    }
    let budget = disruption_budget(node, pool);
    Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &node_key.0)
        .patch(&node_key.1, &apply_params(), &Patch::Apply(&budget))
        .await
        .action(|| {
            format!(
                "applying the PodDisruptionBudget of media node {}",
                node_key.1
            )
        })?;
    lock(&ctx.budgets_applied).insert(node_key);
    Ok(())
}

/// Keeps the Service of the node's pod as its pool's exposure wants it (applied when missing
/// or changed, deleted with HostPort) and returns where clients reach the node through it;
/// None with HostPort.
async fn ensure_node_service(
    ctx: &Context,
    node: &MediaNode,
    pool: &MediaPool,
) -> Result<Option<Reach>> {
    let (ns, name) = key(node);
    let exposure = pool.spec.media_node.exposure;
    let cached = ctx
        .caches
        .node_services
        .get(&ObjectRef::new(&name).within(&ns));
    let api = Api::<Service>::namespaced(ctx.client.clone(), &ns);
    if exposure == Exposure::HostPort {
        if cached.is_some() {
            deleted(api.delete(&name, &Default::default()).await)
                .action(|| format!("removing the Service of media node {name}"))?;
        }
        return Ok(None);
    }
    let wanted = node_service(node, pool);
    if !needs_apply(&wanted, cached.as_deref()) {
        return Ok(cached.map(|s| reach(&s, exposure)));
    }
    let applied = api
        .patch(&name, &apply_params(), &Patch::Apply(&wanted))
        .await
        .action(|| format!("applying the Service of media node {name}"))?;
    let reached = reach(&applied, exposure);
    info!(node = %name, ?exposure, ?reached, "applied the media node's Service");
    Ok(Some(reached))
}

/// Sets `spec.draining` when the pod is being deleted or its Kubernetes node is leaving (see
/// `decide::disruption`); true when it did.
async fn start_drain(
    ctx: &Context,
    node: &MediaNode,
    pod: Option<&Pod>,
    kube_node: Option<&Node>,
) -> Result<bool> {
    let spec = kube_node.and_then(|n| n.spec.as_ref());
    let observed = DisruptionObservation {
        pod_terminating: pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()),
        node_unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        node_taints: spec
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.effect != "PreferNoSchedule")
            .map(|t| t.key)
            .collect(),
    };
    let Some(cause) = drain_cause(&observed) else {
        return Ok(false);
    };
    let name = node.name_any();
    let api: Api<MediaNode> =
        Api::namespaced(ctx.client.clone(), &node.namespace().unwrap_or_default());
    let patch = drain_patch(cause.reason());
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .action(|| format!("draining media node {name}"))?;
    let why = match kube_node {
        Some(k) if cause != crate::decide::disruption::DrainCause::PodTerminating => {
            format!(
                "Kubernetes node {} is cordoned or being removed",
                k.name_any()
            )
        }
        _ => "its pod is being deleted".to_owned(),
    };
    info!(node = %name, reason = cause.reason(), "draining media node: {why}");
    event(
        ctx,
        node,
        false,
        cause.reason(),
        format!("draining: {why}; conferences move at the pool's evacuation rate"),
    )
    .await;
    Ok(true)
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
        // A pod being deleted still runs while it drains (its grace period covers the drain).
        ended: matches!(phase, "Failed" | "Succeeded"),
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

/// Where clients reach media node `node`: its Kubernetes Node's public address, on the pool's
/// ports; or, behind its Service (`reach`), on the node ports it was given, or at its load
/// balancer's address (nothing is published before they are known).
fn addresses(
    node: &MediaNode,
    pool: &MediaPool,
    pod: Option<&Pod>,
    kube_node: Option<&Node>,
    reach: Option<&Reach>,
) -> NodeAddresses {
    let tpl = &pool.spec.media_node;
    let (public, ports) = match reach {
        None => (kube_node.and_then(public_address), None),
        Some(Reach::NodePorts(ports)) => (kube_node.and_then(public_address), Some(*ports)),
        Some(Reach::LoadBalancer { ip, ports, .. }) => (Some(ip.clone()), Some(*ports)),
        Some(Reach::LoadBalancerHost { .. } | Reach::Pending) => (None, None),
    };
    let internal = pod.and_then(|p| p.status.as_ref()?.pod_ip.clone());
    let signaling = match &pool.spec.signaling {
        None => Signaling::Plain,
        Some(tls) => Signaling::Tls {
            domain: &tls.domain,
            usable: pool.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == labels::condition::SIGNALING_TLS && c.status == "True")
            }),
        },
    };
    let published = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref()?.signaling_url.as_deref());
    let signaling_url = signaling_url(
        &node.name_any(),
        public.as_deref(),
        ports.map_or(tpl.signaling_port, |p| p.signaling),
        signaling,
        published,
    );
    NodeAddresses {
        public,
        internal,
        signaling_url,
        udp_port: Some(ports.map_or(tpl.udp_port(), |p| p.udp)),
        tcp_port: match ports {
            Some(p) => p.tcp,
            None => tpl.tcp_port,
        },
    }
}

/// A load balancer that named a host is reached at an address the name resolves to
/// (`reachability::host_address`: the next one after a published address whose probe went
/// unanswered); one that resolves to none stays pending, and why comes back for the node's
/// condition.
async fn resolve_load_balancer_host(
    ctx: &Context,
    node: &MediaNode,
    reach: Option<Reach>,
) -> (Option<Reach>, Option<Unresolved>) {
    let Some(Reach::LoadBalancerHost { hostname, ports }) = reach else {
        return (reach, None);
    };
    let published: Option<IpAddr> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref()?.public.as_deref()?.parse().ok());
    let unanswered = lock(&ctx.probes)
        .get(&key(node))
        .is_some_and(|r| Some(r.target.udp.ip()) == published && r.unanswered.is_some());
    let chosen = ctx.dns.addresses(&hostname).await.and_then(|resolved| {
        reachability::host_address(&resolved, published, unanswered)
            .ok_or_else(|| crate::dns::NO_ADDRESS.to_owned())
    });
    match chosen {
        Ok(ip) => (
            Some(Reach::LoadBalancer {
                ip: ip.to_string(),
                ports,
                hostname: Some(hostname),
            }),
            None,
        ),
        Err(why) => (Some(Reach::Pending), Some(Unresolved { hostname, why })),
    }
}

/// Where the node's published address comes from, for its `AddressReachable` condition.
fn address_origin(
    node: &MediaNode,
    exposure: Exposure,
    kube_node: Option<&Node>,
    reach: Option<&Reach>,
    unresolved: Option<Unresolved>,
) -> AddressOrigin {
    match reach {
        Some(Reach::LoadBalancer { hostname, .. }) => AddressOrigin::LoadBalancer {
            service: node.name_any(),
            hostname: hostname.clone(),
        },
        Some(Reach::LoadBalancerHost { .. } | Reach::Pending)
            if exposure == Exposure::LoadBalancer =>
        {
            AddressOrigin::AwaitingLoadBalancer {
                service: node.name_any(),
                unresolved,
            }
        }
        _ => AddressOrigin::KubeNode(kube_node.map(|n| n.name_any())),
    }
}
