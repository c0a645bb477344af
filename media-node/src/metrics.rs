//! `/metrics`: the node's counters in the Prometheus text format, read at scrape time from
//! the lock-free counters the forwarding path updates.

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use std::sync::atomic::Ordering;

use crate::forward::DropReason;
use crate::media::mux::PortDrop;
use crate::media::tcp_port::TcpRefusal;
use crate::node::{NodeState, SignalingCut};

/// Bucket bounds of the forwarding-delay histogram, microseconds.
const DELAY_BOUNDS_US: [u64; 13] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 80_000, 160_000,
];

#[derive(Debug)]
struct NodeCollector(Arc<NodeState>);

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A counter family with one series per value of `label`.
fn counters_by(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'static str, u64)>,
) -> std::fmt::Result {
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, v) in values {
        ConstCounter::new(v).encode(family.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

/// A counter family with one series per `reason` label.
fn counters_by_reason(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (&'static str, u64)>,
) -> std::fmt::Result {
    counters_by(enc, name, help, "reason", values)
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: f64) -> std::fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl prometheus_client::collector::Collector for NodeCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let node = &self.0;
        let s = &node.stats;
        let load = s.load();
        gauge(&mut enc, "rooms", "Open rooms.", f64::from(load.rooms))?;
        gauge(
            &mut enc,
            "participants",
            "Connected participants.",
            f64::from(load.participants),
        )?;
        gauge(
            &mut enc,
            "tracks_in",
            "Published tracks.",
            f64::from(load.tracks_in),
        )?;
        gauge(
            &mut enc,
            "tracks_out",
            "Subscriptions (forwarded tracks).",
            f64::from(load.tracks_out),
        )?;
        gauge(
            &mut enc,
            "cpu_cores",
            "CPU used by the process, cores.",
            load.cpu,
        )?;
        gauge(
            &mut enc,
            "ready",
            "1 when the node takes rooms.",
            if node.is_ready() { 1.0 } else { 0.0 },
        )?;
        gauge(
            &mut enc,
            "draining",
            "1 while draining.",
            if node.is_draining() { 1.0 } else { 0.0 },
        )?;
        counter(
            &mut enc,
            "packets_received",
            "RTP packets received from publishers.",
            s.forward.received_total(),
        )?;
        counter(
            &mut enc,
            "packets_forwarded",
            "RTP packets forwarded to subscribers.",
            s.forward.forwarded_total(),
        )?;
        counter(
            &mut enc,
            "bytes_received",
            "RTP bytes received from publishers (rate() for the ingress bitrate).",
            s.forward.received_bytes_total(),
        )?;
        counter(
            &mut enc,
            "bytes_forwarded",
            "RTP bytes forwarded to subscribers (rate() for the egress bitrate).",
            s.forward.forwarded_bytes_total(),
        )?;
        counter(
            &mut enc,
            "signaling_errors",
            "Client messages refused.",
            s.signaling_errors(),
        )?;
        counter(
            &mut enc,
            "joins_refused",
            "Joins refused (token, capacity, room full).",
            s.joins_refused(),
        )?;
        gauge(
            &mut enc,
            "signaling_sockets",
            "Signaling WebSockets open, joined or not.",
            f64::from(s.signaling.open_sockets()),
        )?;
        counters_by_reason(
            &mut enc,
            "signaling_cuts",
            "Signaling sockets refused or closed and frames dropped by the endpoint's limits, by reason.",
            SignalingCut::ALL.map(|c| (c.as_str(), s.signaling.cuts(c))),
        )?;
        counters_by_reason(
            &mut enc,
            "packets_dropped",
            "RTP packets not forwarded to a subscriber, by reason.",
            DropReason::ALL.map(|r| (r.as_str(), s.forward.dropped_total(r))),
        )?;
        gauge(
            &mut enc,
            "shedding_level",
            "How much the node sheds because it cannot forward everything in time: 0 nothing, 1 top simulcast layers, 2 middle layers too, 3-6 a growing share of each subscriber's cameras (80, 60, 40, 20 % kept).",
            f64::from(s.shedding_level()),
        )?;
        let (up, down) = s.shedding_steps();
        counters_by(
            &mut enc,
            "shedding_steps",
            "Moves of the shedding level, by direction (up: shedding more).",
            "direction",
            [("up", up), ("down", down)],
        )?;
        let port = node.settings.media.port.counters();
        counter(
            &mut enc,
            "port_datagrams_received",
            "Datagrams read from the media node's UDP port.",
            port.received(),
        )?;
        counter(
            &mut enc,
            "port_probes_answered",
            "STUN binding requests naming no peer connection (reachability probes) answered.",
            port.probes_answered(),
        )?;
        counter(
            &mut enc,
            "port_checks_withheld",
            "ICE checks not sent, to addresses that never reached the node.",
            port.checks_withheld(),
        )?;
        counter(
            &mut enc,
            "port_send_failures",
            "Datagrams lost because the UDP port's socket refused their send.",
            port.sends_failed(),
        )?;
        counters_by_reason(
            &mut enc,
            "port_datagrams_dropped",
            "Datagrams the UDP port dropped before any peer connection saw them, by reason.",
            PortDrop::ALL.map(|r| (r.as_str(), port.dropped(r))),
        )?;
        if let Some(tcp) = &node.settings.media.tcp_port {
            let tcp = tcp.counters();
            counter(
                &mut enc,
                "tcp_connections_handed_over",
                "ICE-TCP connections the media TCP port handed to the peer connection their first check named.",
                tcp.handed_over(),
            )?;
            counter(
                &mut enc,
                "tcp_probes_answered",
                "Binding requests naming no peer connection (the operator's reachability probe) answered on the media TCP port.",
                tcp.probes_answered(),
            )?;
            counters_by_reason(
                &mut enc,
                "tcp_connections_refused",
                "Connections the media TCP port closed before any peer connection had them, by reason.",
                TcpRefusal::ALL.map(|r| (r.as_str(), tcp.refused(r))),
            )?;
            counter(
                &mut enc,
                "tcp_frames_dropped",
                "Packets not sent on an ICE-TCP connection because its send buffer was full.",
                tcp.frames_dropped(),
            )?;
        }
        let (repair, retransmits) = (
            &node.settings.media.repair,
            &node.settings.media.retransmits,
        );
        for (name, help, value) in [
            (
                "repair_packets_requested",
                "Packets asked of publishers again (NACK), one per sequence number asked.",
                &repair.requested,
            ),
            (
                "repair_packets_repaired",
                "Packets that arrived from publishers after being asked for again.",
                &repair.repaired,
            ),
            (
                "repair_packets_given_up",
                "Packets from publishers given up on (asked too often, or a gap too wide).",
                &repair.given_up,
            ),
            (
                "repair_duplicates_dropped",
                "Copies of packets already received from publishers, dropped.",
                &repair.duplicates,
            ),
            (
                "repair_keyframes_requested",
                "Keyframes asked of publishers because repair failed.",
                &repair.keyframes,
            ),
            (
                "retransmissions_sent",
                "Retransmissions sent to subscribers answering their NACKs.",
                &retransmits.sent,
            ),
            (
                "retransmissions_delayed",
                "Of those, retransmissions held back to half the subscriber's downlink ceiling.",
                &retransmits.delayed,
            ),
            (
                "retransmissions_dropped",
                "Retransmissions to subscribers dropped: held too long, or too many held.",
                &retransmits.dropped,
            ),
            (
                "retransmissions_unanswered",
                "Packets subscribers asked for again (NACK) that were not answered because the node was shedding load.",
                &retransmits.unanswered,
            ),
            (
                "retransmissions_repeated",
                "Retransmissions to subscribers not held twice: asked for again while held.",
                &retransmits.repeated,
            ),
        ] {
            counter(&mut enc, name, help, value.load(Ordering::Relaxed))?;
        }
        let estimates = &node.settings.media.estimates;
        counters_by(
            &mut enc,
            "downlink_estimates",
            "Subscribers' downlink estimates taken, by source: the node's own from transport-wide feedback, or REMB from a peer sending none (REMB from a peer that does is ignored).",
            "source",
            [
                ("transport_wide", &estimates.transport_wide),
                ("remb", &estimates.remb),
                ("remb_ignored", &estimates.remb_ignored),
            ]
            .map(|(source, value)| (source, value.load(Ordering::Relaxed))),
        )?;
        // prometheus-client sums the buckets it is given: hand it each bucket's own count.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = s
            .delay
            .cumulative(&DELAY_BOUNDS_US)
            .into_iter()
            .map(|(bound, at_most)| {
                let own = at_most - below;
                below = at_most;
                (bound, own)
            })
            .collect();
        enc.encode_descriptor(
            "forward_delay_seconds",
            "Forwarding delay inside the node (ingress to egress).",
            None,
            MetricType::Histogram,
        )?
        // The +Inf bucket, not the separate count, so that count and buckets agree.
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            s.delay.sum().as_secs_f64(),
            below,
            &buckets,
            None,
        )?;
        let mut family = enc.encode_descriptor(
            "forward_delay_quantile_seconds",
            "Forwarding delay inside the node, p50 and p99 since start at 10 µs resolution (for benchmarks).",
            None,
            MetricType::Gauge,
        )?;
        for (q, label) in [(0.5, "0.5"), (0.99, "0.99")] {
            let labels = [("quantile", label)];
            ConstGauge::new(s.delay.quantile(q).as_secs_f64())
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The metrics page of `node`.
pub fn render(node: &Arc<NodeState>) -> String {
    let mut registry = Registry::with_prefix("conclave_media_node");
    registry.register_collector(Box::new(NodeCollector(Arc::clone(node))));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::NodeSettings;
    use crate::media::{MediaSettings, UdpMux};

    #[tokio::test]
    async fn the_delay_histogram_counts_each_delay_once() {
        let node = NodeState::new(NodeSettings {
            name: "n".into(),
            join_key: Vec::new(),
            turn_secret: Vec::new(),
            media: MediaSettings::on(
                [127, 0, 0, 1].into(),
                UdpMux::bind(([127, 0, 0, 1], 0).into()).expect("port"),
            ),
            peer_disconnect: Duration::from_secs(1),
            chat_max_bytes: 1,
        });
        for ms in [5, 5, 30] {
            node.stats.delay.record(Duration::from_millis(ms));
        }
        let text = render(&node);
        for series in [
            r#"conclave_media_node_forward_delay_seconds_bucket{le="0.0025"} 0"#,
            r#"conclave_media_node_forward_delay_seconds_bucket{le="0.01"} 2"#,
            r#"conclave_media_node_forward_delay_seconds_bucket{le="0.02"} 2"#,
            r#"conclave_media_node_forward_delay_seconds_bucket{le="0.04"} 3"#,
            r#"conclave_media_node_forward_delay_seconds_bucket{le="+Inf"} 3"#,
            "conclave_media_node_forward_delay_seconds_count 3",
        ] {
            assert!(text.contains(series), "{series} missing from {text}");
        }
    }
}
