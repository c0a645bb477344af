//! The client's side of negotiation: its webrtc event handler (trickled candidates, received
//! tracks counted per node track id) and the impolite handling of the node's offers, answers
//! and candidates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};

use super::synthetic::ReceiveStats;
use crate::signaling::protocol::{Candidate, ClientMessage, ServerMessage, client_text};

pub(super) struct Events {
    pub(super) outbound: mpsc::UnboundedSender<Message>,
    pub(super) stats: Arc<ReceiveStats>,
    pub(super) remote: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
    pub(super) connected: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let message = ClientMessage::Candidate {
                candidate: Candidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_m_line_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                },
            };
            let _ = self
                .outbound
                .send(Message::Text(client_text(&message).into()));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.connected.store(
            state == RTCPeerConnectionState::Connected,
            Ordering::Relaxed,
        );
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        self.remote.lock().await.push(Arc::clone(&track));
        let counters = self.stats.track(&track.track_id().await);
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(p) => counters.record(
                        p.header.ssrc,
                        p.header.sequence_number,
                        p.header.marker,
                        &p.payload,
                    ),
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// `message` as a client that cannot send UDP sees it: without the node's UDP candidates
/// (none, for a trickled UDP candidate).
pub(super) fn without_udp_candidates(message: ServerMessage) -> Option<ServerMessage> {
    let udp = |candidate: &str| {
        candidate
            .split(' ')
            .nth(2)
            .is_some_and(|p| p.eq_ignore_ascii_case("udp"))
    };
    let strip = |sdp: String| -> String {
        sdp.split_inclusive('\n')
            .filter(|l| !l.strip_prefix("a=").is_some_and(udp))
            .collect()
    };
    match message {
        ServerMessage::Candidate { candidate } if udp(&candidate.candidate) => None,
        ServerMessage::Offer { sdp } => Some(ServerMessage::Offer { sdp: strip(sdp) }),
        ServerMessage::Answer { sdp } => Some(ServerMessage::Answer { sdp: strip(sdp) }),
        other => Some(other),
    }
}

pub(super) async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    out: &mpsc::UnboundedSender<Message>,
    message: &ServerMessage,
) {
    match message {
        ServerMessage::Offer { sdp } => {
            // Impolite: a server offer that collides with ours is ignored; the node rolls back.
            if pc.pending_local_description().await.is_some() {
                return;
            }
            let Ok(offer) = RTCSessionDescription::offer(sdp.clone()) else {
                return;
            };
            if pc.set_remote_description(offer).await.is_err() {
                return;
            }
            let Ok(answer) = pc.create_answer(None).await else {
                return;
            };
            if pc.set_local_description(answer.clone()).await.is_ok() {
                let m = ClientMessage::Answer { sdp: answer.sdp };
                let _ = out.send(Message::Text(client_text(&m).into()));
            }
        }
        ServerMessage::Answer { sdp } => {
            if let Ok(answer) = RTCSessionDescription::answer(sdp.clone()) {
                let _ = pc.set_remote_description(answer).await;
            }
        }
        ServerMessage::Candidate { candidate } => {
            let init = RTCIceCandidateInit {
                candidate: candidate.candidate.clone(),
                sdp_mid: candidate.sdp_mid.clone(),
                sdp_mline_index: candidate.sdp_m_line_index,
                username_fragment: candidate.username_fragment.clone(),
                ..Default::default()
            };
            let _ = pc.add_ice_candidate(init).await;
        }
        _ => {}
    }
}
