//! The API server's own ceiling for the writes one placement brings, measured in the same run
//! as the placements it bounds: for each conference, the client's create, then the operator's
//! status apply (phase, node, join info, the Placed condition, conditional on the
//! resourceVersion), then the participant count
//! its media node reports once people joined (the simulated media nodes write it for every
//! conference of the placement run too), one after the other, with as many conferences in
//! flight as the placement load, in a namespace nobody watches. The rate of conferences so
//! written is what placement would reach if the operator cost nothing and reacted at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conclave_crds::report::participants_report;
use conclave_crds::{Conference, labels};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::bench::stats::Percentiles;
use crate::error::{Context, Error};

/// Namespace the ceiling is measured in.
pub const NAMESPACE: &str = "ceiling";

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
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
        .context("a Namespace manifest")?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context("create the ceiling namespace"),
    }
    let api: Api<Conference> = Api::namespaced(client.clone(), NAMESPACE);
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
    // Its deletion (the namespace controller lists and deletes every kind) must not run
    // beside the placements measured next.
    namespaces
        .delete(NAMESPACE, &DeleteParams::background())
        .await
        .context("delete the ceiling namespace")?;
    crate::wait::until(
        "the ceiling namespace to be deleted",
        Duration::from_secs(300),
        || async { matches!(namespaces.get_opt(NAMESPACE).await, Ok(None)).then_some(()) },
    )
    .await?;
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
    let now = serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now()))
        .map_err(kube::Error::SerdeError)?;
    api.patch_status(
        name,
        &PatchParams::apply("bench-ceiling").force(),
        &Patch::Apply(json!({
            "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
            "metadata": {"resourceVersion": created.resource_version()},
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
