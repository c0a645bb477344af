//! What the bench prints: each SFU's figures for one load point, and markdown table rows (one
//! per SFU, then Conclave ÷ Janus) that `scripts/bench-sfu.sh` collects into
//! `docs/benchmarks/sfu.md`.

use std::time::Duration;

use super::load::{Load, Window};

/// The media node's own counters over the window (Janus has none the bench reads).
pub struct NodeCounters {
    pub forwarded: f64,
    pub delay_p50: Duration,
    pub delay_p99: Duration,
    pub dropped_queue_full: f64,
    pub dropped_mismatch: f64,
    /// Of the packets forwarded in the window, the share that waited over 40 ms in the node.
    pub late_share: f64,
    /// The shedding level at the end of the window, and its moves up and down in it.
    pub shedding_level: f64,
    /// How long after warm-up the level held for 3 s (the window started then).
    pub settled_after: Duration,
    pub shedding_up: f64,
    pub shedding_down: f64,
}

/// One SFU's result at one load point.
pub struct Outcome {
    pub target: &'static str,
    pub window: Window,
    pub idle_kib: u64,
    pub cipher: String,
    /// The machine's load average (1, 5, 15 min) at the end of the window.
    pub loadavg: String,
    /// Whether every receiver got every publisher before the window.
    pub complete: bool,
    pub node: Option<NodeCounters>,
}

impl Outcome {
    /// Packets per second the clients received from the SFU.
    pub fn delivered(&self) -> f64 {
        self.window.received as f64 / self.window.seconds
    }

    pub fn cores(&self) -> f64 {
        self.window.cpu.as_secs_f64() / self.window.seconds
    }

    /// Delivered packets per CPU-second of the SFU process.
    pub fn per_cpu_second(&self) -> f64 {
        let cpu = self.window.cpu.as_secs_f64();
        if cpu > 0.0 {
            self.window.received as f64 / cpu
        } else {
            0.0
        }
    }

    pub fn kib_per_participant(&self, load: &Load) -> f64 {
        self.window.rss_kib.saturating_sub(self.idle_kib) as f64 / load.participants() as f64
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The figures of one SFU, for people reading the bench's output.
pub fn print(load: &Load, o: &Outcome) {
    let w = &o.window;
    println!(
        "sfu-bench target={} publishers={} subscribers={} pps_per_publisher={} seconds={:.1} loadavg={}{}",
        o.target,
        load.publishers,
        load.subscribers,
        load.pps,
        w.seconds,
        o.loadavg,
        if o.complete {
            ""
        } else {
            " (WARNING: not every receiver got every publisher before the window)"
        }
    );
    println!(
        "  offered egress          {:>10.0} packets/s",
        load.offered()
    );
    println!(
        "  received by clients     {:>10.0} packets/s",
        o.delivered()
    );
    println!("  sfu cpu                 {:>10.2} cores", o.cores());
    println!(
        "  per cpu-second          {:>10.0} packets received",
        o.per_cpu_second()
    );
    println!(
        "  one-way delay p50/p99   {:>7.3} / {:.3} ms (publisher send to receiver, worst track)",
        ms(w.one_way_p50),
        ms(w.one_way_p99)
    );
    println!(
        "  memory                  {:>10} KiB idle, {:.0} KiB per participant",
        o.idle_kib,
        o.kib_per_participant(load)
    );
    println!("  srtp                    {:>10}", o.cipher);
    let t = &w.tracks;
    println!(
        "  videos intact/broken/off {} / {} / {} (>= 90 %, 10-90 %, < 10 % of their packets)",
        t.intact, t.broken, t.off
    );
    if let Some(n) = &o.node {
        println!(
            "  node forwarded          {:>10.0} packets/s (its own counter)",
            n.forwarded / w.seconds
        );
        println!(
            "  node delay p50/p99      {:>7.3} / {:.3} ms (ingress to egress queue)",
            ms(n.delay_p50),
            ms(n.delay_p99)
        );
        println!(
            "  drops queue_full={} negotiation_mismatch={}",
            n.dropped_queue_full, n.dropped_mismatch
        );
        println!(
            "  late (>40 ms in node)   {:>9.1} % of forwarded",
            100.0 * n.late_share
        );
        println!(
            "  shedding level {} at the end ({} up, {} down in the window; settled {:.1} s after warm-up)",
            n.shedding_level,
            n.shedding_up,
            n.shedding_down,
            n.settled_after.as_secs_f64()
        );
    }
}

/// Thousands separated by a thin space, as the docs write them.
fn count(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

fn mib(kib: f64) -> String {
    format!("{:.2} MiB", kib / 1024.0)
}

/// Header of the markdown table [`rows`] fills.
pub const TABLE_HEADER: &str = "| load (pub × sub × pps) | SFU | received packets/s (of offered) | SFU CPU (cores) | packets per CPU-second | one-way delay p50 / p99 | in-SFU delay p50 / p99 | memory per participant | SRTP |\n|---|---|---|---|---|---|---|---|---|";

/// Markdown rows for one load point: each outcome, then Conclave ÷ Janus when both ran.
pub fn rows(load: &Load, outcomes: &[Outcome]) -> Vec<String> {
    let name = format!("{} × {} × {}", load.publishers, load.subscribers, load.pps);
    let mut rows: Vec<String> = outcomes
        .iter()
        .map(|o| {
            let in_sfu = o.node.as_ref().map_or("n/a".into(), |n| {
                format!("{:.2} / {:.2} ms", ms(n.delay_p50), ms(n.delay_p99))
            });
            format!(
                "| {name} | {}{} | {} ({:.0} %) | {:.2} | {} | {:.1} / {:.1} ms | {in_sfu} | {} | {} |",
                o.target,
                if o.complete { "" } else { " (incomplete)" },
                count(o.delivered()),
                100.0 * o.delivered() / load.offered(),
                o.cores(),
                count(o.per_cpu_second()),
                ms(o.window.one_way_p50),
                ms(o.window.one_way_p99),
                mib(o.kib_per_participant(load)),
                o.cipher,
            )
        })
        .collect();
    let find = |t: &str| outcomes.iter().find(|o| o.target == t);
    if let (Some(c), Some(j)) = (find("conclave"), find("janus")) {
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}", a / b)
            } else {
                "–".into()
            }
        };
        let (cw, jw) = (&c.window, &j.window);
        rows.push(format!(
            "| {name} | **Conclave ÷ Janus** | {} | {} | **{}** | {} / {} | | {} | |",
            ratio(c.delivered(), j.delivered()),
            ratio(c.cores(), j.cores()),
            ratio(c.per_cpu_second(), j.per_cpu_second()),
            ratio(ms(cw.one_way_p50), ms(jw.one_way_p50)),
            ratio(ms(cw.one_way_p99), ms(jw.one_way_p99)),
            ratio(c.kib_per_participant(load), j.kib_per_participant(load)),
        ));
    }
    rows
}
