//! Reports of the scale benchmark: the machine and commit a run came from, the day's chart,
//! and Markdown tables of the day and of the operator's cost, with the goals beside them.

use serde::Serialize;

use super::cost::CostOutcome;
use super::day::DayOutcome;
use super::svg::{Series, chart};

/// Where and when a run happened.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub commit: String,
    pub cpus: usize,
    pub memory_gib: f64,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started and ended.
    pub load_before: String,
    pub load_after: String,
    pub date: String,
}

impl Machine {
    /// The machine now (load_after is filled in by [`Machine::finish`]).
    pub fn now() -> Machine {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let memory_kib: f64 = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0);
        Machine {
            commit,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            load_before: load_average(),
            load_after: String::new(),
            date: k8s_openapi::jiff::Timestamp::now().to_string(),
        }
    }

    /// Records the load at the end of the run.
    pub fn finish(&mut self) {
        self.load_after = load_average();
    }

    /// One line for a report.
    pub fn line(&self) -> String {
        format!(
            "commit `{}`, {} CPUs, {} GiB, {}; load average (1/5/15 min) {} before, {} after",
            self.commit, self.cpus, self.memory_gib, self.date, self.load_before, self.load_after
        )
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The day's chart: running and Ready media nodes, and participants (reported, reserved,
/// planned) over capacity, by hour of the simulated day.
pub fn day_chart(day: &DayOutcome) -> (String, String) {
    let t = &day.timeline;
    let capacity = f64::from(day.settings.node_participants);
    let nodes = chart(
        "Media nodes over the simulated day",
        "hour of the day",
        "media nodes",
        24.0,
        3.0,
        &[
            Series {
                name: "running (pod up)",
                colour: "#1f77b4",
                points: t.iter().map(|s| (s.t, f64::from(s.running))).collect(),
            },
            Series {
                name: "Ready",
                colour: "#2ca02c",
                points: t.iter().map(|s| (s.t, f64::from(s.ready))).collect(),
            },
            Series {
                name: "Draining",
                colour: "#ff7f0e",
                points: t.iter().map(|s| (s.t, f64::from(s.draining))).collect(),
            },
        ],
    );
    let load = chart(
        "Participants and running capacity over the simulated day",
        "hour of the day",
        "participants",
        24.0,
        3.0,
        &[
            Series {
                name: "running capacity",
                colour: "#1f77b4",
                points: t
                    .iter()
                    .map(|s| (s.t, f64::from(s.running) * capacity))
                    .collect(),
            },
            Series {
                name: "reserved (maxParticipants of placed conferences)",
                colour: "#9467bd",
                points: t.iter().map(|s| (s.t, f64::from(s.reserved))).collect(),
            },
            Series {
                name: "connected (reported by media nodes)",
                colour: "#2ca02c",
                points: t.iter().map(|s| (s.t, f64::from(s.participants))).collect(),
            },
            Series {
                name: "planned attendees",
                colour: "#aaaaaa",
                points: day
                    .planned_participants
                    .iter()
                    .map(|(h, p)| (*h, f64::from(*p)))
                    .collect(),
            },
        ],
    );
    (nodes, load)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

/// Markdown of the day.
pub fn day_markdown(
    day: &DayOutcome,
    machine: &Machine,
    heartbeat_seconds: u64,
    chart_prefix: &str,
) -> String {
    let s = &day.summary;
    let st = &day.settings;
    let minutes = |real_seconds: f64| real_seconds * st.compression() / 60.0;
    let node_start_max_s = s.node_start.max_ms / 1000.0;
    let worst_ad_hoc_wait_s = s.ad_hoc_pending_wait.max_ms / 1000.0;
    let mut m = String::new();
    m.push_str(&format!(
        "Run: {}.\n\nA day of {} conferences ({} scheduled with startTime, {} ad hoc) played in \
         {:.0} s (1 s = {:.1} min of the day). Pool: {} participants / {} rooms per media node, \
         minNodes {}, maxNodes {}, buffer {} participants, warm-up {} s, scale-down delay {} s, \
         evacuation off; {}; kwok starts a media-node pod in the configured delay, then the \
         load simulator heartbeats every {} s.\n\n",
        machine.line(),
        s.conferences,
        s.scheduled,
        s.ad_hoc,
        st.day_seconds,
        st.compression() / 60.0,
        st.node_participants,
        st.node_rooms,
        st.min_nodes,
        st.max_nodes,
        st.buffer_participants,
        st.warmup_seconds,
        st.scale_down_delay_seconds,
        if st.expected_attendance {
            "conferences of more than 6 expect 80 % of maxParticipants (expectedParticipants; \
             60–100 % come)"
        } else {
            "conferences reserve maxParticipants (no expectedParticipants; 60–100 % of those of \
             more than 6 come)"
        },
        heartbeat_seconds
    ));
    m.push_str("| figure | measured | goal |\n|---|---|---|\n");
    let rows: Vec<(String, String, String)> = vec![
        (
            "conferences placed".into(),
            format!("{} of {}", s.placed, s.conferences),
            "all".into(),
        ),
        (
            "ad hoc: create → join info, p50 / p99".into(),
            format!(
                "{:.0} ms / {:.0} ms",
                s.ad_hoc_create_to_join.p50_ms, s.ad_hoc_create_to_join.p99_ms
            ),
            String::new(),
        ),
        (
            "conferences that waited Pending for capacity (ad hoc)".into(),
            format!("{} ({})", s.waited_pending, s.ad_hoc_waited_pending),
            String::new(),
        ),
        (
            "their wait for join info, p50 / max (all; ad hoc)".into(),
            format!(
                "{:.1} s / {:.1} s; {:.1} s / {:.1} s ({:.0} min of the day)",
                s.pending_wait.p50_ms / 1000.0,
                s.pending_wait.max_ms / 1000.0,
                s.ad_hoc_pending_wait.p50_ms / 1000.0,
                worst_ad_hoc_wait_s,
                minutes(worst_ad_hoc_wait_s)
            ),
            format!(
                "ad hoc ≤ the slowest node start ({node_start_max_s:.1} s): {}",
                verdict(worst_ad_hoc_wait_s <= node_start_max_s)
            ),
        ),
        (
            "media node start (created → Ready), p50 / max".into(),
            format!(
                "{:.1} s / {:.1} s",
                s.node_start.p50_ms / 1000.0,
                s.node_start.max_ms / 1000.0
            ),
            String::new(),
        ),
        (
            "conferences interrupted by scale-down".into(),
            s.interrupted.to_string(),
            format!("0: {}", verdict(s.interrupted == 0)),
        ),
        (
            "conferences moved because their media node failed (heartbeat stale)".into(),
            s.failed_over.to_string(),
            String::new(),
        ),
        (
            "scheduled conferences with a Ready node before their start".into(),
            format!(
                "{} of {} ({:.1} %){}",
                s.scheduled_ready_before_start,
                s.scheduled,
                100.0 * s.scheduled_ready_fraction,
                late_reasons(s)
            ),
            format!("≥ 95 %: {}", verdict(s.scheduled_ready_fraction >= 0.95)),
        ),
        (
            "media nodes running, peak / mean".into(),
            format!("{} / {:.1}", s.peak_nodes, s.mean_nodes),
            String::new(),
        ),
        (
            "utilization of running capacity (connected; reserved)".into(),
            format!(
                "{:.1} %; {:.1} %",
                100.0 * s.mean_utilization,
                100.0 * s.mean_reserved_utilization
            ),
            format!("≥ 60 %: {}", verdict(s.mean_utilization >= 0.6)),
        ),
        (
            "participants beyond their media node's capacity: worst second; share of participant-time".into(),
            format!(
                "{}; {:.2} %",
                s.peak_over_capacity,
                100.0 * s.over_capacity_share
            ),
            String::new(),
        ),
        (
            "participant-hours per node-hour: autoscaled vs static fleet of the peak".into(),
            format!(
                "{:.1} vs {:.1} ({:.2}×)",
                s.participant_hours_per_node_hour,
                s.static_fleet_participant_hours_per_node_hour,
                if s.static_fleet_participant_hours_per_node_hour > 0.0 {
                    s.participant_hours_per_node_hour
                        / s.static_fleet_participant_hours_per_node_hour
                } else {
                    0.0
                }
            ),
            String::new(),
        ),
    ];
    for (a, b, c) in rows {
        m.push_str(&format!("| {a} | {b} | {c} |\n"));
    }
    if !s.interruptions.is_empty() {
        m.push_str("\nInterruptions (first 20):\n\n");
        for i in &s.interruptions {
            m.push_str(&format!("- {i}\n"));
        }
    }
    m.push_str(&format!(
        "\n![media nodes]({chart_prefix}-nodes.svg)\n\n![participants]({chart_prefix}-load.svg)\n"
    ));
    m
}

/// Why the late scheduled conferences were late: the Placed reason each last showed before
/// join info (", late: Full 12, NotYetDue 3"), or nothing when none was late.
fn late_reasons(s: &super::summary::DaySummary) -> String {
    if s.late_by_reason.is_empty() {
        return String::new();
    }
    let reasons: Vec<String> = s
        .late_by_reason
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    format!(
        "; late, by last reason before join info: {}",
        reasons.join(", ")
    )
}

/// Markdown of the operator's cost.
pub fn cost_markdown(c: &CostOutcome, machine: &Machine, heartbeat_seconds: u64) -> String {
    let st = &c.settings;
    let p = &c.placement;
    let mut m = format!(
        "Run: {}.\n\n{} media nodes on {} kwok Nodes, every one heartbeating every {} s through the \
         load simulator; {} conferences of {} participants, the first {} offered at {}/s, the rest as fast \
         as {} create requests in flight allow.\n\n",
        machine.line(),
        st.media_nodes,
        st.media_nodes,
        heartbeat_seconds,
        st.conferences,
        st.participants,
        st.steady_count,
        st.steady_rate,
        st.in_flight
    );
    m.push_str("| figure | measured | goal |\n|---|---|---|\n");
    let ceiling = &c.ceiling;
    let rows: [(&str, String, String); 13] = [
        (
            "operator resident memory: nodes Ready / after placements / steady / peak",
            format!(
                "{:.0} / {:.0} / {:.0} / {:.0} MiB",
                c.rss_mib_nodes_ready,
                c.rss_mib_after_placements,
                c.rss_mib_after_steady,
                c.rss_mib_peak
            ),
            format!("< 200 MB: {}", verdict(c.rss_mib_peak * 1.048_576 < 200.0)),
        ),
        (
            "media nodes not Ready after the run (failed heartbeats)",
            c.media_nodes_not_ready.to_string(),
            "0".into(),
        ),
        (
            "pool created → all media nodes Ready",
            format!("{:.0} s", c.nodes_ready_seconds),
            String::new(),
        ),
        (
            "conferences placed, double placements, over-committed nodes",
            format!(
                "{} of {}, {}, {}",
                p.placed + c.steady.placed,
                p.created + c.steady.created,
                p.double_placements + c.steady.double_placements,
                p.over_committed_nodes
                    .len()
                    .max(c.steady.over_committed_nodes.len())
            ),
            "all, 0, 0".into(),
        ),
        (
            "offered 100/s: create → join p50 / p99",
            format!(
                "{} conferences at {:.0}/s: {:.0} ms / {:.0} ms",
                c.steady.placed,
                c.settings.steady_rate,
                c.steady.create_to_join.p50_ms,
                c.steady.create_to_join.p99_ms
            ),
            format!(
                "p99 < 50 ms: {}",
                verdict(c.steady.create_to_join.p99_ms < 50.0)
            ),
        ),
        (
            "the same load answered by an operator that costs nothing (a watch writing each \
             placement at once; no operator), same run: create → join p50 / p99",
            format!(
                "{:.0} ms / {:.0} ms; the operator's p99 is {:.1}× this floor's",
                c.floor.create_to_join.p50_ms,
                c.floor.create_to_join.p99_ms,
                c.steady.create_to_join.p99_ms / c.floor.create_to_join.p99_ms.max(1e-9)
            ),
            String::new(),
        ),
        (
            "API server ceiling for the writes a placement brings (create, status apply, \
             participant report; no operator), same run",
            format!(
                "{:.0} placements/s ({:.0} writes/s, {} per placement; {} of {} written, p99 {:.0} ms)",
                ceiling.placements_per_second,
                ceiling.writes_per_second,
                ceiling.writes_per_placement,
                ceiling.conferences,
                ceiling.conferences + ceiling.errors,
                ceiling.latency.p99_ms
            ),
            String::new(),
        ),
        (
            "placement rate (as fast as offered), create → join p50 / p99",
            format!(
                "{:.0} /s = {:.2} of the ceiling, {:.0} ms / {:.0} ms",
                p.placements_per_second,
                c.share_of_ceiling,
                p.create_to_join.p50_ms,
                p.create_to_join.p99_ms
            ),
            format!(
                "≥ 0.8 of the ceiling: {}",
                verdict(c.share_of_ceiling >= 0.8)
            ),
        ),
        (
            "operator CPU per 1,000 placements (heartbeats included)",
            format!("{:.2} CPU-s", c.cpu_seconds_per_1000_placements),
            String::new(),
        ),
        (
            "operator CPU with only heartbeats arriving",
            format!(
                "{:.3} cores at {:.0} heartbeats/s",
                c.steady_cpu_cores, c.steady_heartbeats_per_second
            ),
            String::new(),
        ),
        (
            "API server requests with only heartbeats arriving (of them MediaNode status writes)",
            format!(
                "{:.0}/s ({:.0}/s)",
                c.steady_api_requests_per_second, c.steady_medianode_status_writes_per_second
            ),
            String::new(),
        ),
        (
            "operator API requests per placement",
            format!(
                "{:.2} ({:.0} of {:.0} requests for Conclave objects and Events; the rest were \
                 the simulator's {:.0} and the load generator's {:.0})",
                c.api.operator_per_placement,
                c.api.operator,
                c.api.total,
                c.api.simulator,
                c.api.load_generator
            ),
            String::new(),
        ),
        (
            "restarted operator: start → a new conference has join info",
            format!(
                "{:.1} s (then {:.0} MiB)",
                c.restart_to_placement_seconds, c.rss_mib_after_restart
            ),
            String::new(),
        ),
    ];
    for (a, b, g) in rows {
        m.push_str(&format!("| {a} | {b} | {g} |\n"));
    }
    m.push_str(
        "\nAPI requests during the placements, all clients:\n\n| request | count |\n|---|---|\n",
    );
    for (what, n) in &c.api.breakdown {
        m.push_str(&format!("| {what} | {n:.0} |\n"));
    }
    m
}
