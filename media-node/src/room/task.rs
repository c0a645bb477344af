//! The task that owns one room: it applies the membership state machine, answers joins,
//! relays signaling between clients and their peer tasks, publishes tracks and subscribes the
//! others to them, relays chat, detects the active speaker, removes peers that failed or stayed
//! disconnected, and closes the room (telling clients where to reconnect when it moved).
//! Every webrtc callback reaches it as a [`RoomEvent`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::RTCPeerConnectionState;

use super::model::{MediaPolicy, ParticipantId, Room, TrackId, TrackInfo, TrackKind, TrackSource};
use super::speaker::{IntervalLevels, SpeakerDetector};
use crate::forward::layers::Quality;
use crate::media::chat::{CHAT_LABEL, ChatInput, ChatRelay, run_chat_reader};
use crate::media::peer::PeerCommand;
use crate::media::publication::{Publication, StreamFormat, run_reader};
use crate::node::NodeState;
use crate::signaling::protocol::{
    Candidate, ChatChannel, ClientMessage, ErrorCode, ParticipantInfo, ServerMessage,
};

/// How often the room checks timeouts and the active speaker.
const TICK: Duration = Duration::from_millis(250);

/// What a room is opened with (from its Conference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    /// Conference name.
    pub conference: String,
    /// spec.maxParticipants.
    pub max_participants: u32,
    /// spec.media.
    pub media: MediaPolicy,
}

/// Why a room closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The conference was deleted or ended.
    Ended,
    /// The conference moved to another node: clients reconnect there.
    Moved {
        /// The new node's signaling URL.
        signaling_url: String,
    },
    /// The node's drain grace period passed.
    Drained,
}

/// A participant's request to enter the room, sent by its signaling session once its token
/// was verified and its peer connection built.
pub struct JoinRequest {
    /// Participant id.
    pub participant: ParticipantId,
    /// Identity from the token.
    pub identity: String,
    /// Whether the token allows publishing.
    pub may_publish: bool,
    /// Initial quality.
    pub quality: Quality,
    /// The session's outbound queue.
    pub outbound: mpsc::Sender<ServerMessage>,
    /// The participant's peer task.
    pub peer: mpsc::UnboundedSender<PeerCommand>,
}

/// Everything a room task reacts to.
pub enum RoomEvent {
    /// A participant wants in.
    Join {
        /// The request.
        request: JoinRequest,
        /// The verdict: admitted, or an error code and message.
        reply: oneshot::Sender<Result<(), (ErrorCode, String)>>,
    },
    /// A client message after join.
    Client {
        /// From whom.
        participant: ParticipantId,
        /// The message.
        message: ClientMessage,
    },
    /// The client's WebSocket closed.
    Disconnected {
        /// Who.
        participant: ParticipantId,
    },
    /// The node gathered an ICE candidate for a participant's peer connection.
    LocalCandidate {
        /// Whose connection.
        participant: ParticipantId,
        /// The candidate.
        candidate: Candidate,
    },
    /// A participant's peer connection changed state.
    PeerState {
        /// Whose connection.
        participant: ParticipantId,
        /// New state.
        state: RTCPeerConnectionState,
    },
    /// A participant started sending a track.
    TrackArrived {
        /// Publisher.
        participant: ParticipantId,
        /// The remote track.
        track: Arc<dyn TrackRemote>,
    },
    /// The peer task described an arrived track.
    TrackReady {
        /// Publisher.
        participant: ParticipantId,
        /// The remote track.
        track: Arc<dyn TrackRemote>,
        /// Its id in the publisher's SDP (msid).
        client_track_id: String,
        /// Audio or video.
        kind: TrackKind,
        /// Sent with several simulcast layers.
        simulcast: bool,
        /// Codec and extensions.
        format: StreamFormat,
    },
    /// A published track ended.
    TrackEnded {
        /// Publisher.
        participant: ParticipantId,
        /// Node track id.
        track: TrackId,
    },
    /// A participant opened a data channel.
    DataChannel {
        /// Whose.
        participant: ParticipantId,
        /// The channel.
        channel: Arc<dyn DataChannel>,
    },
    /// A chat frame arrived.
    Chat {
        /// From whom.
        participant: ParticipantId,
        /// What it was.
        input: ChatInput,
    },
    /// The conference changed.
    Update(RoomSettings),
    /// Close the room.
    Close(CloseReason),
}

/// A handle on a running room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    conference: String,
    generation: u64,
    events: mpsc::UnboundedSender<RoomEvent>,
    participants: Arc<AtomicU32>,
    open: Arc<AtomicBool>,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl RoomHandle {
    /// Starts the task of a room.
    pub(crate) fn spawn(node: Arc<NodeState>, settings: RoomSettings) -> Self {
        let (events, rx) = mpsc::unbounded_channel();
        let handle = Self {
            conference: settings.conference.clone(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            events,
            participants: Arc::new(AtomicU32::new(0)),
            open: Arc::new(AtomicBool::new(true)),
        };
        let task = RoomTask {
            room: Room::new(
                settings.conference.clone(),
                settings.max_participants,
                settings.media,
            ),
            weak: handle.events.downgrade(),
            handle: handle.clone(),
            node,
            members: HashMap::new(),
            publications: HashMap::new(),
            speaker: SpeakerDetector::default(),
        };
        tokio::spawn(task.run(rx));
        handle
    }

    /// The conference.
    pub fn conference(&self) -> &str {
        &self.conference
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Participants in the room now.
    pub fn participants(&self) -> u32 {
        self.participants.load(Ordering::Relaxed)
    }

    /// True until the room closes.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed) && !self.events.is_closed()
    }

    /// A weak sender for webrtc callbacks of this room's peers.
    pub fn events(&self) -> mpsc::WeakUnboundedSender<RoomEvent> {
        self.events.downgrade()
    }

    /// Asks the room to admit a participant.
    pub async fn join(&self, request: JoinRequest) -> Result<(), (ErrorCode, String)> {
        let (reply, verdict) = oneshot::channel();
        let closed = || {
            (
                ErrorCode::NotHere,
                format!("conference {} is closed on this node", self.conference),
            )
        };
        self.events
            .send(RoomEvent::Join { request, reply })
            .map_err(|_| closed())?;
        verdict.await.map_err(|_| closed())?
    }

    /// Passes a client message to the room.
    pub fn client(&self, participant: ParticipantId, message: ClientMessage) {
        let _ = self.events.send(RoomEvent::Client {
            participant,
            message,
        });
    }

    /// Tells the room a client's socket closed.
    pub fn disconnected(&self, participant: ParticipantId) {
        let _ = self.events.send(RoomEvent::Disconnected { participant });
    }

    /// Applies new conference settings.
    pub fn update(&self, settings: RoomSettings) {
        let _ = self.events.send(RoomEvent::Update(settings));
    }

    /// Closes the room.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.events.send(RoomEvent::Close(reason));
    }
}

struct Member {
    identity: String,
    outbound: mpsc::Sender<ServerMessage>,
    peer: mpsc::UnboundedSender<PeerCommand>,
    /// Sources the client declared for its tracks, by client track id.
    declared: HashMap<String, TrackSource>,
    /// Client track id to node track id.
    client_tracks: HashMap<String, TrackId>,
    chat: Option<Arc<dyn DataChannel>>,
    disconnected_since: Option<Instant>,
}

impl Member {
    fn send(&self, message: ServerMessage) {
        if self.outbound.try_send(message).is_err() {
            tracing::debug!(identity = %self.identity, "signaling queue full or closed");
        }
    }
}

struct RoomTask {
    room: Room,
    handle: RoomHandle,
    weak: mpsc::WeakUnboundedSender<RoomEvent>,
    node: Arc<NodeState>,
    members: HashMap<ParticipantId, Member>,
    publications: HashMap<TrackId, Arc<Publication>>,
    speaker: SpeakerDetector,
}

impl RoomTask {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<RoomEvent>) {
        let conference = self.room.conference().to_owned();
        self.node.stats.room_opened();
        tracing::info!(conference = %conference, "room opened");
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(RoomEvent::Close(reason)) => {
                        self.close(reason);
                        break;
                    }
                    Some(event) => self.handle(event).await,
                    None => break,
                },
                _ = tick.tick() => self.tick(Instant::now()),
            }
        }
        self.handle.open.store(false, Ordering::Relaxed);
        self.node.stats.room_closed();
        self.node.room_ended(&conference, self.handle.generation);
        tracing::info!(conference = %conference, "room closed");
    }

    fn broadcast(&self, message: &ServerMessage, except: Option<ParticipantId>) {
        for (id, m) in &self.members {
            if Some(*id) != except {
                m.send(message.clone());
            }
        }
    }

    fn send_to(&self, id: ParticipantId, message: ServerMessage) {
        if let Some(m) = self.members.get(&id) {
            m.send(message);
        }
    }

    fn info_of(&self, id: ParticipantId) -> Option<ParticipantInfo> {
        let p = self.room.participant(id)?;
        Some(ParticipantInfo {
            id,
            identity: p.identity.clone(),
            tracks: p.tracks.values().cloned().collect(),
        })
    }

    async fn handle(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::Join { request, reply } => self.join(request, reply),
            RoomEvent::Client {
                participant,
                message,
            } => self.client(participant, message),
            RoomEvent::Disconnected { participant } => self.remove(participant, None),
            RoomEvent::LocalCandidate {
                participant,
                candidate,
            } => self.send_to(participant, ServerMessage::Candidate { candidate }),
            RoomEvent::PeerState { participant, state } => self.peer_state(participant, state),
            RoomEvent::TrackArrived { participant, track } => {
                if let Some(m) = self.members.get(&participant) {
                    let _ = m.peer.send(PeerCommand::Describe(track));
                }
            }
            RoomEvent::TrackReady {
                participant,
                track,
                client_track_id,
                kind,
                simulcast,
                format,
            } => self.publish(participant, track, client_track_id, kind, simulcast, format),
            RoomEvent::TrackEnded { participant, track } => self.unpublish(participant, &track),
            RoomEvent::DataChannel {
                participant,
                channel,
            } => self.data_channel(participant, channel).await,
            RoomEvent::Chat { participant, input } => self.chat(participant, input).await,
            RoomEvent::Update(settings) => {
                self.room.update(settings.max_participants, settings.media);
            }
            RoomEvent::Close(_) => {}
        }
    }

    fn join(
        &mut self,
        request: JoinRequest,
        reply: oneshot::Sender<Result<(), (ErrorCode, String)>>,
    ) {
        let id = request.participant;
        let joined = match self.room.join(id, &request.identity, request.may_publish) {
            Ok(j) => j,
            Err(e) => {
                let code = match e {
                    super::model::JoinRefused::RoomFull { .. } => ErrorCode::RoomFull,
                    super::model::JoinRefused::Closing(_) => ErrorCode::NotHere,
                };
                self.node.stats.join_refused();
                let _ = reply.send(Err((code, e.to_string())));
                return;
            }
        };
        if let Some(old) = joined.replaced {
            self.drop_member(old, Some("replaced by a new session of the same identity"));
        }
        let policy = self.room.policy();
        let member = Member {
            identity: request.identity.clone(),
            outbound: request.outbound,
            peer: request.peer,
            declared: HashMap::new(),
            client_tracks: HashMap::new(),
            chat: None,
            disconnected_since: None,
        };
        let others: Vec<ParticipantInfo> = self
            .room
            .participants()
            .filter(|p| p.id != id)
            .filter_map(|p| self.info_of(p.id))
            .collect();
        member.send(ServerMessage::Joined {
            participant_id: id,
            conference: self.room.conference().to_owned(),
            ice_servers: self.node.ice_servers_for(&request.identity),
            participants: others,
            chat: policy.data_channel.then(|| ChatChannel {
                label: CHAT_LABEL.to_owned(),
                max_message_bytes: self.node.settings.chat_max_bytes,
            }),
        });
        if let Some(speaker) = self.speaker.current() {
            member.send(ServerMessage::ActiveSpeaker {
                participant_id: Some(speaker),
            });
        }
        for track in &joined.existing_tracks {
            if let Some(publication) = self.publications.get(&track.id) {
                let _ = member
                    .peer
                    .send(PeerCommand::Subscribe(Arc::clone(publication)));
            }
        }
        self.members.insert(id, member);
        self.node.stats.participant_joined();
        self.handle
            .participants
            .store(self.room.len() as u32, Ordering::Relaxed);
        self.node.load_changed.notify_one();
        if let Some(info) = self.info_of(id) {
            self.broadcast(
                &ServerMessage::ParticipantJoined { participant: info },
                Some(id),
            );
        }
        tracing::info!(conference = %self.room.conference(), participant = %id, identity = %request.identity, "joined");
        let _ = reply.send(Ok(()));
    }

    fn client(&mut self, id: ParticipantId, message: ClientMessage) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let peer = |command| {
            let _ = member.peer.send(command);
        };
        match message {
            ClientMessage::Join { .. } => member.send(ServerMessage::error(
                ErrorCode::Unexpected,
                "already joined: a session joins once",
            )),
            ClientMessage::Offer { sdp, tracks } => {
                for t in tracks {
                    member.declared.insert(t.track_id, t.source);
                }
                peer(PeerCommand::Offer(sdp));
            }
            ClientMessage::Answer { sdp } => peer(PeerCommand::Answer(sdp)),
            ClientMessage::Candidate { candidate } => peer(PeerCommand::Candidate(candidate)),
            ClientMessage::IceRestart {} => peer(PeerCommand::RestartIce),
            ClientMessage::SetQuality { quality, track_id } => {
                peer(PeerCommand::SetQuality(track_id, quality));
            }
            ClientMessage::Ping {} => member.send(ServerMessage::Pong {}),
            ClientMessage::Leave {} => self.remove(id, Some("left")),
            ClientMessage::Mute { track_id, muted } => {
                let track = member
                    .client_tracks
                    .get(&track_id)
                    .cloned()
                    .unwrap_or(track_id);
                self.mute(id, &track, muted);
            }
        }
    }

    fn mute(&mut self, id: ParticipantId, track: &str, muted: bool) {
        let owned = self
            .room
            .participant(id)
            .is_some_and(|p| p.tracks.contains_key(track));
        if !owned {
            self.send_to(
                id,
                ServerMessage::error(
                    ErrorCode::Unexpected,
                    format!("you publish no track {track:?}"),
                ),
            );
            return;
        }
        if let Some(info) = self.room.set_muted(id, track, muted) {
            if let Some(p) = self.publications.get(track) {
                p.set_muted(muted);
            }
            self.broadcast(
                &ServerMessage::Muted {
                    participant_id: id,
                    track_id: info.id,
                    muted,
                },
                None,
            );
        }
    }

    fn peer_state(&mut self, id: ParticipantId, state: RTCPeerConnectionState) {
        tracing::debug!(participant = %id, ?state, "peer state");
        match state {
            RTCPeerConnectionState::Connected => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.disconnected_since = None;
                }
            }
            RTCPeerConnectionState::Disconnected => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.disconnected_since.get_or_insert_with(Instant::now);
                }
            }
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                self.remove(id, Some("media connection failed"));
            }
            _ => {}
        }
    }

    fn publish(
        &mut self,
        id: ParticipantId,
        track: Arc<dyn TrackRemote>,
        client_track_id: String,
        kind: TrackKind,
        simulcast: bool,
        format: StreamFormat,
    ) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        let source = member
            .declared
            .get(&client_track_id)
            .copied()
            .unwrap_or(TrackSource::default_for(kind));
        let stats = Arc::clone(&self.node.stats);
        match self.room.publish(id, kind, source, simulcast) {
            Ok((info, subscribers)) => {
                let publication = Publication::new(info.clone(), format, track);
                let weak = self.weak.clone();
                let reader = Arc::clone(&publication);
                let track_id = info.id.clone();
                stats.publication_started();
                tokio::spawn(async move {
                    run_reader(reader, Arc::clone(&stats), false).await;
                    stats.publication_ended();
                    if let Some(room) = weak.upgrade() {
                        let _ = room.send(RoomEvent::TrackEnded {
                            participant: id,
                            track: track_id,
                        });
                    }
                });
                if let Some(m) = self.members.get_mut(&id) {
                    m.client_tracks.insert(client_track_id, info.id.clone());
                }
                self.publications
                    .insert(info.id.clone(), Arc::clone(&publication));
                tracing::info!(conference = %self.room.conference(), participant = %id, track = %info.id, ?kind, ?source, simulcast = info.simulcast, mime = %publication.format.mime_type, "track published");
                self.broadcast(&ServerMessage::TrackPublished { track: info }, None);
                for s in subscribers {
                    if let Some(m) = self.members.get(&s) {
                        let _ = m
                            .peer
                            .send(PeerCommand::Subscribe(Arc::clone(&publication)));
                    }
                }
            }
            Err(e) => {
                member.send(ServerMessage::error(ErrorCode::MediaRefused, e.to_string()));
                let refused = TrackInfo {
                    id: format!("refused-{client_track_id}"),
                    participant: id,
                    kind,
                    source,
                    simulcast: false,
                    muted: true,
                };
                let publication = Publication::new(refused, format, track);
                tokio::spawn(run_reader(publication, stats, true));
            }
        }
    }

    fn unpublish(&mut self, id: ParticipantId, track: &str) {
        if self.room.unpublish(id, track).is_none() {
            return;
        }
        self.publications.remove(track);
        for m in self.members.values() {
            let _ = m.peer.send(PeerCommand::Unsubscribe(track.to_owned()));
        }
        self.broadcast(
            &ServerMessage::TrackUnpublished {
                track_id: track.to_owned(),
                participant_id: id,
            },
            None,
        );
    }

    async fn data_channel(&mut self, id: ParticipantId, channel: Arc<dyn DataChannel>) {
        let label = channel.label().await.unwrap_or_default();
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if label != CHAT_LABEL || !self.room.policy().data_channel {
            member.send(ServerMessage::error(
                ErrorCode::MediaRefused,
                if label == CHAT_LABEL {
                    "chat is switched off for this conference".to_owned()
                } else {
                    format!("only a data channel labelled {CHAT_LABEL:?} is relayed, not {label:?}")
                },
            ));
            let _ = channel.close().await;
            return;
        }
        member.chat = Some(Arc::clone(&channel));
        tokio::spawn(run_chat_reader(
            id,
            channel,
            self.node.settings.chat_max_bytes,
            self.weak.clone(),
        ));
    }

    async fn chat(&mut self, id: ParticipantId, input: ChatInput) {
        let Some(member) = self.members.get(&id) else {
            return;
        };
        match input {
            ChatInput::Refused(reason) => {
                member.send(ServerMessage::error(ErrorCode::MediaRefused, reason));
            }
            ChatInput::Text(message) => {
                let relay = ChatRelay {
                    participant_id: id,
                    identity: member.identity.clone(),
                    message,
                };
                let Ok(text) = serde_json::to_string(&relay) else {
                    return;
                };
                for (other, m) in &self.members {
                    if *other == id {
                        continue;
                    }
                    if let Some(chat) = &m.chat
                        && let Err(e) = chat.send_text(&text).await
                    {
                        tracing::debug!(participant = %other, error = %e, "chat relay failed");
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let grace = self.node.settings.peer_disconnect;
        let stale: Vec<ParticipantId> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.disconnected_since
                    .is_some_and(|t| now.duration_since(t) >= grace)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.remove(id, Some("media connection lost"));
        }
        let mut levels: HashMap<ParticipantId, IntervalLevels> = HashMap::new();
        for p in self.publications.values() {
            if p.info.kind == TrackKind::Audio {
                let l = p.take_levels();
                let e = levels.entry(p.info.participant).or_default();
                e.packets += l.packets;
                e.voiced += l.voiced;
                e.loudness += l.loudness;
            }
        }
        if let Some(speaker) = self.speaker.interval(&levels, now) {
            self.broadcast(
                &ServerMessage::ActiveSpeaker {
                    participant_id: Some(speaker),
                },
                None,
            );
        }
    }

    /// Removes a participant: tells it why (when it is still there to hear), unsubscribes
    /// everyone from its tracks and tells the others it left.
    fn remove(&mut self, id: ParticipantId, reason: Option<&str>) {
        if !self.members.contains_key(&id) {
            return;
        }
        self.drop_member(id, reason);
    }

    fn drop_member(&mut self, id: ParticipantId, reason: Option<&str>) {
        let left = self.room.leave(id);
        if let Some(member) = self.members.remove(&id) {
            if let Some(reason) = reason {
                member.send(ServerMessage::Left {
                    reason: reason.to_owned(),
                });
            }
            let _ = member.peer.send(PeerCommand::Close);
            self.node.stats.participant_left();
        }
        if let Some(p) = left {
            for track in p.tracks.keys() {
                self.publications.remove(track);
                for m in self.members.values() {
                    let _ = m.peer.send(PeerCommand::Unsubscribe(track.clone()));
                }
                self.broadcast(
                    &ServerMessage::TrackUnpublished {
                        track_id: track.clone(),
                        participant_id: id,
                    },
                    None,
                );
            }
        }
        if self.speaker.remove(id) {
            self.broadcast(
                &ServerMessage::ActiveSpeaker {
                    participant_id: None,
                },
                None,
            );
        }
        self.broadcast(&ServerMessage::ParticipantLeft { participant_id: id }, None);
        self.handle
            .participants
            .store(self.room.len() as u32, Ordering::Relaxed);
        self.node.load_changed.notify_one();
        tracing::info!(conference = %self.room.conference(), participant = %id, reason = reason.unwrap_or("socket closed"), "left");
    }

    fn close(&mut self, reason: CloseReason) {
        self.room.close();
        self.handle.open.store(false, Ordering::Relaxed);
        let text = match &reason {
            CloseReason::Ended => "conference ended".to_owned(),
            CloseReason::Moved { signaling_url } => {
                self.broadcast(
                    &ServerMessage::Reconnect {
                        signaling_url: signaling_url.clone(),
                        reason: "conference moved to another media node".to_owned(),
                    },
                    None,
                );
                "conference moved to another media node".to_owned()
            }
            CloseReason::Drained => "media node drained".to_owned(),
        };
        let ids: Vec<ParticipantId> = self.members.keys().copied().collect();
        for id in ids {
            self.drop_member(id, Some(&text));
        }
    }
}
