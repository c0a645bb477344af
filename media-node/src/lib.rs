//! The Conclave media node: an SFU on the webrtc crate with axum WebSocket signaling.
//!
//! Entry points: [`config::Config`] (flags and environment), [`node::NodeState`] (shared
//! state; rooms are opened with [`node::NodeState::open_room`]), [`server::run`] (signaling
//! and probes on a bound listener) and [`kube`] (MediaNode, MediaPool and Conference watches,
//! load reports and drain). The forwarding and room logic lives in plain state machines in
//! [`forward`] and [`room::model`].

pub mod app;
pub mod client;
pub mod cluster;
pub mod config;
pub mod error;
pub mod forward;
pub mod head_deadline;
pub mod media;
pub mod metrics;
pub mod node;
pub mod room;
pub mod server;
pub mod signaling;
pub mod sync;
pub mod tls;
pub mod web;

pub use error::{Error, Result};
pub use node::{NodeSettings, NodeState};
pub use room::task::{CloseReason, RoomSettings};
