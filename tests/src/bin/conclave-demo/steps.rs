//! The demo's steps after the cluster is up, in order: run the operator, create a pool
//! sized for the local Nodes, create a conference, and print how to join it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use conclave_crds::token::{JoinClaims, mint};
use conclave_crds::{Conference, ConferencePhase, MediaPool, labels};
use conclave_testenv::testenv::settings::{default_bin_dir, workspace_dir};
use conclave_testenv::{LocalNode, wait};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::process::{Child, Command};

/// Namespace the demo puts Conclave's objects in.
pub const NAMESPACE: &str = "conclave";
const CONFERENCE: &str = "standup";

/// What the steps can use.
pub struct Demo {
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub nodes: Vec<LocalNode>,
}

/// Processes the steps started; they are stopped when this is dropped.
pub struct Started {
    _operator: Child,
}

/// Runs every step in order.
pub async fn run(demo: &Demo) -> anyhow::Result<Started> {
    let operator = install_operator(demo).await?;
    create_pool(demo).await?;
    create_conference(demo).await?;
    print_join_links(demo).await?;
    Ok(Started {
        _operator: operator,
    })
}

fn apply() -> PatchParams {
    PatchParams::apply("conclave-demo").force()
}

/// Runs the operator binary against the cluster (a chart install replaces this once the
/// chart is complete) and the RBAC its media nodes are bound to.
async fn install_operator(demo: &Demo) -> anyhow::Result<Child> {
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(demo.client.clone())
        .patch(NAMESPACE, &apply(), &Patch::Apply(&ns))
        .await?;
    let role_file = workspace_dir().join("charts/conclave/templates/media-node-clusterrole.yaml");
    let role: ClusterRole = serde_yaml::from_str(&std::fs::read_to_string(&role_file)?)?;
    Api::<ClusterRole>::all(demo.client.clone())
        .patch("conclave-media-node", &apply(), &Patch::Apply(&role))
        .await?;
    let log_path = demo.kubeconfig.with_file_name("operator.log");
    let log = std::fs::File::create(&log_path)?;
    let child = Command::new(default_bin_dir().join("conclave-operator"))
        .args(["run", "--leader-elect=false", "--metrics-addr=127.0.0.1:0"])
        .env("KUBECONFIG", &demo.kubeconfig)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting conclave-operator (built by make demo)")?;
    println!("operator running; its log is {}", log_path.display());
    Ok(child)
}

/// Creates the demo MediaPool, one media node per local Node, with TURN.
async fn create_pool(demo: &Demo) -> anyhow::Result<()> {
    let n = demo.nodes.len();
    let pool: MediaPool = serde_json::from_value(serde_json::json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "MediaPool",
        "metadata": {"name": "default", "namespace": NAMESPACE},
        "spec": {
            "nodeCapacity": {"participants": 100, "rooms": 20},
            "scaling": {"minNodes": n, "maxNodes": n, "bufferParticipants": 10},
            "mediaNode": {"udpPortRange": {"min": 50000, "max": 50999}},
            "turn": {"enabled": true}
        }
    }))?;
    Api::<MediaPool>::namespaced(demo.client.clone(), NAMESPACE)
        .patch("default", &apply(), &Patch::Apply(&pool))
        .await?;
    println!("MediaPool {NAMESPACE}/default created with {n} media nodes");
    Ok(())
}

/// Creates a Conference and waits until it is placed on a media node.
async fn create_conference(demo: &Demo) -> anyhow::Result<()> {
    let api = Api::<Conference>::namespaced(demo.client.clone(), NAMESPACE);
    let conf: Conference = serde_json::from_value(serde_json::json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": CONFERENCE, "namespace": NAMESPACE},
        "spec": {"pool": "default", "maxParticipants": 8}
    }))?;
    api.patch(CONFERENCE, &apply(), &Patch::Apply(&conf))
        .await?;
    let placed = wait::until(
        "the demo conference to be Active",
        Duration::from_secs(120),
        || async {
            let c = api.get(CONFERENCE).await.ok()?;
            let s = c.status?;
            (s.phase == Some(ConferencePhase::Active)).then_some(s)
        },
    )
    .await?;
    println!(
        "Conference {NAMESPACE}/{CONFERENCE} is Active on media node {}",
        placed.media_node.unwrap_or_default()
    );
    Ok(())
}

/// Prints, for two identities, the signaling URL and a join token.
async fn print_join_links(demo: &Demo) -> anyhow::Result<()> {
    let conf = Api::<Conference>::namespaced(demo.client.clone(), NAMESPACE)
        .get(CONFERENCE)
        .await?;
    let join = conf
        .status
        .and_then(|s| s.join)
        .context("conference has no join info")?;
    let secret = Api::<Secret>::namespaced(demo.client.clone(), NAMESPACE)
        .get(&labels::pool_secret_name("default"))
        .await?;
    let key = secret
        .data
        .and_then(|d| d.get(labels::SECRET_JOIN_KEY).cloned())
        .context("pool key")?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 4 * 3600;
    println!("\nJoin {CONFERENCE} (signaling {}):", join.signaling_url);
    for identity in ["alice", "bob"] {
        let claims = JoinClaims {
            conference: CONFERENCE.into(),
            identity: identity.into(),
            exp,
            publish: true,
        };
        println!("  {identity}: token {}", mint(&key.0, &claims));
    }
    println!(
        "More tokens: conclave-operator token -n {NAMESPACE} --conference {CONFERENCE} --identity NAME\n"
    );
    Ok(())
}
