//! The Conclave target: the media node in its own process (this bench binary re-executed with
//! `SFU_BENCH_NODE=1`: one room opened through the library API, one tokio worker thread), join
//! tokens for it, and its own counters read from `/metrics` (forwarded packets, forwarding
//! delay inside the node, drops).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use conclave_media_node::media::{MediaSettings, UdpMux};
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::{NodeSettings, NodeState, RoomSettings};

use super::load::{self, Join, Load};
use super::report::{NodeCounters, Outcome};

const KEY: &[u8] = b"bench-key";
const CONFERENCE: &str = "bench";

/// The node process's main (`SFU_BENCH_NODE=1`): prints its signaling URL, then serves.
pub fn node_process() {
    // The node's own log on stderr when asked for (`RUST_LOG`), e.g. its shedding decisions.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let threads = std::env::var("SFU_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ip = load::media_ip();
        let node = NodeState::new(NodeSettings {
            name: "bench-node".into(),
            join_key: KEY.to_vec(),
            turn_secret: Vec::new(),
            media: MediaSettings::on(ip, UdpMux::bind((ip, 56_000).into()).expect("media port")),
            peer_disconnect: Duration::from_secs(10),
            chat_max_bytes: 1024,
        });
        node.set_public_ip(ip);
        node.mark_synced();
        node.open_room(RoomSettings {
            conference: CONFERENCE.into(),
            max_participants: 1000,
            media: MediaPolicy::default(),
        })
        .expect("room");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let metrics = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        println!("ws://{}/rtc", listener.local_addr().expect("addr"));
        println!("{}", metrics.local_addr().expect("addr"));
        tokio::spawn(conclave_media_node::server::serve_metrics(
            metrics,
            Arc::clone(&node),
            std::future::pending(),
        ));
        // Every bench client connects from loopback: one address holds all the sockets.
        let mut limits = conclave_media_node::signaling::SignalingLimits::default();
        limits.connections.per_address = limits.connections.per_node;
        let _ = conclave_media_node::server::run(
            listener,
            Arc::clone(&node),
            limits,
            std::future::pending(),
        )
        .await;
    });
}

fn token(identity: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    conclave_crds::token::mint(
        KEY,
        &conclave_crds::token::JoinClaims {
            conference: CONFERENCE.into(),
            identity: identity.into(),
            exp,
            publish: true,
        },
    )
}

/// The node process, killed on drop.
struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node process, its signaling URL and the address of its `/metrics`.
fn start(cpus: Option<&str>) -> anyhow::Result<(NodeProcess, String, String)> {
    let exe = std::env::current_exe()?;
    let mut command = match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let mut child = NodeProcess(
        command
            .env("SFU_BENCH_NODE", "1")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the node process")?,
    );
    let mut out = BufReader::new(child.0.stdout.take().context("node stdout")?);
    let (mut url, mut metrics) = (String::new(), String::new());
    out.read_line(&mut url).context("reading the node's URL")?;
    out.read_line(&mut metrics)
        .context("reading the node's metrics address")?;
    Ok((child, url.trim().to_owned(), metrics.trim().to_owned()))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(host).await else {
        return String::new();
    };
    let _ = s
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// Waits (up to 30 s) until the node's shedding level held for 3 s, so that an overloaded
/// node is measured once it chose what to shed; returns how long that took.
async fn settle(metrics_at: &str) -> Duration {
    let started = tokio::time::Instant::now();
    let moves = |text: &str| {
        metric(
            text,
            "conclave_media_node_shedding_steps_total{direction=\"up\"}",
        ) + metric(
            text,
            "conclave_media_node_shedding_steps_total{direction=\"down\"}",
        )
    };
    let (mut last, mut since) = (moves(&scrape(metrics_at).await), started);
    while since.elapsed() < Duration::from_secs(3) && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = moves(&scrape(metrics_at).await);
        if now != last {
            (last, since) = (now, tokio::time::Instant::now());
        }
    }
    started.elapsed()
}

/// Runs `load` against a fresh media node pinned to `cpus`.
pub async fn run(load: &Load, cpus: Option<&str>) -> anyhow::Result<Outcome> {
    let (node, url, metrics_at) = start(cpus)?;
    let pid = node.0.id();
    let quota = super::quota::CpuQuota::from_env(pid)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = load::proc_stats(pid);
    let join = Join {
        url: &url,
        ip: load::media_ip(),
        conference: CONFERENCE,
        token: &token,
        separate_receivers: false,
    };
    let all = load::connect_all(load, &join).await?;
    let media = load::start_media(load, &all);
    let complete = load::warm_up(&all).await;
    let settled_after = settle(&metrics_at).await;
    let m0 = scrape(&metrics_at).await;
    let window = load::measure(pid, &all, load.seconds, load.pps).await;
    let m1 = scrape(&metrics_at).await;
    let delta = |name: &str| metric(&m1, name) - metric(&m0, name);
    let quantile = |q: &str| {
        let name =
            format!("conclave_media_node_forward_delay_quantile_seconds{{quantile=\"{q}\"}}");
        Duration::from_secs_f64(metric(&m1, &name).max(0.0))
    };
    let node_counters = NodeCounters {
        forwarded: delta("conclave_media_node_packets_forwarded_total"),
        delay_p50: quantile("0.5"),
        delay_p99: quantile("0.99"),
        dropped_queue_full: delta(
            "conclave_media_node_packets_dropped_total{reason=\"queue_full\"}",
        ),
        dropped_mismatch: delta(
            "conclave_media_node_packets_dropped_total{reason=\"negotiation_mismatch\"}",
        ),
        late_share: {
            let timed = delta("conclave_media_node_forward_delay_seconds_count");
            let on_time = delta("conclave_media_node_forward_delay_seconds_bucket{le=\"0.04\"}");
            if timed > 0.0 {
                (timed - on_time) / timed
            } else {
                0.0
            }
        },
        shedding_level: metric(&m1, "conclave_media_node_shedding_level"),
        settled_after,
        shedding_up: delta("conclave_media_node_shedding_steps_total{direction=\"up\"}"),
        shedding_down: delta("conclave_media_node_shedding_steps_total{direction=\"down\"}"),
    };
    let cipher = load::cipher(&all).await;
    load::stop(media, all).await;
    drop(node);
    drop(quota);
    Ok(Outcome {
        target: "conclave",
        window,
        idle_kib: idle.rss_kib,
        cipher,
        loadavg: load::loadavg(),
        complete,
        node: Some(node_counters),
    })
}
