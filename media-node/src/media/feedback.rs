//! An interceptor at the application end of each peer connection's chain that taps inbound
//! RTCP: keyframe requests (PLI/FIR) and downlink estimates from a subscriber go to its peer
//! task, which routes them to the subscription and on to the publisher. The estimate is the
//! node's own from the subscriber's transport-wide feedback (the congestion control
//! interceptor's `TargetBitrateChanged`, see `congestion`); REMB counts only from a peer that
//! sends no transport-wide feedback. Everything else passes on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use tokio::sync::mpsc;

use super::congestion::{NO_CEILING_BPS, announced_estimates};

/// Feedback from a peer about the streams the node sends it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PeerFeedback {
    /// The peer asks for a keyframe of the stream with this SSRC.
    KeyframeRequest {
        /// SSRC of the node's outgoing stream.
        media_ssrc: u32,
    },
    /// The peer's downlink estimate for everything the node sends it, bits per second.
    Estimate {
        /// Bits per second.
        bps: u64,
    },
}

/// Where the downlink estimates of every peer connection came from.
#[derive(Debug, Default)]
pub struct EstimateCounters {
    /// The node's own, from transport-wide feedback.
    pub transport_wide: AtomicU64,
    /// The peer's REMB, from peers sending no transport-wide feedback.
    pub remb: AtomicU64,
    /// REMB ignored because the peer sends transport-wide feedback.
    pub remb_ignored: AtomicU64,
}

/// The tap; one per peer connection.
pub struct FeedbackTap {
    events: mpsc::Sender<PeerFeedback>,
    counters: Arc<EstimateCounters>,
    /// The peer sends transport-wide feedback: its REMB is not used.
    transport_wide: bool,
    /// An estimate from REMB was reported.
    remb_used: bool,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl FeedbackTap {
    /// A tap sending what it sees to `events` (dropped when the receiver lags).
    pub fn new(events: mpsc::Sender<PeerFeedback>, counters: Arc<EstimateCounters>) -> Self {
        Self {
            events,
            counters,
            transport_wide: false,
            remb_used: false,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    fn emit(&self, event: PeerFeedback) {
        // A full queue means the peer task is behind; feedback is periodic, so dropping one
        // is harmless.
        let _ = self.events.try_send(event);
    }

    fn inspect(&mut self, packet: &dyn rtc::rtcp::Packet) {
        let any = packet.as_any();
        if any.is::<TransportLayerCc>() {
            if !self.transport_wide && self.remb_used {
                // The node's own estimate takes over, and it starts with no ceiling: the
                // last REMB must not hold the peer down.
                self.emit(PeerFeedback::Estimate {
                    bps: NO_CEILING_BPS as u64,
                });
            }
            self.transport_wide = true;
        } else if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
            self.emit(PeerFeedback::KeyframeRequest {
                media_ssrc: pli.media_ssrc,
            });
        } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
            for entry in &fir.fir {
                self.emit(PeerFeedback::KeyframeRequest {
                    media_ssrc: entry.ssrc,
                });
            }
        } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>()
            && remb.bitrate.is_finite()
            && remb.bitrate >= 0.0
        {
            if self.transport_wide {
                self.counters.remb_ignored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            self.counters.remb.fetch_add(1, Ordering::Relaxed);
            self.remb_used = true;
            self.emit(PeerFeedback::Estimate {
                bps: remb.bitrate as u64,
            });
        }
    }

    fn estimated(&self, bits_per_second: f64) {
        self.counters.transport_wide.fetch_add(1, Ordering::Relaxed);
        self.emit(PeerFeedback::Estimate {
            bps: bits_per_second as u64,
        });
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                self.inspect(p.as_ref());
            }
        }
        for bits_per_second in announced_estimates(&msg) {
            self.estimated(bits_per_second);
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
}

impl Interceptor for FeedbackTap {
    fn write_through(&mut self, _msg: &mut TaggedPacket) -> bool {
        self.writes.is_empty()
    }

    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_keyframe_requests_and_estimates() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut tap = FeedbackTap::new(tx, Default::default());
        tap.inspect(&PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 42,
        });
        tap.inspect(&ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 1,
            bitrate: 250_000.0,
            ssrcs: vec![42],
        });
        tap.inspect(&ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 1,
            bitrate: f32::NAN,
            ssrcs: vec![],
        });
        assert_eq!(
            rx.try_recv().ok(),
            Some(PeerFeedback::KeyframeRequest { media_ssrc: 42 })
        );
        assert_eq!(
            rx.try_recv().ok(),
            Some(PeerFeedback::Estimate { bps: 250_000 })
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn remb_counts_only_until_transport_wide_feedback_arrives() {
        let (tx, mut rx) = mpsc::channel(16);
        let counters = Arc::new(EstimateCounters::default());
        let mut tap = FeedbackTap::new(tx, Arc::clone(&counters));
        let remb = |bitrate| ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 1,
            bitrate,
            ssrcs: vec![42],
        };
        tap.inspect(&remb(300_000.0));
        tap.inspect(&TransportLayerCc::default());
        tap.inspect(&remb(200_000.0));
        tap.estimated(400_000.0);
        let estimates: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(
            estimates,
            [300_000, NO_CEILING_BPS as u64, 400_000].map(|bps| PeerFeedback::Estimate { bps })
        );
        assert_eq!(counters.remb.load(Ordering::Relaxed), 1);
        assert_eq!(counters.remb_ignored.load(Ordering::Relaxed), 1);
        assert_eq!(counters.transport_wide.load(Ordering::Relaxed), 1);
    }
}
