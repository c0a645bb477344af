//! Signaling: the versioned JSON protocol spoken on `/rtc` (`protocol`) and one WebSocket
//! session per client (`session`).

pub mod protocol;
pub mod session;

pub use protocol::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage};
