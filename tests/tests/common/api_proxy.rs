//! A proxy between the operator and the API server, for tests of a write whose answer is
//! lost: it forwards every call with the test's own credentials and, once armed, lets the
//! next conference placement land but drops its answer and closes the connection (as a
//! connection lost mid-call does), and holds the operator's Conference watches for a while
//! (as a watch lagging at a busy moment does), so the operator cannot learn from its watch
//! what became of the write.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONNECTION, HOST, HeaderName, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::tls::TestCa;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Headers of one hop, not forwarded (the upstream client sets its own, and its credentials).
const HOP_HEADERS: [HeaderName; 4] = [
    HOST,
    CONNECTION,
    TRANSFER_ENCODING,
    hyper::header::AUTHORIZATION,
];

/// A running proxy on a loopback port; stops when dropped.
pub struct ApiProxy {
    addr: SocketAddr,
    ca: String,
    shared: Arc<Shared>,
    serving: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: kube::Client,
    plan: Mutex<Plan>,
    changed: Notify,
}

#[derive(Default)]
struct Plan {
    /// Armed: lose the answer to the next placement and hold Conference watches this long.
    armed: Option<Duration>,
    /// The conference whose placement landed and whose answer was lost.
    lost: Option<String>,
    /// Conference watch events wait until then.
    hold_until: Option<Instant>,
    /// Conferences read back one by one (not listed or watched) since the lost answer.
    read_back: Vec<String>,
}

impl ApiProxy {
    /// Starts a proxy forwarding to the API server `upstream` talks to.
    pub async fn start(upstream: kube::Client) -> ApiProxy {
        let issued = TestCa::issue_for("127.0.0.1");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(issued.cert.as_bytes()).expect("certificate")],
            PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).expect("key"),
        )
        .expect("a TLS server configuration");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            upstream,
            plan: Mutex::default(),
            changed: Notify::new(),
        });
        let serving = tokio::spawn(serve(
            listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            shared.clone(),
        ));
        ApiProxy {
            addr,
            ca: issued.ca,
            shared,
            serving,
        }
    }

    /// Writes a kubeconfig for the proxy (no credentials: the proxy adds its own) under
    /// `dir`, and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let ca = dir.join("api-proxy-ca.pem");
        std::fs::write(&ca, &self.ca).expect("write the proxy's CA");
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
            "clusters": [{"name": "proxy", "cluster": {
                "server": format!("https://{}", self.addr),
                "certificate-authority": ca,
            }}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
        });
        let path = dir.join("api-proxy.kubeconfig");
        std::fs::write(&path, config.to_string()).expect("write the proxy's kubeconfig");
        path
    }

    /// Loses the answer to the next conference placement that passes, and from that moment
    /// holds Conference watch events for `hold`.
    pub fn lose_next_placement_answer(&self, hold: Duration) {
        self.shared.plan().armed = Some(hold);
    }

    /// The conference whose placement answer was lost, once one was (None after `timeout`).
    pub async fn lost_answer(&self, timeout: Duration) -> Option<String> {
        self.wait(timeout, |plan| plan.lost.clone()).await
    }

    /// Whether conference `name` was read back by itself after the lost answer, waiting at
    /// most `timeout` for it.
    pub async fn read_back(&self, name: &str, timeout: Duration) -> bool {
        self.wait(timeout, |plan| {
            plan.read_back.iter().any(|n| n == name).then_some(())
        })
        .await
        .is_some()
    }

    async fn wait<T>(&self, timeout: Duration, seen: impl Fn(&Plan) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            if let Some(found) = seen(&self.shared.plan()) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl Shared {
    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the armed plan for a placement going up: true when its answer is to be lost.
    fn take_placement(&self) -> bool {
        let mut plan = self.plan();
        let Some(hold) = plan.armed.take() else {
            return false;
        };
        // The hold starts before the write goes up, so the watch event it causes is held too.
        plan.hold_until = Some(Instant::now() + hold);
        true
    }

    /// Records that `name`'s placement landed and its answer was dropped.
    fn note_lost(&self, name: &str) {
        self.plan().lost = Some(name.to_owned());
        self.changed.notify_waiters();
    }

    fn note_read_back(&self, name: &str) {
        let mut plan = self.plan();
        if plan.lost.is_none() {
            return;
        }
        plan.read_back.push(name.to_owned());
        drop(plan);
        self.changed.notify_waiters();
    }

    async fn hold(&self) {
        let until = self.plan().hold_until;
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// Accepts connections until aborted; their tasks end with it.
async fn serve(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    while let Ok((tcp, _)) = listener.accept().await {
        let tls = tls.clone();
        let shared = shared.clone();
        connections.spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request| forward(shared.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Forwards one request upstream and its answer back: loses the answer to an armed placement
/// (an error here closes the operator's connection without a response).
async fn forward(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    let resource = conference_path(&path);
    // The conference whose placement answer is to be lost.
    let lose = match (&parts.method, resource) {
        (&Method::PATCH, Some((name, "/status"))) if places(&body) && shared.take_placement() => {
            Some(name)
        }
        _ => None,
    };
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(&path);
    for (name, value) in &parts.headers {
        if !HOP_HEADERS.contains(name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = shared
        .upstream
        .send(upstream.body(kube::client::Body::from(body))?)
        .await?;
    if let Some(name) = lose {
        shared.note_lost(name);
        return Err("the answer to this placement is lost on purpose".into());
    }
    let watch = path.contains("watch=true") || path.contains("watch=1");
    if parts.method == Method::GET
        && !watch
        && let Some((name, "")) = resource
    {
        shared.note_read_back(name);
    }
    let (mut head, body) = answer.into_parts();
    head.headers.remove(CONNECTION);
    head.headers.remove(TRANSFER_ENCODING);
    let body = body.map_err(BoxError::from);
    let conference_watch = watch && (resource.is_some() || path.contains("/conferences?"));
    let body = if conference_watch {
        let held = body.into_data_stream().then(move |chunk| {
            let shared = shared.clone();
            async move {
                shared.hold().await;
                chunk.map(Frame::data)
            }
        });
        StreamBody::new(held).boxed_unsync()
    } else {
        body.boxed_unsync()
    };
    Ok(Response::from_parts(head, body))
}

/// The conference a path names and what follows its name (`""` or `"/status"`).
fn conference_path(path: &str) -> Option<(&str, &str)> {
    let path = path.split('?').next()?;
    let (_, rest) = path.split_once("/conferences/")?;
    match rest.split_once('/') {
        Some((name, "status")) => Some((name, "/status")),
        Some(_) => None,
        None => Some((rest, "")),
    }
}

/// Whether a status write names a media node: a placement (or a move).
fn places(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v["status"]["mediaNode"].is_string())
}
