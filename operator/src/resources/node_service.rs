//! The Service of one media node, for pools with `spec.mediaNode.exposure` NodePort or
//! LoadBalancer: its signaling, media (UDP) and ICE-TCP ports, selecting that node's pod
//! only, with `externalTrafficPolicy: Local` so a client's address reaches the media node
//! unchanged (ICE answers it there). [`reach`] reads back where clients reach it: the node
//! ports the API server allocated, or the address a load balancer gave it.

use conclave_crds::pool::Exposure;
use conclave_crds::{MediaNode, MediaPool, labels};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

use super::media_node::{MEDIA_NODE_NAME_LABEL, PORT_MEDIA, PORT_MEDIA_TCP, PORT_SIGNALING};
use super::{content_hash, owner_ref, pool_labels};

/// The component label of media nodes' Services.
pub const COMPONENT_NODE_SERVICE: &str = "media-node-service";
/// Annotation on a media node's Service: the hash of what the operator last applied, so it
/// applies again exactly when the pool asks for something else.
pub const APPLIED_HASH_ANNOTATION: &str = "conclave.dev/applied-hash";

/// The Service of media node `node` of `pool`: named like the node, owned by it, of the
/// pool's exposure (NodePort, or LoadBalancer) and with its `spec.mediaNode.service`.
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
    let settings = tpl.service.clone().unwrap_or_default();
    let load_balancer = tpl.exposure == Exposure::LoadBalancer;
    let mut service = Service {
        metadata: ObjectMeta {
            name: Some(node.name_any()),
            namespace: node.namespace(),
            labels: Some(pool_labels(pool, COMPONENT_NODE_SERVICE)),
            annotations: Some(settings.annotations),
            owner_references: Some(vec![owner_ref(node)]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(
                if load_balancer {
                    "LoadBalancer"
                } else {
                    "NodePort"
                }
                .to_owned(),
            ),
            external_traffic_policy: Some("Local".to_owned()),
            load_balancer_class: settings.load_balancer_class.filter(|_| load_balancer),
            selector: Some(BTreeMap::from([
                (labels::POOL.to_owned(), pool.name_any()),
                (MEDIA_NODE_NAME_LABEL.to_owned(), node.name_any()),
            ])),
            ports: Some(ports.into_iter().flatten().collect()),
            ..Default::default()
        }),
        status: None,
    };
    let hash = content_hash(&serde_json::to_vec(&service).unwrap_or_default());
    service
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash);
    service
}

/// True when `current` (the Service as the cluster has it, if at all) is not what `wanted`
/// was made from: a Service deleted by hand comes back, and one applied for another
/// exposure, other ports or other settings is brought to the pool's (what it no longer sets,
/// such as an annotation removed from the pool, goes with the apply).
pub fn needs_apply(wanted: &Service, current: Option<&Service>) -> bool {
    let hash = |s: &Service| s.annotations().get(APPLIED_HASH_ANNOTATION).cloned();
    current.is_none_or(|c| hash(c) != hash(wanted))
}

/// The ports clients are given for a media node behind its Service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServicePorts {
    /// Of the signaling WebSocket.
    pub signaling: u16,
    /// Of the media UDP port.
    pub udp: u16,
    /// Of the ICE-TCP port, when the pool has one.
    pub tcp: Option<u16>,
}

/// Where clients reach a media node through its Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// At its Kubernetes Node's public address, on these node ports.
    NodePorts(ServicePorts),
    /// At the load balancer's address, on the Service's own ports; `hostname`: the name the
    /// load balancer gave, which resolved to `ip`.
    LoadBalancer {
        ip: String,
        ports: ServicePorts,
        hostname: Option<String>,
    },
    /// The load balancer named a host instead of an address: reached at an address the name
    /// resolves to (ICE candidates carry addresses), on the Service's own ports.
    LoadBalancerHost {
        hostname: String,
        ports: ServicePorts,
    },
    /// Not yet: no node ports allocated, or no load balancer address given.
    Pending,
}

/// Where `service` (of a pool with `exposure`) is reached, from its spec and status.
pub fn reach(service: &Service, exposure: Exposure) -> Reach {
    let pending = Reach::Pending;
    let Some(ports) = service.spec.as_ref().and_then(|s| s.ports.as_ref()) else {
        return pending;
    };
    let find = |name: &str, number: fn(&ServicePort) -> Option<i32>| {
        ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(number)
            .and_then(|n| u16::try_from(n).ok())
    };
    let read = |number: fn(&ServicePort) -> Option<i32>| {
        Some(ServicePorts {
            signaling: find(PORT_SIGNALING, number)?,
            udp: find(PORT_MEDIA, number)?,
            tcp: find(PORT_MEDIA_TCP, number),
        })
    };
    match exposure {
        Exposure::HostPort => pending,
        Exposure::NodePort => read(|p| p.node_port).map_or(pending, Reach::NodePorts),
        Exposure::LoadBalancer => {
            let ingress = service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref()?.ingress.clone())
                .unwrap_or_default();
            let Some(ports) = read(|p| Some(p.port)) else {
                return pending;
            };
            let ip = ingress.iter().find_map(|i| i.ip.clone());
            let hostname = ingress.iter().find_map(|i| i.hostname.clone());
            match (ip, hostname) {
                (Some(ip), _) => Reach::LoadBalancer {
                    ip,
                    ports,
                    hostname: None,
                },
                (None, Some(hostname)) => Reach::LoadBalancerHost { hostname, ports },
                (None, None) => pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::media_node::new_media_node;
    use conclave_crds::MediaPoolSpec;
    use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};

    fn pool(exposure: &str, tcp_port: Option<u16>) -> MediaPool {
        let spec: MediaPoolSpec = serde_json::from_value(serde_json::json!({
            "mediaNode": {"signalingPort": 7880, "udpPort": 7882, "tcpPort": tcp_port,
                          "exposure": exposure,
                          "service": {"annotations": {"lb.example.com/pool": "media"},
                                      "loadBalancerClass": "lb.example.com/media"}}
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

    fn service(exposure: &str, tcp_port: Option<u16>) -> Service {
        let p = pool(exposure, tcp_port);
        node_service(&node(&p), &p)
    }

    fn with_ingress(mut s: Service, ingress: LoadBalancerIngress) -> Service {
        s.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![ingress]),
            }),
            ..Default::default()
        });
        s
    }

    fn with_ip(s: Service, ip: &str) -> Service {
        with_ingress(
            s,
            LoadBalancerIngress {
                ip: Some(ip.into()),
                ..Default::default()
            },
        )
    }

    #[test]
    fn selects_its_own_pod_only_and_keeps_the_client_address() {
        let s = service("NodePort", None);
        assert_eq!(s.name_any(), "web-abcde");
        assert_eq!(s.namespace().as_deref(), Some("calls"));
        assert_eq!(s.owner_references()[0].uid, "node-uid");
        assert_eq!(s.annotations()["lb.example.com/pool"], "media");
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(
            spec.load_balancer_class, None,
            "a class is for load balancers"
        );
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
    fn a_load_balancer_service_carries_the_pools_class() {
        let spec = service("LoadBalancer", None).spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(
            spec.load_balancer_class.as_deref(),
            Some("lb.example.com/media")
        );
    }

    #[test]
    fn reads_the_allocated_node_ports() {
        let mut s = service("NodePort", Some(7883));
        assert_eq!(
            reach(&s, Exposure::NodePort),
            Reach::Pending,
            "none allocated yet"
        );
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
            reach(&s, Exposure::NodePort),
            Reach::NodePorts(ServicePorts {
                signaling: 31000,
                udp: 31001,
                tcp: Some(31002)
            })
        );
    }

    #[test]
    fn a_load_balancer_is_reached_at_its_ip_on_the_pools_ports() {
        let s = service("LoadBalancer", Some(7883));
        assert_eq!(
            reach(&s, Exposure::LoadBalancer),
            Reach::Pending,
            "no address given yet"
        );
        let named = with_ingress(
            s.clone(),
            LoadBalancerIngress {
                hostname: Some("lb-1.example.com".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            reach(&named, Exposure::LoadBalancer),
            Reach::LoadBalancerHost {
                hostname: "lb-1.example.com".into(),
                ports: ServicePorts {
                    signaling: 7880,
                    udp: 7882,
                    tcp: Some(7883)
                }
            },
            "a hostname, to be resolved"
        );
        let given = with_ip(s, "198.51.100.9");
        assert_eq!(
            reach(&given, Exposure::LoadBalancer),
            Reach::LoadBalancer {
                ip: "198.51.100.9".into(),
                ports: ServicePorts {
                    signaling: 7880,
                    udp: 7882,
                    tcp: Some(7883)
                },
                hostname: None,
            }
        );
    }

    #[test]
    fn applies_again_only_what_the_cluster_lost_or_the_pool_changed() {
        let wanted = service("LoadBalancer", None);
        assert!(needs_apply(&wanted, None), "deleted by hand");
        let mut served = with_ip(wanted.clone(), "198.51.100.9");
        let spec = served.spec.as_mut().unwrap();
        spec.cluster_ip = Some("10.0.0.42".into());
        for p in spec.ports.as_mut().unwrap() {
            p.node_port = Some(31000);
        }
        served
            .annotations_mut()
            .insert("lb.example.com/assigned".into(), "yes".into());
        assert!(
            !needs_apply(&wanted, Some(&served)),
            "what the cluster added is not a difference"
        );
        assert!(
            needs_apply(&service("NodePort", None), Some(&served)),
            "another exposure"
        );
        assert!(needs_apply(
            &service("LoadBalancer", Some(7883)),
            Some(&served)
        ));
        let mut p = pool("LoadBalancer", None);
        if let Some(settings) = p.spec.media_node.service.as_mut() {
            settings.annotations.clear();
        }
        assert!(
            needs_apply(&node_service(&node(&p), &p), Some(&served)),
            "an annotation the pool no longer sets"
        );
        served.annotations_mut().remove(APPLIED_HASH_ANNOTATION);
        assert!(
            needs_apply(&wanted, Some(&served)),
            "applied by someone else"
        );
    }
}
