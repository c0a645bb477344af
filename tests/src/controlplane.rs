//! The local control plane process (`controlplane up --dir D`): started through a small
//! `sh` wrapper that stops it when our end of its stdin pipe closes, so it never outlives
//! the test binary or demo that started it, however that process ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::error::{Context, Error};
use crate::logs;

/// Starts `up` in the background, stops it (SIGTERM) once stdin reaches end of file, and
/// exits with `up`'s status. $0: binary, $1: dir, $2: log file, then extra flags of `up`.
const WRAPPER: &str = r#"
exec 3<&0
bin=$0 dir=$1 log=$2
shift 2
"$bin" up --dir "$dir" "$@" </dev/null >>"$log" 2>&1 &
up=$!
(cat <&3 >/dev/null; kill -TERM "$up" 2>/dev/null) &
exec 3<&-
wait "$up"
"#;

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    log: PathBuf,
    wrapper: Child,
    /// Our end of the wrapper's stdin; dropping it stops the control plane.
    stdin: Option<ChildStdin>,
}

impl ControlPlane {
    /// Starts `binary up --dir dir`; its output goes to `dir/../controlplane.log`.
    pub fn start(binary: &Path, dir: &Path) -> Result<Self, Error> {
        Self::start_with(binary, dir, &[])
    }

    /// Starts `binary up --dir dir` with extra flags of `up` (such as `--scale`).
    pub fn start_with(binary: &Path, dir: &Path, flags: &[&str]) -> Result<Self, Error> {
        if !binary.is_file() {
            return Err(Error::ControlPlaneMissing {
                path: binary.to_owned(),
            });
        }
        std::fs::create_dir_all(dir).context(format!("create {}", dir.display()))?;
        let kubeconfig = dir.join("kubeconfig");
        if kubeconfig.exists() {
            std::fs::remove_file(&kubeconfig).context("remove a stale kubeconfig")?;
        }
        let log = dir.with_extension("log");
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg(binary)
            .arg(dir)
            .arg(&log)
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0) // a terminal's Ctrl-C reaches us, and we stop it in order
            .spawn()
            .map_err(|source| Error::Spawn {
                what: format!("{} up", binary.display()),
                source,
            })?;
        let stdin = wrapper.stdin.take();
        tracing::info!(dir = %dir.display(), log = %log.display(), "control plane starting");
        Ok(ControlPlane {
            dir: dir.to_owned(),
            log,
            wrapper,
            stdin,
        })
    }

    /// The admin kubeconfig (written once the control plane is ready).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The control plane's own log (component logs are under `dir/logs/`).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Waits until the control plane serves requests; returns its admin kubeconfig.
    pub async fn ready(&mut self, timeout: Duration) -> Result<PathBuf, Error> {
        let started = std::time::Instant::now();
        let deadline = started + timeout;
        let kubeconfig = self.kubeconfig();
        loop {
            if kubeconfig.is_file() {
                tracing::info!(
                    seconds = started.elapsed().as_secs_f32(),
                    "control plane ready"
                );
                return Ok(kubeconfig);
            }
            self.check_running()?;
            if std::time::Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: "the control plane to be ready".into(),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails when the control plane has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        logs::check_running(&mut self.wrapper, "the control plane", &self.log, 30)
    }

    /// Stops the control plane and waits (at most 30 s) until every component ended.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        for _ in 0..300 {
            if !matches!(self.wrapper.try_wait(), Ok(None)) {
                tracing::info!("control plane stopped");
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("control plane did not stop in 30 s: killing it");
        if let Ok(pid) = i32::try_from(self.wrapper.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.wrapper.wait();
    }
}
