//! How the node builds one participant's peer connection: codecs and feedback, the interceptor
//! chain (NACK/RTX, reports, TWCC both ways with the send-side estimate, the feedback tap), SRTP preferring AES-GCM, ICE on
//! the node's one UDP port (see `mux` and `peer_socket`; the candidates the node hands out name
//! that port at the published address, see `nat`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{CongestionControlBuilder, NackResponderBuilder, TwccSenderBuilder};
use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, SettingEngineBuilder, SrtpProtectionProfile,
};

use super::congestion::DownlinkEstimator;
use super::feedback::{EstimateCounters, FeedbackTap, PeerFeedback};
use super::mux::UdpMux;
use super::peer_socket::PeerSocket;
use super::publication::AUDIO_LEVEL_URI;
use super::recovery::{RECOVERY_SLOT, Recovery, RepairCounters};
use super::retransmit_pacer::{RetransmitCounters, RetransmitPacing};
use super::tcp_port::TcpPort;
use crate::error::{Error, Result};

/// Where and how the node's peer connections bind.
#[derive(Clone, Debug)]
pub struct MediaSettings {
    /// Address the port is bound to (the pod IP).
    pub bind_ip: IpAddr,
    /// The node's UDP port, shared by every peer connection.
    pub port: Arc<UdpMux>,
    /// The node's TCP port for ICE-TCP, shared the same way; none: no ICE-TCP.
    pub tcp_port: Option<Arc<TcpPort>>,
    /// ICE consent: a peer is `disconnected` after this long without traffic.
    pub ice_disconnected: Duration,
    /// ICE consent: and `failed` after this long.
    pub ice_failed: Duration,
    /// What loss recovery towards publishers did, on every peer connection.
    pub repair: Arc<RepairCounters>,
    /// Where subscribers' downlink estimates came from, on every peer connection.
    pub estimates: Arc<EstimateCounters>,
    /// What retransmission pacing towards subscribers did, on every peer connection.
    pub retransmits: Arc<RetransmitCounters>,
    /// The node's shedding level (`forward::shedding`), set by its governor through
    /// `NodeStats`; retransmission pacing reads it.
    pub shedding_level: Arc<AtomicU8>,
}

impl MediaSettings {
    /// Peer connections at `bind_ip` on the UDP port `port`: no ICE-TCP, ICE consent of 5 s
    /// to `disconnected` and 15 s to `failed`, fresh counters.
    pub fn on(bind_ip: IpAddr, port: Arc<UdpMux>) -> Self {
        Self {
            bind_ip,
            port,
            tcp_port: None,
            ice_disconnected: Duration::from_secs(5),
            ice_failed: Duration::from_secs(15),
            repair: Default::default(),
            estimates: Default::default(),
            retransmits: Default::default(),
            shedding_level: Default::default(),
        }
    }
}

/// The application end of the chain, above every built-in interceptor.
const FEEDBACK_SLOT: usize = 14_000;

/// The codecs and feedback the node (and its test clients) negotiate.
pub fn media_engine() -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    engine
        .register_default_codecs()
        .map_err(Error::webrtc("registering codecs"))?;
    // Receivers that do not send transport-wide feedback may report their downlink with REMB.
    engine.register_feedback(
        RTCPFeedback {
            typ: "goog-remb".to_owned(),
            parameter: String::new(),
        },
        RtpCodecKind::Video,
    );
    // Audio levels (RFC 6464) drive active-speaker detection.
    engine
        .register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: AUDIO_LEVEL_URI.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )
        .map_err(Error::webrtc("registering the audio level extension"))?;
    Ok(engine)
}

/// rtc's default chain with the node's own loss recovery towards publishers in place of its
/// NACK generator (see `recovery`): RTX unwrapped, gaps asked for on a round-trip schedule,
/// copies dropped. Towards subscribers, rtc's NACK responder answers from what the node sent,
/// and every packet the node sends carries a transport-wide sequence number, so the
/// subscriber's feedback drives the node's own estimate of its downlink (see `congestion`).
/// Only retransmissions are paced (see `retransmit_pacer`): the estimate picks layers, it
/// does not queue media.
fn interceptors(engine: &mut MediaEngine, settings: &MediaSettings) -> Result<Registry> {
    for parameter in ["", "pli"] {
        engine.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    configure_simulcast_extension_headers(engine)
        .map_err(Error::webrtc("registering simulcast header extensions"))?;
    let registry = Registry::new()
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::Custom(RECOVERY_SLOT),
            Recovery::new(Arc::clone(&settings.repair)),
        )
        .with(
            Slot::Pacer,
            RetransmitPacing::new(
                Arc::clone(&settings.retransmits),
                Arc::clone(&settings.shedding_level),
            ),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(DownlinkEstimator::new()).build(),
        );
    let registry = configure_twcc_receiver_only(registry, engine)
        .map_err(Error::webrtc("registering the TWCC receiver"))?;
    Ok(configure_rtcp_reports(registry))
}

/// Builds a peer connection on the node's port. Returns it with its place on the port (the
/// peer task registers its ICE username fragments there) and the feedback receiver of its tap.
pub async fn build_peer(
    settings: &MediaSettings,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<(
    Arc<dyn PeerConnection>,
    Arc<PeerSocket>,
    mpsc::Receiver<PeerFeedback>,
)> {
    let socket = PeerSocket::new(Arc::clone(&settings.port), settings.tcp_port.clone());
    let (feedback_tx, feedback_rx) = mpsc::channel(256);
    let mut engine = media_engine()?;
    let registry = interceptors(&mut engine, settings)?.with(
        Slot::Custom(FEEDBACK_SLOT),
        FeedbackTap::new(feedback_tx, Arc::clone(&settings.estimates)),
    );
    // Answering as DTLS client puts the node's SRTP profile list, AES-GCM first, in the
    // ClientHello, and the browser (DTLS server) chooses from it; as DTLS server, rtc-dtls
    // would take the first profile of the client's list (Chromium lists AES-CM first).
    let setting = SettingEngineBuilder::new()
        .with_answering_dtls_role(RTCDtlsRole::Client)
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ])
        .with_ice_timeouts(
            Some(settings.ice_disconnected),
            Some(settings.ice_failed),
            Some(Duration::from_secs(2)),
        )
        // No multicast socket per peer connection: clients reach the node's published
        // address, and the node learns theirs from their checks.
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(settings.bind_ip.is_loopback());
    // The driver binds an ephemeral socket here; the runtime closes it and puts the peer
    // connection on the port instead (its host candidate keeps the ephemeral name until the
    // node rewrites it). The same for the TCP listener, with ICE-TCP.
    let tcp_addrs = match settings.tcp_port {
        Some(_) => vec![SocketAddr::new(settings.bind_ip, 0)],
        None => Vec::new(),
    };
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(setting.build())
        .with_handler(handler)
        .with_runtime(Arc::clone(&socket) as Arc<dyn webrtc::runtime::Runtime>)
        .with_udp_addrs(vec![SocketAddr::new(settings.bind_ip, 0)])
        .with_tcp_addrs(tcp_addrs)
        .build()
        .await
        .map_err(Error::webrtc("building a peer connection"))?;
    Ok((Arc::new(pc), socket, feedback_rx))
}
