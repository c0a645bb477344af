//! One client's WebSocket session on `/rtc`: it waits for `join` (closing the socket when none
//! comes within the join timeout), checks the token, sends the client to the right node when
//! its conference is hosted elsewhere, checks the node's capacity, builds the participant's
//! peer connection and peer task, asks the room to admit it, then relays messages both ways.
//! Every frame is charged to the session's message budget; frames over it are dropped, and a
//! client that keeps on is disconnected. Refused messages get an error back; a client that
//! keeps sending garbage is disconnected, alone.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use tokio::sync::mpsc;

use super::budget::{MessageBudget, Verdict};
use super::connections::ConnectionPermit;
use super::display_name::display_name;
use super::limits::SignalingLimits;
use super::protocol::{ClientMessage, ErrorCode, ServerMessage, parse_client};
use crate::cluster::directory::{Placement, locate};
use crate::media::engine::build_peer;
use crate::media::handler::PeerEvents;
use crate::media::nat::HostCandidate;
use crate::media::peer::{PeerCommand, PeerTask};
use crate::node::{NodeState, SignalingCut};
use crate::room::model::ParticipantId;
use crate::room::task::{JoinRequest, RoomHandle};

/// Refused messages a client may send before it is disconnected.
pub const MAX_STRIKES: u32 = 5;
/// Messages queued to a client before it counts as not reading (and is disconnected).
const OUTBOUND_DEPTH: usize = 1024;
/// How long a closing session waits for the client's close frame.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long one message may take to go out before the client counts as not reading (and the
/// session ends): a client cannot hold a session by never reading its socket.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// WebSocket close code for policy violations.
const POLICY_VIOLATION: u16 = 1008;

struct Session {
    socket: WebSocket,
    node: Arc<NodeState>,
    strikes: u32,
    budget: MessageBudget,
    /// The socket's place within the connection caps, given back when the session ends.
    _permit: ConnectionPermit,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.node.stats.signaling.socket_closed();
    }
}

enum Refusal {
    /// Error sent; keep going.
    Continue,
    /// Error sent; close the socket.
    Close,
}

impl Session {
    async fn send(&mut self, message: &ServerMessage) -> bool {
        let sent = self.socket.send(Message::Text(message.to_text().into()));
        matches!(tokio::time::timeout(SEND_WAIT, sent).await, Ok(Ok(())))
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

    /// Sends an error and closes the socket as a policy violation.
    async fn cut_off(&mut self, cut: SignalingCut, code: ErrorCode, message: String) {
        self.node.stats.signaling.cut(cut);
        tracing::debug!(reason = cut.as_str(), "signaling client cut off");
        let _ = self.send(&ServerMessage::error(code, message)).await;
        self.close(Some(CloseFrame {
            code: POLICY_VIOLATION,
            reason: cut.as_str().into(),
        }))
        .await;
    }

    /// Charges one frame to the budget: `None` to handle it, `Some(open)` when it was dropped
    /// (`open` false when the client was disconnected for it).
    async fn over_budget(&mut self) -> Option<bool> {
        match self.budget.charge(Instant::now()) {
            Verdict::Accept => None,
            Verdict::Drop { first } => {
                self.node.stats.signaling.cut(SignalingCut::RateLimited);
                if first {
                    let limit = self.budget.limit();
                    let message = format!(
                        "more than {} messages per second (bursts of {}): messages are dropped \
                         for the next {} ms; slow down, or the node closes the connection",
                        limit.per_second,
                        limit.burst,
                        self.budget.next_token_in().as_millis().max(1)
                    );
                    let _ = self
                        .send(&ServerMessage::error(ErrorCode::RateLimited, message))
                        .await;
                }
                Some(true)
            }
            Verdict::Disconnect => {
                let limit = self.budget.limit();
                let message = format!(
                    "kept sending over the limit of {} messages per second (bursts of {}): \
                     closing the connection",
                    limit.per_second, limit.burst
                );
                self.cut_off(
                    SignalingCut::RateDisconnect,
                    ErrorCode::RateLimited,
                    message,
                )
                .await;
                Some(false)
            }
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
        let _ = tokio::time::timeout(SEND_WAIT, self.socket.send(Message::Close(frame))).await;
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
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(f)) => f,
        };
        if let Some(open) = self.over_budget().await {
            return open.then_some(None);
        }
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

/// Serves one WebSocket until it closes, holding its place within the connection caps.
pub async fn serve(
    socket: WebSocket,
    node: Arc<NodeState>,
    limits: SignalingLimits,
    permit: ConnectionPermit,
) {
    node.stats.signaling.socket_opened();
    let mut session = Session {
        socket,
        node,
        strikes: 0,
        budget: MessageBudget::new(limits.rate, Instant::now()),
        _permit: permit,
    };
    // Joining (token, placement lookup, peer connection) is boxed: its large future is only
    // allocated once a join arrives, so sessions waiting for one stay small.
    let join_deadline = tokio::time::sleep(limits.join_timeout);
    tokio::pin!(join_deadline);
    let joined = loop {
        let frame = tokio::select! {
            frame = session.socket.recv() => frame,
            () = &mut join_deadline => {
                let message = format!(
                    "no join within {} s of connecting: send join as the first message",
                    limits.join_timeout.as_secs_f64()
                );
                session
                    .cut_off(SignalingCut::JoinTimeout, ErrorCode::JoinTimeout, message)
                    .await;
                return;
            }
        };
        match session.next_message(frame).await {
            None => return,
            Some(None) => continue,
            Some(Some(ClientMessage::Join {
                conference,
                token,
                quality,
                name,
            })) => match Box::pin(join(
                &mut session,
                &conference,
                &token,
                quality.unwrap_or_default(),
                name.as_deref(),
            ))
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
    let (room, participant, mut outbound, identity) = joined;
    // Fresh TURN credentials before those of `joined` expire, for calls longer than them.
    let renewal = tokio::time::sleep(session.node.credential_renewal());
    tokio::pin!(renewal);
    loop {
        tokio::select! {
            () = &mut renewal => {
                let ice_servers = session.node.ice_servers_for(&identity);
                if ice_servers.iter().any(|s| s.credential.is_some())
                    && !session.send(&ServerMessage::IceServers { ice_servers }).await
                {
                    break;
                }
                let next = tokio::time::Instant::now() + session.node.credential_renewal();
                renewal.as_mut().reset(next);
            }
            frame = session.socket.recv() => match session.next_message(frame).await {
                None => break,
                Some(None) => {}
                Some(Some(message)) => {
                    let leaving = matches!(message, ClientMessage::Leave {});
                    room.client(participant, message).await;
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
    name: Option<&str>,
) -> Option<(
    RoomHandle,
    ParticipantId,
    mpsc::Receiver<ServerMessage>,
    String,
)> {
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
    let name = match display_name(name, &claims.identity) {
        Ok(n) => n,
        Err(reason) => {
            node.stats.join_refused();
            session.close_with(ErrorCode::Malformed, reason).await;
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
    let (port, tcp_port) = node.media_ports();
    let host = HostCandidate {
        ip: node.public_ip().unwrap_or(node.settings.media.bind_ip),
        port,
        tcp_port,
    };
    let handler = Arc::new(PeerEvents::new(participant, room.events(), host));
    let (pc, socket, feedback) = match build_peer(&node.settings.media, handler).await {
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
        socket,
        outbound_tx.clone(),
        room.events(),
        Arc::clone(&node.stats),
        quality,
        host,
    );
    tokio::spawn(peer.run(peer_rx, feedback));
    let identity = claims.identity;
    let request = JoinRequest {
        participant,
        identity: identity.clone(),
        name,
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
    Some((room, participant, outbound_rx, identity))
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
