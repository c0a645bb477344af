//! Wiring of `conclave-operator run`: the watch caches, leader election, the reservation
//! ledger rebuilt from the API, the three controllers and the HTTP endpoints.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaPool, labels};
use futures::{StreamExt, future};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use kube::client::ClientBuilder;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{error, info};

use crate::config::RunConfig;
use crate::controllers::conference::reservation_of;
use crate::controllers::{conference, error_policy, node, pool};
use crate::fence::{Fence, FenceLayer};
use crate::http::{Health, serve};
use crate::index::{ConferenceKey, Index, conference_keys, node_keys};
use crate::leader::LeaderLease;
use crate::ledger::{Key, Ledger};
use crate::metrics::Metrics;
use crate::own_writes::OwnWrites;
use crate::pacing::Pacer;
use crate::resources::node_service::COMPONENT_NODE_SERVICE;
use crate::roster::Roster;
use crate::shutdown::Shutdown;
use crate::snapshot::Snapshots;
use crate::state::{Caches, Context, key, lock};
use crate::watches::{Feed, watch, watch_indexed};

/// Shortest time between two passes over one pool or one media node: every placement
/// triggers both, and their status need not change more often.
const PACING: Duration = Duration::from_millis(250);

/// Longest the operator waits for an answer to one API call (watches excepted).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The operator's clients: one for watches (long reads), one for the Lease and one for the
/// controllers' calls, both with timeouts; the controllers' writes go through the leader's
/// fence.
struct Clients {
    watches: Client,
    lease: Client,
    calls: Client,
}

fn clients(kube_config: kube::Config, fence: &Fence) -> anyhow::Result<Clients> {
    let watches = Client::try_from(kube_config.clone())?;
    let mut bounded = kube_config;
    bounded.connect_timeout = Some(CALL_TIMEOUT);
    bounded.read_timeout = Some(CALL_TIMEOUT);
    bounded.write_timeout = Some(CALL_TIMEOUT);
    let lease = Client::try_from(bounded.clone())?;
    let calls = ClientBuilder::try_from(bounded)?
        .with_layer(&FenceLayer(fence.clone()))
        .build();
    Ok(Clients {
        watches,
        lease,
        calls,
    })
}

/// Runs the operator until a shutdown signal, or until leadership is lost.
pub async fn run(kube_config: kube::Config, config: RunConfig) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals()?;
    let fence = if config.leader_elect {
        Fence::closed()
    } else {
        Fence::unfenced()
    };
    let Clients {
        watches: watch_client,
        lease: lease_client,
        calls: client,
    } = clients(kube_config, &fence)?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health {
        ready: false.into(),
        metrics: metrics.clone(),
    });
    let http = tokio::spawn(serve(config.metrics_addr, health.clone()));
    let identity = config
        .identity
        .clone()
        .unwrap_or_else(|| format!("conclave-operator-{}", std::process::id()));

    let lease = config.leader_elect.then(|| {
        LeaderLease::new(
            lease_client,
            &config.lease_namespace,
            &config.lease_name,
            &identity,
            config.lease_seconds,
            fence.clone(),
        )
    });
    if let Some(lease) = &lease {
        // A standby replica is healthy and ready: it serves metrics and waits.
        health.ready.store(true, Ordering::Relaxed);
        info!(identity, "waiting for leadership");
        if shutdown
            .unless(lease.acquire())
            .await
            .transpose()?
            .is_none()
        {
            return Ok(());
        }
        health.ready.store(false, Ordering::Relaxed);
    }

    // The conference watch releases what a conference that left it held.
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (caches, pool_feeds, node_feeds, conference_feeds) = start_watches(
        &watch_client,
        config.watch_namespace.as_deref(),
        Arc::clone(&ledger),
    );
    metrics.count_conferences(caches.conferences.clone());
    let filled = async {
        caches.pools.wait_until_ready().await?;
        caches.nodes.wait_until_ready().await?;
        caches.conferences.wait_until_ready().await?;
        caches.pods.wait_until_ready().await?;
        caches.kube_nodes.wait_until_ready().await?;
        caches.secrets.wait_until_ready().await?;
        caches.leases.wait_until_ready().await?;
        caches.node_services.wait_until_ready().await?;
        caches.deployments.wait_until_ready().await
    };
    if shutdown.unless(filled).await.transpose()?.is_none() {
        return Ok(());
    }
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        caches,
        ledger,
        evacuation: Mutex::default(),
        creating: Mutex::default(),
        turn_applied: Mutex::default(),
        identity_applied: Mutex::default(),
        budgets_applied: Mutex::default(),
        probes: Mutex::default(),
        templates: Mutex::default(),
        stalls: Mutex::default(),
        snapshots: Snapshots::default(),
        seen: Mutex::default(),
        pool_pacer: Pacer::new(PACING),
        node_pacer: Pacer::new(PACING),
        dns: crate::dns::Dns::new(config.dns_server),
        metrics,
        recorder: crate::events::Recorder::new(client.clone(), "conclave-operator", &identity),
    });
    let adopted = seed_ledger(&ctx);
    info!(adopted, "reservation ledger rebuilt from conference status");
    health.ready.store(true, Ordering::Relaxed);

    let controllers = future::join3(
        pools(&ctx, pool_feeds, &shutdown),
        nodes(&ctx, node_feeds, &shutdown),
        conferences(&ctx, conference_feeds, &shutdown),
    );
    tokio::select! {
        _ = controllers => {
            info!("controllers stopped");
            if let Some(lease) = &lease {
                lease.release().await;
            }
        }
        _ = async { match &lease { Some(l) => l.hold().await, None => future::pending().await } } => {
            error!("leadership lost; exiting so that a restart rejoins as a follower");
            std::process::exit(1);
        }
        r = http => error!(?r, "HTTP endpoint stopped"),
    }
    Ok(())
}

/// Takes every reservation recorded in conference status, before anything is placed.
fn seed_ledger(ctx: &Context) -> usize {
    let mut ledger = lock(&ctx.ledger);
    let mut n = 0;
    for c in ctx.caches.conferences.state() {
        let status = c.status.clone().unwrap_or_default();
        let holds = status
            .phase
            .unwrap_or(ConferencePhase::Pending)
            .holds_reservation();
        if let (true, Some(node), None) = (
            holds,
            status.media_node,
            c.metadata.deletion_timestamp.as_ref(),
        ) {
            let ckey = key(c.as_ref());
            ledger.reserve(ckey.clone(), (ckey.0, node), reservation_of(&c));
            n += 1;
        }
    }
    n
}

/// The API of kind `K` in namespace `ns`, or in all namespaces when `ns` is None (the
/// operator's watch namespace, as its commands take it).
pub(crate) fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn component(c: &str) -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={c}", labels::COMPONENT))
}

/// What the pool controller reacts to.
struct PoolFeeds {
    pools: Feed<MediaPool>,
    nodes: Feed<MediaNode>,
    conferences: Feed<Conference>,
    pods: Feed<Pod>,
    secrets: Feed<Secret>,
    deployments: Feed<Deployment>,
}

/// What the media-node controller reacts to.
struct NodeFeeds {
    nodes: Feed<MediaNode>,
    pods: Feed<Pod>,
    services: Feed<Service>,
    kube_nodes: Feed<Node>,
    pools: Feed<MediaPool>,
}

/// What the conference controller reacts to.
struct ConferenceFeeds {
    conferences: Feed<Conference>,
    nodes: Feed<MediaNode>,
    pools: Feed<MediaPool>,
}

/// Starts one watch per kind: the caches, and the feeds of the three controllers; the
/// conference watch releases from `ledger` what a conference that left it held.
fn start_watches(
    client: &Client,
    ns: Option<&str>,
    ledger: Arc<Mutex<Ledger>>,
) -> (Caches, PoolFeeds, NodeFeeds, ConferenceFeeds) {
    let any = watcher::Config::default;
    let (pools, [pools_p, pools_n, pools_c]) = watch(api::<MediaPool>(client, ns), any());
    let node_index = Index::new(node_keys);
    let (nodes, [nodes_p, nodes_n, nodes_c]) = {
        let index = node_index.clone();
        watch_indexed(api::<MediaNode>(client, ns), any(), move |e| {
            index.observe(e)
        })
    };
    let conference_index = Index::new(conference_keys);
    let own_conferences = Arc::new(OwnWrites::default());
    let (conferences, [conferences_p, conferences_c]) = {
        let (index, own) = (conference_index.clone(), Arc::clone(&own_conferences));
        let roster = Mutex::new(Roster::default());
        watch_indexed(api::<Conference>(client, ns), any(), move |e| {
            index.observe(e);
            own.observe(e);
            for gone in lock(&roster).observe(e) {
                lock(&ledger).release(&gone);
            }
        })
    };
    let (pods, [pods_p, pods_n]) = watch(
        api::<Pod>(client, ns),
        watcher::Config::default().labels(labels::COMPONENT),
    );
    let (kube_nodes, [kube_nodes_n]) = watch(Api::<Node>::all(client.clone()), any());
    let (secrets, [secrets_p]) = watch(api::<Secret>(client, ns), component("keys"));
    let (deployments, [deployments_p]) = watch(
        api::<Deployment>(client, ns),
        component(labels::COMPONENT_TURN),
    );
    // No controller reacts to a renewal: the node controller rechecks liveness on its own
    // schedule, and reads the renew times from this cache.
    let (leases, []) = watch(
        api::<Lease>(client, ns),
        component(labels::COMPONENT_MEDIA_NODE),
    );
    let (node_services, [node_services_n]) = watch(
        api::<Service>(client, ns),
        component(COMPONENT_NODE_SERVICE),
    );
    let caches = Caches {
        leases,
        node_services,
        pools,
        nodes,
        node_index,
        conferences,
        conference_index,
        own_conferences,
        pods,
        kube_nodes,
        secrets,
        deployments,
    };
    let pool_feeds = PoolFeeds {
        pools: pools_p,
        nodes: nodes_p,
        conferences: conferences_p,
        pods: pods_p,
        secrets: secrets_p,
        deployments: deployments_p,
    };
    let node_feeds = NodeFeeds {
        nodes: nodes_n,
        pods: pods_n,
        services: node_services_n,
        kube_nodes: kube_nodes_n,
        pools: pools_n,
    };
    let conference_feeds = ConferenceFeeds {
        conferences: conferences_c,
        nodes: nodes_c,
        pools: pools_c,
    };
    (caches, pool_feeds, node_feeds, conference_feeds)
}

impl Context {
    /// True when `fingerprint` of `what` differs from the last one seen (and records it), so
    /// that watch mappers fan out only on changes that matter, not on every heartbeat.
    pub fn changed<T: Hash>(&self, what: String, fingerprint: T) -> bool {
        let mut h = DefaultHasher::new();
        fingerprint.hash(&mut h);
        let fp = h.finish();
        lock(&self.seen).insert(what, fp) != Some(fp)
    }
}

/// The key of an object a controller found deleted: kube reports one as `ObjectNotFound`
/// instead of reconciling it.
fn deleted<T, E1, E2>(result: &std::result::Result<T, controller::Error<E1, E2>>) -> Option<Key>
where
    E1: std::error::Error + 'static,
    E2: std::error::Error + 'static,
{
    match result {
        Err(controller::Error::ObjectNotFound(obj)) => {
            Some((obj.namespace.clone().unwrap_or_default(), obj.name.clone()))
        }
        _ => None,
    }
}

/// The pool a labelled child belongs to.
fn pool_of_label<K: ResourceExt>(o: &K) -> Option<ObjectRef<MediaPool>> {
    let pool = o.labels().get(labels::POOL)?;
    Some(ObjectRef::new(pool).within(&o.namespace()?))
}

async fn pools(ctx: &Arc<Context>, feeds: PoolFeeds, shutdown: &Shutdown) {
    let for_conf = ctx.clone();
    Controller::for_stream(feeds.pools, ctx.caches.pools.clone())
        .owns_stream(feeds.nodes)
        .owns_stream(feeds.deployments)
        .watches_stream(feeds.conferences, move |conf| {
            pool::pools_of_conference(&for_conf, &conf)
        })
        .watches_stream(feeds.pods, |p| {
            let turn = p.labels().get(labels::COMPONENT).map(String::as_str)
                == Some(labels::COMPONENT_TURN);
            turn.then(|| pool_of_label(&p)).flatten()
        })
        .watches_stream(feeds.secrets, |s| pool_of_label(&s))
        .graceful_shutdown_on(shutdown.clone().requested())
        .run(pool::reconcile, error_policy("pool"), ctx.clone())
        .for_each(|result| {
            if let Some(k) = deleted(&result) {
                info!(namespace = %k.0, pool = %k.1, "forgot deleted pool");
                ctx.forget_pool(&k);
            }
            future::ready(())
        })
        .await;
}

async fn nodes(ctx: &Arc<Context>, feeds: NodeFeeds, shutdown: &Shutdown) {
    let for_kube_node = ctx.clone();
    let for_pool = ctx.clone();
    Controller::for_stream(feeds.nodes, ctx.caches.nodes.clone())
        .owns_stream(feeds.pods)
        .owns_stream(feeds.services)
        .watches_stream(feeds.kube_nodes, move |n| {
            let name = n.name_any();
            let addresses = n
                .status
                .as_ref()
                .and_then(|s| s.addresses.clone())
                .unwrap_or_default();
            let fp: Vec<_> = addresses
                .iter()
                .map(|a| (a.type_.clone(), a.address.clone()))
                .collect();
            // Cordons and removal taints make its media nodes drain (decide::disruption).
            let spec = n.spec.clone().unwrap_or_default();
            let taints: Vec<_> = spec
                .taints
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.effect))
                .collect();
            if !for_kube_node.changed(
                format!("node/{name}"),
                (
                    fp,
                    n.annotations().get(labels::PUBLIC_IP).cloned(),
                    spec.unschedulable,
                    taints,
                ),
            ) {
                return Vec::new();
            }
            for_kube_node
                .caches
                .nodes
                .state()
                .iter()
                .filter(|m| {
                    m.status.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                })
                .map(|m| ObjectRef::from(m.as_ref()))
                .collect()
        })
        .watches_stream(feeds.pools, move |p| {
            if !for_pool.changed(format!("pool-spec/{:?}", key(&p)), p.metadata.generation) {
                return Vec::new();
            }
            let ns = p.namespace().unwrap_or_default();
            for_pool
                .nodes_of_pool(&ns, &p.name_any())
                .iter()
                .map(|n| ObjectRef::from(n.as_ref()))
                .collect()
        })
        .graceful_shutdown_on(shutdown.clone().requested())
        .run(node::reconcile, error_policy("node"), ctx.clone())
        .for_each(|result| {
            if let Some(k) = deleted(&result) {
                ctx.forget_node(&k);
            }
            future::ready(())
        })
        .await;
}

async fn conferences(ctx: &Arc<Context>, feeds: ConferenceFeeds, shutdown: &Shutdown) {
    let for_node = ctx.clone();
    let for_pool = ctx.clone();
    Controller::for_stream(feeds.conferences, ctx.caches.conferences.clone())
        .watches_stream(feeds.nodes, move |n| {
            let status = n.status.clone().unwrap_or_default();
            let url = status
                .addresses
                .as_ref()
                .and_then(|a| a.signaling_url.clone());
            let phase = status.phase.map(|p| format!("{p:?}"));
            if !for_node.changed(
                format!("medianode/{:?}", key(&n)),
                (phase.clone(), n.spec.draining, url),
            ) {
                return Vec::new();
            }
            // Placement reads no view taken before this change.
            for_node.snapshots.node_changed();
            let ns = n.namespace().unwrap_or_default();
            let mut refs: Vec<ObjectRef<Conference>> = for_node
                .conferences_on(&ns, &n.name_any())
                .iter()
                .map(|c| ObjectRef::from(c.as_ref()))
                .collect();
            if phase.as_deref() == Some("Ready") && !n.spec.draining {
                refs.extend(waiting_in_namespace(&for_node, &ns));
            }
            refs
        })
        .watches_stream(feeds.pools, move |p| {
            if !for_pool.changed(format!("pool-turn/{:?}", key(&p)), p.relay_urls()) {
                return Vec::new();
            }
            let ns = p.namespace().unwrap_or_default();
            for_pool
                .indexed_conferences(&ns, &ConferenceKey::Pool(p.name_any()))
                .iter()
                .map(|c| ObjectRef::from(c.as_ref()))
                .collect()
        })
        .graceful_shutdown_on(shutdown.clone().requested())
        .run(
            conference::reconcile,
            error_policy("conference"),
            ctx.clone(),
        )
        .for_each(|_| future::ready(()))
        .await;
}

/// Conferences of `ns` waiting for a node (not placed, not over).
fn waiting_in_namespace(ctx: &Context, ns: &str) -> Vec<ObjectRef<Conference>> {
    ctx.indexed_conferences(ns, &ConferenceKey::Unplaced)
        .iter()
        .map(|c| ObjectRef::from(c.as_ref()))
        .collect()
}
