//! Applies last-N, overload shedding and dynacast in a room. After anything that changes who
//! should see whose camera (someone joined, left, published, turned a camera off or on, spoke,
//! showed another page, or the node shed more or less), each participant's cameras beyond
//! the limit are paused and the others resumed, and the participant is told whose camera it
//! receives (`forwardedVideos`); the choice itself is `last_n`, the limit the conference's
//! `lastN` and the share the node's shedding leaves (`forward::shedding`). At each tick, each
//! video's publisher is told which layers someone receives (`publishLayers`); when, is
//! `forward::dynacast`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::last_n::forwarded_cameras;
use super::model::{ParticipantId, TrackId, TrackKind, TrackSource};
use super::task::RoomTask;
use crate::forward::layers::{Layer, MAX_LAYERS};
use crate::forward::shedding::camera_limit;
use crate::media::peer::PeerCommand;
use crate::signaling::protocol::ServerMessage;

impl RoomTask {
    /// Tells publishers which layers of their videos someone receives, when that changed.
    pub(super) fn ask_publishers(&mut self, now: Instant) {
        let publications = &self.publications;
        self.layer_demand
            .retain(|track, _| publications.contains_key(track));
        for (track, p) in publications {
            if p.info.kind != TrackKind::Video {
                continue;
            }
            let demand = self.layer_demand.entry(track.clone()).or_default();
            if let Some(mask) = demand.update(p.demand(), now) {
                let layers = (0..MAX_LAYERS as Layer)
                    .filter(|l| mask & (1 << l) != 0)
                    .collect();
                tracing::debug!(track = %track, ?layers, "publisher asked for layers");
                if let Some(m) = self.members.get(&p.info.participant) {
                    m.send(ServerMessage::PublishLayers {
                        track_id: track.clone(),
                        layers,
                    });
                }
            }
        }
    }

    /// Pauses and resumes camera videos so that each participant receives at most the
    /// conference's `lastN` and the share of the cameras the node's shedding leaves; nothing
    /// without either, once all are resumed.
    pub(super) fn refresh_forwarding(&mut self) {
        let last_n = self.room.policy().last_n;
        let unlimited = last_n.is_none() && self.shed_share.is_none();
        if unlimited && self.members.values().all(|m| m.forwarded.is_none()) {
            return;
        }
        // Cameras that are on (a muted one shows initials and takes no place) and flowing.
        let mut cameras: BTreeMap<ParticipantId, Vec<TrackId>> = BTreeMap::new();
        for p in self.room.participants() {
            for t in p.tracks.values() {
                let camera = t.kind == TrackKind::Video && t.source == TrackSource::Camera;
                if camera && !t.muted && self.publications.contains_key(&t.id) {
                    cameras.entry(p.id).or_default().push(t.id.clone());
                }
            }
        }
        let publishing: BTreeSet<ParticipantId> = cameras.keys().copied().collect();
        for (id, member) in &mut self.members {
            let others = publishing.len() - usize::from(publishing.contains(id));
            let shown = forwarded_cameras(
                &self.speaking,
                &publishing,
                *id,
                &member.viewing,
                camera_limit(last_n, self.shed_share, others),
            );
            let paused: BTreeSet<TrackId> = cameras
                .iter()
                .filter(|(p, _)| *p != id && !shown.contains(p))
                .flat_map(|(_, tracks)| tracks.iter().cloned())
                .collect();
            for track in paused.difference(&member.paused) {
                let _ = member
                    .peer
                    .send(PeerCommand::SetPaused(track.clone(), true));
            }
            for track in member.paused.difference(&paused) {
                let _ = member
                    .peer
                    .send(PeerCommand::SetPaused(track.clone(), false));
            }
            member.paused = paused;
            if member.forwarded.as_ref() != Some(&shown) {
                member.send(ServerMessage::ForwardedVideos {
                    participant_ids: shown.iter().copied().collect(),
                });
                member.forwarded = Some(shown);
            }
        }
    }
}
