//! Part of a CPU for the SFU process (`SFU_BENCH_NODE_SHARE=half`, or a share such as `0.3`):
//! a cgroup with a CPU quota of that share of each 100 ms (cgroup v2 `cpu.max`, or v1
//! `cpu.cfs_quota_us`), so that both SFUs are pushed past saturation alike while the clients
//! keep up. Dropping the quota moves the process back and removes the cgroup.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;

/// The quota's period, in microseconds.
const PERIOD_US: u32 = 100_000;

/// The cgroup holding one SFU process.
pub struct CpuQuota {
    dir: PathBuf,
    parent: PathBuf,
    pid: u32,
}

impl CpuQuota {
    /// Holds `pid` to the share of a CPU the environment asks for, if it does.
    pub fn from_env(pid: u32) -> anyhow::Result<Option<CpuQuota>> {
        let Ok(share) = std::env::var("SFU_BENCH_NODE_SHARE") else {
            return Ok(None);
        };
        let fraction = match share.as_str() {
            "half" => 0.5,
            other => other
                .parse::<f64>()
                .ok()
                .filter(|f| *f > 0.0 && *f <= 1.0)
                .with_context(|| {
                    format!("SFU_BENCH_NODE_SHARE is {other:?}: \"half\" or a share of one CPU")
                })?,
        };
        CpuQuota::share(pid, (fraction * f64::from(PERIOD_US)) as u32).map(Some)
    }

    fn share(pid: u32, quota_us: u32) -> anyhow::Result<CpuQuota> {
        let name = format!("conclave-sfu-bench-{}", std::process::id());
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let (parent, limits): (PathBuf, Vec<(&str, String)>) =
            if v2.join("cgroup.controllers").exists() {
                (v2, vec![("cpu.max", format!("{quota_us} {PERIOD_US}"))])
            } else {
                (
                    PathBuf::from("/sys/fs/cgroup/cpu"),
                    vec![
                        ("cpu.cfs_period_us", PERIOD_US.to_string()),
                        ("cpu.cfs_quota_us", quota_us.to_string()),
                    ],
                )
            };
        let dir = parent.join(name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let quota = CpuQuota { dir, parent, pid };
        for (file, value) in &limits {
            fs::write(quota.dir.join(file), value)
                .with_context(|| format!("writing {file} of {}", quota.dir.display()))?;
        }
        fs::write(quota.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving the SFU into {}", quota.dir.display()))?;
        Ok(quota)
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // The process may have exited already; then the cgroup is empty.
        let _ = fs::write(self.parent.join("cgroup.procs"), self.pid.to_string());
        let _ = fs::remove_dir(&self.dir);
    }
}
