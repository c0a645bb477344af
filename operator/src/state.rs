//! Shared state of the controllers: watch caches of every kind they read, the reservation
//! ledger, evacuation budgets, MediaNodes created but not yet seen in the cache, each pool's
//! pod-template hash, and the gathering of plain decision inputs (`NodeView`s) from those
//! caches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conclave_crds::capacity::Usage;
use conclave_crds::shared::find_condition;
use conclave_crds::{Conference, MediaNode, MediaNodePhase, MediaPool, labels};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::config::RunConfig;
use crate::decide::evacuation::EvacuationBudget;
use crate::decide::region::{Headroom, pool_to_grow};
use crate::decide::reservation::Reservations;
use crate::decide::stall::heartbeats_stalled;
use crate::decide::{NodeView, UnixSeconds, is_live};
use crate::index::{ConferenceKey, Index, NodeKey};
use crate::ledger::{Key, Ledger};
use crate::metrics::Metrics;
use crate::own_writes::OwnWrites;
use crate::pacing::Pacer;
use crate::resources::media_node::{
    PodSettings, TEMPLATE_HASH_LABEL, drained_as_surplus, pod_template_hash,
};
use crate::snapshot::Snapshots;
use crate::time::secs;

/// Watch caches of every kind the controllers read.
#[derive(Clone)]
pub struct Caches {
    /// MediaPools.
    pub pools: Store<MediaPool>,
    /// MediaNodes.
    pub nodes: Store<MediaNode>,
    /// MediaNodes by pool and by Kubernetes Node.
    pub node_index: Index<MediaNode, NodeKey>,
    /// Conferences.
    pub conferences: Store<Conference>,
    /// Conferences by node, by pool, and those unplaced.
    pub conference_index: Index<Conference, ConferenceKey>,
    /// Conferences as this operator last wrote them, until the watch shows the write.
    pub own_conferences: Arc<OwnWrites<Conference>>,
    /// Pods labelled as Conclave components.
    pub pods: Store<Pod>,
    /// Kubernetes Nodes.
    pub kube_nodes: Store<Node>,
    /// Secrets labelled as Conclave pool keys.
    pub secrets: Store<Secret>,
    /// TURN Deployments.
    pub deployments: Store<Deployment>,
    /// Media nodes' Leases (their liveness: each node renews its own).
    pub leases: Store<Lease>,
    /// Media nodes' Services (exposure NodePort or LoadBalancer).
    pub node_services: Store<Service>,
}

/// What a pool's TURN Deployment was last applied from: pool generation, replicas, and the
/// hash of the TLS certificate served.
pub type RelaysApplied = (i64, u32, Option<String>);

/// Everything a reconcile needs.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Settings.
    pub config: RunConfig,
    /// Watch caches.
    pub caches: Caches,
    /// Reservations.
    pub ledger: Arc<Mutex<Ledger>>,
    /// Evacuation pacing per pool.
    pub evacuation: Mutex<HashMap<Key, EvacuationBudget>>,
    /// MediaNodes created by the pool controller and not yet in the cache, per pool, with
    /// when they were created (forgotten after a while, in case one never shows up).
    pub creating: Mutex<HashMap<Key, HashMap<String, std::time::Instant>>>,
    /// The TURN Deployment last applied per pool, to skip applying an unchanged one on every
    /// load change.
    pub turn_applied: Mutex<HashMap<Key, RelaysApplied>>,
    /// The pool generation whose media-node identity (ServiceAccount, RoleBinding) was last
    /// applied.
    pub identity_applied: Mutex<HashMap<Key, i64>>,
    /// The last probe of each media node's published address (see `decide::reachability`).
    pub probes: Mutex<HashMap<Key, crate::decide::reachability::ProbeRecord>>,
    /// Media nodes whose pod's PodDisruptionBudget this process applied (removed once the node
    /// drained or failed).
    pub budgets_applied: Mutex<std::collections::HashSet<Key>>,
    /// The pod-template hash of each pool's media nodes, by pool generation (see
    /// `Context::template_hash`).
    pub templates: Mutex<HashMap<Key, (i64, String)>>,
    /// When each pool's heartbeats were last seen stalled (see `Context::heartbeats_stalled`).
    pub stalls: Mutex<HashMap<Key, i64>>,
    /// The last views of each pool's nodes, for placement (see `snapshot`).
    pub snapshots: Snapshots,
    /// Fingerprints of objects last seen by watch mappers (see `Context::changed`).
    pub seen: Mutex<HashMap<String, u64>>,
    /// Pacing of pool passes (every placement triggers one).
    pub pool_pacer: Pacer,
    /// Pacing of media-node passes (every placement on a node triggers one).
    pub node_pacer: Pacer,
    /// Resolves the hostnames load balancers give.
    pub dns: crate::dns::Dns,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Writes Events: one for the process, so that an Event repeated within a few minutes
    /// becomes a series (count and last time) on one Event instead of new ones.
    pub recorder: crate::events::Recorder,
}

/// Locks `m`, recovering the data if a panicking thread poisoned it (every holder leaves
/// the data consistent between statements).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Namespace and name of an object.
pub fn key<K: ResourceExt>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// `views` of `pool`'s nodes with what `ledger` holds on each.
fn with_reservations(mut views: Vec<NodeView>, pool: &MediaPool, ledger: &Ledger) -> Vec<NodeView> {
    let ns = pool.namespace().unwrap_or_default();
    for v in &mut views {
        v.reserved = ledger.reserved_on(&(ns.clone(), v.name.clone()));
    }
    views
}

impl Context {
    /// When media node `node` last showed it is alive: the renew time of its Lease, or the
    /// `status.lastHeartbeat` it reports with its load (media nodes older than their Leases
    /// only send that), whichever is later.
    pub fn heartbeat(&self, node: &MediaNode) -> Option<UnixSeconds> {
        let reported = node
            .status
            .as_ref()
            .and_then(|s| s.last_heartbeat.as_ref())
            .map(secs);
        let lease = self
            .caches
            .leases
            .get(&ObjectRef::new(&node.name_any()).within(&node.namespace().unwrap_or_default()))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.as_second())
            });
        reported.max(lease)
    }

    /// The pool named `name` in `ns`.
    pub fn pool(&self, ns: &str, name: &str) -> Option<Arc<MediaPool>> {
        self.caches.pools.get(&ObjectRef::new(name).within(ns))
    }

    /// The MediaNode named `name` in `ns`.
    pub fn node(&self, ns: &str, name: &str) -> Option<Arc<MediaNode>> {
        self.caches.nodes.get(&ObjectRef::new(name).within(ns))
    }

    /// MediaNodes of pool `pool` in `ns`.
    pub fn nodes_of_pool(&self, ns: &str, pool: &str) -> Vec<Arc<MediaNode>> {
        self.indexed_nodes(ns, &NodeKey::Pool(pool.to_owned()))
    }

    /// MediaNodes of `ns` under `key` in the node index, in name order.
    pub fn indexed_nodes(&self, ns: &str, key: &NodeKey) -> Vec<Arc<MediaNode>> {
        let names = self.caches.node_index.names(ns, key);
        names
            .iter()
            .filter_map(|name| self.node(ns, name))
            .collect()
    }

    /// Conferences of `ns` under `key` in the conference index, in name order.
    pub fn indexed_conferences(&self, ns: &str, key: &ConferenceKey) -> Vec<Arc<Conference>> {
        let names = self.caches.conference_index.names(ns, key);
        names
            .iter()
            .filter_map(|name| {
                self.caches
                    .conferences
                    .get(&ObjectRef::new(name).within(ns))
            })
            .collect()
    }

    /// Pools a conference may be placed in: the one it names, or every pool of its region.
    pub fn pools_for(&self, conference: &Conference) -> Vec<Arc<MediaPool>> {
        let ns = conference.namespace().unwrap_or_default();
        match (&conference.spec.pool, &conference.spec.region) {
            (Some(pool), _) => self.pool(&ns, pool).into_iter().collect(),
            (None, Some(region)) => {
                let mut v: Vec<_> = self
                    .caches
                    .pools
                    .state()
                    .into_iter()
                    .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|p| p.spec.region.as_deref() == Some(region.as_str()))
                    .collect();
                v.sort_by_key(|p| p.name_any());
                v
            }
            (None, None) => Vec::new(),
        }
    }

    /// Forgets what was kept about pool `k` once it is deleted: pacing, evacuation budget,
    /// nodes being created, children applied, stall times, template hash, watch
    /// fingerprints and metric series.
    pub fn forget_pool(&self, k: &Key) {
        self.pool_pacer.forget(k);
        lock(&self.evacuation).remove(k);
        lock(&self.creating).remove(k);
        lock(&self.turn_applied).remove(k);
        lock(&self.identity_applied).remove(k);
        lock(&self.stalls).remove(k);
        lock(&self.templates).remove(k);
        self.snapshots.forget(k);
        let mut seen = lock(&self.seen);
        for what in ["pool-spec", "pool-turn"] {
            seen.remove(&format!("{what}/{k:?}"));
        }
        self.metrics.forget_pool(&k.0, &k.1);
    }

    /// Forgets what was kept about media node `k` once it is deleted.
    pub fn forget_node(&self, k: &Key) {
        self.node_pacer.forget(k);
        lock(&self.budgets_applied).remove(k);
        lock(&self.probes).remove(k);
        lock(&self.seen).remove(&format!("medianode/{k:?}"));
    }

    /// The pool whose autoscaler counts `conference` as demand while it waits for a node: the
    /// pool it names, or of its region's pools the first that can still grow
    /// (`decide::region::pool_to_grow`).
    pub fn growing_pool(&self, conference: &Conference) -> Option<Arc<MediaPool>> {
        let pools = self.pools_for(conference);
        if conference.spec.pool.is_some() {
            return pools.into_iter().next();
        }
        let headroom: Vec<Headroom> = pools
            .iter()
            .map(|p| Headroom {
                live_nodes: self.live_nodes(p),
                max_nodes: p.spec.scaling.max_nodes,
            })
            .collect();
        pool_to_grow(&headroom).and_then(|i| pools.get(i).cloned())
    }

    /// Live media nodes of `pool` (`decide::is_live`), as its autoscaler counts them.
    fn live_nodes(&self, pool: &MediaPool) -> u32 {
        let ns = pool.namespace().unwrap_or_default();
        let live = self
            .nodes_of_pool(&ns, &pool.name_any())
            .iter()
            .filter(|n| {
                let phase = n.status.as_ref().and_then(|s| s.phase);
                is_live(phase.unwrap_or(MediaNodePhase::Pending), n.spec.draining)
            })
            .count();
        u32::try_from(live).unwrap_or(u32::MAX)
    }

    /// The hash of the pod `pool` gives its media nodes now (`media_node::pod_template_hash`),
    /// computed once per pool generation.
    pub fn template_hash(&self, pool: &MediaPool) -> String {
        let generation = pool.metadata.generation.unwrap_or(0);
        let mut templates = lock(&self.templates);
        match templates.get(&key(pool)) {
            Some((g, hash)) if *g == generation => hash.clone(),
            _ => {
                let settings = PodSettings {
                    log: &self.config.media_node_log,
                };
                let hash = pod_template_hash(pool, &settings);
                templates.insert(key(pool), (generation, hash.clone()));
                hash
            }
        }
    }

    /// Whether `node` runs a pod made from another template than `template`, the pool's
    /// current one (a pod without the label predates it). A node without a pod yet is not:
    /// its pod will be made from the current template.
    fn outdated(&self, node: &MediaNode, template: &str) -> bool {
        let ns = node.namespace().unwrap_or_default();
        self.caches
            .pods
            .get(&ObjectRef::new(&node.name_any()).within(&ns))
            .is_some_and(|pod| {
                pod.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) != Some(template)
            })
    }

    /// The decision view of `node` without its reservations; `template` is the pool's
    /// current pod-template hash.
    fn node_view(&self, node: &MediaNode, pool: &MediaPool, template: &str) -> NodeView {
        // Borrowed, not cloned: placement builds a view of every node of the pool.
        let status = node.status.as_ref();
        let load = status.and_then(|s| s.load.clone()).unwrap_or_default();
        NodeView {
            name: node.name_any(),
            phase: status
                .and_then(|s| s.phase)
                .unwrap_or(MediaNodePhase::Pending),
            draining: node.spec.draining,
            draining_since: status.and_then(|s| s.draining_since.as_ref()).map(secs),
            created_at: node
                .metadata
                .creation_timestamp
                .as_ref()
                .map(secs)
                .unwrap_or(0),
            last_heartbeat: self.heartbeat(node),
            capacity: node.spec.capacity,
            reserved: Reservations::default(),
            reported: Usage {
                participants: load.participants,
                rooms: load.rooms,
            },
            region: pool.spec.region.clone(),
            outdated: self.outdated(node, template),
            unreachable: status
                .and_then(|s| find_condition(&s.conditions, labels::condition::ADDRESS_REACHABLE))
                .is_some_and(|c| c.status == "False"),
            drained_as_surplus: node.spec.draining && drained_as_surplus(node),
            startup_seconds: status.and_then(|s| s.startup_seconds).map(i64::from),
        }
    }

    /// Views of every node of `pool` without their reservations, as the caches show them.
    fn unreserved_views(&self, pool: &MediaPool) -> Vec<NodeView> {
        let ns = pool.namespace().unwrap_or_default();
        let template = self.template_hash(pool);
        self.nodes_of_pool(&ns, &pool.name_any())
            .iter()
            .map(|n| self.node_view(n, pool, &template))
            .collect()
    }

    /// Views of every node of `pool`, with reservations from the ledger.
    pub fn pool_views(&self, pool: &MediaPool, ledger: &Ledger) -> Vec<NodeView> {
        with_reservations(self.unreserved_views(pool), pool, ledger)
    }

    /// [`Context::pool_views`] for placement: the nodes as `snapshots` last saw them while
    /// those views are fresh (see `snapshot`), with reservations from the ledger now.
    pub fn placement_views(&self, pool: &MediaPool, ledger: &Ledger) -> Vec<NodeView> {
        let generation = pool.metadata.generation.unwrap_or(0);
        let base = self
            .snapshots
            .views(&key(pool), generation, std::time::Instant::now(), || {
                self.unreserved_views(pool)
            });
        with_reservations(base.as_ref().clone(), pool, ledger)
    }

    /// Whether `pool`'s stale heartbeats are to be blamed on a stall (see `decide::stall`)
    /// rather than on their nodes: during a stall, and for one heartbeat timeout after it,
    /// because a recovering API server catches up with the nodes' writes one by one, and the
    /// last ones must not be failed as soon as the first few make the stall look over.
    pub fn heartbeats_stalled(&self, pool: &MediaPool, now: i64) -> bool {
        let views = self.pool_views(pool, &lock(&self.ledger));
        let timeout = i64::from(pool.spec.media_node.heartbeat_timeout_seconds);
        let mut stalls = lock(&self.stalls);
        if heartbeats_stalled(&views, timeout, now).is_some() {
            stalls.insert(key(pool), now);
            return true;
        }
        stalls
            .get(&key(pool))
            .is_some_and(|&seen| now - seen <= timeout)
    }

    /// Conferences whose status or label names `node` as their media node.
    pub fn conferences_on(&self, ns: &str, node: &str) -> Vec<Arc<Conference>> {
        self.indexed_conferences(ns, &ConferenceKey::Node(node.to_owned()))
    }
}
