//! Node-wide counters and gauges: packets forwarded and dropped by reason, forwarding delay,
//! rooms, participants, tracks, signaling errors, bitrates and CPU, shared lock-free by the
//! forwarding tasks, the metrics endpoint and the load reporter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::forward::{DelayHistogram, ForwardCounters};

/// Counters of the whole node.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Packets received, forwarded and dropped.
    pub forward: ForwardCounters,
    /// Ingress-to-egress delay inside the node.
    pub delay: DelayHistogram,
    rooms: AtomicU32,
    participants: AtomicU32,
    tracks_in: AtomicU32,
    tracks_out: AtomicU32,
    layered_publications: AtomicU32,
    signaling_errors: AtomicU64,
    joins_refused: AtomicU64,
    /// What the signaling limits cut off.
    pub signaling: SignalingCounters,
    ingress_bps: AtomicU64,
    egress_bps: AtomicU64,
    cpu_millicores: AtomicU64,
    /// Shared with every peer connection's retransmission pacing (`MediaSettings`).
    shedding_level: Arc<AtomicU8>,
    shedding_steps: [AtomicU64; 2],
}

/// A snapshot for load reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadSnapshot {
    /// Open rooms.
    pub rooms: u32,
    /// Connected participants.
    pub participants: u32,
    /// Published tracks.
    pub tracks_in: u32,
    /// Subscriptions.
    pub tracks_out: u32,
    /// Ingress, Mbit/s.
    pub ingress_mbps: f64,
    /// Egress, Mbit/s.
    pub egress_mbps: f64,
    /// CPU, cores.
    pub cpu: f64,
}

impl NodeStats {
    /// Counters whose shedding level is `shedding_level`, which others read too.
    pub fn sharing_shedding_level(shedding_level: Arc<AtomicU8>) -> Self {
        Self {
            shedding_level,
            ..Self::default()
        }
    }

    /// A room opened.
    pub fn room_opened(&self) {
        self.rooms.fetch_add(1, Ordering::Relaxed);
    }
    /// A room closed.
    pub fn room_closed(&self) {
        dec(&self.rooms);
    }
    /// A participant joined.
    pub fn participant_joined(&self) {
        self.participants.fetch_add(1, Ordering::Relaxed);
    }
    /// A participant left.
    pub fn participant_left(&self) {
        dec(&self.participants);
    }
    /// Participants connected now.
    pub fn participants(&self) -> u32 {
        self.participants.load(Ordering::Relaxed)
    }
    /// Rooms open now.
    pub fn rooms(&self) -> u32 {
        self.rooms.load(Ordering::Relaxed)
    }
    /// A track was published.
    pub fn publication_started(&self) {
        self.tracks_in.fetch_add(1, Ordering::Relaxed);
    }
    /// A track was unpublished.
    pub fn publication_ended(&self) {
        dec(&self.tracks_in);
    }
    /// A publication turned out to send simulcast layers.
    pub fn layered_publication_started(&self) {
        self.layered_publications.fetch_add(1, Ordering::Relaxed);
    }
    /// A publication that sent simulcast layers ended.
    pub fn layered_publication_ended(&self) {
        dec(&self.layered_publications);
    }
    /// Whether some publication sends simulcast layers.
    pub fn any_layered_publication(&self) -> bool {
        self.layered_publications.load(Ordering::Relaxed) > 0
    }
    /// A subscription started.
    pub fn subscription_started(&self) {
        self.tracks_out.fetch_add(1, Ordering::Relaxed);
    }
    /// A subscription ended.
    pub fn subscription_ended(&self) {
        dec(&self.tracks_out);
    }
    /// A client message was refused.
    pub fn signaling_error(&self) {
        self.signaling_errors.fetch_add(1, Ordering::Relaxed);
    }
    /// Signaling errors so far.
    pub fn signaling_errors(&self) -> u64 {
        self.signaling_errors.load(Ordering::Relaxed)
    }
    /// A join was refused.
    pub fn join_refused(&self) {
        self.joins_refused.fetch_add(1, Ordering::Relaxed);
    }
    /// Joins refused so far.
    pub fn joins_refused(&self) -> u64 {
        self.joins_refused.load(Ordering::Relaxed)
    }

    /// How much the node sheds now (`forward::shedding`; 0: nothing).
    pub fn shedding_level(&self) -> u8 {
        self.shedding_level.load(Ordering::Relaxed)
    }
    /// The governor moved to `level`.
    pub fn set_shedding_level(&self, level: u8) {
        let before = self.shedding_level.swap(level, Ordering::Relaxed);
        if level != before {
            self.shedding_steps[usize::from(level < before)].fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Levels the governor moved up (shedding more) and down, so far.
    pub fn shedding_steps(&self) -> (u64, u64) {
        (
            self.shedding_steps[0].load(Ordering::Relaxed),
            self.shedding_steps[1].load(Ordering::Relaxed),
        )
    }

    /// The current load.
    pub fn load(&self) -> LoadSnapshot {
        LoadSnapshot {
            rooms: self.rooms(),
            participants: self.participants(),
            tracks_in: self.tracks_in.load(Ordering::Relaxed),
            tracks_out: self.tracks_out.load(Ordering::Relaxed),
            ingress_mbps: self.ingress_bps.load(Ordering::Relaxed) as f64 / 1e6,
            egress_mbps: self.egress_bps.load(Ordering::Relaxed) as f64 / 1e6,
            cpu: self.cpu_millicores.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// What the signaling endpoint's limits did: open sockets, and what they refused or closed.
#[derive(Debug, Default)]
pub struct SignalingCounters {
    open: AtomicU32,
    refused_node_full: AtomicU64,
    refused_address_full: AtomicU64,
    join_timeouts: AtomicU64,
    rate_limited: AtomicU64,
    rate_disconnects: AtomicU64,
}

/// Why the signaling endpoint refused a socket or cut a client off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalingCut {
    /// Upgrade refused: the node holds its maximum of sockets.
    NodeFull,
    /// Upgrade refused: the source address holds its maximum.
    AddressFull,
    /// Closed: no `join` within the deadline.
    JoinTimeout,
    /// One frame over the rate limit, dropped.
    RateLimited,
    /// Closed: kept sending over the rate limit.
    RateDisconnect,
}

impl SignalingCut {
    /// Every reason, in metric order.
    pub const ALL: [SignalingCut; 5] = [
        SignalingCut::NodeFull,
        SignalingCut::AddressFull,
        SignalingCut::JoinTimeout,
        SignalingCut::RateLimited,
        SignalingCut::RateDisconnect,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalingCut::NodeFull => "node_full",
            SignalingCut::AddressFull => "address_full",
            SignalingCut::JoinTimeout => "join_timeout",
            SignalingCut::RateLimited => "rate_limited",
            SignalingCut::RateDisconnect => "rate_disconnect",
        }
    }
}

impl SignalingCounters {
    fn counter(&self, cut: SignalingCut) -> &AtomicU64 {
        match cut {
            SignalingCut::NodeFull => &self.refused_node_full,
            SignalingCut::AddressFull => &self.refused_address_full,
            SignalingCut::JoinTimeout => &self.join_timeouts,
            SignalingCut::RateLimited => &self.rate_limited,
            SignalingCut::RateDisconnect => &self.rate_disconnects,
        }
    }
    /// Counts one cut.
    pub fn cut(&self, cut: SignalingCut) {
        self.counter(cut).fetch_add(1, Ordering::Relaxed);
    }
    /// Cuts of a kind so far.
    pub fn cuts(&self, cut: SignalingCut) -> u64 {
        self.counter(cut).load(Ordering::Relaxed)
    }
    /// A WebSocket session started.
    pub fn socket_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }
    /// A WebSocket session ended.
    pub fn socket_closed(&self) {
        dec(&self.open);
    }
    /// WebSocket sessions open now, joined or not.
    pub fn open_sockets(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }
}

fn dec(v: &AtomicU32) {
    let _ = v.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(1));
}

/// Turns byte counters and CPU time into rates, once per call of [`RateSampler::sample`].
#[derive(Debug)]
pub struct RateSampler {
    at: Instant,
    received: u64,
    forwarded: u64,
    cpu: Option<Duration>,
}

impl RateSampler {
    /// A sampler starting now.
    pub fn new(stats: &NodeStats) -> Self {
        Self {
            at: Instant::now(),
            received: stats.forward.received_bytes_total(),
            forwarded: stats.forward.forwarded_bytes_total(),
            cpu: process_cpu_time(),
        }
    }

    /// Updates the node's bitrates and CPU from the counters since the last sample.
    pub fn sample(&mut self, stats: &NodeStats) {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let received = stats.forward.received_bytes_total();
        let forwarded = stats.forward.forwarded_bytes_total();
        let rate = |bytes: u64| (bytes as f64 * 8.0 / secs) as u64;
        stats.ingress_bps.store(
            rate(received.saturating_sub(self.received)),
            Ordering::Relaxed,
        );
        stats.egress_bps.store(
            rate(forwarded.saturating_sub(self.forwarded)),
            Ordering::Relaxed,
        );
        let cpu = process_cpu_time();
        if let (Some(before), Some(after)) = (self.cpu, cpu) {
            let cores = after.saturating_sub(before).as_secs_f64() / secs;
            stats
                .cpu_millicores
                .store((cores * 1000.0) as u64, Ordering::Relaxed);
        }
        self.at = now;
        self.received = received;
        self.forwarded = forwarded;
        self.cpu = cpu;
    }
}

/// User plus system CPU time of this process (Linux `/proc/self/stat`), if readable.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_time_from_stat(&stat, 100)
}

/// Parses utime and stime (fields 14 and 15) of a `/proc/<pid>/stat` line.
pub fn cpu_time_from_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / ticks_per_second.max(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let line =
            "1234 (media node) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(
            cpu_time_from_stat(line, 100),
            Some(Duration::from_millis(3000))
        );
        assert_eq!(cpu_time_from_stat("garbage", 100), None);
    }

    #[test]
    fn gauges_never_underflow() {
        let s = NodeStats::default();
        s.participant_left();
        assert_eq!(s.participants(), 0);
        s.participant_joined();
        assert_eq!(s.load().participants, 1);
    }

    #[test]
    fn the_shedding_level_set_here_is_the_one_shared() {
        let shared = Arc::new(AtomicU8::new(0));
        let s = NodeStats::sharing_shedding_level(Arc::clone(&shared));
        s.set_shedding_level(3);
        assert_eq!(shared.load(Ordering::Relaxed), 3);
        assert_eq!(s.shedding_level(), 3);
    }

    #[test]
    fn sampler_turns_bytes_into_bitrates() {
        let s = NodeStats::default();
        let mut sampler = RateSampler::new(&s);
        s.forward.forwarded(125_000);
        std::thread::sleep(Duration::from_millis(20));
        sampler.sample(&s);
        assert!(s.load().egress_mbps > 0.0);
        assert_eq!(s.load().ingress_mbps, 0.0);
    }
}
