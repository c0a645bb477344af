//! MediaNode objects of a pool and the Pod each one runs in (see docs/pod-contract.md).

use conclave_crds::pool::Exposure;
use conclave_crds::{MediaNode, MediaNodeSpec, MediaPool, labels};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, Pod,
    PodSpec, Probe, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use rand::Rng;

use super::{content_hash, owner_ref, pool_labels, restricted_container, restricted_pod};
use crate::decide::certificate::{CERT_FILE, KEY_FILE};

/// Label of a media-node pod naming its MediaNode.
pub const MEDIA_NODE_NAME_LABEL: &str = "conclave.dev/media-node-name";

/// Name of the media-node container's signaling port; the names of the ports clients reach
/// are also those of a NodePort Service's ports (`node_service`).
pub const PORT_SIGNALING: &str = "signaling";
/// Name of its media (UDP) port.
pub const PORT_MEDIA: &str = "media";
/// Name of its ICE-TCP port.
pub const PORT_MEDIA_TCP: &str = "media-tcp";
/// Where the pool's TLS Secret (`spec.signaling.tlsSecretName`) is mounted, read-only.
pub const TLS_DIR: &str = "/var/run/conclave/tls";
/// Name of the TLS Secret's volume.
const TLS_VOLUME: &str = "signaling-tls";
/// Label of a media-node pod: the [`pod_template_hash`] of the pool when the pod was made.
/// A live node whose pod carries another hash than the pool's current one is outdated and
/// is replaced by the rollout (`decide::rollout`).
pub const TEMPLATE_HASH_LABEL: &str = "conclave.dev/pod-template-hash";
/// Stands in for the node's name when the template is hashed.
const TEMPLATE_NODE: &str = "template";
/// Component label of the media-node pods' PodDisruptionBudgets.
const COMPONENT_DISRUPTION_BUDGET: &str = "media-node-disruption-budget";

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

/// The Pod running media node `node` of `pool`; named like the node, owned by it, labelled
/// with the pool's [`pod_template_hash`].
pub fn media_node_pod(node: &MediaNode, pool: &MediaPool, settings: &PodSettings<'_>) -> Pod {
    let mut pod = render(&node.name_any(), pool, settings);
    pod.metadata.namespace = node.namespace();
    pod.metadata.owner_references = Some(vec![owner_ref(node)]);
    pod.labels_mut().insert(
        TEMPLATE_HASH_LABEL.to_owned(),
        pod_template_hash(pool, settings),
    );
    pod
}

/// A short, stable hash of the pod spec `pool` gives its media nodes (rendered for a
/// stand-in node name): it changes with everything that changes the pods (`spec.mediaNode`,
/// `spec.signaling`, `spec.imagePullSecrets`, the drain timeout behind the grace period, the
/// operator's own pod settings) and with nothing else.
pub fn pod_template_hash(pool: &MediaPool, settings: &PodSettings<'_>) -> String {
    let spec = render(TEMPLATE_NODE, pool, settings).spec;
    content_hash(&serde_json::to_vec(&spec).unwrap_or_default())
}

/// The pod of the node named `node_name` (no namespace or owner: `media_node_pod` adds them).
fn render(node_name: &str, pool: &MediaPool, settings: &PodSettings<'_>) -> Pod {
    let tpl = &pool.spec.media_node;
    let secret = labels::pool_secret_name(&pool.name_any());
    let port = i32::from(tpl.signaling_port);
    let tls = pool.spec.signaling.as_ref();
    // With TLS the kubelet probes over https (it does not verify the certificate).
    let scheme = tls.map(|_| "HTTPS".to_owned());
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            scheme: scheme.clone(),
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
        args: Some(args(pool)),
        env: Some(vec![
            literal("MEDIA_NODE_NAME", node_name),
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            field("POD_IP", "status.podIP"),
            field("NODE_NAME", "spec.nodeName"),
            secret_key("CONCLAVE_JOIN_KEY", &secret, labels::SECRET_JOIN_KEY),
            secret_key("CONCLAVE_TURN_SECRET", &secret, labels::SECRET_TURN_SECRET),
            literal("RUST_LOG", settings.log),
        ]),
        // Clients reach signaling and media at the Node's address: on the host network,
        // through hostPorts, or through the node's NodePort Service (`node_service`).
        // Metrics are scraped at the pod's own address.
        ports: Some(
            [
                (PORT_SIGNALING, port, "TCP", true),
                (PORT_MEDIA, i32::from(tpl.udp_port()), "UDP", true),
                ("metrics", i32::from(tpl.metrics_port()), "TCP", false),
            ]
            .into_iter()
            .chain(
                tpl.tcp_port
                    .map(|tcp| (PORT_MEDIA_TCP, i32::from(tcp), "TCP", true)),
            )
            .map(|(name, port, protocol, public)| ContainerPort {
                name: Some(name.to_owned()),
                container_port: port,
                host_port: ((public && tpl.exposure == Exposure::HostPort) || tpl.host_network)
                    .then_some(port),
                protocol: Some(protocol.to_owned()),
                ..Default::default()
            })
            .collect(),
        ),
        readiness_probe: Some(probe("/readyz", 2)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: tpl.resources.clone(),
        security_context: Some(restricted_container()),
        volume_mounts: tls.map(|_| {
            vec![VolumeMount {
                name: TLS_VOLUME.to_owned(),
                mount_path: TLS_DIR.to_owned(),
                read_only: Some(true),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    // Readable by the media node's non-root user; a Secret volume follows the Secret's
    // updates (cert-manager renewals), which the media node picks up.
    let volumes = tls.map(|tls| {
        vec![Volume {
            name: TLS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.tls_secret_name.clone()),
                default_mode: Some(0o444),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }]
    });
    let mut pod_labels = pool_labels(pool, labels::COMPONENT_MEDIA_NODE);
    pod_labels.insert(MEDIA_NODE_NAME_LABEL.to_owned(), node_name.to_owned());
    Pod {
        metadata: ObjectMeta {
            name: Some(node_name.to_owned()),
            labels: Some(pod_labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            volumes,
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
            affinity: tpl.affinity.clone(),
            priority_class_name: tpl.priority_class_name.clone(),
            image_pull_secrets: pool.spec.image_pull_secrets.clone(),
            security_context: Some(restricted_pod()),
            service_account_name: Some(super::identity::media_node_account(&pool.name_any())),
            restart_policy: Some("Always".to_owned()),
            // SIGTERM starts a drain (the operator moves the conferences off at the pool's
            // evacuation rate); the kubelet must not kill the pod before it ends.
            termination_grace_period_seconds: Some(termination_grace_seconds(pool)),
            ..Default::default()
        }),
        status: None,
    }
}

/// The media node's arguments: ports, drain grace, and with `spec.signaling` the certificate
/// and key of the mounted TLS Secret.
fn args(pool: &MediaPool) -> Vec<String> {
    let tpl = &pool.spec.media_node;
    let mut args = vec![
        format!("--signaling-port={}", tpl.signaling_port),
        format!("--metrics-port={}", tpl.metrics_port()),
        format!("--udp-port={}", tpl.udp_port()),
        format!("--drain-grace-seconds={}", drain_seconds(pool)),
        format!(
            "--max-connections-per-address={}",
            tpl.max_connections_per_address
        ),
    ];
    if let Some(tcp) = tpl.tcp_port {
        args.push(format!("--tcp-port={tcp}"));
    }
    if pool.spec.signaling.is_some() {
        args.push(format!("--tls-cert={TLS_DIR}/{CERT_FILE}"));
        args.push(format!("--tls-key={TLS_DIR}/{KEY_FILE}"));
    }
    args
}

/// Longest the media node keeps rooms once draining: the pool's drain timeout.
fn drain_seconds(pool: &MediaPool) -> u32 {
    pool.spec.scaling.drain_timeout_seconds
}

/// The pod's grace period: the drain, then time for the media node to say goodbye to its
/// clients and exit.
pub fn termination_grace_seconds(pool: &MediaPool) -> i64 {
    i64::from(drain_seconds(pool)) + 30
}

/// The merge patch that drains a MediaNode, recording why in `conclave.dev/drain-reason` (the
/// drain Event's reason).
pub fn drain_patch(reason: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"annotations": {labels::DRAIN_REASON: reason}},
        "spec": {"draining": true},
    })
}

/// The merge patch that takes a drain back: not draining, no drain reason.
pub fn take_back_patch() -> serde_json::Value {
    serde_json::json!({
        "metadata": {"annotations": {labels::DRAIN_REASON: null}},
        "spec": {"draining": false},
    })
}

/// Whether `node` was drained as surplus by the autoscaler (its drain reason says so), so its
/// drain may be taken back.
pub fn drained_as_surplus(node: &MediaNode) -> bool {
    node.annotations()
        .get(labels::DRAIN_REASON)
        .map(String::as_str)
        == Some(labels::DRAIN_SCALING_DOWN)
}

/// The PodDisruptionBudget of media node `node`'s pod, named like it and owned by it: it
/// refuses evictions (`kubectl drain`, a node autoscaler) of the pod while it is ready, so an
/// eviction waits while the operator drains the node and moves its conferences, and then
/// deletes the pod itself. A pod that is not ready carries no call and may be evicted at once.
/// One per pod, with `minAvailable: 1`: a budget over all of a pool's pods would need
/// `maxUnavailable`, which the disruption controller resolves through the pods' controller's
/// scale subresource, and MediaNodes have none.
pub fn disruption_budget(node: &MediaNode, pool: &MediaPool) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(node.name_any()),
            namespace: node.namespace(),
            labels: Some(pool_labels(pool, COMPONENT_DISRUPTION_BUDGET)),
            owner_references: Some(vec![owner_ref(node)]),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(
                    [(MEDIA_NODE_NAME_LABEL.to_owned(), node.name_any())]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
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
            "mediaNode": {"signalingPort": 7990, "udpPort": 51000}
        }))
        .unwrap();
        let mut p = MediaPool::new("eu", spec);
        p.metadata.namespace = Some("rtc".into());
        p.metadata.uid = Some("pool-uid".into());
        p
    }

    #[test]
    fn the_template_hash_follows_what_changes_the_pod_and_nothing_else() {
        let settings = PodSettings { log: "info" };
        let hash = |p: &MediaPool| pod_template_hash(p, &settings);
        let base = pool();
        assert_eq!(hash(&base).len(), 10);
        assert_eq!(hash(&base), hash(&pool()), "stable");
        let mut image = pool();
        image.spec.media_node.image = "registry.example/media-node:2".into();
        let mut grace = pool();
        grace.spec.scaling.drain_timeout_seconds = 60;
        let log = pod_template_hash(&base, &PodSettings { log: "debug" });
        for (what, changed) in [
            ("image", hash(&image)),
            ("drain timeout", hash(&grace)),
            ("log", log),
        ] {
            assert_ne!(changed, hash(&base), "{what} changes the pod");
        }
        let mut scaling = pool();
        scaling.spec.scaling.max_nodes = 99;
        scaling.spec.node_capacity.participants = 7;
        assert_eq!(
            hash(&scaling),
            hash(&base),
            "sizing does not change the pod"
        );
        let n = new_media_node(&base);
        let pod = media_node_pod(&n, &base, &settings);
        assert_eq!(pod.labels()[TEMPLATE_HASH_LABEL], hash(&base));
        assert_eq!(pod.name_any(), n.name_any());
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
        assert_eq!(spec.host_network, Some(false));
        assert_eq!(
            c.args.clone().unwrap(),
            vec![
                "--signaling-port=7990",
                "--metrics-port=7991",
                "--udp-port=51000",
                "--drain-grace-seconds=3600",
                "--max-connections-per-address=256"
            ]
        );
        // The drain fits in the grace period, with time to say goodbye.
        assert_eq!(spec.termination_grace_period_seconds, Some(3630));
        let ports = |pod: Pod| -> Vec<_> {
            pod.spec.unwrap().containers[0]
                .ports
                .clone()
                .unwrap()
                .into_iter()
                .map(|p| {
                    (
                        p.name.unwrap(),
                        p.container_port,
                        p.host_port,
                        p.protocol.unwrap(),
                    )
                })
                .collect()
        };
        let port = |name: &str, n, host: bool, protocol: &str| {
            (name.to_owned(), n, host.then_some(n), protocol.to_owned())
        };
        assert_eq!(
            ports(media_node_pod(&node, &pool(), &settings)),
            vec![
                port("signaling", 7990, true, "TCP"),
                port("media", 51000, true, "UDP"),
                port("metrics", 7991, false, "TCP"),
            ],
            "signaling and media at the Node's address, metrics only at the pod's"
        );
        let mut on_host = pool();
        on_host.spec.media_node.host_network = true;
        assert_eq!(
            ports(media_node_pod(&node, &on_host, &settings)),
            vec![
                port("signaling", 7990, true, "TCP"),
                port("media", 51000, true, "UDP"),
                port("metrics", 7991, true, "TCP"),
            ],
            "on the host network every port is the Node's"
        );
        let mut behind_service = pool();
        behind_service.spec.media_node.exposure = Exposure::NodePort;
        assert_eq!(
            ports(media_node_pod(&node, &behind_service, &settings)),
            vec![
                port("signaling", 7990, false, "TCP"),
                port("media", 51000, false, "UDP"),
                port("metrics", 7991, false, "TCP"),
            ],
            "behind a NodePort Service no port is the Node's"
        );
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
        // Hardened as the restricted Pod Security level asks (but for the host network).
        let pod_sc = spec.security_context.unwrap();
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!(pod_sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    }

    #[test]
    fn tls_signaling_mounts_the_secret_read_only_and_probes_over_https() {
        let mut p = pool();
        p.spec.signaling = Some(conclave_crds::pool::SignalingTls {
            domain: "media.example.com".into(),
            tls_secret_name: "media-tls".into(),
        });
        let pod = media_node_pod(&new_media_node(&p), &p, &PodSettings { log: "info" });
        let spec = pod.spec.unwrap();
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap();
        assert_eq!(
            args[args.len() - 2..],
            [
                "--tls-cert=/var/run/conclave/tls/tls.crt",
                "--tls-key=/var/run/conclave/tls/tls.key"
            ]
        );
        let mount = &c.volume_mounts.clone().unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (TLS_DIR, Some(true))
        );
        let volume = &spec.volumes.unwrap()[0];
        assert_eq!(volume.name, mount.name);
        let secret = volume.secret.clone().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("media-tls"));
        // Readable by the non-root media node (uid 65532), written by no one.
        assert_eq!(secret.default_mode, Some(0o444));
        for probe in [&c.readiness_probe, &c.liveness_probe] {
            let get = probe.clone().unwrap().http_get.unwrap();
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        }
        // Without spec.signaling: plain http probes, no volume.
        let plain = media_node_pod(
            &new_media_node(&pool()),
            &pool(),
            &PodSettings { log: "info" },
        );
        let spec = plain.spec.unwrap();
        assert!(spec.volumes.is_none());
        let get = spec.containers[0]
            .readiness_probe
            .clone()
            .unwrap()
            .http_get
            .unwrap();
        assert_eq!(get.scheme, None);
    }

    #[test]
    fn pod_takes_placement_priority_and_pull_secrets_from_the_pool() {
        let mut p = pool();
        let spec: MediaPoolSpec = serde_json::from_value(serde_json::json!({
            "imagePullSecrets": [{"name": "registry"}],
            "mediaNode": {
                "priorityClassName": "live-calls",
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "media", "operator": "In", "values": ["yes"]}]}]}}},
                "resources": {"requests": {"cpu": "2", "memory": "1Gi"},
                              "limits": {"cpu": "2", "memory": "1Gi"}}
            }
        }))
        .unwrap();
        p.spec = spec;
        let pod = media_node_pod(&new_media_node(&p), &p, &PodSettings { log: "info" });
        let spec = pod.spec.unwrap();
        assert_eq!(spec.priority_class_name.as_deref(), Some("live-calls"));
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "registry");
        assert!(spec.affinity.unwrap().node_affinity.is_some());
        let resources = spec.containers[0].resources.clone().unwrap();
        assert_eq!(
            resources.requests, resources.limits,
            "Guaranteed QoS possible"
        );
    }

    #[test]
    fn disruption_budget_keeps_the_ready_pod_of_its_media_node() {
        let node = {
            let mut n = new_media_node(&pool());
            n.metadata.uid = Some("node-uid".into());
            n
        };
        let pdb = disruption_budget(&node, &pool());
        assert_eq!(pdb.metadata.name, Some(node.name_any()));
        assert_eq!(pdb.metadata.owner_references.unwrap()[0].uid, "node-uid");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.min_available, Some(IntOrString::Int(1)));
        assert_eq!(spec.max_unavailable, None);
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
        // It selects the node's pod, and only by the label naming the node.
        let pod = media_node_pod(&node, &pool(), &PodSettings { log: "info" });
        let pod_labels = pod.metadata.labels.unwrap();
        let selector = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(selector.len(), 1);
        assert!(
            selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
            "{selector:?}"
        );
    }
}
