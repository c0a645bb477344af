//! Prometheus metrics of the operator: reconciles, errors by kind, durations, placements and
//! how long conferences waited for one, scale decisions, media nodes by namespace, pool and
//! phase (removed with their pool), conferences by namespace and phase, the build, and the
//! process (`scrape`).

mod scrape;

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use conclave_crds::Conference;

use crate::state::lock;
use kube::runtime::reflector::Store;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    controller: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    namespace: String,
    pool: String,
    phase: String,
}

/// The phases media nodes are counted by.
pub const PHASES: [&str; 6] = [
    "Pending", "Starting", "Ready", "Draining", "Drained", "Failed",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
}

/// All operator metrics and their registries (`process_` metrics go unprefixed).
pub struct Metrics {
    registry: Mutex<Registry>,
    process: Registry,
    placement_delay: Histogram,
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    durations: Family<ControllerLabel, Histogram>,
    placements: Family<OutcomeLabel, Counter>,
    scale: Family<OutcomeLabel, Counter>,
    nodes: Family<PhaseLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("conclave_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let durations = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let placements = Family::<OutcomeLabel, Counter>::default();
        let scale = Family::<OutcomeLabel, Counter>::default();
        let nodes = Family::<PhaseLabel, Gauge>::default();
        // Whole seconds: creation timestamps have no finer precision.
        let placement_delay = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        let build = Family::<BuildLabel, Gauge>::default();
        build
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The operator's version", build);
        registry.register(
            "placement_delay_seconds",
            "Time from a conference being due (created, or its warm-up before startTime began) to its first placement",
            placement_delay.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles run, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors, by controller and kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            durations.clone(),
        );
        registry.register(
            "placements",
            "Placement decisions, by outcome",
            placements.clone(),
        );
        registry.register(
            "scale_decisions",
            "Autoscaler actions (add, drain, delete)",
            scale.clone(),
        );
        registry.register(
            "media_nodes",
            "Media nodes by pool and phase",
            nodes.clone(),
        );
        let mut process = Registry::default();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        process.register_collector(Box::new(scrape::Process { started }));
        Self {
            registry: Mutex::new(registry),
            process,
            placement_delay,
            reconciles,
            errors,
            durations,
            placements,
            scale,
            nodes,
        }
    }
}

impl Metrics {
    /// Starts timing a reconcile of `controller`; the returned guard records on drop.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&ControllerLabel { controller })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    /// Counts a reconcile error of `kind`.
    pub fn error(&self, controller: &'static str, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabel { controller, kind })
            .inc();
    }

    /// Counts a placement outcome (`placed`, `moved`, `no_fit`, ...).
    pub fn placement(&self, outcome: &'static str) {
        self.placements
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Records that a conference waited `seconds` for its first placement.
    pub fn placement_delay(&self, seconds: f64) {
        self.placement_delay.observe(seconds.max(0.0));
    }

    /// Counts the conferences of `store` by namespace and phase at each scrape.
    pub fn count_conferences(&self, store: Store<Conference>) {
        lock(&self.registry).register_collector(Box::new(scrape::Conferences(store)));
    }

    /// Counts `n` autoscaler actions of kind `action`.
    pub fn scale(&self, action: &'static str, n: u64) {
        if n > 0 {
            self.scale
                .get_or_create(&OutcomeLabel { outcome: action })
                .inc_by(n);
        }
    }

    /// Sets the count of the nodes of pool `pool` of `namespace` in `phase`.
    pub fn nodes(&self, namespace: &str, pool: &str, phase: &str, n: i64) {
        self.nodes
            .get_or_create(&PhaseLabel {
                namespace: namespace.to_owned(),
                pool: pool.to_owned(),
                phase: phase.to_owned(),
            })
            .set(n);
    }

    /// Removes the series of a deleted pool.
    pub fn forget_pool(&self, namespace: &str, pool: &str) {
        for phase in PHASES {
            self.nodes.remove(&PhaseLabel {
                namespace: namespace.to_owned(),
                pool: pool.to_owned(),
                phase: phase.to_owned(),
            });
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &lock(&self.registry));
        let _ = encode_registry(&mut out, &self.process);
        let _ = encode_eof(&mut out);
        out
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .durations
            .get_or_create(&ControllerLabel {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_pool_leaves_no_series() {
        let m = Metrics::default();
        m.nodes("rtc", "eu", "Ready", 2);
        m.nodes("rtc", "us", "Ready", 1);
        assert!(
            m.render().contains(
                r#"conclave_operator_media_nodes{namespace="rtc",pool="eu",phase="Ready"} 2"#
            ),
            "{}",
            m.render()
        );
        m.forget_pool("rtc", "eu");
        let out = m.render();
        assert!(!out.contains(r#"pool="eu""#), "{out}");
        assert!(out.contains(r#"pool="us""#), "{out}");
    }

    #[test]
    fn build_and_process_metrics_follow_prometheus_names() {
        let m = Metrics::default();
        m.placement_delay(0.3);
        let out = m.render();
        let build = format!(
            "conclave_operator_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        for want in [
            build.as_str(),
            "conclave_operator_placement_delay_seconds_count 1",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(out.contains(want), "{want} missing from:\n{out}");
        }
        assert_eq!(out.matches("# EOF").count(), 1, "{out}");
        assert!(out.trim_end().ends_with("# EOF"), "{out}");
    }
}
