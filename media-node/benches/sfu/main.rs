//! SFU forwarding benchmark: N publishers × M subscribers on loopback through an SFU running as
//! its own process, so its CPU and memory are measured apart from the clients'. The SFU is the
//! Conclave media node, Janus's VideoRoom (Debian's `janus`), or both one after the other under
//! the same load, driven by the same webrtc-crate clients. Reports packets received per second
//! and per CPU-second of the SFU, one-way delay publisher to receiver (p50/p99), the node's
//! own forwarding delay (Conclave only), and memory per participant.
//!
//! `cargo bench -p conclave-media-node --bench sfu -- [publishers] [subscribers] [pps] [seconds]
//! [conclave|janus|both|ceiling]`; `SFU_BENCH_NODE_CPUS` pins the SFU process (a taskset CPU
//! list). `ceiling` runs the bare forwarder instead (see `ceiling`). With
//! `SFU_BENCH_NODE_SHARE=half` the SFU process gets half a CPU (a cgroup CPU quota), to push
//! it past saturation while the clients still keep up (overload behaviour).

mod bridge;
mod ceiling;
mod conclave;
mod janus;
mod janus_api;
mod load;
mod quota;
mod report;

use load::Load;

fn main() -> anyhow::Result<()> {
    if std::env::var_os("SFU_BENCH_NODE").is_some() {
        conclave::node_process();
        return Ok(());
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let load = Load {
        publishers: arg(0, 2) as usize,
        subscribers: arg(1, 8) as usize,
        pps: arg(2, 300) as u32,
        seconds: arg(3, 10),
    };
    let targets: &[&str] = match args.get(4).map(String::as_str) {
        None | Some("conclave") => &["conclave"],
        Some("janus") => &["janus"],
        Some("both") => &["conclave", "janus"],
        Some("ceiling") => {
            let cpu = std::env::var("SFU_BENCH_NODE_CPUS")
                .ok()
                .and_then(|c| c.split([',', '-']).next()?.parse().ok());
            let c = ceiling::run(&load, cpu)?;
            println!(
                "sfu-bench target=ceiling publishers={} subscribers={} pps_per_publisher={} seconds={} forwarded_per_second={:.0} delivered={:.3} packets_per_cpu_second={:.0}",
                load.publishers,
                load.subscribers,
                load.pps,
                load.seconds,
                c.forwarded_per_second,
                c.delivered,
                c.per_cpu_second
            );
            return Ok(());
        }
        Some(other) => anyhow::bail!("unknown target {other:?}: conclave, janus, both or ceiling"),
    };
    let cpus = std::env::var("SFU_BENCH_NODE_CPUS").ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut outcomes = Vec::new();
        for target in targets {
            let outcome = match *target {
                "janus" => janus::run(&load, cpus.as_deref()).await,
                _ => conclave::run(&load, cpus.as_deref()).await,
            };
            // A failed SFU is reported and the other still runs.
            match outcome {
                Ok(outcome) => {
                    report::print(&load, &outcome);
                    outcomes.push(outcome);
                }
                Err(e) => println!("sfu-bench target={target} FAILED: {e:#}"),
            }
        }
        println!("{}", report::TABLE_HEADER);
        for row in report::rows(&load, &outcomes) {
            println!("{row}");
        }
    });
    Ok(())
}
