//! One subscription: a subscriber's own local track and the task that drains its own queue,
//! decides per packet with the plain [`Forwarder`], rewrites SSRC, payload type, sequence,
//! timestamp and header extensions to the subscriber's negotiation, checks the result against
//! that negotiation (the webrtc crate would refuse a mismatch) and writes it. While the node
//! sheds load (`forward::shedding`), it aims no higher than the level allows, and a queue
//! whose head waited longer than [`STALE`] is dropped and its video restarted from a keyframe.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp::Packet;
use rtc::rtp::header::Header;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use super::publication::{ForwardItem, Publication, Sink};
use crate::forward::forwarder::Negotiation;
use crate::forward::layers::{Layer, Quality};
use crate::forward::shedding::layer_cap;
use crate::forward::{Decision, DropReason, Forwarder, InboundPacket};
use crate::node::NodeStats;
use crate::room::model::TrackKind;

/// Packets a subscription may have queued before new ones are dropped (slow subscriber).
pub const QUEUE_DEPTH: usize = 512;
/// While the node sheds load, a packet that waited this long in its subscription's queue is
/// stale: the frame it belongs to would reach the subscriber too late to be shown, and the
/// packets queued behind it later still.
pub const STALE: Duration = Duration::from_millis(250);
/// How often the subscription refreshes the publisher's layer statistics.
const LAYER_REFRESH: Duration = Duration::from_millis(250);

/// Header extensions never copied from the publisher: they name the publisher's media section
/// and simulcast stream, not the subscriber's; and the publisher's transport-wide sequence
/// numbers, which would have the subscriber report on a numbering the node does not keep
/// (without them, the subscriber estimates its downlink itself and sends REMB, which picks its
/// layer).
const PUBLISHER_ONLY_EXTENSIONS: [&str; 4] = [
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
];

/// What the subscription's task is told.
#[derive(Debug)]
pub enum SubscriptionControl {
    /// The subscriber's negotiation of this track's sender, and its `mid` extension (id, value).
    Negotiated(Negotiation, Option<(u8, Bytes)>),
    /// Quality the subscriber asked for.
    Quality(Quality),
    /// This subscription's share of the subscriber's bandwidth estimate.
    Estimate(u64),
    /// The subscriber asked for a keyframe.
    KeyframeRequest,
    /// Pause forwarding (the subscriber is not shown this video: last-N), or resume it.
    Paused(bool),
}

/// Extensions the forwarder may pass on: the publisher's minus those naming its own streams.
pub fn forwardable_extensions(publisher: &[(u8, String)]) -> Vec<(u8, String)> {
    publisher
        .iter()
        .filter(|(_, uri)| !PUBLISHER_ONLY_EXTENSIONS.contains(&uri.as_str()))
        .cloned()
        .collect()
}

/// Builds the outgoing packet for a forwarding decision.
pub fn outgoing_packet(
    item: &ForwardItem,
    out: &crate::forward::Outbound,
    forwarder: &Forwarder,
    mid: Option<&(u8, Bytes)>,
) -> Packet {
    let source = &item.packet.header;
    let mut header = Header {
        version: 2,
        padding: false,
        marker: source.marker,
        payload_type: out.payload_type,
        sequence_number: out.seq,
        timestamp: out.timestamp,
        ssrc: out.ssrc,
        ..Default::default()
    };
    for ext in &source.extensions {
        if let Some(id) = forwarder.map_extension(ext.id) {
            // An id that does not fit the profile chosen by the first extension is dropped.
            let _ = header.set_extension(id, ext.payload.clone());
        }
    }
    if let Some((id, value)) = mid {
        let _ = header.set_extension(*id, value.clone());
    }
    Packet {
        header,
        payload: item.packet.payload.clone(),
    }
}

/// The state of one running subscription.
struct Subscription {
    publication: Arc<Publication>,
    sink: Arc<Sink>,
    local: Arc<TrackLocalStaticRTP>,
    forwarder: Forwarder,
    negotiation: Option<Negotiation>,
    mid: Option<(u8, Bytes)>,
    stats: Arc<NodeStats>,
    /// The quality the subscriber asked for, and the best the node's shedding allows.
    requested: Quality,
    shed_cap: Quality,
}

impl Subscription {
    /// Aims at the requested quality, or lower while the node sheds layers.
    fn apply_quality(&mut self, now: Instant) {
        self.forwarder
            .set_requested(self.requested.min(self.shed_cap), now);
    }

    fn publish_wanted(&self) {
        self.sink
            .wanted
            .store(wanted(&self.forwarder), Ordering::Relaxed);
        self.sink
            .demand
            .store(self.forwarder.demand(), Ordering::Relaxed);
    }

    /// Logs a change of the layer aimed at, with what the selector knew.
    fn retargeted(&self, before: (Option<Layer>, bool), cause: &str, estimate: Option<u64>) {
        let after = self.forwarder.target_layer();
        if after != before {
            let stats = self.publication.layer_stats();
            tracing::debug!(
                track = %self.publication.info.id,
                subscriber = %self.sink.subscriber,
                from = ?before.0,
                to = ?after.0,
                probe = after.1,
                cause,
                estimate,
                layer_bps = ?stats.bitrate_bps,
                active = ?stats.active,
                "layer target"
            );
        }
    }

    async fn control(&mut self, command: SubscriptionControl) {
        let now = Instant::now();
        let before = self.forwarder.target_layer();
        if let SubscriptionControl::Estimate(bps) = command {
            self.forwarder.set_estimate(bps, now);
            self.retargeted(before, "estimate", Some(bps));
            self.publish_wanted();
            return;
        }
        match command {
            SubscriptionControl::Negotiated(n, m) => {
                self.forwarder.negotiated(&n);
                self.negotiation = Some(n);
                self.mid = m;
            }
            SubscriptionControl::Quality(q) => {
                self.requested = q;
                self.apply_quality(now);
            }
            SubscriptionControl::Estimate(_) => {}
            SubscriptionControl::Paused(paused) => {
                self.forwarder.set_paused(paused, now);
                if let Some(layer) = self.forwarder.keyframe_request(now) {
                    self.publication.request_keyframe(layer).await;
                }
            }
            SubscriptionControl::KeyframeRequest => {
                if let Some(layer) = self.forwarder.current_layer() {
                    self.publication.request_keyframe(layer).await;
                }
            }
        }
        self.publish_wanted();
    }

    async fn forward(&mut self, item: &ForwardItem) {
        let now = Instant::now();
        let decision = self.forwarder.on_packet(
            InboundPacket {
                layer: item.layer,
                seq: item.packet.header.sequence_number,
                timestamp: item.packet.header.timestamp,
                payload: &item.packet.payload,
            },
            now,
        );
        match decision {
            Decision::Drop(reason) => self.stats.forward.dropped(reason),
            Decision::Forward(out) => {
                let packet = outgoing_packet(item, &out, &self.forwarder, self.mid.as_ref());
                let admitted = self.negotiation.as_ref().is_some_and(|n| {
                    n.admits(
                        packet.header.ssrc,
                        packet.header.payload_type,
                        packet.header.extensions.iter().map(|e| e.id),
                    )
                });
                if !admitted {
                    self.stats.forward.dropped(DropReason::NegotiationMismatch);
                    return;
                }
                let size = packet.payload.len() + 12;
                match self.local.write_rtp(packet).await {
                    Ok(()) => {
                        self.stats.forward.forwarded(size);
                        self.stats.delay.record(item.received_at.elapsed());
                    }
                    Err(_) => self.stats.forward.dropped(DropReason::WriteFailed),
                }
                if let Some(layer) = out.switched_to {
                    tracing::debug!(track = %self.publication.info.id, subscriber = %self.sink.subscriber, layer, "layer switched");
                    self.publish_wanted();
                }
            }
        }
        if let Some(layer) = self.forwarder.keyframe_request(now) {
            self.publication.request_keyframe(layer).await;
        }
    }

    /// The queue's head is stale while the node sheds: drops it and everything queued behind
    /// it (counted as dropped on a full queue: the queue held more than the node can send in
    /// time), and has a video start again from a fresh keyframe, so that what the subscriber
    /// gets next is whole frames rather than the tails of frames it can no longer show.
    async fn resync(&mut self, queue: &mut mpsc::Receiver<Arc<ForwardItem>>) {
        self.stats.forward.dropped(DropReason::QueueFull);
        while queue.try_recv().is_ok() {
            self.stats.forward.dropped(DropReason::QueueFull);
        }
        if self.publication.info.kind != TrackKind::Video {
            return;
        }
        let now = Instant::now();
        self.forwarder.restart(now);
        if let Some(layer) = self.forwarder.keyframe_request(now) {
            self.publication.request_keyframe(layer).await;
        }
    }

    async fn refresh(&mut self) {
        let now = Instant::now();
        let before = self.forwarder.target_layer();
        let cap = layer_cap(self.stats.shedding_level());
        if cap != self.shed_cap {
            self.shed_cap = cap;
            self.apply_quality(now);
            self.retargeted(before, "overload shedding", None);
        }
        let before = self.forwarder.target_layer();
        self.forwarder
            .set_layer_stats(self.publication.layer_stats(), now);
        self.retargeted(before, "layer stats", None);
        self.publish_wanted();
        if let Some(layer) = self.forwarder.keyframe_request(now) {
            self.publication.request_keyframe(layer).await;
        }
    }
}

/// Runs one subscription, whose forwarder aims at `requested`, until its control channel
/// closes (unsubscribed, or the subscriber's peer task ended).
#[allow(
    clippy::too_many_arguments,
    reason = "the parts of one subscription, built by its peer"
)]
pub async fn run_subscription(
    publication: Arc<Publication>,
    sink: Arc<Sink>,
    local: Arc<TrackLocalStaticRTP>,
    forwarder: Forwarder,
    requested: Quality,
    mut queue: mpsc::Receiver<Arc<ForwardItem>>,
    mut control: mpsc::Receiver<SubscriptionControl>,
    stats: Arc<NodeStats>,
) {
    let mut sub = Subscription {
        publication,
        sink,
        local,
        forwarder,
        negotiation: None,
        mid: None,
        stats,
        requested,
        shed_cap: Quality::High,
    };
    let rtcp = tokio::spawn(discard_rtcp(Arc::clone(&sub.local)));
    let mut refresh = tokio::time::interval(LAYER_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            command = control.recv() => match command {
                Some(command) => sub.control(command).await,
                None => break,
            },
            item = queue.recv() => {
                let Some(item) = item else { break };
                if sub.stats.shedding_level() > 0 && item.received_at.elapsed() > STALE {
                    sub.resync(&mut queue).await;
                    continue;
                }
                // One packet at a time: draining a burst back to back was measured to delay
                // the other subscriptions without saving CPU (benches/README.md).
                sub.forward(&item).await;
            }
            _ = refresh.tick() => sub.refresh().await,
        }
    }
    rtcp.abort();
}

/// Reads and drops the subscriber's RTCP about `local`, which the peer connection queues for
/// the track as well as handing it to the feedback tap (which acts on it): unread, the queue
/// fills and every further packet is logged as an error. Until the track is bound it has no
/// queue; it is looked at again a little later.
async fn discard_rtcp(local: Arc<TrackLocalStaticRTP>) {
    loop {
        if local.poll().await.is_none() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The mask of layers to queue: none while paused, else what the forwarder wants, or every
/// layer before it chose.
fn wanted(forwarder: &Forwarder) -> u8 {
    match forwarder.wanted_layers() {
        _ if forwarder.paused() => 0,
        0 => 0b111,
        m => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_stream_names_and_transport_numbers_are_not_forwarded() {
        let publisher = vec![
            (1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level".to_owned()),
            (3, "urn:ietf:params:rtp-hdrext:sdes:mid".to_owned()),
            (
                10,
                "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id".to_owned(),
            ),
            (5, rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned()),
        ];
        let kept = forwardable_extensions(&publisher);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].0, 1);
    }
}
