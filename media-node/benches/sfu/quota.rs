//! Half a CPU for the SFU process (`SFU_BENCH_NODE_SHARE=half`): a cgroup with a CPU quota of
//! 50 ms per 100 ms (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), so that both SFUs are
//! pushed past saturation alike while the clients keep up. Dropping the quota moves the
//! process back and removes the cgroup.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;

/// The cgroup holding one SFU process.
pub struct CpuQuota {
    dir: PathBuf,
    parent: PathBuf,
    pid: u32,
}

impl CpuQuota {
    /// Holds `pid` to half a CPU when the environment asks for it.
    pub fn from_env(pid: u32) -> anyhow::Result<Option<CpuQuota>> {
        match std::env::var("SFU_BENCH_NODE_SHARE").as_deref() {
            Ok("half") => CpuQuota::half(pid).map(Some),
            Ok(other) => anyhow::bail!("SFU_BENCH_NODE_SHARE is {other:?}; only \"half\" is known"),
            Err(_) => Ok(None),
        }
    }

    fn half(pid: u32) -> anyhow::Result<CpuQuota> {
        let name = format!("conclave-sfu-bench-{}", std::process::id());
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let (parent, limits): (PathBuf, &[(&str, &str)]) = if v2.join("cgroup.controllers").exists()
        {
            (v2, &[("cpu.max", "50000 100000")])
        } else {
            (
                PathBuf::from("/sys/fs/cgroup/cpu"),
                &[
                    ("cpu.cfs_period_us", "100000"),
                    ("cpu.cfs_quota_us", "50000"),
                ],
            )
        };
        let dir = parent.join(name);
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let quota = CpuQuota { dir, parent, pid };
        for (file, value) in limits {
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
