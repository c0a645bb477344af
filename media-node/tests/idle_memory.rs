//! What an idle signaling socket costs the node: opens sockets that complete the WebSocket
//! upgrade and never send `join`, and prints the resident memory (VmRSS) and descriptors they
//! add to this process. The client side is a bare TCP stream with a hand-written upgrade, so
//! nearly all of the growth is the node's.

mod common;

use std::time::Duration;

use common::*;
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::signaling::SignalingLimits;
use conclave_media_node::signaling::limits::ConnectionCaps;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SOCKETS: usize = 400;

fn vm_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Opens a socket and completes the upgrade by hand; returns it once the node answered 101.
async fn idle_socket(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"GET /rtc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).await.expect("read");
        assert!(n == 1, "closed during the upgrade");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cost_little_memory() {
    // Idle sockets must outlive the measurement: a long join timeout, caps above the count.
    let limits = SignalingLimits {
        join_timeout: Duration::from_secs(120),
        connections: ConnectionCaps {
            per_node: 10_000,
            per_address: 10_000,
        },
        ..SignalingLimits::default()
    };
    let node = start_limited(settings(), limits, 10, MediaPolicy::default()).await;
    let addr = node
        .url
        .trim_start_matches("ws://")
        .trim_end_matches("/rtc")
        .to_owned();
    // Warm up allocator and runtime with a first batch that is closed again.
    let warm: Vec<_> = futures::future::join_all((0..20).map(|_| idle_socket(&addr))).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss0, fd0) = (vm_rss_kb(), descriptors());
    let mut sockets = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        sockets.push(idle_socket(&addr).await);
    }
    // Each session has read (nothing) from its socket once the node answered; let them settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, fd1) = (vm_rss_kb(), descriptors());
    let per_socket_kb = (rss1.saturating_sub(rss0)) as f64 / SOCKETS as f64;
    println!(
        "idle sockets: {SOCKETS}; VmRSS {rss0} kB -> {rss1} kB ({per_socket_kb:.1} kB per socket); \
         descriptors {fd0} -> {fd1} ({:.2} per socket, client and node ends)",
        (fd1 - fd0) as f64 / SOCKETS as f64
    );
    assert_eq!(
        node.node.stats.signaling.open_sockets() as usize,
        SOCKETS,
        "every idle socket is a session"
    );
    // ~150 kB with tungstenite's default 128 KiB read buffer and the join future inline; ~8 kB now.
    assert!(
        per_socket_kb < 32.0,
        "{per_socket_kb:.1} kB per idle socket"
    );
    drop(sockets);
}
