//! The words of a pool's conditions: UpToDate, Ready, Heartbeats, TurnPeers, TurnTLS,
//! SignalingTLS and Reconciled, each from plain facts, with typed reasons. `pool_step` puts
//! them in the pool controller's step.

use std::net::IpAddr;

use conclave_crds::labels::condition;

use super::rollout::{Hold, RolloutPlan, RolloutPolicy};
use super::stall::Stall;
use super::turn_peers::{PeerPolicy, suggested_range};

/// Why a pool condition has its status; `as_str` is the condition's CamelCase reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolReason {
    /// UpToDate: every media node runs the current pod template.
    AllNodesUpdated,
    /// UpToDate: older nodes are being replaced.
    RollingUpdate,
    /// UpToDate: older nodes are left and something holds their replacement up.
    RolloutBlocked,
    /// Ready: a media node takes conferences.
    CapacityAvailable,
    /// Ready: none does.
    NoReadyNodes,
    /// Heartbeats: they arrive.
    Current,
    /// Heartbeats: most stopped at once.
    Stalled,
    /// TurnPeers: the relays may reach every media node.
    MediaNodesAllowed,
    /// TurnPeers: the relays refuse some media node's address.
    MediaNodeAddressRefused,
    /// TurnTLS, SignalingTLS: the Secret can be served.
    CertificateValid,
    /// TurnTLS, SignalingTLS: it cannot.
    CertificateInvalid,
    /// Reconciled: the spec cannot run.
    InvalidSpec,
    /// Reconciled: the pool's Secret is missing or incomplete.
    SecretMissing,
    /// Reconciled: everything is in place.
    Applied,
}

impl PoolReason {
    /// The reason as written in the condition.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolReason::AllNodesUpdated => "AllNodesUpdated",
            PoolReason::RollingUpdate => "RollingUpdate",
            PoolReason::RolloutBlocked => "RolloutBlocked",
            PoolReason::CapacityAvailable => "CapacityAvailable",
            PoolReason::NoReadyNodes => "NoReadyNodes",
            PoolReason::Current => "Current",
            PoolReason::Stalled => "Stalled",
            PoolReason::MediaNodesAllowed => "MediaNodesAllowed",
            PoolReason::MediaNodeAddressRefused => "MediaNodeAddressRefused",
            PoolReason::CertificateValid => "CertificateValid",
            PoolReason::CertificateInvalid => "CertificateInvalid",
            PoolReason::InvalidSpec => "InvalidSpec",
            PoolReason::SecretMissing => "SecretMissing",
            PoolReason::Applied => "Applied",
        }
    }
}

/// One condition to set on the pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolCondition {
    /// Its type (`labels::condition`).
    pub type_: &'static str,
    /// Its status.
    pub ok: bool,
    /// Why.
    pub reason: PoolReason,
    /// What an operator reads.
    pub message: String,
}

fn set(type_: &'static str, ok: bool, reason: PoolReason, message: String) -> PoolCondition {
    PoolCondition {
        type_,
        ok,
        reason,
        message,
    }
}

/// The relays' TLS (`spec.turn.tls`), once its Secret was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayTls {
    /// The Secret can be served for the relays' host: the hash of its certificate.
    Serving(String),
    /// What is wrong with the Secret.
    Refused(String),
}

/// The media nodes' TLS signaling (`spec.signaling`), once its Secret was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignalingTls {
    /// `spec.signaling.tlsSecretName`.
    pub secret_name: String,
    /// `spec.signaling.domain`.
    pub domain: String,
    /// What keeps the Secret from being served, if anything.
    pub problem: Option<String>,
}

/// A media node's published address, for the relays' peer policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedAddress {
    /// The MediaNode.
    pub node: String,
    /// Its public address.
    pub ip: IpAddr,
}

/// What the TurnPeers condition looks at, for a pool with TURN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnPeers {
    /// `spec.turn.allowedPeers`.
    pub allowed: Vec<String>,
    /// `spec.turn.allowLoopbackPeers`.
    pub allow_loopback: bool,
    /// The pool's media nodes with a published address.
    pub addresses: Vec<PublishedAddress>,
}

/// UpToDate: True once no media node of an older pod template is left (`left`, the drained
/// ones included); otherwise the rollout's progress and what holds it up.
pub fn up_to_date(
    left: usize,
    rollout: &RolloutPlan,
    policy: RolloutPolicy,
    max_nodes: u32,
) -> PoolCondition {
    let up_to_date = |ok, reason, message| set(condition::UP_TO_DATE, ok, reason, message);
    if left == 0 {
        return up_to_date(
            true,
            PoolReason::AllNodesUpdated,
            "every media node runs the pool's current pod template".to_owned(),
        );
    }
    let progress = format!(
        "{} media nodes run the current pod template, {} older ones are to be replaced and {} are draining (maxSurge {}, maxUnavailable {})",
        rollout.updated,
        rollout.outdated,
        left.saturating_sub(rollout.outdated as usize),
        policy.max_surge,
        policy.max_unavailable
    );
    let held = match &rollout.hold {
        None => return up_to_date(false, PoolReason::RollingUpdate, progress),
        Some(Hold::NewNodeNotReady { node, seconds }) => format!(
            "new media node {node} is not Ready after {seconds} s: see its Healthy condition and its pod's events; with hostNetwork a new node needs a Kubernetes node where the pool's ports are free: add one, or set spec.rollout.maxSurge: 0 and spec.rollout.maxUnavailable: 1 to replace nodes in place"
        ),
        Some(Hold::Blocked {
            at_max_nodes: true, ..
        }) => format!(
            "spec.scaling.maxNodes ({max_nodes}) leaves no room for a new node and spec.rollout.maxUnavailable is {}: raise spec.scaling.maxNodes, or set spec.rollout.maxUnavailable: 1 to drain a node before its replacement is Ready",
            policy.max_unavailable
        ),
        Some(Hold::Blocked {
            node,
            participants,
            free,
            ..
        }) => format!(
            "media node {node} carries {participants} participants and the other Ready nodes have room for {free}: raise spec.rollout.maxSurge to add nodes first; otherwise the rollout goes on as conferences end"
        ),
    };
    up_to_date(
        false,
        PoolReason::RolloutBlocked,
        format!("{progress}; held up: {held}"),
    )
}

/// Ready: True while a media node is Ready; says how many are and how much room is free.
pub fn ready(ready_nodes: u32, nodes: u32, free_participants: u32) -> PoolCondition {
    let ok = ready_nodes > 0;
    set(
        condition::READY,
        ok,
        if ok {
            PoolReason::CapacityAvailable
        } else {
            PoolReason::NoReadyNodes
        },
        format!(
            "{ready_nodes} of {nodes} media nodes Ready, {free_participants} participants of capacity free"
        ),
    )
}

/// Heartbeats: False while most media nodes stopped heartbeating at once (`stall`).
pub fn heartbeats(stall: Option<Stall>) -> PoolCondition {
    match stall {
        None => set(
            condition::HEARTBEATS,
            true,
            PoolReason::Current,
            "media nodes heartbeat; one that stops is failed and its conferences move".to_owned(),
        ),
        Some(s) => set(
            condition::HEARTBEATS,
            false,
            PoolReason::Stalled,
            format!(
                "{} of {} media nodes stopped heartbeating at once: treated as a control-plane problem (an overloaded or unreachable API server), so none is failed for it and no conference moves until heartbeats resume; a media-node pod that fails or goes away is still failed over",
                s.stale, s.heartbeating
            ),
        ),
    }
}

/// TurnPeers: whether the relays may forward to every media node's published address under
/// the pool's peer policy (`decide::turn_peers`).
pub fn turn_peers(peers: &TurnPeers) -> PoolCondition {
    let policy = PeerPolicy {
        allowed: &peers.allowed,
        allow_loopback: peers.allow_loopback,
    };
    let refused: Vec<String> = peers
        .addresses
        .iter()
        .filter_map(|a| {
            let kind = policy.refuses(a.ip)?;
            Some(format!(
                "{} at {} ({kind} address; allow {})",
                a.node,
                a.ip,
                suggested_range(a.ip)
            ))
        })
        .collect();
    if refused.is_empty() {
        set(
            condition::TURN_PEERS,
            true,
            PoolReason::MediaNodesAllowed,
            "the relays may forward to every media node's address; other private, loopback and link-local peers are refused".to_owned(),
        )
    } else {
        set(
            condition::TURN_PEERS,
            false,
            PoolReason::MediaNodeAddressRefused,
            format!(
                "the TURN relays refuse to forward to media nodes {}: add their ranges to spec.turn.allowedPeers, or clients that need TURN cannot reach them",
                refused.join(", ")
            ),
        )
    }
}

/// TurnTLS: True when the relays serve the Secret's certificate, False with its problem.
pub fn relay_certificate(tls: &RelayTls) -> PoolCondition {
    certificate(
        condition::TURN_TLS,
        match tls {
            RelayTls::Serving(_) => {
                Ok("the relays serve TURN over TLS with the Secret's certificate".to_owned())
            }
            RelayTls::Refused(problem) => Err(format!(
                "{problem}; the relays run without TLS until it is fixed"
            )),
        },
    )
}

/// SignalingTLS: True when the media nodes can serve the Secret, False with its problem.
pub fn signaling_certificate(tls: &SignalingTls) -> PoolCondition {
    certificate(
        condition::SIGNALING_TLS,
        match &tls.problem {
            None => Ok(format!(
                "Secret {} holds a certificate for *.{}; media nodes serve https and wss",
                tls.secret_name, tls.domain
            )),
            Some(problem) => Err(problem.clone()),
        },
    )
}

fn certificate(type_: &'static str, served: Result<String, String>) -> PoolCondition {
    match served {
        Ok(serves) => set(type_, true, PoolReason::CertificateValid, serves),
        Err(problem) => set(type_, false, PoolReason::CertificateInvalid, problem),
    }
}

/// Reconciled: False while the spec cannot run (that first) or the Secret is missing.
pub fn reconciled(spec_problems: &[String], secret_problem: Option<&str>) -> PoolCondition {
    let reconciled = |ok, reason, message| set(condition::RECONCILED, ok, reason, message);
    match (secret_problem, spec_problems.is_empty()) {
        (_, false) => reconciled(
            false,
            PoolReason::InvalidSpec,
            format!(
                "no media nodes or TURN relays are created until the spec is fixed: {}",
                spec_problems.join("; ")
            ),
        ),
        (Some(problem), true) => reconciled(false, PoolReason::SecretMissing, problem.to_owned()),
        (None, true) => reconciled(
            true,
            PoolReason::Applied,
            "the pool's Secret, media nodes and TURN relays are in place".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RolloutPolicy = RolloutPolicy {
        max_surge: 1,
        max_unavailable: 0,
    };

    fn rollout(hold: Option<Hold>) -> RolloutPlan {
        RolloutPlan {
            add: 0,
            drain: Vec::new(),
            updated: 2,
            outdated: 1,
            hold,
        }
    }

    #[test]
    fn up_to_date_says_progress_and_what_holds_it_up() {
        let c = up_to_date(0, &rollout(None), POLICY, 5);
        assert_eq!(
            (c.ok, c.reason.as_str()),
            (true, "AllNodesUpdated"),
            "{c:?}"
        );
        let progress = "2 media nodes run the current pod template, 1 older ones are to be replaced and 2 are draining (maxSurge 1, maxUnavailable 0)";
        let c = up_to_date(3, &rollout(None), POLICY, 5);
        assert_eq!((c.ok, c.reason), (false, PoolReason::RollingUpdate));
        assert_eq!(c.message, progress);
        for (hold, says) in [
            (
                Hold::NewNodeNotReady {
                    node: "n9".into(),
                    seconds: 130,
                },
                "new media node n9 is not Ready after 130 s",
            ),
            (
                Hold::Blocked {
                    node: "n1".into(),
                    participants: 12,
                    free: 4,
                    at_max_nodes: true,
                },
                "spec.scaling.maxNodes (5) leaves no room for a new node and spec.rollout.maxUnavailable is 0",
            ),
            (
                Hold::Blocked {
                    node: "n1".into(),
                    participants: 12,
                    free: 4,
                    at_max_nodes: false,
                },
                "media node n1 carries 12 participants and the other Ready nodes have room for 4",
            ),
        ] {
            let c = up_to_date(3, &rollout(Some(hold)), POLICY, 5);
            assert_eq!((c.ok, c.reason), (false, PoolReason::RolloutBlocked));
            assert!(
                c.message
                    .starts_with(&format!("{progress}; held up: {says}")),
                "{}",
                c.message
            );
        }
    }

    #[test]
    fn turn_peers_names_each_refused_node_and_the_range_to_allow() {
        let peers = |allowed: &[&str], ips: &[(&str, &str)]| TurnPeers {
            allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
            allow_loopback: false,
            addresses: ips
                .iter()
                .map(|(node, ip)| PublishedAddress {
                    node: (*node).to_owned(),
                    ip: ip.parse().unwrap(),
                })
                .collect(),
        };
        let public = turn_peers(&peers(&[], &[("n1", "203.0.113.5")]));
        assert_eq!(
            (public.ok, public.reason),
            (true, PoolReason::MediaNodesAllowed)
        );
        let private = turn_peers(&peers(&[], &[("n1", "203.0.113.5"), ("n2", "10.1.2.3")]));
        assert_eq!(
            (private.ok, private.reason.as_str()),
            (false, "MediaNodeAddressRefused")
        );
        assert!(
            private
                .message
                .starts_with("the TURN relays refuse to forward to media nodes n2 at 10.1.2.3 (")
                && private.message.contains("allow 10.1.2.0/24)")
                && !private.message.contains("n1"),
            "{}",
            private.message
        );
        let allowed = turn_peers(&peers(&["10.1.0.0/16"], &[("n2", "10.1.2.3")]));
        assert!(allowed.ok, "{allowed:?}");
    }

    #[test]
    fn every_reason_reads_as_its_name() {
        use PoolReason::*;
        for reason in [
            AllNodesUpdated,
            RollingUpdate,
            RolloutBlocked,
            CapacityAvailable,
            NoReadyNodes,
            Current,
            Stalled,
            MediaNodesAllowed,
            MediaNodeAddressRefused,
            CertificateValid,
            CertificateInvalid,
            InvalidSpec,
            SecretMissing,
            Applied,
        ] {
            assert_eq!(reason.as_str(), format!("{reason:?}"));
        }
    }
}
