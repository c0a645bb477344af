//! Big rooms end to end. Last-N: in a conference that forwards at most two cameras to each
//! participant, a viewer among four camera publishers receives packets of exactly the two it
//! is told of (`forwardedVideos`): the first to join, then the one who speaks, then the one
//! its page shows (`viewing`); a paused camera's packets stop and a resumed one's start
//! again. Without a limit every camera flows and nothing is said. Dynacast: publishers are
//! asked for the layers someone receives (`publishLayers`): none for a camera nobody is
//! forwarded, up to the quality asked for otherwise, more at once when a subscriber asks.
//! Overload shedding: a node that sheds cameras keeps each viewer the share its level allows,
//! the most relevant first, says so, and restores them all when the shedding ends.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use conclave_media_node::client::{Client, MediaShape, Publish};
use conclave_media_node::forward::Quality;
use conclave_media_node::room::model::{TrackKind, TrackSource};
use conclave_media_node::room::{MediaPolicy, ParticipantId};
use conclave_media_node::signaling::protocol::{ClientMessage, ServerMessage};

const WAIT: Duration = Duration::from_secs(15);

fn camera_only() -> Publish {
    Publish {
        audio: false,
        video_layers: 1,
        chat: false,
    }
}

/// Joins `identity` publishing `publish` and waits until its camera is published.
async fn camera_publisher(node: &TestNode, identity: &str, publish: Publish) -> Client {
    let mut c = client(node, identity, publish).await;
    c.start_media(MediaShape::default());
    let published = c
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::TrackPublished { track } if track.kind == TrackKind::Video)
        })
        .await;
    assert!(published.is_some(), "{identity}'s camera is published");
    c
}

/// The camera track of each participant the viewer was told of when it joined.
fn cameras(viewer: &Client) -> BTreeMap<ParticipantId, String> {
    let ServerMessage::Joined { participants, .. } = &viewer.joined else {
        panic!("joined");
    };
    participants
        .iter()
        .flat_map(|p| p.tracks.iter())
        .filter(|t| t.kind == TrackKind::Video && t.source == TrackSource::Camera)
        .map(|t| (t.participant, t.id.clone()))
        .collect()
}

/// Waits for `forwardedVideos` naming exactly `want`.
async fn told(viewer: &mut Client, want: &[ParticipantId]) {
    let want: BTreeSet<ParticipantId> = want.iter().copied().collect();
    let got = viewer
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::ForwardedVideos { participant_ids }
                if participant_ids.iter().copied().collect::<BTreeSet<_>>() == want)
        })
        .await;
    assert!(got.is_some(), "the viewer is told it receives {want:?}");
}

/// The cameras whose packets keep arriving at `viewer` over a second (after a second for
/// paused ones to stop and resumed ones to start).
async fn flowing(
    viewer: &Client,
    cameras: &BTreeMap<ParticipantId, String>,
) -> BTreeSet<ParticipantId> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<u64> = cameras
        .values()
        .map(|t| viewer.stats.track(t).packets())
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cameras
        .iter()
        .zip(before)
        .filter(|((_, t), b)| viewer.stats.track(t).packets() > *b)
        .map(|((p, _), _)| *p)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_receives_the_first_cameras_then_the_speakers_then_those_it_shows() {
    let policy = MediaPolicy {
        last_n: Some(2),
        ..MediaPolicy::default()
    };
    let node = start(10, policy).await;
    let a = camera_publisher(&node, "a", camera_only()).await;
    let b = camera_publisher(&node, "b", camera_only()).await;
    let c = camera_publisher(&node, "c", camera_only()).await;
    let mut viewer = client(&node, "viewer", viewer()).await;
    let mut tracks = cameras(&viewer);
    assert_eq!(tracks.len(), 3, "three cameras published: {tracks:?}");

    // Nobody spoke: the first two to join.
    told(&mut viewer, &[a.participant, b.participant]).await;
    let want: BTreeSet<_> = [a.participant, b.participant].into();
    assert_eq!(flowing(&viewer, &tracks).await, want);

    // d joins and speaks (the only one sending audio): d first, then a, the first to join;
    // b's camera is paused.
    let d = camera_publisher(&node, "d", publisher_with_one_layer()).await;
    let Some(ServerMessage::TrackPublished { track }) = viewer
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::TrackPublished { track }
                if track.participant == d.participant && track.kind == TrackKind::Video)
        })
        .await
    else {
        panic!("the viewer learns d's camera");
    };
    tracks.insert(d.participant, track.id);
    told(&mut viewer, &[d.participant, a.participant]).await;
    let want: BTreeSet<_> = [d.participant, a.participant].into();
    assert_eq!(flowing(&viewer, &tracks).await, want);

    // The viewer's page shows c: c first, then the speaker.
    viewer.send(&ClientMessage::Viewing {
        participant_ids: vec![c.participant],
    });
    told(&mut viewer, &[c.participant, d.participant]).await;
    let want: BTreeSet<_> = [c.participant, d.participant].into();
    assert_eq!(flowing(&viewer, &tracks).await, want);
    drop(b);
}

fn publisher_with_one_layer() -> Publish {
    Publish {
        audio: true,
        video_layers: 1,
        chat: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_every_camera_flows_and_nothing_is_said() {
    let node = start(10, MediaPolicy::default()).await;
    let _a = camera_publisher(&node, "a", camera_only()).await;
    let _b = camera_publisher(&node, "b", camera_only()).await;
    let _c = camera_publisher(&node, "c", camera_only()).await;
    let mut viewer = client(&node, "viewer", viewer()).await;
    let tracks = cameras(&viewer);
    let all: BTreeSet<_> = tracks.keys().copied().collect();
    assert_eq!(flowing(&viewer, &tracks).await, all);
    let said = viewer
        .wait_for(Duration::from_millis(500), |m| {
            matches!(m, ServerMessage::ForwardedVideos { .. })
        })
        .await;
    assert_eq!(said, None);
}

/// Waits until `publisher` is asked to send exactly `layers` of its video.
async fn asked(publisher: &mut Client, layers: &[u8], within: Duration) -> bool {
    publisher
        .wait_for(
            within,
            |m| matches!(m, ServerMessage::PublishLayers { layers: l, .. } if l == layers),
        )
        .await
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_are_asked_only_for_the_layers_someone_receives() {
    let policy = MediaPolicy {
        last_n: Some(1),
        ..MediaPolicy::default()
    };
    let node = start(10, policy).await;
    let simulcast = Publish {
        audio: false,
        video_layers: 3,
        chat: false,
    };
    let mut a = camera_publisher(&node, "a", simulcast.clone()).await;
    let c = camera_publisher(&node, "c", simulcast.clone()).await;
    let mut b = camera_publisher(&node, "b", simulcast).await;
    let viewer = client(&node, "viewer", viewer()).await;
    // Everyone watches small tiles.
    for p in [&a, &b, &c, &viewer] {
        p.send(&ClientMessage::SetQuality {
            quality: Quality::Low,
            track_id: None,
        });
    }
    // With one place each, b, c and the viewer receive a (the first to join), a receives c:
    // nobody receives b. After the hold, a is asked for its lowest layer, b for nothing.
    let hold = conclave_media_node::forward::dynacast::HOLD + Duration::from_secs(3);
    assert!(
        asked(&mut a, &[0], hold).await,
        "a is asked for its lowest layer only"
    );
    assert!(asked(&mut b, &[], hold).await, "b is asked to send nothing");
    // The viewer's page shows b: b's lowest layer is asked for at once, then every layer
    // when the viewer asks for high quality.
    viewer.send(&ClientMessage::Viewing {
        participant_ids: vec![b.participant],
    });
    assert!(
        asked(&mut b, &[0], Duration::from_secs(2)).await,
        "b is asked for its lowest layer at once"
    );
    viewer.send(&ClientMessage::SetQuality {
        quality: Quality::High,
        track_id: None,
    });
    assert!(
        asked(&mut b, &[0, 1, 2], Duration::from_secs(2)).await,
        "b is asked for every layer at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_sheds_load_keeps_a_share_of_each_viewers_cameras_and_restores_them() {
    let node = start(10, MediaPolicy::default()).await;
    let a = camera_publisher(&node, "a", camera_only()).await;
    let b = camera_publisher(&node, "b", camera_only()).await;
    let _c = camera_publisher(&node, "c", camera_only()).await;
    let _d = camera_publisher(&node, "d", camera_only()).await;
    let _e = camera_publisher(&node, "e", camera_only()).await;
    let mut viewer = client(&node, "viewer", viewer()).await;
    let tracks = cameras(&viewer);
    let all: BTreeSet<_> = tracks.keys().copied().collect();
    assert_eq!(flowing(&viewer, &tracks).await, all);

    // Level 5 keeps 40 % of five cameras: the first two to join (nobody spoke).
    node.node.stats.set_shedding_level(5);
    told(&mut viewer, &[a.participant, b.participant]).await;
    let kept: BTreeSet<_> = [a.participant, b.participant].into();
    assert_eq!(flowing(&viewer, &tracks).await, kept);
    let metrics = conclave_media_node::metrics::render(&node.node);
    assert!(
        metrics.contains("conclave_media_node_shedding_level 5")
            && metrics.contains(r#"conclave_media_node_shedding_steps_total{direction="up"} 1"#),
        "the shedding is in /metrics"
    );

    // Shedding over: every camera again, and the viewer is told so.
    node.node.stats.set_shedding_level(0);
    let everyone: Vec<_> = all.iter().copied().collect();
    told(&mut viewer, &everyone).await;
    assert_eq!(flowing(&viewer, &tracks).await, all);
}
