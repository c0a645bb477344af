//! A Rust client of the node for integration tests and benchmarks: it speaks the signaling
//! protocol over a WebSocket, negotiates one webrtc peer connection (impolite side), publishes
//! synthetic VP8 (one or three simulcast layers) and Opus, opens the chat channel, and counts
//! what it receives per track.

mod negotiate;
mod publish;
pub mod synthetic;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_simulcast_extension_headers,
    register_default_interceptors,
};
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
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, SettingEngineBuilder,
    SrtpProtectionProfile,
};

use crate::media::engine::media_engine;
use crate::media::feedback::{FeedbackTap, PeerFeedback};
use crate::room::model::{ParticipantId, TrackSource};
use crate::signaling::protocol::{
    ClientMessage, ServerMessage, TrackDescription, client_text, parse_server,
};
use negotiate::{Events, negotiate, without_udp_candidates};
use publish::publish_loop;
use synthetic::{ReceiveStats, video_payload};

/// Simulcast rids the client publishes, lowest first.
pub const RIDS: [&str; 3] = ["q", "h", "f"];
pub(crate) const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub(crate) const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

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
    /// Sends transport-wide congestion feedback about what it receives, as browsers do.
    /// Without it the node takes this client's downlink estimate from REMB (`send_remb`).
    pub transport_feedback: bool,
    /// Offers first even with nothing to send (a receive-only offer), as the media node
    /// expects; otherwise a client with nothing to send waits for the server's offer (as
    /// Janus's subscribers do, in the benchmark).
    pub offer_first: bool,
    /// Reaches the node over ICE-TCP only, as a client whose network lets no UDP out: it
    /// connects to the node's passive TCP candidate and ignores its UDP ones.
    pub tcp_only: bool,
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
    /// Every video frame a real VP8 keyframe (320×180) in one packet, which browsers decode,
    /// instead of VP8-shaped packets carrying the send time (`packets_per_frame`,
    /// `packet_bytes` and `keyframe_interval` then do not apply).
    pub decodable: bool,
}

impl Default for MediaShape {
    fn default() -> Self {
        Self {
            fps: 30,
            packets_per_frame: [1, 2, 4],
            packet_bytes: [400, 900, 1100],
            keyframe_interval: 90,
            audio_pps: 50,
            decodable: false,
        }
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
            name: None,
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
        let registry = if config.transport_feedback {
            register_default_interceptors(Registry::new(), &mut engine).map_err(rtc_err)?
        } else {
            // The default chain without transport-wide feedback (and without negotiating it).
            configure_simulcast_extension_headers(&mut engine).map_err(rtc_err)?;
            configure_rtcp_reports(configure_nack(Registry::new(), &mut engine))
        }
        .with(
            Slot::Custom(14_000),
            FeedbackTap::new(feedback_tx, Default::default()),
        );
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    // Chromium's order: AES-CM before AES-GCM. The node should still end up
                    // with GCM (tests/room.rs checks).
                    .with_srtp_protection_profiles(vec![
                        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
                        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                    ])
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
            // ICE-TCP needs a local TCP candidate (its active one) to pair with the node's.
            .with_tcp_addrs(if config.tcp_only {
                vec![std::net::SocketAddr::new(config.bind_ip, 0)]
            } else {
                Vec::new()
            })
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
        let tcp_only = config.tcp_only;
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
                let message = if tcp_only {
                    without_udp_candidates(message)
                } else {
                    Some(message)
                };
                let Some(message) = message else { continue };
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
        // The client offers first (the node offers only once it answered): with nothing
        // to send, a receive-only transceiver makes the offer.
        let nothing_to_send = tracks.is_empty() && client.chat.is_none();
        if nothing_to_send && !config.offer_first {
            return Ok(client);
        }
        if nothing_to_send {
            client
                .pc
                .add_transceiver_from_kind(
                    RtpCodecKind::Audio,
                    Some(rtc::rtp_transceiver::RTCRtpTransceiverInit {
                        direction: rtc::rtp_transceiver::RTCRtpTransceiverDirection::Recvonly,
                        streams: Vec::new(),
                        send_encodings: Vec::new(),
                    }),
                )
                .await
                .map_err(rtc_err)?;
        }
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

    /// The SRTP protection profile negotiated with the node, as the stats name it
    /// (for example `SRTP_AEAD_AES_128_GCM`), once DTLS completed.
    pub async fn srtp_cipher(&self) -> Option<String> {
        let report = self
            .pc
            .get_stats(
                std::time::Instant::now(),
                webrtc::peer_connection::StatsSelector::None,
            )
            .await;
        report
            .iter_by_type(rtc::statistics::stats::RTCStatsType::Transport)
            .find_map(|e| match e {
                webrtc::peer_connection::RTCStatsReportEntry::Transport(t)
                    if !t.srtp_cipher.is_empty() =>
                {
                    Some(t.srtp_cipher.clone())
                }
                _ => None,
            })
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
    /// track, and returns what `write_rtp` said: an error with the patched webrtc crate
    /// (`third_party/webrtc`); the release dropped such packets without one, which is why the
    /// node's forwarding guard exists.
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
