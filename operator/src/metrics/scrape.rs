//! Metrics computed at each scrape: conferences by namespace and phase (from the watch cache,
//! so nothing is counted twice or left behind by a deleted conference), and the operator's
//! process (CPU, resident memory, open descriptors, start time) under Prometheus's standard
//! `process_` names.

use std::time::Duration;

use conclave_crds::{Conference, ConferencePhase};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConferenceLabel {
    namespace: String,
    phase: String,
}

/// Conferences of the cache by namespace and phase; `Pending` ones wait for a node.
#[derive(Debug)]
pub struct Conferences(pub Store<Conference>);

impl Collector for Conferences {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<ConferenceLabel, Gauge>::default();
        for c in self.0.state() {
            let phase = c
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(ConferencePhase::Pending);
            family
                .get_or_create(&ConferenceLabel {
                    namespace: c.namespace().unwrap_or_default(),
                    phase: format!("{phase:?}"),
                })
                .inc();
        }
        family.encode(encoder.encode_descriptor(
            "conferences",
            "Conferences by namespace and phase (Pending: waiting for a node)",
            None,
            family.metric_type(),
        )?)
    }
}

/// The operator process, read from `/proc/self` at each scrape.
#[derive(Debug)]
pub struct Process {
    /// When the process started, seconds since the Unix epoch.
    pub started: f64,
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = cpu_time() {
            let c = ConstCounter::new(cpu.as_secs_f64());
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent",
                None,
                c.metric_type(),
            )?)?;
        }
        if let Some(bytes) = resident_bytes() {
            let g = ConstGauge::new(bytes);
            g.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size",
                None,
                g.metric_type(),
            )?)?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let g = ConstGauge::new(i64::try_from(fds.count()).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        let g = ConstGauge::new(self.started);
        g.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            None,
            g.metric_type(),
        )?)
    }
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15, in clock ticks of 1/100 s).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Resident pages of `/proc/self/statm` times the 4 KiB page.
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
