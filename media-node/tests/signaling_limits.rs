//! The signaling endpoint's limits against abusive clients: sockets that never join are closed
//! after the join timeout with an error, the per-address and per-node caps refuse extra
//! upgrades (and give places back when sockets close), and a joined client flooding valid
//! messages is rate-limited, told, and cut off while the rest of its room carries on.

mod common;

use std::time::{Duration, Instant};

use common::*;
use conclave_media_node::client::{Client, ClientConfig, Publish};
use conclave_media_node::forward::layers::Quality;
use conclave_media_node::node::SignalingCut;
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::signaling::SignalingLimits;
use conclave_media_node::signaling::limits::ConnectionCaps;
use conclave_media_node::signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use conclave_media_node::signaling::protocol::{client_text, parse_server};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a raw socket ended, as seen by the client.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The node sent these errors, then closed the socket.
    Closed(Vec<ErrorCode>),
    /// Still open when the wait ran out.
    StillOpen,
}

/// Whether `client` gets a `pong` for a `ping` within 5 s: its session is still served.
async fn answers_ping(client: &mut Client) -> bool {
    client.send(&ClientMessage::Ping {});
    client
        .wait_for(Duration::from_secs(5), |m| {
            matches!(m, ServerMessage::Pong {})
        })
        .await
        .is_some()
}

/// Reads until the node closes the socket (a close frame or the end of the stream), or
/// `patience` runs out.
async fn ending(ws: &mut Socket, patience: Duration) -> Ending {
    let mut errors = Vec::new();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Ending::StillOpen,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                return Ending::Closed(errors);
            }
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Ok(ServerMessage::Error { code, .. }) = parse_server(t.as_str()) {
                    errors.push(code);
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn limits(join_timeout: Duration, per_node: u32, per_address: u32) -> SignalingLimits {
    SignalingLimits {
        join_timeout,
        connections: ConnectionCaps {
            per_node,
            per_address,
        },
        ..SignalingLimits::default()
    }
}

/// A node of 10 participants under `limits`.
async fn limited(limits: SignalingLimits) -> TestNode {
    start_limited(settings(), limits, 10, MediaPolicy::default()).await
}

/// Whether the node counts `expected` open sockets within 5 s.
async fn open_sockets_become(node: &TestNode, expected: u32) -> bool {
    eventually(Duration::from_secs(5), || {
        node.node.stats.signaling.open_sockets() == expected
    })
    .await
}

async fn raw(url: &str) -> Result<Socket, tungstenite::Error> {
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(ws, _)| ws)
}

fn quiet() -> Publish {
    Publish {
        audio: false,
        video_layers: 0,
        chat: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_join_are_closed_after_the_join_timeout() {
    const IDLE: usize = 60;
    let timeout = Duration::from_secs(1);
    let node = limited(limits(timeout, 1000, 1000)).await;
    // A client that joined before the idle sockets opened is not held to the deadline.
    let mut alice = client(&node, "alice", quiet()).await;

    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(raw(&node.url).await.expect("upgrade"));
    }
    assert!(
        open_sockets_become(&node, IDLE as u32 + 1).await,
        "every socket is counted"
    );
    let endings = futures::future::join_all(
        idle.iter_mut()
            .map(|ws| ending(ws, Duration::from_secs(10))),
    )
    .await;
    let closed_after = opened.elapsed();
    for e in &endings {
        assert_eq!(e, &Ending::Closed(vec![ErrorCode::JoinTimeout]));
    }
    assert!(closed_after >= timeout, "closed after {closed_after:?}");
    assert!(
        open_sockets_become(&node, 1).await,
        "the node let go of every idle socket"
    );
    assert_eq!(
        node.node.stats.signaling.cuts(SignalingCut::JoinTimeout),
        IDLE as u64
    );
    println!(
        "{IDLE} idle sockets closed {closed_after:?} after opening (join timeout {timeout:?})"
    );

    assert!(
        answers_ping(&mut alice).await,
        "the joined client is still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_extra_upgrades_and_give_places_back() {
    // Per address: loopback may hold 3.
    let node = limited(limits(Duration::from_secs(30), 100, 3)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(raw(&node.url).await.expect("within the cap"));
    }
    let Err(refused) = raw(&node.url).await else {
        panic!("a fourth socket from one address is refused");
    };
    let tungstenite::Error::Http(response) = refused else {
        panic!("refused with an HTTP status, not {refused:?}");
    };
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains("3 signaling connections from your address"),
        "{body}"
    );
    assert_eq!(node.node.stats.signaling.cuts(SignalingCut::AddressFull), 1);

    // A socket that closes gives its place back.
    let mut first = held.remove(0);
    first.close(None).await.expect("close");
    assert!(open_sockets_become(&node, 2).await);
    held.push(raw(&node.url).await.expect("a place came back"));

    // Per node: 2 sockets whatever their address.
    let full = limited(limits(Duration::from_secs(30), 2, 100)).await;
    let _a = raw(&full.url).await.expect("first");
    let _b = raw(&full.url).await.expect("second");
    let Err(tungstenite::Error::Http(response)) = raw(&full.url).await else {
        panic!("third socket of a full node refused with an HTTP status");
    };
    assert_eq!(response.status(), 503);
    assert_eq!(full.node.stats.signaling.cuts(SignalingCut::NodeFull), 1);
    // Refused upgrades never became sessions.
    assert_eq!(full.node.stats.signaling.open_sockets(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_is_rate_limited_and_cut_off_while_its_room_carries_on() {
    const FLOOD: usize = 200_000;
    // Default limits: what a deployment gets.
    let node = start(10, MediaPolicy::default()).await;
    let mut alice = client(&node, "alice", viewer()).await;
    let mut mallory = Client::connect(ClientConfig {
        url: node.url.clone(),
        conference: CONFERENCE.into(),
        token: token("mallory"),
        bind_ip: LOOPBACK,
        publish: quiet(),
        transport_feedback: true,
        offer_first: true,
        tcp_only: false,
    })
    .await
    .expect("mallory joins");
    let room = node.node.room(CONFERENCE).expect("room");
    assert!(eventually(Duration::from_secs(5), || room.participants() == 2).await);

    let text = client_text(&ClientMessage::SetQuality {
        quality: Quality::Low,
        track_id: None,
    });
    let started = Instant::now();
    for _ in 0..FLOOD {
        mallory.send_raw(&text);
    }
    // Alice is answered while mallory floods.
    assert!(
        answers_ping(&mut alice).await,
        "alice is answered during the flood"
    );

    let mut errors = Vec::new();
    while let Some(m) = mallory.next_event(Duration::from_secs(10)).await {
        if let ServerMessage::Error { code, message } = m {
            errors.push((code, message));
        }
    }
    assert!(
        errors.len() >= 2 && errors.iter().all(|(c, _)| *c == ErrorCode::RateLimited),
        "{errors:?}"
    );
    assert!(errors[0].1.contains("dropped"), "{errors:?}");
    assert!(
        errors[errors.len() - 1]
            .1
            .contains("closing the connection"),
        "{errors:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || room.participants() == 1).await,
        "mallory removed from the room"
    );
    let cut_after = started.elapsed();
    let stats = &node.node.stats.signaling;
    assert_eq!(stats.cuts(SignalingCut::RateDisconnect), 1);
    let dropped = stats.cuts(SignalingCut::RateLimited);
    assert!(dropped >= 200, "dropped {dropped}");
    println!(
        "flood of {FLOOD} setQuality: cut off within {cut_after:?}, {dropped} frames dropped \
         before the disconnect, errors to the client: {}",
        errors.len()
    );

    // Alice still works after the flood.
    assert!(
        answers_ping(&mut alice).await,
        "alice is answered after the flood"
    );
    assert_eq!(room.participants(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_before_join_is_cut_off_too() {
    let node = start(10, MediaPolicy::default()).await;
    let mut ws = raw(&node.url).await.expect("upgrade");
    let ping = client_text(&ClientMessage::Ping {});
    for _ in 0..2_000 {
        if ws.feed(Message::Text(ping.clone().into())).await.is_err() {
            break;
        }
    }
    let _ = ws.flush().await;
    let Ending::Closed(errors) = ending(&mut ws, Duration::from_secs(10)).await else {
        panic!("a pre-join flood is closed");
    };
    assert!(errors.contains(&ErrorCode::RateLimited), "{errors:?}");
    assert_eq!(
        node.node.stats.signaling.cuts(SignalingCut::RateDisconnect),
        1
    );
}

/// Sends `bytes` on `stream` and reads what comes back until `patience` runs out or the
/// node closes the connection: the text read, and whether it was closed.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    bytes: &[u8],
    patience: Duration,
) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"ok") {
                    return (String::from_utf8_lossy(&got).into_owned(), false);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_request_head_is_late_is_closed_and_a_timely_one_is_served() {
    let timeout = Duration::from_secs(1);
    let node = limited(limits(timeout, 1000, 1000)).await;
    let addr = node
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/rtc")
        .to_owned();
    let partial = b"GET /healthz HTTP/1.1\r\nHost: node\r\n";

    // Never finishes its head: closed at the deadline, without an answer.
    let mut slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let opened = Instant::now();
    let (answer, closed) = exchange(&mut slow, partial, Duration::from_secs(10)).await;
    let after = opened.elapsed();
    assert!(
        closed && answer.is_empty(),
        "closed {closed}, answer {answer:?}"
    );
    assert!(
        after >= timeout && after < timeout * 5,
        "closed after {after:?}"
    );

    // Finishes its head in time: answered, and the deadline no longer applies to the
    // kept-alive connection.
    let mut timely = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (nothing, closed) = exchange(&mut timely, partial, Duration::from_millis(300)).await;
    assert!(
        !closed && nothing.is_empty(),
        "closed {closed}, answer {nothing:?}"
    );
    let (answer, closed) = exchange(&mut timely, b"\r\n", Duration::from_secs(5)).await;
    assert!(!closed && answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    tokio::time::sleep(timeout * 2).await;
    let again = b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n";
    let (answer, closed) = exchange(&mut timely, again, Duration::from_secs(5)).await;
    assert!(!closed && answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}
