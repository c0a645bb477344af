//! The node's one UDP port: a call's media flows through it, garbage sent to it during the
//! call (random bytes, malformed STUN, checks naming no peer connection, media from unknown
//! addresses, a probe flood) is dropped and counted without disturbing the call, and a plain
//! STUN binding request (the reachability probe) is answered with the address it came from.
//! A client whose network lets no UDP out publishes and receives through the node's TCP port.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use conclave_media_node::client::MediaShape;
use conclave_media_node::media::mux::PortDrop;
use conclave_media_node::room::MediaPolicy;
use tokio::net::UdpSocket;

const COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// A STUN binding request, with a USERNAME attribute when `username` is given.
fn binding_request(username: Option<&str>, transaction: u8) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(u) = username {
        body.extend_from_slice(&0x0006u16.to_be_bytes());
        body.extend_from_slice(&(u.len() as u16).to_be_bytes());
        body.extend_from_slice(u.as_bytes());
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&COOKIE);
    m.extend_from_slice(&[transaction; 12]);
    m.extend_from_slice(&body);
    m
}

/// The address in a binding success response's XOR-MAPPED-ADDRESS (IPv4).
fn mapped_address(response: &[u8]) -> Option<SocketAddr> {
    (response.len() >= 32 && response[..2] == [0x01, 0x01] && response[20..22] == [0, 0x20]).then(
        || {
            let port = u16::from_be_bytes([response[26], response[27]]) ^ 0x2112;
            let ip: [u8; 4] = std::array::from_fn(|i| response[28 + i] ^ COOKIE[i]);
            SocketAddr::from((ip, port))
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_is_dropped_and_counted_while_the_call_goes_on() {
    let node = start(10, MediaPolicy::default()).await;
    let port = node.node.settings.media.port.local_addr();
    let alice = client(&node, "alice", publisher()).await;
    let _media = alice.start_media(MediaShape::default());
    let bob = client(&node, "bob", viewer()).await;
    let stats = bob.stats.clone();
    assert!(
        eventually(Duration::from_secs(15), || stats.total_packets() > 200).await,
        "bob receives alice's media"
    );
    let counters = node.node.settings.media.port.counters();
    let forwarded = node.node.stats.forward.received_total();
    assert!(
        counters.received() >= forwarded,
        "the media came in through the one port: {} datagrams read, {forwarded} RTP packets received",
        counters.received()
    );

    // Garbage from an address that has no path with any peer connection.
    let stranger = UdpSocket::bind((LOOPBACK, 0)).await.expect("bind");
    let before = |reason| counters.dropped(reason);
    let (malformed, unknown) = (before(PortDrop::Malformed), before(PortDrop::UnknownSource));
    let mut sent_malformed = 0;
    let mut sent_unknown = 0;
    for i in 0..500u16 {
        let noise: Vec<u8> = (0..(i % 200))
            .map(|b| (b as u8).wrapping_mul(37) ^ 0xC7)
            .collect();
        let mut bad_stun = binding_request(Some("x:y"), 1);
        bad_stun[3] ^= 0x10; // the length field no longer matches
        let check = binding_request(Some(&format!("nobody{i}:client")), 2);
        let mut rtp = vec![0x80, 96];
        rtp.extend_from_slice(&[i as u8; 30]);
        let dtls = [22u8, 254, 253, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1];
        for datagram in [&noise[..], &bad_stun[..]] {
            stranger.send_to(datagram, port).await.expect("send");
            sent_malformed += 1;
        }
        for datagram in [&check[..], &rtp[..], &dtls[..]] {
            stranger.send_to(datagram, port).await.expect("send");
            sent_unknown += 1;
        }
        // Paced, so that the socket's buffer (not the port) is never what drops them.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The zero-length noise datagram is read as one too.
    assert!(
        eventually(Duration::from_secs(5), || {
            counters.dropped(PortDrop::Malformed) - malformed >= sent_malformed
                && counters.dropped(PortDrop::UnknownSource) - unknown >= sent_unknown
        })
        .await,
        "every bad datagram is counted: malformed {} of {sent_malformed}, unknown source {} of {sent_unknown}",
        counters.dropped(PortDrop::Malformed) - malformed,
        counters.dropped(PortDrop::UnknownSource) - unknown,
    );

    // The call goes on.
    let packets = stats.total_packets();
    assert!(
        eventually(Duration::from_secs(5), || stats.total_packets()
            > packets + 100)
        .await,
        "bob still receives media after the garbage"
    );

    // A probe is answered with the address it came from.
    let prober = UdpSocket::bind((LOOPBACK, 0)).await.expect("bind");
    let mut answer = [0u8; 64];
    let mut seen = None;
    for attempt in 0..10u8 {
        prober
            .send_to(&binding_request(None, 100 + attempt), port)
            .await
            .expect("send");
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(500), prober.recv_from(&mut answer)).await
        {
            assert_eq!(from, port, "answered from the port");
            assert_eq!(&answer[8..20], &[100 + attempt; 12], "transaction echoed");
            seen = mapped_address(&answer[..n]);
            break;
        }
    }
    assert_eq!(
        seen,
        Some(prober.local_addr().expect("addr")),
        "the probe sees its own address"
    );

    // A flood of probes is answered only up to the rate.
    for i in 0..400u16 {
        stranger
            .send_to(&binding_request(None, i as u8), port)
            .await
            .expect("send");
    }
    assert!(
        eventually(Duration::from_secs(5), || counters
            .dropped(PortDrop::ProbeLimited)
            > 300)
        .await,
        "most of a probe flood is not answered: {} limited, {} answered",
        counters.dropped(PortDrop::ProbeLimited),
        counters.probes_answered()
    );
    let metrics = conclave_media_node::metrics::render(&node.node);
    assert!(
        metrics.contains(
            "conclave_media_node_port_datagrams_dropped_total{reason=\"unknown_source\"}"
        ),
        "the drops are in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_cannot_send_udp_publishes_through_the_tcp_port() {
    let node = start(10, MediaPolicy::default()).await;
    let tcp = node
        .node
        .settings
        .media
        .tcp_port
        .as_ref()
        .expect("ICE-TCP on");
    let alice = tcp_client(&node, "alice", publisher()).await;
    let _media = alice.start_media(MediaShape::default());
    let bob = tcp_client(&node, "bob", viewer()).await;
    let carol = client(&node, "carol", viewer()).await;
    for (who, stats) in [("bob", bob.stats.clone()), ("carol", carol.stats.clone())] {
        assert!(
            eventually(Duration::from_secs(15), || stats.total_packets() > 200).await,
            "{who} receives alice's media, which came in over TCP"
        );
    }
    assert!(
        alice
            .node_candidates()
            .iter()
            .any(|c| c.contains(" tcp ") && c.contains("tcptype passive")),
        "the node offered its passive TCP candidate: {:?}",
        alice.node_candidates()
    );
    assert!(
        !alice
            .node_candidates()
            .iter()
            .any(|c| c.contains("tcptype active")),
        "the node offers no active TCP candidate: {:?}",
        alice.node_candidates()
    );
    assert_eq!(
        tcp.counters().handed_over(),
        2,
        "alice's and bob's connections were handed to their peer connections"
    );
    let metrics = conclave_media_node::metrics::render(&node.node);
    assert!(
        metrics.contains("conclave_media_node_tcp_connections_handed_over_total 2"),
        "the hand-overs are in /metrics"
    );
}
