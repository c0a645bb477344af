//! One subscription's forwarding decision: layer selection, sequence/timestamp rewriting and
//! the mapping onto the subscriber's negotiation (SSRC, payload type, header extension ids).
//! Fed packet metadata and an `Instant`; returns what to send or why not.

use std::time::Instant;

use super::counters::DropReason;
use super::keyframe::{Codec, is_keyframe};
use super::layers::{Layer, LayerSelector, LayerStats, LayerVerdict, Quality, SelectorConfig};
use super::rewrite::Rewriter;

/// What a subscriber's sender accepts, read from its negotiated parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiation {
    /// SSRCs of the sender's encodings.
    pub ssrcs: Vec<u32>,
    /// Payload types of the negotiated codecs with their mime types.
    pub codecs: Vec<(u8, String)>,
    /// Negotiated header extensions: (id, uri).
    pub extensions: Vec<(u8, String)>,
}

impl Negotiation {
    /// True when a packet with `ssrc`, `payload_type` and header extension `ext_ids` would be
    /// sent by the webrtc crate rather than refused (as released, it dropped them silently).
    pub fn admits(
        &self,
        ssrc: u32,
        payload_type: u8,
        ext_ids: impl IntoIterator<Item = u8>,
    ) -> bool {
        self.ssrcs.contains(&ssrc)
            && self.codecs.iter().any(|(pt, _)| *pt == payload_type)
            && ext_ids
                .into_iter()
                .all(|id| self.extensions.iter().any(|(n, _)| *n == id))
    }

    /// The payload type negotiated for `mime` (case-insensitive).
    pub fn payload_type(&self, mime: &str) -> Option<u8> {
        self.codecs
            .iter()
            .find(|(_, m)| m.eq_ignore_ascii_case(mime))
            .map(|(pt, _)| *pt)
    }

    /// The id of extension `uri`, if negotiated.
    pub fn extension_id(&self, uri: &str) -> Option<u8> {
        self.extensions
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }
}

/// Fixed facts about one subscription.
#[derive(Clone, Debug)]
pub struct ForwarderConfig {
    /// The publisher's codec mime type, such as `video/VP8`.
    pub mime_type: String,
    /// RTP clock rate of the codec.
    pub clock_rate: u32,
    /// The SSRC this subscription sends with.
    pub out_ssrc: u32,
    /// Header extensions of the publisher's stream: (id, uri).
    pub publisher_extensions: Vec<(u8, String)>,
    /// Layer selection tuning.
    pub selector: SelectorConfig,
}

/// One incoming packet, as far as forwarding needs to know it.
#[derive(Clone, Copy, Debug)]
pub struct InboundPacket<'a> {
    /// Simulcast layer it belongs to (0 without simulcast).
    pub layer: Layer,
    /// Its RTP sequence number.
    pub seq: u16,
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// Its payload, for keyframe detection.
    pub payload: &'a [u8],
}

/// The header of the packet to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// SSRC of the subscriber's sender.
    pub ssrc: u32,
    /// Payload type negotiated with the subscriber.
    pub payload_type: u8,
    /// Rewritten sequence number.
    pub seq: u16,
    /// Rewritten timestamp.
    pub timestamp: u32,
    /// Set when this packet completed a switch to a layer.
    pub switched_to: Option<Layer>,
}

/// What to do with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it with this header.
    Forward(Outbound),
    /// Do not send it.
    Drop(DropReason),
}

/// Forwarding state of one subscription.
#[derive(Clone, Debug)]
pub struct Forwarder {
    codec: Codec,
    mime_type: String,
    out_ssrc: u32,
    payload_type: Option<u8>,
    negotiated: bool,
    publisher_extensions: Vec<(u8, String)>,
    extension_map: [Option<u8>; 256],
    selector: LayerSelector,
    rewriter: Rewriter,
    muted: bool,
    paused: bool,
}

impl Forwarder {
    /// A forwarder that sends nothing until [`Forwarder::negotiated`] is called.
    pub fn new(config: ForwarderConfig) -> Self {
        Self {
            codec: Codec::from_mime(&config.mime_type),
            mime_type: config.mime_type,
            out_ssrc: config.out_ssrc,
            payload_type: None,
            negotiated: false,
            publisher_extensions: config.publisher_extensions,
            extension_map: [None; 256],
            selector: LayerSelector::new(config.selector),
            rewriter: Rewriter::new(config.clock_rate),
            muted: false,
            paused: false,
        }
    }

    /// Applies the subscriber's negotiation: payload type for the codec and extension ids.
    pub fn negotiated(&mut self, negotiation: &Negotiation) {
        self.negotiated = true;
        self.payload_type = negotiation.payload_type(&self.mime_type);
        self.extension_map = [None; 256];
        for (id, uri) in &self.publisher_extensions {
            self.extension_map[usize::from(*id)] = negotiation.extension_id(uri);
        }
    }

    /// The subscriber-side id of the publisher's extension `id`, or `None` to strip it.
    pub fn map_extension(&self, id: u8) -> Option<u8> {
        self.extension_map[usize::from(id)]
    }

    /// Mutes or unmutes forwarding (publisher mute, or media switched off).
    pub fn set_muted(&mut self, muted: bool) {
        self.muted = muted;
    }

    /// Pauses forwarding (the subscriber is not shown this video: last-N) or resumes it; a
    /// resumed subscription starts again on a keyframe of the layer it aims at.
    pub fn set_paused(&mut self, paused: bool, now: Instant) {
        if paused == self.paused {
            return;
        }
        self.paused = paused;
        self.selector.restart();
        if !paused {
            self.selector.aim(now);
        }
    }

    /// Starts again on a keyframe of the layer it aims at, as a resumed subscription does
    /// (packets queued for it were dropped, so what follows cannot be decoded without one);
    /// a paused subscription stays paused.
    pub fn restart(&mut self, now: Instant) {
        if !self.paused {
            self.selector.restart();
            self.selector.aim(now);
        }
    }

    /// Whether forwarding is paused.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The layers the publisher needs to send for this subscription: none while paused, else
    /// every layer up to the quality asked for.
    pub fn demand(&self) -> u8 {
        if self.paused {
            0
        } else {
            self.selector.usable_mask()
        }
    }

    /// The layer selector, for quality requests, estimates and layer statistics.
    pub fn set_requested(&mut self, quality: Quality, now: Instant) {
        self.selector.set_requested(quality, now);
    }

    /// Sets the subscriber's bandwidth estimate for this track.
    pub fn set_estimate(&mut self, bps: u64, now: Instant) {
        self.selector.set_estimate(bps, now);
    }

    /// Updates the publisher's layer statistics.
    pub fn set_layer_stats(&mut self, stats: LayerStats, now: Instant) {
        self.selector.set_stats(stats, now);
    }

    /// The layers this subscription needs packets of.
    pub fn wanted_layers(&self) -> u8 {
        self.selector.wanted_mask()
    }

    /// The layer being forwarded.
    pub fn current_layer(&self) -> Option<Layer> {
        self.selector.current()
    }

    /// The layer the selector aims at, and whether that is a probe.
    pub fn target_layer(&self) -> (Option<Layer>, bool) {
        (self.selector.target(), self.selector.probing().is_some())
    }

    /// A layer to request a keyframe for, when a switch waits on one.
    pub fn keyframe_request(&mut self, now: Instant) -> Option<Layer> {
        self.selector.keyframe_request(now)
    }

    /// Decides about one packet.
    pub fn on_packet(&mut self, packet: InboundPacket<'_>, now: Instant) -> Decision {
        if self.muted {
            return Decision::Drop(DropReason::Muted);
        }
        if self.paused {
            return Decision::Drop(DropReason::Paused);
        }
        if !self.negotiated {
            return Decision::Drop(DropReason::NotNegotiated);
        }
        let Some(payload_type) = self.payload_type else {
            return Decision::Drop(DropReason::CodecUnsupported);
        };
        let pending =
            self.selector.target() != self.selector.current() || self.selector.current().is_none();
        let keyframe = pending && is_keyframe(self.codec, packet.payload);
        let switched_to = match self.selector.on_packet(packet.layer, keyframe, now) {
            LayerVerdict::Forward => None,
            LayerVerdict::SwitchedTo(layer) => {
                self.rewriter
                    .switch_source(packet.seq, packet.timestamp, now);
                Some(layer)
            }
            LayerVerdict::OtherLayer => return Decision::Drop(DropReason::OtherLayer),
            LayerVerdict::AwaitingKeyframe => {
                return Decision::Drop(DropReason::AwaitingKeyframe);
            }
        };
        match self.rewriter.rewrite(packet.seq, packet.timestamp, now) {
            Some((seq, timestamp)) => Decision::Forward(Outbound {
                ssrc: self.out_ssrc,
                payload_type,
                seq,
                timestamp,
                switched_to,
            }),
            None => Decision::Drop(DropReason::BeforeSwitch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const VP8_KEY: &[u8] = &[0x10, 0x00, 0x9d];
    const VP8_DELTA: &[u8] = &[0x10, 0x01, 0x9d];
    const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

    fn negotiation() -> Negotiation {
        Negotiation {
            ssrcs: vec![42],
            codecs: vec![(96, "video/VP8".into()), (111, "audio/opus".into())],
            extensions: vec![(4, MID.into()), (7, AUDIO_LEVEL.into())],
        }
    }

    fn video() -> Forwarder {
        Forwarder::new(ForwarderConfig {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            out_ssrc: 42,
            publisher_extensions: vec![
                (1, AUDIO_LEVEL.into()),
                (3, MID.into()),
                (9, "urn:x".into()),
            ],
            selector: SelectorConfig::default(),
        })
    }

    fn packet(layer: Layer, seq: u16, payload: &[u8]) -> InboundPacket<'_> {
        InboundPacket {
            layer,
            seq,
            timestamp: u32::from(seq) * 3000,
            payload,
        }
    }

    #[test]
    fn nothing_goes_out_before_negotiation() {
        let mut f = video();
        assert_eq!(
            f.on_packet(packet(0, 1, VP8_KEY), Instant::now()),
            Decision::Drop(DropReason::NotNegotiated)
        );
    }

    #[test]
    fn maps_payload_type_ssrc_and_extensions_to_the_subscriber() {
        let mut f = video();
        f.negotiated(&negotiation());
        assert_eq!(f.map_extension(1), Some(7));
        assert_eq!(f.map_extension(3), Some(4));
        assert_eq!(f.map_extension(9), None);
        let t0 = Instant::now();
        let Decision::Forward(out) = f.on_packet(packet(0, 5, VP8_KEY), t0) else {
            panic!("a keyframe on the only layer is forwarded");
        };
        assert_eq!((out.ssrc, out.payload_type, out.seq), (42, 96, 5));
        assert!(negotiation().admits(out.ssrc, out.payload_type, [7, 4]));
    }

    #[test]
    fn guard_catches_what_the_crate_would_refuse() {
        let n = negotiation();
        assert!(!n.admits(43, 96, []));
        assert!(!n.admits(42, 100, []));
        assert!(!n.admits(42, 96, [3]));
        assert!(n.admits(42, 111, []));
    }

    #[test]
    fn unknown_codec_is_counted_as_unsupported() {
        let mut f = Forwarder::new(ForwarderConfig {
            mime_type: "video/AV1".into(),
            ..video_config()
        });
        f.negotiated(&negotiation());
        assert_eq!(
            f.on_packet(packet(0, 1, VP8_KEY), Instant::now()),
            Decision::Drop(DropReason::CodecUnsupported)
        );
    }

    #[test]
    fn a_paused_video_sends_nothing_and_resumes_on_a_keyframe_with_contiguous_output() {
        let t0 = Instant::now();
        let mut f = video();
        f.negotiated(&negotiation());
        f.set_requested(Quality::Medium, t0);
        let Decision::Forward(first) = f.on_packet(packet(0, 10, VP8_KEY), t0) else {
            panic!("the first keyframe starts forwarding");
        };
        assert_eq!(f.demand(), 0b011, "layers up to medium may be used");

        f.set_paused(true, t0);
        assert_eq!(f.demand(), 0, "a paused video needs no layer");
        for (seq, payload) in [(11, VP8_DELTA), (12, VP8_KEY)] {
            assert_eq!(
                f.on_packet(packet(0, seq, payload), t0),
                Decision::Drop(DropReason::Paused)
            );
        }

        let t1 = t0 + Duration::from_secs(2);
        f.set_paused(false, t1);
        starts_again_on_a_keyframe(&mut f, first.seq, 13, t1);
    }

    /// After a pause or a restart: `f` asks for a keyframe, drops the delta frame `seq`
    /// waiting for it, and forwards the keyframe `seq + 1` right after `last_seq`, the
    /// sequence number it sent before.
    fn starts_again_on_a_keyframe(f: &mut Forwarder, last_seq: u16, seq: u16, now: Instant) {
        assert_eq!(f.keyframe_request(now), Some(0), "it asks for a keyframe");
        assert_eq!(
            f.on_packet(packet(0, seq, VP8_DELTA), now),
            Decision::Drop(DropReason::AwaitingKeyframe)
        );
        let Decision::Forward(next) = f.on_packet(packet(0, seq + 1, VP8_KEY), now) else {
            panic!("the keyframe starts forwarding again");
        };
        assert_eq!(next.seq, last_seq.wrapping_add(1), "no gap in the sequence");
    }

    #[test]
    fn a_restarted_video_waits_for_a_keyframe_and_its_output_has_no_gap() {
        let t0 = Instant::now();
        let mut f = video();
        f.negotiated(&negotiation());
        let Decision::Forward(first) = f.on_packet(packet(0, 10, VP8_KEY), t0) else {
            panic!("the first keyframe starts forwarding");
        };
        // Packets 11 to 19 were dropped from the queue.
        f.restart(t0);
        starts_again_on_a_keyframe(&mut f, first.seq, 20, t0);

        f.set_paused(true, t0);
        f.restart(t0);
        assert!(f.paused(), "a paused video stays paused");
    }

    fn video_config() -> ForwarderConfig {
        ForwarderConfig {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            out_ssrc: 42,
            publisher_extensions: vec![],
            selector: SelectorConfig::default(),
        }
    }

    #[test]
    fn simulcast_switch_happens_on_keyframe_with_contiguous_output() {
        let t0 = Instant::now();
        let mut f = video();
        f.negotiated(&negotiation());
        f.set_layer_stats(
            LayerStats {
                bitrate_bps: [100_000, 400_000, 1_200_000],
                active: [true; 3],
            },
            t0,
        );
        f.set_estimate(5_000_000, t0);
        // Layer 2 starts on its keyframe.
        assert!(matches!(
            f.on_packet(packet(0, 100, VP8_KEY), t0),
            Decision::Drop(DropReason::OtherLayer)
        ));
        let Decision::Forward(first) = f.on_packet(packet(2, 9000, VP8_KEY), t0) else {
            panic!("keyframe of the target layer starts forwarding");
        };
        assert_eq!(first.switched_to, Some(2));
        let Decision::Forward(second) = f.on_packet(packet(2, 9001, VP8_DELTA), t0) else {
            panic!("the current layer flows");
        };
        assert_eq!(second.seq, first.seq.wrapping_add(1));

        // Throttled subscriber: move to layer 0 at its next keyframe.
        let t1 = t0 + Duration::from_millis(500);
        f.set_estimate(200_000, t1);
        assert_eq!(f.keyframe_request(t1), Some(0));
        assert_eq!(f.wanted_layers(), 0b101);
        assert_eq!(
            f.on_packet(packet(0, 101, VP8_DELTA), t1),
            Decision::Drop(DropReason::OtherLayer)
        );
        assert!(matches!(
            f.on_packet(packet(2, 9002, VP8_DELTA), t1),
            Decision::Forward(_)
        ));
        let Decision::Forward(switched) = f.on_packet(packet(0, 102, VP8_KEY), t1) else {
            panic!("keyframe completes the switch");
        };
        assert_eq!(switched.switched_to, Some(0));
        assert_eq!(switched.seq, first.seq.wrapping_add(3));
        assert_eq!(f.current_layer(), Some(0));
        assert_eq!(
            f.on_packet(packet(2, 9003, VP8_KEY), t1),
            Decision::Drop(DropReason::OtherLayer)
        );
    }

    #[test]
    fn muted_tracks_are_dropped_as_muted() {
        let mut f = video();
        f.negotiated(&negotiation());
        f.set_muted(true);
        assert_eq!(
            f.on_packet(packet(0, 1, VP8_KEY), Instant::now()),
            Decision::Drop(DropReason::Muted)
        );
    }
}
