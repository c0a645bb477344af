//! What a room task is opened with, why it closes, and every event it reacts to: joins and
//! client messages from signaling sessions, and webrtc callbacks relayed by peer handlers.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::model::{MediaPolicy, ParticipantId, TrackId, TrackKind};
use crate::forward::layers::Quality;
use crate::media::chat::ChatInput;
use crate::media::peer::PeerCommand;
use crate::media::publication::StreamFormat;
use crate::signaling::protocol::{Candidate, ClientMessage, ErrorCode, ServerMessage};
/// What a room is opened with (from its Conference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    /// Conference name.
    pub conference: String,
    /// spec.maxParticipants.
    pub max_participants: u32,
    /// spec.media.
    pub media: MediaPolicy,
}

/// Why a room closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The conference was deleted or ended.
    Ended,
    /// The conference moved to another node: clients reconnect there.
    Moved {
        /// The new node's signaling URL.
        signaling_url: String,
    },
    /// The node's drain grace period passed.
    Drained,
}

/// A participant's request to enter the room, sent by its signaling session once its token
/// was verified and its peer connection built.
pub struct JoinRequest {
    /// Participant id.
    pub participant: ParticipantId,
    /// Identity from the token.
    pub identity: String,
    /// The name others see (checked by `signaling::display_name`).
    pub name: String,
    /// Whether the token allows publishing.
    pub may_publish: bool,
    /// Initial quality.
    pub quality: Quality,
    /// The session's outbound queue.
    pub outbound: mpsc::Sender<ServerMessage>,
    /// The participant's peer task.
    pub peer: mpsc::UnboundedSender<PeerCommand>,
}

/// Everything a room task reacts to.
pub enum RoomEvent {
    /// A participant wants in.
    Join {
        /// The request.
        request: JoinRequest,
        /// The verdict: admitted, or an error code and message.
        reply: oneshot::Sender<Result<(), (ErrorCode, String)>>,
    },
    /// A client message after join.
    Client {
        /// From whom.
        participant: ParticipantId,
        /// The message.
        message: ClientMessage,
        /// Its place among the room's queued client messages, given back once handled.
        slot: tokio::sync::OwnedSemaphorePermit,
    },
    /// The client's WebSocket closed.
    Disconnected {
        /// Who.
        participant: ParticipantId,
    },
    /// The node gathered an ICE candidate for a participant's peer connection.
    LocalCandidate {
        /// Whose connection.
        participant: ParticipantId,
        /// The candidate.
        candidate: Candidate,
    },
    /// A participant's peer connection changed state.
    PeerState {
        /// Whose connection.
        participant: ParticipantId,
        /// New state.
        state: RTCPeerConnectionState,
    },
    /// A participant started sending a track.
    TrackArrived {
        /// Publisher.
        participant: ParticipantId,
        /// The remote track.
        track: Arc<dyn TrackRemote>,
    },
    /// The peer task described an arrived track.
    TrackReady {
        /// Publisher.
        participant: ParticipantId,
        /// The remote track.
        track: Arc<dyn TrackRemote>,
        /// Its id in the publisher's SDP (msid).
        client_track_id: String,
        /// Audio or video.
        kind: TrackKind,
        /// Sent with several simulcast layers.
        simulcast: bool,
        /// Codec and extensions.
        format: StreamFormat,
    },
    /// A published track ended.
    TrackEnded {
        /// Publisher.
        participant: ParticipantId,
        /// Node track id.
        track: TrackId,
    },
    /// A participant opened a data channel.
    DataChannel {
        /// Whose.
        participant: ParticipantId,
        /// The channel.
        channel: Arc<dyn DataChannel>,
    },
    /// A chat frame arrived.
    Chat {
        /// From whom.
        participant: ParticipantId,
        /// What it was.
        input: ChatInput,
    },
    /// The conference changed.
    Update(RoomSettings),
    /// Close the room.
    Close(CloseReason),
}
