//! Disruptions the cluster asks for, which a media node answers by draining: its pod is being
//! deleted (SIGTERM is on its way), or its Kubernetes node is cordoned (`kubectl drain`) or
//! marked for removal by a node autoscaler. Draining moves its conferences off at the pool's
//! evacuation rate; the pool's PodDisruptionBudget refuses evictions until then, and the pod's
//! grace period covers the drain.

/// Taints that announce a Kubernetes node's removal: `kubectl cordon` (the node lifecycle
/// controller mirrors `spec.unschedulable` as this taint), Cluster Autoscaler's and
/// Karpenter's.
pub const REMOVAL_TAINTS: [&str; 3] = [
    "node.kubernetes.io/unschedulable",
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
];

/// What the node controller observed of a media node's pod and Kubernetes node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisruptionObservation {
    /// The pod has a deletion timestamp.
    pub pod_terminating: bool,
    /// `spec.unschedulable` of the Kubernetes node the pod runs on.
    pub node_unschedulable: bool,
    /// Keys of the NoSchedule and NoExecute taints of that node.
    pub node_taints: Vec<String>,
}

/// Why a media node drains without the autoscaler asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainCause {
    /// Its pod is being deleted.
    PodTerminating,
    /// Its Kubernetes node is cordoned or about to be removed.
    NodeLeaving,
}

impl DrainCause {
    /// The reason of the Event the operator records.
    pub fn reason(self) -> &'static str {
        match self {
            Self::PodTerminating => "PodTerminating",
            Self::NodeLeaving => "KubernetesNodeLeaving",
        }
    }
}

/// Whether (and why) the media node must drain.
pub fn drain_cause(o: &DisruptionObservation) -> Option<DrainCause> {
    if o.pod_terminating {
        return Some(DrainCause::PodTerminating);
    }
    let leaving = o.node_unschedulable
        || o.node_taints
            .iter()
            .any(|t| REMOVAL_TAINTS.contains(&t.as_str()));
    leaving.then_some(DrainCause::NodeLeaving)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_pod_on_a_schedulable_node_stays() {
        assert_eq!(drain_cause(&DisruptionObservation::default()), None);
        let tainted = DisruptionObservation {
            node_taints: vec!["dedicated".into()],
            ..Default::default()
        };
        assert_eq!(drain_cause(&tainted), None, "other taints are not removals");
    }

    #[test]
    fn a_deleted_pod_drains() {
        let o = DisruptionObservation {
            pod_terminating: true,
            ..Default::default()
        };
        assert_eq!(drain_cause(&o), Some(DrainCause::PodTerminating));
    }

    #[test]
    fn a_cordoned_or_removed_node_drains_its_media_nodes() {
        let cordoned = DisruptionObservation {
            node_unschedulable: true,
            ..Default::default()
        };
        assert_eq!(drain_cause(&cordoned), Some(DrainCause::NodeLeaving));
        for taint in REMOVAL_TAINTS {
            let o = DisruptionObservation {
                node_taints: vec![taint.into()],
                ..Default::default()
            };
            assert_eq!(drain_cause(&o), Some(DrainCause::NodeLeaving), "{taint}");
        }
    }
}
