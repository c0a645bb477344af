//! A Rust client of the node for integration tests and benchmarks: it speaks the signaling
//! protocol over a WebSocket, negotiates one webrtc peer connection (impolite side), publishes
//! synthetic VP8 (one or three simulcast layers) and Opus, opens the chat channel, and counts
//! what it receives per track.

pub mod synthetic;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtp::Packet;
use rtc::rtp::header::Header;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder,
};

use crate::media::engine::media_engine;
use crate::media::feedback::{FeedbackTap, PeerFeedback};
use crate::room::model::{ParticipantId, TrackSource};
use crate::signaling::protocol::{
    Candidate, ClientMessage, ServerMessage, TrackDescription, client_text, parse_server,
};
use synthetic::{ReceiveStats, audio_payload, video_payload};

/// Simulcast rids the client publishes, lowest first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Why a client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// WebSocket failure.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// webrtc failure.
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// The node refused or did not answer.
    #[error("signaling: {0}")]
    Signaling(String),
}

fn rtc_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::WebRtc(e.to_string())
}

/// What the client publishes.
#[derive(Clone, Debug)]
pub struct Publish {
    /// Publish Opus audio.
    pub audio: bool,
    /// Video layers: 0 (none), 1, or 3 (simulcast).
    pub video_layers: usize,
    /// Open the chat channel.
    pub chat: bool,
}

/// How to reach the node and what to do there.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Signaling URL, such as `ws://127.0.0.1:7880/rtc`.
    pub url: String,
    /// Conference.
    pub conference: String,
    /// Join token.
    pub token: String,
    /// Local address for media.
    pub bind_ip: IpAddr,
    /// What to publish.
    pub publish: Publish,
}

/// Shape of the synthetic media a publishing client sends.
#[derive(Clone, Debug)]
pub struct MediaShape {
    /// Video frames per second.
    pub fps: u32,
    /// Packets per frame of each layer.
    pub packets_per_frame: [usize; 3],
    /// Payload bytes of each layer's packets.
    pub packet_bytes: [usize; 3],
    /// A keyframe every this many frames (also on request).
    pub keyframe_interval: u32,
    /// Audio packets per second (Opus at 20 ms: 50).
    pub audio_pps: u32,
}

impl Default for MediaShape {
    fn default() -> Self {
        Self {
            fps: 30,
            packets_per_frame: [1, 2, 4],
            packet_bytes: [400, 900, 1100],
            keyframe_interval: 90,
            audio_pps: 50,
        }
    }
}

struct Events {
    outbound: mpsc::UnboundedSender<Message>,
    stats: Arc<ReceiveStats>,
    remote: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
    connected: Arc<AtomicBool>,
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

/// A connected, joined client.
pub struct Client {
    /// The node's id for this client.
    pub participant: ParticipantId,
    /// The `joined` message.
    pub joined: ServerMessage,
    /// What this client receives.
    pub stats: Arc<ReceiveStats>,
    /// Chat messages received (relay JSON).
    pub chat_in: mpsc::UnboundedReceiver<String>,
    events: mpsc::UnboundedReceiver<ServerMessage>,
    outbound: mpsc::UnboundedSender<Message>,
    pc: Arc<dyn PeerConnection>,
    video: Option<(Arc<TrackLocalStaticRTP>, Vec<u32>)>,
    audio: Option<(Arc<TrackLocalStaticRTP>, u32)>,
    chat: Option<Arc<dyn DataChannel>>,
    remote: Arc<Mutex<Vec<Arc<dyn TrackRemote>>>>,
    keyframe_wanted: Arc<[AtomicBool; 3]>,
    connected: Arc<AtomicBool>,
    keyframe_requests: Arc<std::sync::atomic::AtomicU64>,
    candidates_seen: Arc<std::sync::Mutex<Vec<String>>>,
}

fn local_track(
    id: &str,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    rids: &[&str],
) -> (Arc<TrackLocalStaticRTP>, Vec<u32>) {
    let ssrcs: Vec<u32> = rids.iter().map(|_| rand::random::<u32>() | 1).collect();
    let codings = rids
        .iter()
        .zip(&ssrcs)
        .map(|(rid, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                rid: (*rid).to_owned(),
                ssrc: Some(*ssrc),
                ..Default::default()
            },
            codec: codec.clone(),
            ..Default::default()
        })
        .collect();
    let track = MediaStreamTrack::new(
        format!("stream-{id}"),
        id.to_owned(),
        id.to_owned(),
        kind,
        codings,
    );
    (Arc::new(TrackLocalStaticRTP::new(track)), ssrcs)
}

impl Client {
    /// Connects, joins, and (when publishing) sends the first offer.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async(config.url.as_str())
            .await
            .map_err(|e| ClientError::WebSocket(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let join = ClientMessage::Join {
            conference: config.conference.clone(),
            token: config.token.clone(),
            quality: None,
        };
        let _ = out_tx.send(Message::Text(client_text(&join).into()));
        let joined = loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .map_err(|_| ClientError::Signaling("no reply to join".into()))?;
            let Some(Ok(Message::Text(text))) = frame else {
                return Err(ClientError::Signaling("socket closed before joined".into()));
            };
            match parse_server(text.as_str()) {
                Ok(m @ ServerMessage::Joined { .. }) => break m,
                Ok(ServerMessage::Error { code, message }) => {
                    return Err(ClientError::Signaling(format!("{code:?}: {message}")));
                }
                _ => {}
            }
        };
        let ServerMessage::Joined { participant_id, .. } = &joined else {
            return Err(ClientError::Signaling("expected joined".into()));
        };
        let participant = *participant_id;

        let stats = Arc::new(ReceiveStats::default());
        let remote = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(AtomicBool::new(false));
        let (feedback_tx, mut feedback_rx) = mpsc::channel(64);
        let mut engine = media_engine().map_err(rtc_err)?;
        let registry = register_default_interceptors(Registry::new(), &mut engine)
            .map_err(rtc_err)?
            .with(Slot::Custom(14_000), FeedbackTap::new(feedback_tx));
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_include_loopback_candidate(config.bind_ip.is_loopback())
                    .build(),
            )
            .with_handler(Arc::new(Events {
                outbound: out_tx.clone(),
                stats: Arc::clone(&stats),
                remote: Arc::clone(&remote),
                connected: Arc::clone(&connected),
            }))
            .with_udp_addrs(vec![std::net::SocketAddr::new(config.bind_ip, 0)])
            .build()
            .await
            .map_err(rtc_err)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let mut tracks = Vec::new();
        let video = match config.publish.video_layers {
            0 => None,
            n => {
                let rids: Vec<&str> = if n >= 3 { RIDS.to_vec() } else { vec![""] };
                let codec = RTCRtpCodec {
                    mime_type: "video/VP8".into(),
                    clock_rate: 90_000,
                    ..Default::default()
                };
                let (t, ssrcs) = local_track("cam", RtpCodecKind::Video, codec, &rids);
                pc.add_track(Arc::clone(&t) as Arc<dyn TrackLocal>)
                    .await
                    .map_err(rtc_err)?;
                tracks.push(TrackDescription {
                    track_id: "cam".into(),
                    source: TrackSource::Camera,
                });
                Some((t, ssrcs))
            }
        };
        let audio = if config.publish.audio {
            let codec = RTCRtpCodec {
                mime_type: "audio/opus".into(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            };
            let (t, ssrcs) = local_track("mic", RtpCodecKind::Audio, codec, &[""]);
            pc.add_track(Arc::clone(&t) as Arc<dyn TrackLocal>)
                .await
                .map_err(rtc_err)?;
            tracks.push(TrackDescription {
                track_id: "mic".into(),
                source: TrackSource::Microphone,
            });
            Some((t, ssrcs[0]))
        } else {
            None
        };
        let (chat_tx, chat_in) = mpsc::unbounded_channel();
        let chat = if config.publish.chat {
            let dc = pc
                .create_data_channel("chat", None)
                .await
                .map_err(rtc_err)?;
            let reader = Arc::clone(&dc);
            tokio::spawn(async move {
                while let Some(e) = reader.poll().await {
                    match e {
                        DataChannelEvent::OnMessage(m) => {
                            let _ = chat_tx.send(String::from_utf8_lossy(&m.data).into_owned());
                        }
                        DataChannelEvent::OnClose => break,
                        _ => {}
                    }
                }
            });
            Some(dc)
        } else {
            None
        };

        let (events_tx, events) = mpsc::unbounded_channel();
        let candidates_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = Arc::clone(&candidates_seen);
        let negotiator_pc = Arc::clone(&pc);
        let negotiator_out = out_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(message) = parse_server(text.as_str()) else {
                    continue;
                };
                if let Ok(mut seen) = seen.lock() {
                    match &message {
                        ServerMessage::Candidate { candidate } => {
                            seen.push(candidate.candidate.clone())
                        }
                        ServerMessage::Offer { sdp } | ServerMessage::Answer { sdp } => seen
                            .extend(
                                sdp.lines()
                                    .filter_map(|l| l.strip_prefix("a="))
                                    .filter(|l| l.starts_with("candidate:"))
                                    .map(str::to_owned),
                            ),
                        _ => {}
                    }
                }
                negotiate(&negotiator_pc, &negotiator_out, &message).await;
                if events_tx.send(message).is_err() {
                    break;
                }
            }
        });
        let keyframe_wanted: Arc<[AtomicBool; 3]> = Arc::new(Default::default());
        let keyframe_requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let requests = Arc::clone(&keyframe_requests);
        let wanted = Arc::clone(&keyframe_wanted);
        let layer_ssrcs = video.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        tokio::spawn(async move {
            while let Some(fb) = feedback_rx.recv().await {
                if let PeerFeedback::KeyframeRequest { media_ssrc } = fb
                    && let Some(i) = layer_ssrcs.iter().position(|s| *s == media_ssrc)
                {
                    requests.fetch_add(1, Ordering::Relaxed);
                    wanted[i].store(true, Ordering::Relaxed);
                }
            }
        });

        let client = Client {
            participant,
            joined,
            stats,
            chat_in,
            events,
            outbound: out_tx,
            pc,
            video,
            audio,
            chat,
            remote,
            keyframe_wanted,
            connected,
            keyframe_requests,
            candidates_seen,
        };
        if !tracks.is_empty() || client.chat.is_some() {
            let offer = client.pc.create_offer(None).await.map_err(rtc_err)?;
            client
                .pc
                .set_local_description(offer.clone())
                .await
                .map_err(rtc_err)?;
            client.send(&ClientMessage::Offer {
                sdp: offer.sdp,
                tracks,
            });
        }
        Ok(client)
    }

    /// Sends a protocol message.
    pub fn send(&self, message: &ClientMessage) {
        let _ = self
            .outbound
            .send(Message::Text(client_text(message).into()));
    }

    /// Sends any text frame (for malformed-input tests).
    pub fn send_raw(&self, text: &str) {
        let _ = self.outbound.send(Message::Text(text.to_owned().into()));
    }

    /// The next server message, or `None` after `timeout` or when the socket closed.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<ServerMessage> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for a server message matching `want`, skipping others.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        want: impl Fn(&ServerMessage) -> bool,
    ) -> Option<ServerMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.next_event(left).await?;
            if want(&m) {
                return Some(m);
            }
        }
    }

    /// True while the peer connection is connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Sends a chat message.
    pub async fn chat(&self, text: &str) -> Result<(), ClientError> {
        let Some(dc) = &self.chat else {
            return Err(ClientError::Signaling("no chat channel".into()));
        };
        dc.send_text(text).await.map_err(rtc_err)
    }

    /// Keyframe requests (PLI/FIR) the node sent this publisher so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests.load(Ordering::Relaxed)
    }

    /// ICE candidates the node gave this client so far (trickled or in its SDP).
    pub fn node_candidates(&self) -> Vec<String> {
        self.candidates_seen
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Asks for a keyframe of every received video track (PLI to the node).
    pub async fn request_keyframes(&self) {
        for track in self.remote.lock().await.iter() {
            if track.kind().await != RtpCodecKind::Video {
                continue;
            }
            for media_ssrc in track.ssrcs().await {
                let pli =
                    rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                        sender_ssrc: 1,
                        media_ssrc,
                    };
                let _ = track.write_rtcp(vec![Box::new(pli)]).await;
            }
        }
    }

    /// Reports a downlink estimate to the node (REMB on every received track).
    pub async fn send_remb(&self, bps: u64) {
        for track in self.remote.lock().await.iter() {
            let ssrcs = track.ssrcs().await;
            let remb = ReceiverEstimatedMaximumBitrate {
                sender_ssrc: 1,
                bitrate: bps as f32,
                ssrcs,
            };
            let _ = track.write_rtcp(vec![Box::new(remb)]).await;
        }
    }

    /// Writes one video packet whose payload type was never negotiated, straight to the local
    /// track, and returns what `write_rtp` said. (The webrtc crate drops such packets without
    /// an error: the node's forwarding guard exists because of this.)
    pub async fn write_unnegotiated_packet(&self) -> Result<(), ClientError> {
        let Some((track, ssrcs)) = &self.video else {
            return Err(ClientError::Signaling("not publishing video".into()));
        };
        let header = Header {
            version: 2,
            payload_type: 1,
            sequence_number: 1,
            ssrc: ssrcs[0],
            ..Default::default()
        };
        let packet = Packet {
            header,
            payload: video_payload(0, 0, true, true, 100),
        };
        track.write_rtp(packet).await.map_err(rtc_err)
    }

    /// Publishes synthetic media of `shape` until the returned handle is aborted.
    pub fn start_media(&self, shape: MediaShape) -> tokio::task::JoinHandle<()> {
        let pc = Arc::clone(&self.pc);
        let video = self.video.clone();
        let audio = self.audio.clone();
        let wanted = Arc::clone(&self.keyframe_wanted);
        let connected = Arc::clone(&self.connected);
        tokio::spawn(async move { publish_loop(pc, video, audio, wanted, connected, shape).await })
    }

    /// Splits the client for failure tests: the first part keeps the signaling socket open, the
    /// future closes only the peer connection (as when a browser's media stack goes away).
    pub fn split_for_test(self) -> (impl Send, impl std::future::Future<Output = ()>) {
        let pc = Arc::clone(&self.pc);
        (self, async move {
            let _ = pc.close().await;
        })
    }

    /// Closes the peer connection (the socket closes when the client is dropped).
    pub async fn close(self) {
        let _ = self.pc.close().await;
    }
}

async fn negotiate(
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

struct SendLeg {
    payload_type: u8,
    mid: Option<(u8, bytes::Bytes)>,
    rid_id: Option<u8>,
    level_id: Option<u8>,
}

async fn send_leg(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticRTP>,
) -> Option<SendLeg> {
    let track_id = track.track().await.track_id().to_owned();
    for t in pc.get_transceivers().await {
        let Ok(Some(sender)) = t.sender().await else {
            continue;
        };
        if *sender.track().track().await.track_id() != track_id {
            continue;
        }
        let params = sender.get_parameters().await.ok()?;
        let payload_type = params.rtp_parameters.codecs.first()?.payload_type;
        let ext = |uri: &str| {
            params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|h| h.uri == uri)
                .and_then(|h| u8::try_from(h.id).ok())
        };
        let mid = t.mid().await.ok().flatten();
        return Some(SendLeg {
            payload_type,
            mid: ext(MID_URI).zip(mid.map(|m| bytes::Bytes::from(m.into_bytes()))),
            rid_id: ext(RID_URI),
            level_id: ext(AUDIO_LEVEL_URI),
        });
    }
    None
}

fn header(
    leg: &SendLeg,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    rid: Option<&str>,
    level: Option<u8>,
) -> Header {
    let mut h = Header {
        version: 2,
        marker,
        payload_type: leg.payload_type,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    if let Some((id, mid)) = &leg.mid {
        let _ = h.set_extension(*id, mid.clone());
    }
    if let (Some(id), Some(rid)) = (leg.rid_id, rid.filter(|r| !r.is_empty())) {
        let _ = h.set_extension(id, bytes::Bytes::copy_from_slice(rid.as_bytes()));
    }
    if let (Some(id), Some(level)) = (leg.level_id, level) {
        let _ = h.set_extension(id, bytes::Bytes::copy_from_slice(&[level]));
    }
    h
}

async fn publish_loop(
    pc: Arc<dyn PeerConnection>,
    video: Option<(Arc<TrackLocalStaticRTP>, Vec<u32>)>,
    audio: Option<(Arc<TrackLocalStaticRTP>, u32)>,
    wanted: Arc<[AtomicBool; 3]>,
    connected: Arc<AtomicBool>,
    shape: MediaShape,
) {
    // Wait for negotiation to bind the senders.
    let mut video_leg = None;
    let mut audio_leg = None;
    for _ in 0..200 {
        if let Some((t, _)) = &video {
            video_leg = send_leg(&pc, t).await;
        }
        if let Some((t, _)) = &audio {
            audio_leg = send_leg(&pc, t).await;
        }
        let ready =
            (video.is_none() || video_leg.is_some()) && (audio.is_none() || audio_leg.is_some());
        if ready && connected.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = tokio::time::Instant::now();
    let frame_period = Duration::from_secs(1) / shape.fps.max(1);
    let audio_period = Duration::from_secs(1) / shape.audio_pps.max(1);
    let mut next_frame = start;
    let mut next_audio = start;
    let mut frame: u32 = 0;
    let mut audio_frame: u32 = 0;
    let mut seqs = [0u16; 4];
    loop {
        let now = tokio::time::Instant::now();
        if let (Some((track, ssrcs)), Some(leg)) = (&video, &video_leg)
            && now >= next_frame
        {
            let ts = (now.duration_since(start).as_secs_f64() * 90_000.0) as u32;
            for (layer, ssrc) in ssrcs.iter().enumerate() {
                let l = if ssrcs.len() == 1 { 2 } else { layer };
                let key = frame.is_multiple_of(shape.keyframe_interval.max(1))
                    || wanted[layer].swap(false, Ordering::Relaxed);
                let n = shape.packets_per_frame[l].max(1);
                let rid = (ssrcs.len() > 1).then(|| RIDS[layer]);
                for i in 0..n {
                    let h = header(leg, *ssrc, seqs[layer], ts, i + 1 == n, rid, None);
                    seqs[layer] = seqs[layer].wrapping_add(1);
                    let payload = video_payload(l as u8, frame, i == 0, key, shape.packet_bytes[l]);
                    if track
                        .write_rtp(Packet { header: h, payload })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            frame += 1;
            next_frame += frame_period;
        }
        if let (Some((track, ssrc)), Some(leg)) = (&audio, &audio_leg)
            && now >= next_audio
        {
            let ts = audio_frame.wrapping_mul(960);
            let h = header(leg, *ssrc, seqs[3], ts, false, None, Some(0x80 | 30));
            seqs[3] = seqs[3].wrapping_add(1);
            if track
                .write_rtp(Packet {
                    header: h,
                    payload: audio_payload(audio_frame, 80),
                })
                .await
                .is_err()
            {
                return;
            }
            audio_frame += 1;
            next_audio += audio_period;
        }
        let wake = match (&video_leg, &audio_leg) {
            (Some(_), Some(_)) => next_frame.min(next_audio),
            (Some(_), None) => next_frame,
            (None, Some(_)) => next_audio,
            (None, None) => return,
        };
        tokio::time::sleep_until(wake).await;
    }
}
