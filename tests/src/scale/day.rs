//! Plays a simulated day against the operator: creates the day's pool, then creates each
//! planned conference when the application would (scheduled ones ahead with startTime and
//! endTime, ad-hoc ones when they start) and deletes it when it ends, on a clock that runs a
//! day in `day_seconds`; the observer records what the operator made of it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use conclave_crds::{Conference, MediaPool};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::observe::{Observed, Observer};
use super::plan::{DAY, DaySpec, Planned, plan};
use super::simulator::ATTENDEES;
use super::summary::{DaySummary, summarize};
use crate::error::{Context, Error};
use crate::wait;

/// Name of the day's pool.
pub const POOL: &str = "day";

/// The day and the pool that serves it. Pool times are real seconds.
#[derive(Clone, Debug, Serialize)]
pub struct DaySettings {
    pub day: DaySpec,
    /// Real seconds one simulated day takes.
    pub day_seconds: f64,
    /// Participants and rooms of one media node.
    pub node_participants: u32,
    pub node_rooms: u32,
    pub min_nodes: u32,
    pub max_nodes: u32,
    pub buffer_participants: u32,
    pub warmup_seconds: u32,
    pub scale_down_delay_seconds: u32,
    /// Conferences say how many they expect (expectedParticipants); otherwise each reserves
    /// its maxParticipants.
    pub expected_attendance: bool,
}

impl DaySettings {
    /// Day seconds per real second.
    pub fn compression(&self) -> f64 {
        DAY / self.day_seconds
    }
}

/// The day's results and the timeline behind them.
#[derive(Clone, Debug, Serialize)]
pub struct DayOutcome {
    pub settings: DaySettings,
    pub summary: DaySummary,
    /// Per-second samples, with `t` converted to hours of the simulated day.
    pub timeline: Vec<super::observe::Sample>,
    /// Planned participants per quarter hour (what the application asked for).
    pub planned_participants: Vec<(f64, u32)>,
}

/// The day's MediaPool: no evacuation (draining nodes keep their meetings until they end) and
/// a drain timeout longer than any meeting, so scale-down never interrupts a conference.
pub fn pool(s: &DaySettings) -> MediaPool {
    serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "MediaPool",
        "metadata": {"name": POOL},
        "spec": {
            "nodeCapacity": {"participants": s.node_participants, "rooms": s.node_rooms,
                             "egressMbps": 100000},
            "scaling": {
                "minNodes": s.min_nodes, "maxNodes": s.max_nodes,
                "bufferParticipants": s.buffer_participants,
                "warmupSeconds": s.warmup_seconds,
                "scaleDownDelaySeconds": s.scale_down_delay_seconds,
                "drainTimeoutSeconds": 86400, "evacuationRate": 0, "strategy": "Packed"
            },
            "mediaNode": {"image": "ghcr.io/conclave-dev/media-node:bench"},
            "turn": {"enabled": false}
        }
    }))
    .expect("a MediaPool manifest")
}

/// The day's clock: day second → real instant and wall-clock second.
#[derive(Clone, Copy, Debug)]
struct Clock {
    t0: Instant,
    wall0: i64,
    compression: f64,
}

impl Clock {
    /// Starts at the next whole wall-clock second, at least `lead` from now.
    async fn start(compression: f64, lead: Duration) -> Clock {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let wall0 = (now + lead).as_secs() as i64 + 1;
        let wait = Duration::from_secs(wall0 as u64).saturating_sub(now);
        let t0 = Instant::now() + wait;
        Clock {
            t0,
            wall0,
            compression,
        }
    }

    /// Real seconds after t0, rounded to whole seconds (times in specs are whole seconds).
    fn offset(&self, day_second: f64) -> i64 {
        (day_second / self.compression).round() as i64
    }

    fn instant(&self, day_second: f64) -> Instant {
        self.t0 + Duration::from_secs(self.offset(day_second).max(0) as u64)
    }

    fn precise(&self, day_second: f64) -> Instant {
        self.t0 + Duration::from_secs_f64((day_second / self.compression).max(0.0))
    }

    fn timestamp(&self, day_second: f64) -> String {
        k8s_openapi::jiff::Timestamp::from_second(self.wall0 + self.offset(day_second))
            .map(|t| t.to_string())
            .unwrap_or_default()
    }
}

fn conference(c: &Planned, clock: &Clock, expected_attendance: bool) -> Conference {
    let mut spec = json!({"pool": POOL, "maxParticipants": c.max_participants});
    if expected_attendance {
        spec["expectedParticipants"] = json!(c.expected);
    }
    if c.scheduled {
        spec["startTime"] = json!(clock.timestamp(c.start_at));
        spec["endTime"] = json!(clock.timestamp(c.end_at));
    }
    serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": c.name, "annotations": {ATTENDEES: c.attendees.to_string()}},
        "spec": spec
    }))
    .expect("a Conference manifest")
}

enum Step {
    Create(usize),
    Delete(usize),
}

/// Creates the day's pool (before the operator starts: see the caller).
pub async fn create_pool(
    client: &Client,
    namespace: &str,
    settings: &DaySettings,
) -> Result<(), Error> {
    Api::<MediaPool>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &pool(settings))
        .await
        .context("create the day's MediaPool")?;
    Ok(())
}

/// Waits for the pool's minimum of Ready nodes, plays the day and summarizes it. The pool
/// must exist, and the load simulator and the operator must be running for the namespace.
pub async fn run(
    client: &Client,
    namespace: &str,
    settings: &DaySettings,
) -> Result<DayOutcome, Error> {
    let day = plan(&settings.day);
    let observer = Observer::start(client, namespace, Duration::from_secs(1));
    let min = settings.min_nodes as usize;
    wait::until(
        &format!("{min} media nodes Ready"),
        Duration::from_secs(300),
        || async { (observer.ready_nodes() >= min).then_some(()) },
    )
    .await?;

    let clock = Clock::start(settings.compression(), Duration::from_secs(2)).await;
    let mut steps: Vec<(Instant, Step)> = Vec::with_capacity(day.len() * 2);
    for (i, c) in day.iter().enumerate() {
        steps.push((clock.precise(c.create_at), Step::Create(i)));
        steps.push((clock.instant(c.end_at), Step::Delete(i)));
    }
    steps.sort_by_key(|s| s.0);
    tracing::info!(
        conferences = day.len(),
        seconds = settings.day_seconds,
        "the day begins"
    );
    let api: Api<Conference> = Api::namespaced(client.clone(), namespace);
    let in_flight = Arc::new(Semaphore::new(128));
    let notes = observer.notes();
    let mut requests = tokio::task::JoinSet::new();
    for (at, step) in steps {
        tokio::time::sleep_until(at.into()).await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (api, observer) = (api.clone(), notes.clone());
        let c = match step {
            Step::Create(i) => (&day[i], true),
            Step::Delete(i) => (&day[i], false),
        };
        let (planned, create) = (c.0.clone(), c.1);
        let manifest = create.then(|| conference(&planned, &clock, settings.expected_attendance));
        requests.spawn(async move {
            let _permit = permit;
            match manifest {
                Some(m) => {
                    observer.created(&planned.name, Instant::now());
                    if let Err(e) = api.create(&PostParams::default(), &m).await {
                        tracing::warn!(conference = planned.name, error = %e, "create failed");
                    }
                }
                None => {
                    observer.over(&planned.name);
                    let _ = api.delete(&planned.name, &DeleteParams::default()).await;
                }
            }
        });
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Samples in hours of the simulated day, from its midnight to the next.
    let lead = clock.t0.duration_since(observer.started).as_secs_f64();
    let mut observed: Observed = observer.stop();
    for s in &mut observed.samples {
        s.t = (s.t - lead) * clock.compression / 3600.0;
    }
    observed.samples.retain(|s| (0.0..=24.0).contains(&s.t));
    let summary = summarize(
        &day,
        &observed,
        |d| clock.instant(d),
        settings.node_participants,
    );
    Ok(DayOutcome {
        settings: settings.clone(),
        summary,
        timeline: observed.samples,
        planned_participants: (0..96)
            .map(|q| {
                let t = f64::from(q) * 900.0;
                (t / 3600.0, super::plan::participants_at(&day, t))
            })
            .collect(),
    })
}
