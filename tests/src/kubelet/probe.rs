//! Readiness and liveness probes: what a probe checks (HTTP GET or TCP connect against the
//! pod IP) and the success/failure thresholds that turn results into a verdict.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::http;

/// Outcome of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
    /// The probe kind cannot be run by the harness (exec, gRPC, HTTPS).
    Unsupported(String),
}

/// Runs `probe` of `container` against `pod_ip`.
pub async fn run(probe: &Probe, container: &Container, pod_ip: IpAddr) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(get) = &probe.http_get {
        if get
            .scheme
            .as_deref()
            .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
        {
            return Outcome::Unsupported(
                "HTTPS probes are not supported by the harness kubelet".into(),
            );
        }
        let port = match port_number(&get.port, container) {
            Ok(port) => port,
            Err(e) => return Outcome::Failure(e),
        };
        let host = get
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(pod_ip);
        let path = get.path.as_deref().unwrap_or("/");
        let headers: Vec<(String, String)> = get
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return match http::get(SocketAddr::new(host, port), path, &headers, timeout).await {
            Ok(r) if (200..400).contains(&r.status) => Outcome::Success,
            Ok(r) => Outcome::Failure(format!("HTTP probe failed with statuscode: {}", r.status)),
            Err(e) => Outcome::Failure(e.to_string()),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = match port_number(&tcp.port, container) {
            Ok(port) => port,
            Err(e) => return Outcome::Failure(e),
        };
        let addr = SocketAddr::new(pod_ip, port);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: timeout")),
        };
    }
    Outcome::Unsupported(
        "only httpGet and tcpSocket probes are supported by the harness kubelet".into(),
    )
}

/// Resolves a probe port: a number, or the name of one of the container's ports.
fn port_number(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("container has no port named {name}"))?,
    };
    u16::try_from(number).map_err(|_| format!("probe port {number} is out of range"))
}

/// Consecutive results of one probe and the verdict they give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    successes: i32,
    failures: i32,
    /// The current verdict: passing (ready / live) or not.
    pub passing: bool,
}

impl Verdict {
    /// A verdict that starts as `passing` (liveness starts live, readiness not ready).
    pub fn starting(passing: bool) -> Verdict {
        Verdict {
            passing,
            ..Verdict::default()
        }
    }

    /// Records one result; the verdict flips after `successThreshold` successes or
    /// `failureThreshold` failures in a row (defaults 1 and 3, as in Kubernetes).
    pub fn record(&mut self, probe: &Probe, success: bool) {
        if success {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1) {
                self.passing = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3) {
                self.passing = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_the_verdict() {
        let probe = Probe {
            failure_threshold: Some(2),
            success_threshold: Some(1),
            ..Probe::default()
        };
        let mut v = Verdict::starting(false);
        v.record(&probe, true);
        assert!(v.passing);
        v.record(&probe, false);
        assert!(v.passing, "one failure is below the threshold of 2");
        v.record(&probe, true);
        v.record(&probe, false);
        assert!(v.passing, "a success in between resets the count");
        v.record(&probe, false);
        assert!(!v.passing);
    }

    #[test]
    fn named_ports_come_from_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "signaling", "containerPort": 7880}]
        }))
        .unwrap();
        assert_eq!(
            port_number(&IntOrString::String("signaling".into()), &c),
            Ok(7880)
        );
        assert_eq!(port_number(&IntOrString::Int(80), &c), Ok(80));
        assert!(port_number(&IntOrString::String("nope".into()), &c).is_err());
        assert!(port_number(&IntOrString::Int(70000), &c).is_err());
    }

    #[tokio::test]
    async fn http_probe_against_a_closed_port_fails() {
        let c = Container {
            name: "c".into(),
            ..Container::default()
        };
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"path": "/readyz", "port": 1}
        }))
        .unwrap();
        let outcome = run(&probe, &c, "127.0.0.1".parse().unwrap()).await;
        assert!(matches!(outcome, Outcome::Failure(_)), "{outcome:?}");
        let exec: Probe =
            serde_json::from_value(serde_json::json!({"exec": {"command": ["true"]}})).unwrap();
        assert!(matches!(
            run(&exec, &c, "127.0.0.1".parse().unwrap()).await,
            Outcome::Unsupported(_)
        ));
    }
}
