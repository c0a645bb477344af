//! The signaling protocol on `/rtc`, version 1: JSON text frames `{"v":1,"type":...}`.
//! Parsing accepts any input and returns a typed error for anything it cannot use; it never
//! panics (property-tested). `docs/signaling.md` documents every message.

use serde::{Deserialize, Serialize};

use crate::forward::layers::Quality;
use crate::room::model::{ParticipantId, TrackId, TrackInfo, TrackSource};

/// The protocol version this node speaks.
pub const PROTOCOL_VERSION: u64 = 1;
/// Largest text frame accepted from a client, bytes (SDP with many candidates fits easily).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A track the client publishes, described in its offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackDescription {
    /// The MediaStreamTrack id (the `msid` track id in the SDP).
    pub track_id: String,
    /// What it carries.
    pub source: TrackSource,
}

/// An ICE candidate as browsers serialise `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The `candidate:` line; empty signals end of candidates.
    pub candidate: String,
    /// Media section id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Media section index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
    /// ICE username fragment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Messages a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    /// First message: join `conference` with a join token.
    Join {
        /// Conference name.
        conference: String,
        /// Join token (HS256 JWT) from the application.
        token: String,
        /// Initial quality for subscribed video.
        #[serde(default)]
        quality: Option<Quality>,
        /// The name others see; the token's identity when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// An SDP offer (publishing, or renegotiation started by the client).
    Offer {
        /// The SDP.
        sdp: String,
        /// Sources of the tracks the offer sends.
        #[serde(default)]
        tracks: Vec<TrackDescription>,
    },
    /// The answer to an offer from the node.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Candidate {
        /// The candidate.
        candidate: Candidate,
    },
    /// Mute or unmute one of the client's published tracks.
    Mute {
        /// The client's track id (msid) or the node's track id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// Stop publishing one of the client's tracks (a screen share that ended): the others
    /// are told it is gone.
    Unpublish {
        /// The client's track id (msid) or the node's track id.
        track_id: String,
    },
    /// Ask for a video quality, for one subscribed track or all.
    SetQuality {
        /// Quality bound.
        quality: Quality,
        /// A subscribed track id; all tracks when absent.
        #[serde(default)]
        track_id: Option<TrackId>,
    },
    /// The participants whose video the client shows now (its page of the grid): with
    /// last-N, their cameras are forwarded first.
    Viewing {
        /// Participant ids, most important first.
        participant_ids: Vec<ParticipantId>,
    },
    /// Ask the node to restart ICE (it sends a new offer).
    IceRestart {},
    /// Keep-alive.
    Ping {},
    /// Leave the conference.
    Leave {},
}

impl ClientMessage {
    /// The message type as spelled on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Join { .. } => "join",
            ClientMessage::Offer { .. } => "offer",
            ClientMessage::Answer { .. } => "answer",
            ClientMessage::Candidate { .. } => "candidate",
            ClientMessage::Mute { .. } => "mute",
            ClientMessage::Unpublish { .. } => "unpublish",
            ClientMessage::SetQuality { .. } => "setQuality",
            ClientMessage::Viewing { .. } => "viewing",
            ClientMessage::IceRestart {} => "iceRestart",
            ClientMessage::Ping {} => "ping",
            ClientMessage::Leave {} => "leave",
        }
    }
}

/// An ICE server with optional time-limited credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServerEntry {
    /// `stun:` / `turn:` URLs.
    pub urls: Vec<String>,
    /// TURN REST username (`expiry:identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN REST password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A participant as others see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    /// Id.
    pub id: ParticipantId,
    /// Identity from its token.
    pub identity: String,
    /// The name it asked to be shown by (its identity when it asked for none).
    pub name: String,
    /// Its published tracks.
    pub tracks: Vec<TrackInfo>,
}

/// The chat data channel's settings, when the conference has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatChannel {
    /// Label the client gives the channel it creates.
    pub label: String,
    /// Largest message relayed, bytes.
    pub max_message_bytes: usize,
}

/// Error codes of [`ServerMessage::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ErrorCode {
    /// Not JSON, not an object, or fields of the wrong type.
    Malformed,
    /// `v` missing or not a version this node speaks.
    UnsupportedVersion,
    /// A `type` this node does not know.
    UnknownType,
    /// Larger than the frame limit.
    TooLarge,
    /// A message that is not valid now (for example an offer before join).
    Unexpected,
    /// The join token was refused.
    Unauthorized,
    /// The conference is not hosted on this node and does not exist (or ended).
    NotHere,
    /// The conference exists but is not placed on a live media node yet (being placed, or
    /// re-placed after its node failed): join again in a few seconds.
    NotPlaced,
    /// The conference is full.
    RoomFull,
    /// This node is at capacity.
    NodeFull,
    /// This node is draining and takes no new participants.
    Draining,
    /// The media is switched off for this conference, or the token does not allow it.
    MediaRefused,
    /// An SDP or candidate could not be applied.
    Negotiation,
    /// A failure of the node.
    Internal,
    /// No `join` within the node's join timeout after connecting: the socket is closed.
    JoinTimeout,
    /// More messages than the node's rate limit: the message was dropped, or (when the
    /// client kept on) the socket is closed.
    RateLimited,
}

/// Messages the node sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// Reply to a successful join.
    Joined {
        /// The new participant's id.
        participant_id: ParticipantId,
        /// The conference.
        conference: String,
        /// ICE servers with time-limited TURN credentials.
        ice_servers: Vec<IceServerEntry>,
        /// Who is already there.
        participants: Vec<ParticipantInfo>,
        /// The chat channel, when enabled.
        chat: Option<ChatChannel>,
        /// Signaling URLs of the pool's other Ready media nodes: where to `join` again when
        /// this node stops answering (they redirect to the conference's new node).
        #[serde(default)]
        fallback_urls: Vec<String>,
        /// The conference forwards simulcast layers: publish camera video in up to three
        /// (rids `q`, `h`, `f`, lowest first).
        #[serde(default)]
        simulcast: bool,
        /// At most this many camera videos are forwarded to each participant (last-N); which
        /// ones, `forwardedVideos` says. Absent: every camera video.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_n: Option<u32>,
    },
    /// Fresh ICE servers (new TURN credentials), sent before the ones given at `joined`
    /// expire: the client uses them for its next ICE gathering, and restarts ICE at once when
    /// its media goes through a relay (whose allocation could not be refreshed with expired
    /// credentials).
    IceServers {
        /// ICE servers with time-limited TURN credentials.
        ice_servers: Vec<IceServerEntry>,
    },
    /// An offer from the node (tracks to subscribe changed, or ICE restart).
    Offer {
        /// The SDP.
        sdp: String,
    },
    /// The node's answer to a client offer.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// A trickled ICE candidate of the node.
    Candidate {
        /// The candidate.
        candidate: Candidate,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left.
    ParticipantLeft {
        /// Who.
        participant_id: ParticipantId,
    },
    /// A track was published (a renegotiation offer follows).
    TrackPublished {
        /// The track.
        track: TrackInfo,
    },
    /// A track was unpublished.
    TrackUnpublished {
        /// Its id.
        track_id: TrackId,
        /// Its publisher.
        participant_id: ParticipantId,
    },
    /// A track was muted or unmuted.
    Muted {
        /// Publisher.
        participant_id: ParticipantId,
        /// Track.
        track_id: TrackId,
        /// New state.
        muted: bool,
    },
    /// Dynacast: send only these layers of your video `track_id` (0 the lowest: `q`, then `h`,
    /// `f`; 0 alone for a video sent in one encoding); none: pause it. Nobody receives the
    /// others. Until told, send every layer.
    PublishLayers {
        /// The node's id of the client's track.
        track_id: TrackId,
        /// Layers to send.
        layers: Vec<u8>,
    },
    /// With last-N: the participants whose camera video the node forwards to this client now
    /// (the others' cameras are paused for it until they are in this list again).
    ForwardedVideos {
        /// Participant ids.
        participant_ids: Vec<ParticipantId>,
    },
    /// The active speaker changed.
    ActiveSpeaker {
        /// The speaker, or none.
        participant_id: Option<ParticipantId>,
    },
    /// The conference moved: connect to this signaling URL and join again.
    Reconnect {
        /// Where to connect.
        signaling_url: String,
        /// Why.
        reason: String,
    },
    /// Reply to ping.
    Pong {},
    /// A message could not be used.
    Error {
        /// What kind of problem.
        code: ErrorCode,
        /// What was wrong and what to do.
        message: String,
    },
    /// The node ended the session.
    Left {
        /// Why.
        reason: String,
    },
}

impl ServerMessage {
    /// An error message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }

    /// The JSON text frame, with the version field.
    pub fn to_text(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_else(
            |e| serde_json::json!({"type": "error", "code": "internal", "message": e.to_string()}),
        );
        if let Some(object) = value.as_object_mut() {
            object.insert("v".into(), PROTOCOL_VERSION.into());
        }
        value.to_string()
    }
}

/// Why a client frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes is larger than the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(usize),
    /// Not JSON, or wrong fields.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Missing or unknown version.
    #[error(
        "unsupported protocol version {0}: this node speaks version {PROTOCOL_VERSION}; set \"v\": {PROTOCOL_VERSION}"
    )]
    Version(String),
    /// Unknown type.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
}

impl ProtocolError {
    /// The error code sent back.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::TooLarge(_) => ErrorCode::TooLarge,
            ProtocolError::Malformed(_) => ErrorCode::Malformed,
            ProtocolError::Version(_) => ErrorCode::UnsupportedVersion,
            ProtocolError::UnknownType(_) => ErrorCode::UnknownType,
        }
    }
}

const KNOWN_TYPES: [&str; 11] = [
    "join",
    "offer",
    "answer",
    "candidate",
    "mute",
    "unpublish",
    "setQuality",
    "viewing",
    "iceRestart",
    "ping",
    "leave",
];

/// Parses one text frame from a client.
pub fn parse_client(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(ProtocolError::Malformed("expected a JSON object".into()));
    };
    match object.get("v") {
        Some(v) if v.as_u64() == Some(PROTOCOL_VERSION) => {}
        Some(v) => return Err(ProtocolError::Version(v.to_string())),
        None => return Err(ProtocolError::Version("(missing)".into())),
    }
    let kind = match object.get("type") {
        Some(serde_json::Value::String(k)) => k.clone(),
        _ => {
            return Err(ProtocolError::Malformed(
                "missing string field \"type\"".into(),
            ));
        }
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(ProtocolError::UnknownType(kind));
    }
    serde_json::from_value(value).map_err(|e| ProtocolError::Malformed(format!("{kind}: {e}")))
}

/// Serialises a client message with the version field (used by clients and tests).
pub fn client_text(message: &ClientMessage) -> String {
    let mut value = serde_json::to_value(message).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("v".into(), PROTOCOL_VERSION.into());
    }
    value.to_string()
}

/// Parses one text frame from the node (used by clients and tests).
pub fn parse_server(text: &str) -> Result<ServerMessage, ProtocolError> {
    serde_json::from_str(text).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_join() {
        let m = parse_client(r#"{"v":1,"type":"join","conference":"standup","token":"t"}"#);
        assert_eq!(
            m,
            Ok(ClientMessage::Join {
                conference: "standup".into(),
                token: "t".into(),
                quality: None,
                name: None,
            })
        );
    }

    #[test]
    fn parses_camel_case_fields() {
        let m = parse_client(
            r#"{"v":1,"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .expect("valid");
        let ClientMessage::Candidate { candidate } = m else {
            panic!("a candidate");
        };
        assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
        assert_eq!(candidate.sdp_m_line_index, Some(0));
        assert_eq!(
            parse_client(r#"{"v":1,"type":"setQuality","quality":"low","trackId":"1-0"}"#),
            Ok(ClientMessage::SetQuality {
                quality: Quality::Low,
                track_id: Some("1-0".into())
            })
        );
        assert_eq!(
            parse_client(r#"{"v":1,"type":"iceRestart"}"#),
            Ok(ClientMessage::IceRestart {})
        );
    }

    #[test]
    fn round_trips_every_client_message() {
        let messages = [
            ClientMessage::Join {
                conference: "c".into(),
                token: "t".into(),
                quality: Some(Quality::Medium),
                name: Some("Ana".into()),
            },
            ClientMessage::Offer {
                sdp: "v=0".into(),
                tracks: vec![TrackDescription {
                    track_id: "cam".into(),
                    source: TrackSource::Camera,
                }],
            },
            ClientMessage::Answer { sdp: "v=0".into() },
            ClientMessage::Viewing {
                participant_ids: vec![ParticipantId(3), ParticipantId(9)],
            },
            ClientMessage::Unpublish {
                track_id: "screen-1".into(),
            },
            ClientMessage::Mute {
                track_id: "x".into(),
                muted: true,
            },
            ClientMessage::Ping {},
            ClientMessage::Leave {},
        ];
        for m in messages {
            assert_eq!(
                parse_client(&client_text(&m)),
                Ok(m.clone()),
                "{}",
                m.kind()
            );
        }
    }

    #[test]
    fn refuses_with_distinct_errors() {
        assert!(matches!(
            parse_client("nope"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            parse_client("[1]"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            parse_client(r#"{"type":"join"}"#),
            Err(ProtocolError::Version(_))
        ));
        assert!(matches!(
            parse_client(r#"{"v":2,"type":"join"}"#),
            Err(ProtocolError::Version(_))
        ));
        assert!(matches!(
            parse_client(r#"{"v":1,"type":"dance"}"#),
            Err(ProtocolError::UnknownType(_))
        ));
        assert!(matches!(
            parse_client(r#"{"v":1,"type":"join","conference":5}"#),
            Err(ProtocolError::Malformed(_))
        ));
        let big = format!(
            r#"{{"v":1,"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(
            parse_client(&big),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn server_messages_carry_the_version() {
        let text = ServerMessage::error(ErrorCode::Unexpected, "join first").to_text();
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["v"], 1);
        assert_eq!(value["type"], "error");
        assert_eq!(value["code"], "unexpected");
        assert!(matches!(
            parse_server(&text),
            Ok(ServerMessage::Error { .. })
        ));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
            prop_oneof![
                Just("join"),
                Just("offer"),
                Just("answer"),
                Just("candidate"),
                Just("mute"),
                Just("setQuality"),
                Just("viewing")
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("v".to_owned()),
                        Just("type".to_owned()),
                        Just("sdp".to_owned()),
                        Just("candidate".to_owned()),
                        Just("trackId".to_owned()),
                        ".{0,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,300}") {
            let _ = parse_client(&s);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_client(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn never_panics_on_structured_json(mut v in json_value(), version in prop_oneof![Just(1u64), any::<u64>()]) {
            if let Some(o) = v.as_object_mut() {
                o.insert("v".into(), version.into());
            }
            let _ = parse_client(&v.to_string());
        }
    }
}
