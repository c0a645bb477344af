//! The signaling endpoint against misbehaving and refused clients: garbage is answered with
//! errors and its sender disconnected alone, out-of-order messages are refused, tokens and
//! capacity limits are enforced with clear messages, and probes answer.

mod common;

use std::time::Duration;

use common::*;
use conclave_media_node::client::{Client, ClientConfig, MediaShape};
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::signaling::protocol::{ErrorCode, ServerMessage, parse_server};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn raw(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn next_server(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) => return parse_server(t.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_and_its_sender_disconnected_alone() {
    let node = start(10, MediaPolicy::default()).await;
    let alice = client(&node, "alice", publisher()).await;
    let media = alice.start_media(MediaShape::default());
    let bob = client(&node, "bob", viewer()).await;
    let stats = bob.stats.clone();
    assert!(eventually(Duration::from_secs(15), || stats.total_packets() > 100).await);

    let mut mallory = raw(&node.url).await;
    let inputs = [
        "not json".to_owned(),
        "[1,2,3]".to_owned(),
        r#"{"type":"join"}"#.to_owned(),
        r#"{"v":1,"type":"offer","sdp":"v=0"}"#.to_owned(),
        "\u{0}\u{1}\u{ffff}".to_owned(),
    ];
    let mut codes = Vec::new();
    for input in inputs {
        mallory
            .send(Message::Text(input.into()))
            .await
            .expect("send");
        if let Some(ServerMessage::Error { code, .. }) = next_server(&mut mallory).await {
            codes.push(code);
        }
    }
    assert_eq!(
        codes,
        [
            ErrorCode::Malformed,
            ErrorCode::Malformed,
            ErrorCode::UnsupportedVersion,
            ErrorCode::Unexpected,
            ErrorCode::Malformed
        ]
    );
    // Fifth refusal: the node closes mallory's socket.
    assert!(
        next_server(&mut mallory).await.is_none(),
        "garbage sender is disconnected"
    );

    // A joined client sending garbage gets errors and keeps its session until the limit.
    bob.send_raw("{oops");
    let before = stats.total_packets();
    assert!(
        eventually(Duration::from_secs(3), || stats.total_packets()
            > before + 50)
        .await,
        "others keep receiving media"
    );
    assert!(
        node.node
            .room(CONFERENCE)
            .is_some_and(|r| r.participants() == 2)
    );
    media.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_oversized_frames_are_refused() {
    let node = start(10, MediaPolicy::default()).await;
    let mut ws = raw(&node.url).await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    assert!(matches!(
        next_server(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    let big = format!(
        r#"{{"v":1,"type":"ping","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    ws.send(Message::Text(big.into())).await.expect("send");
    assert!(matches!(
        next_server(&mut ws).await,
        Some(ServerMessage::Error {
            code: ErrorCode::TooLarge,
            ..
        })
    ));
    assert!(
        next_server(&mut ws).await.is_none(),
        "oversized sender is disconnected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_need_a_valid_token_for_a_hosted_conference_and_room() {
    let node = start(2, MediaPolicy::default()).await;
    let config = |token: String, conference: &str| ClientConfig {
        url: node.url.clone(),
        conference: conference.into(),
        token,
        bind_ip: LOOPBACK,
        publish: viewer(),
        transport_feedback: true,
        offer_first: true,
        tcp_only: false,
    };
    let err = Client::connect(config("abc".into(), CONFERENCE))
        .await
        .err()
        .expect("bad token refused");
    assert!(err.to_string().contains("Unauthorized"), "{err}");
    let forged = conclave_crds::token::mint(
        b"another-key",
        &conclave_crds::token::JoinClaims {
            conference: CONFERENCE.into(),
            identity: "eve".into(),
            exp: u64::MAX,
            publish: true,
        },
    );
    let err = Client::connect(config(forged, CONFERENCE))
        .await
        .err()
        .expect("forged token refused");
    assert!(err.to_string().contains("signature"), "{err}");
    let err = Client::connect(config(token_for("carol", "retro"), "retro"))
        .await
        .err()
        .expect("other conference refused");
    assert!(err.to_string().contains("NotHere"), "{err}");

    let _a = client(&node, "alice", viewer()).await;
    let _b = client(&node, "bob", viewer()).await;
    let err = Client::connect(config(token("carol"), CONFERENCE))
        .await
        .err()
        .expect("room full");
    assert!(
        err.to_string()
            .contains("is full: it allows 2 participants"),
        "{err}"
    );
}

/// Sends `join` for `identity` with `name` on a fresh socket; the first reply.
async fn join_named(node: &TestNode, identity: &str, name: &str) -> (ServerMessage, RawSocket) {
    let mut ws = raw(&node.url).await;
    let join = serde_json::json!({
        "v": 1, "type": "join", "conference": CONFERENCE, "token": token(identity), "name": name,
    });
    ws.send(Message::Text(join.to_string().into()))
        .await
        .expect("send");
    let reply = next_server(&mut ws).await.expect("a reply to join");
    (reply, ws)
}

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_see_the_name_asked_for_in_join_and_bad_names_are_refused() {
    let node = start(10, MediaPolicy::default()).await;
    let (reply, _alice) = join_named(&node, "alice", "  Ana María ").await;
    assert!(matches!(reply, ServerMessage::Joined { .. }), "{reply:?}");
    let (reply, _bob) = join_named(&node, "bob", "").await;
    let ServerMessage::Joined { participants, .. } = reply else {
        panic!("bob joins: {reply:?}");
    };
    let names: Vec<_> = participants
        .iter()
        .map(|p| (p.identity.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(names, [("alice", "Ana María")]);

    for bad in ["x".repeat(65), "Bob\n(admin)".to_owned()] {
        let (reply, _) = join_named(&node, "mallory", &bad).await;
        let ServerMessage::Error { code, message, .. } = reply else {
            panic!("a bad name is refused: {reply:?}");
        };
        assert_eq!(code, ErrorCode::Malformed);
        assert!(message.contains("join.name"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_capacity_is_enforced() {
    let node = start(10, MediaPolicy::default()).await;
    node.node.set_capacity(conclave_crds::NodeCapacity {
        participants: 1,
        rooms: 5,
        egress_mbps: 100,
    });
    let _a = client(&node, "alice", viewer()).await;
    let err = Client::connect(ClientConfig {
        url: node.url.clone(),
        conference: CONFERENCE.into(),
        token: token("bob"),
        bind_ip: LOOPBACK,
        publish: viewer(),
        transport_feedback: true,
        offer_first: true,
        tcp_only: false,
    })
    .await
    .err()
    .expect("node full");
    assert!(
        err.to_string().contains("at capacity (1 participants)"),
        "{err}"
    );
}

#[tokio::test]
async fn admissions_in_flight_count_against_the_node_capacity() {
    let node = conclave_media_node::NodeState::new(settings());
    node.set_capacity(conclave_crds::NodeCapacity {
        participants: 3,
        rooms: 5,
        egress_mbps: 100,
    });
    // Ten joins arrive before any room counted one: three places, no more.
    let mut held: Vec<_> = (0..10).filter_map(|_| node.admit().ok()).collect();
    assert_eq!(held.len(), 3);
    // A join that ends (its room counted it or refused it) gives its place back.
    held.pop();
    assert!(node.admit().is_ok());
    // Participants already in rooms count too.
    drop(held);
    node.stats.participant_joined();
    node.stats.participant_joined();
    let one = node.admit().expect("a third place");
    assert!(
        node.admit().is_err(),
        "two connected and one joining fill three places"
    );
    drop(one);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics() {
    let node = start(10, MediaPolicy::default()).await;
    let host = node
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/rtc")
        .to_owned();
    let get = |path: &'static str| {
        let host = host.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        }
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    // Metrics are not on the public signaling port, but on their own.
    assert!(get("/metrics").await.starts_with("HTTP/1.1 404"));
    let listener = tokio::net::TcpListener::bind((common::LOOPBACK, 0))
        .await
        .unwrap();
    let metrics_host = listener.local_addr().unwrap().to_string();
    tokio::spawn(conclave_media_node::server::serve_metrics(
        listener,
        std::sync::Arc::clone(&node.node),
        std::future::pending(),
    ));
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&metrics_host).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(metrics.contains("conclave_media_node_rooms 1"), "{metrics}");
    // Counters and a histogram, per Prometheus conventions: no bitrate gauges.
    for series in [
        "conclave_media_node_bytes_received_total 0",
        "conclave_media_node_bytes_forwarded_total 0",
        r#"conclave_media_node_forward_delay_seconds_bucket{le="0.001"} 0"#,
        r#"conclave_media_node_forward_delay_seconds_bucket{le="+Inf"} 0"#,
        "conclave_media_node_forward_delay_seconds_count 0",
        "conclave_media_node_repair_keyframes_requested_total 0",
        "conclave_media_node_retransmissions_sent_total 0",
        "conclave_media_node_retransmissions_dropped_total 0",
        r#"conclave_media_node_downlink_estimates_total{source="transport_wide"} 0"#,
        r#"conclave_media_node_downlink_estimates_total{source="remb_ignored"} 0"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from {metrics}");
    }
    assert!(!metrics.contains("bitrate_bps"), "{metrics}");
    assert!(
        metrics.contains(r#"conclave_media_node_packets_dropped_total{reason="queue_full"} 0"#),
        "{metrics}"
    );
    // A draining node still serves its calls: ready, and says it drains.
    node.node.start_drain();
    let r = get("/readyz").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("draining"),
        "{r}"
    );
}
