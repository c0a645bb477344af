//! Headless Chromium for the browser tests: runs `tests/browser/driver.mjs` (playwright-core
//! driving Debian's chromium, installed by `scripts/ensure-npm.sh` when missing) and talks to
//! it one JSON command per line, one JSON reply per line. Browser tests of one binary run one
//! at a time ([`exclusive`]): a few Chromium processes already fill two cores.

pub mod call;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use conclave_testenv::testenv::settings::workspace_dir;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{Mutex, MutexGuard};

/// Longest a single command may take (a `waitState` carries its own, shorter, timeout).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(150);

/// Holds other browser tests of this binary back while one runs.
pub async fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// Installs the driver's npm packages once per test binary when missing.
fn ensure_driver() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let status = std::process::Command::new("bash")
            .arg(workspace_dir().join("scripts/ensure-npm.sh"))
            .status()
            .expect("bash runs scripts/ensure-npm.sh");
        assert!(
            status.success(),
            "scripts/ensure-npm.sh failed ({status}): run `make deps`"
        );
    });
}

/// The driver process and its browsers, closed when dropped.
pub struct Chromium {
    child: Child,
    stdin: ChildStdin,
    replies: Lines<BufReader<ChildStdout>>,
    log: PathBuf,
}

impl Chromium {
    /// Starts the driver; its stderr goes to `<dir>/driver.log`.
    pub async fn start(dir: &Path) -> Chromium {
        ensure_driver();
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("driver.log");
        // Chromium's sound client keeps its runtime files there (without one, a directory of
        // its own in /tmp, left behind).
        let runtime = dir.join("xdg-runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::set_permissions(
            &runtime,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let mut child = Command::new("node")
            .arg(workspace_dir().join("tests/browser/driver.mjs"))
            .current_dir(workspace_dir().join("tests/browser"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (make deps installs it)");
        let stdin = child.stdin.take().unwrap();
        let replies = BufReader::new(child.stdout.take().unwrap()).lines();
        Chromium {
            child,
            stdin,
            replies,
            log,
        }
    }

    /// Sends `command`; the reply, or what went wrong.
    pub async fn try_send(&mut self, command: Value) -> Result<Value, String> {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("writing to the driver: {e}"))?;
        let reply = tokio::time::timeout(COMMAND_TIMEOUT, self.replies.next_line())
            .await
            .map_err(|_| format!("no reply to {command} in {COMMAND_TIMEOUT:?}"))?
            .map_err(|e| format!("reading from the driver: {e}"))?
            .ok_or_else(|| {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                format!("the driver exited; its log:\n{log}")
            })?;
        let reply: Value =
            serde_json::from_str(&reply).map_err(|e| format!("driver said {reply:?}: {e}"))?;
        if reply["ok"] == Value::Bool(true) {
            Ok(reply)
        } else {
            Err(format!("{} failed: {}", command["op"], reply["error"]))
        }
    }

    /// Sends `command` and panics with the driver's error when it fails.
    pub async fn send(&mut self, command: Value) -> Value {
        match self.try_send(command).await {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// The browser console of participant `name`, for failure reports.
    pub async fn console(&mut self, name: &str) -> String {
        match self
            .try_send(serde_json::json!({"op": "logs", "name": name}))
            .await
        {
            Ok(v) => v["console"]
                .as_array()
                .map(|lines| {
                    lines
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default(),
            Err(e) => e,
        }
    }

    /// Closes every browser and the driver.
    pub async fn close(mut self) {
        let _ = self.try_send(serde_json::json!({"op": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
