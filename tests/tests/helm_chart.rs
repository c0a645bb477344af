//! The Helm chart against the real control plane: installed with the helm CLI, its operator
//! runs as two pods of the operator image on real nodes under the chart's RBAC (one leader), brings up the
//! chart's default pool and makes a conference Active; the admission policy lets a media
//! node write its own MediaNode's and its conferences' status and refuses others'; an upgrade
//! replaces the operator pods without moving conferences; both operator pods, leader and
//! standby, exit on SIGTERM; a leader frozen mid-burst is replaced within its lease and,
//! thawed, writes nothing (the API server's audit log); uninstalling with a pool and
//! conferences in place leaves nothing stuck on a finalizer and removes the cluster-scoped
//! objects. Every rendered manifest passes the API server's strict
//! validation, and bad values fail at install with a message naming the value.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::time::Duration;

use conclave_crds::{
    Conference, ConferencePhase, ConferenceStatus, MediaNode, MediaNodePhase, labels,
};
use conclave_testenv::freezer;
use conclave_testenv::images::Image;
use conclave_testenv::manifests::dry_run_strict;
use conclave_testenv::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use rand::Rng;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Values of a test install: the operator watching the test namespace only (tests share the
/// cluster), bound to its pod address, and a
/// default pool of two media nodes on ports no other test uses.
fn install_values(ns: &str, metrics_port: u16, signaling_port: u16) -> serde_json::Value {
    let udp_port = 41000 + (signaling_port % 50) * 200;
    json!({
        // Parent charts pass `global`: the schema accepts it.
        "global": {"imageRegistry": "registry.example.com"},
        "operator": {
            "image": {"repository": Image::Operator.repository(), "tag": env!("CARGO_PKG_VERSION")},
            "watchNamespace": ns,
            "logLevel": "info,kube=warn",
            "metrics": {"port": metrics_port, "bindAddress": "$(POD_IP)"}
        },
        "defaultPool": {
            "enabled": true,
            "spec": {
                "nodeCapacity": {"participants": 50, "rooms": 10},
                "scaling": {"minNodes": 2, "maxNodes": 2, "bufferParticipants": 10},
                "mediaNode": {
                    "signalingPort": signaling_port,
                    "udpPort": udp_port,
                    "heartbeatTimeoutSeconds": 6
                },
                "turn": {"enabled": false}
            }
        }
    })
}

fn report(ns: &TestNamespace) -> String {
    ns.container_logs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_runs_the_operator_under_its_rbac_and_a_conference_becomes_active() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("helm").await.unwrap();
    let helm = env.helm().unwrap();
    let release = ns.name().to_owned();
    let mut rng = rand::rng();
    let (metrics_port, signaling_port) = (
        rng.random_range(22000..23000),
        rng.random_range(33000..34000),
    );
    let mut values = install_values(ns.name(), metrics_port, signaling_port);
    let notes = helm.install(&release, ns.name(), &values).await.unwrap();
    assert!(
        notes.contains(&format!("manages namespace {} only", ns.name())),
        "NOTES say what the operator manages:\n{notes}"
    );
    let operator = format!("{release}-operator");
    let leader = operator_rolled_out(&ns, &operator, &[]).await;

    // The chart's default pool comes up and a conference is placed on it.
    let nodes = wait::until("two Ready media nodes", TIMEOUT, || async {
        let nodes = ns
            .api::<MediaNode>()
            .list(&ListParams::default())
            .await
            .ok()?;
        let ready: Vec<MediaNode> = nodes
            .items
            .into_iter()
            .filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(MediaNodePhase::Ready))
            .collect();
        (ready.len() == 2).then_some(ready)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(&ns)));
    let status = active_conference(&ns, "standup").await;
    let url = status.join.unwrap().signaling_url;
    assert!(url.ends_with(&format!(":{signaling_port}/rtc")), "{url}");
    let host = status.media_node.unwrap();

    media_node_writes_only_its_own_status(env, &ns, &nodes, &host).await;

    // An upgrade that changes the pod template replaces both operator pods; the new leader
    // keeps the running conference where it is and places a new one.
    let old_pods = operator_pods(&ns).await;
    values["operator"]["logLevel"] = json!("info,kube=warn,conclave_operator=debug");
    helm.install(&release, ns.name(), &values).await.unwrap();
    let new_leader = operator_rolled_out(&ns, &operator, &old_pods).await;
    assert_ne!(leader, new_leader);
    active_conference(&ns, "retro").await;
    let standup = ns.api::<Conference>().get("standup").await.unwrap();
    assert_eq!(
        standup.status.unwrap().media_node,
        Some(host),
        "standup moved"
    );
    helm_test_passes_and_names_the_leader(env, &ns, &release, &new_leader).await;
    operator_pods_stop_on_sigterm(&ns).await;
    helm_test_fails_on_an_operator_scaled_to_zero(env, &ns, &release, &operator).await;

    uninstall_removes_what_the_release_installed(env, &ns, &release).await;
}

/// `helm test` checks the installed release: operator replicas ready, the leader's Lease
/// renewed, the Conclave kinds listable with the operator's account.
async fn helm_test_passes_and_names_the_leader(
    env: &TestEnv,
    ns: &TestNamespace,
    release: &str,
    leader: &str,
) {
    let helm = env.helm().unwrap();
    let out = helm
        .run(&[
            "test",
            release,
            "--namespace",
            ns.name(),
            "--logs",
            "--timeout",
            "2m",
        ])
        .await
        .unwrap_or_else(|e| {
            panic!(
                "helm test: {e}
{}",
                report(ns)
            )
        });
    for expected in [
        "2 of 2 replicas ready",
        &format!("leader: {leader}"),
        "release healthy",
    ] {
        assert!(
            out.contains(expected),
            "helm test output lacks {expected:?}:\n{out}"
        );
    }
}

/// With the operator scaled to zero, `helm test` fails and its pod's log says why.
async fn helm_test_fails_on_an_operator_scaled_to_zero(
    env: &TestEnv,
    ns: &TestNamespace,
    release: &str,
    operator: &str,
) {
    let patch = json!({"spec": {"replicas": 0}});
    ns.api::<Deployment>()
        .patch(operator, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let helm = env.helm().unwrap();
    let result = helm
        .run(&["test", release, "--namespace", ns.name(), "--timeout", "2m"])
        .await;
    assert!(
        result.is_err(),
        "helm test passed with no operator: {result:?}"
    );
    let log = ns
        .api::<Pod>()
        .logs(&format!("{operator}-check"), &Default::default())
        .await
        .unwrap();
    assert!(log.contains("scaled to zero"), "check pod log:\n{log}");
}

/// Deletes both operator pods, the leader running its controllers and the standby waiting for
/// the Lease, and waits until they are gone: each must exit on SIGTERM, well before the kubelet
/// would kill it at the end of its 30 s grace period.
async fn operator_pods_stop_on_sigterm(ns: &TestNamespace) {
    let pods = operator_pods(ns).await;
    let api = ns.api::<Pod>();
    for pod in &pods {
        api.delete(pod, &DeleteParams::default()).await.unwrap();
    }
    for pod in &pods {
        ns.pod_gone(pod, Duration::from_secs(12))
            .await
            .unwrap_or_else(|e| panic!("operator pod after SIGTERM: {e}\n{}", report(ns)));
    }
}

async fn operator_pods(ns: &TestNamespace) -> Vec<String> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/component=operator"))
        .await
        .unwrap();
    pods.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect()
}

/// Waits until the operator Deployment runs 2 ready pods, none of `old`, one of which holds
/// the Lease; returns the leader.
async fn operator_rolled_out(ns: &TestNamespace, operator: &str, old: &[String]) -> String {
    wait::until(
        "the operator rolled out with 2 ready pods",
        TIMEOUT,
        || async {
            let d = ns.api::<Deployment>().get(operator).await.ok()?;
            let s = d.status?;
            let done = s.observed_generation == d.metadata.generation
                && s.replicas == Some(2)
                && s.updated_replicas == Some(2)
                && s.ready_replicas == Some(2);
            let pods = operator_pods(ns).await;
            (done && pods.len() == 2 && !pods.iter().any(|p| old.contains(p))).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(ns)));
    let pods = operator_pods(ns).await;
    wait::until(
        "a running operator pod holding the Lease",
        TIMEOUT,
        || async {
            let lease = ns.api::<Lease>().get(operator).await.ok()?;
            lease.spec?.holder_identity.filter(|h| pods.contains(h))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(ns)))
}

/// Creates conference `name` in the default pool and waits until it is Active with join info.
async fn active_conference(ns: &TestNamespace, name: &str) -> ConferenceStatus {
    let conference: Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": name}, "spec": {"pool": "default", "maxParticipants": 8}
    }))
    .unwrap();
    ns.api::<Conference>()
        .create(&PostParams::default(), &conference)
        .await
        .unwrap();
    wait::until(
        &format!("conference {name} Active with join info"),
        TIMEOUT,
        || async {
            let s = ns.api::<Conference>().get(name).await.ok()?.status?;
            (s.phase == Some(ConferencePhase::Active) && s.join.is_some()).then_some(s)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(ns)))
}

/// With a token bound to the pod of the node hosting the conference ("host"), the host's
/// MediaNode status and the conference's status may be written, but not its placement
/// (`status.mediaNode`); the other node's MediaNode may not, and the other node may not write
/// the conference. A token of the same
/// ServiceAccount that is not bound to a pod may write nothing.
async fn media_node_writes_only_its_own_status(
    env: &TestEnv,
    ns: &TestNamespace,
    nodes: &[MediaNode],
    host: &str,
) {
    // The media nodes' own status reports (their pods' kubelet-issued tokens) got through.
    for node in nodes {
        let node = ns.api::<MediaNode>().get(&node.name_any()).await.unwrap();
        let reported = node.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some(labels::MEDIA_NODE_MANAGER)
                && m.subresource.as_deref() == Some("status")
        });
        assert!(reported, "media node {} wrote no status", node.name_any());
    }
    let other = nodes
        .iter()
        .map(|n| n.name_any())
        .find(|n| n != host)
        .unwrap();
    let as_host = client_as_pod(env, ns, host, true).await;
    let as_other = client_as_pod(env, ns, &other, true).await;
    let unbound = client_as_pod(env, ns, host, false).await;

    let heartbeat =
        json!({"status": {"lastHeartbeat": k8s_openapi::jiff::Timestamp::now().to_string()}});
    let node_status = |client: Client, name: String| {
        let (ns, patch) = (ns.name().to_owned(), heartbeat.clone());
        async move {
            Api::<MediaNode>::namespaced(client, &ns)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
    };
    let conference_status = |client: Client| {
        let ns = ns.name().to_owned();
        async move {
            let api = Api::<Conference>::namespaced(client, &ns);
            let participants = api
                .get_status("standup")
                .await?
                .status
                .unwrap()
                .participants;
            let patch = json!({"status": {"participants": participants}});
            api.patch_status("standup", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
    };
    let refusal = |result: Result<(), kube::Error>| match result {
        Ok(()) => panic!("write allowed"),
        Err(e) => e.to_string(),
    };

    node_status(as_host.clone(), host.to_owned())
        .await
        .unwrap_or_else(|e| panic!("media node {host} may write its own status: {e}"));
    conference_status(as_host.clone())
        .await
        .unwrap_or_else(|e| panic!("media node {host} may write its conference's status: {e}"));
    let claim = json!({"status": {"mediaNode": other}});
    let message = refusal(
        Api::<Conference>::namespaced(as_host.clone(), ns.name())
            .patch_status("standup", &PatchParams::default(), &Patch::Merge(&claim))
            .await
            .map(|_| ()),
    );
    assert!(
        message.contains(&format!(
            "media node {host} may not change where Conference standup is placed"
        )),
        "{message}"
    );
    let message = refusal(node_status(as_host, other.clone()).await);
    assert!(
        message.contains(&format!(
            "media node {host} may write only the status of its own MediaNode, not of {other}"
        )),
        "{message}"
    );
    let message = refusal(conference_status(as_other).await);
    assert!(
        message.contains(&format!(
            "media node {other} may write only the status of Conferences placed on it, not of standup"
        )),
        "{message}"
    );
    let message = refusal(node_status(unbound, host.to_owned()).await);
    assert!(
        message.contains("only with a token bound to its pod"),
        "{message}"
    );
}

/// A client with a token of the ServiceAccount of media node `node`'s pod, bound to that pod
/// (as the kubelet's is) or not bound to anything.
async fn client_as_pod(env: &TestEnv, ns: &TestNamespace, node: &str, bound: bool) -> Client {
    let pod = ns.api::<Pod>().get(node).await.unwrap();
    let account = pod.spec.clone().unwrap().service_account_name.unwrap();
    let reference = bound.then(|| BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(node.to_owned()),
        uid: pod.uid(),
    });
    client_with_token(env, &token(ns, &account, reference).await).await
}

async fn token(ns: &TestNamespace, account: &str, bound: Option<BoundObjectReference>) -> String {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None,
            expiration_seconds: Some(600),
            bound_object_ref: bound,
        }),
        ..TokenRequest::default()
    };
    ns.api::<ServiceAccount>()
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap()
}

async fn client_with_token(env: &TestEnv, token: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(env.kubeconfig()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.auth_info = AuthInfo {
        token: Some(token.to_owned().into()),
        ..AuthInfo::default()
    };
    Client::try_from(config).unwrap()
}

/// The pool is deleted first (the operator, still running, releases its media nodes), then
/// `helm uninstall` removes the operator and the release's cluster-scoped objects.
async fn uninstall_removes_what_the_release_installed(
    env: &TestEnv,
    ns: &TestNamespace,
    release: &str,
) {
    // Uninstalled with its pool, media nodes and conferences in place, as a user would: the
    // pre-delete hook stops the operator and releases its finalizers.
    env.helm()
        .unwrap()
        .uninstall(release, ns.name())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", report(ns)));
    wait::until(
        "the pool's media nodes collected, none stuck",
        TIMEOUT,
        || async {
            let nodes = ns
                .api::<MediaNode>()
                .list(&ListParams::default())
                .await
                .ok()?;
            nodes.items.is_empty().then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(ns)));
    // Conferences stay (they are the user's), and delete at once without the operator.
    for name in ["standup", "retro"] {
        let conferences = ns.api::<Conference>();
        let c = conferences.get(name).await.unwrap();
        assert!(
            !c.finalizers()
                .iter()
                .any(|f| f.starts_with("conclave.dev/")),
            "{name} keeps a Conclave finalizer: {:?}",
            c.finalizers()
        );
        conferences
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        wait::until(&format!("conference {name} deleted"), TIMEOUT, || async {
            matches!(conferences.get_opt(name).await, Ok(None)).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", report(ns)));
    }
    let roles: Api<ClusterRole> = Api::all(ns.client());
    for name in ["operator", "operator-nodes", "media-node"] {
        let name = format!("{release}-{name}");
        assert!(
            roles.get_opt(&name).await.unwrap().is_none(),
            "{name} left behind"
        );
    }
}

/// Creates the ServiceAccounts in `rendered` for real: admission of the chart's test Pod looks
/// its account up, and a dry run creates nothing.
async fn create_service_accounts(ns: &TestNamespace, rendered: &str) {
    for doc in conclave_testenv::manifests::documents(rendered).unwrap() {
        if doc["kind"] == "ServiceAccount" {
            let account: ServiceAccount = serde_json::from_value(doc).unwrap();
            ns.api::<ServiceAccount>()
                .create(&PostParams::default(), &account)
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rendered_manifest_passes_strict_server_validation() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("chart").await.unwrap();
    let helm = env.helm().unwrap();
    let client = ns.client();
    let defaults = helm
        .template("conclave", ns.name(), &json!({}))
        .await
        .unwrap();
    create_service_accounts(&ns, &defaults).await;
    let checked = dry_run_strict(&client, &defaults).await.unwrap();
    for kind in [
        "ClusterRole",
        "Deployment",
        "ValidatingAdmissionPolicy",
        "ServiceAccount",
        "Pod",
    ] {
        assert!(
            checked.iter().any(|k| k == kind),
            "{kind} not rendered: {checked:?}"
        );
    }

    let everything = json!({
        "operator": {
            "replicas": 1,
            "leaderElection": {"enabled": false},
            "watchNamespace": ns.name(),
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "conclave", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
            "imagePullSecrets": [{"name": "registry"}],
            "podAnnotations": {"example.com/team": "media"},
            "priorityClassName": "system-cluster-critical"
        },
        "serviceAccount": {"name": "conclave", "annotations": {"example.com/role": "operator"}},
        "defaultPool": {"enabled": true},
        "serviceMonitor": {"enabled": true},
        "prometheusRule": {"enabled": true},
        "grafanaDashboard": {"enabled": true}
    });
    let rendered = helm.template("full", ns.name(), &everything).await.unwrap();
    create_service_accounts(&ns, &rendered).await;
    let checked = dry_run_strict(&client, &rendered).await.unwrap();
    for kind in [
        "MediaPool",
        "ConfigMap",
        "RoleBinding",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    ] {
        assert!(
            checked.iter().any(|k| k == kind),
            "{kind} not rendered: {checked:?}"
        );
    }
    // The one Role is the uninstall hook's (it scales the operator down): no Lease Role.
    assert_eq!(
        checked.iter().filter(|k| *k == "Role").count(),
        1,
        "no Lease Role without leader election: {checked:?}"
    );
    assert!(
        checked.iter().any(|k| k == "Job"),
        "the uninstall hook: {checked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_fail_at_install_with_a_clear_message() {
    let env = TestEnv::shared().await.unwrap();
    let helm = env.helm().unwrap();
    let cases = [
        (
            json!({"operator": {"replicas": "two"}}),
            "/operator/replicas",
        ),
        (
            json!({"operator": {"replicas": 2, "leaderElection": {"enabled": false}}}),
            "operator.leaderElection.enabled is false",
        ),
        (
            json!({"operator": {"metrics": {"port": 70000}}}),
            "/operator/metrics/port",
        ),
        (
            json!({"operator": {"watchNamespace": "Not_A_Namespace"}}),
            "/operator/watchNamespace",
        ),
        (
            json!({"operator": {"dnsServer": "kube-dns"}}),
            "/operator/dnsServer",
        ),
        (json!({"defaultPool": {"enabeld": true}}), "enabeld"),
    ];
    for (values, names) in cases {
        let error = helm
            .template("bad", "default", &values)
            .await
            .expect_err(&format!("{values} must be refused"))
            .to_string();
        assert!(error.contains(names), "{values}: {error}");
    }
}

/// Writes (create, update, patch, delete) in the audit log received from `ip` at or after
/// `since`: (verb, URI, response code).
fn writes_from(audit: &std::path::Path, ip: &str, since: Timestamp) -> Vec<(String, String, i64)> {
    let log = std::fs::read_to_string(audit).unwrap_or_default();
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| {
            let from = e["sourceIPs"]
                .as_array()
                .is_some_and(|ips| ips.iter().any(|a| a == ip));
            let at = e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok());
            from && at.is_some_and(|at| at >= since)
        })
        .map(|e| {
            (
                e["verb"].as_str().unwrap_or_default().to_owned(),
                e["requestURI"].as_str().unwrap_or_default().to_owned(),
                e["responseStatus"]["code"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_within_its_lease_and_writes_nothing_when_it_resumes() {
    let env = TestEnv::shared().await.unwrap();
    let audit = env
        .audit_log()
        .expect("this test reads the audit log of the cluster it started");
    let ns = env.namespace("handover").await.unwrap();
    let started = Timestamp::now();
    let helm = env.helm().unwrap();
    let release = ns.name().to_owned();
    let mut rng = rand::rng();
    let (metrics_port, signaling_port) = (
        rng.random_range(23000..24000),
        rng.random_range(34000..35000),
    );
    let values = install_values(ns.name(), metrics_port, signaling_port);
    helm.install(&release, ns.name(), &values).await.unwrap();
    let operator = format!("{release}-operator");
    let leader = operator_rolled_out(&ns, &operator, &[]).await;
    active_conference(&ns, "warmup").await;
    let pod = ns.api::<Pod>().get(&leader).await.unwrap();
    let status = pod.status.unwrap();
    let leader_ip = status.pod_ip.unwrap();
    let container = status.container_statuses.unwrap()[0]
        .container_id
        .clone()
        .unwrap();

    // A burst of conferences, with the leader frozen in the middle of it.
    let conferences = ns.api::<Conference>();
    let create = |name: String| {
        let conferences = conferences.clone();
        async move {
            let c: Conference = serde_json::from_value(json!({
                "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
                "metadata": {"name": name}, "spec": {"pool": "default", "maxParticipants": 4}
            }))
            .unwrap();
            conferences
                .create(&PostParams::default(), &c)
                .await
                .unwrap();
        }
    };
    for i in 0..8 {
        create(format!("burst-{i}")).await;
    }
    let frozen = freezer::freeze(&container).unwrap();
    let frozen_at = std::time::Instant::now();
    for i in 8..16 {
        create(format!("burst-{i}")).await;
    }
    let pods = operator_pods(&ns).await;
    let new_leader = wait::until("the standby holding the Lease", TIMEOUT, || async {
        let lease = ns.api::<Lease>().get(&operator).await.ok()?;
        lease
            .spec?
            .holder_identity
            .filter(|h| *h != leader && pods.contains(h))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(&ns)));
    let takeover = frozen_at.elapsed();
    println!("{new_leader} took over {takeover:?} after {leader} froze (lease 15 s)");
    assert!(
        takeover < Duration::from_secs(15 + 5 + 5),
        "takeover within the lease, a retry period and a margin: {takeover:?}"
    );
    wait::until("every conference of the burst Active", TIMEOUT, || async {
        let list = conferences.list(&ListParams::default()).await.ok()?;
        let active = list
            .items
            .iter()
            .filter(|c| c.name_any().starts_with("burst-"))
            .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(ConferencePhase::Active))
            .count();
        (active == 16).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(&ns)));

    // Thawed, the old leader finds its Lease gone and exits; its container restarts as a
    // follower. Nothing it had in flight changed anything at the API server.
    let thawed_at = Timestamp::now();
    frozen.thaw();
    wait::until(
        "the old leader restarted as a follower",
        TIMEOUT,
        || async {
            let p = ns.api::<Pod>().get(&leader).await.ok()?;
            let restarts = p.status?.container_statuses?.first()?.restart_count;
            (restarts >= 1).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", report(&ns)));
    // The audit log does attribute the leader's writes to its pod address: it placed the
    // warm-up conference before it froze.
    let before = writes_from(&audit, &leader_ip, started);
    assert!(
        before
            .iter()
            .any(|(_, uri, _)| uri.contains("/conferences/warmup")),
        "the leader's writes before it froze are in the audit log under {leader_ip}: {before:?}"
    );
    // A request the leader had let through its fence just before it froze can reach the API
    // server after the thaw; it must be refused (its writes are conditional on the object they
    // were decided on) or time out (504: its body arrived too late), never succeed.
    let writes: Vec<_> = writes_from(&audit, &leader_ip, thawed_at)
        .into_iter()
        .filter(|(_, _, code)| (200..400).contains(code))
        .collect();
    assert!(
        writes.is_empty(),
        "the resumed leader ({leader_ip}) wrote after the standby took over: {writes:?}"
    );
    helm.uninstall(&release, ns.name()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_crd_upgrade_replaces_crds_a_previous_release_installed() {
    let env = TestEnv::shared().await.unwrap();
    let client = env.client().await.unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client);
    // What an older release left: the MediaPool CRD written by helm (an update, as helm
    // installs a chart's crds/), with a schema that differs from this version's.
    let name = "mediapools.conclave.dev";
    let mut old = crds.get(name).await.unwrap();
    let schema = |crd: &CustomResourceDefinition| {
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| s.description.clone())
    };
    let current = schema(&old);
    if let Some(s) = old.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
    {
        s.description = Some("a MediaPool of an older release".to_owned());
    }
    old.metadata.managed_fields = None;
    crds.replace(
        name,
        &PostParams {
            field_manager: Some("helm".to_owned()),
            ..Default::default()
        },
        &old,
    )
    .await
    .unwrap();

    // The command docs/operations.md gives for upgrades.
    let chart_crds = conclave_testenv::helm::chart_dir().join("crds");
    let applied = env
        .kubectl()
        .unwrap()
        .run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            chart_crds.to_str().unwrap(),
        ])
        .await
        .unwrap();
    assert!(applied.contains(name), "{applied}");
    let upgraded = crds.get(name).await.unwrap();
    assert_eq!(
        schema(&upgraded),
        current,
        "the chart's CRD is served again"
    );
}
