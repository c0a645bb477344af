//! The Conclave media node: an SFU on the webrtc crate with axum signaling.

pub mod forward;
