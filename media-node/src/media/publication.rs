//! A published track: the reader task that takes RTP from the publisher's remote track and
//! fans it out to each subscription's own queue (never waiting on one), the per-layer bitrate
//! meter, audio levels for speaker detection, and rate-limited keyframe requests upstream.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use crate::forward::DropReason;
use crate::forward::layers::{Layer, LayerStats, MAX_LAYERS, layer_for_rid};
use crate::node::NodeStats;
use crate::room::model::{ParticipantId, TrackInfo};
use crate::room::speaker::IntervalLevels;

/// RFC 6464 client-to-mixer audio level extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Keyframe requests to the publisher are at least this far apart per layer.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);
/// A layer without packets for this long counts as stopped.
const LAYER_IDLE: Duration = Duration::from_millis(1500);
/// How often layer bitrates are recomputed.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// One packet on its way to a subscriber.
#[derive(Debug)]
pub struct ForwardItem {
    /// The packet as received.
    pub packet: rtc::rtp::Packet,
    /// Its simulcast layer.
    pub layer: Layer,
    /// When the node received it (start of the forwarding delay).
    pub received_at: Instant,
}

/// A subscription's inbox at the publication.
#[derive(Debug)]
pub struct Sink {
    /// Who subscribes.
    pub subscriber: ParticipantId,
    /// Bounded queue to the subscription's task.
    pub queue: mpsc::Sender<Arc<ForwardItem>>,
    /// Bit mask of layers the subscription wants now (none: paused).
    pub wanted: AtomicU8,
    /// Bit mask of layers the publisher must send for this subscription (dynacast): none
    /// while paused, else every layer up to the quality asked for.
    pub demand: AtomicU8,
}

/// The codec and extensions of a publisher's stream.
#[derive(Clone, Debug, Default)]
pub struct StreamFormat {
    /// Mime type, such as `video/VP8`.
    pub mime_type: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channels (audio).
    pub channels: u16,
    /// fmtp line.
    pub fmtp: String,
    /// Header extensions negotiated with the publisher: (id, uri).
    pub extensions: Vec<(u8, String)>,
    /// The publisher sends several simulcast layers.
    pub layered: bool,
}

#[derive(Debug, Default)]
struct LayerMeter {
    bytes: [u64; MAX_LAYERS],
    last_packet: [Option<Instant>; MAX_LAYERS],
    window_start: Option<Instant>,
    stats: LayerStats,
}

/// A published track shared by the reader and its subscriptions.
pub struct Publication {
    /// What subscribers see of it.
    pub info: TrackInfo,
    /// Its codec and extensions.
    pub format: StreamFormat,
    track: Arc<dyn TrackRemote>,
    sinks: Mutex<Arc<[Arc<Sink>]>>,
    meter: Mutex<LayerMeter>,
    levels: Mutex<IntervalLevels>,
    layer_ssrc: [AtomicU32; MAX_LAYERS],
    last_keyframe_request_ms: [AtomicU64; MAX_LAYERS],
    muted: AtomicBool,
    epoch: Instant,
}

impl std::fmt::Debug for Publication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publication")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Publication {
    /// A publication of `track`, not yet read.
    pub fn new(info: TrackInfo, format: StreamFormat, track: Arc<dyn TrackRemote>) -> Arc<Self> {
        Arc::new(Self {
            info,
            format,
            track,
            sinks: Mutex::new(Arc::from(Vec::new())),
            meter: Mutex::new(LayerMeter::default()),
            levels: Mutex::new(IntervalLevels::default()),
            layer_ssrc: Default::default(),
            last_keyframe_request_ms: Default::default(),
            muted: AtomicBool::new(false),
            epoch: Instant::now(),
        })
    }

    /// Adds a subscription's inbox.
    pub fn add_sink(&self, sink: Arc<Sink>) {
        let mut sinks = lock(&self.sinks);
        let mut list: Vec<Arc<Sink>> = sinks.iter().cloned().collect();
        list.retain(|s| s.subscriber != sink.subscriber);
        list.push(sink);
        *sinks = Arc::from(list);
    }

    /// Removes the inbox of `subscriber`.
    pub fn remove_sink(&self, subscriber: ParticipantId) {
        let mut sinks = lock(&self.sinks);
        let list: Vec<Arc<Sink>> = sinks
            .iter()
            .filter(|s| s.subscriber != subscriber)
            .cloned()
            .collect();
        *sinks = Arc::from(list);
    }

    /// The layers some subscription needs: what the publisher must send.
    pub fn demand(&self) -> u8 {
        lock(&self.sinks)
            .iter()
            .fold(0, |mask, s| mask | s.demand.load(Ordering::Relaxed))
    }

    /// Subscriptions attached.
    pub fn sink_count(&self) -> usize {
        lock(&self.sinks).len()
    }

    /// Mutes or unmutes (publisher's mute state): muted packets are not forwarded.
    pub fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Current per-layer bitrates and activity.
    pub fn layer_stats(&self) -> LayerStats {
        lock(&self.meter).stats
    }

    /// Takes the audio levels gathered since the last call.
    pub fn take_levels(&self) -> IntervalLevels {
        std::mem::take(&mut *lock(&self.levels))
    }

    /// Asks the publisher for a keyframe of `layer`, at most once per interval.
    pub async fn request_keyframe(&self, layer: Layer) {
        let i = usize::from(layer).min(MAX_LAYERS - 1);
        let now_ms = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_keyframe_request_ms[i].load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < KEYFRAME_REQUEST_INTERVAL.as_millis() as u64 {
            return;
        }
        self.last_keyframe_request_ms[i].store(now_ms, Ordering::Relaxed);
        let mut media_ssrc = self.layer_ssrc[i].load(Ordering::Relaxed);
        if media_ssrc == 0 {
            media_ssrc = self.layer_ssrc[0].load(Ordering::Relaxed);
        }
        if media_ssrc == 0 {
            return;
        }
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if let Err(e) = self.track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!(track = %self.info.id, error = %e, "keyframe request not sent");
        }
    }

    fn meter_packet(&self, layer: Layer, bytes: usize, now: Instant) {
        let mut m = lock(&self.meter);
        let i = usize::from(layer);
        m.bytes[i] += bytes as u64;
        m.last_packet[i] = Some(now);
        let start = *m.window_start.get_or_insert(now);
        let elapsed = now.duration_since(start);
        if elapsed >= RATE_WINDOW {
            let secs = elapsed.as_secs_f64();
            for l in 0..MAX_LAYERS {
                m.stats.bitrate_bps[l] = (m.bytes[l] as f64 * 8.0 / secs) as u64;
                m.stats.active[l] =
                    m.last_packet[l].is_some_and(|t| now.duration_since(t) < LAYER_IDLE);
                m.bytes[l] = 0;
            }
            m.window_start = Some(now);
        } else if !m.stats.active[i] {
            m.stats.active[i] = true;
        }
    }
}

/// Hands one packet to every subscription that wants its layer, never waiting: a full queue
/// (a slow subscriber) loses the packet, counted, and the others still get it.
pub fn fan_out(sinks: &[Arc<Sink>], item: &Arc<ForwardItem>, stats: &NodeStats) {
    let bit = 1u8 << item.layer;
    for sink in sinks {
        let wanted = sink.wanted.load(Ordering::Relaxed);
        if wanted & bit == 0 {
            stats.forward.dropped(if wanted == 0 {
                DropReason::Paused
            } else {
                DropReason::OtherLayer
            });
            continue;
        }
        if sink.queue.try_send(Arc::clone(item)).is_err() {
            stats.forward.dropped(DropReason::QueueFull);
        }
    }
}

/// Counts a publication as layered in the node's stats (the shedding governor's levels 1 and
/// 2 have something to take off) from its first layer above the lowest until its reader ends.
struct LayeredMark {
    stats: Arc<NodeStats>,
    marked: bool,
}

impl LayeredMark {
    fn saw(&mut self, layer: Layer) {
        if layer > 0 && !self.marked {
            self.marked = true;
            self.stats.layered_publication_started();
        }
    }
}

impl Drop for LayeredMark {
    fn drop(&mut self) {
        if self.marked {
            self.stats.layered_publication_ended();
        }
    }
}

/// Reads the publisher's track until it ends, fanning packets out to the subscriptions.
/// `discard` reads and counts without forwarding (media refused by the conference).
pub async fn run_reader(publication: Arc<Publication>, stats: Arc<NodeStats>, discard: bool) {
    let track = Arc::clone(&publication.track);
    let mut layers: HashMap<u32, Layer> = HashMap::new();
    let mut layered = LayeredMark {
        stats: Arc::clone(&stats),
        marked: false,
    };
    let audio_level_id = publication
        .format
        .extensions
        .iter()
        .find(|(_, uri)| uri == AUDIO_LEVEL_URI)
        .map(|(id, _)| *id);
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnOpen(init) => {
                let layer = match init.rid.as_deref() {
                    Some(rid) if !rid.is_empty() => layer_for_rid(rid, layers.len()),
                    _ => 0,
                };
                layers.insert(init.ssrc, layer);
                layered.saw(layer);
                publication.layer_ssrc[usize::from(layer)].store(init.ssrc, Ordering::Relaxed);
            }
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let now = Instant::now();
                let size = packet.payload.len() + 12;
                stats.forward.received(size);
                if discard || publication.muted.load(Ordering::Relaxed) {
                    stats.forward.dropped(DropReason::Muted);
                    continue;
                }
                let ssrc = packet.header.ssrc;
                let layer = match layers.get(&ssrc) {
                    Some(l) => *l,
                    None => {
                        // No OnOpen seen for this stream (the driver drops one when the
                        // track's queue is full): its rid is in the track's codings, which
                        // the driver fills before it sends OnOpen. None: a single layer, 0.
                        let rid = track.codings().await.into_iter().find_map(|c| {
                            let c = c.rtp_coding_parameters;
                            (c.ssrc == Some(ssrc) && !c.rid.is_empty()).then_some(c.rid)
                        });
                        let l = rid.map_or(0, |rid| layer_for_rid(&rid, layers.len()));
                        layers.insert(ssrc, l);
                        layered.saw(l);
                        publication.layer_ssrc[usize::from(l)].store(ssrc, Ordering::Relaxed);
                        l
                    }
                };
                publication.meter_packet(layer, size, now);
                if let Some(id) = audio_level_id
                    && let Some(level) = packet
                        .header
                        .get_extension(id)
                        .and_then(|b| b.first().copied())
                {
                    lock(&publication.levels).add(level);
                }
                let sinks = Arc::clone(&lock(&publication.sinks));
                if sinks.is_empty() {
                    continue;
                }
                let item = Arc::new(ForwardItem {
                    packet,
                    layer,
                    received_at: now,
                });
                fan_out(&sinks, &item, &stats);
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    tracing::debug!(track = %publication.info.id, "publication ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(id: u64, depth: usize, wanted: u8) -> (Arc<Sink>, mpsc::Receiver<Arc<ForwardItem>>) {
        let (queue, rx) = mpsc::channel(depth);
        let sink = Arc::new(Sink {
            subscriber: ParticipantId(id),
            queue,
            wanted: AtomicU8::new(wanted),
            demand: AtomicU8::new(wanted),
        });
        (sink, rx)
    }

    fn item(layer: Layer) -> Arc<ForwardItem> {
        Arc::new(ForwardItem {
            packet: rtc::rtp::Packet::default(),
            layer,
            received_at: Instant::now(),
        })
    }

    #[test]
    fn a_slow_subscriber_loses_packets_and_stalls_nobody() {
        let stats = NodeStats::default();
        let (slow, _never_read) = sink(1, 2, 0b111);
        let (fast, mut fast_rx) = sink(2, 100, 0b111);
        let sinks = [slow, fast];
        for _ in 0..10 {
            fan_out(&sinks, &item(0), &stats);
        }
        let mut got = 0;
        while fast_rx.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 10, "the fast subscriber got every packet");
        assert_eq!(stats.forward.dropped_total(DropReason::QueueFull), 8);
    }

    #[test]
    fn layers_a_subscription_does_not_want_are_not_queued() {
        let stats = NodeStats::default();
        let (low_only, mut rx) = sink(1, 10, 0b001);
        fan_out(&[Arc::clone(&low_only)], &item(2), &stats);
        fan_out(&[low_only], &item(0), &stats);
        assert_eq!(rx.try_recv().map(|i| i.layer).ok(), Some(0));
        assert!(rx.try_recv().is_err());
        assert_eq!(stats.forward.dropped_total(DropReason::OtherLayer), 1);
    }
}
