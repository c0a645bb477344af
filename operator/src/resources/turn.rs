//! The TURN relays of a pool: a coturn Deployment using the TURN REST shared secret, and a
//! Service for it on UDP and TCP (and TLS, see `turn_tls`). Replicas follow room load.

use conclave_crds::{MediaPool, labels};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::media_node::{field, secret_key};
use super::turn_tls::{CERTIFICATE_ANNOTATION, Serving};
use super::{owner_ref, pool_labels, restricted_container, restricted_pod};
use crate::decide::turn_peers::PeerPolicy;

fn meta(pool: &MediaPool) -> ObjectMeta {
    ObjectMeta {
        name: Some(labels::turn_name(&pool.name_any())),
        namespace: pool.namespace(),
        labels: Some(pool_labels(pool, labels::COMPONENT_TURN)),
        owner_references: Some(vec![owner_ref(pool)]),
        ..Default::default()
    }
}

/// coturn's flags for `pool`: shared-secret auth, realm, ports, relay range, per-user quota,
/// peer policy, no CLI, and TLS when `tls` (else none).
pub fn coturn_args(pool: &MediaPool, tls: Option<Serving<'_>>) -> Vec<String> {
    let t = &pool.spec.turn;
    let mut args = vec![
        "--log-file=stdout".to_owned(),
        "--no-cli".to_owned(),
        "--no-dtls".to_owned(),
        "--fingerprint".to_owned(),
        "--use-auth-secret".to_owned(),
        "--static-auth-secret=$(TURN_SECRET)".to_owned(),
        // Credentials come from the shared secret; coturn still opens a user database, by
        // default a file the non-root relay cannot create. In memory, it writes nothing.
        "--userdb=:memory:".to_owned(),
        // No pid file: the root filesystem is read-only.
        "--pidfile=".to_owned(),
        format!("--realm={}", t.realm),
        format!("--listening-port={}", t.port),
        "--listening-ip=$(POD_IP)".to_owned(),
        "--relay-ip=$(POD_IP)".to_owned(),
        format!("--min-port={}", t.relay_port_range.min),
        format!("--max-port={}", t.relay_port_range.max),
        "--no-multicast-peers".to_owned(),
        format!("--user-quota={}", t.user_quota),
    ];
    args.extend(
        PeerPolicy {
            allowed: &t.allowed_peers,
            allow_loopback: t.allow_loopback_peers,
        }
        .coturn_args(),
    );
    match tls {
        Some(tls) => args.extend(tls.coturn_args()),
        None => args.push("--no-tls".to_owned()),
    }
    args
}

/// The coturn Deployment with `replicas`, serving TLS when `tls`.
pub fn turn_deployment(pool: &MediaPool, replicas: u32, tls: Option<Serving<'_>>) -> Deployment {
    let t = &pool.spec.turn;
    let labels = pool_labels(pool, labels::COMPONENT_TURN);
    let port = i32::from(t.port);
    let container = Container {
        name: "turn".to_owned(),
        image: Some(t.image.clone()),
        args: Some(coturn_args(pool, tls)),
        env: Some(vec![
            secret_key(
                "TURN_SECRET",
                &labels::pool_secret_name(&pool.name_any()),
                labels::SECRET_TURN_SECRET,
            ),
            field("POD_IP", "status.podIP"),
        ]),
        ports: Some(
            ["UDP", "TCP"]
                .into_iter()
                .map(|proto| ContainerPort {
                    name: Some(format!("turn-{}", proto.to_lowercase())),
                    container_port: port,
                    host_port: Some(port),
                    protocol: Some(proto.to_owned()),
                    ..Default::default()
                })
                .chain(tls.map(|tls| tls.port()))
                .collect(),
        ),
        // Ready once coturn accepts TCP on its port.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                host: None,
            }),
            period_seconds: Some(5),
            failure_threshold: Some(2),
            ..Default::default()
        }),
        resources: t.resources.clone(),
        security_context: Some(tls.map_or_else(restricted_container, |t| t.security_context())),
        volume_mounts: tls.map(|tls| vec![tls.mount()]),
        ..Default::default()
    };
    let annotations = tls.map(|tls| {
        [(
            CERTIFICATE_ANNOTATION.to_owned(),
            tls.certificate.to_owned(),
        )]
        .into()
    });
    Deployment {
        metadata: meta(pool),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            // Relays hold allocations: replace them one at a time.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: tls.map(|tls| vec![tls.volume()]),
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".to_owned()),
                    node_selector: t.node_selector.clone(),
                    tolerations: t.tolerations.clone(),
                    affinity: t.affinity.clone(),
                    priority_class_name: t.priority_class_name.clone(),
                    image_pull_secrets: pool.spec.image_pull_secrets.clone(),
                    security_context: Some(restricted_pod()),
                    // coturn never calls the API server.
                    automount_service_account_token: Some(false),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The TURN Service: UDP and TCP on the TURN port, and the TLS port with `spec.turn.tls`.
pub fn turn_service(pool: &MediaPool) -> Service {
    let port = i32::from(pool.spec.turn.port);
    let tls = pool.spec.turn.tls.as_ref().map(|tls| ServicePort {
        name: Some("turn-tls".to_owned()),
        port: i32::from(tls.port),
        target_port: Some(IntOrString::Int(i32::from(tls.port))),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    });
    Service {
        metadata: meta(pool),
        spec: Some(ServiceSpec {
            selector: Some(pool_labels(pool, labels::COMPONENT_TURN)),
            ports: Some(
                ["UDP", "TCP"]
                    .into_iter()
                    .map(|proto| ServicePort {
                        name: Some(format!("turn-{}", proto.to_lowercase())),
                        port,
                        target_port: Some(IntOrString::Int(port)),
                        protocol: Some(proto.to_owned()),
                        ..Default::default()
                    })
                    .chain(tls)
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// The ICE URLs clients use for relays reachable at `addresses` on `port`, and `tls_url`
/// (the relays' `turns:` URL) when they serve TLS.
pub fn turn_urls(addresses: &[String], port: u16, tls_url: Option<String>) -> Vec<String> {
    let mut urls = Vec::new();
    for a in addresses {
        urls.push(format!("stun:{a}:{port}"));
        urls.push(format!("turn:{a}:{port}?transport=udp"));
        urls.push(format!("turn:{a}:{port}?transport=tcp"));
    }
    if !addresses.is_empty() {
        urls.extend(tls_url);
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::MediaPoolSpec;

    fn pool() -> MediaPool {
        let mut p = MediaPool::new("eu", serde_json::from_str::<MediaPoolSpec>("{}").unwrap());
        p.metadata.namespace = Some("rtc".into());
        p
    }

    #[test]
    fn coturn_uses_the_shared_secret_and_relay_range() {
        let args = coturn_args(&pool(), None);
        for want in [
            "--use-auth-secret",
            "--static-auth-secret=$(TURN_SECRET)",
            "--userdb=:memory:",
            "--realm=conclave",
            "--listening-port=3478",
            "--min-port=40000",
            "--max-port=49999",
            "--user-quota=32",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
    }

    #[test]
    fn loopback_peers_only_when_the_pool_asks_and_never_link_local() {
        let mut p = pool();
        let args = coturn_args(&p, None);
        assert!(
            !args.iter().any(|a| a == "--allow-loopback-peers"),
            "{args:?}"
        );
        assert!(
            args.iter()
                .any(|a| a.starts_with("--denied-peer-ip=169.254."))
        );
        p.spec.turn.allow_loopback_peers = true;
        assert!(
            coturn_args(&p, None)
                .iter()
                .any(|a| a == "--allow-loopback-peers")
        );
    }

    #[test]
    fn deployment_and_service_serve_udp_and_tcp() {
        let d = turn_deployment(&pool(), 3, None);
        assert_eq!(d.metadata.name.as_deref(), Some("eu-turn"));
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        let env = spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let secret = env[0].value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("eu-conclave-keys", "turn-shared-secret")
        );
        let ports = turn_service(&pool()).spec.unwrap().ports.unwrap();
        let protos: Vec<_> = ports
            .iter()
            .map(|p| (p.protocol.clone().unwrap(), p.port))
            .collect();
        assert_eq!(
            protos,
            vec![("UDP".to_owned(), 3478), ("TCP".to_owned(), 3478)]
        );
    }

    #[test]
    fn relay_pods_are_hardened_probed_and_placed_as_the_pool_says() {
        let mut p = pool();
        p.spec.turn.priority_class_name = Some("live-calls".into());
        p.spec.turn.node_selector = Some([("edge".to_owned(), "true".to_owned())].into());
        let pod = turn_deployment(&p, 1, None)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        assert_eq!(pod.priority_class_name.as_deref(), Some("live-calls"));
        assert_eq!(pod.node_selector.unwrap()["edge"], "true");
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
        let probe = c.readiness_probe.clone().unwrap().tcp_socket.unwrap();
        assert_eq!(probe.port, IntOrString::Int(3478));
        let args = c.args.clone().unwrap();
        assert!(args.contains(&"--pidfile=".to_owned()), "{args:?}");
    }

    #[test]
    fn urls_cover_stun_and_both_turn_transports() {
        assert_eq!(
            turn_urls(&["203.0.113.7".into()], 3478, None),
            vec![
                "stun:203.0.113.7:3478",
                "turn:203.0.113.7:3478?transport=udp",
                "turn:203.0.113.7:3478?transport=tcp"
            ]
        );
        let tls = Some("turns:turn.example.com:443?transport=tcp".to_owned());
        assert_eq!(turn_urls(&[], 3478, tls.clone()), Vec::<String>::new());
        assert_eq!(turn_urls(&["203.0.113.7".into()], 3478, tls).len(), 4);
    }

    #[test]
    fn tls_mounts_the_secret_opens_its_port_and_marks_the_certificate() {
        let mut p = pool();
        p.spec.turn.tls = Some(conclave_crds::pool::TurnTls {
            host: "turn.example.com".into(),
            port: 5349,
            secret_name: "turn-tls".into(),
        });
        let tls = p.spec.turn.tls.clone().unwrap();
        let serving = Serving {
            tls: &tls,
            certificate: "c0ffee",
        };
        let args = coturn_args(&p, Some(serving));
        assert!(!args.contains(&"--no-tls".to_owned()), "{args:?}");
        assert!(args.contains(&"--no-dtls".to_owned()), "{args:?}");
        let template = turn_deployment(&p, 1, Some(serving)).spec.unwrap().template;
        assert_eq!(
            template.metadata.unwrap().annotations.unwrap()[CERTIFICATE_ANNOTATION],
            "c0ffee"
        );
        let pod = template.spec.unwrap();
        let c = &pod.containers[0];
        assert!(
            c.ports
                .clone()
                .unwrap()
                .iter()
                .any(|p| p.container_port == 5349 && p.host_port == Some(5349))
        );
        assert_eq!(c.volume_mounts.clone().unwrap()[0].read_only, Some(true));
        assert_eq!(
            pod.volumes.unwrap()[0]
                .secret
                .clone()
                .unwrap()
                .secret_name
                .as_deref(),
            Some("turn-tls")
        );
        let ports = turn_service(&p).spec.unwrap().ports.unwrap();
        assert_eq!(ports.len(), 3);
        // Without a usable certificate the relays run as before, without TLS.
        assert!(coturn_args(&p, None).contains(&"--no-tls".to_owned()));
    }
}
