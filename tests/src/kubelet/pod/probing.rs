//! A pod worker's probes: readiness verdicts, and liveness failures that restart the
//! container (SIGTERM, then SIGKILL after the grace period).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Probe;
use kube::ResourceExt;
use nix::sys::signal::Signal;

use super::{PodWorker, containers};
use crate::kubelet::probe::{self, Outcome};
use crate::kubelet::process;

impl PodWorker {
    /// Runs readiness and liveness probes of running containers that are due.
    pub(super) async fn probe(&mut self) {
        let ip = IpAddr::V4(self.node.address);
        let now = Instant::now();
        for i in 0..self.record.containers.len() {
            let spec = containers(&self.pod)[i].clone();
            let Some(since) = self.record.containers[i].running_since() else {
                continue;
            };
            let due = |p: &Probe| {
                now.duration_since(since)
                    >= Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)
            };
            if let Some(p) = spec.readiness_probe.as_ref().filter(|p| due(p)) {
                let outcome = probe::run(p, &spec, ip).await;
                self.warn_unsupported(i, &outcome);
                if let Some(v) = self.record.containers[i].readiness.as_mut() {
                    v.record(p, outcome == Outcome::Success);
                }
            }
            let alive = self.record.containers[i].kill_at.is_none();
            let grace = self.spec_grace();
            if let Some(p) = spec.liveness_probe.as_ref().filter(|p| due(p) && alive) {
                let outcome = probe::run(p, &spec, ip).await;
                self.warn_unsupported(i, &outcome);
                let record = &mut self.record.containers[i];
                record
                    .liveness
                    .record(p, !matches!(outcome, Outcome::Failure(_)));
                if !record.liveness.passing
                    && let Some(pid) = record.pid()
                {
                    tracing::info!(pod = %self.pod.name_any(), container = %record.name, ?outcome, "liveness probe failed: restarting");
                    process::signal_group(pid, Signal::SIGTERM);
                    record.kill_at = Some(now + grace);
                }
            }
            let record = &mut self.record.containers[i];
            if let (Some(at), Some(pid)) = (record.kill_at, record.pid())
                && at <= now
            {
                process::signal_group(pid, Signal::SIGKILL);
            }
        }
    }

    pub(super) fn warn_unsupported(&mut self, i: usize, outcome: &Outcome) {
        if let Outcome::Unsupported(why) = outcome
            && !std::mem::replace(&mut self.warned_unsupported[i], true)
        {
            tracing::warn!(pod = %self.pod.name_any(), container = %self.record.containers[i].name, why, "probe not run");
        }
    }
}
