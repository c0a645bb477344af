//! The conference controller: gathers what is known of a conference and its node, takes the
//! one step `decide::conference` chooses, and applies it: places the conference on a media
//! node (reserving its capacity in the ledger) and publishes join info with one status write
//! (the node finds it by `status.mediaNode`; a node of an earlier version by a label, written
//! for it too), moves it when its node is lost or drains, ends it at endTime or after its ttl,
//! and releases its reservation when it is deleted.

use std::sync::Arc;
use std::time::Duration;

use conclave_crds::conference::{IceServer, JoinInfo};
use conclave_crds::shared::set_condition;
use conclave_crds::{
    Conference, ConferencePhase, ConferenceStatus, MediaNode, MediaNodePhase, MediaPool, labels,
};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::{apply_status_at, event};
use crate::decide::conference::{
    ConferenceFacts, Host, HostNode, MoveReason, Step, phase_event, step,
};
use crate::decide::evacuation::EvacuationBudget;
use crate::decide::liveness::Liveness;
use crate::decide::placement::{NoFitReason, Placement, PlacementPolicy, PlacementRequest, place};
use crate::decide::region::region_reason;
use crate::decide::reservation::{Reservation, Span};
use crate::error::{Error, KubeContext, Result};
use crate::ledger::Key;
use crate::state::{Context, key, lock};
use crate::time::{at, now, secs};

use ConferencePhase::*;

/// Reconciles one Conference (see [`take_step`]). A conference deleted meanwhile releases
/// what this reconcile may have reserved for it: the watch released it already when it saw
/// the deletion, perhaps before this reconcile reserved.
pub async fn reconcile(conf: Arc<Conference>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile("conference");
    let taken = take_step(Arc::clone(&conf), Arc::clone(&ctx)).await;
    let still_there = ctx
        .caches
        .conferences
        .get(&ObjectRef::from(conf.as_ref()))
        .is_some_and(|c| c.uid() == conf.uid());
    if !still_there {
        lock(&ctx.ledger).release(&key(conf.as_ref()));
    }
    taken
}

/// The ledger holds a placement the watch cache does not show. Usually the watch is just
/// behind; after a placement write that failed without an answer, the API server says
/// whether it landed: if not, the reservation goes and the conference is placed again.
async fn await_cache(ctx: &Context, ckey: &Key) -> Result<Action> {
    let behind = Action::requeue(Duration::from_millis(500));
    if !lock(&ctx.ledger).is_unsure(ckey) {
        return Ok(behind);
    }
    let api: Api<Conference> = Api::namespaced(ctx.client.clone(), &ckey.0);
    let fresh = api
        .get(&ckey.1)
        .await
        .action(|| format!("reading Conference {} back", ckey.1))?;
    let written = fresh.status.and_then(|s| s.media_node);
    let mut ledger = lock(&ctx.ledger);
    if ledger.node_of(ckey).map(|(_, node)| node) == written.as_ref() {
        ledger.confirm(ckey);
        Ok(behind)
    } else {
        ledger.release(ckey);
        Ok(Action::requeue(Duration::ZERO))
    }
}

/// Gathers what is known of a conference and of the node holding its reservation, asks
/// `decide::conference::step` for the one step to take, and applies it.
async fn take_step(conf: Arc<Conference>, ctx: Arc<Context>) -> Result<Action> {
    let conf = ctx.caches.own_conferences.freshest(conf);
    if ctx.caches.own_conferences.outdated(&conf) {
        // A write on this version was refused: the watch brings the newer one and with it
        // the next reconcile; deciding on this one would be refused again.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let ckey = key(conf.as_ref());
    let status = conf.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Pending);
    let t = secs(&now());
    let deleting = conf.metadata.deletion_timestamp.is_some();
    if !deleting && !matches!(phase, Ended | Failed) {
        adopt_reservation(&ctx, &conf, &ckey, &status, phase);
    }
    let pools = ctx.pools_for(&conf);
    let reserved = lock(&ctx.ledger).node_of(&ckey).cloned();
    // A placed conference takes the policy, relays and evacuation pace of the pool it landed
    // on; an unplaced one the warm-up of the pool that grows for it.
    let node = reserved.as_ref().and_then(|(ns, name)| ctx.node(ns, name));
    let host_pool = node
        .as_ref()
        .and_then(|n| ctx.pool(&ckey.0, &n.spec.pool))
        .or_else(|| pools.first().cloned());
    let growing = match reserved {
        None => ctx.growing_pool(&conf).or_else(|| pools.first().cloned()),
        Some(_) => None,
    };
    let host = reserved
        .as_ref()
        .map(|(_, name)| host_of(&ctx, name, node.as_deref(), host_pool.as_deref(), t));
    let facts = ConferenceFacts {
        deleting,
        phase,
        start_time: conf.spec.start_time.as_ref().map(secs),
        end_time: conf.spec.end_time.as_ref().map(secs),
        ttl_seconds: conf.spec.ttl_seconds,
        active_since: status.active_since.as_ref().map(secs),
        placed_at: status.placed_at.as_ref().map(secs),
        recorded_node: status.media_node.as_deref(),
        pool_found: !pools.is_empty(),
        warmup_seconds: growing
            .as_ref()
            .map_or(0, |p| i64::from(p.spec.scaling.warmup_seconds)),
    };
    match step(&facts, host.as_ref(), t) {
        Step::Release => {
            lock(&ctx.ledger).release(&ckey);
            remove_finalizer(&ctx, &conf).await?;
            Ok(Action::await_change())
        }
        Step::Forget => {
            lock(&ctx.ledger).release(&ckey);
            Ok(Action::await_change())
        }
        Step::End(reason) => end(&ctx, &conf, status, reason.as_str()).await,
        Step::NoPool => {
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
            unplaced(&ctx, &conf, status, Pending, "NoPool", message, 10).await
        }
        Step::NotYetDue { until } => {
            let message = format!(
                "placed {}s before its start, at {}",
                facts.warmup_seconds,
                at(until).0
            );
            unplaced(
                &ctx,
                &conf,
                status,
                Pending,
                "NotYetDue",
                message,
                until - t,
            )
            .await
        }
        Step::Place { phase } => {
            // Due since its creation, or since its warm-up began when it is scheduled.
            let created = conf.metadata.creation_timestamp.as_ref().map_or(t, secs);
            let due = facts
                .start_time
                .map_or(created, |start| created.max(start - facts.warmup_seconds));
            place_first(&ctx, &conf, status, &pools, phase, t - due, t).await
        }
        Step::AwaitCache => await_cache(&ctx, &ckey).await,
        Step::Move { from, why } => {
            let from = (ckey.0.clone(), from);
            match (why, host_pool) {
                (MoveReason::Evacuation, Some(pool)) => {
                    evacuate(&ctx, &conf, status, &pools, &pool, &from, t).await
                }
                _ => relocate(&ctx, &conf, status, &pools, &from, why, t).await,
            }
        }
        Step::Stay { phase, recheck } => {
            stay(
                &ctx,
                &conf,
                status,
                node.as_deref(),
                host_pool.as_deref(),
                phase,
                recheck,
            )
            .await
        }
    }
}

/// What `conf` reserves on its node: the participants it expects and a room, with room to
/// grow to its maxParticipants, from its startTime to its endTime.
pub fn reservation_of(conf: &Conference) -> Reservation {
    Reservation::conference(
        conf.spec.reserved_participants(),
        conf.spec.max_participants,
        Span::of(
            conf.spec.start_time.as_ref().map(secs),
            conf.spec.end_time.as_ref().map(secs),
        ),
    )
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
    match ledger.node_of(ckey).map(|(_, held)| held == node) {
        // The watch shows the placement the ledger holds: its write landed.
        Some(true) => ledger.confirm(ckey),
        Some(false) => {}
        None => ledger.reserve(
            ckey.clone(),
            (ckey.0.clone(), node.clone()),
            reservation_of(conf),
        ),
    }
}

/// What the conference controller knows of node `name` (its MediaNode `node`, `None` when
/// gone), holding the conference's reservation, whose pool is `pool`.
fn host_of<'a>(
    ctx: &Context,
    name: &'a str,
    node: Option<&MediaNode>,
    pool: Option<&MediaPool>,
    now: i64,
) -> Host<'a> {
    let node = node.map(|n| {
        let timeout = pool.map_or(i64::MAX, |p| {
            i64::from(p.spec.media_node.heartbeat_timeout_seconds)
        });
        let age = ctx.heartbeat(n).map(|h| now - h);
        let stale = age.is_some_and(|a| a > timeout);
        HostNode {
            liveness: Liveness {
                phase: phase_of(n),
                heartbeat_age: age,
                heartbeat_timeout: timeout,
                // Looked up only for a stale heartbeat: it builds the pool's views.
                pool_stalled: stale && pool.is_some_and(|p| ctx.heartbeats_stalled(p, now)),
            },
            draining: n.spec.draining,
            last_heartbeat: ctx.heartbeat(n),
        }
    });
    Host { name, node }
}

/// Leaves the conference on `node` in `phase`, with that node's join info.
async fn stay(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    node: Option<&MediaNode>,
    pool: Option<&MediaPool>,
    phase: ConferencePhase,
    recheck: Option<i64>,
) -> Result<Action> {
    let t = now();
    let announce = phase_event(status.phase, phase);
    if phase == Active && status.active_since.is_none() {
        status.active_since = Some(t.clone());
    }
    status.phase = Some(phase);
    status.join = node
        .zip(pool)
        .and_then(|(n, p)| join_info(n, p))
        .or(status.join);
    let on = status.media_node.clone().unwrap_or_default();
    write(ctx, conf, status, Label::Keep).await?;
    if announce {
        event(
            ctx,
            conf,
            false,
            &format!("{phase:?}"),
            format!("conference is {phase:?} on {on}"),
        )
        .await;
    }
    Ok(recheck.map_or_else(Action::await_change, |s| {
        Action::requeue(Duration::from_secs(s.clamp(1, 3600) as u64))
    }))
}

/// Places a conference that has no node and has been due for `waited` seconds, in `phase`,
/// on the first of `pools` with room.
async fn place_first(
    ctx: &Context,
    conf: &Conference,
    status: ConferenceStatus,
    pools: &[Arc<MediaPool>],
    phase: ConferencePhase,
    waited: i64,
    now: i64,
) -> Result<Action> {
    match choose(ctx, conf, pools, None, now) {
        Chosen::Node { pool, node } => {
            ctx.metrics.placement("placed");
            ctx.metrics.placement_delay(waited as f64);
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

/// Moves a conference off draining node `from` when its pool's evacuation pace allows one
/// more now; otherwise looks again when it will.
async fn evacuate(
    ctx: &Context,
    conf: &Conference,
    status: ConferenceStatus,
    pools: &[Arc<MediaPool>],
    pool: &MediaPool,
    from: &Key,
    now: i64,
) -> Result<Action> {
    let rate = pool.spec.scaling.evacuation_rate;
    let allowed = lock(&ctx.evacuation)
        .entry(key(pool))
        .or_insert_with(|| EvacuationBudget::new(rate, now))
        .take(rate, now);
    match allowed {
        Ok(()) => relocate(ctx, conf, status, pools, from, MoveReason::Evacuation, now).await,
        Err(wait) => {
            write(ctx, conf, status, Label::Keep).await?;
            Ok(Action::requeue(Duration::from_secs(
                wait.unwrap_or(60) as u64
            )))
        }
    }
}

/// Moves a conference off `from` onto a node of any of `pools`; keeps it there (with a
/// condition) when nothing fits.
async fn relocate(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    pools: &[Arc<MediaPool>],
    from: &Key,
    why: MoveReason,
    now: i64,
) -> Result<Action> {
    let reason = why.as_str();
    let why = why.message();
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
            write(ctx, conf, status, Label::Keep).await?;
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
        reservation: reservation_of(conf),
        region: conf.spec.region.clone(),
        exclude: exclude.map(str::to_owned).into_iter().collect(),
    };
    let mut reasons = Vec::new();
    for pool in pools {
        let views = ctx.placement_views(pool, &ledger);
        let policy = PlacementPolicy {
            strategy: pool.spec.scaling.strategy,
            heartbeat_timeout_seconds: i64::from(pool.spec.media_node.heartbeat_timeout_seconds),
        };
        match place(&request, &views, policy, now) {
            Placement::Node(node) => {
                ledger.reserve(
                    ckey.clone(),
                    (ckey.0.clone(), node.clone()),
                    request.reservation,
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

/// Publishes a placement: its status, and the label of a node of an earlier version (see
/// [`label_for`]).
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
    let label = Label::Set(label_for(node.as_deref(), node_name));
    let written = write(ctx, conf, status, label).await;
    if let Err(e) = written {
        // Refused: the capacity is free again. Unanswered: the placement may have landed, and
        // giving its capacity away would over-commit the node once the watch shows it; the
        // next reconcile asks the API server (`await_cache`).
        let mut ledger = lock(&ctx.ledger);
        if e.refused() {
            ledger.release(&key(conf));
        } else {
            ledger.mark_unsure(&key(conf));
        }
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
    write(ctx, conf, status, Label::Keep).await?;
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
    // The media node closes the room when it sees the phase (one of an earlier version when
    // the label goes).
    write(ctx, conf, status, Label::Set(None)).await?;
    event(ctx, conf, false, "Ended", reason.to_owned()).await;
    Ok(Action::await_change())
}

/// What a write does with a conference's `conclave.dev/media-node` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label<'a> {
    /// Leaves it as it is.
    Keep,
    /// Makes it this (None: removes it), after the status.
    Set(Option<&'a str>),
}

/// The label a conference placed on `node_name` carries: the node's name when that node is
/// of an earlier version (or not known yet), which finds its conferences by the label; none
/// for a node that said it selects them by `status.mediaNode`, so its placement is one write.
fn label_for<'a>(node: Option<&MediaNode>, node_name: &'a str) -> Option<&'a str> {
    let selects_status = node
        .and_then(|n| n.status.as_ref()?.watches_conference_status)
        .unwrap_or(false);
    (!selects_status).then_some(node_name)
}

/// Writes the operator's status fields if they changed, then the label if `label` changes it.
/// Status first: a node of an earlier version being left reads the new join info when it
/// sees the label go.
///
/// Each write is conditional on the resourceVersion the decision was made on (the second on
/// the first's result): a write decided on an older object conflicts instead of landing, so a
/// leader paused mid-request that wakes after another took over cannot undo its placements.
/// What was written is remembered (`own_writes`), so the next reconcile decides on it even
/// if the watch has not delivered it yet.
async fn write(
    ctx: &Context,
    conf: &Conference,
    status: ConferenceStatus,
    label: Label<'_>,
) -> Result<()> {
    let mut based_on = conf.resource_version();
    let written = write_both(ctx, conf, status, label, &mut based_on).await;
    if let Err(e) = &written
        && e.kind() == "conflict"
    {
        // The version the refused write was based on is outdated.
        ctx.caches.own_conferences.refused(conf, based_on);
    }
    written
}

/// [`write`]'s writes, each at the version the one before produced; `based_on` follows the
/// version the next write is based on.
async fn write_both(
    ctx: &Context,
    conf: &Conference,
    status: ConferenceStatus,
    label: Label<'_>,
    based_on: &mut Option<String>,
) -> Result<()> {
    let written = write_status(ctx, conf, status, based_on.clone()).await?;
    *based_on = remember(ctx, based_on.clone(), written);
    if let Label::Set(wanted) = label {
        let written = write_label(ctx, conf, wanted, based_on.clone()).await?;
        *based_on = remember(ctx, based_on.clone(), written);
    }
    Ok(())
}

/// Records a write based on resourceVersion `before` that produced `after` (None when
/// nothing needed writing), so the next reconcile reads it even before the watch delivers it;
/// returns the resourceVersion the next write is based on.
fn remember(ctx: &Context, before: Option<String>, after: Option<Conference>) -> Option<String> {
    let Some(after) = after else {
        return before;
    };
    let rv = after.resource_version();
    ctx.caches.own_conferences.wrote(before, after);
    rv
}

/// Writes the status if it changed, at resourceVersion `rv`; returns the conference as
/// written (None when unchanged).
async fn write_status(
    ctx: &Context,
    conf: &Conference,
    mut status: ConferenceStatus,
    rv: Option<String>,
) -> Result<Option<Conference>> {
    status.participants = None;
    status.observed_generation = conf.metadata.generation;
    let mut old = conf.status.clone().unwrap_or_default();
    old.participants = None;
    if old == status {
        return Ok(None);
    }
    apply_status_at(ctx, conf, &status, rv.as_deref())
        .await
        .map(Some)
}

/// Sets the node label to `wanted` (None: removes it) if it differs, at resourceVersion `rv`;
/// returns the conference as written (None when nothing needed patching).
async fn write_label(
    ctx: &Context,
    conf: &Conference,
    wanted: Option<&str>,
    rv: Option<String>,
) -> Result<Option<Conference>> {
    if conf.labels().get(labels::MEDIA_NODE).map(String::as_str) == wanted {
        return Ok(None);
    }
    let mut metadata = serde_json::json!({"labels": {labels::MEDIA_NODE: wanted}});
    if let Some(rv) = &rv {
        metadata["resourceVersion"] = serde_json::json!(rv);
    }
    let api: Api<Conference> =
        Api::namespaced(ctx.client.clone(), &conf.namespace().unwrap_or_default());
    let patched = api
        .patch(
            &conf.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"metadata": metadata})),
        )
        .await
        .action(|| format!("labelling conference {}", conf.name_any()))?;
    Ok(Some(patched))
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

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::MediaNodeStatus;

    fn node(watches_conference_status: Option<bool>) -> MediaNode {
        let mut n: MediaNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "conclave.dev/v1alpha1", "kind": "MediaNode",
            "metadata": {"name": "web-a", "namespace": "ns"},
            "spec": {"pool": "web", "capacity": {"participants": 10, "rooms": 5, "egressMbps": 100}}
        }))
        .expect("a MediaNode");
        n.status = Some(MediaNodeStatus {
            watches_conference_status,
            ..Default::default()
        });
        n
    }

    #[test]
    fn only_media_nodes_of_earlier_versions_get_a_label() {
        assert_eq!(label_for(Some(&node(Some(true))), "web-a"), None);
        assert_eq!(label_for(Some(&node(None)), "web-a"), Some("web-a"));
        assert_eq!(
            label_for(None, "web-a"),
            Some("web-a"),
            "not in the cache yet: labelled, in case"
        );
    }
}
