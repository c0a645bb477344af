//! Whether a media node's published address reaches it: the operator sends a STUN binding
//! request to the public address and UDP port clients are given, and the node's port answers
//! (see `crate::probe`); with ICE-TCP, one more over a TCP connection to its TCP port. This
//! decides when to probe again and what the `AddressReachable` condition says; a node is not
//! Ready (so takes no conference) until its address answered on every port it publishes.

use std::fmt;
use std::net::SocketAddr;

use super::UnixSeconds;

/// How long an answered probe stands before the address is probed again.
pub const REPROBE_ANSWERED_SECONDS: i64 = 60;
/// How soon an unanswered address is probed again.
pub const REPROBE_UNANSWERED_SECONDS: i64 = 5;

/// Where a media node is probed: its published address with its UDP port, and its TCP port
/// when it takes ICE-TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// The published address and UDP port.
    pub udp: SocketAddr,
    /// The published address and TCP port.
    pub tcp: Option<SocketAddr>,
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/udp", self.udp)?;
        if let Some(tcp) = self.tcp {
            write!(f, " and {}/tcp", tcp.port())?;
        }
        Ok(())
    }
}

/// Which of a node's ports did not answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Its UDP port (and its TCP port, if any, answered).
    Udp,
    /// Its TCP port, while its UDP port answered.
    Tcp,
    /// Neither.
    Both,
}

impl Unanswered {
    /// What did not answer, from what did; None when everything did.
    pub fn of(udp_answered: bool, tcp_answered: bool) -> Option<Unanswered> {
        match (udp_answered, tcp_answered) {
            (true, true) => None,
            (false, true) => Some(Unanswered::Udp),
            (true, false) => Some(Unanswered::Tcp),
            (false, false) => Some(Unanswered::Both),
        }
    }
}

/// The last probe of one media node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    /// Where it went.
    pub target: ProbeTarget,
    /// What did not answer; None: everything did.
    pub unanswered: Option<Unanswered>,
    /// When.
    pub at: UnixSeconds,
}

/// What is known of a node's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Not probed yet (no address, no ready pod, or a new address).
    Unknown,
    /// Its ports answered at the published address.
    Reachable,
    /// Not probed: the operator was told not to (`--probe-media-addresses=false`).
    Assumed,
    /// Some did not.
    Unreachable(Unanswered),
}

/// Whether to probe `target` now, given the last probe.
pub fn probe_due(last: Option<&ProbeRecord>, target: ProbeTarget, now: UnixSeconds) -> bool {
    match last {
        Some(r) if r.target == target => {
            let wait = if r.unanswered.is_none() {
                REPROBE_ANSWERED_SECONDS
            } else {
                REPROBE_UNANSWERED_SECONDS
            };
            now - r.at >= wait
        }
        _ => true,
    }
}

/// What the last probe says of `target` (the address published now).
pub fn reachability(last: Option<&ProbeRecord>, target: Option<ProbeTarget>) -> Reachability {
    match (last, target) {
        (Some(r), Some(t)) if r.target == t => match r.unanswered {
            None => Reachability::Reachable,
            Some(u) => Reachability::Unreachable(u),
        },
        _ => Reachability::Unknown,
    }
}

/// The `AddressReachable` condition: status, reason and message; None while unknown (the
/// condition keeps what it said).
pub fn condition(
    reachability: Reachability,
    target: Option<ProbeTarget>,
    kube_node: Option<&str>,
) -> Option<(bool, &'static str, String)> {
    let target = target?;
    let node = kube_node.unwrap_or("its Kubernetes node");
    let origin = format!(
        "The address is the conclave.dev/public-ip annotation of Node {node}, else its ExternalIP, else its InternalIP"
    );
    match reachability {
        Reachability::Unknown => None,
        Reachability::Reachable => Some((
            true,
            "ProbeAnswered",
            format!(
                "{target} {} STUN binding requests from the operator",
                if target.tcp.is_some() {
                    "answer"
                } else {
                    "answers"
                }
            ),
        )),
        Reachability::Assumed => Some((
            true,
            "NotProbed",
            format!(
                "the operator does not probe addresses (--probe-media-addresses=false): clients are assumed to reach {target}"
            ),
        )),
        Reachability::Unreachable(Unanswered::Tcp) => {
            let tcp = target.tcp.unwrap_or(target.udp);
            Some((
                false,
                "ProbeUnanswered",
                format!(
                    "{tcp}/tcp did not answer a STUN binding request from the operator (its UDP port did): clients whose networks block UDP could not reach this media node over ICE-TCP, so it takes no conference. {origin}; open TCP port {} to it, or unset spec.mediaNode.tcpPort",
                    tcp.port()
                ),
            ))
        }
        Reachability::Unreachable(_) => Some((
            false,
            "ProbeUnanswered",
            format!(
                "{}/udp did not answer a STUN binding request from the operator: clients could not reach this media node, so it takes no conference. {origin}; correct it, or open UDP port {} to it",
                target.udp,
                target.udp.port()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ProbeTarget {
        ProbeTarget {
            udp: "203.0.113.7:7882".parse().expect("addr"),
            tcp: None,
        }
    }

    fn with_tcp() -> ProbeTarget {
        ProbeTarget {
            tcp: Some("203.0.113.7:7883".parse().expect("addr")),
            ..target()
        }
    }

    fn record(answered: bool, at: UnixSeconds) -> ProbeRecord {
        ProbeRecord {
            target: target(),
            unanswered: Unanswered::of(answered, true),
            at,
        }
    }

    #[test]
    fn probes_a_new_address_at_once_and_an_old_one_on_its_schedule() {
        assert!(probe_due(None, target(), 100));
        let moved = ProbeTarget {
            udp: "203.0.113.8:7882".parse().expect("addr"),
            tcp: None,
        };
        assert!(probe_due(Some(&record(true, 100)), moved, 101));
        assert!(
            probe_due(Some(&record(true, 100)), with_tcp(), 101),
            "a TCP port set since is probed at once"
        );
        assert!(!probe_due(Some(&record(true, 100)), target(), 159));
        assert!(probe_due(Some(&record(true, 100)), target(), 160));
        assert!(!probe_due(Some(&record(false, 100)), target(), 104));
        assert!(probe_due(Some(&record(false, 100)), target(), 105));
    }

    #[test]
    fn a_probe_of_another_address_says_nothing_of_this_one() {
        let moved = ProbeTarget {
            udp: "203.0.113.8:7882".parse().expect("addr"),
            tcp: None,
        };
        assert_eq!(
            reachability(Some(&record(true, 1)), Some(target())),
            Reachability::Reachable
        );
        assert_eq!(
            reachability(Some(&record(false, 1)), Some(target())),
            Reachability::Unreachable(Unanswered::Udp)
        );
        assert_eq!(
            reachability(Some(&record(true, 1)), Some(moved)),
            Reachability::Unknown
        );
        assert_eq!(reachability(None, Some(target())), Reachability::Unknown);
        assert_eq!(
            reachability(Some(&record(true, 1)), None),
            Reachability::Unknown
        );
    }

    #[test]
    fn every_published_port_must_answer() {
        assert_eq!(Unanswered::of(true, true), None);
        assert_eq!(Unanswered::of(true, false), Some(Unanswered::Tcp));
        assert_eq!(Unanswered::of(false, true), Some(Unanswered::Udp));
        assert_eq!(Unanswered::of(false, false), Some(Unanswered::Both));
        let tcp_silent = ProbeRecord {
            target: with_tcp(),
            unanswered: Some(Unanswered::Tcp),
            at: 1,
        };
        assert_eq!(
            reachability(Some(&tcp_silent), Some(with_tcp())),
            Reachability::Unreachable(Unanswered::Tcp)
        );
    }

    #[test]
    fn the_condition_names_the_address_and_where_it_comes_from() {
        let (ok, reason, message) = condition(
            Reachability::Unreachable(Unanswered::Udp),
            Some(target()),
            Some("n1"),
        )
        .expect("condition");
        assert!(!ok);
        assert_eq!(reason, "ProbeUnanswered");
        assert!(message.contains("203.0.113.7:7882/udp"), "{message}");
        assert!(
            message.contains("conclave.dev/public-ip annotation of Node n1"),
            "{message}"
        );
        assert!(condition(Reachability::Reachable, Some(target()), None).is_some_and(|c| c.0));
        assert_eq!(condition(Reachability::Unknown, Some(target()), None), None);
        assert_eq!(condition(Reachability::Reachable, None, None), None);
    }

    #[test]
    fn a_silent_tcp_port_is_named_with_its_fix() {
        let (ok, _, message) = condition(
            Reachability::Unreachable(Unanswered::Tcp),
            Some(with_tcp()),
            Some("n1"),
        )
        .expect("condition");
        assert!(!ok);
        assert!(message.contains("203.0.113.7:7883/tcp"), "{message}");
        assert!(
            message.contains("unset spec.mediaNode.tcpPort"),
            "{message}"
        );
        let (_, _, reached) =
            condition(Reachability::Reachable, Some(with_tcp()), None).expect("condition");
        assert_eq!(
            reached,
            "203.0.113.7:7882/udp and 7883/tcp answer STUN binding requests from the operator"
        );
    }
}
