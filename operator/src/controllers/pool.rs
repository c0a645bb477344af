//! The pool controller: for each MediaPool, keeps its Secret, sizes its fleet of MediaNodes
//! with the autoscaler (create, drain, delete), replaces nodes of an older pod template with
//! the rollout, runs its TURN relays, and publishes the pool
//! status. Triggered by changes of the pool, its nodes (load included) and its conferences.

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_crds::capacity::turn_replicas;
use conclave_crds::pool::TurnStatus;
use conclave_crds::shared::set_condition;
use conclave_crds::{
    Conference, ConferencePhase, MediaNode, MediaNodePhase, MediaPool, MediaPoolStatus, labels,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::node::public_address;
use super::{apply_params, apply_status, event, paced};
use crate::decide::autoscale::{
    ScalingInput, ScalingPlan, ScalingPolicy, WaitingConference, needed_nodes, plan,
};
use crate::decide::certificate::{self, CERT_FILE, KEY_FILE, Names, SecretFiles};
use crate::decide::rollout::{self, Hold, RolloutInput, RolloutPlan, RolloutPolicy};
use crate::decide::signaling::certificate_problem;
use crate::decide::stall::heartbeats_stalled;
use crate::decide::turn_peers::{PeerPolicy, suggested_range};
use crate::decide::{NodeView, pool_spec};
use crate::error::{KubeContext, Result, is_conflict, is_not_found};
use crate::index::ConferenceKey;
use crate::resources::content_hash;
use crate::resources::identity;
use crate::resources::media_node::new_media_node;
use crate::resources::secret::{missing_keys, pool_secret};
use crate::resources::turn::{turn_deployment, turn_service, turn_urls};
use crate::resources::turn_tls::{self, Serving};
use crate::state::{Context, key, lock};
use crate::time::{at, now, secs};

/// Reconciles one MediaPool.
pub async fn reconcile(pool: Arc<MediaPool>, ctx: Arc<Context>) -> Result<Action> {
    if let Some(action) = paced(&ctx.pool_pacer, pool.as_ref()) {
        return Ok(action);
    }
    let _timer = ctx.metrics.reconcile("pool");
    let t = now();
    let old = pool.status.clone().unwrap_or_default();
    let secret_problem = ensure_secret(&ctx, &pool).await?;
    ensure_identity(&ctx, &pool).await?;

    let views = ctx.pool_views(&pool, &lock(&ctx.ledger));
    // Read from the conference cache, not the ledger: no need to hold its lock.
    let waiting = waiting_conferences(&ctx, &pool);
    record_phases(&ctx, &pool, &views);
    let policy = scaling_policy(&pool);
    let input = ScalingInput {
        policy: &policy,
        nodes: &views,
        waiting: &waiting,
        surplus_since: old.surplus_since.as_ref().map(secs),
        now: secs(&t),
    };
    let mut decision = plan(&input);
    let spec_problems = pool_spec::problems(&pool.spec);
    let tls_problem = signaling_tls_problem(&ctx, &pool).await?;
    let rollout = if spec_problems.is_empty() && tls_problem.is_none() {
        rollout::plan(&RolloutInput {
            policy: RolloutPolicy {
                max_surge: pool.spec.rollout.max_surge,
                max_unavailable: pool.spec.rollout.max_unavailable,
            },
            nodes: &views,
            needed: needed_nodes(&input),
            max_nodes: policy.max_nodes,
            autoscaler_adds: decision.add,
            autoscaler_drains: &decision.drain,
            now: secs(&t),
        })
    } else {
        // Nothing new is created from a spec that cannot run (a new media node could not
        // serve TLS signaling without its certificate), so nothing old is replaced either;
        // what runs is left alone.
        decision.add = 0;
        RolloutPlan::default()
    };
    let in_flight = nodes_in_flight(&ctx, &pool, &views);
    decision.add = (decision.add + rollout.add).saturating_sub(in_flight);
    apply_plan(&ctx, &pool, &decision, &rollout.drain).await?;

    let relay_tls = turn_tls(&ctx, &pool).await?;
    let turn = if spec_problems.is_empty() {
        let certificate = match &relay_tls {
            Some(RelayTls::Serving(hash)) => Some(hash.as_str()),
            _ => None,
        };
        reconcile_turn(&ctx, &pool, &views, certificate).await?
    } else {
        old.turn.clone()
    };
    let mut status = pool_status(&pool, &views, &decision, turn, &old);
    status.updated_nodes = rollout.updated;
    let (current, reason, message) = rollout_condition(&pool, &views, &rollout);
    set_condition(
        &mut status.conditions,
        labels::condition::UP_TO_DATE,
        current,
        reason,
        &message,
        pool.metadata.generation,
        &t,
    );
    let ready = status.ready_nodes > 0;
    set_condition(
        &mut status.conditions,
        labels::condition::READY,
        ready,
        if ready {
            "CapacityAvailable"
        } else {
            "NoReadyNodes"
        },
        &format!(
            "{} of {} media nodes Ready, {} participants of capacity free",
            status.ready_nodes,
            status.nodes,
            status
                .capacity
                .saturating_sub(status.reserved_participants.max(status.participants))
        ),
        pool.metadata.generation,
        &t,
    );
    let stall = heartbeats_stalled(
        &views,
        i64::from(pool.spec.media_node.heartbeat_timeout_seconds),
        secs(&t),
    );
    let (flowing, reason, message) = match stall {
        None => (
            true,
            "Current",
            "media nodes heartbeat; one that stops is failed and its conferences move".to_owned(),
        ),
        Some(s) => (
            false,
            "Stalled",
            format!(
                "{} of {} media nodes stopped heartbeating at once: treated as a control-plane problem (an overloaded or unreachable API server), so none is failed for it and no conference moves until heartbeats resume; a media-node pod that fails or goes away is still failed over",
                s.stale, s.heartbeating
            ),
        ),
    };
    let was_flowing = old
        .conditions
        .iter()
        .find(|c| c.type_ == labels::condition::HEARTBEATS)
        .is_none_or(|c| c.status == "True");
    set_condition(
        &mut status.conditions,
        labels::condition::HEARTBEATS,
        flowing,
        reason,
        &message,
        pool.metadata.generation,
        &t,
    );
    if was_flowing && !flowing {
        tracing::warn!(pool = %pool.name_any(), %message, "media-node heartbeats stalled");
        event(
            &ctx,
            pool.as_ref(),
            true,
            "HeartbeatsStalled",
            message.clone(),
        )
        .await;
    }
    if pool.spec.turn.enabled {
        let (ok, reason, message) = turn_peers(&ctx, &pool);
        set_condition(
            &mut status.conditions,
            labels::condition::TURN_PEERS,
            ok,
            reason,
            &message,
            pool.metadata.generation,
            &t,
        );
    }
    let relay_certificate = relay_tls.as_ref().map(|served| match served {
        RelayTls::Serving(_) => {
            Ok("the relays serve TURN over TLS with the Secret's certificate".to_owned())
        }
        RelayTls::Refused(problem) => Err(format!(
            "{problem}; the relays run without TLS until it is fixed"
        )),
    });
    let signaling_certificate = pool.spec.signaling.as_ref().map(|tls| {
        tls_problem.clone().map_or_else(
            || {
                Ok(format!(
                    "Secret {} holds a certificate for *.{}; media nodes serve https and wss",
                    tls.tls_secret_name, tls.domain
                ))
            },
            Err,
        )
    });
    for (type_, certificate) in [
        (labels::condition::TURN_TLS, relay_certificate),
        (labels::condition::SIGNALING_TLS, signaling_certificate),
    ] {
        certificate_condition(&mut status, type_, certificate, &pool, &t);
    }
    let (ok, reason, message) = match (&secret_problem, spec_problems.is_empty()) {
        (_, false) => (
            false,
            "InvalidSpec",
            format!(
                "no media nodes or TURN relays are created until the spec is fixed: {}",
                spec_problems.join("; ")
            ),
        ),
        (Some(problem), true) => (false, "SecretMissing", problem.clone()),
        (None, true) => (
            true,
            "Applied",
            "the pool's Secret, media nodes and TURN relays are in place".to_owned(),
        ),
    };
    set_condition(
        &mut status.conditions,
        labels::condition::RECONCILED,
        ok,
        reason,
        &message,
        pool.metadata.generation,
        &t,
    );
    if status != old {
        apply_status(&ctx, pool.as_ref(), &status).await?;
    }
    let recheck = decision.recheck_after.unwrap_or(60).clamp(1, 300);
    Ok(Action::requeue(Duration::from_secs(recheck as u64)))
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

/// Conferences of this pool not yet placed (and not ended): demand the autoscaler must meet.
/// A conference naming a region counts for the one pool of the region that grows for it
/// (`Context::growing_pool`).
fn waiting_conferences(ctx: &Context, pool: &MediaPool) -> Vec<WaitingConference> {
    let ns = pool.namespace().unwrap_or_default();
    let mut grows_here = std::collections::HashMap::new();
    ctx.indexed_conferences(&ns, &ConferenceKey::Unplaced)
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter(|c| is_waiting(c))
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
        .map(|c| WaitingConference {
            max_participants: c.spec.max_participants,
            start_time: c.spec.start_time.as_ref().map(secs),
            end_time: c.spec.end_time.as_ref().map(secs),
        })
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

/// Applies the autoscaler's plan (its adds include the rollout's) and the rollout's drains.
async fn apply_plan(
    ctx: &Context,
    pool: &MediaPool,
    plan: &ScalingPlan,
    rollout_drains: &[String],
) -> Result<()> {
    let ns = pool.namespace().unwrap_or_default();
    let api: Api<MediaNode> = Api::namespaced(ctx.client.clone(), &ns);
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
    let surplus = plan
        .drain
        .iter()
        .map(|n| (n, "ScalingDown", "capacity is surplus"));
    let outdated = rollout_drains.iter().map(|n| {
        (
            n,
            "RollingUpdate",
            "its pod runs an older template of the pool",
        )
    });
    for (name, reason, why) in surplus.chain(outdated) {
        let patch = serde_json::json!({"spec": {"draining": true}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .action(|| format!("draining media node {name}"))?;
        info!(pool = %pool.name_any(), node = %name, why, "draining media node");
        event(
            ctx,
            pool,
            false,
            reason,
            format!("draining media node {name}: {why}"),
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
    ctx.metrics.scale("add", u64::from(plan.add));
    ctx.metrics
        .scale("drain", (plan.drain.len() + rollout_drains.len()) as u64);
    ctx.metrics.scale("delete", plan.delete.len() as u64);
    Ok(())
}

/// Sets the certificate condition `type_`: True with what the Secret serves, False with what
/// is wrong with it; removed when the pool asks for no such TLS (`None`).
fn certificate_condition(
    status: &mut MediaPoolStatus,
    type_: &str,
    certificate: Option<std::result::Result<String, String>>,
    pool: &MediaPool,
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) {
    let Some(certificate) = certificate else {
        status.conditions.retain(|c| c.type_ != type_);
        return;
    };
    let (ok, reason, message) = match &certificate {
        Ok(serves) => (true, "CertificateValid", serves),
        Err(problem) => (false, "CertificateInvalid", problem),
    };
    set_condition(
        &mut status.conditions,
        type_,
        ok,
        reason,
        message,
        pool.metadata.generation,
        t,
    );
}

/// The UpToDate condition: True once no media node of an older pod template is left (the
/// drained ones included); otherwise the rollout's progress and what holds it up.
fn rollout_condition(
    pool: &MediaPool,
    views: &[NodeView],
    rollout: &RolloutPlan,
) -> (bool, &'static str, String) {
    let left = views.iter().filter(|v| v.outdated).count();
    if left == 0 {
        return (
            true,
            "AllNodesUpdated",
            "every media node runs the pool's current pod template".to_owned(),
        );
    }
    let r = &pool.spec.rollout;
    let progress = format!(
        "{} media nodes run the current pod template, {} older ones are to be replaced and {} are draining (maxSurge {}, maxUnavailable {})",
        rollout.updated,
        rollout.outdated,
        left.saturating_sub(rollout.outdated as usize),
        r.max_surge,
        r.max_unavailable
    );
    let held = match &rollout.hold {
        None => return (false, "RollingUpdate", progress),
        Some(Hold::NewNodeNotReady { node, seconds }) => format!(
            "new media node {node} is not Ready after {seconds} s: see its Healthy condition and its pod's events; with hostNetwork a new node needs a Kubernetes node where the pool's ports are free: add one, or set spec.rollout.maxSurge: 0 and spec.rollout.maxUnavailable: 1 to replace nodes in place"
        ),
        Some(Hold::Blocked {
            at_max_nodes: true, ..
        }) => format!(
            "spec.scaling.maxNodes ({}) leaves no room for a new node and spec.rollout.maxUnavailable is {}: raise spec.scaling.maxNodes, or set spec.rollout.maxUnavailable: 1 to drain a node before its replacement is Ready",
            pool.spec.scaling.max_nodes, r.max_unavailable
        ),
        Some(Hold::Blocked {
            node,
            participants,
            free,
            ..
        }) => format!(
            "media node {node} carries {participants} participants and the other Ready nodes have room for {free}: raise spec.rollout.maxSurge to add nodes first; otherwise the rollout goes on as conferences end"
        ),
    };
    (
        false,
        "RolloutBlocked",
        format!("{progress}; held up: {held}"),
    )
}

/// The TurnPeers condition: whether the relays may forward to every media node's published
/// address under the pool's peer policy (`decide::turn_peers`).
fn turn_peers(ctx: &Context, pool: &MediaPool) -> (bool, &'static str, String) {
    let policy = PeerPolicy {
        allowed: &pool.spec.turn.allowed_peers,
        allow_loopback: pool.spec.turn.allow_loopback_peers,
    };
    let ns = pool.namespace().unwrap_or_default();
    let refused: Vec<String> = ctx
        .nodes_of_pool(&ns, &pool.name_any())
        .iter()
        .filter_map(|n| {
            let public = n.status.as_ref()?.addresses.as_ref()?.public.clone()?;
            let ip: std::net::IpAddr = public.parse().ok()?;
            let kind = policy.refuses(ip)?;
            Some(format!(
                "{} at {ip} ({kind} address; allow {})",
                n.name_any(),
                suggested_range(ip)
            ))
        })
        .collect();
    if refused.is_empty() {
        (
            true,
            "MediaNodesAllowed",
            "the relays may forward to every media node's address; other private, loopback and link-local peers are refused".to_owned(),
        )
    } else {
        (
            false,
            "MediaNodeAddressRefused",
            format!(
                "the TURN relays refuse to forward to media nodes {}: add their ranges to spec.turn.allowedPeers, or clients that need TURN cannot reach them",
                refused.join(", ")
            ),
        )
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

/// What keeps the media nodes of `pool` from serving TLS signaling with the Secret
/// `spec.signaling.tlsSecretName`; `None` without `spec.signaling` or when the Secret is fine.
async fn signaling_tls_problem(ctx: &Context, pool: &MediaPool) -> Result<Option<String>> {
    let Some(tls) = &pool.spec.signaling else {
        return Ok(None);
    };
    let secret = tls_secret(ctx, pool, &tls.tls_secret_name).await?;
    Ok(certificate_problem(
        &tls.tls_secret_name,
        &tls.domain,
        secret.as_ref().map(TlsSecret::files),
        k8s_openapi::jiff::Timestamp::now().as_second(),
    ))
}

/// The relays' TLS (`spec.turn.tls`), once its Secret was checked.
enum RelayTls {
    /// The Secret can be served for the relays' host: the hash of its certificate.
    Serving(String),
    /// What is wrong with the Secret.
    Refused(String),
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
                deployments
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ()),
                services
                    .delete(&name, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            ] {
                if let Err(e) = result.or_else(|e| if is_not_found(&e) { Ok(()) } else { Err(e) }) {
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

fn pool_status(
    pool: &MediaPool,
    views: &[NodeView],
    plan: &ScalingPlan,
    turn: Option<TurnStatus>,
    old: &MediaPoolStatus,
) -> MediaPoolStatus {
    let ready: Vec<&NodeView> = views
        .iter()
        .filter(|v| v.phase == MediaNodePhase::Ready && !v.draining)
        .collect();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    MediaPoolStatus {
        desired_nodes: plan.desired_nodes,
        nodes: count(views.len()),
        ready_nodes: count(ready.len()),
        draining_nodes: count(views.iter().filter(|v| v.draining).count()),
        participants: views.iter().map(|v| v.reported.participants).sum(),
        reserved_participants: views.iter().map(|v| v.reserved.total().participants).sum(),
        capacity: ready.iter().map(|v| v.capacity.participants).sum(),
        updated_nodes: 0,
        surplus_since: plan.surplus_since.map(at),
        turn,
        conditions: old.conditions.clone(),
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
