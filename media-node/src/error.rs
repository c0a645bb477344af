//! The media node's error type: one enum with context in every variant.

use std::net::SocketAddr;

/// Errors of the media node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A webrtc operation failed.
    #[error("webrtc: {context}: {source}")]
    WebRtc {
        /// What was being done.
        context: &'static str,
        /// The crate's error.
        source: webrtc::error::Error,
    },
    /// The media port could not be bound.
    #[error("media port {addr}/udp: {source}: is --udp-port taken by another process?")]
    MediaPort {
        /// Bind address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The media TCP port (ICE-TCP) could not be bound.
    #[error("media port {addr}/tcp: {source}: is --tcp-port taken by another process?")]
    MediaTcpPort {
        /// Bind address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The signaling listener failed.
    #[error("signaling server on {addr}: {source}")]
    Serve {
        /// Listen address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A Kubernetes API call failed.
    #[error("kubernetes: {context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The client error.
        source: kube::Error,
    },
    /// The MediaNode this process runs as does not exist or lacks what the node needs.
    #[error("media node {name}: {message}")]
    Node {
        /// MediaNode name.
        name: String,
        /// What is missing.
        message: String,
    },
    /// The TLS certificate or key of the signaling port does not load.
    #[error(
        "TLS file {path}: {message}; check --tls-cert/--tls-key (the pool's spec.signaling.tlsSecretName)"
    )]
    Tls {
        /// The file at fault.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The room's task is gone (room closed).
    #[error("room {0} is closed")]
    RoomClosed(String),
}

impl Error {
    /// Wraps a webrtc error with what was being done.
    pub fn webrtc(context: &'static str) -> impl FnOnce(webrtc::error::Error) -> Error {
        move |source| Error::WebRtc { context, source }
    }
}

/// Result with the media node's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
