//! Freezing a container on the local cluster's real nodes with the cgroup freezer, as a hung
//! process would look: the pod and its process stay, nothing it does happens. Thawed when
//! dropped, so a failing test leaves nothing frozen.

use std::path::{Path, PathBuf};

use crate::error::{Context, Error};

/// A frozen container; dropping it thaws the container.
#[derive(Debug)]
pub struct FrozenContainer {
    /// `freezer.state` (cgroup v1) or `cgroup.freeze` (cgroup v2) of the container's cgroup.
    control: PathBuf,
}

/// Freezes the container whose status says `container_id` (`containerd://<id>`).
pub fn freeze(container_id: &str) -> Result<FrozenContainer, Error> {
    let id = container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id);
    let (root, control, frozen) = if Path::new("/sys/fs/cgroup/freezer").is_dir() {
        ("/sys/fs/cgroup/freezer", "freezer.state", "FROZEN")
    } else {
        ("/sys/fs/cgroup", "cgroup.freeze", "1")
    };
    let dir = find_dir(Path::new(root), id, 8).ok_or_else(|| Error::Io {
        context: format!("find the cgroup of container {id} under {root}"),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    let control = dir.join(control);
    std::fs::write(&control, frozen).context(format!("freeze {}", control.display()))?;
    Ok(FrozenContainer { control })
}

impl FrozenContainer {
    /// Thaws the container now.
    pub fn thaw(self) {}
}

impl Drop for FrozenContainer {
    fn drop(&mut self) {
        let thawed = if self.control.ends_with("freezer.state") {
            "THAWED"
        } else {
            "0"
        };
        let _ = std::fs::write(&self.control, thawed);
    }
}

/// The directory named `name` under `dir`, at most `depth` levels down.
fn find_dir(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let subdirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    if let Some(found) = subdirs.iter().find(|p| p.ends_with(name)) {
        return Some(found.clone());
    }
    if depth == 0 {
        return None;
    }
    subdirs.iter().find_map(|d| find_dir(d, name, depth - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_nested_directory_by_name() {
        let root = std::env::temp_dir().join(format!("freezer-test-{}", std::process::id()));
        let deep = root.join("a/kubepods/besteffort/podx/abc123");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_dir(&root, "abc123", 8), Some(deep));
        assert_eq!(find_dir(&root, "abc123", 2), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
