//! Conference: one meeting, the capacity it reserves, where it was placed and how to join it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One meeting. The operator places it on a media node of its pool, reserving
/// `expectedParticipants` (else `maxParticipants`) and room for it to grow to
/// `maxParticipants`, and publishes how to join in `status.join`.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "conclave.dev",
    version = "v1alpha1",
    kind = "Conference",
    namespaced,
    status = "ConferenceStatus",
    shortname = "conf",
    category = "conclave",
    selectable = ".status.mediaNode",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".status.mediaNode"}"#,
    printcolumn = r#"{"name":"Participants","type":"integer","jsonPath":".status.participants"}"#,
    printcolumn = r#"{"name":"Max","type":"integer","jsonPath":".spec.maxParticipants","priority":1}"#,
    printcolumn = r#"{"name":"Start","type":"date","jsonPath":".spec.startTime","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pool) || has(self.region)").message("spec.pool or spec.region must be set: name the MediaPool to host this conference, or a region whose pools may host it"))]
#[x_kube(validation = Rule::new("!has(self.startTime) || !has(self.endTime) || self.endTime > self.startTime").message("spec.endTime must be later than spec.startTime"))]
#[x_kube(validation = Rule::new("(has(self.pool) ? self.pool : '') == (has(oldSelf.pool) ? oldSelf.pool : '')").message("spec.pool is immutable: the conference's capacity is reserved in that pool; create a new conference instead"))]
#[x_kube(validation = Rule::new("(has(self.region) ? self.region : '') == (has(oldSelf.region) ? oldSelf.region : '')").message("spec.region is immutable: the conference was placed by it; create a new conference instead"))]
#[x_kube(validation = Rule::new("!has(self.expectedParticipants) || self.expectedParticipants <= self.maxParticipants").message("spec.expectedParticipants may not exceed spec.maxParticipants"))]
#[x_kube(validation = Rule::new("(has(self.expectedParticipants) ? self.expectedParticipants : 0) == (has(oldSelf.expectedParticipants) ? oldSelf.expectedParticipants : 0)").message("spec.expectedParticipants is immutable: capacity was reserved for it; create a new conference for a different size"))]
pub struct ConferenceSpec {
    /// The MediaPool that hosts this conference. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Region to host this conference in, when no pool is named: any pool of that region
    /// (in this namespace) may host it. A DNS label. Immutable.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Most participants at once (the media node refuses more), so it must fit one node of
    /// the pool (nodeCapacity.participants). Between 1 and 1000. Immutable: the reservation
    /// is made once.
    #[schemars(range(min = 1, max = 1000))]
    #[serde(default = "default_max_participants")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.maxParticipants is immutable: capacity was reserved for it; create a new conference for a different size"))]
    pub max_participants: u32,
    /// Participants expected to join, when fewer than maxParticipants usually do (invitations
    /// exceed attendance): this many are reserved at placement instead of maxParticipants.
    /// Placement keeps room on each media node for the largest possible growth among its
    /// conferences (maxParticipants minus expectedParticipants), so any one of them can still
    /// fill up to maxParticipants, and participants beyond a conference's expectation count
    /// against its node as they join. At most maxParticipants; immutable.
    #[schemars(range(min = 1, max = 1000))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_participants: Option<u32>,
    /// Which media the conference allows.
    #[serde(default)]
    pub media: MediaOptions,
    /// When the meeting starts. Capacity is brought up warmupSeconds before; the conference
    /// is placed ahead of time (phase Scheduled) and becomes Active at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the meeting ends: the room is closed and its capacity released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
    /// Seconds after the conference became Active at which it ends, if no endTime is set.
    #[schemars(range(min = 1, max = 604800))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u32>,
}

fn default_max_participants() -> u32 {
    10
}

impl ConferenceSpec {
    /// Participants reserved at placement: expectedParticipants, else maxParticipants (never
    /// more than maxParticipants).
    pub fn reserved_participants(&self) -> u32 {
        self.expected_participants
            .map_or(self.max_participants, |e| e.min(self.max_participants))
    }
}

/// Media a conference allows; the media node refuses what is switched off.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.simulcast || self.video").message("spec.media.simulcast needs spec.media.video: enable video or disable simulcast"))]
pub struct MediaOptions {
    /// Participants may publish audio.
    #[serde(default = "yes")]
    pub audio: bool,
    /// Participants may publish camera video.
    #[serde(default = "yes")]
    pub video: bool,
    /// Video is published in up to three layers; each subscriber gets the one its link carries.
    #[serde(default = "yes")]
    pub simulcast: bool,
    /// Participants may share their screen.
    #[serde(default = "yes")]
    pub screen_share: bool,
    /// The chat data channel, relayed by the media node.
    #[serde(default = "yes")]
    pub data_channel: bool,
    /// At most this many camera videos are forwarded to each participant (last-N): those of
    /// the participants its page shows (`viewing`), then of the most recent speakers. Screen
    /// shares and audio always flow. Unset: every camera video.
    #[schemars(range(min = 1, max = 100))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_n: Option<u32>,
}

fn yes() -> bool {
    true
}

impl Default for MediaOptions {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            simulcast: true,
            screen_share: true,
            data_channel: true,
            last_n: None,
        }
    }
}

/// Lifecycle phase of a conference.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConferencePhase {
    /// Not placed yet: waiting for capacity (see the Placed condition for why).
    #[default]
    Pending,
    /// Placed ahead of its startTime; join info is published.
    Scheduled,
    /// Placed and running; clients may join.
    Active,
    /// Its node failed or is draining; it is being moved and join info will change.
    Migrating,
    /// Ended (endTime or ttl passed); the room is closed.
    Ended,
    /// Cannot be hosted (for example it asks for more than a node of its pool carries).
    Failed,
}

impl ConferencePhase {
    /// Whether the operator may move a conference from `self` to `next`. Staying is allowed;
    /// Ended and Failed are terminal.
    pub fn may_become(self, next: ConferencePhase) -> bool {
        use ConferencePhase::*;
        self == next
            || matches!(
                (self, next),
                (Pending | Scheduled | Active | Migrating, Ended | Failed)
                    | (Pending, Scheduled | Active)
                    | (Scheduled, Active | Migrating | Pending)
                    | (Active, Migrating)
                    | (Migrating, Active | Scheduled)
            )
    }

    /// True when the conference holds a reservation on a node.
    pub fn holds_reservation(self) -> bool {
        matches!(
            self,
            ConferencePhase::Scheduled | ConferencePhase::Active | ConferencePhase::Migrating
        )
    }
}

/// An ICE server clients use: STUN or TURN URLs. TURN credentials are never published here;
/// the media node hands time-limited ones to each participant.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
}

/// How clients join a conference.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinInfo {
    /// WebSocket URL of the hosting media node's signaling endpoint.
    pub signaling_url: String,
    /// Public IP media flows to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// STUN and TURN servers of the pool.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
}

/// Observed state of a conference. The operator writes all but `participants`, which the
/// hosting media node writes under its own field manager.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConferenceStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ConferencePhase>,
    /// The MediaNode hosting the conference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_node: Option<String>,
    /// The MediaPool of that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// How clients join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinInfo>,
    /// Connected participants, reported by the media node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participants: Option<u32>,
    /// When the conference was first placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<Time>,
    /// When the conference became Active (ttlSeconds counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<Time>,
    /// How many times it was moved to another node (failover or evacuation).
    #[serde(default)]
    pub moves: u32,
    /// `Placed`, with the reason when it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::ConferencePhase::{self, *};

    const ALL: [ConferencePhase; 6] = [Pending, Scheduled, Active, Migrating, Ended, Failed];

    #[test]
    fn terminal_phases_stay() {
        for to in ALL {
            assert_eq!(Ended.may_become(to), to == Ended);
            assert_eq!(Failed.may_become(to), to == Failed);
        }
    }

    #[test]
    fn live_phases_may_end_or_fail() {
        for from in [Pending, Scheduled, Active, Migrating] {
            assert!(
                from.may_become(Ended) && from.may_become(Failed),
                "{from:?}"
            );
        }
    }

    #[test]
    fn an_active_conference_never_goes_back_to_pending() {
        assert!(!Active.may_become(Pending));
        assert!(!Active.may_become(Scheduled));
        assert!(!Migrating.may_become(Pending));
        assert!(Active.may_become(Migrating) && Migrating.may_become(Active));
    }

    #[test]
    fn only_placed_phases_hold_reservations() {
        let holding: Vec<_> = ALL.into_iter().filter(|p| p.holds_reservation()).collect();
        assert_eq!(holding, vec![Scheduled, Active, Migrating]);
    }
}
