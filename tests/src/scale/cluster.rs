//! The scale cluster: a fresh local control plane started with `--scale`, kwok simulating
//! its Kubernetes Nodes, Conclave's CRDs, the media nodes' ClusterRole, and one namespace
//! where the benchmark's pool lives. Separate from the shared test environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

use super::kwok::{self, Kwok};
use crate::controlplane::ControlPlane;
use crate::error::{Context, Error};
use crate::{client, crds, media_node_role};

/// Namespace of the benchmark's pool and conferences.
pub const NAMESPACE: &str = "scale";

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The control plane binary.
    pub controlplane: PathBuf,
    /// Where its state and logs go (reset).
    pub dir: PathBuf,
    /// Simulated Kubernetes Nodes.
    pub nodes: usize,
    /// How long kwok takes to make a scheduled Pod Running.
    pub pod_start: Duration,
}

/// A running scale cluster; stopped by [`ScaleCluster::stop`] (or when this process ends).
pub struct ScaleCluster {
    control_plane: ControlPlane,
    kwok: Kwok,
    /// Admin client.
    pub client: Client,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Where logs and state live.
    pub dir: PathBuf,
}

impl ScaleCluster {
    /// Starts everything and waits until every simulated Node is Ready.
    pub async fn start(spec: &ClusterSpec) -> Result<ScaleCluster, Error> {
        std::fs::create_dir_all(&spec.dir).context(format!("create {}", spec.dir.display()))?;
        let mut control_plane =
            ControlPlane::start_with(&spec.controlplane, &spec.dir.join("cp"), &["--scale"])?;
        let kubeconfig = control_plane.ready(Duration::from_secs(240)).await?;
        let client = client::from_kubeconfig(&kubeconfig).await?;
        let mut kwok = Kwok::start(&spec.controlplane, &spec.dir, &kubeconfig, spec.pod_start)?;
        crds::install(&client).await?;
        media_node_role::install(&client).await?;
        create_namespace(&client, NAMESPACE).await?;
        let started = std::time::Instant::now();
        let timeout = Duration::from_secs(120 + spec.nodes as u64 / 5);
        kwok::create_nodes(&client, spec.nodes, timeout).await?;
        kwok.check_running()?;
        tracing::info!(
            nodes = spec.nodes,
            seconds = started.elapsed().as_secs_f32(),
            "simulated Nodes Ready"
        );
        Ok(ScaleCluster {
            control_plane,
            kwok,
            client,
            kubeconfig,
            dir: spec.dir.clone(),
        })
    }

    /// Fails when the control plane or kwok has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        self.control_plane.check_running()?;
        self.kwok.check_running()
    }

    /// The directory of a log file of this run.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Stops kwok and the control plane.
    pub async fn stop(self) {
        drop(self.kwok);
        self.control_plane.stop().await;
    }
}

async fn create_namespace(client: &Client, name: &str) -> Result<(), Error> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
        .context("a Namespace manifest")?;
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other
            .map(|_| ())
            .context(format!("create namespace {name}")),
    }
}

/// The directory a run keeps its cluster in, under `artifacts`.
pub fn run_dir(artifacts: &Path, name: &str) -> PathBuf {
    artifacts.join(format!("scale-{name}"))
}
