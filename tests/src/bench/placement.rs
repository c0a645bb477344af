//! Placement load: creates Conferences for a pool at a steady rate or as fast as a number of
//! requests in flight allows, and measures, from a watch, the time from each create request to
//! join info in its status. Afterwards it checks the result: every conference placed once (a
//! node change without a recorded move is a double placement) and no node over-committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_crds::{Conference, MediaNode};
use futures::StreamExt;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::stats::Percentiles;
use crate::error::{Context, Error};

/// Label every conference of one load run carries.
pub const RUN_LABEL: &str = "bench.conclave.dev/run";

/// What load to offer.
#[derive(Clone, Debug)]
pub struct Load {
    /// Name of the run: conference names and the run label derive from it.
    pub run: String,
    /// The pool the conferences ask for.
    pub pool: String,
    /// How many conferences to create.
    pub count: usize,
    /// Conferences per second, or None for as fast as `in_flight` allows.
    pub rate: Option<f64>,
    /// Most create requests outstanding at once.
    pub in_flight: usize,
    /// maxParticipants of each conference.
    pub max_participants: u32,
}

/// What happened.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub run: String,
    pub offered_rate: Option<f64>,
    pub created: usize,
    pub create_errors: usize,
    pub placed: usize,
    /// Create request sent → join info seen on the watch.
    pub create_to_join: Percentiles,
    /// First create sent → last join info seen.
    pub seconds: f64,
    /// Placements per second over `seconds`.
    pub placements_per_second: f64,
    /// Conferences whose node changed without a move being recorded.
    pub double_placements: usize,
    /// Nodes holding more reserved participants or rooms than their capacity.
    pub over_committed_nodes: Vec<String>,
}

#[derive(Default)]
struct Seen {
    joined: HashMap<String, Instant>,
    node: HashMap<String, (String, u32)>,
    double_placements: usize,
}

/// Offers `load` to the pool in `namespace` and waits (at most `timeout`) for every
/// conference to be placed.
pub async fn run(
    client: &Client,
    namespace: &str,
    load: &Load,
    timeout: Duration,
) -> Result<Outcome, Error> {
    let api: Api<Conference> = Api::namespaced(client.clone(), namespace);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(observe(
        api.clone(),
        load.run.clone(),
        Arc::clone(&seen),
        ready_tx,
    ));
    if !matches!(
        tokio::time::timeout(Duration::from_secs(30), ready_rx).await,
        Ok(Ok(()))
    ) {
        return Err(Error::Timeout {
            what: "the conference watch to start".into(),
            secs: 30,
        });
    }

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let errors = Arc::new(Mutex::new(0usize));
    let permits = Arc::new(Semaphore::new(load.in_flight.max(1)));
    let start = Instant::now();
    let mut creates = Vec::with_capacity(load.count);
    for i in 0..load.count {
        if let Some(rate) = load.rate {
            tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into())
                .await;
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let name = format!("{}-{i:05}", load.run);
        let conference = conference(&name, load);
        let (api, sent, errors) = (api.clone(), Arc::clone(&sent), Arc::clone(&errors));
        creates.push(tokio::spawn(async move {
            let at = Instant::now();
            match api.create(&PostParams::default(), &conference).await {
                Ok(_) => {
                    lock(&sent).insert(name, at);
                }
                Err(e) => {
                    tracing::warn!(conference = %name, error = %e, "create failed");
                    *lock(&errors) += 1;
                }
            }
            drop(permit);
        }));
    }
    for c in creates {
        let _ = c.await;
    }
    let created = lock(&sent).len();
    let deadline = Instant::now() + timeout;
    while lock(&seen).joined.len() < created && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();

    let over_committed_nodes = over_committed(client, namespace).await?;
    let sent = lock(&sent).clone();
    let create_errors = *lock(&errors);
    let seen = lock(&seen);
    let latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(name, at)| Some(seen.joined.get(name)?.saturating_duration_since(*at)))
        .collect();
    let last = seen.joined.values().max().copied().unwrap_or(start);
    let seconds = last.saturating_duration_since(start).as_secs_f64();
    let placed = latencies.len();
    Ok(Outcome {
        run: load.run.clone(),
        offered_rate: load.rate,
        created,
        create_errors,
        placed,
        create_to_join: Percentiles::of(&latencies),
        seconds,
        placements_per_second: if seconds > 0.0 {
            placed as f64 / seconds
        } else {
            0.0
        },
        double_placements: seen.double_placements,
        over_committed_nodes,
    })
}

/// Deletes the conferences of `run` and waits until they are gone.
pub async fn clean_up(client: &Client, namespace: &str, run: &str) -> Result<(), Error> {
    let api: Api<Conference> = Api::namespaced(client.clone(), namespace);
    let selector = ListParams::default().labels(&format!("{RUN_LABEL}={run}"));
    api.delete_collection(&DeleteParams::background(), &selector)
        .await
        .context(format!("delete the conferences of run {run}"))?;
    crate::wait::until(
        &format!("the conferences of run {run} to be deleted"),
        Duration::from_secs(300),
        || async {
            api.list(&selector)
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await
}

fn conference(name: &str, load: &Load) -> Conference {
    let manifest = json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": name, "labels": {RUN_LABEL: load.run}},
        "spec": {"pool": load.pool, "maxParticipants": load.max_participants}
    });
    serde_json::from_value(manifest).expect("a valid Conference manifest")
}

/// Records when each conference of `run` first shows join info and whether its node ever
/// changes without a move.
async fn observe(
    api: Api<Conference>,
    run: String,
    seen: Arc<Mutex<Seen>>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let config = watcher::Config::default().labels(&format!("{RUN_LABEL}={run}"));
    let mut events = watcher(api, config).boxed();
    let mut ready = Some(ready);
    while let Some(event) = events.next().await {
        let conference = match event {
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => c,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "conference watch error");
                continue;
            }
        };
        let now = Instant::now();
        let Some(status) = conference.status else {
            continue;
        };
        let (Some(node), Some(_)) = (status.media_node, status.join) else {
            continue;
        };
        let name = conference.metadata.name.unwrap_or_default();
        let mut seen = lock(&seen);
        seen.joined.entry(name.clone()).or_insert(now);
        let previous = seen.node.insert(name, (node.clone(), status.moves));
        if let Some((before, moves)) = previous
            && before != node
            && moves == status.moves
        {
            seen.double_placements += 1;
        }
    }
}

/// Nodes whose placed conferences reserve more than the node's capacity.
async fn over_committed(client: &Client, namespace: &str) -> Result<Vec<String>, Error> {
    let conferences: Api<Conference> = Api::namespaced(client.clone(), namespace);
    let nodes: Api<MediaNode> = Api::namespaced(client.clone(), namespace);
    let mut reserved: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for c in conferences
        .list(&ListParams::default())
        .await
        .context("list conferences")?
    {
        if let Some(node) = c.status.as_ref().and_then(|s| s.media_node.clone()) {
            let entry = reserved.entry(node).or_default();
            entry.0 += c.spec.max_participants;
            entry.1 += 1;
        }
    }
    let capacity: HashMap<String, (u32, u32)> = nodes
        .list(&ListParams::default())
        .await
        .context("list media nodes")?
        .into_iter()
        .map(|n| {
            let c = n.spec.capacity;
            (n.name_any(), (c.participants, c.rooms))
        })
        .collect();
    Ok(reserved
        .into_iter()
        .filter(|(node, (participants, rooms))| {
            capacity
                .get(node)
                .is_none_or(|(cap_p, cap_r)| participants > cap_p || rooms > cap_r)
        })
        .map(|(node, _)| node)
        .collect())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
