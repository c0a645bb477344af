//! Shared set-up of the integration tests: a media node serving on 127.0.0.1 port 0 with a
//! room opened directly through the library API, and join tokens for it.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_crds::token::{JoinClaims, mint};
use conclave_media_node::client::{Client, ClientConfig, Publish};
use conclave_media_node::media::{MediaSettings, TcpPort, UdpMux};
use conclave_media_node::node::IceConfig;
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::signaling::SignalingLimits;
use conclave_media_node::{NodeSettings, NodeState, RoomSettings};
use tokio::sync::oneshot;

pub const KEY: &[u8] = b"test-pool-key";
pub const CONFERENCE: &str = "standup";
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub struct TestNode {
    pub node: Arc<NodeState>,
    pub url: String,
    _stop: oneshot::Sender<()>,
}

pub fn settings() -> NodeSettings {
    NodeSettings {
        name: "test-node".into(),
        join_key: KEY.to_vec(),
        turn_secret: b"turn-secret".to_vec(),
        media: MediaSettings {
            tcp_port: Some(TcpPort::bind((LOOPBACK, 0).into()).expect("media TCP port")),
            ice_disconnected: Duration::from_secs(2),
            ice_failed: Duration::from_secs(4),
            ..MediaSettings::on(
                LOOPBACK,
                UdpMux::bind((LOOPBACK, 0).into()).expect("media port"),
            )
        },
        peer_disconnect: Duration::from_secs(2),
        chat_max_bytes: 256,
    }
}

pub async fn start(max_participants: u32, media: MediaPolicy) -> TestNode {
    start_with(settings(), max_participants, media).await
}

pub async fn start_with(
    settings: NodeSettings,
    max_participants: u32,
    media: MediaPolicy,
) -> TestNode {
    start_limited(
        settings,
        SignalingLimits::default(),
        max_participants,
        media,
    )
    .await
}

/// A node with the given signaling limits.
pub async fn start_limited(
    settings: NodeSettings,
    limits: SignalingLimits,
    max_participants: u32,
    media: MediaPolicy,
) -> TestNode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let node = NodeState::new(settings);
    node.set_public_ip(LOOPBACK);
    node.mark_synced();
    node.set_ice(IceConfig::default());
    node.open_room(RoomSettings {
        conference: CONFERENCE.into(),
        max_participants,
        media,
    })
    .expect("room opens");
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0))
        .await
        .expect("bind");
    let url = format!("ws://{}/rtc", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let served = Arc::clone(&node);
    tokio::spawn(async move {
        let _ = conclave_media_node::server::run(listener, served, limits, async {
            let _ = stopped.await;
        })
        .await;
    });
    TestNode {
        node,
        url,
        _stop: stop,
    }
}

pub fn token(identity: &str) -> String {
    token_for(identity, CONFERENCE)
}

/// A valid join token for `identity` to `conference`.
pub fn token_for(identity: &str, conference: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    mint(
        KEY,
        &JoinClaims {
            conference: conference.into(),
            identity: identity.into(),
            exp,
            publish: true,
        },
    )
}

pub async fn client(node: &TestNode, identity: &str, publish: Publish) -> Client {
    connect(node, identity, publish, true, false).await
}

/// A client that reaches the node over ICE-TCP only (its network lets no UDP out).
pub async fn tcp_client(node: &TestNode, identity: &str, publish: Publish) -> Client {
    connect(node, identity, publish, true, true).await
}

/// A client that reports its downlink only with REMB, sending no transport-wide feedback.
pub async fn remb_client(node: &TestNode, identity: &str, publish: Publish) -> Client {
    connect(node, identity, publish, false, false).await
}

async fn connect(
    node: &TestNode,
    identity: &str,
    publish: Publish,
    transport_feedback: bool,
    tcp_only: bool,
) -> Client {
    Client::connect(ClientConfig {
        url: node.url.clone(),
        conference: CONFERENCE.into(),
        token: token(identity),
        bind_ip: LOOPBACK,
        publish,
        transport_feedback,
        offer_first: true,
        tcp_only,
    })
    .await
    .expect("client joins")
}

pub fn publisher() -> Publish {
    Publish {
        audio: true,
        video_layers: 3,
        chat: true,
    }
}

pub fn viewer() -> Publish {
    Publish {
        audio: false,
        video_layers: 0,
        chat: true,
    }
}

/// Polls `check` every 100 ms until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}
