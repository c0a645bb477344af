//! Counters of packets forwarded and dropped, by reason. Lock-free so the hot path of every
//! subscription and the metrics endpoint can share them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a packet was not forwarded to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The packet belongs to a simulcast layer the subscriber does not currently receive.
    OtherLayer,
    /// Waiting for a keyframe on the target layer before the first packet can go out.
    AwaitingKeyframe,
    /// Older than the last layer switch: forwarding it would break the rewritten sequence.
    BeforeSwitch,
    /// The subscriber's queue was full (slow subscriber), or held packets too old to show
    /// while the node shed load; dropped rather than stalling others.
    QueueFull,
    /// The rewritten packet would not match the subscriber's negotiation (SSRC, payload type or
    /// header extension id), which the webrtc crate would refuse; caught and counted here.
    NegotiationMismatch,
    /// The subscriber's sender is not negotiated yet.
    NotNegotiated,
    /// The publisher's codec has no counterpart in the subscriber's negotiation.
    CodecUnsupported,
    /// The track is muted or switched off by the conference's media options.
    Muted,
    /// Writing to the peer connection failed (it is closing).
    WriteFailed,
    /// The subscriber is not shown this video now (last-N): paused until it is.
    Paused,
}

impl DropReason {
    /// Every reason, in a stable order (metrics label values).
    pub const ALL: [DropReason; 10] = [
        DropReason::OtherLayer,
        DropReason::AwaitingKeyframe,
        DropReason::BeforeSwitch,
        DropReason::QueueFull,
        DropReason::NegotiationMismatch,
        DropReason::NotNegotiated,
        DropReason::CodecUnsupported,
        DropReason::Muted,
        DropReason::WriteFailed,
        DropReason::Paused,
    ];

    /// The label value used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OtherLayer => "other_layer",
            DropReason::AwaitingKeyframe => "awaiting_keyframe",
            DropReason::BeforeSwitch => "before_switch",
            DropReason::QueueFull => "queue_full",
            DropReason::NegotiationMismatch => "negotiation_mismatch",
            DropReason::NotNegotiated => "not_negotiated",
            DropReason::CodecUnsupported => "codec_unsupported",
            DropReason::Muted => "muted",
            DropReason::WriteFailed => "write_failed",
            DropReason::Paused => "paused",
        }
    }

    fn index(self) -> usize {
        // ALL lists every variant once, so the position always exists.
        DropReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// Forwarded and dropped packet counts, shared between forwarding tasks and readers.
#[derive(Debug, Default)]
pub struct ForwardCounters {
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl ForwardCounters {
    /// Counts one packet of `bytes` sent to a subscriber.
    pub fn forwarded(&self, bytes: usize) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        self.forwarded_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one packet of `bytes` received from a publisher.
    pub fn received(&self, bytes: usize) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.received_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one packet dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Packets forwarded so far.
    pub fn forwarded_total(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far.
    pub fn forwarded_bytes_total(&self) -> u64 {
        self.forwarded_bytes.load(Ordering::Relaxed)
    }

    /// Packets received so far.
    pub fn received_total(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Bytes received so far.
    pub fn received_bytes_total(&self) -> u64 {
        self.received_bytes.load(Ordering::Relaxed)
    }

    /// Packets dropped for `reason` so far.
    pub fn dropped_total(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_reason_apart() {
        let c = ForwardCounters::default();
        c.dropped(DropReason::QueueFull);
        c.dropped(DropReason::QueueFull);
        c.dropped(DropReason::NegotiationMismatch);
        c.forwarded(100);
        assert_eq!(c.dropped_total(DropReason::QueueFull), 2);
        assert_eq!(c.dropped_total(DropReason::NegotiationMismatch), 1);
        assert_eq!(c.dropped_total(DropReason::OtherLayer), 0);
        assert_eq!(c.forwarded_total(), 1);
        assert_eq!(c.forwarded_bytes_total(), 100);
    }

    #[test]
    fn label_values_are_distinct() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
