//! The operator binary run as a local process against a test namespace (tests, the placement
//! benchmark): its log goes to the artifacts, and it is killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::{Context, Error};
use crate::testenv::settings::default_bin_dir;

/// A running `conclave-operator run` watching one namespace, and its log.
pub struct Operator(Child, PathBuf);

impl Operator {
    /// Starts the operator with `kubeconfig`, watching `namespace`, logging to `log`.
    pub fn start(kubeconfig: &Path, namespace: &str, log: &Path) -> Result<Operator, Error> {
        Self::start_with(kubeconfig, namespace, log, &[])
    }

    /// Starts the operator for simulated media nodes (kwok pods, whose published addresses
    /// reach nothing): it does not probe their addresses.
    pub fn start_simulated(
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
    ) -> Result<Operator, Error> {
        Self::start_with(
            kubeconfig,
            namespace,
            log,
            &["--probe-media-addresses=false"],
        )
    }

    /// Starts the operator with `extra` arguments.
    pub fn start_with(
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
        extra: &[&str],
    ) -> Result<Operator, Error> {
        let file = std::fs::File::create(log).context(format!("create {}", log.display()))?;
        let stderr = file.try_clone().context("clone the operator log handle")?;
        let binary = default_bin_dir().join("conclave-operator");
        let child = Command::new(&binary)
            .args(["run", "--leader-elect=false", "--metrics-addr=127.0.0.1:0"])
            .arg(format!("--watch-namespace={namespace}"))
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::Spawn {
                what: format!("{} (build it with `make build`)", binary.display()),
                source,
            })?;
        Ok(Operator(child, log.to_owned()))
    }

    /// Where the operator serves /metrics (it binds a free port and logs it), once it does.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        let log = std::fs::read_to_string(&self.1).ok()?;
        log.lines()
            .find(|l| l.contains("serving health and metrics"))?
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr=")?.parse().ok())
    }

    /// The operator's process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
