//! Whether a media node's published address reaches it: the operator sends a STUN binding
//! request to the public address and UDP port clients are given, and the node's port answers
//! (see `crate::probe`). This decides when to probe again and what the `AddressReachable`
//! condition says; a node is not Ready (so takes no conference) until its address answered.

use std::net::SocketAddr;

use super::UnixSeconds;

/// How long an answered probe stands before the address is probed again.
pub const REPROBE_ANSWERED_SECONDS: i64 = 60;
/// How soon an unanswered address is probed again.
pub const REPROBE_UNANSWERED_SECONDS: i64 = 5;

/// The last probe of one media node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeRecord {
    /// Where it went.
    pub target: SocketAddr,
    /// Whether the port answered.
    pub answered: bool,
    /// When.
    pub at: UnixSeconds,
}

/// What is known of a node's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Not probed yet (no address, no ready pod, or a new address).
    Unknown,
    /// The port answered at the published address.
    Reachable,
    /// Not probed: the operator was told not to (`--probe-media-addresses=false`).
    Assumed,
    /// It did not.
    Unreachable,
}

/// Whether to probe `target` now, given the last probe.
pub fn probe_due(last: Option<&ProbeRecord>, target: SocketAddr, now: UnixSeconds) -> bool {
    match last {
        Some(r) if r.target == target => {
            let wait = if r.answered {
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
pub fn reachability(last: Option<&ProbeRecord>, target: Option<SocketAddr>) -> Reachability {
    match (last, target) {
        (Some(r), Some(t)) if r.target == t && r.answered => Reachability::Reachable,
        (Some(r), Some(t)) if r.target == t => Reachability::Unreachable,
        _ => Reachability::Unknown,
    }
}

/// The `AddressReachable` condition: status, reason and message; None while unknown (the
/// condition keeps what it said).
pub fn condition(
    reachability: Reachability,
    target: Option<SocketAddr>,
    kube_node: Option<&str>,
) -> Option<(bool, &'static str, String)> {
    let target = target?;
    let node = kube_node.unwrap_or("its Kubernetes node");
    match reachability {
        Reachability::Unknown => None,
        Reachability::Reachable => Some((
            true,
            "ProbeAnswered",
            format!("{target}/udp answers STUN binding requests from the operator"),
        )),
        Reachability::Assumed => Some((
            true,
            "NotProbed",
            format!(
                "the operator does not probe addresses (--probe-media-addresses=false): clients are assumed to reach {target}/udp"
            ),
        )),
        Reachability::Unreachable => Some((
            false,
            "ProbeUnanswered",
            format!(
                "{target}/udp did not answer a STUN binding request from the operator: clients could not reach this media node, so it takes no conference. The address is the conclave.dev/public-ip annotation of Node {node}, else its ExternalIP, else its InternalIP; correct it, or open UDP port {} to it",
                target.port()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SocketAddr {
        "203.0.113.7:7882".parse().expect("addr")
    }

    fn record(answered: bool, at: UnixSeconds) -> ProbeRecord {
        ProbeRecord {
            target: target(),
            answered,
            at,
        }
    }

    #[test]
    fn probes_a_new_address_at_once_and_an_old_one_on_its_schedule() {
        assert!(probe_due(None, target(), 100));
        let moved: SocketAddr = "203.0.113.8:7882".parse().expect("addr");
        assert!(probe_due(Some(&record(true, 100)), moved, 101));
        assert!(!probe_due(Some(&record(true, 100)), target(), 159));
        assert!(probe_due(Some(&record(true, 100)), target(), 160));
        assert!(!probe_due(Some(&record(false, 100)), target(), 104));
        assert!(probe_due(Some(&record(false, 100)), target(), 105));
    }

    #[test]
    fn a_probe_of_another_address_says_nothing_of_this_one() {
        let moved: SocketAddr = "203.0.113.8:7882".parse().expect("addr");
        assert_eq!(
            reachability(Some(&record(true, 1)), Some(target())),
            Reachability::Reachable
        );
        assert_eq!(
            reachability(Some(&record(false, 1)), Some(target())),
            Reachability::Unreachable
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
    fn the_condition_names_the_address_and_where_it_comes_from() {
        let (ok, reason, message) =
            condition(Reachability::Unreachable, Some(target()), Some("n1")).expect("condition");
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
}
