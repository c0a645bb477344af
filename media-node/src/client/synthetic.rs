//! Synthetic media for test and benchmark clients: VP8-shaped packets that carry their
//! simulcast layer, frame number and send time, and the receive-side counters that read them
//! back (packets, frames, keyframes, layers seen, sequence continuity, one-way delay).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::forward::DelayHistogram;

const MAGIC: u8 = b'C';
/// Bytes of the synthetic header inside the payload.
pub const HEADER_LEN: usize = 16;

/// Nanoseconds since the Unix epoch (shared clock of publisher and subscriber on one host).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One synthetic video payload: a VP8 descriptor (start of partition on the first packet of a
/// frame), a VP8 header byte marking key or delta frames, then layer, frame and send time.
pub fn video_payload(layer: u8, frame: u32, first: bool, keyframe: bool, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(HEADER_LEN));
    b.put_u8(if first { 0x10 } else { 0x00 });
    b.put_u8(if keyframe { 0x00 } else { 0x01 });
    b.put_u8(MAGIC);
    b.put_u8(layer);
    b.put_u32(frame);
    b.put_u64(now_ns());
    b.resize(size.max(HEADER_LEN), 0xab);
    b.freeze()
}

/// A real VP8 keyframe, 320×180 (a diagonal gradient with a tint, 941 bytes), encoded once
/// from a generated I420 frame with `vpxenc --codec=vp8 -w 320 -h 180 --i420 --ivf --limit=1
/// --end-usage=q --cq-level=40 --min-q=40` (the frame's bytes from the IVF file): every frame
/// of a decodable synthetic camera, so browsers decode it.
const VP8_KEYFRAME: &[u8] = include_bytes!("vp8_keyframe.bin");

/// One frame of a decodable synthetic camera: a VP8 descriptor starting the partition, then
/// [`VP8_KEYFRAME`], in one packet.
pub fn decodable_video_payload() -> Bytes {
    let mut b = BytesMut::with_capacity(1 + VP8_KEYFRAME.len());
    b.put_u8(0x10);
    b.put_slice(VP8_KEYFRAME);
    b.freeze()
}

/// One synthetic audio payload (no VP8 descriptor; layer byte 0).
pub fn audio_payload(frame: u32, size: usize) -> Bytes {
    video_payload(0, frame, true, true, size)
}

/// What a synthetic payload says about itself: (layer, frame, send time ns).
pub fn read_payload(payload: &[u8]) -> Option<(u8, u32, u64)> {
    if payload.len() < HEADER_LEN || payload[2] != MAGIC {
        return None;
    }
    let frame = u32::from_be_bytes(payload[4..8].try_into().ok()?);
    let sent = u64::from_be_bytes(payload[8..16].try_into().ok()?);
    Some((payload[3], frame, sent))
}

/// Counters of one received track.
#[derive(Debug, Default)]
pub struct TrackCounters {
    /// RTP packets.
    pub packets: AtomicU64,
    /// Payload bytes.
    pub bytes: AtomicU64,
    /// Frames completed (marker bit).
    pub frames: AtomicU64,
    /// Packets of each synthetic layer.
    pub layers: [AtomicU64; 3],
    /// Packets whose sequence number did not follow the previous one.
    pub sequence_breaks: AtomicU64,
    /// Packets from an SSRC other than the first one seen.
    pub ssrc_changes: AtomicU64,
    /// One-way delay publisher to subscriber.
    pub delay: DelayHistogram,
    last: Mutex<Option<(u32, u16)>>,
}

impl TrackCounters {
    /// Counts one packet.
    pub fn record(&self, ssrc: u32, seq: u16, marker: bool, payload: &[u8]) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if marker {
            self.frames.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((layer, _, sent)) = read_payload(payload) {
            if let Some(c) = self.layers.get(usize::from(layer)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            let now = now_ns();
            self.delay
                .record(std::time::Duration::from_nanos(now.saturating_sub(sent)));
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((last_ssrc, last_seq)) = *last {
            if last_ssrc != ssrc {
                self.ssrc_changes.fetch_add(1, Ordering::Relaxed);
            } else if seq != last_seq.wrapping_add(1) {
                self.sequence_breaks.fetch_add(1, Ordering::Relaxed);
            }
        }
        *last = Some((ssrc, seq));
    }

    /// Packets of `layer` so far.
    pub fn layer(&self, layer: usize) -> u64 {
        self.layers
            .get(layer)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Packets so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Frames so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

/// Counters of every track a client receives, by the node's track id.
#[derive(Debug, Default)]
pub struct ReceiveStats {
    tracks: Mutex<HashMap<String, std::sync::Arc<TrackCounters>>>,
}

impl ReceiveStats {
    /// The counters of `track`, created on first use.
    pub fn track(&self, track: &str) -> std::sync::Arc<TrackCounters> {
        let mut t = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        std::sync::Arc::clone(t.entry(track.to_owned()).or_default())
    }

    /// Track ids received so far.
    pub fn track_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Packets over all tracks.
    pub fn total_packets(&self) -> u64 {
        self.tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|t| t.packets())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{Codec, is_keyframe};

    #[test]
    fn payloads_read_back_and_look_like_vp8() {
        let p = video_payload(2, 77, true, true, 100);
        assert_eq!(p.len(), 100);
        let (layer, frame, _) = read_payload(&p).expect("synthetic");
        assert_eq!((layer, frame), (2, 77));
        assert!(is_keyframe(Codec::Vp8, &p));
        assert!(!is_keyframe(
            Codec::Vp8,
            &video_payload(2, 78, true, false, 100)
        ));
        assert!(!is_keyframe(
            Codec::Vp8,
            &video_payload(2, 78, false, true, 100)
        ));
        assert_eq!(read_payload(b"short"), None);
    }

    #[test]
    fn a_decodable_frame_is_a_320_by_180_vp8_keyframe_in_one_packet() {
        let p = decodable_video_payload();
        assert!(is_keyframe(Codec::Vp8, &p));
        assert!(p.len() <= 1_200, "{} bytes", p.len());
        // The keyframe's start code, then width and height (14 bits each, little-endian).
        assert_eq!(&p[4..7], [0x9d, 0x01, 0x2a]);
        let dimension = |at: usize| u16::from_le_bytes([p[at], p[at + 1]]) & 0x3fff;
        assert_eq!((dimension(7), dimension(9)), (320, 180));
    }

    #[test]
    fn counts_sequence_breaks_and_ssrc_changes() {
        let c = TrackCounters::default();
        let p = video_payload(1, 0, true, true, 40);
        c.record(5, 10, false, &p);
        c.record(5, 11, true, &p);
        c.record(5, 13, false, &p);
        c.record(6, 14, false, &p);
        assert_eq!(c.packets(), 4);
        assert_eq!(c.frames(), 1);
        assert_eq!(c.layer(1), 4);
        assert_eq!(c.sequence_breaks.load(Ordering::Relaxed), 1);
        assert_eq!(c.ssrc_changes.load(Ordering::Relaxed), 1);
    }
}
