//! Scale benchmark on KWOK: a simulated day of conferences against the operator (placement,
//! waits, interruptions, nodes and utilization), then the operator's cost with many media
//! nodes and conferences (memory, CPU, API requests, restart). Each part runs on its own fresh
//! local control plane with kwok-simulated Nodes. `--quick` (default) takes minutes; `--full`
//! is the 1,000-node run. Results: JSON, Markdown and SVG under `--out`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use conclave_crds::report::lease_renewal_interval;
use conclave_testenv::scale::cluster::{self, ClusterSpec, NAMESPACE, ScaleCluster};
use conclave_testenv::scale::cost::{self, CostSettings};
use conclave_testenv::scale::day::{self, DaySettings};
use conclave_testenv::scale::plan::DaySpec;
use conclave_testenv::scale::replay::ReplaySettings;
use conclave_testenv::scale::report::{self, Machine};
use conclave_testenv::scale::simulator::{self, Behaviour};
use conclave_testenv::testenv::settings::Settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    Day,
    Cost,
    /// The day replayed on the operator's decisions alone, no cluster (`scale::replay`).
    Replay,
}

#[derive(Parser, Debug)]
#[command(about = "Scale benchmark of the Conclave operator on kwok-simulated Nodes")]
struct Args {
    /// The full run (a 10-minute day of 5,000 conferences on 400 Nodes; 1,000 media nodes and
    /// 10,000 conferences).
    #[arg(long, conflicts_with = "quick")]
    full: bool,
    /// The short run (the default): a 5-minute day on 80 Nodes; 200 media nodes.
    #[arg(long)]
    quick: bool,
    /// Run only these parts.
    #[arg(long, value_enum)]
    only: Vec<Part>,
    /// Where results go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// Time kwok takes to start a media-node pod (image pull, process start), ms.
    #[arg(long, default_value_t = 2000)]
    pod_start_ms: u64,
    /// Seed of the day.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Seconds between a simulated media node's Lease renewals (the media node's
    /// `--heartbeat-seconds`); by default what a media node does in the part's pool: three
    /// renewals per heartbeatTimeoutSeconds (5 s in the day's pool, 20 s in the cost run's).
    #[arg(long)]
    heartbeat_seconds: Option<u64>,
    /// Day: conferences over the day (default 1,200 quick, 5,000 full).
    #[arg(long)]
    day_conferences: Option<usize>,
    /// Cost run: media nodes (default 200 quick, 1,000 full).
    #[arg(long)]
    media_nodes: Option<u32>,
    /// Cost run: conferences (default 2,000 quick, 10,000 full).
    #[arg(long)]
    conferences: Option<usize>,
    /// Day: the pool's warm-up, in minutes of the day (how long before its start a booked
    /// conference is placed; the pool's default is 5).
    #[arg(long, default_value_t = 20.0)]
    warmup_minutes: f64,
    /// Day: the pool's scale-down delay, in minutes of the day (how long surplus lasts before
    /// nodes drain; the pool's default is 5).
    #[arg(long, default_value_t = 10.0)]
    scale_down_minutes: f64,
    /// Day: the pool's minNodes.
    #[arg(long, default_value_t = 2)]
    min_nodes: u32,
    /// Day: the pool's bufferParticipants.
    #[arg(long, default_value_t = 100)]
    buffer_participants: u32,
    /// Day: conferences give no expectedParticipants, so each reserves its maxParticipants
    /// (the day as it ran before expectedParticipants existed).
    #[arg(long)]
    reserve_invited: bool,
    /// Replay: a media node's start, creation to Ready, in seconds of the day (the day on
    /// the control plane measures 2.4 s p50, 346 s of its day).
    #[arg(long, default_value_t = 346)]
    replay_node_start_seconds: i64,
    /// Cost run: create requests in flight.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
}

struct Sizes {
    label: &'static str,
    day_nodes: usize,
    day: DaySettings,
    cost: CostSettings,
}

fn sizes(args: &Args) -> Sizes {
    let (label, day_nodes, day_seconds, conferences, cost_nodes, cost_conferences) = if args.full {
        ("full", 400, 600.0, 5000, 1000, 10_000)
    } else {
        ("quick", 80, 300.0, 1200, 200, 2000)
    };
    Sizes {
        label,
        day_nodes,
        day: DaySettings {
            day: DaySpec {
                conferences,
                scheduled_fraction: 0.6,
                seed: args.seed,
            },
            day_seconds,
            node_participants: 100,
            node_rooms: 25,
            min_nodes: args.min_nodes,
            max_nodes: day_nodes as u32,
            buffer_participants: args.buffer_participants,
            // The warm-up (20 minutes of the day unless told) ahead of a scheduled start (the
            // autoscaler starts nodes a node start before it), and 10 minutes of surplus
            // unless told before a node drains (at least the few real seconds a node takes to
            // start).
            warmup_seconds: day_clock(day_seconds, args.warmup_minutes * 60.0).max(1),
            scale_down_delay_seconds: day_clock(day_seconds, args.scale_down_minutes * 60.0).max(3),
            expected_attendance: true,
        },
        cost: CostSettings {
            media_nodes: cost_nodes,
            conferences: cost_conferences,
            participants: 5,
            in_flight: 64,
            steady_count: cost_conferences / 5,
            steady_rate: 100.0,
            steady_seconds: 30,
            heartbeat_timeout_seconds: 60,
        },
    }
}

/// Real seconds (rounded up) that `day_seconds_span` of the simulated day take.
fn day_clock(day_seconds: f64, day_seconds_span: f64) -> u32 {
    (day_seconds_span * day_seconds / 86_400.0).ceil() as u32
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,conclave_testenv=info,conclave_scale=info".into()),
        )
        .init();
    let args = Args::parse();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On a signal the run is dropped, which stops the operator, kwok and the control plane.
    tokio::select! {
        result = run(args) => result,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        _ = terminate.recv() => anyhow::bail!("terminated"),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let mut s = sizes(&args);
    s.day.day.conferences = args.day_conferences.unwrap_or(s.day.day.conferences);
    s.cost.media_nodes = args.media_nodes.unwrap_or(s.cost.media_nodes);
    s.cost.conferences = args.conferences.unwrap_or(s.cost.conferences);
    s.cost.steady_count = s.cost.conferences / 5;
    s.day.expected_attendance = !args.reserve_invited;
    s.cost.in_flight = args.in_flight;
    let parts = if args.only.is_empty() {
        vec![Part::Replay, Part::Day, Part::Cost]
    } else {
        args.only.clone()
    };
    std::fs::create_dir_all(&args.out)?;
    // The simulated nodes renew their Leases as media nodes do in the part's pool.
    let behaviour = |pool_timeout_seconds: u32| Behaviour {
        heartbeat_seconds: args
            .heartbeat_seconds
            .unwrap_or_else(|| lease_renewal_interval(pool_timeout_seconds).as_secs()),
        join_delay_ms: 500,
    };
    let pod_start = Duration::from_millis(args.pod_start_ms);
    if parts.contains(&Part::Replay) {
        let replayed = replay(&s.day, args.replay_node_start_seconds);
        write(
            &args.out,
            &format!("scale-{}-replay.json", s.label),
            &serde_json::to_string_pretty(&replayed)?,
        )?;
    }
    if parts.contains(&Part::Day) {
        let mut machine = Machine::now();
        let spec = ClusterSpec {
            controlplane: settings.controlplane.clone(),
            dir: cluster::run_dir(&settings.artifacts, &format!("{}-day", s.label)),
            nodes: s.day_nodes,
            pod_start,
        };
        let mut c = ScaleCluster::start(&spec).await?;
        let behaviour = behaviour(day::pool(&s.day).spec.media_node.heartbeat_timeout_seconds);
        let sim = simulator::start(c.client.clone(), NAMESPACE, behaviour);
        // The pool exists before the operator starts: a pool created in the operator's first
        // moments can leave its first MediaNodes unreconciled (reported to the operator's
        // authors); the figures here are about the day, not that race.
        day::create_pool(&c.client, NAMESPACE, &s.day).await?;
        let operator = conclave_testenv::operator::Operator::start_simulated(
            &c.kubeconfig,
            NAMESPACE,
            &c.log("operator.log"),
        )?;
        let outcome = day::run(&c.client, NAMESPACE, &s.day).await;
        drop(operator);
        drop(sim);
        c.check_running()?;
        c.stop().await;
        let outcome = outcome?;
        machine.finish();
        let prefix = format!("scale-{}-day", s.label);
        let (nodes, load) = report::day_chart(&outcome);
        write(&args.out, &format!("{prefix}-nodes.svg"), &nodes)?;
        write(&args.out, &format!("{prefix}-load.svg"), &load)?;
        write(
            &args.out,
            &format!("{prefix}.json"),
            &serde_json::to_string_pretty(&serde_json::json!({
                "machine": machine, "podStartMs": args.pod_start_ms,
                "simulator": behaviour, "day": outcome
            }))?,
        )?;
        let md = report::day_markdown(
            &outcome,
            &machine,
            behaviour.heartbeat_seconds,
            &format!("benchmarks/{prefix}"),
        );
        write(&args.out, &format!("{prefix}.md"), &md)?;
        println!("{md}");
    }
    if parts.contains(&Part::Cost) {
        let mut machine = Machine::now();
        let spec = ClusterSpec {
            controlplane: settings.controlplane.clone(),
            dir: cluster::run_dir(&settings.artifacts, &format!("{}-cost", s.label)),
            nodes: s.cost.media_nodes as usize,
            pod_start,
        };
        let mut c = ScaleCluster::start(&spec).await?;
        let behaviour = behaviour(s.cost.heartbeat_timeout_seconds);
        let sim = simulator::start(c.client.clone(), NAMESPACE, behaviour);
        let outcome = cost::run(
            &c.client,
            &c.kubeconfig,
            NAMESPACE,
            &c.dir.clone(),
            &sim,
            &s.cost,
        )
        .await;
        drop(sim);
        c.check_running()?;
        c.stop().await;
        let outcome = outcome?;
        machine.finish();
        let prefix = format!("scale-{}-cost", s.label);
        write(
            &args.out,
            &format!("{prefix}.json"),
            &serde_json::to_string_pretty(&serde_json::json!({
                "machine": machine, "simulator": behaviour, "cost": outcome
            }))?,
        )?;
        let md = report::cost_markdown(&outcome, &machine, behaviour.heartbeat_seconds);
        write(&args.out, &format!("{prefix}.md"), &md)?;
        println!("{md}");
    }
    Ok(())
}

/// Replays the day of `settings` on the operator's decisions (the settings and summary).
fn replay(settings: &DaySettings, node_start_seconds: i64) -> serde_json::Value {
    let compression = settings.compression();
    let day_seconds = |real: u32| (f64::from(real) * compression).round() as i64;
    let replay_settings = ReplaySettings {
        node_participants: settings.node_participants,
        node_rooms: settings.node_rooms,
        min_nodes: settings.min_nodes,
        max_nodes: settings.max_nodes,
        buffer_participants: settings.buffer_participants,
        warmup_seconds: day_seconds(settings.warmup_seconds),
        scale_down_delay_seconds: day_seconds(settings.scale_down_delay_seconds),
        node_start_seconds,
        expected_attendance: settings.expected_attendance,
        tick_seconds: 10,
    };
    let day = conclave_testenv::scale::plan::plan(&settings.day);
    let replayed = conclave_testenv::scale::replay::replay(&day, &replay_settings);
    serde_json::json!({ "settings": replay_settings, "summary": replayed })
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
