//! SFU forwarding benchmark: N publishers × M subscribers on loopback through a media node
//! running as its own process (this binary re-executed with `SFU_BENCH_NODE=1`), so its CPU
//! and memory are measured apart from the clients'. Reports forwarded egress packets per
//! second, per CPU-second of the node, forwarding delay inside the node (p50/p99) and one-way
//! delay publisher to subscriber, and memory per participant.
//!
//! `cargo bench -p conclave-media-node --bench sfu -- [publishers] [subscribers] [pps] [seconds]`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_media_node::client::{Client, ClientConfig, MediaShape, Publish};
use conclave_media_node::media::{MediaSettings, PortPool};
use conclave_media_node::node::stats::cpu_time_from_stat;
use conclave_media_node::room::MediaPolicy;
use conclave_media_node::{NodeSettings, NodeState, RoomSettings};

const KEY: &[u8] = b"bench-key";
const CONFERENCE: &str = "bench";

fn main() {
    if std::env::var_os("SFU_BENCH_NODE").is_some() {
        return node_process();
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (publishers, subscribers, pps, seconds) = (arg(0, 2), arg(1, 8), arg(2, 300), arg(3, 10));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(drive(
        publishers as usize,
        subscribers as usize,
        pps as u32,
        seconds,
    ));
}

fn node_process() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("SFU_BENCH_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(1),
        )
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ip = "127.0.0.1".parse().expect("ip");
        let node = NodeState::new(NodeSettings {
            name: "bench-node".into(),
            join_key: KEY.to_vec(),
            turn_secret: Vec::new(),
            media: MediaSettings {
                bind_ip: ip,
                ports: PortPool::new(56_000, 56_999),
                ice_disconnected: Duration::from_secs(5),
                ice_failed: Duration::from_secs(15),
            },
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
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        println!("ws://{}/rtc", listener.local_addr().expect("addr"));
        let _ =
            conclave_media_node::server::run(listener, Arc::clone(&node), std::future::pending())
                .await;
    });
}

fn token(identity: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
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

struct ProcStats {
    cpu: Duration,
    rss_kib: u64,
}

fn proc_stats(pid: u32) -> ProcStats {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ProcStats {
        cpu: cpu_time_from_stat(&stat, 100).unwrap_or_default(),
        rss_kib,
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.trim_start_matches("ws://").trim_end_matches("/rtc");
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

async fn drive(publishers: usize, subscribers: usize, pps: u32, seconds: u64) {
    let exe = std::env::current_exe().expect("exe");
    // SFU_BENCH_NODE_CPUS pins the node process (taskset -c), so clients and node do not
    // compete for the same core.
    let mut command = match std::env::var("SFU_BENCH_NODE_CPUS") {
        Ok(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(exe);
            c
        }
        Err(_) => Command::new(exe),
    };
    let mut child = command
        .env("SFU_BENCH_NODE", "1")
        .stdout(Stdio::piped())
        .spawn()
        .expect("node process");
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("node url");
    let url = line.trim().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = proc_stats(pid);

    let config = |name: String, publish: Publish| ClientConfig {
        url: url.clone(),
        conference: CONFERENCE.into(),
        token: token(&name),
        bind_ip: "127.0.0.1".parse().expect("ip"),
        publish,
    };
    let mut pubs = Vec::new();
    for i in 0..publishers {
        let c = Client::connect(config(
            format!("pub{i}"),
            Publish {
                audio: false,
                video_layers: 1,
                chat: false,
            },
        ))
        .await
        .expect("publisher");
        pubs.push(c);
    }
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let c = Client::connect(config(
            format!("sub{i}"),
            Publish {
                audio: false,
                video_layers: 0,
                chat: false,
            },
        ))
        .await
        .expect("subscriber");
        subs.push(c);
    }
    // 30 frames per second of pps/30 packets each (bursts, as real video sends them).
    let per_frame = (pps as usize / 30).max(1);
    let shape = MediaShape {
        fps: 30,
        packets_per_frame: [per_frame; 3],
        packet_bytes: [1000, 1000, 1000],
        keyframe_interval: 60,
        audio_pps: 50,
    };
    let media: Vec<_> = pubs.iter().map(|p| p.start_media(shape.clone())).collect();
    // Warm up until every subscriber receives every publisher.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline
        && subs
            .iter()
            .any(|s| s.stats.track_ids().len() < publishers || s.stats.total_packets() < 10)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m0 = scrape(&url).await;
    let s0 = proc_stats(pid);
    let received0: u64 = subs.iter().map(|s| s.stats.total_packets()).sum();
    for s in &subs {
        for t in s.stats.track_ids() {
            s.stats.track(&t).delay.reset();
        }
    }
    let t0 = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let m1 = scrape(&url).await;
    let s1 = proc_stats(pid);
    let received1: u64 = subs.iter().map(|s| s.stats.total_packets()).sum();

    let forwarded = metric(&m1, "conclave_media_node_packets_forwarded_total")
        - metric(&m0, "conclave_media_node_packets_forwarded_total");
    let cpu = (s1.cpu.saturating_sub(s0.cpu)).as_secs_f64();
    let mut e2e_p50 = Duration::ZERO;
    let mut e2e_p99 = Duration::ZERO;
    for s in &subs {
        for t in s.stats.track_ids() {
            let c = s.stats.track(&t);
            e2e_p50 = e2e_p50.max(c.delay.quantile(0.5));
            e2e_p99 = e2e_p99.max(c.delay.quantile(0.99));
        }
    }
    let participants = (publishers + subscribers) as f64;
    // Every participant receives every publisher but itself.
    let offered = (publishers * (subscribers + publishers - 1)) as f64 * f64::from(pps);
    println!(
        "sfu-bench publishers={publishers} subscribers={subscribers} pps_per_publisher={pps} seconds={elapsed:.1}"
    );
    println!("  offered egress          {:>10.0} packets/s", offered);
    println!(
        "  forwarded egress        {:>10.0} packets/s",
        forwarded / elapsed
    );
    println!(
        "  received by subscribers {:>10.0} packets/s",
        (received1 - received0) as f64 / elapsed
    );
    println!("  node cpu                {:>10.2} cores", cpu / elapsed);
    println!(
        "  per cpu-second          {:>10.0} packets",
        if cpu > 0.0 { forwarded / cpu } else { 0.0 }
    );
    println!(
        "  node delay p50/p99      {:>7.3} / {:.3} ms (ingress to egress queue)",
        metric(
            &m1,
            "conclave_media_node_forward_delay_seconds{quantile=\"0.5\"}"
        ) * 1e3,
        metric(
            &m1,
            "conclave_media_node_forward_delay_seconds{quantile=\"0.99\"}"
        ) * 1e3
    );
    println!(
        "  one-way delay p50/p99   {:>7.3} / {:.3} ms (publisher send to subscriber receive, worst track)",
        e2e_p50.as_secs_f64() * 1e3,
        e2e_p99.as_secs_f64() * 1e3
    );
    println!(
        "  memory                  {:>10.0} KiB idle, {:.0} KiB per participant",
        idle.rss_kib,
        (s1.rss_kib.saturating_sub(idle.rss_kib)) as f64 / participants
    );
    println!(
        "  drops queue_full={} negotiation_mismatch={}",
        metric(
            &m1,
            "conclave_media_node_packets_dropped_total{reason=\"queue_full\"}"
        ),
        metric(
            &m1,
            "conclave_media_node_packets_dropped_total{reason=\"negotiation_mismatch\"}"
        )
    );
    for m in media {
        m.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
}
