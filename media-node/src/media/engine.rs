//! How the node builds one participant's peer connection: codecs and feedback, the interceptor
//! chain (NACK/RTX, reports, TWCC receive, the feedback tap), SRTP preferring AES-GCM, ICE on
//! one UDP port of the node's range at the pod IP (NAT 1:1 is applied to the candidates the node
//! hands out, see `nat`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, SettingEngineBuilder, SrtpProtectionProfile,
};

use super::feedback::{FeedbackTap, PeerFeedback};
use super::ports::{PortLease, PortPool};
use super::publication::AUDIO_LEVEL_URI;
use crate::error::{Error, Result};

/// Where and how the node's peer connections bind.
#[derive(Clone, Debug)]
pub struct MediaSettings {
    /// Address sockets bind to (the pod IP).
    pub bind_ip: IpAddr,
    /// Ports peer connections take one each of.
    pub ports: Arc<PortPool>,
    /// ICE consent: a peer is `disconnected` after this long without traffic.
    pub ice_disconnected: Duration,
    /// ICE consent: and `failed` after this long.
    pub ice_failed: Duration,
}

/// Binding attempts before giving up (ports of the range may be taken by other processes).
const BIND_ATTEMPTS: usize = 32;

/// The application end of the chain, above every built-in interceptor.
const FEEDBACK_SLOT: usize = 14_000;

/// The codecs and feedback the node (and its test clients) negotiate.
pub fn media_engine() -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    engine
        .register_default_codecs()
        .map_err(Error::webrtc("registering codecs"))?;
    // Receivers may report their downlink with REMB; subscribers' estimates drive layer choice.
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

/// Builds a peer connection bound to a free port of the range. Returns it with the port lease
/// (dropping the lease returns the port) and the feedback receiver of its tap.
pub async fn build_peer(
    settings: &MediaSettings,
    handler: Arc<dyn PeerConnectionEventHandler>,
) -> Result<(
    Arc<dyn PeerConnection>,
    PortLease,
    mpsc::Receiver<PeerFeedback>,
)> {
    let (min, max) = settings.ports.range();
    for _ in 0..BIND_ATTEMPTS {
        let Some(lease) = settings.ports.lease() else {
            break;
        };
        let addr = SocketAddr::new(settings.bind_ip, lease.port());
        let (feedback_tx, feedback_rx) = mpsc::channel(256);
        let mut engine = media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut engine)
            .map_err(Error::webrtc("registering interceptors"))?
            .with(Slot::Custom(FEEDBACK_SLOT), FeedbackTap::new(feedback_tx));
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
            .with_include_loopback_candidate(settings.bind_ip.is_loopback());
        let built = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting.build())
            .with_handler(Arc::clone(&handler))
            .with_udp_addrs(vec![addr])
            .build()
            .await;
        match built {
            Ok(pc) => return Ok((Arc::new(pc), lease, feedback_rx)),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "port unavailable, trying the next one");
            }
        }
    }
    Err(Error::NoUdpPort {
        ip: settings.bind_ip,
        min,
        max,
    })
}
