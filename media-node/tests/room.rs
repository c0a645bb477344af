//! Room behaviour end to end: chat relayed by the node with a size limit, mute state and the
//! active speaker announced, media switched off by the conference refused, ICE restart, peers
//! that go away removed, and a moved room sending its clients to the new node.

mod common;

use std::time::Duration;

use common::*;
use conclave_media_node::CloseReason;
use conclave_media_node::client::Client;
use conclave_media_node::client::{MediaShape, Publish};
use conclave_media_node::forward::DropReason;
use conclave_media_node::media::chat::{CHAT_RATE, ChatRelay};
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::room::model::TrackKind;
use conclave_media_node::signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};

const WAIT: Duration = Duration::from_secs(10);

/// Waits for both chat channels to open (retrying until `to` hears `from`, at the chat
/// rate): the first relay `to` got.
async fn first_chat(from: &Client, to: &mut Client) -> ChatRelay {
    for _ in 0..50 {
        let _ = from.chat("hello bob").await;
        if let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(200), to.chat_in.recv()).await
        {
            return serde_json::from_str(&m).expect("relay json");
        }
    }
    panic!("the chat channels never carried a message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_flood_is_cut_to_the_rate_told_once_then_closed() {
    let node = start(10, MediaPolicy::default()).await;
    let mut alice = client(&node, "alice", viewer()).await;
    let mut bob = client(&node, "bob", viewer()).await;
    first_chat(&alice, &mut bob).await;

    let started = std::time::Instant::now();
    for i in 0..500 {
        if alice.chat(&format!("spam {i}")).await.is_err() {
            break;
        }
    }
    let told = alice
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::Error { code: ErrorCode::MediaRefused, message, .. }
                if message.contains("faster than 5 per second"))
        })
        .await;
    assert!(told.is_some(), "alice was told she sends too fast");
    let closed = alice
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::Error { message, .. } if message.contains("chat closed"))
        })
        .await;
    assert!(closed.is_some(), "alice's chat was closed for flooding");
    let mut relayed = 0usize;
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(500), bob.chat_in.recv()).await
    {
        relayed += 1;
    }
    let allowed = CHAT_RATE.burst as f64 + CHAT_RATE.per_second * started.elapsed().as_secs_f64();
    assert!(
        relayed >= 1 && relayed as f64 <= allowed,
        "bob got {relayed} of 500, at most {allowed:.0} allowed"
    );
    // The flood cost alice her chat, not her call, and bob's session is untouched.
    for c in [&mut alice, &mut bob] {
        c.send(&ClientMessage::Ping {});
        assert!(
            c.wait_for(WAIT, |m| matches!(m, ServerMessage::Pong {}))
                .await
                .is_some(),
            "session still served"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_relayed_by_the_node_with_a_size_limit() {
    let node = start(10, MediaPolicy::default()).await;
    let mut alice = client(&node, "alice", viewer()).await;
    let mut bob = client(&node, "bob", viewer()).await;
    let relay = first_chat(&alice, &mut bob).await;
    assert_eq!(relay.identity, "alice");
    assert_eq!(relay.message, "hello bob");
    assert_eq!(relay.participant_id, alice.participant);
    // The sender does not get its own message back.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), alice.chat_in.recv())
            .await
            .is_err()
    );

    alice.chat(&"x".repeat(300)).await.expect("sent");
    let refused = alice
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::MediaRefused,
                    ..
                }
            )
        })
        .await;
    let Some(ServerMessage::Error { message, .. }) = refused else {
        panic!("oversized chat refused");
    };
    assert!(message.contains("limit of 256 bytes"), "{message}");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bob.chat_in.recv())
            .await
            .is_err()
    );
    let _ = bob.next_event(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_and_active_speaker_are_announced() {
    let node = start(10, MediaPolicy::default()).await;
    let mut alice = client(&node, "alice", publisher()).await;
    let media = alice.start_media(MediaShape::default());
    let mut bob = client(&node, "bob", viewer()).await;
    let speaker = bob
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::ActiveSpeaker {
                    participant_id: Some(_)
                }
            )
        })
        .await;
    assert_eq!(
        speaker,
        Some(ServerMessage::ActiveSpeaker {
            participant_id: Some(alice.participant)
        })
    );
    let Some(ServerMessage::TrackPublished { track }) = alice
        .wait_for(WAIT, |m| matches!(m, ServerMessage::TrackPublished { track } if track.kind == TrackKind::Audio))
        .await
    else {
        panic!("alice learns her audio track id");
    };
    alice.send(&ClientMessage::Mute {
        track_id: "mic".into(),
        muted: true,
    });
    let muted = bob
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Muted { .. }))
        .await;
    assert_eq!(
        muted,
        Some(ServerMessage::Muted {
            participant_id: alice.participant,
            track_id: track.id.clone(),
            muted: true
        })
    );
    let counter = bob.stats.track(&track.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen = counter.packets();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counter.packets(), frozen, "muted audio is not forwarded");
    assert!(node.node.stats.forward.dropped_total(DropReason::Muted) > 0);
    media.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_switched_off_by_the_conference_is_refused() {
    let policy = MediaPolicy {
        video: false,
        simulcast: false,
        ..MediaPolicy::default()
    };
    let node = start(10, policy).await;
    let mut alice = client(&node, "alice", publisher()).await;
    let media = alice.start_media(MediaShape::default());
    let refused = alice
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::MediaRefused,
                    ..
                }
            )
        })
        .await;
    let Some(ServerMessage::Error { message, .. }) = refused else {
        panic!("video refused");
    };
    assert_eq!(message, "video is switched off for this conference");
    let bob = client(&node, "bob", viewer()).await;
    let stats = bob.stats.clone();
    assert!(
        eventually(WAIT, || stats.total_packets() > 50).await,
        "audio still flows"
    );
    assert_eq!(
        stats.track_ids().len(),
        1,
        "only the audio track is forwarded"
    );
    media.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_keeps_media_flowing() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(&node, "alice", publisher()).await;
    let media = alice.start_media(MediaShape::default());
    let mut bob = client(&node, "bob", viewer()).await;
    let stats = bob.stats.clone();
    assert!(eventually(WAIT, || stats.total_packets() > 100).await);
    bob.send(&ClientMessage::IceRestart {});
    let offer = bob
        .wait_for(WAIT, |m| matches!(m, ServerMessage::Offer { .. }))
        .await;
    let Some(ServerMessage::Offer { sdp }) = offer else {
        panic!("ICE restart offer");
    };
    assert!(sdp.contains("a=ice-ufrag"), "offer carries ICE credentials");
    let before = stats.total_packets();
    assert!(
        eventually(WAIT, || stats.total_packets() > before + 100).await,
        "media after restart"
    );
    media.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_goes_away_is_removed() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(&node, "alice", publisher()).await;
    let mut bob = client(&node, "bob", viewer()).await;
    let alice_id = alice.participant;
    assert!(eventually(WAIT, || alice.is_connected()).await);
    // Alice's media stack goes away; her signaling socket stays open.
    let (_socket_kept, pc_gone) = alice.split_for_test();
    pc_gone.await;
    let left = bob
        .wait_for(Duration::from_secs(20), |m| {
            matches!(m, ServerMessage::ParticipantLeft { .. })
        })
        .await;
    assert_eq!(
        left,
        Some(ServerMessage::ParticipantLeft {
            participant_id: alice_id
        })
    );
    assert!(
        node.node
            .room(CONFERENCE)
            .is_some_and(|r| r.participants() == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_room_tells_clients_where_to_reconnect() {
    let node = start(10, MediaPolicy::default()).await;
    let mut alice = client(&node, "alice", viewer()).await;
    node.node.close_room(
        CONFERENCE,
        CloseReason::Moved {
            signaling_url: "ws://127.0.0.9:7880/rtc".into(),
        },
    );
    let mut seen = Vec::new();
    while let Some(m) = alice.next_event(WAIT).await {
        let left = matches!(m, ServerMessage::Left { .. });
        seen.push(m);
        if left {
            break;
        }
    }
    let reconnect = seen.iter().position(|m| {
        matches!(m, ServerMessage::Reconnect { signaling_url, .. } if signaling_url == "ws://127.0.0.9:7880/rtc")
    });
    let left = seen
        .iter()
        .position(|m| matches!(m, ServerMessage::Left { .. }));
    assert!(
        matches!((reconnect, left), (Some(r), Some(l)) if r < l),
        "reconnect, then left: {seen:?}"
    );
    assert!(
        eventually(WAIT, || node.node.room_count() == 0).await,
        "room closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crate_refuses_unnegotiated_packets() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(
        &node,
        "alice",
        Publish {
            audio: false,
            video_layers: 1,
            chat: false,
        },
    )
    .await;
    assert!(eventually(WAIT, || alice.is_connected()).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        assert!(
            alice.write_unnegotiated_packet().await.is_err(),
            "write_rtp reports the mismatch"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        node.node.stats.forward.received_total(),
        0,
        "yet nothing arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_reach_the_publisher_and_departures_renegotiate() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(
        &node,
        "alice",
        Publish {
            audio: true,
            video_layers: 1,
            chat: false,
        },
    )
    .await;
    let media = alice.start_media(MediaShape {
        keyframe_interval: 100_000,
        ..MediaShape::default()
    });
    let mut bob = client(&node, "bob", viewer()).await;
    let stats = bob.stats.clone();
    assert!(
        eventually(WAIT, || stats.track_ids().len() == 2
            && stats.total_packets() > 100)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = alice.keyframe_requests();
    for _ in 0..3 {
        bob.request_keyframes().await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        eventually(WAIT, || alice.keyframe_requests() >= before + 2).await,
        "bob's PLIs reach alice (before {before}, now {})",
        alice.keyframe_requests()
    );

    // Alice leaves: bob hears it and the node renegotiates her tracks away.
    let alice_id = alice.participant;
    alice.send(&ClientMessage::Leave {});
    let mut unpublished = 0;
    let mut offered = false;
    let mut left = false;
    while let Some(m) = bob.next_event(WAIT).await {
        match m {
            ServerMessage::TrackUnpublished { participant_id, .. }
                if participant_id == alice_id =>
            {
                unpublished += 1
            }
            ServerMessage::ParticipantLeft { participant_id } if participant_id == alice_id => {
                left = true
            }
            ServerMessage::Offer { .. } => offered = true,
            _ => {}
        }
        if unpublished == 2 && left && offered {
            break;
        }
    }
    assert_eq!((unpublished, left, offered), (2, true, true));
    media.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_carry_the_public_address() {
    let node = start(10, MediaPolicy::default()).await;
    node.node.set_public_ip("127.0.0.3".parse().expect("ip"));
    let alice = client(&node, "alice", viewer()).await;
    assert!(
        eventually(WAIT, || !alice.node_candidates().is_empty()).await,
        "node trickles candidates"
    );
    let candidates = alice.node_candidates();
    assert!(
        candidates
            .iter()
            .all(|c| c.contains("127.0.0.3") && !c.contains("127.0.0.1 ")),
        "{candidates:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srtp_uses_aes_gcm_although_the_client_lists_aes_cm_first() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(&node, "alice", viewer()).await;
    assert!(eventually(WAIT, || alice.is_connected()).await);
    assert_eq!(
        alice.srtp_cipher().await.as_deref(),
        Some("SRTP_AEAD_AES_128_GCM")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_switched_off_is_refused() {
    let node = start(
        10,
        MediaPolicy {
            data_channel: false,
            ..MediaPolicy::default()
        },
    )
    .await;
    let mut alice = client(&node, "alice", viewer()).await;
    assert!(matches!(
        alice.joined,
        ServerMessage::Joined { chat: None, .. }
    ));
    let refused = alice
        .wait_for(WAIT, |m| {
            matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::MediaRefused,
                    ..
                }
            )
        })
        .await;
    assert!(
        matches!(&refused, Some(ServerMessage::Error { message, .. }) if message == "chat is switched off for this conference"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpublished_track_is_gone_for_the_others() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(&node, "alice", publisher()).await;
    let _media = alice.start_media(MediaShape::default());
    let mut bob = client(&node, "bob", viewer()).await;
    let Some(ServerMessage::TrackPublished { track }) = bob
        .wait_for(WAIT, |m| matches!(m, ServerMessage::TrackPublished { track } if track.kind == TrackKind::Audio))
        .await
    else {
        panic!("bob learns alice's audio track");
    };
    let counter = bob.stats.track(&track.id);
    assert!(
        eventually(WAIT, || counter.packets() > 10).await,
        "alice's audio flows"
    );
    alice.send(&ClientMessage::Unpublish {
        track_id: "mic".into(),
    });
    let gone = bob
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::TrackUnpublished { .. })
        })
        .await;
    assert_eq!(
        gone,
        Some(ServerMessage::TrackUnpublished {
            track_id: track.id.clone(),
            participant_id: alice.participant,
        })
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = counter.packets();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        counter.packets(),
        after,
        "nothing of it reaches bob any more"
    );
}
