//! Container processes: start one in its own process group with its output in a log file,
//! signal the group, and report its exit. A watchdog per process kills the group if the
//! kubelet itself dies, so no container outlives the harness.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::error::{Context, Error};

/// What to run for one container start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The arguments as the log shows them: before `$(VAR)` expansion, so no Secret value.
    pub logged_args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: PathBuf,
    pub log: PathBuf,
}

/// How a container process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code as Kubernetes reports it: the code, or 128 + signal number.
    pub code: i32,
    /// The signal that ended the process, if any.
    pub signal: Option<i32>,
}

impl Exit {
    /// Converts a wait status.
    pub fn from_status(status: ExitStatus) -> Exit {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit { code, signal: None },
            (None, Some(signal)) => Exit {
                code: 128 + signal,
                signal: Some(signal),
            },
            (None, None) => Exit {
                code: -1,
                signal: None,
            },
        }
    }
}

/// Identifies one start of one container, so exits of older starts are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartId {
    pub container: usize,
    pub start: u64,
}

/// Starts `launch`; when the process ends, `(id, Exit)` is sent on `exits`.
/// Returns the pid (which is also the process group id).
pub fn spawn(
    launch: &Launch,
    id: StartId,
    exits: mpsc::UnboundedSender<(StartId, Exit)>,
) -> Result<u32, Error> {
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .context(format!("open log {}", launch.log.display()))?;
    let when = k8s_openapi::jiff::Timestamp::now();
    writeln!(
        log,
        "==> {when} harness-kubelet starts {} {:?}",
        launch.program.display(),
        launch.logged_args
    )
    .context("write log")?;
    let stderr = log.try_clone().context("clone log handle")?;
    let mut child = Command::new(&launch.program)
        .args(&launch.args)
        .env_clear()
        .envs(&launch.env)
        .current_dir(&launch.workdir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .context(format!("start {}", launch.program.display()))?;
    let Some(pid) = child.id() else {
        return Err(Error::Spawn {
            what: launch.program.display().to_string(),
            source: std::io::Error::other("process ended before it could be watched"),
        });
    };
    let watchdog = watchdog(pid)?;
    tokio::spawn(async move {
        let exit = match child.wait().await {
            Ok(status) => Exit::from_status(status),
            Err(e) => {
                tracing::warn!(pid, error = %e, "lost track of a container process");
                Exit {
                    code: -1,
                    signal: None,
                }
            }
        };
        stop_watchdog(watchdog).await;
        let _ = exits.send((id, exit)); // the pod worker may be gone already
    });
    Ok(pid)
}

/// A `sh` that waits for end-of-file on its stdin (our end of the pipe closes when the
/// kubelet dies, however it dies, and when the handle is dropped, as when the kubelet stops
/// before a container's grace period ended) and then kills the process group `pid`. Not
/// killed on drop: that would leave the container running.
fn watchdog(pid: u32) -> Result<Child, Error> {
    Command::new("sh")
        .args([
            "-c",
            // dash's kill takes no `--`; "-PGID" alone names the process group.
            r#"read -r _; kill -KILL "-$0" 2>/dev/null"#,
            &pid.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            what: "process watchdog (sh)".into(),
            source,
        })
}

async fn stop_watchdog(mut watchdog: Child) {
    let _ = watchdog.start_kill(); // it may have fired already if the kubelet is dying
    let _ = watchdog.wait().await;
}

/// Sends `signal` to the process group `pid`; a group that is already gone is fine.
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pid, %signal, error = %e, "could not signal container process group")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn launch(script: &str, dir: &std::path::Path) -> Launch {
        Launch {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            logged_args: vec!["-c".into(), script.into()],
            env: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            workdir: dir.to_owned(),
            log: dir.join("c.log"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("testenv-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn reports_exit_code_and_writes_the_log() {
        let dir = temp_dir("exit");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = StartId {
            container: 0,
            start: 1,
        };
        spawn(&launch("echo $GREETING; echo $HOME; exit 3", &dir), id, tx).unwrap();
        let (got, exit) = rx.recv().await.unwrap();
        assert_eq!(
            (got, exit),
            (
                id,
                Exit {
                    code: 3,
                    signal: None
                }
            )
        );
        let log = std::fs::read_to_string(dir.join("c.log")).unwrap();
        assert!(log.contains("harness-kubelet starts /bin/sh"), "{log}");
        assert!(
            log.contains("hello\n\n"),
            "env is exactly the container's: {log}"
        );
    }

    #[test]
    fn containers_die_with_the_kubelet_even_in_their_grace_period() {
        let dir = temp_dir("orphan");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let id = StartId {
            container: 0,
            start: 1,
        };
        // A container that ignores SIGTERM, as a draining media node waits out its grace.
        let pid = runtime
            .block_on(async { spawn(&launch("trap '' TERM; sleep 60 & wait", &dir), id, tx) })
            .unwrap();
        signal_group(pid, Signal::SIGTERM);
        // The kubelet goes away (its tasks, and the watchdog's handle, are dropped).
        drop(runtime);
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
        assert!(gone, "container process {pid} outlived the kubelet");
    }

    #[tokio::test]
    async fn signals_reach_the_process_group() {
        let dir = temp_dir("signal");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = StartId {
            container: 0,
            start: 1,
        };
        let pid = spawn(&launch("sleep 30 & wait", &dir), id, tx).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal_group(pid, Signal::SIGKILL);
        let (_, exit) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            exit,
            Exit {
                code: 137,
                signal: Some(9)
            }
        );
    }
}
