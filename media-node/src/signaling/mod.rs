//! Signaling: the versioned JSON protocol spoken on `/rtc` (`protocol`), one WebSocket
//! session per client (`session`), and what keeps the endpoint safe to expose: the limits
//! (`limits`), the name a participant is shown by (`display_name`), the count of open sockets per node and source address (`connections`) and the
//! per-session message budget (`budget`).

pub mod budget;
pub mod connections;
pub mod display_name;
pub mod limits;
pub mod protocol;
pub mod session;

pub use limits::SignalingLimits;
pub use protocol::{ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage};
