//! One participant's peer task: the only code that negotiates on its peer connection. It
//! applies the client's offers, answers and candidates, adds and removes the subscriber tracks
//! the room asks for and renegotiates (the node is the polite peer: on glare it rolls back its
//! own offer), restarts ICE, and routes the participant's RTCP feedback to its subscriptions.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use super::feedback::PeerFeedback;
use super::nat::HostCandidate;
use super::peer_socket::PeerSocket;
use super::publication::{Publication, Sink, StreamFormat};
use super::subscription::{
    QUEUE_DEPTH, SubscriptionControl, forwardable_extensions, run_subscription,
};
use crate::forward::Forwarder;
use crate::forward::forwarder::{ForwarderConfig, Negotiation};
use crate::forward::layers::{Quality, SelectorConfig};
use crate::node::NodeStats;
use crate::room::model::{ParticipantId, TrackId, TrackKind};
use crate::room::task::RoomEvent;
use crate::signaling::protocol::{Candidate, ErrorCode, ServerMessage};

const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// Bandwidth set aside for each audio subscription when sharing an estimate among video.
const AUDIO_SHARE_BPS: u64 = 64_000;

/// What the room asks of a peer task.
pub enum PeerCommand {
    /// The client's offer.
    Offer(String),
    /// The client's answer.
    Answer(String),
    /// A client candidate.
    Candidate(Candidate),
    /// Restart ICE (the node sends a new offer).
    RestartIce,
    /// Describe a track the client published, then report `RoomEvent::TrackReady`.
    Describe(Arc<dyn TrackRemote>),
    /// Subscribe the participant to a publication.
    Subscribe(Arc<Publication>),
    /// Stop a subscription.
    Unsubscribe(TrackId),
    /// Quality for one subscribed track or all.
    SetQuality(Option<TrackId>, Quality),
    /// Pause (true) or resume forwarding one subscribed video (last-N).
    SetPaused(TrackId, bool),
    /// Close the peer connection and end the task.
    Close,
}

struct SubscriptionEntry {
    publication: Arc<Publication>,
    /// Simulcast is off for the conference but the publisher sends layers: the lowest is
    /// forwarded whatever the subscriber asks.
    quality_locked: bool,
    sender: Arc<dyn RtpSender>,
    control: mpsc::Sender<SubscriptionControl>,
    out_ssrc: u32,
}

/// State of one participant's peer connection.
pub struct PeerTask {
    id: ParticipantId,
    pc: Arc<dyn PeerConnection>,
    socket: Arc<PeerSocket>,
    outbound: mpsc::Sender<ServerMessage>,
    room: mpsc::WeakUnboundedSender<RoomEvent>,
    stats: Arc<NodeStats>,
    subscriptions: HashMap<TrackId, SubscriptionEntry>,
    quality: Quality,
    awaiting_answer: bool,
    needs_offer: bool,
    remote_set: bool,
    pending_candidates: Vec<RTCIceCandidateInit>,
    host: HostCandidate,
}

impl PeerTask {
    /// A peer task for participant `id` on `pc`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: ParticipantId,
        pc: Arc<dyn PeerConnection>,
        socket: Arc<PeerSocket>,
        outbound: mpsc::Sender<ServerMessage>,
        room: mpsc::WeakUnboundedSender<RoomEvent>,
        stats: Arc<NodeStats>,
        quality: Quality,
        host: HostCandidate,
    ) -> Self {
        Self {
            id,
            pc,
            socket,
            outbound,
            room,
            stats,
            subscriptions: HashMap::new(),
            quality,
            awaiting_answer: false,
            needs_offer: false,
            remote_set: false,
            pending_candidates: Vec::new(),
            host,
        }
    }

    /// Runs until closed.
    pub async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<PeerCommand>,
        mut feedback: mpsc::Receiver<PeerFeedback>,
    ) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(PeerCommand::Close) | None => break,
                    Some(command) => self.handle(command).await,
                },
                Some(fb) = feedback.recv() => self.on_feedback(fb).await,
            }
        }
        for (_, entry) in self.subscriptions.drain() {
            entry.publication.remove_sink(self.id);
            self.stats.subscription_ended();
        }
        if let Err(e) = self.pc.close().await {
            tracing::debug!(participant = %self.id, error = %e, "closing peer connection");
        }
    }

    fn send(&self, message: ServerMessage) {
        if self.outbound.try_send(message).is_err() {
            tracing::debug!(participant = %self.id, "signaling queue full or closed");
        }
    }

    fn negotiation_error(&self, what: &str, e: impl std::fmt::Display) {
        tracing::info!(participant = %self.id, error = %e, "{what} failed");
        self.send(ServerMessage::error(
            ErrorCode::Negotiation,
            format!("{what}: {e}"),
        ));
    }

    async fn handle(&mut self, command: PeerCommand) {
        match command {
            PeerCommand::Offer(sdp) => self.on_offer(sdp).await,
            PeerCommand::Answer(sdp) => self.on_answer(sdp).await,
            PeerCommand::Candidate(c) => self.on_candidate(c).await,
            PeerCommand::RestartIce => {
                if let Err(e) = self.pc.restart_ice().await {
                    self.negotiation_error("ICE restart", e);
                    return;
                }
                self.needs_offer = true;
                self.maybe_offer().await;
            }
            PeerCommand::Describe(track) => self.describe(track).await,
            PeerCommand::Subscribe(publication) => {
                if let Err(e) = self.subscribe(publication).await {
                    tracing::warn!(participant = %self.id, error = %e, "subscription failed");
                }
                self.maybe_offer().await;
            }
            PeerCommand::Unsubscribe(track) => {
                if let Some(entry) = self.subscriptions.remove(&track) {
                    entry.publication.remove_sink(self.id);
                    self.stats.subscription_ended();
                    if let Err(e) = self.pc.remove_track(&entry.sender).await {
                        tracing::debug!(participant = %self.id, error = %e, "remove_track");
                    }
                    self.needs_offer = true;
                    self.maybe_offer().await;
                }
            }
            PeerCommand::SetQuality(track, quality) => {
                if track.is_none() {
                    self.quality = quality;
                }
                for (id, entry) in &self.subscriptions {
                    if !entry.quality_locked && track.as_ref().is_none_or(|t| t == id) {
                        let _ = entry
                            .control
                            .try_send(SubscriptionControl::Quality(quality));
                    }
                }
            }
            PeerCommand::SetPaused(track, paused) => {
                if let Some(entry) = self.subscriptions.get(&track) {
                    // A full control queue loses this change; the room sends the set again
                    // at its next change.
                    let _ = entry.control.try_send(SubscriptionControl::Paused(paused));
                }
            }
            PeerCommand::Close => {}
        }
    }

    async fn on_offer(&mut self, sdp: String) {
        let offer = match parse_description(sdp, true) {
            Ok(d) => d,
            Err(e) => return self.negotiation_error("offer", e),
        };
        if self.awaiting_answer {
            // Glare: the node is polite and rolls its own offer back, then offers again.
            match RTCSessionDescription::rollback(None) {
                Ok(rollback) => {
                    if let Err(e) = self.pc.set_local_description(rollback).await {
                        return self.negotiation_error("rollback", e);
                    }
                }
                Err(e) => return self.negotiation_error("rollback", e),
            }
            self.awaiting_answer = false;
            self.needs_offer = true;
        }
        if let Err(e) = self.pc.set_remote_description(offer).await {
            return self.negotiation_error("offer", e);
        }
        self.remote_set = true;
        let answer = match self.pc.create_answer(None).await {
            Ok(a) => a,
            Err(e) => return self.negotiation_error("answer", e),
        };
        // Checks naming the answer's fragment may arrive as soon as the client has it.
        self.socket.accept_fragments_of(&answer.sdp);
        if let Err(e) = self.pc.set_local_description(answer.clone()).await {
            return self.negotiation_error("answer", e);
        }
        self.send(ServerMessage::Answer {
            sdp: self.host.sdp(&answer.sdp),
        });
        self.flush_candidates().await;
        self.refresh_negotiations().await;
        self.maybe_offer().await;
    }

    async fn on_answer(&mut self, sdp: String) {
        if !self.awaiting_answer {
            self.send(ServerMessage::error(
                ErrorCode::Unexpected,
                "answer without a pending offer from the node",
            ));
            return;
        }
        let answer = match parse_description(sdp, false) {
            Ok(d) => d,
            Err(e) => return self.negotiation_error("answer", e),
        };
        if let Err(e) = self.pc.set_remote_description(answer).await {
            return self.negotiation_error("answer", e);
        }
        self.awaiting_answer = false;
        self.remote_set = true;
        self.flush_candidates().await;
        self.refresh_negotiations().await;
        self.maybe_offer().await;
    }

    async fn on_candidate(&mut self, c: Candidate) {
        if c.candidate.is_empty() {
            return;
        }
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_m_line_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        if !self.remote_set {
            if self.pending_candidates.len() < 64 {
                self.pending_candidates.push(init);
            }
            return;
        }
        if let Err(e) = self.pc.add_ice_candidate(init).await {
            self.negotiation_error("candidate", e);
        }
    }

    async fn flush_candidates(&mut self) {
        for c in std::mem::take(&mut self.pending_candidates) {
            if let Err(e) = self.pc.add_ice_candidate(c).await {
                self.negotiation_error("candidate", e);
            }
        }
    }

    /// Offers what changed, once the client's first offer was answered: answering first, the
    /// node takes the DTLS client role for the whole session (the engine answers as client);
    /// had it offered first, it would be the DTLS server, and its answers to the client's
    /// later offers would switch roles, which browsers refuse ("Failed to set SSL role").
    async fn maybe_offer(&mut self) {
        if !self.needs_offer || self.awaiting_answer || !self.remote_set {
            return;
        }
        let offer = match self.pc.create_offer(None).await {
            Ok(o) => o,
            Err(e) => return self.negotiation_error("offer", e),
        };
        self.socket.accept_fragments_of(&offer.sdp);
        if let Err(e) = self.pc.set_local_description(offer.clone()).await {
            return self.negotiation_error("offer", e);
        }
        self.needs_offer = false;
        self.awaiting_answer = true;
        self.send(ServerMessage::Offer {
            sdp: self.host.sdp(&offer.sdp),
        });
    }

    /// Tells every subscription what its sender negotiated (payload types, extension ids, mid).
    async fn refresh_negotiations(&mut self) {
        let transceivers = self.pc.get_transceivers().await;
        let mut mids = HashMap::new();
        for t in transceivers {
            if let (Ok(Some(sender)), Ok(Some(mid))) = (t.sender().await, t.mid().await) {
                mids.insert(sender.id(), mid);
            }
        }
        for entry in self.subscriptions.values() {
            let Ok(params) = entry.sender.get_parameters().await else {
                continue;
            };
            let negotiation = Negotiation {
                ssrcs: params
                    .encodings
                    .iter()
                    .filter_map(|e| e.rtp_coding_parameters.ssrc)
                    .collect(),
                codecs: params
                    .rtp_parameters
                    .codecs
                    .iter()
                    .map(|c| (c.payload_type, c.rtp_codec.mime_type.clone()))
                    .collect(),
                extensions: params
                    .rtp_parameters
                    .header_extensions
                    .iter()
                    .filter_map(|h| u8::try_from(h.id).ok().map(|id| (id, h.uri.clone())))
                    .collect(),
            };
            let mid = negotiation.extension_id(MID_URI).and_then(|id| {
                mids.get(&entry.sender.id())
                    .map(|m| (id, Bytes::from(m.clone().into_bytes())))
            });
            let _ = entry
                .control
                .try_send(SubscriptionControl::Negotiated(negotiation, mid));
        }
    }

    async fn subscribe(&mut self, publication: Arc<Publication>) -> crate::error::Result<()> {
        let info = &publication.info;
        if self.subscriptions.contains_key(&info.id) {
            return Ok(());
        }
        let out_ssrc = loop {
            let s: u32 = rand::random();
            if s != 0 && !self.subscriptions.values().any(|e| e.out_ssrc == s) {
                break s;
            }
        };
        let format = &publication.format;
        let kind = match info.kind {
            TrackKind::Audio => RtpCodecKind::Audio,
            TrackKind::Video => RtpCodecKind::Video,
        };
        let track = MediaStreamTrack::new(
            format!("participant-{}", info.participant),
            info.id.clone(),
            info.id.clone(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(out_ssrc),
                    ..Default::default()
                },
                codec: codec_of(format),
                ..Default::default()
            }],
        );
        let local = Arc::new(TrackLocalStaticRTP::new(track));
        let sender = self
            .pc
            .add_track(Arc::clone(&local) as Arc<dyn TrackLocal>)
            .await
            .map_err(crate::error::Error::webrtc("adding a subscriber track"))?;
        let mut forwarder = Forwarder::new(ForwarderConfig {
            mime_type: format.mime_type.clone(),
            clock_rate: format.clock_rate,
            out_ssrc,
            publisher_extensions: forwardable_extensions(&format.extensions),
            selector: SelectorConfig::default(),
        });
        let quality_locked = format.layered && !info.simulcast;
        let quality = if quality_locked {
            Quality::Low
        } else {
            self.quality
        };
        forwarder.set_requested(quality, std::time::Instant::now());
        let (queue_tx, queue_rx) = mpsc::channel(QUEUE_DEPTH);
        let (control_tx, control_rx) = mpsc::channel(64);
        let sink = Arc::new(Sink {
            subscriber: self.id,
            queue: queue_tx,
            wanted: std::sync::atomic::AtomicU8::new(0b111),
            demand: std::sync::atomic::AtomicU8::new(forwarder.demand()),
        });
        publication.add_sink(Arc::clone(&sink));
        tokio::spawn(run_subscription(
            Arc::clone(&publication),
            sink,
            local,
            forwarder,
            quality,
            queue_rx,
            control_rx,
            Arc::clone(&self.stats),
        ));
        self.stats.subscription_started();
        self.subscriptions.insert(
            info.id.clone(),
            SubscriptionEntry {
                publication: Arc::clone(&publication),
                quality_locked,
                sender,
                control: control_tx,
                out_ssrc,
            },
        );
        self.needs_offer = true;
        Ok(())
    }

    async fn describe(&self, track: Arc<dyn TrackRemote>) {
        let codings = track.codings().await;
        let codec = codings.first().map(|c| c.codec.clone()).unwrap_or_default();
        let track_id = track.track_id().await;
        // The layers seen so far can be one when the track arrives (the other layers' first
        // packets not yet read); the offer says how many the publisher sends.
        let offered = match self.pc.remote_description().await {
            Some(d) => simulcast_layers_offered(&d.sdp, &track_id),
            None => 0,
        };
        let simulcast = codings.len().max(offered) > 1;
        let mut extensions = Vec::new();
        for receiver in self.pc.get_receivers().await {
            if receiver.track().track_id().await == track_id {
                if let Ok(params) = receiver.get_parameters().await {
                    extensions = params
                        .rtp_parameters
                        .header_extensions
                        .iter()
                        .filter_map(|h| u8::try_from(h.id).ok().map(|id| (id, h.uri.clone())))
                        .collect();
                }
                break;
            }
        }
        let kind = match track.kind().await {
            RtpCodecKind::Audio => TrackKind::Audio,
            _ => TrackKind::Video,
        };
        let format = StreamFormat {
            mime_type: codec.mime_type,
            clock_rate: codec.clock_rate,
            channels: codec.channels,
            fmtp: codec.sdp_fmtp_line,
            extensions,
            layered: simulcast,
        };
        if let Some(room) = self.room.upgrade() {
            let _ = room.send(RoomEvent::TrackReady {
                participant: self.id,
                track,
                client_track_id: track_id,
                kind,
                simulcast,
                format,
            });
        }
    }

    async fn on_feedback(&mut self, feedback: PeerFeedback) {
        match feedback {
            PeerFeedback::KeyframeRequest { media_ssrc } => {
                if let Some(entry) = self
                    .subscriptions
                    .values()
                    .find(|e| e.out_ssrc == media_ssrc)
                {
                    let _ = entry.control.try_send(SubscriptionControl::KeyframeRequest);
                }
            }
            PeerFeedback::Estimate { bps } => {
                tracing::debug!(participant = %self.id, bps, "downlink estimate");
                let (video, audio): (Vec<_>, Vec<_>) = self
                    .subscriptions
                    .values()
                    .partition(|e| e.publication.info.kind == TrackKind::Video);
                if video.is_empty() {
                    return;
                }
                let for_video = bps.saturating_sub(audio.len() as u64 * AUDIO_SHARE_BPS);
                let share = for_video / video.len() as u64;
                for entry in video {
                    let _ = entry.control.try_send(SubscriptionControl::Estimate(share));
                }
            }
        }
    }
}

fn codec_of(format: &StreamFormat) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: format.mime_type.clone(),
        clock_rate: format.clock_rate,
        channels: format.channels,
        sdp_fmtp_line: format.fmtp.clone(),
        rtcp_feedback: vec![],
    }
}

/// Parses client SDP into a description, refusing anything the SDP parser rejects. The parser
/// runs under `catch_unwind` so that no SDP can take the node down.
pub fn parse_description(sdp: String, offer: bool) -> Result<RTCSessionDescription, String> {
    let parsed = std::panic::catch_unwind(move || {
        if offer {
            RTCSessionDescription::offer(sdp)
        } else {
            RTCSessionDescription::answer(sdp)
        }
    });
    match parsed {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => Err(format!("invalid SDP: {e}")),
        Err(_) => Err("invalid SDP: the parser could not read it".to_owned()),
    }
}

/// The simulcast layers the publisher's description offers for `track_id`: the rids of the
/// `a=simulcast:send` line of the media section whose `a=msid:` names the track (0: none).
fn simulcast_layers_offered(sdp: &str, track_id: &str) -> usize {
    sdp.split("\nm=")
        .filter(|section| {
            section.lines().any(|l| {
                l.trim_end()
                    .strip_prefix("a=msid:")
                    .is_some_and(|msid| msid.split(' ').nth(1) == Some(track_id))
            })
        })
        .flat_map(|section| section.lines())
        .find_map(|l| l.trim_end().strip_prefix("a=simulcast:send "))
        .map_or(0, |rids| {
            rids.split(' ').next().unwrap_or("").split(';').count()
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_offer_says_how_many_layers_a_track_has() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:s a1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s v1\r\na=rid:q send\r\na=simulcast:send q;h;f\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:s v2\r\n";
        assert_eq!(simulcast_layers_offered(sdp, "v1"), 3);
        assert_eq!(simulcast_layers_offered(sdp, "v2"), 0);
        assert_eq!(simulcast_layers_offered(sdp, "a1"), 0);
        assert_eq!(simulcast_layers_offered(sdp, "nobody"), 0);
    }

    #[test]
    fn refuses_garbage_sdp() {
        assert!(parse_description("hello".into(), true).is_err());
        assert!(parse_description(String::new(), false).is_err());
    }

    proptest! {
        #[test]
        fn sdp_parsing_never_panics(s in "(v=0\r\n)?(o=- 1 1 IN IP4 0\\.0\\.0\\.0\r\n)?[ -~\r\n]{0,200}") {
            let _ = parse_description(s, true);
        }
    }
}
