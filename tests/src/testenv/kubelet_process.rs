//! The harness kubelet as a child process of a test binary: started with a stdin pipe so
//! it stops (and stops its pods) as soon as the test binary ends, however it ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::error::{Context, Error};
use crate::kubelet::LocalNode;
use crate::logs;

/// A running `harness-kubelet`.
pub struct KubeletProcess {
    child: Child,
    /// Our end of its stdin; closing it stops the kubelet.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

/// Where the kubelet process keeps things.
pub struct KubeletPaths<'a> {
    pub kubeconfig: &'a Path,
    pub bin_dir: &'a Path,
    pub log_dir: &'a Path,
    pub state_dir: &'a Path,
    /// The kubelet's own log.
    pub log: &'a Path,
}

impl KubeletProcess {
    /// Starts `harness-kubelet` from `paths.bin_dir` for `nodes` (consecutive addresses).
    pub fn start(paths: &KubeletPaths<'_>, nodes: &[LocalNode]) -> Result<Self, Error> {
        let binary = paths.bin_dir.join("harness-kubelet");
        if !binary.is_file() {
            return Err(Error::BinaryMissing { path: binary });
        }
        let first = nodes
            .first()
            .map(|n| n.address)
            .unwrap_or(crate::kubelet::FIRST_ADDRESS);
        let log =
            std::fs::File::create(paths.log).context(format!("create {}", paths.log.display()))?;
        let stderr = log.try_clone().context("clone log handle")?;
        let mut child = Command::new(&binary)
            .arg("--kubeconfig")
            .arg(paths.kubeconfig)
            .args([
                "--nodes",
                &nodes.len().to_string(),
                "--first-address",
                &first.to_string(),
            ])
            .arg("--bin-dir")
            .arg(paths.bin_dir)
            .arg("--log-dir")
            .arg(paths.log_dir)
            .arg("--state-dir")
            .arg(paths.state_dir)
            .arg("--exit-on-stdin-eof")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                what: binary.display().to_string(),
                source,
            })?;
        let stdin = child.stdin.take();
        Ok(KubeletProcess {
            child,
            stdin,
            log: paths.log.to_owned(),
        })
    }

    /// Fails when the kubelet has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        logs::check_running(&mut self.child, "the harness kubelet", &self.log, 30)
    }

    /// Stops the kubelet (its pods get SIGTERM, then SIGKILL) and waits at most 20 s.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
