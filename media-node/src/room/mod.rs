//! Rooms: the membership state machine of a conference (`model`), active-speaker detection
//! (`speaker`), which cameras each participant receives under last-N (`last_n`, applied by
//! `forwarding`), and the task that owns one room and drives its peers (`task`).

pub mod events;
mod forwarding;
pub mod handle;
pub mod last_n;
pub mod model;
mod publishing;
pub mod speaker;
pub mod task;

pub use model::{
    JoinRefused, MediaPolicy, ParticipantId, PublishRefused, Room, TrackId, TrackInfo, TrackKind,
    TrackSource,
};
pub use task::{RoomHandle, RoomSettings};
