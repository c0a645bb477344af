//! The load both SFUs get and what is measured of it: the clients (publishers sending
//! VP8-shaped 30 fps frame bursts, receivers counting packets and one-way delay), the warm-up
//! until every receiver has every publisher, and one measurement window reading the SFU
//! process's CPU time and resident memory from `/proc/<pid>`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::Context;
use conclave_media_node::client::{Client, ClientConfig, MediaShape, Publish};
use conclave_media_node::node::stats::cpu_time_from_stat;

/// One load point.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Publishers, each sending one video track.
    pub publishers: usize,
    /// Participants that only receive.
    pub subscribers: usize,
    /// Packets per second each publisher sends.
    pub pps: u32,
    /// Length of the measurement window.
    pub seconds: u64,
}

impl Load {
    /// Participants (a publisher receives the others too).
    pub fn participants(&self) -> usize {
        self.publishers + self.subscribers
    }

    /// Packets per second the SFU should send: every participant receives every publisher
    /// but itself.
    pub fn offered(&self) -> f64 {
        (self.publishers * (self.participants() - 1)) as f64 * f64::from(self.pps)
    }
}

/// The address clients and SFUs use for media. Janus gathers no candidates on loopback, so
/// both SFUs get the host's first non-loopback IPv4 address (`SFU_BENCH_IP` overrides it);
/// packets to a local address take the kernel's loopback path all the same.
pub fn media_ip() -> IpAddr {
    if let Some(ip) = std::env::var("SFU_BENCH_IP")
        .ok()
        .and_then(|ip| ip.parse().ok())
    {
        return ip;
    }
    // /proc/net/fib_trie lists each local address as "|-- <ip>" followed by "/32 host LOCAL".
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let mut last = None;
    for line in trie.lines() {
        let line = line.trim_start_matches([' ', '|', '-', '+']).trim();
        if let Ok(ip) = line.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if line == "/32 host LOCAL"
            && let Some(ip) = last.filter(|ip| !ip.is_loopback())
        {
            return IpAddr::V4(ip);
        }
    }
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The machine's load average over 1, 5 and 15 minutes.
pub fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU time and resident memory of a process, all threads.
#[derive(Clone, Copy, Debug)]
pub struct ProcStats {
    pub cpu: Duration,
    pub rss_kib: u64,
}

pub fn proc_stats(pid: u32) -> ProcStats {
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

/// A connected client and how many publishers' tracks it should receive.
pub struct Participant {
    pub client: Client,
    pub publishes: bool,
    pub expects: usize,
}

/// How to join an SFU: its signaling URL, the conference, a token per identity, and whether a
/// publisher receives the others on a second connection, where the SFU makes the first offer
/// (Janus: a publisher handle only sends, a subscriber handle offers), or on its own, every
/// connection offering first (Conclave).
pub struct Join<'a> {
    pub url: &'a str,
    pub ip: IpAddr,
    pub conference: &'a str,
    pub token: &'a dyn Fn(&str) -> String,
    pub separate_receivers: bool,
}

async fn connect(join: &Join<'_>, identity: &str, video_layers: usize) -> anyhow::Result<Client> {
    Client::connect(ClientConfig {
        url: join.url.to_owned(),
        conference: join.conference.to_owned(),
        token: (join.token)(identity),
        bind_ip: join.ip,
        publish: Publish {
            audio: false,
            video_layers,
            chat: false,
        },
        transport_feedback: true,
        offer_first: !join.separate_receivers,
        tcp_only: false,
    })
    .await
    .with_context(|| format!("connecting {identity}"))
}

/// Connects every participant of `load`: publishers first, then the receivers.
pub async fn connect_all(load: &Load, join: &Join<'_>) -> anyhow::Result<Vec<Participant>> {
    let mut all = Vec::new();
    let others = load.publishers.saturating_sub(1);
    for i in 0..load.publishers {
        all.push(Participant {
            client: connect(join, &format!("pub{i}"), 1).await?,
            publishes: true,
            expects: if join.separate_receivers { 0 } else { others },
        });
    }
    if join.separate_receivers && others > 0 {
        for i in 0..load.publishers {
            all.push(Participant {
                client: connect(join, &format!("pub{i}/recv"), 0).await?,
                publishes: false,
                expects: others,
            });
        }
    }
    for i in 0..load.subscribers {
        all.push(Participant {
            client: connect(join, &format!("sub{i}"), 0).await?,
            publishes: false,
            expects: load.publishers,
        });
    }
    Ok(all)
}

/// Starts the publishers' media: 30 frames per second of pps/30 packets of 1000 bytes each
/// (bursts, as real video sends them).
pub fn start_media(load: &Load, all: &[Participant]) -> Vec<tokio::task::JoinHandle<()>> {
    let per_frame = (load.pps as usize / 30).max(1);
    let shape = MediaShape {
        fps: 30,
        packets_per_frame: [per_frame; 3],
        packet_bytes: [1000, 1000, 1000],
        keyframe_interval: 60,
        audio_pps: 50,
        decodable: false,
    };
    all.iter()
        .filter(|p| p.publishes)
        .map(|p| p.client.start_media(shape.clone()))
        .collect()
}

/// Waits (up to 30 s) until every receiver gets every publisher it should; false on timeout.
pub async fn warm_up(all: &[Participant]) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ready = || {
        all.iter().all(|p| {
            p.client.stats.track_ids().len() >= p.expects
                && (p.expects == 0 || p.client.stats.total_packets() >= 10)
        })
    };
    while !ready() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    true
}

fn received(all: &[Participant]) -> u64 {
    all.iter().map(|p| p.client.stats.total_packets()).sum()
}

/// What one measurement window saw.
pub struct Window {
    pub seconds: f64,
    pub received: u64,
    pub cpu: Duration,
    pub rss_kib: u64,
    pub one_way_p50: Duration,
    pub one_way_p99: Duration,
    pub tracks: TrackShares,
}

/// The videos receivers should get, by how much of each arrived in the window: what an
/// overloaded SFU chose to shed shows as tracks off, what it lost at random as tracks broken.
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackShares {
    /// At least 90 % of the packets arrived.
    pub intact: usize,
    /// Between 10 and 90 %: every frame likely damaged.
    pub broken: usize,
    /// Under 10 %, or never subscribed.
    pub off: usize,
}

impl TrackShares {
    fn count(&mut self, arrived: f64) {
        match arrived {
            a if a >= 0.9 => self.intact += 1,
            a if a >= 0.1 => self.broken += 1,
            _ => self.off += 1,
        }
    }
}

/// Packets each receiver got so far, by track.
fn per_track(all: &[Participant]) -> Vec<std::collections::HashMap<String, u64>> {
    all.iter()
        .map(|p| {
            p.client
                .stats
                .track_ids()
                .into_iter()
                .map(|t| {
                    let packets = p.client.stats.track(&t).packets();
                    (t, packets)
                })
                .collect()
        })
        .collect()
}

/// Measures the SFU process `pid` for `seconds` under the running load (publishers sending
/// `pps` packets a second each).
pub async fn measure(pid: u32, all: &[Participant], seconds: u64, pps: u32) -> Window {
    for p in all {
        for t in p.client.stats.track_ids() {
            p.client.stats.track(&t).delay.reset();
        }
    }
    let (s0, r0, t0) = (proc_stats(pid), received(all), tokio::time::Instant::now());
    let before = per_track(all);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (s1, r1, elapsed) = (proc_stats(pid), received(all), t0.elapsed());
    let mut tracks = TrackShares::default();
    let expected = f64::from(pps) * elapsed.as_secs_f64();
    for ((p, after), before) in all.iter().zip(per_track(all)).zip(&before) {
        for (t, packets) in &after {
            let earlier = before.get(t).copied().unwrap_or(0);
            tracks.count((packets - earlier) as f64 / expected);
        }
        tracks.off += p.expects.saturating_sub(after.len());
    }
    // The worst track's quantiles.
    let (mut p50, mut p99) = (Duration::ZERO, Duration::ZERO);
    for p in all {
        for t in p.client.stats.track_ids() {
            let c = p.client.stats.track(&t);
            p50 = p50.max(c.delay.quantile(0.5));
            p99 = p99.max(c.delay.quantile(0.99));
        }
    }
    Window {
        seconds: elapsed.as_secs_f64(),
        received: r1 - r0,
        cpu: s1.cpu.saturating_sub(s0.cpu),
        rss_kib: s1.rss_kib,
        one_way_p50: p50,
        one_way_p99: p99,
        tracks,
    }
}

/// The SRTP protection profile the first receiver negotiated with the SFU.
pub async fn cipher(all: &[Participant]) -> String {
    for p in all.iter().filter(|p| p.expects > 0) {
        if let Some(c) = p.client.srtp_cipher().await {
            return c;
        }
    }
    "unknown".into()
}

/// Stops the publishers' media and closes every client.
pub async fn stop(media: Vec<tokio::task::JoinHandle<()>>, all: Vec<Participant>) {
    for m in media {
        m.abort();
    }
    for p in all {
        p.client.close().await;
    }
}
