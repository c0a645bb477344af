//! The NodePort Service of one media node, for pools with `spec.mediaNode.exposure:
//! NodePort`: its signaling, media (UDP) and ICE-TCP ports, selecting that node's pod only,
//! with `externalTrafficPolicy: Local` so a client's address reaches the media node unchanged
//! (ICE answers it there). The API server allocates the node ports; [`NodePorts::of`] reads
//! them back for the addresses the operator publishes.

use conclave_crds::{MediaNode, MediaPool, labels};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

use super::media_node::{MEDIA_NODE_NAME_LABEL, PORT_MEDIA, PORT_MEDIA_TCP, PORT_SIGNALING};
use super::{owner_ref, pool_labels};

/// The component label of media nodes' Services.
pub const COMPONENT_NODE_SERVICE: &str = "media-node-service";

/// The Service of media node `node` of `pool`: named like the node, owned by it.
pub fn node_service(node: &MediaNode, pool: &MediaPool) -> Service {
    let tpl = &pool.spec.media_node;
    let port = |name: &str, number: u16, protocol: &str| ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(number),
        target_port: Some(IntOrString::Int(i32::from(number))),
        protocol: Some(protocol.to_owned()),
        ..Default::default()
    };
    let ports = [
        Some(port(PORT_SIGNALING, tpl.signaling_port, "TCP")),
        Some(port(PORT_MEDIA, tpl.udp_port(), "UDP")),
        tpl.tcp_port.map(|tcp| port(PORT_MEDIA_TCP, tcp, "TCP")),
    ];
    Service {
        metadata: ObjectMeta {
            name: Some(node.name_any()),
            namespace: node.namespace(),
            labels: Some(pool_labels(pool, COMPONENT_NODE_SERVICE)),
            owner_references: Some(vec![owner_ref(node)]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("NodePort".to_owned()),
            external_traffic_policy: Some("Local".to_owned()),
            selector: Some(BTreeMap::from([
                (labels::POOL.to_owned(), pool.name_any()),
                (MEDIA_NODE_NAME_LABEL.to_owned(), node.name_any()),
            ])),
            ports: Some(ports.into_iter().flatten().collect()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The node ports the API server allocated to a media node's Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePorts {
    /// Of the signaling WebSocket.
    pub signaling: u16,
    /// Of the media UDP port.
    pub udp: u16,
    /// Of the ICE-TCP port, when the pool has one.
    pub tcp: Option<u16>,
}

impl NodePorts {
    /// The allocated ports of `service`, once its signaling and media ports have them.
    pub fn of(service: &Service) -> Option<NodePorts> {
        let ports = service.spec.as_ref()?.ports.as_ref()?;
        let node_port = |name: &str| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| p.node_port)
                .and_then(|n| u16::try_from(n).ok())
        };
        Some(NodePorts {
            signaling: node_port(PORT_SIGNALING)?,
            udp: node_port(PORT_MEDIA)?,
            tcp: node_port(PORT_MEDIA_TCP),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::media_node::new_media_node;
    use conclave_crds::MediaPoolSpec;

    fn pool(tcp_port: Option<u16>) -> MediaPool {
        let spec: MediaPoolSpec = serde_json::from_value(serde_json::json!({
            "mediaNode": {"signalingPort": 7880, "udpPort": 7882, "tcpPort": tcp_port,
                          "exposure": "NodePort"}
        }))
        .unwrap();
        let mut p = MediaPool::new("web", spec);
        p.metadata.namespace = Some("calls".into());
        p.metadata.uid = Some("pool-uid".into());
        p
    }

    fn node(pool: &MediaPool) -> MediaNode {
        let mut n = new_media_node(pool);
        n.metadata.name = Some("web-abcde".into());
        n.metadata.uid = Some("node-uid".into());
        n
    }

    #[test]
    fn selects_its_own_pod_only_and_keeps_the_client_address() {
        let p = pool(None);
        let s = node_service(&node(&p), &p);
        assert_eq!(s.name_any(), "web-abcde");
        assert_eq!(s.namespace().as_deref(), Some("calls"));
        assert_eq!(s.owner_references()[0].uid, "node-uid");
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        let selector = spec.selector.unwrap();
        assert_eq!(selector[MEDIA_NODE_NAME_LABEL], "web-abcde");
        assert_eq!(selector[labels::POOL], "web");
        let ports: Vec<(String, i32, String, Option<i32>)> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.port, p.protocol.unwrap(), p.node_port))
            .collect();
        assert_eq!(
            ports,
            [
                ("signaling".into(), 7880, "TCP".into(), None),
                ("media".into(), 7882, "UDP".into(), None),
            ],
            "the node ports are left to the API server"
        );
    }

    #[test]
    fn reads_the_allocated_node_ports() {
        let p = pool(Some(7883));
        let mut s = node_service(&node(&p), &p);
        assert_eq!(NodePorts::of(&s), None, "none allocated yet");
        for (port, allocated) in s
            .spec
            .as_mut()
            .unwrap()
            .ports
            .as_mut()
            .unwrap()
            .iter_mut()
            .zip([31000, 31001, 31002])
        {
            port.node_port = Some(allocated);
        }
        assert_eq!(
            NodePorts::of(&s),
            Some(NodePorts {
                signaling: 31000,
                udp: 31001,
                tcp: Some(31002)
            })
        );
    }
}
