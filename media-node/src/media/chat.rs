//! The chat data channel: each participant opens a reliable channel labelled `chat`; the node
//! reads it, refuses binary or oversized messages, and relays text to everyone else in the
//! room wrapped with the sender's id and identity (the SFU relays, clients never talk P2P).
//! Each sender's messages are rate-limited ([`CHAT_RATE`]): a flood is dropped, the sender is
//! told once, and a sender that keeps flooding has its chat channel closed, so the room's
//! queue never takes more than the rate from one participant.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use crate::room::model::ParticipantId;
use crate::room::task::RoomEvent;
use crate::signaling::budget::{MessageBudget, RateLimit, Verdict};

/// Chat messages one participant may send: people type a few a second at most; pasted
/// bursts of a few dozen lines pass.
pub const CHAT_RATE: RateLimit = RateLimit {
    per_second: 5.0,
    burst: 30,
};

/// Label of the chat channel.
pub const CHAT_LABEL: &str = "chat";

/// A relayed chat message, as receivers get it.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChatRelay {
    /// Sender's participant id.
    pub participant_id: ParticipantId,
    /// Sender's identity.
    pub identity: String,
    /// Sender's display name.
    pub name: String,
    /// The message text as sent.
    pub message: String,
}

/// What became of one incoming chat frame.
#[derive(Debug, PartialEq, Eq)]
pub enum ChatInput {
    /// Relay this text.
    Text(String),
    /// Refused, with the reason for the sender.
    Refused(String),
}

/// Judges one frame against the size limit and the text-only rule.
pub fn judge(is_string: bool, data: &[u8], max_bytes: usize) -> ChatInput {
    if data.len() > max_bytes {
        return ChatInput::Refused(format!(
            "chat message of {} bytes is larger than the limit of {max_bytes} bytes",
            data.len()
        ));
    }
    if !is_string {
        return ChatInput::Refused("chat messages must be text".to_owned());
    }
    match std::str::from_utf8(data) {
        Ok(text) => ChatInput::Text(text.to_owned()),
        Err(_) => ChatInput::Refused("chat message is not valid UTF-8".to_owned()),
    }
}

/// What becomes of one chat frame under the sender's rate.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Report this to the room: the frame judged, or the refusal of the first frame over the
    /// rate.
    Report(ChatInput),
    /// Over the rate, the sender told already: drop it silently.
    Drop,
    /// The sender kept flooding: close its chat channel.
    Close,
}

/// Admits one chat frame arriving at `now` under `budget`, judging it ([`judge`]) when it is
/// within the rate.
pub fn admit(
    budget: &mut MessageBudget,
    now: Instant,
    is_string: bool,
    data: &[u8],
    max_bytes: usize,
) -> Admission {
    match budget.charge(now) {
        Verdict::Accept => Admission::Report(judge(is_string, data, max_bytes)),
        Verdict::Drop { first: true } => Admission::Report(ChatInput::Refused(format!(
            "chat messages arrive faster than {} per second: they are not relayed until you slow down",
            budget.limit().per_second
        ))),
        Verdict::Drop { first: false } => Admission::Drop,
        Verdict::Disconnect => Admission::Close,
    }
}

/// Reads a participant's chat channel until it closes, reporting messages to the room.
pub async fn run_chat_reader(
    participant: ParticipantId,
    channel: Arc<dyn DataChannel>,
    max_bytes: usize,
    room: mpsc::WeakUnboundedSender<RoomEvent>,
) {
    let mut budget = MessageBudget::new(CHAT_RATE, Instant::now());
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnMessage(msg) => {
                let Some(room) = room.upgrade() else { break };
                match admit(
                    &mut budget,
                    Instant::now(),
                    msg.is_string,
                    &msg.data,
                    max_bytes,
                ) {
                    Admission::Report(input) => {
                        let _ = room.send(RoomEvent::Chat { participant, input });
                    }
                    Admission::Drop => {}
                    Admission::Close => {
                        let reason = "chat closed: too many messages".to_owned();
                        let input = ChatInput::Refused(reason);
                        let _ = room.send(RoomEvent::Chat { participant, input });
                        tracing::info!(%participant, "chat channel closed for flooding");
                        let _ = channel.close().await;
                        break;
                    }
                }
            }
            DataChannelEvent::OnClose => break,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_refused_once_then_dropped_then_closed() {
        let start = Instant::now();
        let mut budget = MessageBudget::new(CHAT_RATE, start);
        let mut send = || admit(&mut budget, start, true, b"spam", 100);
        for _ in 0..CHAT_RATE.burst {
            assert_eq!(send(), Admission::Report(ChatInput::Text("spam".into())));
        }
        assert!(
            matches!(send(), Admission::Report(ChatInput::Refused(r)) if r.contains("faster than 5 per second"))
        );
        for _ in 1..CHAT_RATE.burst {
            assert_eq!(send(), Admission::Drop);
        }
        assert_eq!(send(), Admission::Close);
    }

    #[test]
    fn a_sender_within_the_rate_is_relayed() {
        let start = Instant::now();
        let mut budget = MessageBudget::new(CHAT_RATE, start);
        for i in 0..200u64 {
            let now = start + std::time::Duration::from_millis(i * 250);
            assert_eq!(
                admit(&mut budget, now, true, b"hi", 100),
                Admission::Report(ChatInput::Text("hi".into()))
            );
        }
    }

    #[test]
    fn size_limit_and_text_only() {
        assert_eq!(judge(true, b"hi", 10), ChatInput::Text("hi".into()));
        assert!(matches!(
            judge(true, &[b'a'; 11], 10),
            ChatInput::Refused(_)
        ));
        assert!(matches!(judge(false, b"hi", 10), ChatInput::Refused(_)));
        assert!(matches!(
            judge(true, &[0xff, 0xfe], 10),
            ChatInput::Refused(_)
        ));
    }
}
