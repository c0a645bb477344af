//! The membership state of one room: participants, their published tracks and mute state,
//! the conference's limits and media switches. Plain data and decisions; the room task applies
//! them to peers and sockets.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A participant, unique within the node's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A published track, named `<participant>-<n>` so subscribers can tell who publishes it.
pub type TrackId = String;

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// What a track carries, as the publisher declared it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TrackSource {
    /// Microphone audio.
    Microphone,
    /// Camera video.
    Camera,
    /// Screen share (video; its audio, if any, counts as screen share too).
    Screen,
}

impl TrackSource {
    /// The default source for a track of `kind` the publisher did not describe.
    pub fn default_for(kind: TrackKind) -> Self {
        match kind {
            TrackKind::Audio => TrackSource::Microphone,
            TrackKind::Video => TrackSource::Camera,
        }
    }
}

/// A published track as other participants see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackInfo {
    /// Id subscribers see (also the stream's track id in their SDP).
    pub id: TrackId,
    /// Who publishes it.
    pub participant: ParticipantId,
    /// Audio or video.
    pub kind: TrackKind,
    /// Microphone, camera or screen.
    pub source: TrackSource,
    /// Published in several simulcast layers.
    pub simulcast: bool,
    /// Muted by its publisher.
    pub muted: bool,
}

/// What a conference allows (its `spec.media`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaPolicy {
    /// Audio may be published.
    pub audio: bool,
    /// Camera video may be published.
    pub video: bool,
    /// Video may be simulcast (otherwise only the lowest layer of a simulcast publisher is
    /// forwarded).
    pub simulcast: bool,
    /// Screens may be shared.
    pub screen_share: bool,
    /// The chat data channel is relayed.
    pub data_channel: bool,
    /// At most this many camera videos forwarded to each participant (last-N).
    pub last_n: Option<u32>,
}

impl From<&conclave_crds::conference::MediaOptions> for MediaPolicy {
    fn from(m: &conclave_crds::conference::MediaOptions) -> Self {
        Self {
            audio: m.audio,
            video: m.video,
            simulcast: m.simulcast,
            screen_share: m.screen_share,
            data_channel: m.data_channel,
            last_n: m.last_n,
        }
    }
}

impl Default for MediaPolicy {
    fn default() -> Self {
        (&conclave_crds::conference::MediaOptions::default()).into()
    }
}

/// One participant's membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    /// Its id.
    pub id: ParticipantId,
    /// Identity from the join token.
    pub identity: String,
    /// Whether the token allows publishing.
    pub may_publish: bool,
    /// Tracks it publishes.
    pub tracks: BTreeMap<TrackId, TrackInfo>,
    next_track: u32,
}

/// Why a join was refused; the message goes to the client as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// The conference's `spec.maxParticipants` is reached.
    #[error("conference {conference} is full: it allows {max} participants")]
    RoomFull {
        /// The conference.
        conference: String,
        /// Its maxParticipants.
        max: u32,
    },
    /// The room is closing (conference deleted, moved or node draining).
    #[error("conference {0} is closing on this node")]
    Closing(String),
}

/// Why a track was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    /// The join token does not allow publishing.
    #[error("your join token does not allow publishing")]
    NotAllowed,
    /// The conference switched this kind of media off.
    #[error("{0} is switched off for this conference")]
    MediaOff(&'static str),
    /// Unknown participant (already left).
    #[error("participant {0} is not in the room")]
    UnknownParticipant(ParticipantId),
}

/// Membership of one room.
#[derive(Clone, Debug)]
pub struct Room {
    conference: String,
    max_participants: u32,
    policy: MediaPolicy,
    participants: BTreeMap<ParticipantId, Participant>,
    closing: bool,
}

/// Result of a successful join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// Tracks already published by others, to subscribe the newcomer to.
    pub existing_tracks: Vec<TrackInfo>,
    /// An older session of the same identity, replaced by this one.
    pub replaced: Option<ParticipantId>,
}

impl Room {
    /// An empty room for `conference`.
    pub fn new(conference: impl Into<String>, max_participants: u32, policy: MediaPolicy) -> Self {
        Self {
            conference: conference.into(),
            max_participants,
            policy,
            participants: BTreeMap::new(),
            closing: false,
        }
    }

    /// The conference name.
    pub fn conference(&self) -> &str {
        &self.conference
    }

    /// The media switches.
    pub fn policy(&self) -> MediaPolicy {
        self.policy
    }

    /// Updates limits and media switches (the Conference changed).
    pub fn update(&mut self, max_participants: u32, policy: MediaPolicy) {
        self.max_participants = max_participants;
        self.policy = policy;
    }

    /// Refuses joins from now on.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// True once closing.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Participants in the room.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// True when nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// A participant.
    pub fn participant(&self, id: ParticipantId) -> Option<&Participant> {
        self.participants.get(&id)
    }

    /// All participants, in join order.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    /// Admits participant `id`. A participant with the same identity is replaced (a client
    /// that reconnects before its old session timed out).
    pub fn join(
        &mut self,
        id: ParticipantId,
        identity: &str,
        may_publish: bool,
    ) -> Result<Joined, JoinRefused> {
        if self.closing {
            return Err(JoinRefused::Closing(self.conference.clone()));
        }
        let replaced = self
            .participants
            .values()
            .find(|p| p.identity == identity)
            .map(|p| p.id);
        let after = self.participants.len() - usize::from(replaced.is_some()) + 1;
        if after > self.max_participants as usize {
            return Err(JoinRefused::RoomFull {
                conference: self.conference.clone(),
                max: self.max_participants,
            });
        }
        if let Some(old) = replaced {
            self.participants.remove(&old);
        }
        let existing_tracks = self
            .participants
            .values()
            .flat_map(|p| p.tracks.values().cloned())
            .collect();
        self.participants.insert(
            id,
            Participant {
                id,
                identity: identity.to_owned(),
                may_publish,
                tracks: BTreeMap::new(),
                next_track: 0,
            },
        );
        Ok(Joined {
            existing_tracks,
            replaced,
        })
    }

    /// Removes a participant; returns it with the tracks it published.
    pub fn leave(&mut self, id: ParticipantId) -> Option<Participant> {
        self.participants.remove(&id)
    }

    /// Accepts a track from `id`, if the token and the conference allow it. Returns the track
    /// and the participants who should subscribe to it.
    pub fn publish(
        &mut self,
        id: ParticipantId,
        kind: TrackKind,
        source: TrackSource,
        simulcast: bool,
    ) -> Result<(TrackInfo, Vec<ParticipantId>), PublishRefused> {
        let policy = self.policy;
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(PublishRefused::UnknownParticipant(id))?;
        if !p.may_publish {
            return Err(PublishRefused::NotAllowed);
        }
        match (kind, source) {
            (_, TrackSource::Screen) if !policy.screen_share => {
                return Err(PublishRefused::MediaOff("screen sharing"));
            }
            (TrackKind::Audio, TrackSource::Microphone | TrackSource::Camera) if !policy.audio => {
                return Err(PublishRefused::MediaOff("audio"));
            }
            (TrackKind::Video, TrackSource::Camera | TrackSource::Microphone) if !policy.video => {
                return Err(PublishRefused::MediaOff("video"));
            }
            _ => {}
        }
        let info = TrackInfo {
            id: format!("{id}-{}", p.next_track),
            participant: id,
            kind,
            source,
            simulcast: simulcast && policy.simulcast && kind == TrackKind::Video,
            muted: false,
        };
        p.next_track += 1;
        p.tracks.insert(info.id.clone(), info.clone());
        let subscribers = self
            .participants
            .keys()
            .copied()
            .filter(|other| *other != id)
            .collect();
        Ok((info, subscribers))
    }

    /// Removes a track; returns it when it existed.
    pub fn unpublish(&mut self, id: ParticipantId, track: &str) -> Option<TrackInfo> {
        self.participants.get_mut(&id)?.tracks.remove(track)
    }

    /// Sets the mute state of a track of `id`; returns the track when the state changed.
    pub fn set_muted(&mut self, id: ParticipantId, track: &str, muted: bool) -> Option<TrackInfo> {
        let t = self.participants.get_mut(&id)?.tracks.get_mut(track)?;
        if t.muted == muted {
            return None;
        }
        t.muted = muted;
        Some(t.clone())
    }

    /// Published tracks of everyone.
    pub fn tracks(&self) -> impl Iterator<Item = &TrackInfo> {
        self.participants.values().flat_map(|p| p.tracks.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(max: u32) -> Room {
        Room::new("standup", max, MediaPolicy::default())
    }

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);
    const C: ParticipantId = ParticipantId(3);

    #[test]
    fn refuses_beyond_max_participants_with_a_clear_message() {
        let mut r = room(2);
        r.join(A, "alice", true).expect("first");
        r.join(B, "bob", true).expect("second");
        let err = r.join(C, "carol", true).expect_err("third is refused");
        assert_eq!(
            err.to_string(),
            "conference standup is full: it allows 2 participants"
        );
    }

    #[test]
    fn same_identity_replaces_the_old_session_even_when_full() {
        let mut r = room(2);
        r.join(A, "alice", true).expect("first");
        r.join(B, "bob", true).expect("second");
        let j = r.join(C, "alice", true).expect("reconnect");
        assert_eq!(j.replaced, Some(A));
        assert_eq!(r.len(), 2);
        assert!(r.participant(A).is_none());
    }

    #[test]
    fn newcomers_see_existing_tracks_and_publishers_reach_everyone_else() {
        let mut r = room(10);
        r.join(A, "alice", true).expect("join");
        let (t, subs) = r
            .publish(A, TrackKind::Video, TrackSource::Camera, true)
            .expect("publish");
        assert!(subs.is_empty());
        assert_eq!(t.id, "1-0");
        assert!(t.simulcast);
        let j = r.join(B, "bob", true).expect("join");
        assert_eq!(j.existing_tracks, vec![t.clone()]);
        let (t2, subs) = r
            .publish(B, TrackKind::Audio, TrackSource::Microphone, false)
            .expect("publish");
        assert_eq!(subs, vec![A]);
        assert_eq!(t2.id, "2-0");
        let gone = r.leave(A).expect("was there");
        assert_eq!(gone.tracks.len(), 1);
    }

    #[test]
    fn media_switches_and_token_are_honoured() {
        let mut r = Room::new(
            "c",
            10,
            MediaPolicy {
                audio: true,
                video: false,
                simulcast: false,
                screen_share: false,
                data_channel: false,
                last_n: None,
            },
        );
        r.join(A, "alice", true).expect("join");
        r.join(B, "bob", false).expect("join");
        assert_eq!(
            r.publish(A, TrackKind::Video, TrackSource::Camera, false),
            Err(PublishRefused::MediaOff("video"))
        );
        assert_eq!(
            r.publish(A, TrackKind::Video, TrackSource::Screen, false),
            Err(PublishRefused::MediaOff("screen sharing"))
        );
        assert!(
            r.publish(A, TrackKind::Audio, TrackSource::Microphone, false)
                .is_ok()
        );
        assert_eq!(
            r.publish(B, TrackKind::Audio, TrackSource::Microphone, false),
            Err(PublishRefused::NotAllowed)
        );
    }

    #[test]
    fn simulcast_off_means_single_layer() {
        let mut r = Room::new(
            "c",
            10,
            MediaPolicy {
                simulcast: false,
                ..MediaPolicy::default()
            },
        );
        r.join(A, "alice", true).expect("join");
        let (t, _) = r
            .publish(A, TrackKind::Video, TrackSource::Camera, true)
            .expect("publish");
        assert!(!t.simulcast);
    }

    #[test]
    fn mute_reports_only_changes() {
        let mut r = room(10);
        r.join(A, "alice", true).expect("join");
        let (t, _) = r
            .publish(A, TrackKind::Audio, TrackSource::Microphone, false)
            .expect("publish");
        assert!(r.set_muted(A, &t.id, true).is_some());
        assert!(r.set_muted(A, &t.id, true).is_none());
        assert!(r.set_muted(A, "nope", true).is_none());
    }

    #[test]
    fn closing_room_refuses_joins() {
        let mut r = room(10);
        r.close();
        assert!(matches!(r.join(A, "a", true), Err(JoinRefused::Closing(_))));
    }
}
