//! One pod on one local Node, from first sight to removal: admission (can its images run
//! here?), container starts with env and credentials, probes, restarts, status reports,
//! and graceful termination followed by removal of the pod object. This file owns the
//! worker's loop, admission and container starts; `probing` and `stopping` the rest.

mod probing;
mod stopping;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{mpsc, watch};

use super::container::{ContainerRecord, restarts};
use super::credentials::{self, ApiEndpoint, PodCredentials};
use super::image::{self, Program};
use super::process::{self, Exit, Launch, StartId};
use super::status::PodRecord;
use super::{KubeletConfig, LocalNode, container_log};
use crate::error::is_not_found;

/// What the dispatcher tells a pod worker.
#[derive(Debug, Clone)]
pub enum PodUpdate {
    /// The pod as last seen in the API.
    Current(Box<Pod>),
    /// The pod object is gone from the API.
    Gone,
    /// The kubelet shuts down: stop the containers quickly, leave the API alone.
    KubeletStopping,
}

/// What every pod worker shares.
pub struct Shared {
    pub client: Client,
    pub config: KubeletConfig,
    pub endpoint: ApiEndpoint,
}

/// How long a failed container configuration (missing Secret, token) waits to be retried.
const CONFIG_RETRY: Duration = Duration::from_secs(2);
/// How often probes run and the status is recomputed.
const TICK: Duration = Duration::from_secs(1);
/// Grace period when the kubelet itself stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs `pod` on `node` until it is removed from the API or the kubelet stops.
pub async fn run(
    shared: Arc<Shared>,
    node: LocalNode,
    pod: Pod,
    mut updates: watch::Receiver<PodUpdate>,
) {
    let mut worker = PodWorker::new(shared, node, pod);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if worker.pod.metadata.deletion_timestamp.is_none() {
        worker.admit();
    }
    loop {
        if let Some(grace) = worker
            .pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .map(|_| worker.deletion_grace())
        {
            worker.terminate(grace).await;
            worker.remove().await;
            return;
        }
        worker.start_due().await;
        worker.report().await;
        tokio::select! {
            changed = updates.changed() => {
                let update = if changed.is_ok() { updates.borrow_and_update().clone() } else { PodUpdate::KubeletStopping };
                match update {
                    PodUpdate::Current(pod) => worker.pod = *pod,
                    PodUpdate::Gone => {
                        let grace = worker.spec_grace();
                        worker.terminate(grace).await;
                        worker.forget();
                        return;
                    }
                    PodUpdate::KubeletStopping => {
                        worker.terminate(SHUTDOWN_GRACE.min(worker.spec_grace())).await;
                        return;
                    }
                }
            }
            Some((id, exit)) = worker.exits_rx.recv() => worker.exited(id, exit),
            _ = tick.tick() => {
                worker.probe().await;
                worker.refresh_credentials().await;
            }
        }
    }
}

struct PodWorker {
    shared: Arc<Shared>,
    node: LocalNode,
    pod: Pod,
    pods: Api<Pod>,
    record: PodRecord,
    /// The program of each container, once admitted.
    programs: Vec<Option<(Program, PathBuf)>>,
    credentials: Option<PodCredentials>,
    dir: PathBuf,
    exits_tx: mpsc::UnboundedSender<(StartId, Exit)>,
    exits_rx: mpsc::UnboundedReceiver<(StartId, Exit)>,
    reported: Option<PodStatus>,
    /// The pod had ended before this kubelet saw it: run nothing, report nothing.
    ended_before: bool,
    stopping: bool,
    warned_unsupported: Vec<bool>,
}

impl PodWorker {
    fn new(shared: Arc<Shared>, node: LocalNode, pod: Pod) -> Self {
        let now = Instant::now();
        let containers: Vec<ContainerRecord> = containers(&pod)
            .iter()
            .map(|c| {
                ContainerRecord::new(
                    &c.name,
                    c.image.as_deref().unwrap_or_default(),
                    c.readiness_probe.is_some(),
                    now,
                )
            })
            .collect();
        let count = containers.len();
        let namespace = pod.namespace().unwrap_or_default();
        let uid = pod.uid().unwrap_or_default();
        let dir = shared
            .config
            .state_dir
            .join("pods")
            .join(format!("{namespace}_{}_{uid}", pod.name_any()));
        let ended_before = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let (exits_tx, exits_rx) = mpsc::unbounded_channel();
        PodWorker {
            pods: Api::namespaced(shared.client.clone(), &namespace),
            shared,
            node,
            pod,
            record: PodRecord::new(containers, Timestamp::now()),
            programs: vec![None; count],
            credentials: None,
            dir,
            exits_tx,
            exits_rx,
            reported: None,
            ended_before,
            stopping: false,
            warned_unsupported: vec![false; count],
        }
    }

    /// Decides whether this kubelet can run the pod at all; if not, the pod fails with a
    /// reason naming what is missing, instead of waiting forever.
    fn admit(&mut self) {
        if self.ended_before {
            self.record
                .containers
                .iter_mut()
                .for_each(ContainerRecord::cancel_starts);
            return;
        }
        let spec = self.pod.spec.clone().unwrap_or_default();
        let refusal = if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
            Some((
                "InitContainersNotSupported",
                "the harness kubelet does not run init containers".to_owned(),
            ))
        } else {
            spec.containers
                .iter()
                .enumerate()
                .find_map(|(i, c)| match self.program(c) {
                    Ok(program) => {
                        self.programs[i] = Some(program);
                        None
                    }
                    Err(refusal) => Some(refusal),
                })
        };
        if let Some((reason, message)) = refusal {
            tracing::warn!(pod = %self.pod.name_any(), reason, message, "pod cannot run here");
            for c in &mut self.record.containers {
                c.blocked(reason, message.clone(), None);
            }
            self.record.failure = Some((reason.to_owned(), message));
        } else if let Err(e) = std::fs::create_dir_all(&self.dir) {
            self.record.failure = Some((
                "RunContainerError".into(),
                format!("create {}: {e}", self.dir.display()),
            ));
        }
    }

    fn program(&self, c: &Container) -> Result<(Program, PathBuf), (&'static str, String)> {
        let image = c.image.as_deref().unwrap_or_default();
        let program = Program::for_image(image).ok_or_else(|| {
            ("ImageNotRunnable", format!(
                "image {image:?} cannot be run by the harness kubelet: it runs */media-node, */operator, coturn/coturn and conclave.dev/testenv/http (docs/pod-contract.md)"
            ))
        })?;
        let config = &self.shared.config;
        let path = image::locate(program, &config.bin_dir, config.path.as_deref())
            .map_err(|e| ("ImageNotRunnable", format!("image {image:?}: {e}")))?;
        image::argv(program, c.command.as_deref().unwrap_or_default(), &[])
            .map_err(|e| ("CommandNotRunnable", e))?;
        Ok((program, path))
    }

    /// Starts every container whose start is due.
    async fn start_due(&mut self) {
        if self.stopping || self.record.failure.is_some() {
            return;
        }
        let now = Instant::now();
        for i in 0..self.record.containers.len() {
            if self.record.containers[i]
                .next_start
                .is_some_and(|due| due <= now)
            {
                self.start(i).await;
            }
        }
    }

    async fn start(&mut self, i: usize) {
        let Some((program, path)) = self.programs[i].clone() else {
            return;
        };
        let retry = Some(Instant::now() + CONFIG_RETRY);
        let spec = containers(&self.pod)[i].clone();
        let env = match self.environment(&spec).await {
            Ok(env) => env,
            Err(message) => {
                tracing::warn!(pod = %self.pod.name_any(), container = %spec.name, %message, "cannot configure container");
                return self.record.containers[i].blocked(
                    "CreateContainerConfigError",
                    message,
                    retry,
                );
            }
        };
        let expand = |words: &Option<Vec<String>>| -> Vec<String> {
            let lookup = |name: &str| env.get(name).map(String::as_str);
            words
                .iter()
                .flatten()
                .map(|w| super::expand::expand(w, lookup))
                .collect()
        };
        let argv = match image::argv(program, &expand(&spec.command), &expand(&spec.args)) {
            Ok(argv) => argv,
            Err(message) => {
                return self.record.containers[i].blocked("CommandNotRunnable", message, None);
            }
        };
        // The log shows `$(VAR)` references unexpanded, as the pod spec does: expanded
        // arguments may carry Secret values.
        let raw = |words: &Option<Vec<String>>| words.clone().unwrap_or_default();
        let logged_args =
            image::argv(program, &raw(&spec.command), &raw(&spec.args)).unwrap_or_default();
        let namespace = self.pod.namespace().unwrap_or_default();
        let launch = Launch {
            program: path,
            args: argv,
            logged_args,
            env,
            workdir: self.dir.clone(),
            log: container_log(
                &self.shared.config.log_dir,
                &namespace,
                &self.pod.name_any(),
                &spec.name,
            ),
        };
        let record = &mut self.record.containers[i];
        let id = StartId {
            container: i,
            start: record.starts + 1,
        };
        match process::spawn(&launch, id, self.exits_tx.clone()) {
            Ok(pid) => {
                record.started(pid, Timestamp::now(), Instant::now());
                tracing::info!(pod = %self.pod.name_any(), namespace, container = %spec.name, pid, node = %self.node.name, "container started");
            }
            Err(e) => record.blocked("RunContainerError", e.to_string(), retry),
        }
    }

    /// The container's environment plus what the harness adds: KUBECONFIG with the pod's
    /// credentials, HOSTNAME, and PATH so programs can find system tools.
    async fn environment(
        &mut self,
        spec: &Container,
    ) -> Result<std::collections::BTreeMap<String, String>, String> {
        let shared = self.shared.clone();
        let mut env =
            super::environment::resolve(&shared.client, &self.pod, spec, self.node.address)
                .await
                .map_err(|e| e.to_string())?;
        if credentials::wanted(&self.pod) {
            if self.credentials.is_none() {
                let issued =
                    credentials::issue(&shared.client, &shared.endpoint, &self.pod, &self.dir)
                        .await;
                self.credentials = Some(issued.map_err(|e| e.to_string())?);
            }
            if let Some(c) = &self.credentials {
                env.insert("KUBECONFIG".into(), c.kubeconfig.display().to_string());
            }
        }
        env.entry("HOSTNAME".into())
            .or_insert_with(|| self.pod.name_any());
        if let Some(path) = shared.config.path.as_ref().and_then(|p| p.to_str()) {
            env.entry("PATH".into()).or_insert_with(|| path.to_owned());
        }
        Ok(env)
    }

    fn exited(&mut self, id: StartId, exit: Exit) {
        let Some(record) = self.record.containers.get_mut(id.container) else {
            return;
        };
        if record.starts != id.start {
            return; // an older start of this container
        }
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_default();
        let restart =
            !self.stopping && self.record.failure.is_none() && restarts(&policy, exit.code);
        tracing::info!(pod = %self.pod.name_any(), container = %record.name, code = exit.code, restart, "container exited");
        record.exited(exit, restart, Timestamp::now(), Instant::now());
    }

    async fn refresh_credentials(&mut self) {
        let Some(c) = self.credentials.as_mut() else {
            return;
        };
        if c.refresh_at > Instant::now() {
            return;
        }
        if let Err(e) = credentials::refresh(&self.shared.client, &self.pod, c).await {
            tracing::warn!(pod = %self.pod.name_any(), error = %e, "token refresh failed");
        }
    }

    /// Writes the pod status when it changed since the last successful report.
    async fn report(&mut self) {
        if self.ended_before || self.stopping {
            return;
        }
        let status = self
            .record
            .status(&self.pod, self.node.address, Timestamp::now());
        if self.reported.as_ref() == Some(&status) {
            return;
        }
        let patch = serde_json::json!({ "status": status });
        match self
            .pods
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => self.reported = Some(status),
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "status report failed; retrying")
            }
        }
    }
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
}
