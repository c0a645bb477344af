//! `conclave-demo` (`make demo`): a local cluster with Conclave in it until Ctrl-C. It
//! starts the control plane in `.demo/`, runs the harness kubelet in-process with two local
//! Nodes, applies the CRDs, runs the demo steps (see `steps.rs`: the Helm chart, a
//! conference, join links), prints how to use kubectl, and on Ctrl-C stops the pods, the
//! kubelet and the control plane. It builds nothing: make does (including helm).

mod steps;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use conclave_testenv::controlplane::ControlPlane;
use conclave_testenv::helm::Helm;
use conclave_testenv::kubelet::{self, KubeletConfig, LocalNode, NodeCapacity};
use conclave_testenv::testenv::{CONTROL_PLANE_TIMEOUT, nodes, settings};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Parser)]
struct Args {
    /// Directory for the demo's control plane, logs and state (default `<workspace>/.demo`).
    #[arg(long, env = "CONCLAVE_DEMO_DIR")]
    dir: Option<PathBuf>,
    /// Number of local Nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// The control plane binary (default `<workspace>/tests/controlplane/bin/controlplane`).
    #[arg(long, env = "CONCLAVE_CONTROLPLANE")]
    controlplane: Option<PathBuf>,
    /// Directory of the built binaries (default: this executable's directory).
    #[arg(long, env = "CONCLAVE_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// The helm CLI (default `<workspace>/tests/controlplane/bin/helm`, built by `make helm`).
    #[arg(long, env = "CONCLAVE_HELM")]
    helm: Option<PathBuf>,
    /// PATH used to find turnserver and kubectl, and given to pods.
    #[arg(long, env = "PATH", hide = true)]
    path: Option<std::ffi::OsString>,
}

/// The harness kubelet running as a task of the demo.
struct InProcessKubelet {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), conclave_testenv::Error>>,
}

/// What the demo started, stopped in reverse order.
struct Running {
    control_plane: ControlPlane,
    kubelet: Option<InProcessKubelet>,
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
    let workspace = settings::workspace_dir();
    let dir = args.dir.clone().unwrap_or_else(|| workspace.join(".demo"));
    let binary = args
        .controlplane
        .clone()
        .unwrap_or_else(|| workspace.join("tests/controlplane/bin/controlplane"));
    let mut running = Running {
        control_plane: ControlPlane::start(&binary, &dir.join("controlplane"))?,
        kubelet: None,
    };
    let result = run(&args, &dir, &mut running).await;
    if let Err(e) = &result {
        tracing::error!("demo failed: {e:#}");
    }
    println!("\nstopping: pods, harness kubelet, control plane ...");
    if let Some(InProcessKubelet { stop, task }) = running.kubelet.take() {
        let _ = stop.send(());
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Err(e))) => tracing::warn!("harness kubelet: {e}"),
            Err(_) => tracing::warn!("harness kubelet did not stop in 30 s"),
            _ => {}
        }
    }
    running.control_plane.stop().await;
    println!("stopped; logs stay in {}", dir.display());
    result
}

async fn run(args: &Args, dir: &std::path::Path, running: &mut Running) -> anyhow::Result<()> {
    let kubeconfig = running.control_plane.ready(CONTROL_PLANE_TIMEOUT).await?;
    let client = conclave_testenv::client::from_kubeconfig(&kubeconfig).await?;
    conclave_testenv::crds::install(&client).await?;

    let local_nodes = LocalNode::numbered(args.nodes, kubelet::FIRST_ADDRESS);
    let config = KubeletConfig {
        kubeconfig: kubeconfig.clone(),
        nodes: local_nodes.clone(),
        bin_dir: args
            .bin_dir
            .clone()
            .unwrap_or_else(settings::default_bin_dir),
        log_dir: dir.join("pods"),
        state_dir: dir.join("kubelet"),
        capacity: NodeCapacity::default(),
        path: args.path.clone(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubelet::run(config, async move {
        let _ = stopped.await;
    }));
    running.kubelet = Some(InProcessKubelet { stop, task });
    let alive = || match &running.kubelet {
        Some(kubelet) if kubelet.task.is_finished() => Err(conclave_testenv::Error::SharedSetup(
            "the harness kubelet stopped".into(),
        )),
        _ => Ok(()),
    };
    nodes::wait_schedulable(&client, &local_nodes, Duration::from_secs(60), alive).await?;

    let helm_binary = args
        .helm
        .clone()
        .unwrap_or_else(|| settings::workspace_dir().join("tests/controlplane/bin/helm"));
    let demo = steps::Demo {
        client,
        nodes: local_nodes,
        helm: Helm::new(&helm_binary, &kubeconfig, &dir.join("helm"))?,
    };
    steps::run(&demo).await.context("demo steps")?;
    print_usage(&kubeconfig, dir, args);
    wait_for_stop(running).await
}

fn print_usage(kubeconfig: &std::path::Path, dir: &std::path::Path, args: &Args) {
    let has_kubectl = args
        .path
        .as_ref()
        .is_some_and(|p| std::env::split_paths(p).any(|d| d.join("kubectl").is_file()));
    println!(
        "\nConclave demo cluster is up: Kubernetes 1.36 control plane, {} local Nodes.\n",
        args.nodes
    );
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get nodes -o wide");
    println!("  kubectl get mediapools,medianodes,conferences -A");
    println!(
        "  kubectl -n {0} logs deployment/conclave-operator",
        steps::NAMESPACE
    );
    println!("  tests/controlplane/bin/helm list -n {}", steps::NAMESPACE);
    if !has_kubectl {
        println!(
            "\n  (kubectl is not on PATH: install a kubectl of version 1.35-1.37 to use these)"
        );
    }
    println!(
        "\nLogs: control plane {0}/controlplane.log and {0}/controlplane/logs/, containers (operator, media nodes, TURN) {0}/pods/",
        dir.display()
    );
    println!("Press Ctrl-C to stop and remove everything the demo started.");
}

/// Returns on Ctrl-C or SIGTERM, or with an error when the control plane or kubelet dies.
async fn wait_for_stop(running: &mut Running) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("watch SIGTERM")?;
    let mut check = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            _ = check.tick() => {
                running.control_plane.check_running()?;
                if running.kubelet.as_ref().is_some_and(|k| k.task.is_finished()) {
                    anyhow::bail!("the harness kubelet stopped");
                }
            }
        }
    }
}
