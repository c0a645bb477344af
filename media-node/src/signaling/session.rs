//! One client's WebSocket session on `/rtc`: it waits for `join`, checks the token, sends the
//! client to the right node when its conference is hosted elsewhere, checks the node's
//! capacity, builds the participant's peer connection and peer task, asks the room to admit
//! it, then relays messages both ways. Refused messages get an error back; a client that
//! keeps sending garbage is disconnected, alone.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::sync::mpsc;

use super::protocol::{ClientMessage, ErrorCode, ServerMessage, parse_client};
use crate::cluster::directory::{Placement, locate};
use crate::media::engine::build_peer;
use crate::media::handler::PeerEvents;
use crate::media::nat::NatMapping;
use crate::media::peer::{PeerCommand, PeerTask};
use crate::node::NodeState;
use crate::room::model::ParticipantId;
use crate::room::task::{JoinRequest, RoomHandle};

/// Refused messages a client may send before it is disconnected.
pub const MAX_STRIKES: u32 = 5;
/// Messages queued to a client before it counts as not reading (and is disconnected).
const OUTBOUND_DEPTH: usize = 1024;
/// How long a closing session waits for the client's close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// WebSocket close code for policy violations.
const POLICY_VIOLATION: u16 = 1008;

struct Session {
    socket: WebSocket,
    node: Arc<NodeState>,
    strikes: u32,
}

enum Refusal {
    /// Error sent; keep going.
    Continue,
    /// Error sent; close the socket.
    Close,
}

impl Session {
    async fn send(&mut self, message: &ServerMessage) -> bool {
        self.socket
            .send(Message::Text(message.to_text().into()))
            .await
            .is_ok()
    }

    async fn refuse(&mut self, code: ErrorCode, message: String) -> Refusal {
        self.node.stats.signaling_error();
        self.strikes += 1;
        let _ = self.send(&ServerMessage::error(code, message)).await;
        if self.strikes >= MAX_STRIKES || code == ErrorCode::TooLarge {
            self.close(Some(CloseFrame {
                code: POLICY_VIOLATION,
                reason: "too many invalid messages".into(),
            }))
            .await;
            Refusal::Close
        } else {
            Refusal::Continue
        }
    }

    async fn close_with(&mut self, code: ErrorCode, message: String) {
        self.node.stats.signaling_error();
        let _ = self.send(&ServerMessage::error(code, message)).await;
        self.close(None).await;
    }

    /// Closes the WebSocket and reads until the client's close frame (bounded in time), so the
    /// TCP connection is not reset while the client still has data in flight: a reset could
    /// discard the last messages (`left`, an error) before the client reads them.
    async fn close(&mut self, frame: Option<CloseFrame>) {
        let _ = self.socket.send(Message::Close(frame)).await;
        let drain = async {
            while let Some(Ok(m)) = self.socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
    }

    /// The next parsed client message, `None` when the socket closed or the client was
    /// disconnected for misbehaving.
    async fn next_message(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
    ) -> Option<Option<ClientMessage>> {
        let frame = match frame {
            None | Some(Err(_)) => return None,
            Some(Ok(f)) => f,
        };
        let refusal = match frame {
            Message::Text(text) => match parse_client(text.as_str()) {
                Ok(m) => return Some(Some(m)),
                Err(e) => self.refuse(e.code(), e.to_string()).await,
            },
            Message::Binary(_) => {
                self.refuse(
                    ErrorCode::Malformed,
                    "binary frames are not part of the protocol; send JSON text".into(),
                )
                .await
            }
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => return Some(None),
        };
        match refusal {
            Refusal::Continue => Some(None),
            Refusal::Close => None,
        }
    }
}

/// Serves one WebSocket until it closes.
pub async fn serve(socket: WebSocket, node: Arc<NodeState>) {
    let mut session = Session {
        socket,
        node,
        strikes: 0,
    };
    let joined = loop {
        let frame = session.socket.recv().await;
        match session.next_message(frame).await {
            None => return,
            Some(None) => continue,
            Some(Some(ClientMessage::Join {
                conference,
                token,
                quality,
            })) => match join(
                &mut session,
                &conference,
                &token,
                quality.unwrap_or_default(),
            )
            .await
            {
                Some(j) => break j,
                None => return,
            },
            Some(Some(ClientMessage::Ping {})) => {
                let _ = session.send(&ServerMessage::Pong {}).await;
            }
            Some(Some(other)) => {
                let message = format!("{} before join: send join first", other.kind());
                if let Refusal::Close = session.refuse(ErrorCode::Unexpected, message).await {
                    return;
                }
            }
        }
    };
    let (room, participant, mut outbound) = joined;
    loop {
        tokio::select! {
            frame = session.socket.recv() => match session.next_message(frame).await {
                None => break,
                Some(None) => {}
                Some(Some(message)) => {
                    let leaving = matches!(message, ClientMessage::Leave {});
                    room.client(participant, message);
                    if leaving {
                        // Deliver the room's goodbye, then close.
                        while let Some(m) = outbound.recv().await {
                            if !session.send(&m).await { break; }
                        }
                        break;
                    }
                }
            },
            message = outbound.recv() => match message {
                Some(m) => {
                    if !session.send(&m).await {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    room.disconnected(participant);
    session.close(None).await;
}

async fn join(
    session: &mut Session,
    conference: &str,
    token: &str,
    quality: crate::forward::layers::Quality,
) -> Option<(RoomHandle, ParticipantId, mpsc::Receiver<ServerMessage>)> {
    let node = Arc::clone(&session.node);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = match conclave_crds::token::verify(&node.settings.join_key, token, conference, now)
    {
        Ok(c) => c,
        Err(e) => {
            node.stats.join_refused();
            session
                .close_with(ErrorCode::Unauthorized, e.to_string())
                .await;
            return None;
        }
    };
    let Some(room) = node.room(conference) else {
        redirect(session, conference).await;
        return None;
    };
    let admission = match node.admit() {
        Ok(a) => a,
        Err(e) => {
            node.stats.join_refused();
            session.close_with(ErrorCode::NodeFull, e.to_string()).await;
            return None;
        }
    };
    let participant = node.next_participant_id();
    let nat = NatMapping::between(node.settings.media.bind_ip, node.public_ip());
    let handler = Arc::new(PeerEvents::new(participant, room.events(), nat));
    let (pc, port, feedback) = match build_peer(&node.settings.media, handler).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(conference, error = %e, "cannot build a peer connection");
            session.close_with(ErrorCode::Internal, e.to_string()).await;
            return None;
        }
    };
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_DEPTH);
    let (peer_tx, peer_rx) = mpsc::unbounded_channel();
    let peer = PeerTask::new(
        participant,
        pc,
        port,
        outbound_tx.clone(),
        room.events(),
        Arc::clone(&node.stats),
        quality,
        nat,
    );
    tokio::spawn(peer.run(peer_rx, feedback));
    let request = JoinRequest {
        participant,
        identity: claims.identity,
        may_publish: claims.publish,
        quality,
        outbound: outbound_tx,
        peer: peer_tx.clone(),
    };
    let joined = room.join(request).await;
    // Counted by the room now (or refused): the place goes back.
    drop(admission);
    if let Err((code, message)) = joined {
        let _ = peer_tx.send(PeerCommand::Close);
        session.close_with(code, message).await;
        return None;
    }
    Some((room, participant, outbound_rx))
}

/// Answers a verified `join` for a conference this node does not host: `reconnect` to the
/// node that hosts it, or an error saying whether to retry.
async fn redirect(session: &mut Session, conference: &str) {
    let node = Arc::clone(&session.node);
    match locate(&node, conference).await {
        Placement::Elsewhere {
            node: host,
            signaling_url,
        } => {
            tracing::info!(conference, host = %host, "redirecting a client to the hosting node");
            let reconnect = ServerMessage::Reconnect {
                signaling_url,
                reason: format!("conference {conference} is hosted on media node {host}"),
            };
            let _ = session.send(&reconnect).await;
            session.close(None).await;
        }
        Placement::Pending => {
            let message = format!(
                "conference {conference:?} is not on a live media node yet (being placed or \
                 moving): join again in a few seconds"
            );
            session.close_with(ErrorCode::NotPlaced, message).await;
        }
        Placement::Unknown => {
            let message = format!(
                "conference {conference:?} is not hosted on media node {} and is not known to \
                 be anywhere else: fetch its join info again",
                node.settings.name
            );
            session.close_with(ErrorCode::NotHere, message).await;
        }
    }
}
