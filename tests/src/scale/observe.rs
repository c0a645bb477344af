//! What happened during a run, from watches of Conferences and MediaNodes: when each
//! conference got join info, whether it waited Pending for capacity, whether it ever moved or
//! lost its node while live; when each media node became Ready; and a per-second timeline of
//! nodes by phase, connected and reserved participants and running capacity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase, labels};
use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use tokio::task::JoinHandle;

/// What one conference went through.
#[derive(Clone, Debug, Default)]
pub struct ConferenceTrace {
    /// The create request was sent.
    pub created: Option<Instant>,
    /// Join info first seen in status.
    pub joined: Option<Instant>,
    /// First seen Pending for want of capacity (not merely not yet due).
    pub waiting_since: Option<Instant>,
    /// The reason of its Placed condition as last seen before it had join info (none when it
    /// never had a status before).
    pub reason_before_join: Option<String>,
    /// Its media node, as last seen.
    pub node: Option<String>,
    /// Why it was interrupted while live, if it was (moved, or its node deleted).
    pub interrupted: Option<Interruption>,
    /// The application deleted it, or it ended.
    pub over: bool,
}

/// A live conference moved or lost its node.
#[derive(Clone, Debug)]
pub struct Interruption {
    /// Because its node failed (heartbeat stale, pod gone), not because of scale-down.
    pub failover: bool,
    pub why: String,
}

/// One media node's life.
#[derive(Clone, Debug)]
struct NodeTrace {
    seen: Instant,
    ready: Option<Instant>,
    phase: Option<MediaNodePhase>,
    participants: u32,
    reserved: u32,
    /// Its participant capacity.
    capacity: u32,
}

/// One second of the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Seconds since the observer started.
    pub t: f64,
    /// Media nodes whose pod runs (Starting, Ready or Draining).
    pub running: u32,
    pub ready: u32,
    pub draining: u32,
    /// Participants the media nodes report.
    pub participants: u32,
    /// Participants reserved by placed conferences.
    pub reserved: u32,
    /// Participants beyond their node's capacity, summed over the nodes.
    pub over_capacity: u32,
}

#[derive(Default)]
struct Record {
    conferences: HashMap<String, ConferenceTrace>,
    nodes: HashMap<String, NodeTrace>,
    node_start: Vec<Duration>,
    samples: Vec<Sample>,
}

/// A running observer.
pub struct Observer {
    record: Arc<Mutex<Record>>,
    tasks: Vec<JoinHandle<()>>,
    /// When it started (t = 0 of the samples).
    pub started: Instant,
}

/// What the observer recorded, once stopped.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub conferences: HashMap<String, ConferenceTrace>,
    /// Time from a MediaNode's appearance to its first Ready.
    pub node_start: Vec<Duration>,
    pub samples: Vec<Sample>,
}

fn lock(record: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    record.lock().unwrap_or_else(|e| e.into_inner())
}

impl Observer {
    /// Starts watching `namespace`, sampling every `every`.
    pub fn start(client: &Client, namespace: &str, every: Duration) -> Observer {
        let record = Arc::new(Mutex::new(Record::default()));
        let started = Instant::now();
        let conferences: Api<Conference> = Api::namespaced(client.clone(), namespace);
        let nodes: Api<MediaNode> = Api::namespaced(client.clone(), namespace);
        let r = record.clone();
        let conference_watch = tokio::spawn(async move {
            let mut events = watcher::watcher(conferences, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                if let Ok(Event::Apply(c) | Event::InitApply(c)) = event {
                    on_conference(&mut lock(&r), &c, Instant::now());
                }
            }
        });
        let r = record.clone();
        let node_watch = tokio::spawn(async move {
            let mut events = watcher::watcher(nodes, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(n) | Event::InitApply(n)) => {
                        on_node(&mut lock(&r), &n, Instant::now())
                    }
                    Ok(Event::Delete(n)) => on_node_deleted(&mut lock(&r), &n.name_any()),
                    _ => {}
                }
            }
        });
        let r = record.clone();
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let mut rec = lock(&r);
                let sample = sample(&rec, started.elapsed().as_secs_f64());
                rec.samples.push(sample);
            }
        });
        Observer {
            record,
            tasks: vec![conference_watch, node_watch, sampler],
            started,
        }
    }

    /// A handle the application's requests note their creates and deletes with.
    pub fn notes(&self) -> Notes {
        Notes {
            record: self.record.clone(),
        }
    }

    /// Media nodes Ready now.
    pub fn ready_nodes(&self) -> usize {
        lock(&self.record)
            .nodes
            .values()
            .filter(|n| n.phase == Some(MediaNodePhase::Ready))
            .count()
    }

    /// Stops watching and returns the record.
    pub fn stop(self) -> Observed {
        for t in &self.tasks {
            t.abort();
        }
        let mut rec = lock(&self.record);
        Observed {
            conferences: std::mem::take(&mut rec.conferences),
            node_start: std::mem::take(&mut rec.node_start),
            samples: std::mem::take(&mut rec.samples),
        }
    }
}

/// Where the application notes what it did.
#[derive(Clone)]
pub struct Notes {
    record: Arc<Mutex<Record>>,
}

impl Notes {
    /// Notes that the application sent the create request of `name`.
    pub fn created(&self, name: &str, at: Instant) {
        lock(&self.record)
            .conferences
            .entry(name.to_owned())
            .or_default()
            .created = Some(at);
    }

    /// Notes that the application deleted `name` (its end).
    pub fn over(&self, name: &str) {
        lock(&self.record)
            .conferences
            .entry(name.to_owned())
            .or_default()
            .over = true;
    }
}

fn on_conference(rec: &mut Record, c: &Conference, now: Instant) {
    let trace = rec.conferences.entry(c.name_any()).or_default();
    let status = c.status.clone().unwrap_or_default();
    let phase = status.phase;
    if matches!(
        phase,
        Some(ConferencePhase::Ended | ConferencePhase::Failed)
    ) {
        trace.over = true;
    }
    if status.join.is_some() && trace.joined.is_none() {
        trace.joined = Some(now);
    }
    let placed_reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == labels::condition::PLACED)
        .map(|c| c.reason.clone());
    if trace.joined.is_none() {
        trace.reason_before_join = placed_reason.clone();
    }
    if phase == Some(ConferencePhase::Pending)
        && trace.waiting_since.is_none()
        && trace.joined.is_none()
        && placed_reason.as_deref().is_some_and(|r| r != "NotYetDue")
    {
        trace.waiting_since = Some(now);
    }
    let node = status.media_node.clone();
    if let (Some(old), Some(new)) = (&trace.node, &node)
        && old != new
        && trace.interrupted.is_none()
    {
        let reason = placed_reason.unwrap_or_default();
        trace.interrupted = Some(Interruption {
            failover: reason == "Failover",
            why: format!("moved from {old} to {new} ({reason})"),
        });
    }
    if node.is_some() {
        trace.node = node;
    }
}

fn on_node(rec: &mut Record, n: &MediaNode, now: Instant) {
    let status = n.status.clone().unwrap_or_default();
    let trace = rec.nodes.entry(n.name_any()).or_insert(NodeTrace {
        seen: now,
        ready: None,
        phase: None,
        participants: 0,
        reserved: 0,
        capacity: n.spec.capacity.participants,
    });
    trace.phase = status.phase;
    trace.participants = status.load.map_or(0, |l| l.participants);
    trace.reserved = status.reserved_participants.unwrap_or(0);
    if trace.phase == Some(MediaNodePhase::Ready) && trace.ready.is_none() {
        trace.ready = Some(now);
        let took = now.duration_since(trace.seen);
        rec.node_start.push(took);
    }
}

fn on_node_deleted(rec: &mut Record, name: &str) {
    let phase = rec.nodes.remove(name).and_then(|n| n.phase);
    let failover = phase == Some(MediaNodePhase::Failed);
    for trace in rec.conferences.values_mut() {
        if trace.node.as_deref() == Some(name) && !trace.over && trace.interrupted.is_none() {
            trace.interrupted = Some(Interruption {
                failover,
                why: format!("its node {name} ({phase:?}) was deleted"),
            });
        }
    }
}

fn sample(rec: &Record, t: f64) -> Sample {
    let mut s = Sample {
        t,
        ..Sample::default()
    };
    for n in rec.nodes.values() {
        let running = matches!(
            n.phase,
            Some(MediaNodePhase::Starting | MediaNodePhase::Ready | MediaNodePhase::Draining)
        );
        if running {
            s.running += 1;
            s.participants += n.participants;
            s.reserved += n.reserved;
            s.over_capacity += n.participants.saturating_sub(n.capacity);
        }
        s.ready += u32::from(n.phase == Some(MediaNodePhase::Ready));
        s.draining += u32::from(n.phase == Some(MediaNodePhase::Draining));
    }
    s
}
