//! The node's shared state: its settings, the open rooms, what it learned from Kubernetes
//! (public address, the pool's ICE servers, capacity, draining) and its readiness. Rooms are
//! opened through [`NodeState::open_room`] by the Conference watch or directly (tests).

pub mod shedding;
pub mod stats;

use crate::sync::lock;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_crds::{Conference, NodeCapacity};
use tokio::sync::Notify;

pub use stats::{LoadSnapshot, NodeStats, RateSampler, SignalingCounters, SignalingCut};

use crate::error::{Error, Result};
use crate::media::MediaSettings;
use crate::room::model::ParticipantId;
use crate::room::task::{CloseReason, RoomHandle, RoomSettings};
use crate::signaling::protocol::IceServerEntry;

/// Fixed settings of the node.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// MediaNode name.
    pub name: String,
    /// Join-token key of the pool.
    pub join_key: Vec<u8>,
    /// TURN shared secret of the pool.
    pub turn_secret: Vec<u8>,
    /// Sockets and ports for peer connections.
    pub media: MediaSettings,
    /// How long a disconnected peer may take to come back.
    pub peer_disconnect: Duration,
    /// Largest chat message relayed.
    pub chat_max_bytes: usize,
}

/// The pool's ICE servers and TURN credential lifetime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceConfig {
    /// `stun:`/`turn:`/`turns:` URLs (MediaPool status.turn.urls).
    pub urls: Vec<String>,
    /// TURN credential lifetime, seconds (spec.turn.credentialTtlSeconds).
    pub credential_ttl_seconds: u64,
}

/// Why a participant cannot be admitted to the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionRefused {
    /// spec.capacity.participants reached.
    #[error("media node {node} is at capacity ({max} participants); try again later")]
    NodeFull {
        /// Node name.
        node: String,
        /// Its capacity.
        max: u32,
    },
}

/// A participant's place within the node's capacity, held from admission until its room
/// counted it; dropping it gives the place back to the count of joining participants.
#[derive(Debug)]
pub struct Admission(Arc<AtomicU32>);

impl Drop for Admission {
    fn drop(&mut self) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// The ports the operator published for the node's media (MediaNode status.addresses).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublishedPorts {
    /// `udpPort`.
    pub udp: Option<u16>,
    /// `tcpPort`.
    pub tcp: Option<u16>,
}

/// Shared state of one media node process.
#[derive(Debug)]
pub struct NodeState {
    /// Fixed settings.
    pub settings: NodeSettings,
    /// Counters.
    pub stats: Arc<NodeStats>,
    rooms: Mutex<HashMap<String, RoomHandle>>,
    public_ip: RwLock<Option<IpAddr>>,
    published_ports: RwLock<PublishedPorts>,
    signaling_url: RwLock<Option<String>>,
    ice: RwLock<IceConfig>,
    capacity: RwLock<Option<NodeCapacity>>,
    pool_nodes: RwLock<BTreeMap<String, String>>,
    conference_api: OnceLock<kube::Api<Conference>>,
    synced: AtomicBool,
    /// The pool watch delivered the pool: the ICE servers clients get are known.
    pool_known: AtomicBool,
    draining: AtomicBool,
    drained: AtomicBool,
    next_participant: AtomicU64,
    /// Participants admitted against the capacity whose room has not counted them yet.
    joining: Arc<AtomicU32>,
    /// Bumped on every join and leave, so the load reporters (heartbeat and participant
    /// counts, each its own task) can report a burst at once.
    pub load_changed: tokio::sync::watch::Sender<()>,
    /// Woken when a room closes (drain waits on it).
    pub room_closed: Notify,
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn write<T>(l: &RwLock<T>, value: T) {
    *l.write().unwrap_or_else(|e| e.into_inner()) = value;
}

impl NodeState {
    /// A node with no rooms, not ready until its address is known and its watch synced.
    pub fn new(settings: NodeSettings) -> Arc<Self> {
        let shedding_level = Arc::clone(&settings.media.shedding_level);
        Arc::new(Self {
            settings,
            stats: Arc::new(NodeStats::sharing_shedding_level(shedding_level)),
            rooms: Mutex::new(HashMap::new()),
            public_ip: RwLock::new(None),
            published_ports: RwLock::new(PublishedPorts::default()),
            signaling_url: RwLock::new(None),
            ice: RwLock::new(IceConfig::default()),
            capacity: RwLock::new(None),
            pool_nodes: RwLock::new(BTreeMap::new()),
            conference_api: OnceLock::new(),
            synced: AtomicBool::new(false),
            pool_known: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            next_participant: AtomicU64::new(1),
            joining: Arc::new(AtomicU32::new(0)),
            load_changed: tokio::sync::watch::Sender::new(()),
            room_closed: Notify::new(),
        })
    }

    /// Records the public address clients send media to (NAT 1:1 for new peers).
    pub fn set_public_ip(&self, ip: IpAddr) {
        write(&self.public_ip, Some(ip));
    }

    /// The public address, once known.
    pub fn public_ip(&self) -> Option<IpAddr> {
        read(&self.public_ip)
    }

    /// Records the ports clients reach the media ports on (MediaNode status.addresses): the
    /// node's own, or the node ports of its Service.
    pub fn set_published_ports(&self, ports: PublishedPorts) {
        write(&self.published_ports, ports);
    }

    /// The ports clients reach the node's UDP and TCP media ports on: the published ones,
    /// else those it bound.
    pub fn media_ports(&self) -> (u16, Option<u16>) {
        let published = read(&self.published_ports);
        let media = &self.settings.media;
        (
            published
                .udp
                .unwrap_or_else(|| media.port.local_addr().port()),
            media
                .tcp_port
                .as_ref()
                .map(|p| published.tcp.unwrap_or_else(|| p.local_addr().port())),
        )
    }

    /// Records this node's signaling URL (MediaNode status.addresses.signalingUrl).
    pub fn set_signaling_url(&self, url: Option<String>) {
        write(&self.signaling_url, url);
    }

    /// This node's signaling URL, once published.
    pub fn signaling_url(&self) -> Option<String> {
        read(&self.signaling_url)
    }

    /// Records the pool's ICE servers.
    pub fn set_ice(&self, ice: IceConfig) {
        write(&self.ice, ice);
        self.pool_known.store(true, Ordering::Relaxed);
    }

    /// Records this node's capacity (MediaNode spec.capacity).
    pub fn set_capacity(&self, capacity: NodeCapacity) {
        write(&self.capacity, Some(capacity));
    }

    /// Records the pool's Ready media nodes (name to signaling URL).
    pub fn set_pool_nodes(&self, nodes: BTreeMap<String, String>) {
        write(&self.pool_nodes, nodes);
    }

    /// The pool's Ready media nodes (name to signaling URL), this one included.
    pub fn pool_nodes(&self) -> BTreeMap<String, String> {
        read(&self.pool_nodes)
    }

    /// Signaling URLs of the pool's other Ready media nodes: where a client goes when this
    /// node stops answering (they redirect it to its conference's new node).
    pub fn fallback_urls(&self) -> Vec<String> {
        let own = self.signaling_url();
        read(&self.pool_nodes)
            .into_iter()
            .filter(|(name, url)| *name != self.settings.name && Some(url) != own.as_ref())
            .map(|(_, url)| url)
            .collect()
    }

    /// Lets the node read Conferences of its namespace (to redirect clients); set once.
    pub fn set_conference_api(&self, api: kube::Api<Conference>) {
        let _ = self.conference_api.set(api);
    }

    /// Conferences of the node's namespace, once connected to Kubernetes.
    pub fn conference_api(&self) -> Option<&kube::Api<Conference>> {
        self.conference_api.get()
    }

    /// Marks the Conference watch as synced (the node knows its rooms).
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    /// The drain is over: the node holds no room and takes none, until its pod goes.
    pub fn mark_drained(&self) {
        self.drained.store(true, Ordering::Relaxed);
    }

    /// Starts draining: no new rooms from now on.
    pub fn start_drain(&self) {
        if !self.draining.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %self.settings.name, rooms = self.room_count(), "draining");
        }
    }

    /// Ends a drain taken back before the rooms were gone: new rooms are welcome again.
    pub fn end_drain(&self) {
        if self.draining.swap(false, Ordering::Relaxed) {
            tracing::info!(node = %self.settings.name, rooms = self.room_count(), "drain taken back; taking rooms again");
        }
    }

    /// True while draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready to take rooms: address known, watches synced (its rooms and its pool's ICE
    /// servers), not draining.
    pub fn is_ready(&self) -> bool {
        self.public_ip().is_some()
            && self.synced.load(Ordering::Relaxed)
            && self.pool_known.load(Ordering::Relaxed)
            && !self.is_draining()
    }

    /// For `/readyz`: whether the node serves its clients (what it serves), or why not. A
    /// draining node stays ready: it serves its calls until they have moved, and its pod's
    /// disruption budget relies on that to refuse evictions meanwhile.
    pub fn readiness(&self) -> std::result::Result<&'static str, &'static str> {
        if self.drained.load(Ordering::Relaxed) {
            Err("drained: no rooms left, waiting for the pod to be deleted")
        } else if self.public_ip().is_none() {
            Err("waiting for the operator to publish status.addresses.public")
        } else if !self.synced.load(Ordering::Relaxed) {
            Err("conference watch not synced yet")
        } else if !self.pool_known.load(Ordering::Relaxed) {
            Err("MediaPool not read yet: the ICE servers clients get are unknown")
        } else if self.is_draining() {
            Ok("ready: draining, serving its calls until they move; no new rooms")
        } else {
            Ok("ready")
        }
    }

    /// A fresh participant id.
    pub fn next_participant_id(&self) -> ParticipantId {
        ParticipantId(self.next_participant.fetch_add(1, Ordering::Relaxed))
    }

    /// Takes a place for one more participant within the node's capacity, counting the
    /// participants connected and those admitted but not yet counted by their room, so
    /// concurrent joins never exceed it. Hold the place until the room took the participant
    /// (or refused it).
    pub fn admit(&self) -> std::result::Result<Admission, AdmissionRefused> {
        let Some(cap) = read(&self.capacity) else {
            self.joining.fetch_add(1, Ordering::AcqRel);
            return Ok(Admission(Arc::clone(&self.joining)));
        };
        let mut joining = self.joining.load(Ordering::Acquire);
        loop {
            if self.stats.participants().saturating_add(joining) >= cap.participants {
                return Err(AdmissionRefused::NodeFull {
                    node: self.settings.name.clone(),
                    max: cap.participants,
                });
            }
            match self.joining.compare_exchange(
                joining,
                joining + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Admission(Arc::clone(&self.joining))),
                Err(now) => joining = now,
            }
        }
    }

    /// How long after handing out TURN credentials to hand out fresh ones: three quarters of
    /// their lifetime, so that a client has them well before the old ones expire.
    pub fn credential_renewal(&self) -> Duration {
        renewal_after(read(&self.ice).credential_ttl_seconds)
    }

    /// ICE servers for `identity`: STUN URLs as they are, TURN URLs with time-limited TURN
    /// REST credentials.
    pub fn ice_servers_for(&self, identity: &str) -> Vec<IceServerEntry> {
        let ice = read(&self.ice);
        let (turn, stun): (Vec<String>, Vec<String>) = ice
            .urls
            .into_iter()
            .partition(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(IceServerEntry {
                urls: stun,
                username: None,
                credential: None,
            });
        }
        if !turn.is_empty() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let c = conclave_crds::turn::mint(
                &self.settings.turn_secret,
                identity,
                now,
                ice.credential_ttl_seconds.max(60),
            );
            servers.push(IceServerEntry {
                urls: turn,
                username: Some(c.username),
                credential: Some(c.credential),
            });
        }
        servers
    }

    /// Opens the room of a conference, or updates it when already open. New rooms are refused
    /// while draining or beyond the node's room capacity.
    pub fn open_room(self: &Arc<Self>, settings: RoomSettings) -> Result<RoomHandle> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(&settings.conference)
            && room.is_open()
        {
            room.update(settings);
            return Ok(room.clone());
        }
        if self.is_draining() {
            return Err(Error::Node {
                name: self.settings.name.clone(),
                message: format!("draining: not opening room {}", settings.conference),
            });
        }
        if let Some(cap) = read(&self.capacity)
            && rooms.len() >= cap.rooms as usize
        {
            return Err(Error::Node {
                name: self.settings.name.clone(),
                message: format!(
                    "at room capacity ({}): not opening room {}",
                    cap.rooms, settings.conference
                ),
            });
        }
        let conference = settings.conference.clone();
        let handle = RoomHandle::spawn(Arc::clone(self), settings);
        rooms.insert(conference, handle.clone());
        Ok(handle)
    }

    /// Closes a room: its clients are told why (and where to reconnect when it moved).
    pub fn close_room(&self, conference: &str, reason: CloseReason) {
        if let Some(room) = lock(&self.rooms).get(conference) {
            room.close(reason);
        }
    }

    /// The open room of `conference`.
    pub fn room(&self, conference: &str) -> Option<RoomHandle> {
        lock(&self.rooms)
            .get(conference)
            .filter(|r| r.is_open())
            .cloned()
    }

    /// Conference names of all rooms.
    pub fn room_names(&self) -> Vec<String> {
        lock(&self.rooms).keys().cloned().collect()
    }

    /// Rooms open now.
    pub fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Called by a room task when it ends.
    pub(crate) fn room_ended(&self, conference: &str, generation: u64) {
        let mut rooms = lock(&self.rooms);
        if rooms
            .get(conference)
            .is_some_and(|r| r.generation() == generation)
        {
            rooms.remove(conference);
        }
        drop(rooms);
        self.room_closed.notify_waiters();
        self.load_changed.send_replace(());
    }
}

/// Three quarters of a credential lifetime of `ttl_seconds` (at least 60 s, as minted).
pub fn renewal_after(ttl_seconds: u64) -> Duration {
    Duration::from_secs(ttl_seconds.max(60) * 3 / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_well_before_they_expire() {
        assert_eq!(renewal_after(3600), Duration::from_secs(2700));
        assert_eq!(renewal_after(60), Duration::from_secs(45));
        assert_eq!(
            renewal_after(0),
            Duration::from_secs(45),
            "minted for 60 s at least"
        );
    }
}
