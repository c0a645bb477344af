//! The pool controller: for each MediaPool, keeps its Secret, sizes its fleet of MediaNodes
//! with the autoscaler (create, drain, delete), replaces nodes of an older pod template with
//! the rollout, runs its TURN relays, and publishes the pool status. It gathers the facts,
//! takes the step `decide::pool_step` gives, and applies it. Triggered by changes of the
//! pool, its nodes (load included) and its conferences.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_crds::capacity::turn_replicas;
use conclave_crds::pool::TurnStatus;
use conclave_crds::shared::{find_condition, set_condition};
use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaPool, MediaPoolStatus, labels};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::conference::reservation_of;
use super::node::public_address;
use super::{apply_params, apply_status, event, paced};
use crate::decide::autoscale::{ScalingPolicy, WaitingConference};
use crate::decide::certificate::{self, CERT_FILE, KEY_FILE, Names, SecretFiles};
use crate::decide::pool_conditions::{PublishedAddress, RelayTls, SignalingTls, TurnPeers};
use crate::decide::pool_step::{Drain, PoolEvent, PoolFacts, PoolStep, Relays, Scaling, pool_step};
use crate::decide::rollout::RolloutPolicy;
use crate::decide::signaling::certificate_problem;
use crate::decide::{NodeView, UnixSeconds, pool_spec};
use crate::error::{KubeContext, Result, deleted, is_conflict, is_not_found};
use crate::index::ConferenceKey;
use crate::ledger::Ledger;
use crate::resources::content_hash;
use crate::resources::identity;
use crate::resources::media_node::{drain_patch, new_media_node, take_back_patch};
use crate::resources::secret::{missing_keys, pool_secret};
use crate::resources::turn::{turn_deployment, turn_service, turn_urls};
use crate::resources::turn_tls::{self, Serving};
use crate::state::{Context, key, lock};
use crate::time::{at, now, secs};

/// Reconciles one MediaPool: gathers its facts, takes the step `decide::pool_step` gives, and
/// applies it.
pub async fn reconcile(pool: Arc<MediaPool>, ctx: Arc<Context>) -> Result<Action> {
    if let Some(action) = paced(&ctx.pool_pacer, pool.as_ref()) {
        return Ok(action);
    }
    let _timer = ctx.metrics.reconcile("pool");
    let t = now();
    let old = pool.status.clone().unwrap_or_default();
    // Written before deciding, whatever the step: the pool's Secret (its problem is a fact of
    // the step) and the media nodes' identity, which every node of the pool needs.
    let secret_problem = ensure_secret(&ctx, &pool).await?;
    ensure_identity(&ctx, &pool).await?;

    let facts = gather(&ctx, &pool, &old, secret_problem, secs(&t)).await?;
    record_phases(&ctx, &pool, &facts.nodes);
    let step = pool_step(&facts);

    apply_plan(&ctx, &pool, &step.scaling).await?;
    let turn = match &step.relays {
        Relays::Reconcile { certificate } => {
            reconcile_turn(&ctx, &pool, &facts.nodes, certificate.as_deref()).await?
        }
        Relays::Untouched => old.turn.clone(),
    };
    let status = pool_status(&pool, &step, turn, &old, &t);
    for e in &step.events {
        match e {
            PoolEvent::HeartbeatsStalled(message) => {
                tracing::warn!(pool = %pool.name_any(), %message, "media-node heartbeats stalled")
            }
        }
        event(
            &ctx,
            pool.as_ref(),
            e.warning(),
            e.reason(),
            e.message().to_owned(),
        )
        .await;
    }
    if status != old {
        apply_status(&ctx, pool.as_ref(), &status).await?;
    }
    Ok(Action::requeue(Duration::from_secs(step.recheck_seconds)))
}

/// Everything `pool_step` looks at, read from the caches, the ledger and the TLS Secrets.
async fn gather(
    ctx: &Context,
    pool: &MediaPool,
    old: &MediaPoolStatus,
    secret_problem: Option<String>,
    now: UnixSeconds,
) -> Result<PoolFacts> {
    // One look at the ledger for both: a conference it holds is placed even before the
    // conference watch shows the placement, and counting it as waiting too would start nodes
    // for it a second time (at the 9:00 burst of bookings, a fifth of the pool's new nodes).
    let (nodes, waiting) = {
        let ledger = lock(&ctx.ledger);
        (
            ctx.pool_views(pool, &ledger),
            waiting_conferences(ctx, pool, &ledger),
        )
    };
    let in_flight = nodes_in_flight(ctx, pool, &nodes);
    Ok(PoolFacts {
        scaling: scaling_policy(pool),
        rollout: RolloutPolicy {
            max_surge: pool.spec.rollout.max_surge,
            max_unavailable: pool.spec.rollout.max_unavailable,
        },
        heartbeat_timeout: i64::from(pool.spec.media_node.heartbeat_timeout_seconds),
        nodes,
        waiting,
        in_flight,
        surplus_since: old.surplus_since.as_ref().map(secs),
        node_startup_seconds: old.node_startup_seconds.map(i64::from),
        heartbeats_flowed: find_condition(&old.conditions, labels::condition::HEARTBEATS)
            .is_none_or(|c| c.status == "True"),
        secret_problem,
        spec_problems: pool_spec::problems(&pool.spec),
        signaling: signaling_tls(ctx, pool).await?,
        relay_tls: turn_tls(ctx, pool).await?,
        turn_peers: pool.spec.turn.enabled.then(|| turn_peers(ctx, pool)),
        now,
    })
}

fn scaling_policy(pool: &MediaPool) -> ScalingPolicy {
    let s = &pool.spec.scaling;
    ScalingPolicy {
        min_nodes: s.min_nodes,
        max_nodes: s.max_nodes,
        buffer_participants: s.buffer_participants,
        warmup_seconds: i64::from(s.warmup_seconds),
        scale_down_delay_seconds: i64::from(s.scale_down_delay_seconds),
        drain_timeout_seconds: i64::from(s.drain_timeout_seconds),
        node_capacity: pool.spec.node_capacity,
    }
}

/// Conferences of this pool not yet placed (and not ended) and holding no reservation in
/// `ledger`: demand the autoscaler must meet. A conference naming a region counts for the one
/// pool of the region that grows for it (`Context::growing_pool`).
fn waiting_conferences(ctx: &Context, pool: &MediaPool, ledger: &Ledger) -> Vec<WaitingConference> {
    let ns = pool.namespace().unwrap_or_default();
    let mut grows_here = std::collections::HashMap::new();
    ctx.indexed_conferences(&ns, &ConferenceKey::Unplaced)
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| is_waiting(c) && ledger.node_of(&key(c.as_ref())).is_none())
        .filter(|c| match (&c.spec.pool, &c.spec.region) {
            (Some(p), _) => *p == pool.name_any(),
            // Which pool grows is the same for every conference of a region: decided once.
            (None, Some(region)) if pool.spec.region.as_ref() == Some(region) => {
                *grows_here.entry(region.clone()).or_insert_with(|| {
                    ctx.growing_pool(c)
                        .is_some_and(|p| p.name_any() == pool.name_any())
                })
            }
            (None, _) => false,
        })
        .map(|c| reservation_of(&c))
        .collect()
}

fn is_waiting(c: &Conference) -> bool {
    let status = c.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(ConferencePhase::Pending);
    status.media_node.is_none()
        && !matches!(phase, ConferencePhase::Ended | ConferencePhase::Failed)
}

/// Nodes created earlier that the cache does not show yet; forgets them once seen or after
/// 30 seconds.
fn nodes_in_flight(ctx: &Context, pool: &MediaPool, views: &[NodeView]) -> u32 {
    let mut creating = lock(&ctx.creating);
    let Some(names) = creating.get_mut(&key(pool)) else {
        return 0;
    };
    names.retain(|name, at| {
        !views.iter().any(|v| &v.name == name) && at.elapsed() < Duration::from_secs(30)
    });
    u32::try_from(names.len()).unwrap_or(u32::MAX)
}

/// Takes back, creates, drains and deletes media nodes as the step says.
async fn apply_plan(ctx: &Context, pool: &MediaPool, plan: &Scaling) -> Result<()> {
    let ns = pool.namespace().unwrap_or_default();
    let api: Api<MediaNode> = Api::namespaced(ctx.client.clone(), &ns);
    for name in &plan.reclaim {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(take_back_patch()),
        )
        .await
        .action(|| format!("taking back media node {name}"))?;
        info!(pool = %pool.name_any(), node = %name, "taking back a media node drained as surplus");
        event(
            ctx,
            pool,
            false,
            "ScalingUp",
            format!("taking back media node {name}, drained as surplus: capacity is needed again"),
        )
        .await;
    }
    for _ in 0..plan.add {
        let node = new_media_node(pool);
        api.create(
            &PostParams {
                field_manager: Some(labels::OPERATOR_MANAGER.to_owned()),
                ..Default::default()
            },
            &node,
        )
        .await
        .action(|| format!("creating media node for pool {}", pool.name_any()))?;
        lock(&ctx.creating)
            .entry(key(pool))
            .or_default()
            .insert(node.name_any(), Instant::now());
    }
    if plan.add > 0 {
        info!(pool = %pool.name_any(), add = plan.add, desired = plan.desired_nodes, "scaling up");
        event(
            ctx,
            pool,
            false,
            "ScalingUp",
            format!(
                "adding {} media nodes (desired {})",
                plan.add, plan.desired_nodes
            ),
        )
        .await;
    }
    for Drain { node: name, why } in &plan.drain {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(drain_patch(why.reason())),
        )
        .await
        .action(|| format!("draining media node {name}"))?;
        let why_text = why.explanation();
        info!(pool = %pool.name_any(), node = %name, why = why_text, "draining media node");
        event(
            ctx,
            pool,
            false,
            why.reason(),
            format!("draining media node {name}: {why_text}"),
        )
        .await;
    }
    for name in &plan.delete {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => info!(pool = %pool.name_any(), node = %name, "deleted media node"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).action(|| format!("deleting media node {name}")),
        }
    }
    ctx.metrics.scale("reclaim", plan.reclaim.len() as u64);
    ctx.metrics.scale("add", u64::from(plan.add));
    ctx.metrics.scale("drain", plan.drain.len() as u64);
    ctx.metrics.scale("delete", plan.delete.len() as u64);
    Ok(())
}

/// What the TurnPeers condition looks at: the relays' peer policy and the published
/// addresses of the pool's media nodes.
fn turn_peers(ctx: &Context, pool: &MediaPool) -> TurnPeers {
    let ns = pool.namespace().unwrap_or_default();
    let addresses = ctx
        .nodes_of_pool(&ns, &pool.name_any())
        .iter()
        .filter_map(|n| {
            let public = n.status.as_ref()?.addresses.as_ref()?.public.as_deref()?;
            Some(PublishedAddress {
                node: n.name_any(),
                ip: public.parse().ok()?,
            })
        })
        .collect();
    TurnPeers {
        allowed: pool.spec.turn.allowed_peers.clone(),
        allow_loopback: pool.spec.turn.allow_loopback_peers,
        addresses,
    }
}

/// Creates the pool Secret the first time. If it was deleted later, it is not silently
/// recreated (that would rotate the keys under live tokens): the problem is reported, and
/// annotating the pool with `conclave.dev/regenerate-keys` recreates it.
async fn ensure_secret(ctx: &Context, pool: &MediaPool) -> Result<Option<String>> {
    let ns = pool.namespace().unwrap_or_default();
    let name = labels::pool_secret_name(&pool.name_any());
    if let Some(secret) = ctx.caches.secrets.get(&ObjectRef::new(&name).within(&ns)) {
        let missing = missing_keys(&secret);
        return Ok((!missing.is_empty()).then(|| format!("Secret {name} lacks keys {missing:?}; delete it and annotate the pool with conclave.dev/regenerate-keys=true to generate new keys")));
    }
    let first_time = pool
        .status
        .as_ref()
        .and_then(|s| s.observed_generation)
        .is_none();
    let regenerate = pool
        .annotations()
        .contains_key("conclave.dev/regenerate-keys");
    if !first_time && !regenerate {
        return Ok(Some(format!(
            "Secret {name} with the pool's join-token key and TURN secret is missing; restore it, or annotate the pool with conclave.dev/regenerate-keys=true to generate new keys (tokens already issued stop working)"
        )));
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &pool_secret(pool)).await {
        Ok(_) => {
            event(
                ctx,
                pool,
                false,
                "KeysCreated",
                format!("created Secret {name}"),
            )
            .await;
            Ok(None)
        }
        Err(e) if is_conflict(&e) => Ok(None),
        Err(e) => Err(e).action(|| format!("creating Secret {name}")),
    }
}

/// The media nodes' TLS signaling with the Secret `spec.signaling.tlsSecretName` and what
/// keeps it from being served; `None` without `spec.signaling`.
async fn signaling_tls(ctx: &Context, pool: &MediaPool) -> Result<Option<SignalingTls>> {
    let Some(tls) = &pool.spec.signaling else {
        return Ok(None);
    };
    let secret = tls_secret(ctx, pool, &tls.tls_secret_name).await?;
    Ok(Some(SignalingTls {
        secret_name: tls.tls_secret_name.clone(),
        domain: tls.domain.clone(),
        problem: certificate_problem(
            &tls.tls_secret_name,
            &tls.domain,
            secret.as_ref().map(TlsSecret::files),
            k8s_openapi::jiff::Timestamp::now().as_second(),
        ),
    }))
}

/// The relays' TLS, `None` without `spec.turn.tls`.
async fn turn_tls(ctx: &Context, pool: &MediaPool) -> Result<Option<RelayTls>> {
    let Some(tls) = &pool.spec.turn.tls else {
        return Ok(None);
    };
    let secret = tls_secret(ctx, pool, &tls.secret_name).await?;
    let problem = certificate::problem(
        "spec.turn.tls.secretName",
        &tls.secret_name,
        Names::Host {
            host: &tls.host,
            field: "spec.turn.tls.host",
        },
        secret.as_ref().map(TlsSecret::files),
        k8s_openapi::jiff::Timestamp::now().as_second(),
    );
    Ok(Some(match (problem, secret) {
        (None, Some(secret)) => RelayTls::Serving(content_hash(&secret.cert.unwrap_or_default())),
        (problem, _) => RelayTls::Refused(problem.unwrap_or_default()),
    }))
}

/// The two files of a `kubernetes.io/tls` Secret, when present.
struct TlsSecret {
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
}

impl TlsSecret {
    fn files(&self) -> SecretFiles<'_> {
        SecretFiles {
            cert: self.cert.as_deref(),
            key: self.key.as_deref(),
        }
    }
}

/// Reads the TLS Secret `name` of the pool's namespace (`None` when there is none). Read
/// directly, not from a cache: the operator watches only its own Secrets.
async fn tls_secret(ctx: &Context, pool: &MediaPool, name: &str) -> Result<Option<TlsSecret>> {
    let ns = pool.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await
        .action(|| format!("reading TLS Secret {name}"))?;
    Ok(secret.map(|s| {
        let data = s.data.unwrap_or_default();
        TlsSecret {
            cert: data.get(CERT_FILE).map(|b| b.0.clone()),
            key: data.get(KEY_FILE).map(|b| b.0.clone()),
        }
    }))
}

/// Applies the media nodes' ServiceAccount and RoleBinding once per pool generation.
async fn ensure_identity(ctx: &Context, pool: &MediaPool) -> Result<()> {
    let generation = pool.metadata.generation.unwrap_or(0);
    if lock(&ctx.identity_applied).get(&key(pool)) == Some(&generation) {
        return Ok(());
    }
    let ns = pool.namespace().unwrap_or_default();
    let name = identity::media_node_account(&pool.name_any());
    Api::<ServiceAccount>::namespaced(ctx.client.clone(), &ns)
        .patch(
            &name,
            &apply_params(),
            &Patch::Apply(&identity::service_account(pool)),
        )
        .await
        .action(|| format!("applying ServiceAccount {name}"))?;
    let binding = identity::role_binding(pool, &ctx.config.media_node_cluster_role);
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &apply_params(), &Patch::Apply(&binding))
        .await
        .action(|| format!("applying RoleBinding {name}"))?;
    lock(&ctx.identity_applied).insert(key(pool), generation);
    Ok(())
}

/// Runs the pool's TURN relays (serving TLS with `certificate`, the hash of a usable
/// `spec.turn.tls` certificate) and returns their status.
async fn reconcile_turn(
    ctx: &Context,
    pool: &MediaPool,
    views: &[NodeView],
    certificate: Option<&str>,
) -> Result<Option<TurnStatus>> {
    let ns = pool.namespace().unwrap_or_default();
    let name = labels::turn_name(&pool.name_any());
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let t = &pool.spec.turn;
    if !t.enabled {
        if pool.status.as_ref().is_some_and(|s| s.turn.is_some()) {
            for result in [
                deleted(deployments.delete(&name, &DeleteParams::background()).await),
                deleted(services.delete(&name, &DeleteParams::background()).await),
            ] {
                if let Err(e) = result {
                    return Err(e).action(|| format!("removing TURN of pool {}", pool.name_any()));
                }
            }
        }
        return Ok(None);
    }
    let participants: u32 = views.iter().map(|v| v.committed().participants).sum();
    let replicas = turn_replicas(
        participants,
        t.relay_fraction,
        t.allocations_per_replica,
        t.min_replicas,
        t.max_replicas,
    );
    let generation = pool.metadata.generation.unwrap_or(0);
    let present = ctx
        .caches
        .deployments
        .get(&ObjectRef::new(&name).within(&ns))
        .is_some();
    let tls = t
        .tls
        .as_ref()
        .zip(certificate)
        .map(|(tls, certificate)| Serving { tls, certificate });
    let wanted = (generation, replicas, certificate.map(str::to_owned));
    let applied = lock(&ctx.turn_applied).get(&key(pool)).cloned();
    if !present || applied.as_ref() != Some(&wanted) {
        deployments
            .patch(
                &name,
                &apply_params(),
                &Patch::Apply(&turn_deployment(pool, replicas, tls)),
            )
            .await
            .action(|| format!("applying TURN Deployment {name}"))?;
        services
            .patch(&name, &apply_params(), &Patch::Apply(&turn_service(pool)))
            .await
            .action(|| format!("applying TURN Service {name}"))?;
        lock(&ctx.turn_applied).insert(key(pool), wanted);
    }
    let relays = ready_relays(ctx, pool);
    Ok(Some(TurnStatus {
        replicas,
        urls: turn_urls(
            &turn_addresses(ctx, &relays),
            t.port,
            tls.filter(|tls| serves(&relays, tls.certificate))
                .map(|tls| turn_tls::url(tls.tls)),
        ),
    }))
}

/// Public addresses of the Nodes running the Ready relay pods `relays` (they use the host
/// network, as media nodes do).
fn turn_addresses(ctx: &Context, relays: &[Arc<Pod>]) -> Vec<String> {
    let mut addrs: Vec<String> = relays
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .filter_map(|n| ctx.caches.kube_nodes.get(&ObjectRef::new(&n)))
        .filter_map(|n| public_address(&n))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// Whether one of the Ready `relays` serves TLS with the certificate of hash `certificate`
/// (right after TLS is turned on or the certificate renewed, the relays are still being
/// replaced).
fn serves(relays: &[Arc<Pod>], certificate: &str) -> bool {
    relays.iter().any(|p| {
        p.annotations()
            .get(turn_tls::CERTIFICATE_ANNOTATION)
            .map(String::as_str)
            == Some(certificate)
    })
}

/// The Ready TURN pods of `pool`.
fn ready_relays(ctx: &Context, pool: &MediaPool) -> Vec<Arc<Pod>> {
    let ns = pool.namespace();
    ctx.caches
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace() == ns)
        .filter(|p| {
            let l = p.labels();
            l.get(labels::POOL) == Some(&pool.name_any())
                && l.get(labels::COMPONENT).map(String::as_str) == Some(labels::COMPONENT_TURN)
        })
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

/// The pool's status after the step: its figures, the relays' status `turn`, and its
/// conditions set (timestamps kept where nothing changed).
fn pool_status(
    pool: &MediaPool,
    step: &PoolStep,
    turn: Option<TurnStatus>,
    old: &MediaPoolStatus,
    t: &Time,
) -> MediaPoolStatus {
    let f = &step.figures;
    let mut conditions = old.conditions.clone();
    for c in &step.conditions {
        set_condition(
            &mut conditions,
            c.type_,
            c.ok,
            c.reason.as_str(),
            &c.message,
            pool.metadata.generation,
            t,
        );
    }
    conditions.retain(|c| !step.absent.contains(&c.type_.as_str()));
    MediaPoolStatus {
        desired_nodes: f.desired_nodes,
        nodes: f.nodes,
        ready_nodes: f.ready_nodes,
        draining_nodes: f.draining_nodes,
        participants: f.participants,
        reserved_participants: f.reserved_participants,
        capacity: f.capacity,
        updated_nodes: f.updated_nodes,
        surplus_since: f.surplus_since.map(at),
        node_startup_seconds: f.node_startup_seconds.and_then(|s| u32::try_from(s).ok()),
        turn,
        conditions,
        observed_generation: pool.metadata.generation,
    }
}

/// Which pools a conference change concerns.
pub fn pools_of_conference(ctx: &Context, c: &Conference) -> Vec<ObjectRef<MediaPool>> {
    ctx.pools_for(c)
        .iter()
        .map(|p| ObjectRef::from(p.as_ref()))
        .collect()
}

/// Counts nodes by phase for the metrics of `pool`.
fn record_phases(ctx: &Context, pool: &MediaPool, views: &[NodeView]) {
    let ns = pool.namespace().unwrap_or_default();
    for phase in crate::metrics::PHASES {
        let n = views
            .iter()
            .filter(|v| format!("{:?}", v.phase) == phase)
            .count();
        ctx.metrics.nodes(
            &ns,
            &pool.name_any(),
            phase,
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }
}
