//! `harness-kubelet`: registers local Nodes and runs their pods as local processes until
//! SIGINT/SIGTERM (or, with --exit-on-stdin-eof, until whoever started it goes away).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use conclave_testenv::kubelet::{self, KubeletConfig, LocalNode, NodeCapacity};
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};

/// A kubelet for local tests: each Node owns one loopback address; pods bound to it run as
/// local processes (docs/pod-contract.md).
#[derive(Debug, Parser)]
struct Args {
    /// Admin kubeconfig of the cluster.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Number of local Nodes (local-1, local-2, ...).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Address of local-1; the next Nodes take the following addresses.
    #[arg(long, default_value_t = kubelet::FIRST_ADDRESS)]
    first_address: Ipv4Addr,
    /// Directory of the built binaries (media-node, conclave-operator, harness-http).
    #[arg(long, env = "CONCLAVE_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Directory for container logs (one file per pod and container).
    #[arg(long)]
    log_dir: PathBuf,
    /// Directory for per-pod working directories and credentials.
    #[arg(long)]
    state_dir: PathBuf,
    /// CPU each Node announces.
    #[arg(long, default_value = "8")]
    cpu: String,
    /// Memory each Node announces.
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Pods each Node accepts.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Stop when standard input reaches end of file (the parent closed its pipe or died).
    #[arg(long)]
    exit_on_stdin_eof: bool,
    /// PATH used to find turnserver and given to containers.
    #[arg(long, env = "PATH", hide_env_values = true)]
    path: Option<std::ffi::OsString>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("locate this executable")?
            .parent()
            .context("this executable has no directory")?
            .to_owned(),
    };
    let config = KubeletConfig {
        kubeconfig: args.kubeconfig,
        nodes: LocalNode::numbered(args.nodes, args.first_address),
        bin_dir,
        log_dir: args.log_dir,
        state_dir: args.state_dir,
        capacity: NodeCapacity {
            cpu: args.cpu,
            memory: args.memory,
            pods: args.max_pods,
        },
        path: args.path,
    };
    let exit_on_eof = args.exit_on_stdin_eof;
    let shutdown = async move {
        let mut terminate = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            () = stdin_closed(), if exit_on_eof => tracing::info!("stdin closed: stopping"),
        }
    };
    kubelet::run(config, shutdown)
        .await
        .context("harness kubelet failed")
}

/// Completes when standard input reaches end of file.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}
