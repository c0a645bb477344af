//! Loss recovery towards publishers, in each peer connection's interceptor chain: a
//! retransmission (RFC 4588 RTX) is turned back into the packet it repairs, each received
//! video stream's gaps are asked for again with NACKs on the schedule of
//! [`crate::forward::repair`], packets already received are dropped, and a keyframe is asked
//! for (PLI) only when repair failed. Towards subscribers, rtc's NACK responder answers from
//! what the node sent each of them (their own sequence numbers), as RTX.
//!
//! It sits above the TWCC receiver, which must see every arrival (retransmissions and copies
//! included) for the publisher's bandwidth estimate, and below the receiver reports, which
//! then count repaired packets as received.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::sansio::Protocol;
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
            if let Some(of) = self.rtx.get(&packet.header.ssrc).copied()
                && !unwrap_rtx(packet, of)
            {
                // Padding: it served the bandwidth estimate below; nothing to hand on.
                return Ok(());
            }
            if let Some(stream) = self.streams.get_mut(&packet.header.ssrc) {
                let before = stream.repaired;
                match stream.on_packet(packet.header.sequence_number, msg.now) {
                    Arrival::New => {
                        if stream.repaired > before {
                            self.counters.repaired.fetch_add(1, Ordering::Relaxed);
                        }
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

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
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
            let given_up = stream.given_up;
            let due = stream.due(now);
            self.counters
                .given_up
                .fetch_add(stream.given_up - given_up, Ordering::Relaxed);
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
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
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
        if Self::nack_negotiated(info) && !self.rtx.contains_key(&info.ssrc) {
            self.streams.entry(info.ssrc).or_default();
        }
    }

    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
        if let Some(ssrc_rtx) = info.ssrc_rtx {
            self.rtx.remove(&ssrc_rtx);
        }
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
