//! kubectl (built by `make controlplane` from the control plane's module set) against one
//! cluster, for what tests do as a platform team would: `kubectl drain`, `cordon`,
//! `uncordon`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Context, Error};

/// kubectl, pointed at one cluster, keeping its discovery cache under `cache_dir` (not in the
/// home directory, where every test's API server would leave one).
#[derive(Debug, Clone)]
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
}

impl Kubectl {
    /// kubectl for the cluster of `kubeconfig`; fails with how to build it when it is missing.
    pub fn new(binary: &Path, kubeconfig: &Path, cache_dir: &Path) -> Result<Kubectl, Error> {
        if !binary.is_file() {
            return Err(Error::BinaryMissing {
                path: binary.to_owned(),
            });
        }
        Ok(Kubectl {
            binary: binary.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
            cache_dir: cache_dir.to_owned(),
        })
    }

    /// Runs kubectl with `args`; its stdout and stderr, or an error with both.
    pub async fn run(&self, args: &[&str]) -> Result<String, Error> {
        let output = Command::from(self.command(args))
            .kill_on_drop(true)
            .output()
            .await
            .context(format!("run {}", self.binary.display()))?;
        outcome(args, &output)
    }

    /// The same, blocking: for cleanup in `Drop`.
    pub fn run_blocking(&self, args: &[&str]) -> Result<String, Error> {
        let output = self
            .command(args)
            .output()
            .context(format!("run {}", self.binary.display()))?;
        outcome(args, &output)
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(&self.binary);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", &self.cache_dir)
            .stdin(Stdio::null());
        command
    }
}

/// kubectl's stdout and stderr when it succeeded, or an error with both.
fn outcome(args: &[&str], output: &std::process::Output) -> Result<String, Error> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(Error::Kubectl {
            args: args.join(" "),
            status: output.status.to_string(),
            output: text,
        })
    }
}
