//! Whether a media node's published address reaches it: the operator sends a STUN binding
//! request to the public address and UDP port clients are given, and the node's port answers
//! (see `crate::probe`); with ICE-TCP, one more over a TCP connection to its TCP port. This
//! decides when to probe again and what the `AddressReachable` condition says; a node is not
//! Ready (so takes no conference) until its address answered on every port it publishes.
//! A load balancer that gives a hostname is published at one of the addresses it resolves to,
//! the next one when that one does not answer.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

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

/// Which of the addresses a load balancer's hostname resolves to a media node publishes, in
/// the order IPv4 then IPv6, each ascending (the same on every pass, whatever order the
/// answers came in): the one it publishes already while the name still gives it and its probe
/// did not go unanswered (clients of its live conferences hold it); after one that went
/// unanswered, the next in that order (a name with one address per zone, of which only the
/// media node's own zone reaches it, is tried address by address until one answers);
/// otherwise the first.
pub fn host_address(
    resolved: &[IpAddr],
    published: Option<IpAddr>,
    published_unanswered: bool,
) -> Option<IpAddr> {
    let mut order = resolved.to_vec();
    order.sort_by_key(|a| (a.is_ipv6(), *a));
    order.dedup();
    let at = published.and_then(|p| order.iter().position(|a| *a == p));
    match at {
        Some(i) if published_unanswered => order.get((i + 1) % order.len()).copied(),
        Some(i) => order.get(i).copied(),
        None => order.first().copied(),
    }
}

/// Where a media node's published address comes from, for the words of its condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressOrigin {
    /// Its Kubernetes Node (annotation, ExternalIP, InternalIP): the Node's name, once known.
    KubeNode(Option<String>),
    /// The load balancer of its Service, so named; `hostname`: the name the load balancer
    /// gave, which resolved to the address.
    LoadBalancer {
        service: String,
        hostname: Option<String>,
    },
    /// Its Service, so named, has no load-balancer address yet; `unresolved`: the load
    /// balancer named a host that resolves to no address.
    AwaitingLoadBalancer {
        service: String,
        unresolved: Option<Unresolved>,
    },
}

/// A hostname a load balancer gave that resolved to no address, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    /// The name.
    pub hostname: String,
    /// What the resolver said.
    pub why: String,
}

/// The `AddressReachable` condition: status, reason and message; None while unknown (the
/// condition keeps what it said).
pub fn condition(
    reachability: Reachability,
    target: Option<ProbeTarget>,
    origin: &AddressOrigin,
) -> Option<(bool, &'static str, String)> {
    let origin = match origin {
        AddressOrigin::KubeNode(node) => format!(
            "The address is the conclave.dev/public-ip annotation of Node {}, else its ExternalIP, else its InternalIP",
            node.as_deref().unwrap_or("its Kubernetes node")
        ),
        AddressOrigin::LoadBalancer {
            service,
            hostname: None,
        } => format!(
            "The address is the one the load balancer gave Service {service} (status.loadBalancer.ingress)"
        ),
        AddressOrigin::LoadBalancer {
            service,
            hostname: Some(host),
        } => format!(
            "The address is one that {host}, the hostname the load balancer gave Service {service} (status.loadBalancer.ingress), resolves to"
        ),
        AddressOrigin::AwaitingLoadBalancer {
            service,
            unresolved,
        } => {
            return Some((
                false,
                "LoadBalancerPending",
                awaiting(service, unresolved.as_ref()),
            ));
        }
    };
    let target = target?;
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

/// Why a node whose Service awaits a load-balancer address is not reachable yet.
fn awaiting(service: &str, unresolved: Option<&Unresolved>) -> String {
    match unresolved {
        None => format!(
            "Service {service} has no load-balancer address yet (status.loadBalancer.ingress): the media node takes no conference until the cluster's load balancer gives it one"
        ),
        Some(Unresolved { hostname, why }) => format!(
            "the load balancer of Service {service} gave the hostname {hostname}, which resolves to no address ({why}): ICE candidates carry addresses, so the media node takes no conference until it resolves (the operator asks again every few seconds, through its pod's resolver or --dns-server)"
        ),
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
            &AddressOrigin::KubeNode(Some("n1".into())),
        )
        .expect("condition");
        assert!(!ok);
        assert_eq!(reason, "ProbeUnanswered");
        assert!(message.contains("203.0.113.7:7882/udp"), "{message}");
        assert!(
            message.contains("conclave.dev/public-ip annotation of Node n1"),
            "{message}"
        );
        let unnamed = AddressOrigin::KubeNode(None);
        assert!(condition(Reachability::Reachable, Some(target()), &unnamed).is_some_and(|c| c.0));
        assert_eq!(
            condition(Reachability::Unknown, Some(target()), &unnamed),
            None
        );
        assert_eq!(condition(Reachability::Reachable, None, &unnamed), None);
        let (_, _, message) = condition(
            Reachability::Unreachable(Unanswered::Udp),
            Some(target()),
            &AddressOrigin::LoadBalancer {
                service: "web-abcde".into(),
                hostname: None,
            },
        )
        .expect("condition");
        assert!(
            message.contains("the load balancer gave Service web-abcde"),
            "{message}"
        );
        let through_host = |reachability| {
            let origin = AddressOrigin::LoadBalancer {
                service: "web-abcde".into(),
                hostname: Some("lb-1.example.com".into()),
            };
            condition(reachability, Some(target()), &origin).expect("condition")
        };
        let (_, _, message) = through_host(Reachability::Reachable);
        assert!(
            message.starts_with("203.0.113.7:7882/udp answers"),
            "{message}"
        );
        let (_, _, message) = through_host(Reachability::Unreachable(Unanswered::Udp));
        assert!(
            message.contains(
                "one that lb-1.example.com, the hostname the load balancer gave Service web-abcde"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_load_balancers_hostname_is_published_at_one_stable_address() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let resolved = [ip("2001:db8::1"), ip("198.51.100.9"), ip("198.51.100.2")];
        assert_eq!(
            host_address(&resolved, None, false),
            Some(ip("198.51.100.2")),
            "the lowest IPv4 address, whatever the answers' order"
        );
        assert_eq!(
            host_address(&resolved, Some(ip("198.51.100.9")), false),
            Some(ip("198.51.100.9")),
            "the published address while the name still resolves to it"
        );
        assert_eq!(
            host_address(&resolved, Some(ip("198.51.100.5")), true),
            Some(ip("198.51.100.2")),
            "a published address the name no longer gives is replaced"
        );
        assert_eq!(
            host_address(&[ip("2001:db8::2"), ip("2001:db8::1")], None, false),
            Some(ip("2001:db8::1")),
            "IPv6 when there is nothing else"
        );
        assert_eq!(host_address(&[], Some(ip("198.51.100.9")), true), None);
    }

    #[test]
    fn an_address_of_the_name_that_does_not_answer_gives_way_to_the_next() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let resolved = [ip("2001:db8::1"), ip("198.51.100.9"), ip("198.51.100.2")];
        let next = |published: &str| host_address(&resolved, Some(ip(published)), true);
        assert_eq!(next("198.51.100.2"), Some(ip("198.51.100.9")));
        assert_eq!(next("198.51.100.9"), Some(ip("2001:db8::1")), "then IPv6");
        assert_eq!(next("2001:db8::1"), Some(ip("198.51.100.2")), "round again");
        assert_eq!(
            host_address(&[ip("198.51.100.2")], Some(ip("198.51.100.2")), true),
            Some(ip("198.51.100.2")),
            "the only address stays, saying it does not answer"
        );
    }

    #[test]
    fn a_node_awaiting_its_load_balancer_says_so() {
        let awaiting = |hostname: Option<&str>| {
            condition(
                Reachability::Unknown,
                None,
                &AddressOrigin::AwaitingLoadBalancer {
                    service: "web-abcde".into(),
                    unresolved: hostname.map(|h| Unresolved {
                        hostname: h.to_owned(),
                        why: "no address record".into(),
                    }),
                },
            )
            .expect("condition")
        };
        let (ok, reason, message) = awaiting(None);
        assert!(!ok);
        assert_eq!(reason, "LoadBalancerPending");
        assert!(
            message.contains("Service web-abcde has no load-balancer address yet"),
            "{message}"
        );
        let (_, _, message) = awaiting(Some("lb-1.example.com"));
        assert!(
            message.contains(
                "gave the hostname lb-1.example.com, which resolves to no address (no address record)"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_silent_tcp_port_is_named_with_its_fix() {
        let (ok, _, message) = condition(
            Reachability::Unreachable(Unanswered::Tcp),
            Some(with_tcp()),
            &AddressOrigin::KubeNode(Some("n1".into())),
        )
        .expect("condition");
        assert!(!ok);
        assert!(message.contains("203.0.113.7:7883/tcp"), "{message}");
        assert!(
            message.contains("unset spec.mediaNode.tcpPort"),
            "{message}"
        );
        let (_, _, reached) = condition(
            Reachability::Reachable,
            Some(with_tcp()),
            &AddressOrigin::KubeNode(None),
        )
        .expect("condition");
        assert_eq!(
            reached,
            "203.0.113.7:7882/udp and 7883/tcp answer STUN binding requests from the operator"
        );
    }
}
