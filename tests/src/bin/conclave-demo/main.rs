//! `conclave-demo` (`make demo`): a local cluster with Conclave in it until Ctrl-C. It
//! starts the control plane in `.demo/` with two real nodes (kubelet and containerd, each in
//! its own network namespace) that import Conclave's images, applies the CRDs, runs the demo
//! steps (see `steps.rs`: the Helm chart, a conference, join links), prints how to use
//! kubectl, and on Ctrl-C stops the cluster and removes its nodes from the machine. It builds
//! nothing: make does (the binaries, the images, helm).

mod forward;
mod steps;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use conclave_testenv::controlplane::ControlPlane;
use conclave_testenv::helm::Helm;
use conclave_testenv::testenv::{CONTROL_PLANE_TIMEOUT, Settings, nodes, settings};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
struct Args {
    /// Directory for the demo's control plane, logs and state (default `<workspace>/.demo`).
    #[arg(long, env = "CONCLAVE_DEMO_DIR")]
    dir: Option<PathBuf>,
    /// Number of real nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// PATH used to find kubectl.
    #[arg(long, env = "PATH", hide = true)]
    path: Option<std::ffi::OsString>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    // The control plane, helm and the image archives are found as the tests find them
    // (CONCLAVE_CONTROLPLANE, CONCLAVE_HELM, CONCLAVE_IMAGES).
    let settings = Settings::from_env();
    let workspace = settings::workspace_dir();
    let dir = args.dir.clone().unwrap_or_else(|| workspace.join(".demo"));
    let mut control_plane = conclave_testenv::testenv::start_local_cluster(
        &settings,
        &dir.join("controlplane"),
        args.nodes,
    )?;
    let result = run(&args, &settings, &dir, &mut control_plane).await;
    if let Err(e) = &result {
        tracing::error!("demo failed: {e:#}");
    }
    println!("\nstopping: the control plane and its nodes ...");
    control_plane.stop().await;
    println!("stopped; logs stay in {}", dir.display());
    result
}

async fn run(
    args: &Args,
    settings: &Settings,
    dir: &std::path::Path,
    control_plane: &mut ControlPlane,
) -> anyhow::Result<()> {
    let kubeconfig = control_plane.ready(CONTROL_PLANE_TIMEOUT).await?;
    let client = conclave_testenv::client::from_kubeconfig(&kubeconfig).await?;
    conclave_testenv::crds::install(&client).await?;
    let local_nodes = nodes::wait_schedulable(&client, args.nodes, Duration::from_secs(60)).await?;

    let demo = steps::Demo {
        client,
        kubeconfig: kubeconfig.clone(),
        nodes: local_nodes,
        helm: Helm::new(&settings.helm, &kubeconfig, &dir.join("helm"))?,
    };
    steps::run(&demo).await.context("demo steps")?;
    print_usage(&kubeconfig, dir, args);
    wait_for_stop(control_plane).await
}

fn print_usage(kubeconfig: &std::path::Path, dir: &std::path::Path, args: &Args) {
    let has_kubectl = args
        .path
        .as_ref()
        .is_some_and(|p| std::env::split_paths(p).any(|d| d.join("kubectl").is_file()));
    println!(
        "\nConclave demo cluster is up: Kubernetes 1.36 control plane, {} nodes (kubelet, containerd).\n",
        args.nodes
    );
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes -o wide");
    println!("  kubectl get mediapools,medianodes,conferences -A");
    println!(
        "  kubectl -n {0} logs deployment/conclave-operator   # one of the two replicas",
        steps::NAMESPACE
    );
    println!(
        "  kubectl -n {0} logs \"$(kubectl -n {0} get lease conclave-operator -o jsonpath='{{.spec.holderIdentity}}')\"   # the leader",
        steps::NAMESPACE
    );
    println!("  tests/controlplane/bin/helm list -n {}", steps::NAMESPACE);
    if !has_kubectl {
        println!("\n  (kubectl is not on PATH: make built one, tests/controlplane/bin/kubectl)");
    }
    println!(
        "\nLogs: control plane {0}/controlplane.log and {0}/controlplane/logs/, nodes {0}/controlplane/nodes/<node>/logs/, containers: kubectl logs",
        dir.display()
    );
    println!("Press Ctrl-C to stop and remove everything the demo started.");
}

/// Returns on Ctrl-C or SIGTERM, or with an error when the control plane (or a node) dies.
async fn wait_for_stop(control_plane: &mut ControlPlane) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("watch SIGTERM")?;
    let mut check = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = check.tick() => control_plane.check_running()?,
        }
    }
}
