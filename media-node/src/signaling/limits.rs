//! The limits that make the public signaling port safe to expose: how long a socket may stay
//! without joining, how many sockets a node and one source address may hold, how fast a client
//! may send, and how much memory a socket's WebSocket buffers take up front. Set from flags
//! (`config`), defaulted for a real deployment.

use std::time::Duration;

pub use super::budget::RateLimit;
pub use super::connections::ConnectionCaps;

/// Bytes the WebSocket reader of a socket allocates (and zeroes) up front. tungstenite's
/// default, 128 KiB, made an idle socket cost ~150 kB; messages larger than this still arrive
/// (the buffer grows to the frame) but are rare: joins, pings and candidates are under 2 KiB,
/// only SDP is larger.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Bytes of outgoing frames buffered before they are written out: none, every message is
/// written when sent.
pub const WRITE_BUFFER_BYTES: usize = 0;

/// Limits of the signaling endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalingLimits {
    /// How long a socket may stay open without sending a valid `join`.
    pub join_timeout: Duration,
    /// Caps on open sockets, per node and per source address.
    pub connections: ConnectionCaps,
    /// Messages per second a session may send (every frame counts, before and after join).
    pub rate: RateLimit,
}

impl Default for SignalingLimits {
    fn default() -> Self {
        Self {
            join_timeout: Duration::from_secs(5),
            connections: ConnectionCaps::default(),
            rate: RateLimit::default(),
        }
    }
}
