//! The sockets of a pod's process, seen from this machine: the process found by an
//! environment variable its container sets, and its UDP sockets as `ss -uanp` lists them in
//! the pod's network namespace (entered with `nsenter`, as root).

use std::path::Path;

use tokio::process::Command;

/// The process whose environment holds `key=value`, if one runs.
pub fn process_with_env(key: &str, value: &str) -> Option<u32> {
    let wanted = format!("{key}={value}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let environ =
                std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|var| var == wanted.as_bytes())
                .then_some(pid)
        })
}

/// The lines of `ss -uanp`, run in the network namespace of process `pid`, that belong to
/// that process: one per UDP socket it holds.
pub async fn udp_sockets(pid: u32) -> Result<Vec<String>, String> {
    let output = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "ss", "-uanp"])
        .output()
        .await
        .map_err(|e| format!("nsenter -t {pid} -n ss -uanp: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "nsenter -t {pid} -n ss -uanp: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let owner = format!("pid={pid},");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains(&owner))
        .map(str::to_owned)
        .collect())
}
