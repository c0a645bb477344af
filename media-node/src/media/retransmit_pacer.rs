//! An interceptor in the pacer's place of each peer connection's chain that paces the
//! retransmissions the NACK responder sends (packets on a stream's RTX SSRC) by
//! [`RetransmitPacer`]: it learns the subscriber's downlink ceiling from the congestion
//! control interceptor's `TargetBitrateChanged` on the read leg and what media leaves from the
//! media it writes, holds retransmissions beyond their share, and releases them on its timer
//! with the release instant as their time, so the send history below records when they really
//! left. Media and RTCP pass untouched.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;

use super::congestion::{announced_estimates, ceiling_of};
use crate::forward::retransmit_pacing::{Offered, RetransmitPacer};

/// What retransmission pacing did, on every peer connection.
#[derive(Debug, Default)]
pub struct RetransmitCounters {
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
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl RetransmitPacing {
    /// Pacing that counts into `counters`.
    pub fn new(counters: Arc<RetransmitCounters>) -> Self {
        Self {
            pacer: RetransmitPacer::new(),
            rtx_ssrcs: HashSet::new(),
            counters,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    fn count(&self, counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RetransmitPacing {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        for estimate in announced_estimates(&msg) {
            self.pacer.set_ceiling(msg.now, ceiling_of(estimate));
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let Packet::Rtp(rtp) = &msg.message.packet else {
            self.writes.push_back(msg);
            return Ok(());
        };
        if !self.rtx_ssrcs.contains(&rtp.header.ssrc) {
            self.pacer.media_sent(msg.now, rtp.marshal_size());
            self.writes.push_back(msg);
            return Ok(());
        }
        let bytes = rtp.marshal_size();
        // The packet repeated: the RTX stream's SSRC and the original sequence number that
        // opens its payload (RFC 4588).
        let original_sequence = match rtp.payload.get(..2) {
            Some(&[high, low]) => u16::from_be_bytes([high, low]),
            _ => rtp.header.sequence_number,
        };
        let original = u64::from(rtp.header.ssrc) << 16 | u64::from(original_sequence);
        let now = msg.now;
        match self.pacer.offer(now, bytes, original, msg) {
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
