//! The bench's bridge from Conclave's signaling protocol to Janus's VideoRoom, so the same
//! webrtc-crate clients drive both SFUs: it serves `/rtc` on loopback and, per client, opens a
//! Janus session with one VideoRoom handle. The join token is the client's identity: `pub<i>`
//! joins as a publisher (its offer goes to `joinandconfigure`, Janus's answer comes back);
//! anyone else becomes one multistream subscriber of every publisher's feed but the one named
//! by its identity without the `/recv` suffix (Janus offers, the client answers, `start`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use conclave_media_node::room::model::ParticipantId;
use conclave_media_node::signaling::protocol::{
    Candidate, ClientMessage, ServerMessage, parse_client,
};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::janus::ROOM;
use super::janus_api::Session;

const VIDEOROOM: &str = "janus.plugin.videoroom";

/// Feeds of the room by publisher identity, filled once each publisher's media is up.
struct Room {
    janus: String,
    publishers: usize,
    feeds: Mutex<HashMap<String, u64>>,
    changed: Notify,
}

/// Serves the bridge for a Janus at `janus` (its WebSocket API) whose room will have
/// `publishers` publishers; returns the signaling URL for the clients.
pub async fn serve(janus: &str, publishers: usize) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/rtc", listener.local_addr()?);
    let room = Arc::new(Room {
        janus: janus.to_owned(),
        publishers,
        feeds: Mutex::default(),
        changed: Notify::new(),
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let room = Arc::clone(&room);
            tokio::spawn(async move {
                if let Err(e) = participant(tcp, room).await {
                    eprintln!("janus bridge: {e:#}");
                }
            });
        }
    });
    Ok(url)
}

fn text(m: &ServerMessage) -> Message {
    Message::Text(m.to_text().into())
}

async fn participant(tcp: tokio::net::TcpStream, room: Arc<Room>) -> anyhow::Result<()> {
    let ws = tokio_tungstenite::accept_async(tcp).await?;
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let identity = match next_message(&mut stream).await? {
        ClientMessage::Join {
            token, conference, ..
        } => {
            let _ = out.send(text(&ServerMessage::Joined {
                participant_id: ParticipantId(rand::random()),
                conference,
                ice_servers: Vec::new(),
                participants: Vec::new(),
                chat: None,
                fallback_urls: Vec::new(),
                simulcast: true,
                last_n: None,
            }));
            token
        }
        other => bail!("expected join, got {}", other.kind()),
    };
    let (session, mut events) = Session::connect(&room.janus).await?;
    let handle = session.attach(VIDEOROOM).await?;
    let publisher = identity.starts_with("pub") && !identity.ends_with("/recv");
    if !publisher {
        let own = identity.trim_end_matches("/recv");
        let streams: Vec<Value> = all_feeds(&room)
            .await?
            .into_iter()
            .filter(|(who, _)| who != own)
            .map(|(_, feed)| json!({"feed": feed}))
            .collect();
        let reply = handle
            .message(
                json!({"request": "join", "ptype": "subscriber", "room": ROOM, "streams": streams}),
                None,
            )
            .await?;
        let sdp = jsep_sdp(&reply).context("Janus's subscriber offer")?;
        let _ = out.send(text(&ServerMessage::Offer { sdp }));
    }

    // Janus's own events: its trickled candidates, and (for a publisher) the moment its media
    // is up, after which subscribers may ask for its feed.
    let feed = Arc::new(std::sync::OnceLock::<u64>::new());
    let (from_janus, room2, who, feed2) = (
        out.clone(),
        Arc::clone(&room),
        identity.clone(),
        Arc::clone(&feed),
    );
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event["janus"].as_str() {
                Some("trickle") => {
                    let c = &event["candidate"];
                    let candidate = Candidate {
                        candidate: c["candidate"].as_str().unwrap_or_default().to_owned(),
                        sdp_mid: c["sdpMid"].as_str().map(str::to_owned),
                        sdp_m_line_index: c["sdpMLineIndex"].as_u64().map(|i| i as u16),
                        username_fragment: None,
                    };
                    let _ = from_janus.send(text(&ServerMessage::Candidate { candidate }));
                }
                Some("webrtcup") => {
                    if let Some(id) = feed2.get() {
                        room2.feeds.lock().await.insert(who.clone(), *id);
                        room2.changed.notify_waiters();
                    }
                }
                _ => {}
            }
        }
    });

    loop {
        let message = match next_message(&mut stream).await {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
        match message {
            ClientMessage::Offer { sdp, .. } if publisher => {
                let reply = handle
                    .message(
                        json!({"request": "joinandconfigure", "ptype": "publisher", "room": ROOM, "display": identity}),
                        Some(json!({"type": "offer", "sdp": sdp})),
                    )
                    .await?;
                let id = reply["plugindata"]["data"]["id"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("no publisher id in {reply}"))?;
                let _ = feed.set(id);
                let sdp = jsep_sdp(&reply).context("Janus's publisher answer")?;
                let _ = out.send(text(&ServerMessage::Answer { sdp }));
            }
            ClientMessage::Answer { sdp } if !publisher => {
                handle
                    .message(
                        json!({"request": "start"}),
                        Some(json!({"type": "answer", "sdp": sdp})),
                    )
                    .await?;
            }
            ClientMessage::Candidate { candidate } if candidate.candidate.is_empty() => {
                handle.trickle(json!({"completed": true}));
            }
            // Janus drops a candidate whose mid names no m-line, and the client's are bundled
            // on the first one.
            ClientMessage::Candidate { candidate } => handle.trickle(json!({
                "candidate": candidate.candidate,
                "sdpMLineIndex": candidate.sdp_m_line_index.unwrap_or(0),
            })),
            ClientMessage::Ping {} => {
                let _ = out.send(text(&ServerMessage::Pong {}));
            }
            ClientMessage::Leave {} => return Ok(()),
            other => eprintln!("janus bridge: {identity} sent {}; ignored", other.kind()),
        }
    }
}

async fn next_message<S>(stream: &mut S) -> anyhow::Result<ClientMessage>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => return Ok(parse_client(t.as_str())?),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => bail!("client closed"),
            Some(Ok(_)) => {}
        }
    }
}

/// Waits (up to 30 s) until every publisher's media is up, and returns their feeds.
async fn all_feeds(room: &Room) -> anyhow::Result<Vec<(String, u64)>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let changed = room.changed.notified();
        {
            let feeds = room.feeds.lock().await;
            if feeds.len() >= room.publishers {
                let mut all: Vec<_> = feeds.iter().map(|(w, f)| (w.clone(), *f)).collect();
                all.sort();
                return Ok(all);
            }
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            bail!("publishers' media did not come up within 30 s");
        }
    }
}

fn jsep_sdp(reply: &Value) -> anyhow::Result<String> {
    reply["jsep"]["sdp"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no jsep in {reply}"))
}
