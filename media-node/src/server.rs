//! The HTTP side of the node: `/rtc` (signaling WebSocket), the browser call page at `/`,
//! `/healthz`, `/readyz` and `/metrics`, served on an already-bound listener until `shutdown` resolves.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::error::{Error, Result};
use crate::node::{NodeState, RateSampler};
use crate::signaling::protocol::MAX_MESSAGE_BYTES;

/// How often bitrates and CPU are sampled for metrics and load reports.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(2);

/// The router of the node's HTTP endpoints.
pub fn router(node: Arc<NodeState>) -> Router {
    Router::new()
        .route("/rtc", get(rtc))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::web::routes())
        .with_state(node)
}

async fn rtc(State(node): State<Arc<NodeState>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES * 2)
        .max_frame_size(MAX_MESSAGE_BYTES * 2)
        .on_upgrade(move |socket| crate::signaling::session::serve(socket, node))
}

async fn readyz(State(node): State<Arc<NodeState>>) -> Response {
    match node.readiness() {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
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

/// Serves signaling and probes on `listener` until `shutdown` resolves. Rooms are opened on
/// `node` by the caller (Kubernetes watch or directly).
pub async fn run(
    listener: TcpListener,
    node: Arc<NodeState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
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
    tracing::info!(%addr, node = %node.settings.name, "signaling listening");
    let served = axum::serve(listener, router(node))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Serve { addr, source });
    sampler.abort();
    served
}
