//! The shared test environment of one test binary: a local cluster (started once: the
//! control plane with real nodes running Conclave's images, see docs/testing.md) or the
//! cluster KUBECONFIG names, and Conclave's CRDs.

mod namespace;
pub mod nodes;
pub mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;
use tokio::sync::OnceCell;

pub use namespace::{TEST_LABEL, TestNamespace};
pub use nodes::LocalNode;
pub use settings::Settings;

use crate::controlplane::ControlPlane;
use crate::error::{Context, Error};
use crate::images::Image;

/// Number of real nodes a test binary's own cluster runs.
pub const TEST_NODES: usize = 3;
/// Longest wait for the control plane and its nodes to be ready (images imported included).
pub const CONTROL_PLANE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for the Nodes of a cluster KUBECONFIG names to be schedulable.
const NODES_TIMEOUT: Duration = Duration::from_secs(60);

static SHARED: OnceCell<Result<TestEnv, String>> = OnceCell::const_new();

/// A cluster tests can use. Obtain the one of this test binary with [`TestEnv::shared`].
pub struct TestEnv {
    kubeconfig: PathBuf,
    nodes: Vec<LocalNode>,
    log_dir: Option<PathBuf>,
    artifacts: PathBuf,
    // Held for the life of the test binary: dropping our pipe end stops it and its nodes.
    _control_plane: Option<ControlPlane>,
}

impl TestEnv {
    /// The environment of this test binary, started on first use: a control plane with
    /// [`TEST_NODES`] real nodes (unless KUBECONFIG names a cluster) and the CRDs.
    /// Everything stops, and the nodes are removed from the machine, when the test binary
    /// exits.
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
        let (control_plane, kubeconfig, log_dir) = match settings.kubeconfig.clone() {
            Some(kubeconfig) => {
                tracing::info!(kubeconfig = %kubeconfig.display(), "using the cluster KUBECONFIG names");
                (None, kubeconfig, None)
            }
            None => {
                let dir = artifacts.join("controlplane");
                let mut control_plane = start_local_cluster(&settings, &dir, TEST_NODES)?;
                let kubeconfig = control_plane.ready(CONTROL_PLANE_TIMEOUT).await?;
                (Some(control_plane), kubeconfig, Some(dir.join("nodes")))
            }
        };
        let client = crate::client::from_kubeconfig(&kubeconfig).await?;
        crate::crds::install(&client).await?;
        // Ours are Ready once up returns, but taints go a moment later.
        let expected = if control_plane.is_some() {
            TEST_NODES
        } else {
            1
        };
        let nodes = nodes::wait_schedulable(&client, expected, NODES_TIMEOUT).await?;
        let env = TestEnv {
            kubeconfig,
            nodes,
            log_dir,
            artifacts,
            _control_plane: control_plane,
        };
        tracing::info!(seconds = started.elapsed().as_secs_f32(), nodes = ?env.nodes, artifacts = %env.artifacts.display(), "test environment ready");
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

    /// The /16 holding the Nodes' addresses, for `spec.turn.allowedPeers` (None without
    /// Nodes).
    pub fn nodes_range(&self) -> Option<String> {
        nodes::private_range(&self.nodes)
    }

    /// The harness Node called `name`.
    pub fn node(&self, name: &str) -> Option<&LocalNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Where the nodes keep their files (`<node>/var-log/pods/...` holds container logs),
    /// when this test binary started the cluster.
    pub fn log_dir(&self) -> Option<&Path> {
        self.log_dir.as_deref()
    }

    /// The API server's audit log of writes (who, from where, what), when this test binary
    /// started the cluster.
    pub fn audit_log(&self) -> Option<PathBuf> {
        let nodes = self.log_dir.as_deref()?;
        Some(nodes.parent()?.join("logs/audit.log"))
    }

    /// This test binary's artifacts: control plane dir and log, kubelet log, pod logs.
    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// kubectl for this cluster (`CONCLAVE_KUBECTL`, built by `make controlplane`).
    pub fn kubectl(&self) -> Result<crate::kubectl::Kubectl, Error> {
        crate::kubectl::Kubectl::new(
            &Settings::from_env().kubectl,
            &self.kubeconfig,
            &self.artifacts.join("kubectl-cache"),
        )
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

/// Starts `controlplane up` in `dir` with `nodes` real nodes that import every image of
/// [`Image::ALL`] from the settings' image directory, the media node's also under
/// [`Image::next_reference`].
pub fn start_local_cluster(
    settings: &Settings,
    dir: &Path,
    nodes: usize,
) -> Result<ControlPlane, Error> {
    let mut flags = vec![
        "--nodes".to_owned(),
        nodes.to_string(),
        "--sandbox-image".to_owned(),
        Image::Pause.reference(),
        "--image-tag".to_owned(),
        format!(
            "{}={}",
            Image::MediaNode.reference(),
            Image::MediaNode.next_reference()
        ),
    ];
    for image in Image::ALL {
        let archive = image.archive(&settings.images);
        if !archive.is_file() {
            return Err(Error::ImageMissing { path: archive });
        }
        flags.push("--image".to_owned());
        flags.push(archive.display().to_string());
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    ControlPlane::start_with(&settings.controlplane, dir, &flags)
}
