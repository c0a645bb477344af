//! The load simulator: stands in for every media node whose pod kwok runs. From the moment
//! the pod is Running and the MediaNode has a public address (when the real media node starts
//! reporting) until the pod or MediaNode goes away, it does what the media node's reporter
//! does, under the field manager `conclave-media-node`: every heartbeat interval (what a media
//! node renews at in the pool: a third of its heartbeat timeout) a renewal of its Lease; a
//! server-side apply of `status.load` and `status.lastHeartbeat` when the load changed (500 ms
//! after a change of its rooms) and at least every minute; and, in a task of its own,
//! `status.participants` of each conference whose count changed. Participants join a
//! conference placed on the node (after a join delay) once it is Active or, if it is booked,
//! at its startTime, as people open a meeting at its time (the media node opens the room at
//! placement, so they need not wait for the operator to write Active); they leave when it is
//! deleted; how many come is the conference's attendees annotation (else maxParticipants).
//!
//! One watch per kind serves all simulated nodes (a real media node watches its own
//! conferences); the writes are the real ones, one task per node.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_crds::node::NodeLoad;
use conclave_crds::report::{lease_renewal, load_report, participants_report};
use conclave_crds::{Conference, ConferencePhase, MediaNode, labels};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Annotation on a Conference: how many participants actually join it.
pub const ATTENDEES: &str = "bench.conclave.dev/attendees";

/// Reports at most this often after a change (the media node's MIN_INTERVAL).
const SETTLE: Duration = Duration::from_millis(500);
/// The load is written at least this often, changed or not (the media node's REFRESH).
const LOAD_REFRESH: Duration = Duration::from_secs(60);

/// How the simulated media nodes behave.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Behaviour {
    /// Seconds between Lease renewals (the media node's `--heartbeat-seconds`, by default
    /// `conclave_crds::report::lease_renewal_interval` of the pool's heartbeat timeout).
    pub heartbeat_seconds: u64,
    /// Time from a conference becoming Active to its participants being connected.
    pub join_delay_ms: u64,
}

/// Requests the simulated media nodes made, for subtracting from the API server's counts.
#[derive(Debug, Default)]
pub struct Writes {
    /// MediaNode status applies.
    pub node_reports: AtomicU64,
    /// Lease renewals.
    pub lease_renewals: AtomicU64,
    /// Conference status applies.
    pub conference_reports: AtomicU64,
    /// Applies that failed.
    pub errors: AtomicU64,
}

/// What one simulated media node reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub load: NodeLoad,
    /// Participants per conference with someone connected.
    pub participants: Vec<(String, u32)>,
}

#[derive(Clone, Debug)]
struct Room {
    node: Option<String>,
    /// When its participants begin to arrive (may be ahead, for a booked one).
    live_since: Option<Instant>,
    attendees: u32,
}

#[derive(Default)]
struct World {
    rooms: HashMap<String, Room>,
    by_node: HashMap<String, BTreeSet<String>>,
    pods_running: HashSet<String>,
    nodes_addressed: HashSet<String>,
    /// MediaNode uids and pools, for their Leases.
    node_owners: HashMap<String, (String, String)>,
    tasks: HashMap<String, (Arc<watch::Sender<()>>, JoinHandle<()>)>,
}

/// The running simulator; stops its tasks when dropped.
pub struct Simulator {
    watches: Vec<JoinHandle<()>>,
    world: Arc<Mutex<World>>,
    /// Its writes so far.
    pub writes: Arc<Writes>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        for w in &self.watches {
            w.abort();
        }
        let world = self.world.lock().unwrap_or_else(|e| e.into_inner());
        for (_, task) in world.tasks.values() {
            task.abort();
        }
    }
}

impl Simulator {
    /// Simulated media nodes reporting now.
    pub fn reporting(&self) -> usize {
        lock(&self.world).tasks.len()
    }
}

struct Shared {
    client: Client,
    namespace: String,
    behaviour: Behaviour,
    world: Arc<Mutex<World>>,
    writes: Arc<Writes>,
}

fn lock(world: &Mutex<World>) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts simulating every media node of `namespace`.
pub fn start(client: Client, namespace: &str, behaviour: Behaviour) -> Simulator {
    let world = Arc::new(Mutex::new(World::default()));
    let writes = Arc::new(Writes::default());
    let shared = Arc::new(Shared {
        client: client.clone(),
        namespace: namespace.to_owned(),
        behaviour,
        world: world.clone(),
        writes: writes.clone(),
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let nodes: Api<MediaNode> = Api::namespaced(client.clone(), namespace);
    let conferences: Api<Conference> = Api::namespaced(client, namespace);
    let media_pods = watcher::Config::default().labels(&format!(
        "{}={}",
        labels::COMPONENT,
        labels::COMPONENT_MEDIA_NODE
    ));
    let watches = vec![
        tokio::spawn(follow(pods, media_pods, shared.clone(), on_pod)),
        tokio::spawn(follow(
            nodes,
            watcher::Config::default(),
            shared.clone(),
            on_node,
        )),
        tokio::spawn(follow(
            conferences,
            watcher::Config::default(),
            shared,
            on_conference,
        )),
    ];
    Simulator {
        watches,
        world,
        writes,
    }
}

/// Feeds every object seen (or gone, as None) of one kind to `apply`.
async fn follow<K, F>(api: Api<K>, config: watcher::Config, shared: Arc<Shared>, apply: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    F: Fn(&Shared, &str, Option<&K>),
{
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(o) | Event::InitApply(o)) => apply(&shared, &o.name_any(), Some(&o)),
            Ok(Event::Delete(o)) => apply(&shared, &o.name_any(), None),
            Ok(Event::Init | Event::InitDone) => {}
            Err(e) => tracing::warn!(error = %e, "simulator watch error"),
        }
    }
}

fn on_pod(shared: &Shared, name: &str, pod: Option<&Pod>) {
    // The process runs while the pod is Running and not being deleted, whatever its Ready
    // condition says (the node controller marks pods of an unresponsive Node not ready; the
    // media node inside keeps going).
    let running = pod.is_some_and(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    });
    let mut world = lock(&shared.world);
    if running {
        world.pods_running.insert(name.to_owned());
    } else {
        world.pods_running.remove(name);
    }
    supervise(shared, &mut world, name);
}

fn on_node(shared: &Shared, name: &str, node: Option<&MediaNode>) {
    let addressed = node.is_some_and(|n| {
        n.status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .is_some_and(|a| a.public.is_some())
    });
    let mut world = lock(&shared.world);
    if addressed {
        world.nodes_addressed.insert(name.to_owned());
    } else {
        world.nodes_addressed.remove(name);
    }
    match node.and_then(|n| Some((n.metadata.uid.clone()?, n.spec.pool.clone()))) {
        Some(owner) => {
            world.node_owners.insert(name.to_owned(), owner);
        }
        None => {
            world.node_owners.remove(name);
        }
    }
    supervise(shared, &mut world, name);
}

/// Starts or stops the simulated media node `name` as its pod and MediaNode say.
fn supervise(shared: &Shared, world: &mut World, name: &str) {
    let runs = world.pods_running.contains(name) && world.nodes_addressed.contains(name);
    match (runs, world.tasks.contains_key(name)) {
        (true, false) => {
            let notify = Arc::new(watch::Sender::new(()));
            let task = tokio::spawn(report_loop(
                ReportTarget {
                    client: shared.client.clone(),
                    namespace: shared.namespace.clone(),
                    world: shared.world.clone(),
                    writes: shared.writes.clone(),
                    behaviour: shared.behaviour,
                },
                name.to_owned(),
                notify.clone(),
            ));
            world.tasks.insert(name.to_owned(), (notify, task));
        }
        (false, true) => {
            if let Some((_, task)) = world.tasks.remove(name) {
                task.abort();
            }
        }
        _ => {}
    }
}

fn on_conference(shared: &Shared, name: &str, conf: Option<&Conference>) {
    let mut world = lock(&shared.world);
    let old = world.rooms.remove(name);
    let new = conf.and_then(|c| {
        let node = c.status.as_ref().and_then(|s| s.media_node.clone());
        let phase = c.status.as_ref().and_then(|s| s.phase);
        if matches!(
            phase,
            Some(ConferencePhase::Ended | ConferencePhase::Failed)
        ) {
            return None;
        }
        let booked = phase == Some(ConferencePhase::Scheduled);
        let live = node.is_some()
            && (booked
                || matches!(
                    phase,
                    Some(ConferencePhase::Active | ConferencePhase::Migrating)
                ));
        let same_node = old.as_ref().is_some_and(|o| o.node == node);
        let live_since = match (live, old.as_ref().and_then(|o| o.live_since)) {
            (false, _) => None,
            (true, Some(since)) if same_node => Some(since),
            (true, _) if booked => Some(arrival(c.spec.start_time.as_ref())),
            (true, _) => Some(Instant::now()),
        };
        let attendees = c
            .annotations()
            .get(ATTENDEES)
            .and_then(|a| a.parse().ok())
            .unwrap_or(c.spec.max_participants)
            .min(c.spec.max_participants);
        Some(Room {
            node,
            live_since,
            attendees,
        })
    });
    // What a media node's report depends on; only a change of it makes the node report early
    // (as a real one does after joins and leaves, not after any write to the conference).
    let shape = |r: &Room| (r.node.clone(), r.live_since.is_some(), r.attendees);
    let changed = old.as_ref().map(shape) != new.as_ref().map(shape);
    let mut touched: Vec<String> = Vec::new();
    if let Some(node) = old.as_ref().and_then(|o| o.node.clone()) {
        if let Some(set) = world.by_node.get_mut(&node) {
            set.remove(name);
        }
        touched.push(node);
    }
    if let Some(room) = new {
        if let Some(node) = room.node.clone() {
            world
                .by_node
                .entry(node.clone())
                .or_default()
                .insert(name.to_owned());
            if let Some(since) = room.live_since
                && old.as_ref().and_then(|o| o.live_since).is_none()
            {
                // Participants arrive after the join delay: report then.
                if let Some((notify, _)) = world.tasks.get(&node) {
                    let notify = notify.clone();
                    let arrive = since + Duration::from_millis(shared.behaviour.join_delay_ms);
                    tokio::spawn(async move {
                        tokio::time::sleep_until(arrive.into()).await;
                        notify.send_replace(());
                    });
                }
            }
            touched.push(node);
        }
        world.rooms.insert(name.to_owned(), room);
    }
    if !changed {
        return;
    }
    for node in touched {
        if let Some((notify, _)) = world.tasks.get(&node) {
            notify.send_replace(());
        }
    }
}

/// When the participants of a booked conference starting at `start` begin to arrive: then,
/// or now if that has passed (they waited for its join info).
fn arrival(start: Option<&Time>) -> Instant {
    let now = Instant::now();
    let ahead = start.map_or(k8s_openapi::jiff::SignedDuration::ZERO, |t| {
        t.0.duration_since(k8s_openapi::jiff::Timestamp::now())
    });
    now + ahead.try_into().unwrap_or(Duration::ZERO)
}

/// What the simulated media node `node` carries now.
fn report_of(world: &World, node: &str, join_delay: Duration, now: Instant) -> Report {
    let mut report = Report::default();
    let Some(names) = world.by_node.get(node) else {
        return report;
    };
    for name in names {
        let Some(room) = world.rooms.get(name) else {
            continue;
        };
        report.load.rooms += 1;
        let joined = room.live_since.is_some_and(|since| {
            now.checked_duration_since(since)
                .is_some_and(|d| d >= join_delay)
        });
        if joined {
            report.participants.push((name.clone(), room.attendees));
        }
    }
    report.load = load(report.load.rooms, report.participants.iter().map(|p| p.1));
    report
}

/// The media load of rooms with these participant counts: everyone publishes audio
/// (50 kbit/s) and simulcast video (1.2 Mbit/s over three layers) and receives everyone
/// else's audio and middle video layer (500 kbit/s). CPU follows the packet rate at the
/// forwarding cost the SFU benchmark measured (about 150,000 packets per core-second,
/// ~104 packets per Mbit/s at 1,200-byte packets).
pub fn load(rooms: u32, participants: impl Iterator<Item = u32>) -> NodeLoad {
    let mut l = NodeLoad {
        rooms,
        ..NodeLoad::default()
    };
    for p in participants {
        let subscriptions = p * p.saturating_sub(1);
        l.participants += p;
        l.tracks_in += 2 * p;
        l.tracks_out += 2 * subscriptions;
        l.ingress_mbps += f64::from(p) * 1.25;
        l.egress_mbps += f64::from(subscriptions) * 0.55;
    }
    let packets = (l.ingress_mbps + l.egress_mbps) * 104.0;
    l.cpu = round(0.02 + packets / 150_000.0);
    l.ingress_mbps = round(l.ingress_mbps);
    l.egress_mbps = round(l.egress_mbps);
    l
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

struct ReportTarget {
    client: Client,
    namespace: String,
    world: Arc<Mutex<World>>,
    writes: Arc<Writes>,
    behaviour: Behaviour,
}

/// The media node's reporters (media-node/src/cluster/report.rs), fed by the simulation: the
/// heartbeat and the participant counts, each in its own loop.
async fn report_loop(target: ReportTarget, node: String, changed: Arc<watch::Sender<()>>) {
    tokio::join!(
        heartbeats(&target, &node, changed.subscribe()),
        participants(&target, &node, changed.subscribe())
    );
}

/// The Lease renewal and, when the load changed or a minute passed, the load report.
async fn heartbeats(target: &ReportTarget, node: &str, mut changed: watch::Receiver<()>) {
    let nodes: Api<MediaNode> = Api::namespaced(target.client.clone(), &target.namespace);
    let leases: Api<Lease> = Api::namespaced(target.client.clone(), &target.namespace);
    let params = PatchParams::apply(labels::MEDIA_NODE_MANAGER).force();
    let interval = Duration::from_secs(target.behaviour.heartbeat_seconds.max(1));
    let join_delay = Duration::from_millis(target.behaviour.join_delay_ms);
    let mut last: Option<(NodeLoad, Instant)> = None;
    let mut renewed = Instant::now() - interval;
    loop {
        let (report, owner) = {
            let world = lock(&target.world);
            let report = report_of(&world, node, join_delay, Instant::now());
            (report, world.node_owners.get(node).cloned())
        };
        if renewed.elapsed() >= interval
            && let Some((uid, pool)) = owner
        {
            renewed = Instant::now();
            let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
            let holds = interval * conclave_crds::report::RENEWALS_PER_TIMEOUT;
            let body = lease_renewal(node, &pool, &uid, holds, &now);
            target.writes.lease_renewals.fetch_add(1, Ordering::Relaxed);
            let patch = Patch::Apply(&body);
            let renew = leases.patch(node, &params, &patch);
            if !matches!(tokio::time::timeout(interval, renew).await, Ok(Ok(_))) {
                target.writes.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node, "simulated lease renewal failed or timed out");
            }
        }
        let due = last
            .as_ref()
            .is_none_or(|(load, at)| *load != report.load || at.elapsed() >= LOAD_REFRESH);
        if due {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            let patch = load_report(&report.load, &now);
            target.writes.node_reports.fetch_add(1, Ordering::Relaxed);
            let patch = Patch::Apply(&patch);
            let write = nodes.patch_status(node, &params, &patch);
            if matches!(tokio::time::timeout(interval, write).await, Ok(Ok(_))) {
                last = Some((report.load, Instant::now()));
            } else {
                target.writes.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node, "simulated load report failed or timed out");
            }
        }
        let until_renewal = interval.saturating_sub(renewed.elapsed()).max(SETTLE);
        next_report(&mut changed, until_renewal).await;
    }
}

async fn participants(target: &ReportTarget, node: &str, mut changed: watch::Receiver<()>) {
    let conferences: Api<Conference> = Api::namespaced(target.client.clone(), &target.namespace);
    let params = PatchParams::apply(labels::MEDIA_NODE_MANAGER).force();
    let interval = Duration::from_secs(target.behaviour.heartbeat_seconds.max(1));
    let join_delay = Duration::from_millis(target.behaviour.join_delay_ms);
    let mut reported: HashMap<String, u32> = HashMap::new();
    loop {
        let report = report_of(&lock(&target.world), node, join_delay, Instant::now());
        reported.retain(|name, _| report.participants.iter().any(|p| &p.0 == name));
        for (name, n) in &report.participants {
            if reported.get(name) == Some(n) {
                continue;
            }
            let patch = participants_report(*n);
            target
                .writes
                .conference_reports
                .fetch_add(1, Ordering::Relaxed);
            match conferences
                .patch_status(name, &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {
                    reported.insert(name.clone(), *n);
                }
                Err(_) => {
                    target.writes.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        next_report(&mut changed, interval).await;
    }
}

/// Waits for the interval, or for a change of the node's rooms and then a moment to settle.
async fn next_report(changed: &mut watch::Receiver<()>, interval: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(interval) => {}
        r = changed.changed() => {
            tokio::time::sleep(if r.is_ok() { SETTLE } else { interval }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_of_a_three_person_room() {
        let l = load(2, [3, 0].into_iter());
        assert_eq!(
            (l.rooms, l.participants, l.tracks_in, l.tracks_out),
            (2, 3, 6, 12)
        );
        assert_eq!(l.ingress_mbps, 3.75);
        assert_eq!(l.egress_mbps, 3.3);
        assert!((0.02..0.1).contains(&l.cpu), "{}", l.cpu);
        assert_eq!(load(30, [50].into_iter()).cpu, 1.0);
    }

    #[test]
    fn participants_count_after_the_join_delay() {
        let mut world = World::default();
        let t0 = Instant::now();
        world.rooms.insert(
            "c".into(),
            Room {
                node: Some("n".into()),
                live_since: Some(t0),
                attendees: 4,
            },
        );
        world
            .by_node
            .entry("n".into())
            .or_default()
            .insert("c".into());
        let delay = Duration::from_millis(500);
        let early = report_of(&world, "n", delay, t0);
        assert_eq!((early.load.rooms, early.load.participants), (1, 0));
        let later = report_of(&world, "n", delay, t0 + delay);
        assert_eq!(later.load.participants, 4);
        assert_eq!(later.participants, vec![("c".to_owned(), 4)]);
        assert_eq!(report_of(&world, "other", delay, t0), Report::default());

        // A booked one placed ahead of its start: nobody before the start and the delay.
        let start = t0 + Duration::from_secs(5);
        world.rooms.get_mut("c").unwrap().live_since = Some(start);
        assert_eq!(report_of(&world, "n", delay, t0).load.participants, 0);
        assert_eq!(report_of(&world, "n", delay, start).load.participants, 0);
        assert_eq!(
            report_of(&world, "n", delay, start + delay)
                .load
                .participants,
            4
        );
    }

    #[test]
    fn a_booked_conference_is_joined_at_its_start_or_now_if_past() {
        let in_a_minute = Time(
            k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(60),
        );
        let ahead = arrival(Some(&in_a_minute)).duration_since(Instant::now());
        assert!(
            (Duration::from_secs(58)..=Duration::from_secs(60)).contains(&ahead),
            "{ahead:?}"
        );
        let a_minute_ago = Time(
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60),
        );
        assert!(arrival(Some(&a_minute_ago)) <= Instant::now());
        assert!(arrival(None) <= Instant::now());
    }
}
