//! Media through the node: webrtc-crate clients publish synthetic VP8 simulcast and Opus over
//! real ICE/DTLS/SRTP on loopback; subscribers receive them, nothing is dropped for negotiation
//! mismatches, and layers switch when a subscriber asks for less or is throttled.

mod common;

use std::time::Duration;

use common::*;
use conclave_media_node::client::MediaShape;
use conclave_media_node::forward::DropReason;
use conclave_media_node::forward::layers::Quality;
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::signaling::protocol::ClientMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_published_media_and_layers_switch() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(&node, "alice", publisher()).await;
    let media = alice.start_media(MediaShape::default());
    // Bob reports his downlink with REMB only (no transport-wide feedback), as some clients do.
    let bob = remb_client(&node, "bob", viewer()).await;

    // Bob learns of alice's two tracks and receives both.
    let stats = bob.stats.clone();
    assert!(
        eventually(Duration::from_secs(15), || stats.track_ids().len() == 2
            && stats.total_packets() > 200)
        .await,
        "bob receives alice's tracks: {:?} packets {}",
        stats.track_ids(),
        stats.total_packets()
    );
    let ids = stats.track_ids();
    let video = ids
        .iter()
        .map(|t| stats.track(t))
        .max_by_key(|c| c.layer(2) + c.layer(1) + c.layer(0))
        .expect("tracks");
    let frames_before = video.frames();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames = video.frames() - frames_before;
    assert!(
        frames >= 40,
        "about 30 video frames per second arrive, got {frames} in 2 s"
    );
    // With no estimate and quality high, the top layer is forwarded.
    assert!(video.layer(2) > 0, "top layer forwarded");
    assert_eq!(
        node.node
            .stats
            .forward
            .dropped_total(DropReason::NegotiationMismatch),
        0,
        "no packet dropped for a negotiation mismatch"
    );

    // Bob asks for low quality: layer 0 arrives, the top layer stops, the stream stays one
    // sequence.
    bob.send(&ClientMessage::SetQuality {
        quality: Quality::Low,
        track_id: None,
    });
    let before_low = video.layer(0);
    assert!(
        eventually(Duration::from_secs(5), || video.layer(0) > before_low + 30).await,
        "low layer arrives after setQuality low"
    );
    let top = video.layer(2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(video.layer(2), top, "top layer no longer forwarded");

    // Back to high, then throttle with REMB: the layer drops to what fits.
    bob.send(&ClientMessage::SetQuality {
        quality: Quality::High,
        track_id: None,
    });
    assert!(
        eventually(Duration::from_secs(5), || video.layer(2) > top + 30).await,
        "top layer again"
    );
    // 600 kbit/s for audio and video: the middle layer (about 440 kbit/s) fits, the top
    // (about 1.1 Mbit/s) does not.
    bob.send_remb(600_000).await;
    let mid = video.layer(1);
    assert!(
        eventually(Duration::from_secs(5), || video.layer(1) > mid + 20).await,
        "throttled subscriber moves to the middle layer"
    );
    let top = video.layer(2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        video.layer(2),
        top,
        "top layer no longer forwarded while throttled"
    );
    assert_eq!(
        video
            .ssrc_changes
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "one SSRC across switches"
    );
    assert_eq!(
        node.node
            .stats
            .forward
            .dropped_total(DropReason::NegotiationMismatch),
        0
    );
    let f = &node.node.stats.forward;
    eprintln!(
        "video layers {:?}, frames {}, sequence breaks {}, delay p50 {:?} p99 {:?}; node forwarded {} dropped {:?}",
        [video.layer(0), video.layer(1), video.layer(2)],
        video.frames(),
        video
            .sequence_breaks
            .load(std::sync::atomic::Ordering::Relaxed),
        video.delay.quantile(0.5),
        video.delay.quantile(0.99),
        f.forwarded_total(),
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), f.dropped_total(*r)))
            .collect::<Vec<_>>()
    );
    // Each layer switch may leave at most a gap; the stream itself stays contiguous.
    assert!(
        video
            .sequence_breaks
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 3
    );
    assert!(alice.is_connected());
    media.abort();
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_switched_off_forwards_the_lowest_layer_only() {
    let node = start(
        10,
        MediaPolicy {
            simulcast: false,
            ..MediaPolicy::default()
        },
    )
    .await;
    let alice = client(&node, "alice", publisher()).await;
    let media = alice.start_media(MediaShape::default());
    let bob = client(&node, "bob", viewer()).await;
    bob.send(&ClientMessage::SetQuality {
        quality: Quality::High,
        track_id: None,
    });
    let stats = bob.stats.clone();
    assert!(
        eventually(Duration::from_secs(15), || {
            stats
                .track_ids()
                .iter()
                .any(|t| stats.track(t).layer(0) > 60)
        })
        .await,
        "the lowest layer arrives"
    );
    for t in stats.track_ids() {
        let c = stats.track(&t);
        assert_eq!((c.layer(1), c.layer(2)), (0, 0), "no higher layer on {t}");
    }
    media.abort();
}
