//! The conference controller: places each conference on a media node (reserving its
//! capacity in the ledger), labels it for that node, publishes join info, moves it when its
//! node fails or drains, ends it at endTime or after its ttl, and releases its reservation
//! when it is deleted.

use std::sync::Arc;
use std::time::Duration;

use conclave_crds::capacity::Usage;
use conclave_crds::conference::{IceServer, JoinInfo};
use conclave_crds::shared::set_condition;
use conclave_crds::{
    Conference, ConferencePhase, ConferenceStatus, MediaNode, MediaNodePhase, MediaPool, labels,
};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use tracing::info;

use super::{apply_status, event};
use crate::decide::evacuation::EvacuationBudget;
use crate::decide::placement::{NoFitReason, Placement, PlacementPolicy, PlacementRequest, place};
use crate::decide::region::region_reason;
use crate::error::{Error, KubeContext, Result};
use crate::ledger::Key;
use crate::state::{Context, key, lock};
use crate::time::{at, now, secs};

use ConferencePhase::*;

/// Reconciles one Conference.
pub async fn reconcile(conf: Arc<Conference>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile("conference");
    let ckey = key(conf.as_ref());
    if conf.metadata.deletion_timestamp.is_some() {
        lock(&ctx.ledger).release(&ckey);
        remove_finalizer(&ctx, &conf).await?;
        return Ok(Action::await_change());
    }
    let status = conf.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Pending);
    let t = secs(&now());
    if matches!(phase, Ended | Failed) {
        lock(&ctx.ledger).release(&ckey);
        return Ok(Action::await_change());
    }
    adopt_reservation(&ctx, &conf, &ckey, &status, phase);
    if let Some(reason) = end_reason(&conf, &status, t) {
        return end(&ctx, &conf, status, reason).await;
    }
    let pools = ctx.pools_for(&conf);
    let Some(first_pool) = pools.first().cloned() else {
        let what = conf.spec.pool.as_ref().map_or_else(
            || {
                format!(
                    "no MediaPool of region {:?}",
                    conf.spec.region.clone().unwrap_or_default()
                )
            },
            |p| format!("MediaPool {p:?}"),
        );
        let message = format!("{what} not found in namespace {}; create it", ckey.0);
        return unplaced(&ctx, &conf, status, Pending, "NoPool", message, 10).await;
    };
    let placed = lock(&ctx.ledger).node_of(&ckey).cloned();
    match placed {
        Some(node) => {
            // The policy, relays and evacuation pace are those of the pool it landed on.
            let pool = ctx
                .node(&node.0, &node.1)
                .and_then(|n| ctx.pool(&node.0, &n.spec.pool))
                .unwrap_or(first_pool);
            hosted(&ctx, &conf, status, &pools, &pool, node, t).await
        }
        None => {
            let growing = ctx.growing_pool(&conf).unwrap_or(first_pool);
            unhosted(&ctx, &conf, status, &pools, &growing, t).await
        }
    }
}

/// After a restart (or when another replica placed it), takes the reservation the
/// conference's status records, unless the ledger already knows better.
fn adopt_reservation(
    ctx: &Context,
    conf: &Conference,
    ckey: &Key,
    status: &ConferenceStatus,
    phase: ConferencePhase,
) {
    let Some(node) = &status.media_node else {
        return;
    };
    if !phase.holds_reservation() {
        return;
    }
    let mut ledger = lock(&ctx.ledger);
    if ledger.node_of(ckey).is_none() {
        ledger.reserve(
            ckey.clone(),
            (ckey.0.clone(), node.clone()),
            Usage::conference(conf.spec.max_participants),
        );
    }
}

/// Why the conference is over, if it is.
fn end_reason(conf: &Conference, status: &ConferenceStatus, now: i64) -> Option<&'static str> {
    if conf.spec.end_time.as_ref().is_some_and(|e| secs(e) <= now) {
        return Some("EndTimeReached");
    }
    let ttl = i64::from(conf.spec.ttl_seconds?);
    let since = status.active_since.as_ref().map(secs)?;
    (since + ttl <= now).then_some("TtlExpired")
}

/// Seconds until the conference must be looked at again for time-driven changes.
fn next_deadline(conf: &Conference, status: &ConferenceStatus, now: i64) -> Option<i64> {
    let start = conf.spec.start_time.as_ref().map(secs).filter(|s| *s > now);
    let end = conf.spec.end_time.as_ref().map(secs);
    let ttl = conf
        .spec
        .ttl_seconds
        .zip(status.active_since.as_ref())
        .map(|(ttl, a)| secs(a) + i64::from(ttl));
    [start, end, ttl]
        .into_iter()
        .flatten()
        .map(|d| (d - now).max(1))
        .min()
}

async fn hosted(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    pools: &[Arc<MediaPool>],
    pool: &MediaPool,
    node_key: Key,
    now: i64,
) -> Result<Action> {
    if status.media_node.as_deref() != Some(node_key.1.as_str()) {
        // The ledger holds a placement (or move) the watch cache does not show yet. Acting on
        // the older status would undo it: a server-side apply of that status would drop the
        // new node and join info. Look again once the cache caught up.
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let node = ctx.node(&node_key.0, &node_key.1);
    let timeout = i64::from(pool.spec.media_node.heartbeat_timeout_seconds);
    let failed = match &node {
        None => Some("its media node is gone"),
        Some(n) if phase_of(n) == MediaNodePhase::Failed => Some("its media node failed"),
        Some(n)
            if heartbeat_age(n, now).is_some_and(|a| a > timeout)
                && phase_of(n) != MediaNodePhase::Starting
                // Most of the pool went quiet at once: the control plane, not the node, is
                // the likelier fault, and moving every conference would add to it.
                && ctx
                    .pool(&node_key.0, &n.spec.pool)
                    .is_none_or(|p| !ctx.heartbeats_stalled(&p, now)) =>
        {
            Some("its media node stopped heartbeating")
        }
        _ => None,
    };
    let draining = node.as_ref().is_some_and(|n| n.spec.draining);
    if let Some(why) = failed {
        return relocate(ctx, conf, status, pools, &node_key, "Failover", why, now).await;
    }
    if draining {
        let rate = pool.spec.scaling.evacuation_rate;
        let pool_key = key(pool);
        let allowed = lock(&ctx.evacuation)
            .entry(pool_key)
            .or_insert_with(|| EvacuationBudget::new(rate, now))
            .take(rate, now);
        match allowed {
            Ok(()) => {
                return relocate(
                    ctx,
                    conf,
                    status,
                    pools,
                    &node_key,
                    "Evacuation",
                    "its media node is draining",
                    now,
                )
                .await;
            }
            Err(wait) => {
                let requeue = wait.unwrap_or(60);
                return write(ctx, conf, status, None)
                    .await
                    .map(|_| Action::requeue(Duration::from_secs(requeue as u64)));
            }
        }
    }
    let node = node.as_deref();
    let start_passed = conf.spec.start_time.as_ref().is_none_or(|s| secs(s) <= now);
    let next = match status.phase.unwrap_or(Pending) {
        Scheduled if start_passed => Active,
        Migrating if node.is_some_and(|n| arrived(n, &status)) => {
            if start_passed {
                Active
            } else {
                Scheduled
            }
        }
        p => p,
    };
    let phase_changed = status.phase != Some(next);
    if next == Active && status.active_since.is_none() {
        status.active_since = Some(at(now));
    }
    status.phase = Some(next);
    status.join = node.and_then(|n| join_info(n, pool)).or(status.join);
    write(ctx, conf, status.clone(), None).await?;
    if phase_changed {
        event(
            ctx,
            conf,
            false,
            &format!("{next:?}"),
            format!("conference is {next:?} on {}", node_key.1),
        )
        .await;
    }
    let recheck = match next {
        Migrating => Some(1),
        _ => next_deadline(conf, &status, now),
    };
    Ok(recheck.map_or_else(Action::await_change, |s| {
        Action::requeue(Duration::from_secs(s.clamp(1, 3600) as u64))
    }))
}

/// The new node has heartbeated since the move, so it has seen the conference.
fn arrived(node: &MediaNode, status: &ConferenceStatus) -> bool {
    let moved = status.placed_at.as_ref().map(secs).unwrap_or(0);
    let beat = node
        .status
        .as_ref()
        .and_then(|s| s.last_heartbeat.as_ref())
        .map(secs)
        .unwrap_or(0);
    beat >= moved && phase_of(node) == MediaNodePhase::Ready
}

/// Places a conference that has no node: not before the warm-up of `growing`, the pool that
/// brings up capacity for it; then on the first of `pools` with room.
async fn unhosted(
    ctx: &Context,
    conf: &Conference,
    status: ConferenceStatus,
    pools: &[Arc<MediaPool>],
    growing: &MediaPool,
    now: i64,
) -> Result<Action> {
    let warmup = i64::from(growing.spec.scaling.warmup_seconds);
    if let Some(start) = conf.spec.start_time.as_ref().map(secs)
        && start - warmup > now
    {
        let message = format!(
            "placed {warmup}s before its start, at {}",
            at(start - warmup).0
        );
        return unplaced(
            ctx,
            conf,
            status,
            Pending,
            "NotYetDue",
            message,
            start - warmup - now,
        )
        .await;
    }
    match choose(ctx, conf, pools, None, now) {
        Chosen::Node { pool, node } => {
            let start_passed = conf.spec.start_time.as_ref().is_none_or(|s| secs(s) <= now);
            let phase = if start_passed { Active } else { Scheduled };
            ctx.metrics.placement("placed");
            let strategy = format!("{:?}", pool.spec.scaling.strategy);
            settle(ctx, conf, status, &pool, &node, phase, &strategy, None, now).await
        }
        Chosen::NoFit(reason) => {
            ctx.metrics.placement("no_fit");
            let (phase, code, message) = no_fit_reason(&reason, conf);
            unplaced(ctx, conf, status, phase, code, message, 2).await
        }
    }
}

/// Moves a conference off `from` onto a node of any of `pools`; keeps it there (with a
/// condition) when nothing fits.
#[allow(clippy::too_many_arguments)]
async fn relocate(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    pools: &[Arc<MediaPool>],
    from: &Key,
    reason: &str,
    why: &str,
    now: i64,
) -> Result<Action> {
    match choose(ctx, conf, pools, Some(&from.1), now) {
        Chosen::Node { pool, node } => {
            ctx.metrics.placement(if reason == "Failover" {
                "failover"
            } else {
                "evacuated"
            });
            status.moves += 1;
            info!(conference = %conf.name_any(), from = %from.1, to = %node, reason, "moving conference");
            settle(
                ctx,
                conf,
                status,
                &pool,
                &node,
                Migrating,
                reason,
                Some(&from.1),
                now,
            )
            .await
        }
        Chosen::NoFit(no_fit) => {
            let (_, code, detail) = no_fit_reason(&no_fit, conf);
            let message = format!(
                "{why} but no other node has room ({code}: {detail}); it stays on {}",
                from.1
            );
            let t = at(now);
            set_condition(
                &mut status.conditions,
                labels::condition::PLACED,
                true,
                &format!("{reason}Blocked"),
                &message,
                conf.metadata.generation,
                &t,
            );
            write(ctx, conf, status, None).await?;
            Ok(Action::requeue(Duration::from_secs(5)))
        }
    }
}

/// Where placement put a conference.
enum Chosen {
    /// On `node` of `pool` (reserved in the ledger).
    Node { pool: Arc<MediaPool>, node: String },
    /// Nowhere, and why (over all the pools tried).
    NoFit(NoFitReason),
}

/// Runs placement under the ledger lock, in each of `pools` in turn with that pool's own
/// policy, and reserves the first node found before releasing the lock.
fn choose(
    ctx: &Context,
    conf: &Conference,
    pools: &[Arc<MediaPool>],
    exclude: Option<&str>,
    now: i64,
) -> Chosen {
    let ckey = key(conf);
    let mut ledger = lock(&ctx.ledger);
    let request = PlacementRequest {
        max_participants: conf.spec.max_participants,
        region: conf.spec.region.clone(),
        exclude: exclude.map(str::to_owned).into_iter().collect(),
    };
    let mut reasons = Vec::new();
    for pool in pools {
        let views = ctx.pool_views(pool, &ledger);
        let policy = PlacementPolicy {
            strategy: pool.spec.scaling.strategy,
            heartbeat_timeout_seconds: i64::from(pool.spec.media_node.heartbeat_timeout_seconds),
        };
        match place(&request, &views, policy, now) {
            Placement::Node(node) => {
                ledger.reserve(
                    ckey.clone(),
                    (ckey.0.clone(), node.clone()),
                    Usage::conference(conf.spec.max_participants),
                );
                return Chosen::Node {
                    pool: Arc::clone(pool),
                    node,
                };
            }
            Placement::NoFit(reason) => reasons.push(reason),
        }
    }
    Chosen::NoFit(region_reason(&reasons).unwrap_or(NoFitReason::NoReadyNode))
}

/// Publishes a placement: status first (so the node being left reads the new join info
/// when it sees the label move), then the label.
#[allow(clippy::too_many_arguments)]
async fn settle(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    pool: &MediaPool,
    node_name: &str,
    phase: ConferencePhase,
    reason: &str,
    previous: Option<&str>,
    now: i64,
) -> Result<Action> {
    let ns = conf.namespace().unwrap_or_default();
    let node = ctx.node(&ns, node_name);
    let t = at(now);
    status.phase = Some(phase);
    status.media_node = Some(node_name.to_owned());
    status.pool = Some(
        node.as_ref()
            .map_or_else(|| pool.name_any(), |n| n.spec.pool.clone()),
    );
    status.join = node.as_deref().and_then(|n| join_info(n, pool));
    status.placed_at = Some(t.clone());
    if phase == Active && status.active_since.is_none() {
        status.active_since = Some(t.clone());
    }
    let message = match previous {
        Some(prev) => format!("moved from {prev} to {node_name}"),
        None => format!("placed on {node_name}"),
    };
    set_condition(
        &mut status.conditions,
        labels::condition::PLACED,
        true,
        reason,
        &message,
        conf.metadata.generation,
        &t,
    );
    let written = write(ctx, conf, status, Some((node_name, previous))).await;
    if let Err(e) = written {
        lock(&ctx.ledger).release(&key(conf));
        return Err(e);
    }
    // Moves are worth an Event; a first placement is routine (hundreds a second at a peak)
    // and its Placed condition already says where and when.
    if previous.is_some() {
        event(ctx, conf, false, reason, message).await;
    }
    Ok(Action::requeue(Duration::from_secs(
        if phase == Migrating { 1 } else { 30 },
    )))
}

async fn unplaced(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    phase: ConferencePhase,
    reason: &str,
    message: String,
    recheck: i64,
) -> Result<Action> {
    let was = status.phase;
    status.phase = Some(phase);
    let t = now();
    let changed = set_condition(
        &mut status.conditions,
        labels::condition::PLACED,
        false,
        reason,
        &message,
        conf.metadata.generation,
        &t,
    );
    write(ctx, conf, status, None).await?;
    if changed && (was != Some(phase) || phase == Failed) {
        event(ctx, conf, phase == Failed, reason, message).await;
    }
    if phase == Failed {
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(Duration::from_secs(
        recheck.clamp(1, 3600) as u64
    )))
}

fn no_fit_reason(
    reason: &NoFitReason,
    conf: &Conference,
) -> (ConferencePhase, &'static str, String) {
    match reason {
        NoFitReason::TooLarge {
            requested,
            node_capacity,
        } => (
            Failed,
            "TooLarge",
            format!(
                "maxParticipants {requested} exceeds what one media node of the pool carries ({node_capacity}); create a smaller conference or raise the pool's nodeCapacity.participants"
            ),
        ),
        NoFitReason::NoReadyNode => (
            Pending,
            "NoReadyNode",
            "no media node is Ready yet; the autoscaler is adding capacity".to_owned(),
        ),
        NoFitReason::Full {
            ready_nodes,
            largest_free,
        } => (
            Pending,
            "NoCapacity",
            format!(
                "{ready_nodes} Ready nodes, the most free is {largest_free} participants, {} needed; the autoscaler is adding capacity",
                conf.spec.max_participants
            ),
        ),
    }
}

async fn end(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    reason: &str,
) -> Result<Action> {
    lock(&ctx.ledger).release(&key(conf));
    status.phase = Some(Ended);
    let t = now();
    set_condition(
        &mut status.conditions,
        labels::condition::PLACED,
        false,
        reason,
        "the conference ended; its room is closed and its capacity released",
        conf.metadata.generation,
        &t,
    );
    write(ctx, conf, status, None).await?;
    // Removing the label tells the media node to close the room.
    let api: Api<Conference> =
        Api::namespaced(ctx.client.clone(), &conf.namespace().unwrap_or_default());
    let patch = serde_json::json!({"metadata": {"labels": {labels::MEDIA_NODE: null}}});
    api.patch(
        &conf.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .action(|| format!("unlabelling ended conference {}", conf.name_any()))?;
    event(ctx, conf, false, "Ended", reason.to_owned()).await;
    Ok(Action::await_change())
}

/// Writes the operator's status fields if they changed and, for a placement, the node label,
/// the previous-node annotation and the finalizer in one metadata patch.
///
/// A move writes status first, so that the node being left reads the new join info when it
/// sees the label go. A first placement writes metadata first: nobody is being left, and the
/// status write's watch event then already carries the finalizer, so the reconcile it
/// triggers has nothing left to patch (the other order cost a second patch per placement).
async fn write(
    ctx: &Context,
    conf: &Conference,
    status: ConferenceStatus,
    label: Option<(&str, Option<&str>)>,
) -> Result<()> {
    if matches!(label, Some((_, None))) {
        write_metadata(ctx, conf, label).await?;
        write_status(ctx, conf, status).await
    } else {
        write_status(ctx, conf, status).await?;
        write_metadata(ctx, conf, label).await
    }
}

async fn write_status(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
) -> Result<()> {
    status.participants = None;
    status.observed_generation = conf.metadata.generation;
    let mut old = conf.status.clone().unwrap_or_default();
    old.participants = None;
    if old != status {
        apply_status(ctx, conf, &status).await?;
    }
    Ok(())
}

async fn write_metadata(
    ctx: &Context,
    conf: &Conference,
    label: Option<(&str, Option<&str>)>,
) -> Result<()> {
    let has_finalizer = conf
        .finalizers()
        .iter()
        .any(|f| f == labels::CONFERENCE_FINALIZER);
    let label_right = label.is_none_or(|(node, _)| {
        conf.labels().get(labels::MEDIA_NODE).map(String::as_str) == Some(node)
    });
    if has_finalizer && label_right {
        return Ok(());
    }
    let mut finalizers: Vec<String> = conf.finalizers().to_vec();
    if !has_finalizer {
        finalizers.push(labels::CONFERENCE_FINALIZER.to_owned());
    }
    let mut metadata = serde_json::json!({"finalizers": finalizers});
    if let Some((node, previous)) = label {
        metadata["labels"] = serde_json::json!({labels::MEDIA_NODE: node});
        if let Some(prev) = previous {
            metadata["annotations"] = serde_json::json!({labels::PREVIOUS_MEDIA_NODE: prev});
        }
    }
    let api: Api<Conference> =
        Api::namespaced(ctx.client.clone(), &conf.namespace().unwrap_or_default());
    api.patch(
        &conf.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&serde_json::json!({"metadata": metadata})),
    )
    .await
    .action(|| format!("labelling conference {}", conf.name_any()))?;
    Ok(())
}

/// Removes the operator's finalizer with a JSON patch that tests the entry it removes, so it
/// conflicts only when the finalizer list itself changed, not on every status write that
/// bumped the resourceVersion since the cache saw the object.
async fn remove_finalizer(ctx: &Context, conf: &Conference) -> Result<()> {
    let Some(index) = conf
        .finalizers()
        .iter()
        .position(|f| f == labels::CONFERENCE_FINALIZER)
    else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": path, "value": labels::CONFERENCE_FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .map_err(|source| Error::Serialize {
        what: "finalizer removal patch".to_owned(),
        source,
    })?;
    let api: Api<Conference> =
        Api::namespaced(ctx.client.clone(), &conf.namespace().unwrap_or_default());
    match api
        .patch(
            &conf.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::error::is_not_found(&e) => Ok(()),
        Err(e) => Err(e).action(|| format!("releasing conference {}", conf.name_any())),
    }
}

fn phase_of(node: &MediaNode) -> MediaNodePhase {
    node.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(MediaNodePhase::Pending)
}

fn heartbeat_age(node: &MediaNode, now: i64) -> Option<i64> {
    node.status
        .as_ref()?
        .last_heartbeat
        .as_ref()
        .map(|h| now - secs(h))
}

/// Join info of a conference on `node`: its signaling URL and public address, and the pool's
/// STUN and TURN URLs (credentials come from the media node at join time).
pub fn join_info(node: &MediaNode, pool: &MediaPool) -> Option<JoinInfo> {
    let addresses = node.status.as_ref()?.addresses.clone()?;
    let (stun, turn): (Vec<String>, Vec<String>) = pool
        .relay_urls()
        .iter()
        .cloned()
        .partition(|u| u.starts_with("stun:"));
    let ice_servers = [stun, turn]
        .into_iter()
        .filter(|u| !u.is_empty())
        .map(|urls| IceServer { urls })
        .collect();
    Some(JoinInfo {
        signaling_url: addresses.signaling_url?,
        public_address: addresses.public,
        ice_servers,
    })
}
