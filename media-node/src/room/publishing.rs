//! The room task's media: tracks published and unpublished (subscribing everyone else),
//! mute state, the chat channel and its relay.

use std::sync::Arc;

use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;

use super::events::RoomEvent;
use super::model::{ParticipantId, TrackInfo, TrackKind, TrackSource};
use super::task::RoomTask;
use crate::media::chat::{CHAT_LABEL, ChatInput, ChatRelay, run_chat_reader};
use crate::media::peer::PeerCommand;
use crate::media::publication::{Publication, StreamFormat, run_reader};
use crate::signaling::protocol::{ErrorCode, ServerMessage};

impl RoomTask {
    pub(super) fn mute(&mut self, id: ParticipantId, track: &str, muted: bool) {
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
            self.refresh_forwarding();
        }
    }

    pub(super) fn publish(
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
                self.refresh_forwarding();
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

    pub(super) fn unpublish(&mut self, id: ParticipantId, track: &str) {
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
        self.refresh_forwarding();
    }

    pub(super) async fn data_channel(&mut self, id: ParticipantId, channel: Arc<dyn DataChannel>) {
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

    pub(super) async fn chat(&mut self, id: ParticipantId, input: ChatInput) {
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
                    name: member.name.clone(),
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
}
