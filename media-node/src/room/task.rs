//! The task that owns one room: it applies the membership state machine, answers joins,
//! relays signaling between clients and their peer tasks, removes peers that failed or stayed
//! disconnected, announces the active speaker, and closes the room (telling clients where to
//! reconnect when it moved). Publishing, mute and chat are in `publishing`. Every webrtc
//! callback reaches it as a [`RoomEvent`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::RTCPeerConnectionState;

pub use super::events::{CloseReason, JoinRequest, RoomEvent, RoomSettings};
pub use super::handle::RoomHandle;
use super::last_n::SpeakingOrder;
use super::model::{ParticipantId, Room, TrackId, TrackKind, TrackSource};
use super::speaker::{IntervalLevels, SpeakerDetector};
use crate::forward::dynacast::LayerDemand;
use crate::forward::shedding::camera_share;
use crate::media::chat::CHAT_LABEL;
use crate::media::peer::PeerCommand;
use crate::media::publication::Publication;
use crate::node::NodeState;
use crate::signaling::protocol::{
    ChatChannel, ClientMessage, ErrorCode, ParticipantInfo, ServerMessage,
};

/// How often the room checks timeouts and the active speaker.
const TICK: Duration = Duration::from_millis(250);
/// Participants a page's `viewing` list may name when the conference has no last-N.
const MAX_VIEWING: usize = 64;

pub(super) struct Member {
    pub(super) identity: String,
    /// The name others see.
    pub(super) name: String,
    pub(super) outbound: mpsc::Sender<ServerMessage>,
    pub(super) peer: mpsc::UnboundedSender<PeerCommand>,
    /// Sources the client declared for its tracks, by client track id.
    pub(super) declared: HashMap<String, TrackSource>,
    /// Client track id to node track id.
    pub(super) client_tracks: HashMap<String, TrackId>,
    pub(super) chat: Option<Arc<dyn DataChannel>>,
    pub(super) disconnected_since: Option<Instant>,
    /// With last-N: the participants its page shows (`viewing`).
    pub(super) viewing: Vec<ParticipantId>,
    /// With last-N: the camera tracks paused for it, and whose cameras it was last told it
    /// receives (`forwardedVideos`).
    pub(super) paused: BTreeSet<TrackId>,
    pub(super) forwarded: Option<BTreeSet<ParticipantId>>,
}

impl Member {
    pub(super) fn send(&self, message: ServerMessage) {
        if self.outbound.try_send(message).is_err() {
            tracing::debug!(identity = %self.identity, "signaling queue full or closed");
        }
    }
}

pub(super) struct RoomTask {
    pub(super) room: Room,
    pub(super) handle: RoomHandle,
    pub(super) weak: mpsc::WeakUnboundedSender<RoomEvent>,
    pub(super) node: Arc<NodeState>,
    pub(super) members: HashMap<ParticipantId, Member>,
    pub(super) publications: HashMap<TrackId, Arc<Publication>>,
    pub(super) speaker: SpeakerDetector,
    /// Who spoke last, for last-N.
    pub(super) speaking: SpeakingOrder,
    /// The layers each video's publisher was asked to send (dynacast).
    pub(super) layer_demand: HashMap<TrackId, LayerDemand>,
    /// The share of the cameras each participant keeps while the node sheds load.
    pub(super) shed_share: Option<f64>,
}

/// Runs the task of one room until it closes.
pub(super) async fn run(
    node: Arc<NodeState>,
    settings: RoomSettings,
    handle: RoomHandle,
    events: mpsc::UnboundedReceiver<RoomEvent>,
) {
    let task = RoomTask {
        room: Room::new(
            settings.conference.clone(),
            settings.max_participants,
            settings.media,
        ),
        weak: handle.events.downgrade(),
        handle,
        node,
        members: HashMap::new(),
        publications: HashMap::new(),
        speaker: SpeakerDetector::default(),
        speaking: SpeakingOrder::default(),
        layer_demand: HashMap::new(),
        shed_share: None,
    };
    task.run(events).await;
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
        self.node.room_ended(&conference, self.handle.generation());
        tracing::info!(conference = %conference, "room closed");
    }

    pub(super) fn broadcast(&self, message: &ServerMessage, except: Option<ParticipantId>) {
        for (id, m) in &self.members {
            if Some(*id) != except {
                m.send(message.clone());
            }
        }
    }

    pub(super) fn send_to(&self, id: ParticipantId, message: ServerMessage) {
        if let Some(m) = self.members.get(&id) {
            m.send(message);
        }
    }

    pub(super) fn info_of(&self, id: ParticipantId) -> Option<ParticipantInfo> {
        let p = self.room.participant(id)?;
        Some(ParticipantInfo {
            id,
            identity: p.identity.clone(),
            name: self
                .members
                .get(&id)
                .map_or_else(|| p.identity.clone(), |m| m.name.clone()),
            tracks: p.tracks.values().cloned().collect(),
        })
    }

    async fn handle(&mut self, event: RoomEvent) {
        match event {
            RoomEvent::Join { request, reply } => self.join(request, reply),
            // The slot is given back once the message is handled.
            RoomEvent::Client {
                participant,
                message,
                slot: _slot,
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
            name: request.name,
            outbound: request.outbound,
            peer: request.peer,
            declared: HashMap::new(),
            client_tracks: HashMap::new(),
            chat: None,
            disconnected_since: None,
            viewing: Vec::new(),
            paused: BTreeSet::new(),
            forwarded: None,
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
            fallback_urls: self.node.fallback_urls(),
            simulcast: policy.simulcast && policy.video,
            last_n: policy.last_n,
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
        self.speaking.joined(id);
        self.node.stats.participant_joined();
        self.handle
            .participants
            .store(self.room.len() as u32, Ordering::Relaxed);
        self.node.load_changed.send_replace(());
        if let Some(info) = self.info_of(id) {
            self.broadcast(
                &ServerMessage::ParticipantJoined { participant: info },
                Some(id),
            );
        }
        self.refresh_forwarding();
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
            ClientMessage::Viewing { participant_ids } => {
                // Only the first lastN can be forwarded (without one, all cameras are, unless
                // the node sheds load); the rest of a long list is dropped.
                let keep = self
                    .room
                    .policy()
                    .last_n
                    .map_or(MAX_VIEWING, |n| n as usize);
                member.viewing = participant_ids.into_iter().take(keep).collect();
                self.refresh_forwarding();
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
            ClientMessage::Unpublish { track_id } => {
                let track = member.client_tracks.remove(&track_id).unwrap_or(track_id);
                self.unpublish(id, &track);
            }
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
        let share = camera_share(self.node.stats.shedding_level());
        if share != self.shed_share {
            self.shed_share = share;
            self.refresh_forwarding();
        }
        self.ask_publishers(now);
        if let Some(speaker) = self.speaker.interval(&levels, now) {
            self.speaking.spoke(speaker);
            self.refresh_forwarding();
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
    pub(super) fn remove(&mut self, id: ParticipantId, reason: Option<&str>) {
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
        self.speaking.left(id);
        self.refresh_forwarding();
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
        self.node.load_changed.send_replace(());
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
