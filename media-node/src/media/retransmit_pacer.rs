//! An interceptor in the pacer's place of each peer connection's chain that paces the
//! retransmissions the NACK responder sends (packets on a stream's RTX SSRC) by
//! [`RetransmitPacer`]: it learns the subscriber's downlink ceiling from the congestion
//! control interceptor's `TargetBitrateChanged` on the read leg and what media leaves from the
//! media it writes, holds retransmissions beyond their share, and releases them on its timer
//! with the release instant as their time, so the send history below records when they really
//! left. Media and RTCP pass untouched, but for one case: while the node sheds load
//! (`forward::shedding`), subscribers' NACKs are taken out of what they send before the NACK
//! responder sees them. Past its limit the node loses packets because it is late itself, and
//! every subscriber asks for all of them again: answering would spend the CPU that the media
//! it still forwards needs, make more packets late, and more asked for (a collapse to a
//! tenth of its rate was measured). The subscribers ask for keyframes instead.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;

use super::congestion::{announced_estimates, ceiling_of};
use crate::forward::retransmit_pacing::{Offered, RetransmitPacer};

/// What retransmission pacing did, on every peer connection.
#[derive(Debug, Default)]
pub struct RetransmitCounters {
    /// Packets subscribers asked for again (one per sequence number) that were not answered
    /// because the node was shedding.
    pub unanswered: AtomicU64,
    /// Retransmissions sent (at once or after waiting).
    pub sent: AtomicU64,
    /// Of those, sent after waiting for their share.
    pub delayed: AtomicU64,
    /// Retransmissions dropped: waited too long, or too many waiting.
    pub dropped: AtomicU64,
    /// Retransmissions not queued: the same packet already waited.
    pub repeated: AtomicU64,
}

/// The interceptor; one per peer connection.
pub struct RetransmitPacing {
    pacer: RetransmitPacer<TaggedPacket>,
    rtx_ssrcs: HashSet<u32>,
    counters: Arc<RetransmitCounters>,
    /// The node's shedding level: above 0, NACKs are not answered.
    shedding_level: Arc<AtomicU8>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl RetransmitPacing {
    /// Pacing that counts into `counters` and answers no NACK while `shedding_level` is
    /// above 0.
    pub fn new(counters: Arc<RetransmitCounters>, shedding_level: Arc<AtomicU8>) -> Self {
        Self {
            pacer: RetransmitPacer::new(),
            rtx_ssrcs: HashSet::new(),
            counters,
            shedding_level,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    fn count(&self, counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Which leg an outgoing packet takes; media is counted as sent on the way.
    fn leg(&mut self, msg: &TaggedPacket) -> Leg {
        let Packet::Rtp(rtp) = &msg.message.packet else {
            return Leg::Pass;
        };
        if !self.rtx_ssrcs.contains(&rtp.header.ssrc) {
            self.pacer.media_sent(msg.now, rtp.marshal_size());
            return Leg::Pass;
        }
        // The packet repeated: the RTX stream's SSRC and the original sequence number that
        // opens its payload (RFC 4588).
        let original_sequence = match rtp.payload.get(..2) {
            Some(&[high, low]) => u16::from_be_bytes([high, low]),
            _ => rtp.header.sequence_number,
        };
        Leg::Retransmission {
            bytes: rtp.marshal_size(),
            original: u64::from(rtp.header.ssrc) << 16 | u64::from(original_sequence),
        }
    }
}

/// Takes the NACKs out of an RTCP compound; returns how many packets they asked for.
fn strip_nacks(msg: &mut TaggedPacket) -> usize {
    let Packet::Rtcp(packets) = &mut msg.message.packet else {
        return 0;
    };
    let mut asked = 0;
    packets.retain(|p| match p.as_any().downcast_ref::<TransportLayerNack>() {
        Some(nack) => {
            asked += nack
                .nacks
                .iter()
                .map(|pair| 1 + pair.lost_packets.count_ones() as usize)
                .sum::<usize>();
            false
        }
        None => true,
    });
    asked
}

/// What pacing does with an outgoing packet.
enum Leg {
    /// Media, RTCP: on at once.
    Pass,
    /// A retransmission of `bytes`, repeating the packet `original` (see `RetransmitPacer::offer`).
    Retransmission { bytes: usize, original: u64 },
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RetransmitPacing {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        for estimate in announced_estimates(&msg) {
            self.pacer.set_ceiling(msg.now, ceiling_of(estimate));
        }
        if self.shedding_level.load(Ordering::Relaxed) > 0 {
            let unanswered = strip_nacks(&mut msg);
            self.count(&self.counters.unanswered, unanswered);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let Leg::Retransmission { bytes, original } = self.leg(&msg) else {
            self.writes.push_back(msg);
            return Ok(());
        };
        match self.pacer.offer(msg.now, bytes, original, msg) {
            Offered::Send(msg) => {
                self.count(&self.counters.sent, 1);
                self.writes.push_back(msg);
            }
            Offered::Held => {}
            Offered::Dropped => self.count(&self.counters.dropped, 1),
            Offered::Repeated => self.count(&self.counters.repeated, 1),
        }
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        let (leaving, stale) = self.pacer.release(now);
        self.count(&self.counters.dropped, stale);
        self.count(&self.counters.sent, leaving.len());
        self.count(&self.counters.delayed, leaving.len());
        for mut msg in leaving {
            // It leaves now: the send history below must record this instant.
            msg.now = now;
            self.writes.push_back(msg);
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.pacer.next_release()
    }
}

impl Interceptor for RetransmitPacing {
    fn write_through(&mut self, msg: &mut TaggedPacket) -> bool {
        self.writes.is_empty() && matches!(self.leg(msg), Leg::Pass)
    }

    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_ssrcs.insert(rtx);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx_ssrcs.remove(&rtx);
        }
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::AttributedPacket;
    use rtc::shared::TransportContext;

    fn packet(ssrc: u32) -> TaggedPacket {
        let mut rtp = rtc::rtp::Packet::default();
        rtp.header.ssrc = ssrc;
        rtp.payload = vec![0; 100].into();
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtp)),
        }
    }

    /// Media goes through in place (the chain does not move it); a retransmission, and
    /// anything behind a packet still waiting here, takes the long way.
    #[test]
    fn media_passes_in_place_and_retransmissions_do_not() {
        let mut pacing = RetransmitPacing::new(Default::default(), Default::default());
        pacing.bind_local_stream(&StreamInfo {
            ssrc: 1,
            ssrc_rtx: Some(2),
            ..Default::default()
        });
        assert!(pacing.write_through(&mut packet(1)), "media");
        assert!(!pacing.write_through(&mut packet(2)), "a retransmission");

        pacing.handle_write(packet(2)).unwrap();
        assert!(
            !pacing.write_through(&mut packet(1)),
            "the retransmission (no ceiling: sent at once) waits to be polled, and leaves first"
        );
        assert!(pacing.poll_write().is_some());
        assert!(pacing.write_through(&mut packet(1)));
        assert_eq!(pacing.counters.sent.load(Ordering::Relaxed), 1);
    }

    fn feedback() -> TaggedPacket {
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;
        let nack = TransportLayerNack {
            sender_ssrc: 9,
            media_ssrc: 1,
            nacks: vec![NackPair {
                packet_id: 100,
                lost_packets: 0b101,
            }],
        };
        let pli = PictureLossIndication {
            sender_ssrc: 9,
            media_ssrc: 1,
        };
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(nack), Box::new(pli)])),
        }
    }

    fn kept(pacing: &mut RetransmitPacing) -> usize {
        match pacing.poll_read().map(|m| m.message.packet) {
            Some(Packet::Rtcp(packets)) => packets.len(),
            _ => panic!("the feedback is passed on"),
        }
    }

    /// While the node sheds, subscribers' NACKs are taken out of their feedback (the rest of
    /// it, such as a keyframe request, goes on) and counted by packets asked for.
    #[test]
    fn nacks_go_unanswered_while_the_node_sheds() {
        let mut pacing = RetransmitPacing::new(Default::default(), Default::default());
        pacing.handle_read(feedback()).unwrap();
        assert_eq!(kept(&mut pacing), 2, "not shedding: all of it");

        pacing.shedding_level.store(5, Ordering::Relaxed);
        pacing.handle_read(feedback()).unwrap();
        assert_eq!(kept(&mut pacing), 1, "shedding: the keyframe request only");
        assert_eq!(pacing.counters.unanswered.load(Ordering::Relaxed), 3);
    }
}
