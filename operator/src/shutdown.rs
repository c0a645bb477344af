//! The operator's shutdown signal: SIGTERM (the kubelet stopping the pod) or SIGINT, seen by
//! every part that waits for it from the start of `run`, not only once the controllers run. As
//! PID 1 in its container the operator gets no default action for SIGTERM: a phase that does not
//! listen (waiting for leadership, filling the caches) would hold the pod for its whole grace.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::info;

/// A handle on the shutdown signal; clones observe the same signal.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Starts listening for SIGTERM and SIGINT.
    pub fn on_signals() -> std::io::Result<Self> {
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            info!(signal = name, "shutting down");
            let _ = tx.send(true);
        });
        Ok(Self(rx))
    }

    /// Resolves once a signal arrived.
    pub async fn requested(mut self) {
        // The sender sets `true` before it is dropped, so an error means the same.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Runs `work` unless the signal comes first: `None` then.
    pub async fn unless<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            out = work => Some(out),
            () = self.clone().requested() => None,
        }
    }
}
