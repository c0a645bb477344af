//! Where the pool's conferences are, as one media node sees it: the pool's Ready media nodes
//! (watched) and, when a client asks for a conference not hosted here, that conference's
//! current placement (read on demand). Any node of a pool can thus send a client to the node
//! that hosts its conference, which is how clients find their conference again after its
//! node died and could not tell them itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase, labels};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::node::NodeState;

/// Where a conference that is not hosted on this node can be joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Hosted by another Ready node of the pool: send the client there.
    Elsewhere {
        /// That node's name.
        node: String,
        /// The conference's `status.join.signalingUrl`.
        signaling_url: String,
    },
    /// The conference exists but has no live node yet (being placed, or re-placed after its
    /// node failed, or its room is about to open here): retry shortly.
    Pending,
    /// No such conference, or it ended.
    Unknown,
}

/// Decides where `conference` (as read from the API, `None` when absent) can be joined, seen
/// from node `own` whose pool has the Ready nodes `ready` (name to signaling URL).
pub fn placement(
    conference: Option<&Conference>,
    own: &str,
    ready: &BTreeMap<String, String>,
) -> Placement {
    let Some(c) = conference else {
        return Placement::Unknown;
    };
    let status = c.status.as_ref();
    let ended = matches!(
        status.and_then(|s| s.phase),
        Some(ConferencePhase::Ended | ConferencePhase::Failed)
    );
    if c.metadata.deletion_timestamp.is_some() || ended {
        return Placement::Unknown;
    }
    let node = status.and_then(|s| s.media_node.as_deref());
    let url = status
        .and_then(|s| s.join.as_ref())
        .map(|j| j.signaling_url.as_str())
        .filter(|u| !u.is_empty());
    match (node, url) {
        (Some(node), Some(url)) if node != own && ready.contains_key(node) => {
            Placement::Elsewhere {
                node: node.to_owned(),
                signaling_url: url.to_owned(),
            }
        }
        _ => Placement::Pending,
    }
}

/// The signaling URL of a MediaNode that takes clients: Ready, not draining, URL published.
pub fn ready_url(node: &MediaNode) -> Option<String> {
    let status = node.status.as_ref()?;
    if status.phase != Some(MediaNodePhase::Ready) || node.spec.draining {
        return None;
    }
    status
        .addresses
        .as_ref()?
        .signaling_url
        .clone()
        .filter(|u| !u.is_empty())
}

/// Reads where `conference` is, for a client that asked this node for it.
pub async fn locate(state: &NodeState, conference: &str) -> Placement {
    let Some(api) = state.conference_api() else {
        return Placement::Unknown;
    };
    match api.get_opt(conference).await {
        Ok(c) => placement(c.as_ref(), &state.settings.name, &state.pool_nodes()),
        Err(e) => {
            tracing::warn!(conference, error = %e, "reading a conference hosted elsewhere");
            Placement::Pending
        }
    }
}

/// Watches the MediaNodes of `pool` forever, keeping the Ready ones' signaling URLs in
/// `state`, and lets [`locate`] read Conferences of `namespace`.
pub async fn run(client: Client, namespace: String, pool: String, state: Arc<NodeState>) {
    state.set_conference_api(Api::namespaced(client.clone(), &namespace));
    let api: Api<MediaNode> = Api::namespaced(client, &namespace);
    let selector = format!("{}={pool}", labels::POOL);
    let mut stream = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut nodes: BTreeMap<String, String> = BTreeMap::new();
    let mut listing: BTreeMap<String, String> = BTreeMap::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(n)) => {
                if let Some(url) = ready_url(&n) {
                    listing.insert(n.name_any(), url);
                }
            }
            Ok(watcher::Event::InitDone) => nodes = std::mem::take(&mut listing),
            Ok(watcher::Event::Apply(n)) => match ready_url(&n) {
                Some(url) => {
                    nodes.insert(n.name_any(), url);
                }
                None => {
                    nodes.remove(&n.name_any());
                }
            },
            Ok(watcher::Event::Delete(n)) => {
                nodes.remove(&n.name_any());
            }
            Err(e) => {
                tracing::warn!(%pool, error = %e, "MediaNode watch of the pool");
                continue;
            }
        }
        state.set_pool_nodes(nodes.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::ConferenceSpec;
    use conclave_crds::conference::{ConferenceStatus, JoinInfo};
    use conclave_crds::node::{MediaNodeStatus, NodeAddresses};
    use conclave_crds::{MediaNodeSpec, NodeCapacity};

    fn conference(node: Option<&str>, url: &str, phase: ConferencePhase) -> Conference {
        let spec: ConferenceSpec =
            serde_json::from_value(serde_json::json!({"pool": "default"})).expect("spec");
        let mut c = Conference::new("standup", spec);
        c.status = Some(ConferenceStatus {
            phase: Some(phase),
            media_node: node.map(str::to_owned),
            join: Some(JoinInfo {
                signaling_url: url.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    fn ready() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("n1".into(), "ws://10.0.0.1:7880/rtc".into()),
            ("n2".into(), "ws://10.0.0.2:7880/rtc".into()),
        ])
    }

    #[test]
    fn hosted_on_another_ready_node_redirects_there() {
        let c = conference(
            Some("n2"),
            "ws://10.0.0.2:7880/rtc",
            ConferencePhase::Active,
        );
        assert_eq!(
            placement(Some(&c), "n1", &ready()),
            Placement::Elsewhere {
                node: "n2".into(),
                signaling_url: "ws://10.0.0.2:7880/rtc".into()
            }
        );
    }

    #[test]
    fn a_dead_or_unplaced_host_means_retry() {
        // Still names the node that died (not Ready): no redirect back to it.
        let dead = conference(
            Some("n9"),
            "ws://10.0.0.9:7880/rtc",
            ConferencePhase::Active,
        );
        assert_eq!(placement(Some(&dead), "n1", &ready()), Placement::Pending);
        let unplaced = conference(None, "", ConferencePhase::Pending);
        assert_eq!(
            placement(Some(&unplaced), "n1", &ready()),
            Placement::Pending
        );
        // Placed here, room not open yet.
        let here = conference(
            Some("n1"),
            "ws://10.0.0.1:7880/rtc",
            ConferencePhase::Active,
        );
        assert_eq!(placement(Some(&here), "n1", &ready()), Placement::Pending);
    }

    #[test]
    fn missing_or_ended_conferences_are_unknown() {
        assert_eq!(placement(None, "n1", &ready()), Placement::Unknown);
        let ended = conference(Some("n2"), "ws://10.0.0.2:7880/rtc", ConferencePhase::Ended);
        assert_eq!(placement(Some(&ended), "n1", &ready()), Placement::Unknown);
    }

    #[test]
    fn only_ready_undrained_nodes_with_a_url_take_clients() {
        let mut n = MediaNode::new(
            "n1",
            MediaNodeSpec {
                pool: "default".into(),
                capacity: NodeCapacity {
                    participants: 10,
                    rooms: 2,
                    egress_mbps: 100,
                },
                draining: false,
            },
        );
        assert_eq!(ready_url(&n), None);
        n.status = Some(MediaNodeStatus {
            phase: Some(MediaNodePhase::Ready),
            addresses: Some(NodeAddresses {
                signaling_url: Some("ws://10.0.0.1:7880/rtc".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(ready_url(&n).as_deref(), Some("ws://10.0.0.1:7880/rtc"));
        n.spec.draining = true;
        assert_eq!(ready_url(&n), None);
    }
}
