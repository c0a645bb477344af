//! Placement benchmark: the operator against the real local control plane with three real
//! media nodes. Offers conferences at a steady rate, then as fast as requests in flight allow,
//! and reports create→join-info latency (p50/p99), the placement rate reached, double
//! placements and over-committed nodes (both must be zero), and the operator's CPU and memory.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use conclave_crds::{MediaNode, MediaNodePhase, MediaPool};
use conclave_testenv::bench::placement::{self, Load, Outcome};
use conclave_testenv::bench::process::{cpu_seconds, rss_mib};
use conclave_testenv::operator::Operator;
use conclave_testenv::{TestEnv, media_node_role, wait};
use kube::api::{ListParams, PostParams};
use serde::Serialize;
use serde_json::json;

/// Nodes in the local environment, and what each may hold.
const NODES: u32 = 3;
const NODE_ROOMS: u32 = 500;
const NODE_PARTICIPANTS: u32 = 1000;

#[derive(Parser, Debug)]
#[command(about = "Conference placement benchmark against the local control plane")]
struct Args {
    /// Steady phase: conferences per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Steady phase: seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Peak phase: conferences created as fast as `in_flight` allows (at most 1500, the
    /// rooms of the three nodes).
    #[arg(long, default_value_t = 1200)]
    peak: usize,
    /// Create requests in flight during the peak phase.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Where to write the results (JSON).
    #[arg(long, default_value = "docs/benchmarks/placement.json")]
    out: PathBuf,
}

#[derive(Serialize)]
struct Phase {
    outcome: Outcome,
    operator_cpu_seconds: f64,
    operator_cpu_seconds_per_1000: f64,
    operator_rss_mib: f64,
}

#[derive(Serialize)]
struct Report {
    machine: String,
    load_average: String,
    steady: Phase,
    peak: Phase,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,conclave_testenv=info".into()),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.peak <= (NODES * NODE_ROOMS) as usize,
        "--peak is at most {}",
        NODES * NODE_ROOMS
    );
    let steady_count = (args.rate * f64::from(args.seconds)).round() as usize;
    anyhow::ensure!(
        steady_count <= (NODES * NODE_ROOMS) as usize,
        "--rate × --seconds is at most {}",
        NODES * NODE_ROOMS
    );
    let env = TestEnv::shared().await?;
    let ns = env.namespace("placement").await?;
    let client = ns.client();
    media_node_role::install(&client).await?;
    let operator = Operator::start(
        env.kubeconfig(),
        ns.name(),
        &env.artifacts().join("operator-placement.log"),
    )?;
    let pool: MediaPool = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "MediaPool", "metadata": {"name": "bench"},
        "spec": {
            "nodeCapacity": {"participants": NODE_PARTICIPANTS, "rooms": NODE_ROOMS},
            "scaling": {"minNodes": NODES, "maxNodes": NODES, "bufferParticipants": 0},
            "mediaNode": {"image": "ghcr.io/conclave-dev/media-node:bench", "signalingPort": 38080,
                          "udpPortRange": {"min": 56000, "max": 56999}},
            "turn": {"enabled": false}
        }
    }))?;
    ns.api::<MediaPool>()
        .create(&PostParams::default(), &pool)
        .await?;
    wait::until(
        "three Ready media nodes",
        Duration::from_secs(120),
        || async {
            let nodes = ns
                .api::<MediaNode>()
                .list(&ListParams::default())
                .await
                .ok()?;
            let ready = nodes
                .items
                .iter()
                .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(MediaNodePhase::Ready))
                .count();
            (ready == NODES as usize).then_some(())
        },
    )
    .await?;

    let load = |run: &str, count, rate, in_flight| Load {
        run: run.to_owned(),
        pool: "bench".to_owned(),
        count,
        rate,
        in_flight,
        max_participants: 2,
    };
    let steady = measure(
        &client,
        ns.name(),
        &operator,
        load("steady", steady_count, Some(args.rate), 256),
    )
    .await?;
    placement::clean_up(&client, ns.name(), "steady").await?;
    // Let the operator settle (released reservations, media nodes closing rooms).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let peak = measure(
        &client,
        ns.name(),
        &operator,
        load("peak", args.peak, None, args.in_flight),
    )
    .await?;
    placement::clean_up(&client, ns.name(), "peak").await?;

    let report = Report {
        machine: machine(),
        load_average: std::fs::read_to_string("/proc/loadavg").unwrap_or_default(),
        steady,
        peak,
    };
    print_summary(&report);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("results written to {}", args.out.display());
    anyhow::ensure!(
        report.steady.outcome.double_placements == 0
            && report.peak.outcome.double_placements == 0
            && report.steady.outcome.over_committed_nodes.is_empty()
            && report.peak.outcome.over_committed_nodes.is_empty(),
        "double placements or over-committed nodes: the placement is wrong"
    );
    Ok(())
}

async fn measure(
    client: &kube::Client,
    namespace: &str,
    operator: &Operator,
    load: Load,
) -> anyhow::Result<Phase> {
    let cpu_before = cpu_seconds(operator.pid()).unwrap_or(0.0);
    let outcome = placement::run(client, namespace, &load, Duration::from_secs(120)).await?;
    let cpu = cpu_seconds(operator.pid()).unwrap_or(0.0) - cpu_before;
    Ok(Phase {
        operator_cpu_seconds_per_1000: if outcome.placed > 0 {
            cpu * 1000.0 / outcome.placed as f64
        } else {
            0.0
        },
        operator_cpu_seconds: cpu,
        operator_rss_mib: rss_mib(operator.pid()).unwrap_or(0.0),
        outcome,
    })
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cpus} CPUs, {model}")
}

fn print_summary(r: &Report) {
    println!(
        "machine: {} (load average {})",
        r.machine,
        r.load_average.trim()
    );
    println!(
        "| phase | offered | placed | p50 ms | p99 ms | max ms | placements/s | double | over-committed | operator CPU s / 1000 | operator RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, p) in [("steady", &r.steady), ("peak", &r.peak)] {
        let o = &p.outcome;
        let offered = o
            .offered_rate
            .map_or("as fast as possible".to_owned(), |r| format!("{r}/s"));
        println!(
            "| {name} | {offered} | {}/{} | {} | {} | {} | {:.0} | {} | {} | {:.2} | {:.1} |",
            o.placed,
            o.created,
            o.create_to_join.p50_ms,
            o.create_to_join.p99_ms,
            o.create_to_join.max_ms,
            o.placements_per_second,
            o.double_placements,
            o.over_committed_nodes.len(),
            p.operator_cpu_seconds_per_1000,
            p.operator_rss_mib
        );
    }
}
