//! Where the harness finds things, from the environment: the one place the test library
//! reads environment variables.

use std::path::{Path, PathBuf};

/// The harness's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `KUBECONFIG`: use this cluster instead of starting a control plane.
    pub kubeconfig: Option<PathBuf>,
    /// `CONCLAVE_CONTROLPLANE`: the control plane binary
    /// (default `<workspace>/tests/controlplane/bin/controlplane`).
    pub controlplane: PathBuf,
    /// `CONCLAVE_HELM`: the helm CLI (default `<workspace>/tests/controlplane/bin/helm`).
    pub helm: PathBuf,
    /// `CONCLAVE_KUBECTL`: kubectl (default `<workspace>/tests/controlplane/bin/kubectl`).
    pub kubectl: PathBuf,
    /// `CONCLAVE_BIN_DIR`: the built binaries (default: the cargo profile directory this
    /// executable was built into, `<workspace>/target/debug` normally).
    pub bin_dir: PathBuf,
    /// `CONCLAVE_ARTIFACTS`: logs and state of test runs (default `<workspace>/tests/artifacts`).
    pub artifacts: PathBuf,
    /// `CONCLAVE_IMAGES`: the image archives the local cluster's nodes import (default
    /// `<target>/images/<profile>`, beside the built binaries: `make test-images` writes them).
    pub images: PathBuf,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Settings {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let bin_dir = path("CONCLAVE_BIN_DIR").unwrap_or_else(default_bin_dir);
        Settings {
            kubeconfig: path("KUBECONFIG"),
            controlplane: path("CONCLAVE_CONTROLPLANE")
                .unwrap_or_else(|| workspace_dir().join("tests/controlplane/bin/controlplane")),
            helm: path("CONCLAVE_HELM")
                .unwrap_or_else(|| workspace_dir().join("tests/controlplane/bin/helm")),
            kubectl: path("CONCLAVE_KUBECTL")
                .unwrap_or_else(|| workspace_dir().join("tests/controlplane/bin/kubectl")),
            images: path("CONCLAVE_IMAGES").unwrap_or_else(|| default_images_dir(&bin_dir)),
            bin_dir,
            artifacts: path("CONCLAVE_ARTIFACTS")
                .unwrap_or_else(|| workspace_dir().join("tests/artifacts")),
        }
    }
}

/// The Cargo workspace root (known at compile time).
pub fn workspace_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// The cargo profile directory of this executable, where the built binaries are: its
/// directory, or the parent of `deps/` for test binaries.
pub fn default_bin_dir() -> PathBuf {
    let fallback = workspace_dir().join("target/debug");
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    else {
        return fallback;
    };
    if dir.ends_with("deps") {
        dir.parent().map_or(fallback, Path::to_owned)
    } else {
        dir
    }
}

/// The image archives of the profile the binaries in `bin_dir` were built with:
/// `target/debug` → `target/images/debug`.
pub fn default_images_dir(bin_dir: &Path) -> PathBuf {
    let profile = bin_dir.file_name().unwrap_or_default();
    bin_dir
        .parent()
        .unwrap_or(bin_dir)
        .join("images")
        .join(profile)
}

/// A name for this executable's run: its file name without cargo's hash suffix
/// (`harness_kubelet-0123456789abcdef` → `harness_kubelet`).
pub fn run_name() -> String {
    let stem = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "testenv".into());
    strip_hash(&stem).to_owned()
}

fn strip_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

/// Sends the harness's tracing output to the test output (shown for failing tests), once.
pub fn init_test_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn,hyper=warn,tower=warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_sit_beside_the_profile_directory() {
        assert_eq!(
            default_images_dir(Path::new("/w/target/debug")),
            Path::new("/w/target/images/debug")
        );
    }

    #[test]
    fn run_names_drop_cargo_hashes() {
        assert_eq!(
            strip_hash("harness_kubelet-0123456789abcdef"),
            "harness_kubelet"
        );
        assert_eq!(strip_hash("conclave-demo"), "conclave-demo");
        assert_eq!(strip_hash("controlplane_api"), "controlplane_api");
    }
}
