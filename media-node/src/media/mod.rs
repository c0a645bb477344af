//! Media with the webrtc crate: the node's one UDP port (and TCP port, for ICE-TCP) and each
//! peer connection's place on them,
//! peer connection construction, the send-side estimate, retransmission pacing, the RTCP feedback tap, the event handler, publications
//! (reader tasks), subscriptions (writer tasks), the per-participant peer task and the chat
//! relay.

pub mod chat;
pub mod congestion;
pub mod engine;
pub mod feedback;
pub mod handler;
pub mod mux;
pub mod nat;
pub mod outbox;
pub mod peer;
pub mod peer_socket;
pub mod publication;
pub mod recovery;
pub mod retransmit_pacer;
pub mod stun;
pub mod subscription;
pub mod tcp_port;

pub use engine::MediaSettings;
pub use mux::UdpMux;
pub use tcp_port::TcpPort;
