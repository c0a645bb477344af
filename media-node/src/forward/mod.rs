//! The forwarding core: per-subscription decisions on which RTP packets go out and how they
//! are rewritten, which layers publishers are asked to send (`dynacast`), and what the node
//! sheds under overload (`shedding`). Plain state machines fed packets and an explicit
//! `Instant`; no tokio, no webrtc types, so every rule is tested with simulated time.

pub mod counters;
pub mod delay;
pub mod downlink;
pub mod dynacast;
pub mod forwarder;
pub mod keyframe;
pub mod layers;
pub mod repair;
pub mod retransmit_pacing;
pub mod rewrite;
pub mod shedding;
pub mod trendline;

pub use counters::{DropReason, ForwardCounters};
pub use delay::DelayHistogram;
pub use forwarder::{Decision, Forwarder, ForwarderConfig, InboundPacket, Outbound};
pub use keyframe::{Codec, is_keyframe};
pub use layers::{Layer, LayerSelector, Quality};
pub use rewrite::Rewriter;
