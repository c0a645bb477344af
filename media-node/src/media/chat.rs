//! The chat data channel: each participant opens a reliable channel labelled `chat`; the node
//! reads it, refuses binary or oversized messages, and relays text to everyone else in the
//! room wrapped with the sender's id and identity (the SFU relays, clients never talk P2P).

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use crate::room::model::ParticipantId;
use crate::room::task::RoomEvent;

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

/// Reads a participant's chat channel until it closes, reporting messages to the room.
pub async fn run_chat_reader(
    participant: ParticipantId,
    channel: Arc<dyn DataChannel>,
    max_bytes: usize,
    room: mpsc::WeakUnboundedSender<RoomEvent>,
) {
    while let Some(event) = channel.poll().await {
        match event {
            DataChannelEvent::OnMessage(msg) => {
                let input = judge(msg.is_string, &msg.data, max_bytes);
                let Some(room) = room.upgrade() else { break };
                let _ = room.send(RoomEvent::Chat { participant, input });
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
