//! The HTTP side of the node: `/rtc` (signaling WebSocket), the browser call page at `/`,
//! `/healthz`, `/readyz` and `/metrics`, served on an already-bound listener until `shutdown` resolves.
//! A WebSocket upgrade over the node's or the source address's connection cap is refused
//! before any WebSocket state exists.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRef, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::serve::Listener;

use crate::head_deadline::HeadDeadline;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::node::{NodeState, RateSampler, SignalingCut};
use crate::signaling::SignalingLimits;
use crate::signaling::connections::{ConnectionRefused, Connections};
use crate::signaling::limits::{READ_BUFFER_BYTES, WRITE_BUFFER_BYTES};
use crate::signaling::protocol::MAX_MESSAGE_BYTES;

/// How often bitrates and CPU are sampled for metrics and load reports.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// Seconds a client refused for the connection caps is asked to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: &str = "5";

/// What the handlers share: the node, and the signaling endpoint's limits and open sockets.
#[derive(Clone)]
struct Served {
    node: Arc<NodeState>,
    limits: SignalingLimits,
    connections: Arc<Connections>,
}

impl FromRef<Served> for Arc<NodeState> {
    fn from_ref(served: &Served) -> Self {
        Arc::clone(&served.node)
    }
}

/// The address a connection comes from, over plain TCP or TLS alike (axum knows it only for
/// its own TcpListener).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl<L: Listener<Addr = SocketAddr>> Connected<IncomingStream<'_, HeadDeadline<L>>> for Peer {
    fn connect_info(stream: IncomingStream<'_, HeadDeadline<L>>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// The router of the node's HTTP endpoints. Serve it with
/// `into_make_service_with_connect_info::<Peer>()`: `/rtc` counts sockets by source address.
pub fn router(node: Arc<NodeState>, limits: SignalingLimits) -> Router {
    let served = Served {
        node,
        limits,
        connections: Arc::new(Connections::new(limits.connections)),
    };
    Router::new()
        .route("/rtc", get(rtc))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(crate::web::routes())
        .with_state(served)
}

async fn rtc(
    State(served): State<Served>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let permit = match served.connections.admit(peer.ip()) {
        Ok(p) => p,
        Err(refused) => return refuse(&served.node, &refused),
    };
    let Served { node, limits, .. } = served;
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES * 2)
        .max_frame_size(MAX_MESSAGE_BYTES * 2)
        .on_upgrade(move |socket| crate::signaling::session::serve(socket, node, limits, permit))
}

/// The HTTP answer to an upgrade over a cap: 503 when the node is full (another node may have
/// room), 429 when the source address is; both ask the client to wait before retrying.
fn refuse(node: &NodeState, refused: &ConnectionRefused) -> Response {
    let (status, cut) = match refused {
        ConnectionRefused::NodeFull { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, SignalingCut::NodeFull)
        }
        ConnectionRefused::AddressFull { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, SignalingCut::AddressFull)
        }
    };
    node.stats.signaling.cut(cut);
    tracing::debug!(reason = cut.as_str(), "signaling upgrade refused");
    (
        status,
        [(header::RETRY_AFTER, RETRY_AFTER_SECONDS)],
        refused.to_string(),
    )
        .into_response()
}

async fn readyz(State(node): State<Arc<NodeState>>) -> Response {
    match node.readiness() {
        Ok(what) => (StatusCode::OK, what).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// Serves `/metrics` of `node` on `listener`, kept off the public signaling port, until
/// `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    node: Arc<NodeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let addr = listener.local_addr().map_err(|source| Error::Serve {
        addr: ([0, 0, 0, 0], 0).into(),
        source,
    })?;
    tracing::info!(%addr, "metrics listening");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source })
}

async fn metrics(State(node): State<Arc<NodeState>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&node),
    )
        .into_response()
}

/// Serves signaling and probes on `listener` (TCP, or TLS from [`crate::tls`]) until
/// `shutdown` resolves. Rooms are opened on `node` by the caller (Kubernetes watch or directly).
pub async fn run<L>(
    listener: L,
    node: Arc<NodeState>,
    limits: SignalingLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let addr = listener.local_addr().map_err(|source| Error::Serve {
        addr: ([0, 0, 0, 0], 0).into(),
        source,
    })?;
    let sampler_node = Arc::clone(&node);
    let sampler = tokio::spawn(async move {
        let mut sampler = RateSampler::new(&sampler_node.stats);
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        loop {
            tick.tick().await;
            sampler.sample(&sampler_node.stats);
        }
    });
    let governor = tokio::spawn(crate::node::shedding::govern(Arc::clone(&node.stats)));
    tracing::info!(%addr, node = %node.settings.name, "signaling listening");
    let app = router(node, limits).into_make_service_with_connect_info::<Peer>();
    // A connection has as long to send its request head as a socket has to join.
    let listener = HeadDeadline::new(listener, limits.join_timeout);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source });
    sampler.abort();
    governor.abort();
    served
}
