//! The client's synthetic publisher: waits for its senders to be negotiated, then writes
//! VP8-shaped frames on one or three simulcast layers (keyframes periodically and on request)
//! and Opus-shaped audio with an audio level, at the rates of a [`MediaShape`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rtc::rtp::Packet;
use rtc::rtp::header::Header;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::PeerConnection;

use super::synthetic::{audio_payload, decodable_video_payload, video_payload};
use super::{AUDIO_LEVEL_URI, MID_URI, MediaShape, RID_URI, RIDS};
pub(super) struct SendLeg {
    payload_type: u8,
    mid: Option<(u8, bytes::Bytes)>,
    rid_id: Option<u8>,
    level_id: Option<u8>,
}

pub(super) async fn send_leg(
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticRTP>,
) -> Option<SendLeg> {
    let track_id = track.track().await.track_id().to_owned();
    for t in pc.get_transceivers().await {
        let Ok(Some(sender)) = t.sender().await else {
            continue;
        };
        if *sender.track().track().await.track_id() != track_id {
            continue;
        }
        let params = sender.get_parameters().await.ok()?;
        let payload_type = params.rtp_parameters.codecs.first()?.payload_type;
        let ext = |uri: &str| {
            params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|h| h.uri == uri)
                .and_then(|h| u8::try_from(h.id).ok())
        };
        let mid = t.mid().await.ok().flatten();
        return Some(SendLeg {
            payload_type,
            mid: ext(MID_URI).zip(mid.map(|m| bytes::Bytes::from(m.into_bytes()))),
            rid_id: ext(RID_URI),
            level_id: ext(AUDIO_LEVEL_URI),
        });
    }
    None
}

fn header(
    leg: &SendLeg,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    rid: Option<&str>,
    level: Option<u8>,
) -> Header {
    let mut h = Header {
        version: 2,
        marker,
        payload_type: leg.payload_type,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    if let Some((id, mid)) = &leg.mid {
        let _ = h.set_extension(*id, mid.clone());
    }
    if let (Some(id), Some(rid)) = (leg.rid_id, rid.filter(|r| !r.is_empty())) {
        let _ = h.set_extension(id, bytes::Bytes::copy_from_slice(rid.as_bytes()));
    }
    if let (Some(id), Some(level)) = (leg.level_id, level) {
        let _ = h.set_extension(id, bytes::Bytes::copy_from_slice(&[level]));
    }
    h
}

pub(super) async fn publish_loop(
    pc: Arc<dyn PeerConnection>,
    video: Option<(Arc<TrackLocalStaticRTP>, Vec<u32>)>,
    audio: Option<(Arc<TrackLocalStaticRTP>, u32)>,
    wanted: Arc<[AtomicBool; 3]>,
    connected: Arc<AtomicBool>,
    shape: MediaShape,
) {
    // Wait for negotiation to bind the senders.
    let mut video_leg = None;
    let mut audio_leg = None;
    for _ in 0..200 {
        if let Some((t, _)) = &video {
            video_leg = send_leg(&pc, t).await;
        }
        if let Some((t, _)) = &audio {
            audio_leg = send_leg(&pc, t).await;
        }
        let ready =
            (video.is_none() || video_leg.is_some()) && (audio.is_none() || audio_leg.is_some());
        if ready && connected.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = tokio::time::Instant::now();
    let frame_period = Duration::from_secs(1) / shape.fps.max(1);
    let audio_period = Duration::from_secs(1) / shape.audio_pps.max(1);
    let mut next_frame = start;
    let mut next_audio = start;
    let mut frame: u32 = 0;
    let mut audio_frame: u32 = 0;
    let mut seqs = [0u16; 4];
    loop {
        let now = tokio::time::Instant::now();
        if let (Some((track, ssrcs)), Some(leg)) = (&video, &video_leg)
            && now >= next_frame
        {
            let ts = (now.duration_since(start).as_secs_f64() * 90_000.0) as u32;
            for (layer, ssrc) in ssrcs.iter().enumerate() {
                let l = if ssrcs.len() == 1 { 2 } else { layer };
                let key = frame.is_multiple_of(shape.keyframe_interval.max(1))
                    || wanted[layer].swap(false, Ordering::Relaxed);
                let n = if shape.decodable {
                    1
                } else {
                    shape.packets_per_frame[l].max(1)
                };
                let rid = (ssrcs.len() > 1).then(|| RIDS[layer]);
                for i in 0..n {
                    let h = header(leg, *ssrc, seqs[layer], ts, i + 1 == n, rid, None);
                    seqs[layer] = seqs[layer].wrapping_add(1);
                    let payload = if shape.decodable {
                        decodable_video_payload()
                    } else {
                        video_payload(l as u8, frame, i == 0, key, shape.packet_bytes[l])
                    };
                    if track
                        .write_rtp(Packet { header: h, payload })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            frame += 1;
            next_frame += frame_period;
        }
        if let (Some((track, ssrc)), Some(leg)) = (&audio, &audio_leg)
            && now >= next_audio
        {
            let ts = audio_frame.wrapping_mul(960);
            let h = header(leg, *ssrc, seqs[3], ts, false, None, Some(0x80 | 30));
            seqs[3] = seqs[3].wrapping_add(1);
            if track
                .write_rtp(Packet {
                    header: h,
                    payload: audio_payload(audio_frame, 80),
                })
                .await
                .is_err()
            {
                return;
            }
            audio_frame += 1;
            next_audio += audio_period;
        }
        let wake = match (&video_leg, &audio_leg) {
            (Some(_), Some(_)) => next_frame.min(next_audio),
            (Some(_), None) => next_frame,
            (None, Some(_)) => next_audio,
            (None, None) => return,
        };
        tokio::time::sleep_until(wake).await;
    }
}
