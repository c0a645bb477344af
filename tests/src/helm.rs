//! The helm CLI (built by `make helm` from its Go module) against one cluster: render,
//! install and uninstall Conclave's chart with values given as JSON.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Context, Error};
use crate::testenv::settings::workspace_dir;

/// The chart in this repository.
pub fn chart_dir() -> PathBuf {
    workspace_dir().join("charts/conclave")
}

/// helm, pointed at one cluster, keeping its cache and config under `state_dir`.
#[derive(Debug, Clone)]
pub struct Helm {
    binary: PathBuf,
    kubeconfig: PathBuf,
    state_dir: PathBuf,
}

impl Helm {
    /// helm for the cluster of `kubeconfig`; fails with how to build it when it is missing.
    pub fn new(binary: &Path, kubeconfig: &Path, state_dir: &Path) -> Result<Helm, Error> {
        if !binary.is_file() {
            return Err(Error::HelmMissing {
                path: binary.to_owned(),
            });
        }
        std::fs::create_dir_all(state_dir).context(format!("create {}", state_dir.display()))?;
        Ok(Helm {
            binary: binary.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            state_dir: state_dir.to_owned(),
        })
    }

    /// Installs (or upgrades) release `release` of the chart into `namespace` with `values`;
    /// returns helm's output (with the chart's NOTES).
    pub async fn install(
        &self,
        release: &str,
        namespace: &str,
        values: &serde_json::Value,
    ) -> Result<String, Error> {
        let values = self.values_file(release, values)?;
        self.run(&[
            "upgrade",
            "--install",
            release,
            &chart_dir().display().to_string(),
            "--namespace",
            namespace,
            "--create-namespace",
            "--values",
            &values.display().to_string(),
        ])
        .await
    }

    /// Renders the chart as `helm install` would, without a cluster.
    pub async fn template(
        &self,
        release: &str,
        namespace: &str,
        values: &serde_json::Value,
    ) -> Result<String, Error> {
        let values = self.values_file(release, values)?;
        self.run(&[
            "template",
            release,
            &chart_dir().display().to_string(),
            "--namespace",
            namespace,
            "--values",
            &values.display().to_string(),
        ])
        .await
    }

    /// Removes the release and everything it installed (not the CRDs).
    pub async fn uninstall(&self, release: &str, namespace: &str) -> Result<String, Error> {
        self.run(&["uninstall", release, "--namespace", namespace])
            .await
    }

    /// Runs helm with `args`; its stdout, or an error with its stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String, Error> {
        let output = Command::new(&self.binary)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.state_dir.join("cache"))
            .env("HELM_CONFIG_HOME", self.state_dir.join("config"))
            .env("HELM_DATA_HOME", self.state_dir.join("data"))
            .env("KUBECACHEDIR", self.state_dir.join("kube-cache"))
            .stdin(Stdio::null())
            .output()
            .await
            .context(format!("run {}", self.binary.display()))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if output.status.success() {
            Ok(text(&output.stdout))
        } else {
            Err(Error::Helm {
                args: args.join(" "),
                status: output.status.to_string(),
                stderr: text(&output.stderr),
            })
        }
    }

    fn values_file(&self, release: &str, values: &serde_json::Value) -> Result<PathBuf, Error> {
        let path = self.state_dir.join(format!("{release}-values.json"));
        let text = serde_json::to_vec_pretty(values).context("encode chart values")?;
        std::fs::write(&path, text).context(format!("write {}", path.display()))?;
        Ok(path)
    }
}
