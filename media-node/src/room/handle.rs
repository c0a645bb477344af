//! A handle on a running room: how sessions and the Conference watch reach its task. Every
//! event travels on one queue, in order (a client's offer must not overtake its join); client
//! messages take a slot of the room's client budget first, so a session waits while the room
//! holds `CLIENT_QUEUE` of them and a client cannot grow the room's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::events::{CloseReason, JoinRequest, RoomEvent, RoomSettings};
use super::model::ParticipantId;
use crate::node::NodeState;
use crate::signaling::protocol::{ClientMessage, ErrorCode};

/// Client messages queued to a room from all its sessions before senders wait.
pub(super) const CLIENT_QUEUE: usize = 256;

/// A handle on a running room.
#[derive(Clone, Debug)]
pub struct RoomHandle {
    conference: String,
    generation: u64,
    pub(super) events: mpsc::UnboundedSender<RoomEvent>,
    client_slots: Arc<tokio::sync::Semaphore>,
    pub(super) participants: Arc<AtomicU32>,
    pub(super) open: Arc<AtomicBool>,
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
            client_slots: Arc::new(tokio::sync::Semaphore::new(CLIENT_QUEUE)),
            participants: Arc::new(AtomicU32::new(0)),
            open: Arc::new(AtomicBool::new(true)),
        };
        tokio::spawn(super::task::run(node, settings, handle.clone(), rx));
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

    /// Passes a client message to the room, waiting while the room's client queue is full.
    pub async fn client(&self, participant: ParticipantId, message: ClientMessage) {
        let Ok(slot) = self.client_slots.clone().acquire_owned().await else {
            return;
        };
        let _ = self.events.send(RoomEvent::Client {
            participant,
            message,
            slot,
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
