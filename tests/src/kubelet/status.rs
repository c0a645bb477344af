//! The pod status the kubelet reports, built from its records: phase, conditions (with
//! stable transition times), pod and host IPs, and one status per container. No I/O.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::container::{ContainerRecord, State, Termination};

/// Everything the kubelet knows about one pod it runs.
#[derive(Debug, Clone)]
pub struct PodRecord {
    pub containers: Vec<ContainerRecord>,
    pub start_time: Timestamp,
    /// A pod-level failure (reason, message) such as `ImageNotRunnable`.
    pub failure: Option<(String, String)>,
    /// Condition type → (status, last transition time).
    transitions: BTreeMap<String, (bool, Timestamp)>,
}

impl PodRecord {
    /// A record for a pod first seen at `now`.
    pub fn new(containers: Vec<ContainerRecord>, now: Timestamp) -> Self {
        PodRecord {
            containers,
            start_time: now,
            failure: None,
            transitions: BTreeMap::new(),
        }
    }

    /// The pod's phase.
    pub fn phase(&self) -> &'static str {
        if self.failure.is_some() {
            return "Failed";
        }
        if !self.containers.is_empty() && self.containers.iter().all(ContainerRecord::done) {
            let all_zero = self
                .containers
                .iter()
                .all(|c| matches!(&c.state, State::Terminated(t) if t.exit.code == 0));
            return if all_zero { "Succeeded" } else { "Failed" };
        }
        if self.containers.iter().any(|c| c.starts > 0) {
            return "Running";
        }
        "Pending"
    }

    /// The status to report for `pod`, which runs on a Node with `address`, at `now`.
    pub fn status(&mut self, pod: &Pod, address: Ipv4Addr, now: Timestamp) -> PodStatus {
        let phase = self.phase();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let unready: Vec<&str> = self
            .containers
            .iter()
            .filter(|c| !c.ready())
            .map(|c| c.name.as_str())
            .collect();
        let containers_ready = unready.is_empty() && !terminal;
        let gates_pending = readiness_gates_pending(pod);
        let not_ready_reason = if terminal {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        let unready_message = format!("containers with unready status: [{}]", unready.join(" "));
        let conditions = vec![
            self.condition("PodReadyToStartContainers", true, None, now),
            self.condition("Initialized", true, None, now),
            self.condition(
                "Ready",
                containers_ready && gates_pending.is_empty(),
                Some(match (containers_ready, gates_pending.is_empty()) {
                    (false, _) => (not_ready_reason, unready_message.clone()),
                    (true, _) => ("ReadinessGatesNotReady", format!("corresponding condition of pod readiness gate {:?} does not exist or is not True", gates_pending)),
                }),
                now,
            ),
            self.condition("ContainersReady", containers_ready, Some((not_ready_reason, unready_message)), now),
            self.condition("PodScheduled", true, None, now),
        ];
        let ip = address.to_string();
        PodStatus {
            phase: Some(phase.into()),
            reason: self.failure.as_ref().map(|(reason, _)| reason.clone()),
            message: self.failure.as_ref().map(|(_, message)| message.clone()),
            conditions: Some(conditions),
            host_ip: Some(ip.clone()),
            host_ips: Some(vec![HostIP { ip: ip.clone() }]),
            pod_ip: Some(ip.clone()),
            pod_ips: Some(vec![PodIP { ip }]),
            start_time: Some(Time(self.start_time)),
            container_statuses: Some(self.containers.iter().map(container_status).collect()),
            ..PodStatus::default()
        }
    }

    /// A condition whose transition time changes only when its status does. `unmet` gives
    /// the reason and message shown while it is False.
    fn condition(
        &mut self,
        kind: &str,
        status: bool,
        unmet: Option<(&str, String)>,
        now: Timestamp,
    ) -> PodCondition {
        let entry = self
            .transitions
            .entry(kind.to_owned())
            .or_insert((status, now));
        if entry.0 != status {
            *entry = (status, now);
        }
        let (reason, message) = match unmet {
            Some((reason, message)) if !status => (Some(reason.to_owned()), Some(message)),
            _ => (None, None),
        };
        PodCondition {
            type_: kind.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            last_transition_time: Some(Time(entry.1)),
            reason,
            message,
            ..PodCondition::default()
        }
    }
}

/// Readiness gates of `pod` whose condition is not True.
fn readiness_gates_pending(pod: &Pod) -> Vec<String> {
    let spec_gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    spec_gates
        .into_iter()
        .flatten()
        .filter(|gate| {
            !conditions
                .into_iter()
                .flatten()
                .any(|c| c.type_ == gate.condition_type && c.status == "True")
        })
        .map(|gate| gate.condition_type.clone())
        .collect()
}

fn container_status(c: &ContainerRecord) -> ContainerStatus {
    let container_id = match &c.state {
        State::Running { pid, .. } => Some(container_id(*pid)),
        State::Terminated(t) => Some(container_id(t.pid)),
        State::Waiting { .. } => None,
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: String::new(),
        container_id,
        ready: c.ready(),
        started: Some(c.pid().is_some()),
        restart_count: c.restart_count,
        state: Some(state(&c.state)),
        last_state: c.last_termination.as_ref().map(|t| ContainerState {
            terminated: Some(terminated(t)),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    }
}

/// The container ID the harness reports: the process id of the container's process.
pub fn container_id(pid: u32) -> String {
    format!("harness://{pid}")
}

fn state(state: &State) -> ContainerState {
    match state {
        State::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        State::Running { since, .. } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*since)),
            }),
            ..ContainerState::default()
        },
        State::Terminated(t) => ContainerState {
            terminated: Some(terminated(t)),
            ..ContainerState::default()
        },
    }
}

fn terminated(t: &Termination) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit.code,
        signal: t.exit.signal,
        reason: Some(t.reason.clone()),
        started_at: Some(Time(t.started_at)),
        finished_at: Some(Time(t.finished_at)),
        container_id: Some(container_id(t.pid)),
        ..ContainerStateTerminated::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::process::Exit;
    use std::time::Instant;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}
        }))
        .unwrap()
    }

    fn cond<'a>(s: &'a PodStatus, kind: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == kind)
            .unwrap()
    }

    #[test]
    fn phase_follows_the_containers() {
        let (t0, now) = (Instant::now(), Timestamp::now());
        let addr = Ipv4Addr::new(127, 0, 0, 2);
        let mut r = PodRecord::new(
            vec![
                ContainerRecord::new("a", "i", false, t0),
                ContainerRecord::new("b", "i", true, t0),
            ],
            now,
        );
        assert_eq!(r.phase(), "Pending");
        r.containers[0].started(1, now, t0);
        r.containers[1].started(2, now, t0);
        let s = r.status(&pod(), addr, now);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("127.0.0.2"));
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [b]")
        );
        assert_eq!(
            s.container_statuses.as_ref().unwrap()[0]
                .container_id
                .as_deref(),
            Some("harness://1")
        );

        r.containers[1].readiness.as_mut().unwrap().passing = true;
        let later = now + k8s_openapi::jiff::SignedDuration::from_secs(5);
        let s = r.status(&pod(), addr, later);
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Ready").last_transition_time, Some(Time(later)));
        assert_eq!(
            cond(&s, "PodScheduled").last_transition_time,
            Some(Time(now)),
            "unchanged condition keeps its time"
        );

        r.containers[0].exited(
            Exit {
                code: 0,
                signal: None,
            },
            false,
            now,
            t0,
        );
        r.containers[1].exited(
            Exit {
                code: 3,
                signal: None,
            },
            false,
            now,
            t0,
        );
        let s = r.status(&pod(), addr, now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let b = &s.container_statuses.as_ref().unwrap()[1];
        assert_eq!(
            b.state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            3
        );
    }

    #[test]
    fn pod_failure_wins() {
        let mut r = PodRecord::new(
            vec![ContainerRecord::new("a", "nginx", false, Instant::now())],
            Timestamp::now(),
        );
        r.failure = Some(("ImageNotRunnable".into(), "image nginx".into()));
        let s = r.status(&pod(), Ipv4Addr::LOCALHOST, Timestamp::now());
        assert_eq!(
            (s.phase.as_deref(), s.reason.as_deref()),
            (Some("Failed"), Some("ImageNotRunnable"))
        );
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut p = pod();
        p.spec.as_mut().unwrap().readiness_gates =
            Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
                condition_type: "x/ok".into(),
            }]);
        assert_eq!(readiness_gates_pending(&p), vec!["x/ok".to_owned()]);
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "x/ok".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(readiness_gates_pending(&p).is_empty());
    }
}
