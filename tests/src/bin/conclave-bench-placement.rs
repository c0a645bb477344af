//! Placement benchmark: the operator against the real local control plane with three real
//! media nodes. Offers conferences at a steady rate, then as fast as requests in flight allow,
//! and reports create→join-info latency (p50/p99), the placement rate reached, double
//! placements and over-committed nodes (both must be zero), and the operator's CPU and memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use conclave_crds::{MediaNode, MediaNodePhase, MediaPool};
use conclave_testenv::bench::placement::{self, Load, Outcome};
use conclave_testenv::bench::process::{find, rss_mib, total_cpu_seconds};
use conclave_testenv::operator::Operator;
use conclave_testenv::{TestEnv, media_node_role, wait};
use kube::api::{ListParams, PostParams};
use serde::Serialize;
use serde_json::json;

/// Nodes in the local environment, and what each may hold.
const NODES: u32 = 3;
const NODE_ROOMS: u32 = 500;
const NODE_PARTICIPANTS: u32 = 1000;
const SIGNALING_PORT: u16 = 38080;

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
    /// CPU seconds each part of the system spent per 1000 placements during the phase.
    cpu_seconds_per_1000: BTreeMap<String, f64>,
    operator_rss_mib: f64,
}

/// The processes whose CPU a phase accounts for, by part.
struct Parts(Vec<(String, Vec<u32>)>);

impl Parts {
    fn find(artifacts: &str, operator: u32) -> Parts {
        let component = |name: &str| find(&[&format!("controlplane {name}"), artifacts]);
        Parts(vec![
            ("operator".into(), vec![operator]),
            ("kube-apiserver".into(), component("kube-apiserver")),
            ("etcd".into(), component("etcd")),
            (
                "controller-manager+scheduler".into(),
                [
                    component("kube-controller-manager"),
                    component("kube-scheduler"),
                ]
                .concat(),
            ),
            (
                "media nodes".into(),
                find(&["media-node", &format!("--signaling-port={SIGNALING_PORT}")]),
            ),
            ("benchmark client".into(), vec![std::process::id()]),
        ])
    }

    fn cpu(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|(name, pids)| (name.clone(), total_cpu_seconds(pids)))
            .collect()
    }
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
    // Logs go to stderr: stdout is the report.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
            "mediaNode": {"image": "ghcr.io/conclave-dev/media-node:bench", "signalingPort": SIGNALING_PORT,
                          "udpPort": 56000},
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
    let parts = Parts::find(&env.artifacts().to_string_lossy(), operator.pid());
    let steady = measure(
        &client,
        ns.name(),
        &operator,
        &parts,
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
        &parts,
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
    eprintln!("results written to {}", args.out.display());
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
    parts: &Parts,
    load: Load,
) -> anyhow::Result<Phase> {
    let before = parts.cpu();
    let outcome = placement::run(client, namespace, &load, Duration::from_secs(120)).await?;
    let after = parts.cpu();
    let per_1000 = |spent: f64| {
        if outcome.placed > 0 {
            (spent * 1000.0 / outcome.placed as f64 * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    Ok(Phase {
        cpu_seconds_per_1000: after
            .iter()
            .map(|(part, s)| {
                (
                    part.clone(),
                    per_1000(s - before.get(part).copied().unwrap_or(0.0)),
                )
            })
            .collect(),
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
        "| phase | offered | placed | p50 ms | p99 ms | max ms | placements/s | double | over-committed | operator RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, p) in [("steady", &r.steady), ("peak", &r.peak)] {
        let o = &p.outcome;
        let offered = o
            .offered_rate
            .map_or("as fast as possible".to_owned(), |r| format!("{r}/s"));
        println!(
            "| {name} | {offered} | {}/{} | {} | {} | {} | {:.0} | {} | {} | {:.1} |",
            o.placed,
            o.created,
            o.create_to_join.p50_ms,
            o.create_to_join.p99_ms,
            o.create_to_join.max_ms,
            o.placements_per_second,
            o.double_placements,
            o.over_committed_nodes.len(),
            p.operator_rss_mib
        );
    }
    println!();
    println!("CPU seconds per 1000 placements:");
    println!();
    println!("| part | steady | peak |");
    println!("|---|---|---|");
    for (part, steady) in &r.steady.cpu_seconds_per_1000 {
        let peak = r
            .peak
            .cpu_seconds_per_1000
            .get(part)
            .copied()
            .unwrap_or(0.0);
        println!("| {part} | {steady:.2} | {peak:.2} |");
    }
}
