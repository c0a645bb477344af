//! The kubelet's record of one container: waiting → running → terminated, restarts with
//! back-off under the pod's restart policy, and its probe verdicts. No I/O: the pod worker
//! feeds it events with explicit times.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use super::probe::Verdict;
use super::process::Exit;

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        pid: u32,
        since: Timestamp,
        since_instant: Instant,
    },
    Terminated(Termination),
}

/// One ended run of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    pub pid: u32,
    pub exit: Exit,
    pub reason: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

/// One container of a pod, as the kubelet tracks it.
#[derive(Debug, Clone)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub state: State,
    pub restart_count: i32,
    pub last_termination: Option<Termination>,
    /// Readiness verdict; None when the container has no readiness probe.
    pub readiness: Option<Verdict>,
    pub liveness: Verdict,
    /// When the next start is due: first start, restart after back-off, or config retry.
    pub next_start: Option<Instant>,
    /// When a SIGKILL is due for a container being stopped after a failed liveness probe.
    pub kill_at: Option<Instant>,
    /// Number of process starts so far; also the id of the current start.
    pub starts: u64,
    crash_streak: u32,
}

/// Shortest and longest wait before restarting a container that exited.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A run at least this long resets the back-off.
const STABLE_RUN: Duration = Duration::from_secs(30);

impl ContainerRecord {
    /// A container waiting for its first start, due `now`.
    pub fn new(name: &str, image: &str, has_readiness_probe: bool, now: Instant) -> Self {
        ContainerRecord {
            name: name.to_owned(),
            image: image.to_owned(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            restart_count: 0,
            last_termination: None,
            readiness: has_readiness_probe.then(|| Verdict::starting(false)),
            liveness: Verdict::starting(true),
            next_start: Some(now),
            kill_at: None,
            starts: 0,
            crash_streak: 0,
        }
    }

    /// The container's process started; returns the id of this start.
    pub fn started(&mut self, pid: u32, now: Timestamp, instant: Instant) -> u64 {
        if self.starts > 0 {
            self.restart_count += 1;
        }
        self.starts += 1;
        self.state = State::Running {
            pid,
            since: now,
            since_instant: instant,
        };
        self.next_start = None;
        self.kill_at = None;
        if let Some(readiness) = &mut self.readiness {
            *readiness = Verdict::starting(false);
        }
        self.liveness = Verdict::starting(true);
        self.starts
    }

    /// The container cannot start now (`reason`, `message`); retried at `retry_at` if given.
    pub fn blocked(&mut self, reason: &str, message: String, retry_at: Option<Instant>) {
        self.state = State::Waiting {
            reason: reason.into(),
            message: Some(message),
        };
        self.next_start = retry_at;
    }

    /// The process of the current start exited. `restart` says whether the pod's restart
    /// policy (and the pod not being stopped) brings it back.
    pub fn exited(&mut self, exit: Exit, restart: bool, now: Timestamp, instant: Instant) {
        let State::Running {
            pid,
            since,
            since_instant,
        } = self.state.clone()
        else {
            return;
        };
        let reason = if exit.code == 0 { "Completed" } else { "Error" };
        let termination = Termination {
            pid,
            exit,
            reason: reason.into(),
            started_at: since,
            finished_at: now,
        };
        self.kill_at = None;
        if !restart {
            self.state = State::Terminated(termination);
            return;
        }
        if instant.duration_since(since_instant) >= STABLE_RUN {
            self.crash_streak = 0;
        }
        let delay = backoff(self.crash_streak);
        self.crash_streak += 1;
        self.last_termination = Some(termination);
        self.state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {delay:?} restarting container {}",
                self.name
            )),
        };
        self.next_start = Some(instant + delay);
    }

    /// The pod is being stopped: no further starts.
    pub fn cancel_starts(&mut self) {
        self.next_start = None;
    }

    /// The pid of the running process, if any.
    pub fn pid(&self) -> Option<u32> {
        match self.state {
            State::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// When the current process started, if one runs.
    pub fn running_since(&self) -> Option<Instant> {
        match self.state {
            State::Running { since_instant, .. } => Some(since_instant),
            _ => None,
        }
    }

    /// Ready: running and, with a readiness probe, passing it.
    pub fn ready(&self) -> bool {
        self.pid().is_some() && self.readiness.as_ref().is_none_or(|v| v.passing)
    }

    /// Finished for good: terminated with no start pending.
    pub fn done(&self) -> bool {
        matches!(self.state, State::Terminated(_)) && self.next_start.is_none()
    }
}

/// Whether a container that exited with `code` is restarted under `policy`.
pub fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true, // "Always", the default
    }
}

/// Wait before the next restart after `streak` quick exits in a row: 0.5 s doubling to 10 s.
pub fn backoff(streak: u32) -> Duration {
    BACKOFF_BASE
        .saturating_mul(1 << streak.min(8))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert!(restarts("Always", 0) && restarts("Always", 1));
        assert!(!restarts("OnFailure", 0) && restarts("OnFailure", 2));
        assert!(!restarts("Never", 0) && !restarts("Never", 1));
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(5), BACKOFF_MAX);
        assert_eq!(backoff(100), BACKOFF_MAX);
    }

    #[test]
    fn a_crash_under_always_counts_a_restart_after_backoff() {
        let t0 = Instant::now();
        let now = Timestamp::now();
        let mut c = ContainerRecord::new("c", "img", true, t0);
        assert_eq!(c.started(10, now, t0), 1);
        assert!(!c.ready(), "not ready before the readiness probe passes");
        c.exited(
            Exit {
                code: 2,
                signal: None,
            },
            true,
            now,
            t0,
        );
        assert!(matches!(&c.state, State::Waiting { reason, .. } if reason == "CrashLoopBackOff"));
        assert_eq!(c.last_termination.as_ref().map(|t| t.exit.code), Some(2));
        assert_eq!(c.next_start, Some(t0 + backoff(0)));
        assert_eq!(
            c.restart_count, 0,
            "counted when the container starts again"
        );
        c.started(11, now, t0);
        assert_eq!(c.restart_count, 1);
        assert!(!c.done());
    }

    #[test]
    fn an_exit_without_restart_is_final() {
        let t0 = Instant::now();
        let mut c = ContainerRecord::new("c", "img", false, t0);
        c.started(10, Timestamp::now(), t0);
        assert!(c.ready(), "no readiness probe: ready while running");
        c.exited(
            Exit {
                code: 0,
                signal: None,
            },
            false,
            Timestamp::now(),
            t0,
        );
        assert!(c.done());
        assert!(matches!(&c.state, State::Terminated(t) if t.reason == "Completed"));
    }
}
