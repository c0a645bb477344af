//! The API server's own limits for the writes one placement brings, measured in the same run
//! as the placements they bound. The ceiling: for each conference, the client's create, then
//! the operator's status apply (phase, node, join info, the Placed condition, conditional on
//! the resourceVersion), then the participant count its media node reports once people
//! joined (the simulated media nodes write it for every conference of the placement run
//! too), one after the other, with as many conferences in flight as the placement load, in a
//! namespace nobody watches. The rate of conferences so written is what placement would reach
//! if the operator cost nothing and reacted at once. The floor: the placement load generator's
//! steady load, answered by an operator that costs nothing (a watch that writes each
//! placement as soon as it sees the conference): the create → join delay no operator can go
//! under on this API server at that rate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conclave_crds::report::participants_report;
use conclave_crds::{Conference, labels};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::bench::placement::{self, Load, Outcome};
use crate::bench::stats::Percentiles;
use crate::error::{Context, Error};

/// Namespace the ceiling is measured in.
pub const NAMESPACE: &str = "ceiling";

/// Namespace the floor is measured in.
pub const FLOOR_NAMESPACE: &str = "floor";

/// API writes of one placement: the create, the status apply and the media node's
/// participant report.
pub const WRITES_PER_PLACEMENT: u32 = 3;

/// What was measured.
#[derive(Clone, Debug, Serialize)]
pub struct Ceiling {
    /// Conferences whose writes all succeeded.
    pub conferences: usize,
    /// Writes refused or failed.
    pub errors: usize,
    pub seconds: f64,
    pub writes_per_placement: u32,
    /// Conferences written per second: the ceiling of placements per second.
    pub placements_per_second: f64,
    pub writes_per_second: f64,
    /// First write sent → last write answered, per conference.
    pub latency: Percentiles,
}

/// Writes `count` conferences' placement writes with `in_flight` conferences at a time.
pub async fn measure(client: &Client, count: usize, in_flight: usize) -> Result<Ceiling, Error> {
    let api = scratch_namespace(client, NAMESPACE).await?;
    let permits = Arc::new(Semaphore::new(in_flight.max(1)));
    let errors = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (api, errors) = (api.clone(), Arc::clone(&errors));
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            let written = place(&api, &format!("ceiling-{i:05}")).await;
            drop(permit);
            match written {
                Ok(()) => Some(at.elapsed()),
                Err(e) => {
                    tracing::debug!(error = %e, "ceiling write failed");
                    errors.fetch_add(1, Ordering::Relaxed);
                    None
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        if let Ok(Some(took)) = task.await {
            latencies.push(took);
        }
    }
    let seconds = began.elapsed().as_secs_f64();
    let conferences = latencies.len();
    delete_namespace(client, NAMESPACE).await?;
    Ok(Ceiling {
        conferences,
        errors: errors.load(Ordering::Relaxed),
        seconds,
        writes_per_placement: WRITES_PER_PLACEMENT,
        placements_per_second: conferences as f64 / seconds.max(1e-9),
        writes_per_second: (conferences as f64 * f64::from(WRITES_PER_PLACEMENT))
            / seconds.max(1e-9),
        latency: Percentiles::of(&latencies),
    })
}

/// Offers `load` (its pool is ignored) in a namespace of its own where a watch stands in for
/// an operator that costs nothing: it writes each conference's placement (the status apply,
/// then the participant report) as soon as it sees the conference. The stand-in has a thread,
/// a runtime and an API client of its own, as the operator has a process of its own.
pub async fn floor(client: &Client, kubeconfig: &Path, load: &Load) -> Result<Outcome, Error> {
    scratch_namespace(client, FLOOR_NAMESPACE).await?;
    let stand_in = StandIn::start(kubeconfig.to_owned())?;
    let outcome = placement::run(client, FLOOR_NAMESPACE, load, Duration::from_secs(600)).await;
    drop(stand_in);
    delete_namespace(client, FLOOR_NAMESPACE).await?;
    outcome
}

/// The stand-in operator of `floor`, on a thread of its own until dropped.
struct StandIn {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    fn start(kubeconfig: PathBuf) -> Result<StandIn, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("a runtime for the stand-in operator")?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let client = match crate::client::from_kubeconfig(&kubeconfig).await {
                    Ok(client) => client,
                    Err(e) => return tracing::warn!(error = %e, "stand-in operator: no client"),
                };
                let api = Api::namespaced(client, FLOOR_NAMESPACE);
                tokio::select! {
                    () = place_what_appears(api) => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(StandIn {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Places every conference that appears without a status at once, each on a task of its
/// own.
async fn place_what_appears(api: Api<Conference>) {
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) = event else {
            continue;
        };
        if c.status.is_some() {
            continue;
        }
        let (api, name, version) = (api.clone(), c.name_any(), c.resource_version());
        tokio::spawn(async move {
            if let Err(e) = settle(&api, &name, version).await {
                tracing::debug!(error = %e, conference = %name, "floor write failed");
            }
        });
    }
}

/// Creates namespace `name` (with every other kind of object, deleted with it later) and
/// hands its Conference API.
async fn scratch_namespace(client: &Client, name: &str) -> Result<Api<Conference>, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
        .context("a Namespace manifest")?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context(format!("create the {name} namespace")),
    }
    Ok(Api::namespaced(client.clone(), name))
}

/// Deletes namespace `name` and waits until it is gone: its deletion (the namespace
/// controller lists and deletes every kind) must not run beside what is measured next.
async fn delete_namespace(client: &Client, name: &str) -> Result<(), Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(name, &DeleteParams::background())
        .await
        .context(format!("delete the {name} namespace"))?;
    crate::wait::until(
        &format!("the {name} namespace to be deleted"),
        Duration::from_secs(300),
        || async { matches!(namespaces.get_opt(name).await, Ok(None)).then_some(()) },
    )
    .await
}

/// The writes of one placement of conference `name`, as the load generator, the operator and
/// the media node send them.
async fn place(api: &Api<Conference>, name: &str) -> Result<(), kube::Error> {
    let conference: Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": name},
        "spec": {"pool": "cost", "maxParticipants": 5}
    }))
    .map_err(kube::Error::SerdeError)?;
    let created = api.create(&PostParams::default(), &conference).await?;
    settle(api, name, created.resource_version()).await
}

/// The writes that follow a conference's create: the operator's status apply at
/// `resource_version`, then its media node's participant report.
async fn settle(
    api: &Api<Conference>,
    name: &str,
    resource_version: Option<String>,
) -> Result<(), kube::Error> {
    let now = serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now()))
        .map_err(kube::Error::SerdeError)?;
    api.patch_status(
        name,
        &PatchParams::apply("bench-ceiling").force(),
        &Patch::Apply(json!({
            "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
            "metadata": {"resourceVersion": resource_version},
            "status": {
                "phase": "Active",
                "mediaNode": "cost-00001",
                "pool": "cost",
                "placedAt": now,
                "activeSince": now,
                "join": {
                    "signalingUrl": "wss://cost-00001.media.example:7880/rooms",
                    "publicAddress": "192.0.2.1",
                    "iceServers": [{"urls": ["stun:192.0.2.1:7882"]}],
                },
                "conditions": [{
                    "type": "Placed", "status": "True", "reason": "Packed",
                    "message": "placed on cost-00001", "lastTransitionTime": now,
                }],
            },
        })),
    )
    .await?;
    api.patch_status(
        name,
        &PatchParams::apply(labels::MEDIA_NODE_MANAGER).force(),
        &Patch::Apply(participants_report(5)),
    )
    .await?;
    Ok(())
}
