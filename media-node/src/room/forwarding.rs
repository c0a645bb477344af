//! Applies last-N in a room: after anything that changes who should see whose camera
//! (someone joined, left, published, turned a camera off or on, spoke, or showed another
//! page), each participant's cameras beyond the limit are paused and the others resumed, and
//! the participant is told whose camera it receives (`forwardedVideos`). The choice itself
//! is `last_n`.

use std::collections::{BTreeMap, BTreeSet};

use super::last_n::forwarded_cameras;
use super::model::{ParticipantId, TrackId, TrackKind, TrackSource};
use super::task::RoomTask;
use crate::media::peer::PeerCommand;
use crate::signaling::protocol::ServerMessage;

impl RoomTask {
    /// Pauses and resumes camera videos so that each participant receives at most the
    /// conference's `lastN`; nothing without one.
    pub(super) fn refresh_forwarding(&mut self) {
        let Some(limit) = self.room.policy().last_n else {
            return;
        };
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
            let shown = forwarded_cameras(
                &self.speaking,
                &publishing,
                *id,
                &member.viewing,
                Some(limit as usize),
            );
            let paused: BTreeSet<TrackId> = cameras
                .iter()
                .filter(|(p, _)| *p != id && !shown.contains(p))
                .flat_map(|(_, tracks)| tracks.iter().cloned())
                .collect();
            for track in paused.difference(&member.paused) {
                let _ = member.peer.send(PeerCommand::SetPaused(track.clone(), true));
            }
            for track in member.paused.difference(&paused) {
                let _ = member.peer.send(PeerCommand::SetPaused(track.clone(), false));
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
