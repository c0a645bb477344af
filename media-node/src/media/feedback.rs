//! An interceptor at the application end of each peer connection's chain that taps inbound
//! RTCP: keyframe requests (PLI/FIR) and bandwidth estimates (REMB, or the congestion
//! controller's target when configured) from a subscriber go to its peer task,
//! which routes them to the subscription and on to the publisher. Everything else passes on.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use tokio::sync::mpsc;

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

/// The tap; one per peer connection.
pub struct FeedbackTap {
    events: mpsc::Sender<PeerFeedback>,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl FeedbackTap {
    /// A tap sending what it sees to `events` (dropped when the receiver lags).
    pub fn new(events: mpsc::Sender<PeerFeedback>) -> Self {
        Self {
            events,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    fn emit(&self, event: PeerFeedback) {
        // A full queue means the peer task is behind; feedback is periodic, so dropping one
        // is harmless.
        let _ = self.events.try_send(event);
    }

    fn inspect(&self, packet: &dyn rtc::rtcp::Packet) {
        let any = packet.as_any();
        if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
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
            self.emit(PeerFeedback::Estimate {
                bps: remb.bitrate as u64,
            });
        }
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
        for attribute in &msg.message.attributes {
            if let Attribute::TargetBitrateChanged { bits_per_second } = attribute
                && bits_per_second.is_finite()
                && *bits_per_second >= 0.0
            {
                self.emit(PeerFeedback::Estimate {
                    bps: *bits_per_second as u64,
                });
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
}

impl Interceptor for FeedbackTap {
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
        let tap = FeedbackTap::new(tx);
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
}
