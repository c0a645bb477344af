//! The shared test environment of one test binary: a control plane (started once, or the
//! cluster KUBECONFIG names), Conclave's CRDs, and harness Nodes run by a harness kubelet.

mod kubelet_process;
mod namespace;
pub mod nodes;
pub mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use tokio::sync::OnceCell;

pub use kubelet_process::{KubeletPaths, KubeletProcess};
pub use namespace::{TEST_LABEL, TestNamespace};
pub use settings::Settings;

use crate::controlplane::ControlPlane;
use crate::error::{Context, Error};
use crate::kubelet::{self, LocalNode};

/// Number of local Nodes a test binary's own harness kubelet runs.
pub const TEST_NODES: usize = 3;
/// Longest wait for the control plane to be ready.
pub const CONTROL_PLANE_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for the Nodes of a new harness kubelet to be Ready.
const NODES_TIMEOUT: Duration = Duration::from_secs(60);

static SHARED: OnceCell<Result<TestEnv, String>> = OnceCell::const_new();

/// A cluster tests can use. Obtain the one of this test binary with [`TestEnv::shared`].
pub struct TestEnv {
    kubeconfig: PathBuf,
    nodes: Vec<LocalNode>,
    log_dir: Option<PathBuf>,
    artifacts: PathBuf,
    // Held for the life of the test binary: dropping our pipe ends stops them.
    _control_plane: Option<ControlPlane>,
    _kubelet: Option<KubeletProcess>,
}

impl TestEnv {
    /// The environment of this test binary, started on first use: a control plane (unless
    /// KUBECONFIG names a cluster), the CRDs, and a harness kubelet with [`TEST_NODES`] Nodes
    /// (unless that cluster already has live harness Nodes). Everything stops when the test
    /// binary exits.
    pub async fn shared() -> Result<&'static TestEnv, Error> {
        let env = SHARED
            .get_or_init(|| async {
                TestEnv::start(Settings::from_env())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        env.as_ref().map_err(|e| Error::SharedSetup(e.clone()))
    }

    async fn start(settings: Settings) -> Result<TestEnv, Error> {
        settings::init_test_tracing();
        let started = std::time::Instant::now();
        let artifacts = settings.artifacts.join(settings::run_name());
        if artifacts.exists() {
            std::fs::remove_dir_all(&artifacts)
                .context(format!("clear {}", artifacts.display()))?;
        }
        std::fs::create_dir_all(&artifacts).context(format!("create {}", artifacts.display()))?;
        let (control_plane, kubeconfig) = match settings.kubeconfig.clone() {
            Some(kubeconfig) => {
                tracing::info!(kubeconfig = %kubeconfig.display(), "using the cluster KUBECONFIG names");
                (None, kubeconfig)
            }
            None => {
                let mut control_plane =
                    ControlPlane::start(&settings.controlplane, &artifacts.join("controlplane"))?;
                let kubeconfig = control_plane.ready(CONTROL_PLANE_TIMEOUT).await?;
                (Some(control_plane), kubeconfig)
            }
        };
        let client = crate::client::from_kubeconfig(&kubeconfig).await?;
        crate::crds::install(&client).await?;
        let (live, live_log_dir) = nodes::live_harness_nodes(&client).await?;
        let env = if !live.is_empty() {
            tracing::info!(nodes = ?live, "reusing the running harness kubelet");
            TestEnv {
                kubeconfig,
                nodes: live,
                log_dir: live_log_dir,
                artifacts,
                _control_plane: control_plane,
                _kubelet: None,
            }
        } else {
            let nodes = LocalNode::numbered(TEST_NODES, kubelet::FIRST_ADDRESS);
            let log_dir = artifacts.join("pods");
            let paths = KubeletPaths {
                kubeconfig: &kubeconfig,
                bin_dir: &settings.bin_dir,
                log_dir: &log_dir,
                state_dir: &artifacts.join("kubelet"),
                log: &artifacts.join("harness-kubelet.log"),
            };
            let mut process = KubeletProcess::start(&paths, &nodes)?;
            nodes::wait_schedulable(&client, &nodes, NODES_TIMEOUT, || process.check_running())
                .await?;
            TestEnv {
                kubeconfig,
                nodes,
                log_dir: Some(log_dir),
                artifacts,
                _control_plane: control_plane,
                _kubelet: Some(process),
            }
        };
        tracing::info!(seconds = started.elapsed().as_secs_f32(), artifacts = %env.artifacts.display(), "test environment ready");
        Ok(env)
    }

    /// A new client for the calling test (clients are bound to the runtime they are made on).
    pub async fn client(&self) -> Result<Client, Error> {
        crate::client::from_kubeconfig(&self.kubeconfig).await
    }

    /// The admin kubeconfig of the cluster.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The harness Nodes pods can run on, with their addresses.
    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// The harness Node called `name`.
    pub fn node(&self, name: &str) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Where container output goes (one file per pod and container), if known.
    pub fn log_dir(&self) -> Option<&Path> {
        self.log_dir.as_deref()
    }

    /// The log file of `container` in pod `namespace/pod`, if the log directory is known.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> Option<PathBuf> {
        Some(kubelet::container_log(
            self.log_dir.as_deref()?,
            namespace,
            pod,
            container,
        ))
    }

    /// This test binary's artifacts: control plane dir and log, kubelet log, pod logs.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// The helm CLI for this cluster (`CONCLAVE_HELM`, built by `make helm`).
    pub fn helm(&self) -> Result<crate::helm::Helm, Error> {
        crate::helm::Helm::new(
            &Settings::from_env().helm,
            &self.kubeconfig,
            &self.artifacts.join("helm"),
        )
    }

    /// A fresh namespace `<prefix>-<random>` for one test, deleted when dropped.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace, Error> {
        let client = self.client().await?;
        TestNamespace::create(
            client,
            self.kubeconfig.clone(),
            self.log_dir.clone(),
            prefix,
        )
        .await
    }
}
