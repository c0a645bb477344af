//! Commands run in a network namespace of the local cluster (a node's), as root:
//! `ip netns exec <netns> ...`, for the tests that shape a node's traffic.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `args` in network namespace `netns`, with `input` on stdin; its stdout, or what it
/// said on stderr.
pub async fn exec(netns: &str, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let what = format!("ip netns exec {netns} {}", args.join(" "));
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    if let Some(input) = input {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| format!("{what}: {e}"))?;
    }
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `args` in network namespace `netns` and waits, ignoring the outcome: an undo from a
/// `Drop`, which may run outside the runtime (the namespace may be gone already).
pub fn undo(netns: &str, args: &[&str]) {
    let _ = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stderr(Stdio::null())
        .status();
}
