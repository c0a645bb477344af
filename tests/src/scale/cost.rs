//! The operator's cost at scale: a pool of N media nodes (all heartbeating through the load
//! simulator), then M conferences placed as fast as the placement load generator offers them.
//! Measures the operator's resident memory and CPU from /proc, API requests per placement
//! from the API server's counters (minus what the simulator and the load generator sent),
//! and how long a restarted operator takes to rebuild its state and place again. Before the
//! placements it measures the API server's own ceiling for the writes they need, and the
//! create → join delay of the steady load with an operator that costs nothing (`ceiling`),
//! with the same nodes heartbeating, so the placement rate and delay are judged against them.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conclave_crds::{Conference, MediaNode, MediaNodePhase, MediaPool};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use super::apiserver::{self, Counts};
use super::ceiling::{self, Ceiling};
use super::simulator::Simulator;
use crate::bench::placement::{self, Load, Outcome};
use crate::bench::process::{cpu_seconds, rss_mib};
use crate::error::{Context, Error};
use crate::operator::Operator;
use crate::wait;

/// Name of the cost run's pool.
pub const POOL: &str = "cost";

/// Quiet time before each measurement, for the API server to finish the work of the one
/// before (heartbeats go on).
const SETTLE: Duration = Duration::from_secs(10);

/// What to measure.
#[derive(Clone, Debug, Serialize)]
pub struct CostSettings {
    pub media_nodes: u32,
    pub conferences: usize,
    /// maxParticipants of each conference.
    pub participants: u32,
    /// Create requests in flight.
    pub in_flight: usize,
    /// The first `steady_count` conferences are offered at `steady_rate` per second.
    pub steady_count: usize,
    pub steady_rate: f64,
    /// Seconds of steady heartbeats measured after the placements.
    pub steady_seconds: u64,
    /// The pool's heartbeat timeout.
    pub heartbeat_timeout_seconds: u32,
}

/// API requests the operator made during the placements.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiCost {
    /// Requests for Conclave objects and Events, all clients.
    pub total: f64,
    /// Of those, sent by the load simulator and the load generator.
    pub simulator: f64,
    pub load_generator: f64,
    /// The rest: the operator's.
    pub operator: f64,
    pub operator_per_placement: f64,
    /// Every (resource/subresource verb) that changed, all clients.
    pub breakdown: Vec<(String, f64)>,
}

/// The results.
#[derive(Clone, Debug, Serialize)]
pub struct CostOutcome {
    pub settings: CostSettings,
    /// Pool created → every media node Ready.
    pub nodes_ready_seconds: f64,
    pub rss_mib_nodes_ready: f64,
    pub rss_mib_after_placements: f64,
    pub rss_mib_after_steady: f64,
    pub rss_mib_peak: f64,
    /// Media nodes not Ready after the steady phase (a node failing would move conferences
    /// and spoil the figures).
    pub media_nodes_not_ready: usize,
    /// Conferences offered at `steady_rate`.
    pub steady: Outcome,
    /// The rest, offered as fast as `in_flight` allows.
    pub placement: Outcome,
    /// The API server's ceiling for the writes of as many placements, measured just before.
    pub ceiling: Ceiling,
    /// The placement rate as a share of that ceiling.
    pub share_of_ceiling: f64,
    /// The steady load answered by an operator that costs nothing, measured just before: the
    /// create → join delay at that rate that no operator goes under here.
    pub floor: Outcome,
    pub cpu_seconds_placements: f64,
    pub cpu_seconds_per_1000_placements: f64,
    /// Operator CPU while only heartbeats arrive (cores).
    pub steady_cpu_cores: f64,
    /// Heartbeats per second during the steady phase: Lease renewals and MediaNode status
    /// writes of the simulated media nodes.
    pub steady_heartbeats_per_second: f64,
    /// Requests per second the API server served during the steady phase (all clients, all
    /// resources, watches excluded), and of those, MediaNode status writes.
    pub steady_api_requests_per_second: f64,
    pub steady_medianode_status_writes_per_second: f64,
    pub api: ApiCost,
    /// Restart → a new conference has join info.
    pub restart_to_placement_seconds: f64,
    pub rss_mib_after_restart: f64,
}

/// Samples the operator's RSS every 500 ms and keeps the largest (in KiB).
struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn start(pid: u32) -> PeakRss {
        let peak = Arc::new(AtomicU64::new(0));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(mib) = rss_mib(pid) {
                    p.fetch_max((mib * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        PeakRss { peak, task }
    }

    fn mib(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pool(s: &CostSettings) -> MediaPool {
    serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "MediaPool",
        "metadata": {"name": POOL},
        "spec": {
            "nodeCapacity": {"participants": 200, "rooms": 50, "egressMbps": 100000},
            "scaling": {"minNodes": s.media_nodes, "maxNodes": s.media_nodes,
                        "bufferParticipants": 0},
            // One machine runs the control plane, the operator and every simulated media node:
            // when it saturates, status writes queue for seconds. A longer heartbeat timeout
            // than the default 15 s keeps that from failing nodes, which is not what is measured.
            "mediaNode": {"image": "ghcr.io/conclave-dev/media-node:bench",
                          "heartbeatTimeoutSeconds": s.heartbeat_timeout_seconds},
            "turn": {"enabled": false}
        }
    }))
    .expect("a MediaPool manifest")
}

async fn ready_nodes(api: &Api<MediaNode>) -> usize {
    api.list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(MediaNodePhase::Ready))
                .count()
        })
        .unwrap_or(0)
}

fn writes(sim: &Simulator) -> (u64, u64) {
    (
        sim.writes.node_reports.load(Ordering::Relaxed),
        sim.writes.conference_reports.load(Ordering::Relaxed),
    )
}

/// Runs the measurement. The load simulator must be running for `namespace`.
pub async fn run(
    client: &Client,
    kubeconfig: &Path,
    namespace: &str,
    log_dir: &Path,
    sim: &Simulator,
    settings: &CostSettings,
) -> Result<CostOutcome, Error> {
    let operator = Operator::start_simulated(kubeconfig, namespace, &log_dir.join("operator.log"))?;
    let peak = PeakRss::start(operator.pid());
    let nodes: Api<MediaNode> = Api::namespaced(client.clone(), namespace);
    let began = Instant::now();
    Api::<MediaPool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pool(settings))
        .await
        .context("create the cost MediaPool")?;
    let want = settings.media_nodes as usize;
    wait::until(
        &format!("{want} media nodes Ready"),
        Duration::from_secs(600),
        || async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            (ready_nodes(&nodes).await >= want).then_some(())
        },
    )
    .await?;
    let nodes_ready_seconds = began.elapsed().as_secs_f64();
    tracing::info!(
        nodes = want,
        seconds = nodes_ready_seconds,
        "media nodes Ready"
    );
    // Let the first heartbeats of every node settle before measuring.
    tokio::time::sleep(SETTLE).await;
    let pid = operator.pid();
    let rss_mib_nodes_ready = rss_mib(pid).unwrap_or(0.0);
    let burst = settings.conferences.saturating_sub(settings.steady_count);
    let ceiling = ceiling::measure(client, burst, settings.in_flight).await?;
    tracing::info!(
        placements_per_second = ceiling.placements_per_second,
        writes_per_second = ceiling.writes_per_second,
        "API server ceiling for placement writes"
    );

    // First a steady rate, then the rest as fast as the requests in flight allow.
    let steady_load = Load {
        run: "steady".into(),
        pool: POOL.into(),
        count: settings.steady_count,
        rate: Some(settings.steady_rate),
        in_flight: settings.in_flight,
        max_participants: settings.participants,
    };
    // The API server settles after the ceiling's namespace went (its conferences deleted)
    // before each timed load, as it did before the ceiling.
    tokio::time::sleep(SETTLE).await;
    let floor = ceiling::floor(
        client,
        kubeconfig,
        &Load {
            run: "floor".into(),
            ..steady_load.clone()
        },
    )
    .await?;
    tracing::info!(
        p50_ms = floor.create_to_join.p50_ms,
        p99_ms = floor.create_to_join.p99_ms,
        "create → join with an operator that costs nothing"
    );
    tokio::time::sleep(SETTLE).await;

    let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
    let api0 = apiserver::request_counts(client).await?;
    let sim0 = writes(sim);
    let steady = placement::run(client, namespace, &steady_load, Duration::from_secs(600)).await?;
    let load = Load {
        run: "burst".into(),
        rate: None,
        count: burst,
        ..steady_load
    };
    let placement = placement::run(client, namespace, &load, Duration::from_secs(600)).await?;
    let placed = steady.placed + placement.placed;
    let created = steady.created + placement.created;
    // Until the operator has also absorbed the participant reports that follow placement.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu1 = cpu_seconds(pid).unwrap_or(0.0);
    let api1 = apiserver::request_counts(client).await?;
    let sim1 = writes(sim);
    let renewals1 = sim.writes.lease_renewals.load(Ordering::Relaxed);
    let rss_mib_after_placements = rss_mib(pid).unwrap_or(0.0);
    let api = api_cost(&api1, &api0, sim0, sim1, created, placed);

    tokio::time::sleep(Duration::from_secs(settings.steady_seconds)).await;
    let cpu2 = cpu_seconds(pid).unwrap_or(0.0);
    let api2 = apiserver::request_counts(client).await?;
    let sim2 = writes(sim);
    let renewals2 = sim.writes.lease_renewals.load(Ordering::Relaxed);
    let rss_mib_after_steady = rss_mib(pid).unwrap_or(0.0);
    let media_nodes_not_ready = want.saturating_sub(ready_nodes(&nodes).await);
    let quiet = settings.steady_seconds.max(1) as f64;
    let steady_cpu_cores = (cpu2 - cpu1) / quiet;
    let cpu_seconds_placements = cpu1 - cpu0;
    let rss_mib_peak = peak.mib();
    drop(peak);

    drop(operator);
    let (restart_to_placement_seconds, rss_mib_after_restart) =
        restart(client, kubeconfig, namespace, log_dir, settings).await?;

    Ok(CostOutcome {
        settings: settings.clone(),
        nodes_ready_seconds,
        rss_mib_nodes_ready,
        rss_mib_after_placements,
        rss_mib_after_steady,
        rss_mib_peak,
        media_nodes_not_ready,
        cpu_seconds_per_1000_placements: cpu_seconds_placements * 1000.0 / placed.max(1) as f64,
        cpu_seconds_placements,
        share_of_ceiling: placement.placements_per_second / ceiling.placements_per_second.max(1e-9),
        floor,
        steady,
        placement,
        ceiling,
        steady_cpu_cores,
        steady_heartbeats_per_second: ((sim2.0 - sim1.0) + (renewals2 - renewals1)) as f64 / quiet,
        steady_api_requests_per_second: steady_requests(&api2, &api1, |_, _| true) / quiet,
        steady_medianode_status_writes_per_second: steady_requests(&api2, &api1, |r, s| {
            r == "medianodes" && s == "status"
        }) / quiet,
        api,
        restart_to_placement_seconds,
        rss_mib_after_restart,
    })
}

/// Requests served between two readings, watches excluded, of the (resource, subresource)
/// pairs `which` accepts.
fn steady_requests(after: &Counts, before: &Counts, which: impl Fn(&str, &str) -> bool) -> f64 {
    apiserver::delta(after, before)
        .iter()
        .filter(|((r, s, v), _)| v != "WATCH" && which(r, s))
        .map(|(_, n)| n)
        .sum()
}

/// Operator requests = requests for Conclave objects and Events − the simulator's status
/// writes − the load generator's creates.
fn api_cost(
    after: &Counts,
    before: &Counts,
    sim0: (u64, u64),
    sim1: (u64, u64),
    created: usize,
    placed: usize,
) -> ApiCost {
    let d = apiserver::delta(after, before);
    let ours = ["conferences", "medianodes", "mediapools", "events"];
    let total: f64 = d
        .iter()
        .filter(|((r, _, v), _)| ours.contains(&r.as_str()) && v != "WATCH")
        .map(|(_, n)| n)
        .sum();
    let simulator = ((sim1.0 - sim0.0) + (sim1.1 - sim0.1)) as f64;
    // Its creates, and the two lists of the over-commit check of each of its two runs.
    let load_generator = created as f64 + 4.0;
    let operator = (total - simulator - load_generator).max(0.0);
    ApiCost {
        total,
        simulator,
        load_generator,
        operator,
        operator_per_placement: operator / placed.max(1) as f64,
        breakdown: d
            .into_iter()
            .map(|((r, s, v), n)| {
                let what = if s.is_empty() { r } else { format!("{r}/{s}") };
                (format!("{what} {v}"), n)
            })
            .collect(),
    }
}

/// Starts a new operator (the old one was killed) and times until a conference created at
/// once has join info.
async fn restart(
    client: &Client,
    kubeconfig: &Path,
    namespace: &str,
    log_dir: &Path,
    settings: &CostSettings,
) -> Result<(f64, f64), Error> {
    let api: Api<Conference> = Api::namespaced(client.clone(), namespace);
    let began = Instant::now();
    let operator = Operator::start_simulated(
        kubeconfig,
        namespace,
        &log_dir.join("operator-restarted.log"),
    )?;
    let probe: Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": "after-restart"},
        "spec": {"pool": POOL, "maxParticipants": settings.participants}
    }))
    .context("a Conference manifest")?;
    api.create(&PostParams::default(), &probe)
        .await
        .context("create the probe conference")?;
    wait::until(
        "the restarted operator to place a conference",
        Duration::from_secs(300),
        || async {
            let c = api.get("after-restart").await.ok()?;
            c.status.and_then(|s| s.join).map(|_| ())
        },
    )
    .await?;
    let seconds = began.elapsed().as_secs_f64();
    Ok((seconds, rss_mib(operator.pid()).unwrap_or(0.0)))
}
