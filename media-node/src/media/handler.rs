//! The webrtc event handler of one participant's peer connection. It holds only a weak sender
//! to its room's task and turns every callback into a room event; it never touches room state.

use std::sync::Arc;

use tokio::sync::mpsc;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::nat::HostCandidate;
use crate::room::model::ParticipantId;
use crate::room::task::RoomEvent;
use crate::signaling::protocol::Candidate;

/// Forwards one participant's peer connection events to its room.
pub struct PeerEvents {
    participant: ParticipantId,
    room: mpsc::WeakUnboundedSender<RoomEvent>,
    host: HostCandidate,
}

impl PeerEvents {
    /// A handler for `participant` reporting to `room`.
    pub fn new(
        participant: ParticipantId,
        room: mpsc::WeakUnboundedSender<RoomEvent>,
        host: HostCandidate,
    ) -> Self {
        Self {
            participant,
            room,
            host,
        }
    }

    fn send(&self, event: RoomEvent) {
        if let Some(room) = self.room.upgrade() {
            // The room may have closed in between; then nobody needs the event.
            let _ = room.send(event);
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        let Some(candidate) = self.host.candidate(&init.candidate) else {
            return;
        };
        self.send(RoomEvent::LocalCandidate {
            participant: self.participant,
            candidate: Candidate {
                candidate,
                sdp_mid: init.sdp_mid,
                sdp_m_line_index: init.sdp_mline_index,
                username_fragment: init.username_fragment,
            },
        });
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.send(RoomEvent::PeerState {
            participant: self.participant,
            state,
        });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.send(RoomEvent::TrackArrived {
            participant: self.participant,
            track,
        });
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        self.send(RoomEvent::DataChannel {
            participant: self.participant,
            channel,
        });
    }
}
