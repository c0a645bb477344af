//! The harness kubelet: runs the pods bound to a few local Nodes as local processes, as
//! docs/pod-contract.md describes. This module owns its configuration and the dispatcher
//! that hands each pod's watch events to that pod's worker.

pub mod container;
pub mod credentials;
pub mod environment;
pub mod expand;
pub mod image;
pub mod node;
mod pod;
pub mod probe;
pub mod process;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Context, Error};
use pod::PodUpdate;

/// The address of the first local Node; the next ones follow (127.0.0.3, ...).
pub const FIRST_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// One local Node: its name and the loopback address it owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalNode {
    pub name: String,
    pub address: Ipv4Addr,
}

impl LocalNode {
    /// `count` Nodes named `local-1`, `local-2`, ... owning `first`, `first + 1`, ...
    pub fn numbered(count: usize, first: Ipv4Addr) -> Vec<LocalNode> {
        (0..count)
            .map(|i| LocalNode {
                name: format!("local-{}", i + 1),
                address: Ipv4Addr::from(u32::from(first).saturating_add(i as u32)),
            })
            .collect()
    }
}

/// Resources each local Node announces to the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCapacity {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
}

impl Default for NodeCapacity {
    fn default() -> Self {
        NodeCapacity {
            cpu: "8".into(),
            memory: "16Gi".into(),
            pods: 110,
        }
    }
}

/// Everything the harness kubelet needs to know.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Admin kubeconfig of the cluster (the kubelet's own credentials).
    pub kubeconfig: PathBuf,
    pub nodes: Vec<LocalNode>,
    /// Where Conclave's built binaries are (media-node, conclave-operator, harness-http).
    pub bin_dir: PathBuf,
    /// Where container output goes, one file per pod and container.
    pub log_dir: PathBuf,
    /// Per-pod working directories, kubeconfigs and tokens.
    pub state_dir: PathBuf,
    pub capacity: NodeCapacity,
    /// PATH used to find system programs (turnserver) and given to containers.
    pub path: Option<OsString>,
}

impl KubeletConfig {
    /// A configuration with `nodes` local Nodes and paths under the temp dir (unit tests).
    pub fn for_tests(nodes: usize) -> Self {
        let base = std::env::temp_dir().join("harness-kubelet-tests");
        KubeletConfig {
            kubeconfig: base.join("kubeconfig"),
            nodes: LocalNode::numbered(nodes, FIRST_ADDRESS),
            bin_dir: base.join("bin"),
            log_dir: base.join("logs"),
            state_dir: base.join("state"),
            capacity: NodeCapacity::default(),
            path: None,
        }
    }
}

/// The log file of `container` of pod `namespace/pod`.
pub fn container_log(log_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    log_dir.join(format!("{namespace}_{pod}_{container}.log"))
}

/// Registers the Nodes, then runs their pods until `shutdown` completes; on shutdown every
/// container is stopped (SIGTERM, then SIGKILL after at most 3 s).
pub async fn run(config: KubeletConfig, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    for dir in [&config.log_dir, &config.state_dir] {
        std::fs::create_dir_all(dir).context(format!("create {}", dir.display()))?;
    }
    let client = crate::client::from_kubeconfig(&config.kubeconfig).await?;
    let endpoint = credentials::ApiEndpoint::from_kubeconfig(&config.kubeconfig)?;
    for node in &config.nodes {
        node::register(&client, &config, node).await?;
        node::renew_lease(&client, node).await?;
        tracing::info!(node = %node.name, address = %node.address, "node registered");
    }
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), config.clone()));
    let watches = config.nodes.iter().map(|node| {
        let api: Api<Pod> = Api::all(client.clone());
        let selector = watcher::Config::default().fields(&format!("spec.nodeName={}", node.name));
        let node = node.clone();
        watcher(api, selector)
            .default_backoff()
            .map(move |event| (node.clone(), event))
            .boxed()
    });
    let mut events = stream::select_all(watches);
    let shared = Arc::new(pod::Shared {
        client,
        config,
        endpoint,
    });
    let mut pods = Pods::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = events.next() => match event {
                Some((node, Ok(event))) => pods.handle(&shared, &node, event),
                Some((node, Err(e))) => tracing::warn!(node = %node.name, error = %e, "pod watch failed; retrying"),
                None => break,
            },
        }
    }
    heartbeat.abort();
    pods.stop_all().await;
    Ok(())
}

/// The pod workers, by pod UID.
#[derive(Default)]
struct Pods {
    workers: HashMap<String, Worker>,
    /// Per Node: UIDs seen during a re-list, to find pods deleted while the watch was down.
    relisting: HashMap<String, HashSet<String>>,
}

struct Worker {
    node: String,
    updates: watch::Sender<PodUpdate>,
    task: JoinHandle<()>,
}

impl Pods {
    fn handle(&mut self, shared: &Arc<pod::Shared>, node: &LocalNode, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => {
                self.relisting.insert(node.name.clone(), HashSet::new());
            }
            watcher::Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) = (self.relisting.get_mut(&node.name), pod.uid()) {
                    seen.insert(uid);
                }
                self.apply(shared, node, pod);
            }
            watcher::Event::InitDone => {
                let seen = self.relisting.remove(&node.name).unwrap_or_default();
                let gone: Vec<String> = self
                    .workers
                    .iter()
                    .filter(|(uid, w)| w.node == node.name && !seen.contains(*uid))
                    .map(|(uid, _)| uid.clone())
                    .collect();
                for uid in gone {
                    self.gone(&uid);
                }
            }
            watcher::Event::Apply(pod) => self.apply(shared, node, pod),
            watcher::Event::Delete(pod) => {
                if let Some(uid) = pod.uid() {
                    self.gone(&uid);
                }
            }
        }
    }

    fn apply(&mut self, shared: &Arc<pod::Shared>, node: &LocalNode, pod: Pod) {
        let Some(uid) = pod.uid() else { return };
        if let Some(worker) = self.workers.get(&uid) {
            let _ = worker.updates.send(PodUpdate::Current(Box::new(pod))); // worker may be done
            return;
        }
        tracing::info!(pod = %pod.name_any(), namespace = %pod.namespace().unwrap_or_default(), node = %node.name, "pod bound to a local node");
        let (updates, receiver) = watch::channel(PodUpdate::Current(Box::new(pod.clone())));
        let task = tokio::spawn(pod::run(shared.clone(), node.clone(), pod, receiver));
        self.workers.insert(
            uid,
            Worker {
                node: node.name.clone(),
                updates,
                task,
            },
        );
    }

    fn gone(&mut self, uid: &str) {
        if let Some(worker) = self.workers.remove(uid) {
            let _ = worker.updates.send(PodUpdate::Gone); // worker may be done
        }
    }

    /// Tells every worker the kubelet stops and waits for them (bounded).
    async fn stop_all(self) {
        let tasks: Vec<JoinHandle<()>> = self
            .workers
            .into_values()
            .map(|w| {
                let _ = w.updates.send(PodUpdate::KubeletStopping);
                w.task
            })
            .collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(Duration::from_secs(15), all)
            .await
            .is_err()
        {
            tracing::warn!("some pod workers did not stop in time");
        }
    }
}
