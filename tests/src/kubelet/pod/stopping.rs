//! Stopping a pod worker's containers (SIGTERM, SIGKILL after the grace period) and
//! removing the pod object once they ended, as a kubelet does.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{DeleteParams, Preconditions};
use nix::sys::signal::Signal;

use super::PodWorker;
use crate::kubelet::container::ContainerRecord;
use crate::kubelet::process;

impl PodWorker {
    /// Stops every container: SIGTERM to its process group, SIGKILL after `grace`.
    pub(super) async fn terminate(&mut self, grace: Duration) {
        self.stopping = true;
        self.record
            .containers
            .iter_mut()
            .for_each(ContainerRecord::cancel_starts);
        let pids = |w: &Self| {
            w.record
                .containers
                .iter()
                .filter_map(ContainerRecord::pid)
                .collect::<Vec<_>>()
        };
        if pids(self).is_empty() {
            return;
        }
        tracing::info!(pod = %self.pod.name_any(), ?grace, "stopping containers");
        for (signal, wait) in [
            (Signal::SIGTERM, grace),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            pids(self)
                .into_iter()
                .for_each(|pid| process::signal_group(pid, signal));
            let deadline = tokio::time::Instant::now() + wait;
            while !pids(self).is_empty() {
                match tokio::time::timeout_at(deadline, self.exits_rx.recv()).await {
                    Ok(Some((id, exit))) => self.exited(id, exit),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    /// Removes the pod object now that its containers ended (grace period 0, as a kubelet
    /// does), and the pod's files.
    pub(super) async fn remove(&mut self) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods.delete(&self.pod.name_any(), &params).await {
            Ok(_) => tracing::info!(pod = %self.pod.name_any(), "pod removed"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %self.pod.name_any(), error = %e, "could not remove pod")
            }
        }
        self.forget();
    }

    pub(super) fn forget(&self) {
        let _ = std::fs::remove_dir_all(&self.dir); // holds the token; may not exist
    }

    /// The grace period of a pod being deleted.
    pub(super) fn deletion_grace(&self) -> Duration {
        match self.pod.metadata.deletion_grace_period_seconds {
            Some(seconds) => Duration::from_secs(seconds.max(0) as u64),
            None => self.spec_grace(),
        }
    }

    /// `terminationGracePeriodSeconds` of the pod (default 30 s).
    pub(super) fn spec_grace(&self) -> Duration {
        let seconds = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64)
    }
}
