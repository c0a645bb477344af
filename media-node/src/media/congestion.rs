//! The send-side estimate of one peer connection's downlink, plugged into rtc's congestion
//! control interceptor: rtc groups the acknowledged packets into bursts and measures the rate
//! that arrived; the node's [`Trendline`] reads from the bursts whether the queue grows, and
//! its [`DownlinkCeiling`] turns that and the loss into the ceiling the layer selectors work
//! to. The interceptor hands a changed ceiling on as `TargetBitrateChanged`, which the feedback
//! tap reports to the peer task.

use std::time::Instant;

use rtc::interceptor::{
    ArrivalGroupAccumulator, Attribute, BandwidthEstimator, PacketReport, RateCalculator,
    TaggedPacket,
};

use crate::forward::downlink::{DownlinkCeiling, Feedback};
use crate::forward::trendline::Trendline;

/// What the estimate says while the path has shown no congestion: no limit. The interceptor
/// reports only changes, so nothing is reported until the first ceiling.
pub const NO_CEILING_BPS: f64 = 1e10;

/// The estimates the congestion control interceptor attached to `msg`: on the read leg, to
/// the feedback that changed the estimate (rates only).
pub fn announced_estimates(msg: &TaggedPacket) -> impl Iterator<Item = f64> + '_ {
    msg.message.attributes.iter().filter_map(|a| match a {
        Attribute::TargetBitrateChanged { bits_per_second }
            if bits_per_second.is_finite() && *bits_per_second >= 0.0 =>
        {
            Some(*bits_per_second)
        }
        _ => None,
    })
}

/// The ceiling an announced estimate stands for: none while it says [`NO_CEILING_BPS`].
pub fn ceiling_of(estimate_bps: f64) -> Option<f64> {
    (estimate_bps < NO_CEILING_BPS).then_some(estimate_bps)
}

/// The estimator; one per peer connection.
#[derive(Default)]
pub struct DownlinkEstimator {
    groups: ArrivalGroupAccumulator,
    trend: Trendline,
    received: RateCalculator,
    ceiling: DownlinkCeiling,
}

impl DownlinkEstimator {
    /// An estimator that has seen no feedback.
    pub fn new() -> Self {
        Self::default()
    }
}

impl BandwidthEstimator for DownlinkEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        if reports.is_empty() {
            return;
        }
        let mut queue = self.trend.queue();
        let mut lost = 0;
        for report in reports {
            if report.arrived {
                self.received.add(now, report.size);
            } else {
                lost += 1;
            }
            if let Some(group) = self.groups.accumulate(report) {
                queue = self.trend.update(group.at, group.delta_ms);
            }
        }
        self.ceiling.update(
            now,
            Feedback {
                queue,
                received_bps: self.received.rate_bits_per_second(now),
                lost,
                reported: reports.len(),
            },
        );
    }

    fn target_bitrate(&self) -> f64 {
        self.ceiling.ceiling_bps().unwrap_or(NO_CEILING_BPS)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

    use super::*;

    /// Sends `bps` of 30 fps video and 50 audio packets a second through a FIFO bottleneck of `link_bps` and feeds the
    /// estimator feedback every 100 ms for 3 s; returns when, after the start, the first
    /// ceiling came, and the ceiling at the end.
    fn ceiling(bps: f64, link_bps: f64) -> Option<(Duration, f64)> {
        let t0 = Instant::now();
        let mut estimator = DownlinkEstimator::new();
        let frame_bytes = (bps / 8.0 / 30.0) as usize;
        let mut sent: Vec<(Instant, Duration, usize)> = Vec::new();
        let mut link_free = Duration::from_millis(10);
        let mut reported = 0;
        let mut id = 0u64;
        let mut first = None;
        for tick in 0..300u32 {
            let now = t0 + Duration::from_millis(u64::from(tick) * 10);
            // A frame every 30 ms, audio every 20 ms, into one queue.
            let mut packets = Vec::new();
            if tick % 3 == 0 {
                let mut left = frame_bytes;
                while left > 0 {
                    packets.push(left.min(1_200));
                    left -= packets[packets.len() - 1];
                }
            }
            if tick % 2 == 0 {
                packets.push(100);
            }
            for size in packets {
                let start = link_free.max(now - t0 + Duration::from_millis(10));
                link_free = start + Duration::from_secs_f64(size as f64 * 8.0 / link_bps);
                sent.push((now, link_free, size));
            }
            if tick % 10 == 9 {
                let arrived = sent[reported..]
                    .iter()
                    .take_while(|(_, arrival, _)| *arrival <= now - t0)
                    .count();
                let reports: Vec<PacketReport> = sent[reported..reported + arrived]
                    .iter()
                    .map(|(departure, arrival, size)| {
                        id += 1;
                        PacketReport {
                            ssrc: 1,
                            id,
                            rtp_sequence_number: id as u16,
                            is_twcc: true,
                            twcc_sequence_number: id as u16,
                            size: *size,
                            arrived: true,
                            departure: *departure,
                            arrival: Some(*arrival),
                            ecn: Ecn::NotEct,
                        }
                    })
                    .collect();
                reported += arrived;
                estimator.on_reports(now, &reports);
                if estimator.target_bitrate() < NO_CEILING_BPS {
                    first.get_or_insert(now - t0);
                }
            }
        }
        first.map(|first| (first, estimator.target_bitrate()))
    }

    #[test]
    fn a_bottleneck_is_found_within_a_second() {
        let (after, ceiling) = ceiling(2_000_000.0, 300_000.0).expect("a ceiling");
        assert!(after <= Duration::from_secs(1), "{after:?}");
        assert!((150_000.0..=300_000.0).contains(&ceiling), "{ceiling}");
    }

    #[test]
    fn a_wide_path_sets_no_ceiling() {
        assert_eq!(ceiling(2_000_000.0, 10_000_000.0), None);
    }
}
