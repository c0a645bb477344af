//! A client of the Janus API over its WebSocket transport (subprotocol `janus-protocol`): one
//! session per connection, requests matched to replies by transaction, keepalives while the
//! session lives, plugin handles, and the events that answer no request (`webrtcup`, `trickle`,
//! `hangup`, ...) on a channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// A Janus session on its own WebSocket connection.
pub struct Session {
    id: u64,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

/// A plugin handle of a session.
pub struct Handle {
    session: Arc<Session>,
    id: u64,
}

impl Session {
    /// Connects to `url` (`ws://host:port`) and creates a session. Messages that answer no
    /// request of this session go to the returned receiver.
    pub async fn connect(
        url: &str,
    ) -> anyhow::Result<(Arc<Session>, mpsc::UnboundedReceiver<Value>)> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("connecting to Janus at {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let pending = Pending::default();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let replies = Arc::clone(&pending);
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                // An ack only says a plugin request was queued; its answer comes as an event
                // with the same transaction.
                if message["janus"] == "ack" {
                    continue;
                }
                let waiter = message["transaction"]
                    .as_str()
                    .and_then(|t| replies.lock().unwrap_or_else(|e| e.into_inner()).remove(t));
                match waiter {
                    Some(w) => {
                        let _ = w.send(message);
                    }
                    None => {
                        let _ = events_tx.send(message);
                    }
                }
            }
        });
        let mut session = Session {
            id: 0,
            out,
            pending,
            next: AtomicU64::new(1),
            tasks: vec![writer, reader],
        };
        let created = session.call(json!({"janus": "create"})).await?;
        session.id = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus create: no session id in {created}"))?;
        // Janus ends a session after 60 s without a request; keep it alive.
        let (out, id) = (session.out.clone(), session.id);
        session.tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(25)).await;
                let keepalive =
                    json!({"janus": "keepalive", "session_id": id, "transaction": "keepalive"});
                if out
                    .send(Message::Text(keepalive.to_string().into()))
                    .is_err()
                {
                    break;
                }
            }
        }));
        Ok((Arc::new(session), events))
    }

    /// Sends `request` with a fresh transaction and this session's id, and returns the reply
    /// (`success`, or the plugin's `event` after its ack). Janus and plugin errors are errors.
    async fn call(&self, mut request: Value) -> anyhow::Result<Value> {
        let transaction = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        request["transaction"] = json!(transaction);
        if self.id != 0 {
            request["session_id"] = json!(self.id);
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(transaction, tx);
        self.out
            .send(Message::Text(request.to_string().into()))
            .map_err(|_| anyhow!("Janus connection closed"))?;
        let reply = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .with_context(|| format!("no reply from Janus to {}", request["janus"]))?
            .map_err(|_| anyhow!("Janus connection closed before replying"))?;
        if reply["janus"] == "error" {
            bail!("Janus refused {}: {}", request["janus"], reply["error"]);
        }
        let data = &reply["plugindata"]["data"];
        if data.get("error").is_some() {
            bail!("plugin refused {}: {}", request["body"], data["error"]);
        }
        Ok(reply)
    }

    /// Attaches a handle of `plugin` (such as `janus.plugin.videoroom`).
    pub async fn attach(self: &Arc<Self>, plugin: &str) -> anyhow::Result<Handle> {
        let reply = self
            .call(json!({"janus": "attach", "plugin": plugin}))
            .await?;
        let id = reply["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus attach: no handle id in {reply}"))?;
        Ok(Handle {
            session: Arc::clone(self),
            id,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Handle {
    /// Sends a plugin request with an optional JSEP and returns Janus's reply to it.
    pub async fn message(&self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut request = json!({"janus": "message", "handle_id": self.id, "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        self.session.call(request).await
    }

    /// Trickles one ICE candidate (`{"candidate", "sdpMid", "sdpMLineIndex"}` or
    /// `{"completed": true}`); Janus's ack is not awaited.
    pub fn trickle(&self, candidate: Value) {
        let request = json!({
            "janus": "trickle",
            "session_id": self.session.id,
            "handle_id": self.id,
            "transaction": "trickle",
            "candidate": candidate,
        });
        let _ = self
            .session
            .out
            .send(Message::Text(request.to_string().into()));
    }
}
