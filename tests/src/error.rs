//! The one error type of the harness: every variant says what was being done, so a failing
//! test or a demo that cannot start explains itself.

use std::path::PathBuf;

/// Anything that can go wrong while starting, using or stopping the local cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control plane binary has not been built.
    #[error(
        "control plane binary {path} not found: run `make controlplane` (or set CONCLAVE_CONTROLPLANE)"
    )]
    ControlPlaneMissing { path: PathBuf },
    /// A binary the harness runs has not been built.
    #[error("binary {path} not found: run `make build controlplane` (or set CONCLAVE_BIN_DIR)")]
    BinaryMissing { path: PathBuf },
    /// An image archive the local cluster's nodes import has not been built.
    #[error(
        "image archive {path} not found: run `make test-images` (or set CONCLAVE_IMAGES to the directory `scripts/images.sh --out` wrote)"
    )]
    ImageMissing { path: PathBuf },
    /// A child process could not be started.
    #[error("could not start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A child process we depend on exited.
    #[error("{what} exited ({status}); last lines of {log}:\n{tail}")]
    Exited {
        what: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout { what: String, secs: u64 },
    /// A kubeconfig could not be read or used.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An object could not be encoded or decoded.
    #[error("{context}: {source}")]
    Encoding {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    /// A pod's container cannot be configured (missing Secret key, unsupported field...);
    /// shown to the user as the container's `CreateContainerConfigError` message.
    #[error("{0}")]
    ContainerConfig(String),
    /// A malformed answer from a server (probe target, test server).
    #[error("bad HTTP answer from {peer}: {detail}")]
    Http { peer: String, detail: String },
    /// The helm CLI has not been built.
    #[error("helm {path} not found: run `make helm` (or set CONCLAVE_HELM)")]
    HelmMissing { path: PathBuf },
    /// A helm command failed.
    #[error("helm {args} failed ({status}):\n{stderr}")]
    Helm {
        args: String,
        status: String,
        stderr: String,
    },
    /// A kubectl command failed.
    #[error("kubectl {args} failed ({status}):\n{output}")]
    Kubectl {
        args: String,
        status: String,
        output: String,
    },
    /// `helm template` output that is not a stream of YAML documents.
    #[error("the rendered chart is not YAML: {0}")]
    RenderedChart(String),
    /// The shared test environment failed to start for an earlier test of this binary.
    #[error("the shared test environment could not start: {0}")]
    SharedSetup(String),
}

/// Adds what was being done to the errors of kube and std calls.
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, kube::Error> {
    fn context(self, context: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            context: context.into(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, std::io::Error> {
    fn context(self, context: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: context.into(),
            source,
        })
    }
}

impl<T> Context<T> for Result<T, serde_json::Error> {
    fn context(self, context: impl Into<String>) -> Result<T, Error> {
        self.map_err(|source| Error::Encoding {
            context: context.into(),
            source,
        })
    }
}

/// True when a kube error is the API's 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
