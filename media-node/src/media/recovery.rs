//! Loss recovery towards publishers, in each peer connection's interceptor chain: a
//! retransmission (RFC 4588 RTX) is turned back into the packet it repairs (found by the
//! SSRC the SDP paired with it, or, for simulcast layers, by the rid its `repaired-rtp-stream-id`
//! names), each received
//! video stream's gaps are asked for again with NACKs on the schedule of
//! [`crate::forward::repair`], packets already received are dropped, and a keyframe is asked
//! for (PLI) only when repair failed. Towards subscribers, rtc's NACK responder answers from
//! what the node sent each of them (their own sequence numbers), as RTX.
//!
//! It sits above the TWCC receiver, which must see every arrival (retransmissions and copies
//! included) for the publisher's bandwidth estimate, and below the receiver reports, which
//! then count repaired packets as received.
//!
//! A simulcast layer named only by its rid is found by that name, which a browser sends on a
//! layer's packets only until a report acknowledges its SSRC; webrtc-rs forgets which SSRC a
//! rid names whenever the publisher's connection is renegotiated (someone joins, say) and
//! drops the layer's packets from then on unless they name it again. So reports about such
//! layers are withheld (removed from outgoing receiver and sender reports): the browser keeps
//! naming them, at the cost of a few bytes per packet and of report-based statistics for
//! those layers on the publisher's side.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::sansio::Protocol;
use rtc::sdp::extmap::{SDES_MID_URI, SDES_REPAIR_RTP_STREAM_ID_URI, SDES_RTP_STREAM_ID_URI};
use rtc::shared::TransportContext;
use rtc::shared::error::Error;

use crate::forward::repair::{Arrival, RepairSchedule};

/// Position in the chain: above the TWCC receiver (8,000), below the receiver reports
/// (10,000).
pub const RECOVERY_SLOT: usize = 8_500;

/// What recovery did on the whole node, for metrics.
#[derive(Debug, Default)]
pub struct RepairCounters {
    /// Packets asked for again (one per sequence number per NACK).
    pub requested: AtomicU64,
    /// Packets that arrived after being asked for.
    pub repaired: AtomicU64,
    /// Packets given up on (too many tries, or a gap too wide).
    pub given_up: AtomicU64,
    /// Copies of packets already received, dropped.
    pub duplicates: AtomicU64,
    /// Keyframes asked for because repair failed.
    pub keyframes: AtomicU64,
}

/// Retransmission streams and simulcast layers kept track of at most, whatever a peer sends.
const MAX_NAMED: usize = 32;

/// Header extension ids naming streams, as negotiated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct NameIds {
    mid: Option<u8>,
    rid: Option<u8>,
    rrid: Option<u8>,
}

impl NameIds {
    fn from(info: &StreamInfo) -> NameIds {
        let id = |uri: &str| {
            info.rtp_header_extensions
                .iter()
                .find(|e| e.uri == uri)
                .and_then(|e| u8::try_from(e.id).ok())
        };
        NameIds {
            mid: id(SDES_MID_URI),
            rid: id(SDES_RTP_STREAM_ID_URI),
            rrid: id(SDES_REPAIR_RTP_STREAM_ID_URI),
        }
    }
}

/// A simulcast layer by its names: the media section's mid and the layer's rid.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Named {
    mid: Bytes,
    rid: Bytes,
    of: RepairOf,
}

/// How a retransmission stream maps back to the stream it repairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RepairOf {
    ssrc: u32,
    payload_type: u8,
}

/// Turns RTX packet `packet` back into the packet it carries: the repaired stream's SSRC and
/// payload type, the original sequence number from the first two payload bytes. False (the
/// packet unchanged) when it carries none: padding, sent to probe bandwidth.
fn unwrap_rtx(packet: &mut rtc::rtp::Packet, of: RepairOf) -> bool {
    if packet.payload.len() < 2 {
        return false;
    }
    packet.header.sequence_number = u16::from_be_bytes([packet.payload[0], packet.payload[1]]);
    packet.header.ssrc = of.ssrc;
    packet.header.payload_type = of.payload_type;
    packet.header.padding = false;
    packet.payload = packet.payload.slice(2..);
    true
}

/// The interceptor; one per peer connection.
pub struct Recovery {
    /// Retransmission SSRC -> the stream it repairs.
    rtx: HashMap<u32, RepairOf>,
    /// Repair state of each received stream that negotiated NACK, by SSRC.
    streams: HashMap<u32, RepairSchedule>,
    /// Payload types of the streams bound, by SSRC.
    bound: HashMap<u32, u8>,
    /// Extension ids naming streams, from the streams bound.
    names: NameIds,
    /// Simulcast layers seen with their rid (Chromium sends it on a layer's first packets).
    layers: Vec<Named>,
    counters: Arc<RepairCounters>,
    sender_ssrc: u32,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Recovery {
    /// A recovery counting into `counters`.
    pub fn new(counters: Arc<RepairCounters>) -> Self {
        Self {
            rtx: HashMap::new(),
            streams: HashMap::new(),
            bound: HashMap::new(),
            names: NameIds::default(),
            layers: Vec::new(),
            counters,
            sender_ssrc: rand::random(),
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    fn send(&mut self, now: Instant, packet: Box<dyn rtc::rtcp::Packet>) {
        self.writes.push_back(TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(vec![packet])),
        });
    }

    /// Learns the layer a packet of a bound stream names with its rid, if it carries one.
    fn learn_layer(&mut self, header: &rtc::rtp::Header) {
        let (Some(rid_id), Some(payload_type)) = (self.names.rid, self.bound.get(&header.ssrc))
        else {
            return;
        };
        let Some(rid) = header.get_extension(rid_id) else {
            return;
        };
        let mid = self
            .names
            .mid
            .and_then(|id| header.get_extension(id))
            .unwrap_or_default();
        let of = RepairOf {
            ssrc: header.ssrc,
            payload_type: *payload_type,
        };
        if self.layers.iter().any(|l| l.of == of) || self.layers.len() >= MAX_NAMED {
            return;
        }
        self.layers.push(Named { mid, rid, of });
    }

    /// The stream a retransmission from an SSRC the SDP did not pair repairs, by the rid its
    /// `repaired-rtp-stream-id` names (simulcast); remembered for its next packets.
    fn repaired_by_name(&mut self, header: &rtc::rtp::Header) -> Option<RepairOf> {
        let rrid = header.get_extension(self.names.rrid?)?;
        let mid = self.names.mid.and_then(|id| header.get_extension(id));
        let mut matching = self
            .layers
            .iter()
            .filter(|l| l.rid == rrid && mid.as_ref().is_none_or(|m| *m == l.mid));
        let of = matching.next()?.of;
        if matching.next().is_some() || self.rtx.len() >= MAX_NAMED {
            return None;
        }
        self.rtx.insert(header.ssrc, of);
        Some(of)
    }

    /// Whether `ssrc` is a simulcast layer named by its rid.
    fn named_layer(&self, ssrc: u32) -> bool {
        self.layers.iter().any(|l| l.of.ssrc == ssrc)
    }

    /// An outgoing RTCP message without its report blocks about layers named by rid.
    fn strip_layer_reports(&self, msg: &mut TaggedPacket) {
        if !self.layers.is_empty()
            && let Packet::Rtcp(packets) = &mut msg.message.packet
        {
            for packet in packets.iter_mut() {
                if let Some(stripped) = self.without_layer_reports(packet.as_ref()) {
                    *packet = stripped;
                }
            }
        }
    }

    /// `packet` without its report blocks about layers named by rid; None when it has none.
    fn without_layer_reports(
        &self,
        packet: &dyn rtc::rtcp::Packet,
    ) -> Option<Box<dyn rtc::rtcp::Packet>> {
        let any = packet.as_any();
        if let Some(rr) = any.downcast_ref::<ReceiverReport>()
            && rr.reports.iter().any(|r| self.named_layer(r.ssrc))
        {
            let mut rr = rr.clone();
            rr.reports.retain(|r| !self.named_layer(r.ssrc));
            return Some(Box::new(rr));
        }
        if let Some(sr) = any.downcast_ref::<SenderReport>()
            && sr.reports.iter().any(|r| self.named_layer(r.ssrc))
        {
            let mut sr = sr.clone();
            sr.reports.retain(|r| !self.named_layer(r.ssrc));
            return Some(Box::new(sr));
        }
        None
    }

    /// Whether `info` negotiated generic NACK.
    fn nack_negotiated(info: &StreamInfo) -> bool {
        info.rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty())
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for Recovery {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &mut msg.message.packet {
            let ssrc = packet.header.ssrc;
            let repairs = match self.rtx.get(&ssrc) {
                Some(of) => Some(*of),
                None if !self.bound.contains_key(&ssrc) => self.repaired_by_name(&packet.header),
                None => {
                    self.learn_layer(&packet.header);
                    None
                }
            };
            if let Some(of) = repairs
                && !unwrap_rtx(packet, of)
            {
                // Padding: it served the bandwidth estimate below; nothing to hand on.
                return Ok(());
            }
            if let Some(stream) = self.streams.get_mut(&packet.header.ssrc) {
                let arrival = stream.on_packet(packet.header.sequence_number, msg.now);
                // A jump ahead gives up on what falls out of the window, or on a gap too wide.
                self.counters
                    .given_up
                    .fetch_add(stream.take_given_up(), Ordering::Relaxed);
                match arrival {
                    Arrival::New => {}
                    Arrival::Repaired => {
                        self.counters.repaired.fetch_add(1, Ordering::Relaxed);
                    }
                    Arrival::Duplicate | Arrival::TooOld => {
                        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        self.strip_layer_reports(&mut msg);
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        let mut out: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::new();
        for (ssrc, stream) in &mut self.streams {
            if stream.next_deadline().is_none_or(|t| t > now) {
                continue;
            }
            let due = stream.due(now);
            self.counters
                .given_up
                .fetch_add(stream.take_given_up(), Ordering::Relaxed);
            if !due.nacks.is_empty() {
                self.counters
                    .requested
                    .fetch_add(due.nacks.len() as u64, Ordering::Relaxed);
                out.push(Box::new(TransportLayerNack {
                    sender_ssrc: self.sender_ssrc,
                    media_ssrc: *ssrc,
                    nacks: nack_pairs_from_sequence_numbers(&due.nacks),
                }));
            }
            if due.keyframe {
                self.counters.keyframes.fetch_add(1, Ordering::Relaxed);
                out.push(Box::new(PictureLossIndication {
                    sender_ssrc: self.sender_ssrc,
                    media_ssrc: *ssrc,
                }));
            }
        }
        for packet in out {
            self.send(now, packet);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.streams
            .values()
            .filter_map(RepairSchedule::next_deadline)
            .min()
    }
}

impl Interceptor for Recovery {
    fn write_through(&mut self, msg: &mut TaggedPacket) -> bool {
        if !self.writes.is_empty() {
            return false;
        }
        self.strip_layer_reports(msg);
        true
    }

    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        let names = NameIds::from(info);
        if names.rid.is_some() || names.rrid.is_some() {
            self.names = names;
        }
        if let (Some(ssrc_rtx), Some(_)) = (info.ssrc_rtx, info.payload_type_rtx) {
            self.rtx.insert(
                ssrc_rtx,
                RepairOf {
                    ssrc: info.ssrc,
                    payload_type: info.payload_type,
                },
            );
        }
        // The retransmission stream is bound too, in its own right; it is never repaired.
        if !self.rtx.contains_key(&info.ssrc) {
            self.bound.insert(info.ssrc, info.payload_type);
            if Self::nack_negotiated(info) {
                self.streams.entry(info.ssrc).or_default();
            }
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
        self.bound.remove(&info.ssrc);
        self.rtx
            .retain(|rtx, of| *rtx != info.ssrc && of.ssrc != info.ssrc);
        self.layers.retain(|l| l.of.ssrc != info.ssrc);
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc::interceptor::RTCPFeedback;

    fn video(ssrc: u32, ssrc_rtx: Option<u32>) -> StreamInfo {
        StreamInfo {
            ssrc,
            ssrc_rtx,
            payload_type: 96,
            payload_type_rtx: ssrc_rtx.map(|_| 97),
            rtcp_feedback: vec![RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: String::new(),
            }],
            ..StreamInfo::default()
        }
    }

    fn rtp(ssrc: u32, pt: u8, seq: u16, payload: &[u8], now: Instant) -> TaggedPacket {
        let mut p = rtc::rtp::Packet::default();
        p.header.ssrc = ssrc;
        p.header.payload_type = pt;
        p.header.sequence_number = seq;
        p.payload = Bytes::copy_from_slice(payload);
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(p)),
        }
    }

    fn read_seqs(r: &mut Recovery) -> Vec<(u32, u16, Vec<u8>)> {
        std::iter::from_fn(|| r.poll_read())
            .filter_map(|m| match m.message.packet {
                Packet::Rtp(p) => {
                    Some((p.header.ssrc, p.header.sequence_number, p.payload.to_vec()))
                }
                _ => None,
            })
            .collect()
    }

    fn nacked(r: &mut Recovery) -> Vec<u16> {
        let mut seqs = Vec::new();
        while let Some(m) = r.poll_write() {
            if let Packet::Rtcp(packets) = m.message.packet {
                for p in packets {
                    if let Some(n) = p.as_any().downcast_ref::<TransportLayerNack>() {
                        for pair in &n.nacks {
                            seqs.extend(pair.packet_list());
                        }
                    }
                }
            }
        }
        seqs
    }

    #[test]
    fn a_retransmission_repairs_its_packet_and_copies_are_dropped() {
        let t = Instant::now();
        let mut r = Recovery::new(Arc::default());
        r.bind_remote_stream(&video(1000, Some(2000)));
        r.bind_remote_stream(&video(2000, None));
        r.handle_read(rtp(1000, 96, 7, b"a", t)).unwrap();
        r.handle_read(rtp(1000, 96, 9, b"c", t)).unwrap();
        let due = r.poll_timeout().unwrap();
        r.handle_timeout(due).unwrap();
        assert_eq!(nacked(&mut r), vec![8]);
        // RTX: its own sequence number 500, the original 8 in the first two bytes.
        r.handle_read(rtp(2000, 97, 500, &[0, 8, b'b'], due))
            .unwrap();
        r.handle_read(rtp(2000, 97, 501, &[0, 8, b'b'], due))
            .unwrap();
        // Padding on the RTX stream (a bandwidth probe) carries nothing.
        r.handle_read(rtp(2000, 97, 502, &[], due)).unwrap();
        assert_eq!(
            read_seqs(&mut r),
            vec![
                (1000, 7, b"a".to_vec()),
                (1000, 9, b"c".to_vec()),
                (1000, 8, b"b".to_vec())
            ]
        );
        assert_eq!(r.counters.repaired.load(Ordering::Relaxed), 1);
        assert_eq!(r.counters.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(r.poll_timeout(), None, "nothing left to ask for");
    }

    #[test]
    fn a_simulcast_layer_is_repaired_by_the_rid_its_retransmissions_name() {
        use rtc::interceptor::RTPHeaderExtension;
        let t = Instant::now();
        let mut r = Recovery::new(Arc::default());
        let extensions = [
            (1u8, SDES_MID_URI),
            (2u8, SDES_RTP_STREAM_ID_URI),
            (3u8, SDES_REPAIR_RTP_STREAM_ID_URI),
        ]
        .map(|(id, uri)| RTPHeaderExtension {
            uri: uri.to_owned(),
            id: id.into(),
        })
        .to_vec();
        for ssrc in [1000, 1001] {
            r.bind_remote_stream(&StreamInfo {
                rtp_header_extensions: extensions.clone(),
                ..video(ssrc, None)
            });
        }
        let named = |mut m: TaggedPacket, names: &[(u8, &'static [u8])]| {
            if let Packet::Rtp(p) = &mut m.message.packet {
                for (id, value) in names {
                    p.header
                        .set_extension(*id, Bytes::from_static(value))
                        .unwrap();
                }
            }
            m
        };
        r.handle_read(named(rtp(1000, 96, 7, b"a", t), &[(1, b"0"), (2, b"q")]))
            .unwrap();
        r.handle_read(named(rtp(1001, 96, 70, b"A", t), &[(1, b"0"), (2, b"h")]))
            .unwrap();
        r.handle_read(rtp(1001, 96, 72, b"C", t)).unwrap();
        // A retransmission of layer h from an SSRC no SDP named, then one without names.
        r.handle_read(named(
            rtp(3001, 97, 1, &[0, 71, b'B'], t),
            &[(1, b"0"), (3, b"h")],
        ))
        .unwrap();
        r.handle_read(rtp(3001, 97, 2, &[0, 71, b'B'], t)).unwrap();
        // Naming a layer nobody sent: passed on untouched (the endpoint drops it).
        r.handle_read(named(
            rtp(3002, 97, 1, &[0, 1, b'x'], t),
            &[(1, b"0"), (3, b"f")],
        ))
        .unwrap();
        assert_eq!(
            read_seqs(&mut r),
            vec![
                (1000, 7, b"a".to_vec()),
                (1001, 70, b"A".to_vec()),
                (1001, 72, b"C".to_vec()),
                (1001, 71, b"B".to_vec()),
                (3002, 1, vec![0, 1, b'x']),
            ]
        );
        assert_eq!(r.counters.duplicates.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn reports_about_layers_named_by_rid_are_withheld() {
        use rtc::interceptor::RTPHeaderExtension;
        use rtc::rtcp::reception_report::ReceptionReport;
        let t = Instant::now();
        let mut r = Recovery::new(Arc::default());
        r.bind_remote_stream(&StreamInfo {
            rtp_header_extensions: vec![RTPHeaderExtension {
                uri: SDES_RTP_STREAM_ID_URI.to_owned(),
                id: 2,
            }],
            ..video(1000, None)
        });
        r.bind_remote_stream(&video(7, None));
        let mut layer = rtp(1000, 96, 1, b"a", t);
        if let Packet::Rtp(p) = &mut layer.message.packet {
            p.header.set_extension(2, Bytes::from_static(b"q")).unwrap();
        }
        r.handle_read(layer).unwrap();
        let block = |ssrc| ReceptionReport {
            ssrc,
            ..ReceptionReport::default()
        };
        let rr = ReceiverReport {
            ssrc: 1,
            reports: vec![block(1000), block(7)],
            ..ReceiverReport::default()
        };
        r.handle_write(TaggedPacket {
            now: t,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(rr)])),
        })
        .unwrap();
        let Some(TaggedPacket {
            message:
                AttributedPacket {
                    packet: Packet::Rtcp(packets),
                    ..
                },
            ..
        }) = r.poll_write()
        else {
            panic!("the report goes out");
        };
        let rr = packets[0]
            .as_any()
            .downcast_ref::<ReceiverReport>()
            .unwrap();
        let ssrcs: Vec<u32> = rr.reports.iter().map(|b| b.ssrc).collect();
        assert_eq!(ssrcs, vec![7]);
    }

    #[test]
    fn streams_without_nack_pass_untouched() {
        let t = Instant::now();
        let mut r = Recovery::new(Arc::default());
        r.bind_remote_stream(&StreamInfo {
            ssrc: 5,
            ..StreamInfo::default()
        });
        for seq in [1, 5, 5] {
            r.handle_read(rtp(5, 111, seq, b"x", t)).unwrap();
        }
        assert_eq!(read_seqs(&mut r).len(), 3);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn a_gap_too_wide_to_repair_counts_as_given_up() {
        let t = Instant::now();
        let mut r = Recovery::new(Arc::default());
        r.bind_remote_stream(&video(1000, None));
        r.handle_read(rtp(1000, 96, 1, b"a", t)).unwrap();
        r.handle_read(rtp(1000, 96, 1000, b"b", t)).unwrap();
        assert_eq!(r.counters.given_up.load(Ordering::Relaxed), 998);
        assert_eq!(nacked(&mut r), Vec::<u16>::new());
    }

    #[test]
    fn failed_repair_asks_for_a_keyframe() {
        let t = Instant::now();
        let mut r = Recovery::new(Arc::default());
        r.bind_remote_stream(&video(1000, None));
        r.handle_read(rtp(1000, 96, 1, b"a", t)).unwrap();
        r.handle_read(rtp(1000, 96, 3, b"c", t)).unwrap();
        let mut plis = 0;
        let mut now = t;
        for _ in 0..10 {
            now += std::time::Duration::from_millis(200);
            r.handle_timeout(now).unwrap();
            while let Some(m) = r.poll_write() {
                if let Packet::Rtcp(packets) = m.message.packet {
                    plis += packets
                        .iter()
                        .filter(|p| p.as_any().is::<PictureLossIndication>())
                        .count();
                }
            }
        }
        assert_eq!(plis, 1);
        assert_eq!(r.counters.given_up.load(Ordering::Relaxed), 1);
        assert_eq!(r.counters.keyframes.load(Ordering::Relaxed), 1);
    }
}
