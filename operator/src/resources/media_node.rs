//! MediaNode objects of a pool and the Pod each one runs in (see docs/pod-contract.md).

use conclave_crds::{MediaNode, MediaNodeSpec, MediaPool, labels};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Pod,
    PodSpec, Probe, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use rand::Rng;

use super::{owner_ref, pool_labels};

/// A new MediaNode of `pool`, named `<pool>-<5 random letters and digits>`.
pub fn new_media_node(pool: &MediaPool) -> MediaNode {
    let name = format!("{}-{}", pool.name_any(), suffix());
    let mut node = MediaNode::new(
        &name,
        MediaNodeSpec {
            pool: pool.name_any(),
            capacity: pool.spec.node_capacity,
            draining: false,
        },
    );
    node.metadata.namespace = pool.namespace();
    node.metadata.labels = Some(pool_labels(pool, labels::COMPONENT_MEDIA_NODE));
    node.metadata.owner_references = Some(vec![owner_ref(pool)]);
    node
}

fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Settings of media-node pods that come from the operator, not the pool.
pub struct PodSettings<'a> {
    /// RUST_LOG of the media node.
    pub log: &'a str,
}

/// The Pod running media node `node` of `pool`; named like the node, owned by it.
pub fn media_node_pod(node: &MediaNode, pool: &MediaPool, settings: &PodSettings<'_>) -> Pod {
    let tpl = &pool.spec.media_node;
    let secret = labels::pool_secret_name(&pool.name_any());
    let port = i32::from(tpl.signaling_port);
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let container = Container {
        name: "media-node".to_owned(),
        image: Some(tpl.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            format!("--signaling-port={}", tpl.signaling_port),
            format!("--udp-port-min={}", tpl.udp_port_range.min),
            format!("--udp-port-max={}", tpl.udp_port_range.max),
        ]),
        env: Some(vec![
            literal("MEDIA_NODE_NAME", &node.name_any()),
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            field("POD_IP", "status.podIP"),
            field("NODE_NAME", "spec.nodeName"),
            secret_key("CONCLAVE_JOIN_KEY", &secret, labels::SECRET_JOIN_KEY),
            secret_key("CONCLAVE_TURN_SECRET", &secret, labels::SECRET_TURN_SECRET),
            literal("RUST_LOG", settings.log),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("signaling".to_owned()),
            container_port: port,
            host_port: tpl.host_network.then_some(port),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        readiness_probe: Some(probe("/readyz", 2)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: tpl.resources.clone(),
        ..Default::default()
    };
    let mut pod_labels = pool_labels(pool, labels::COMPONENT_MEDIA_NODE);
    pod_labels.insert("conclave.dev/media-node-name".to_owned(), node.name_any());
    Pod {
        metadata: ObjectMeta {
            name: Some(node.name_any()),
            namespace: node.namespace(),
            labels: Some(pod_labels),
            owner_references: Some(vec![owner_ref(node)]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            host_network: Some(tpl.host_network),
            dns_policy: Some(
                if tpl.host_network {
                    "ClusterFirstWithHostNet"
                } else {
                    "ClusterFirst"
                }
                .to_owned(),
            ),
            node_selector: tpl.node_selector.clone(),
            tolerations: tpl.tolerations.clone(),
            service_account_name: Some(super::identity::media_node_account(&pool.name_any())),
            restart_policy: Some("Always".to_owned()),
            // Rooms are drained by the operator before the pod is deleted; this only bounds
            // the media node's own goodbye to its clients.
            termination_grace_period_seconds: Some(30),
            ..Default::default()
        }),
        status: None,
    }
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// An env var from the downward API field `path`.
pub fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// An env var read from key `key` of Secret `secret`.
pub fn secret_key(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::MediaPoolSpec;

    fn pool() -> MediaPool {
        let spec: MediaPoolSpec = serde_json::from_value(serde_json::json!({
            "mediaNode": {"signalingPort": 7990, "udpPortRange": {"min": 51000, "max": 51999}}
        }))
        .unwrap();
        let mut p = MediaPool::new("eu", spec);
        p.metadata.namespace = Some("rtc".into());
        p.metadata.uid = Some("pool-uid".into());
        p
    }

    #[test]
    fn media_node_copies_pool_capacity_and_is_owned_by_it() {
        let n = new_media_node(&pool());
        assert!(n.name_any().starts_with("eu-") && n.name_any().len() == 8);
        assert_eq!(n.spec.capacity, pool().spec.node_capacity);
        assert_eq!(
            n.metadata.owner_references.clone().unwrap()[0].kind,
            "MediaPool"
        );
        assert_eq!(n.labels()[labels::POOL], "eu");
        assert_ne!(
            new_media_node(&pool()).name_any(),
            new_media_node(&pool()).name_any()
        );
    }

    #[test]
    fn pod_follows_the_pod_contract() {
        let node = {
            let mut n = new_media_node(&pool());
            n.metadata.uid = Some("node-uid".into());
            n
        };
        let settings = PodSettings { log: "debug" };
        let pod = media_node_pod(&node, &pool(), &settings);
        let spec = pod.spec.unwrap();
        let c = &spec.containers[0];
        assert_eq!(pod.metadata.name, Some(node.name_any()));
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "node-uid");
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(
            c.args.clone().unwrap(),
            vec![
                "--signaling-port=7990",
                "--udp-port-min=51000",
                "--udp-port-max=51999"
            ]
        );
        let port = &c.ports.clone().unwrap()[0];
        assert_eq!((port.container_port, port.host_port), (7990, Some(7990)));
        let env = c.env.clone().unwrap();
        let get = |n: &str| env.iter().find(|e| e.name == n).cloned().unwrap();
        assert_eq!(get("MEDIA_NODE_NAME").value, Some(node.name_any()));
        assert_eq!(
            get("POD_IP")
                .value_from
                .unwrap()
                .field_ref
                .unwrap()
                .field_path,
            "status.podIP"
        );
        let key = get("CONCLAVE_JOIN_KEY")
            .value_from
            .unwrap()
            .secret_key_ref
            .unwrap();
        assert_eq!(
            (key.name.as_str(), key.key.as_str()),
            ("eu-conclave-keys", "join-token-key")
        );
        let readiness = c.readiness_probe.clone().unwrap().http_get.unwrap();
        assert_eq!(
            (readiness.path.as_deref(), readiness.port),
            (Some("/readyz"), IntOrString::Int(7990))
        );
        assert_eq!(spec.service_account_name.as_deref(), Some("eu-media-node"));
    }
}
