//! Media with the webrtc crate: ports, peer connection construction, the RTCP feedback tap,
//! the event handler, publications (reader tasks), subscriptions (writer tasks), the
//! per-participant peer task and the chat relay.

pub mod chat;
pub mod engine;
pub mod feedback;
pub mod handler;
pub mod nat;
pub mod peer;
pub mod ports;
pub mod publication;
pub mod subscription;

pub use engine::MediaSettings;
pub use ports::PortPool;
