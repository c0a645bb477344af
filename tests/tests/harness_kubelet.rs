//! Pods through the harness kubelet: a Deployment reaches a Ready real process on a local
//! Node's address via the controller-manager and the scheduler, and deleting it ends the
//! process; unknown images fail; exits follow the restart policy; grace periods hold.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic fails the test"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conclave_testenv::{TestEnv, TestNamespace, http, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, PostParams};
use rand::Rng;
use serde_json::json;

const IMAGE: &str = "conclave.dev/testenv/http";
const TIMEOUT: Duration = Duration::from_secs(60);

fn port() -> u16 {
    rand::rng().random_range(20000..30000)
}

fn condition(pod: &Pod, kind: &str) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == kind && c.status == "True")
}

fn pid(pod: &Pod) -> u32 {
    let statuses = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap();
    let id = statuses[0].container_id.as_deref().unwrap();
    id.strip_prefix("harness://").unwrap().parse().unwrap()
}

async fn create_pod(ns: &TestNamespace, pod: serde_json::Value) -> String {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
        .name_any()
}

/// Waits until pod `name` satisfies `check`.
async fn pod_until(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&Pod) -> bool,
) -> Pod {
    let api = ns.api::<Pod>();
    wait::until(&format!("pod {name}: {what}"), TIMEOUT, || async {
        api.get(name).await.ok().filter(&check)
    })
    .await
    .unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> Result<http::Response, conclave_testenv::Error> {
    http::get(addr, path, &[], Duration::from_secs(2)).await
}

#[tokio::test]
async fn deployment_runs_a_ready_process_on_a_local_node_and_deletion_ends_it() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("kubelet-deploy").await.unwrap();
    let port = port();
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "keys"}, "stringData": {"join": "s3cret"}}),
    )
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let config: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"mode": "test"}}))
            .unwrap();
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &config)
        .await
        .unwrap();
    let field = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "http",
                    "image": IMAGE,
                    "args": ["--port=$(PORT)"],
                    "env": [
                        {"name": "PORT", "value": port.to_string()},
                        {"name": "POD_IP", "valueFrom": field("status.podIP")},
                        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                        {"name": "NODE_NAME", "valueFrom": field("spec.nodeName")},
                        {"name": "GREETING", "value": "hello from $(POD_NAME)"},
                        {"name": "JOIN_KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "join"}}},
                        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                    ],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1},
                }]},
            },
        },
    }))
    .unwrap();
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let pods = ns.api::<Pod>();
    let pod = wait::until("a Ready pod of the Deployment", TIMEOUT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        list.items.into_iter().find(|p| condition(p, "Ready"))
    })
    .await
    .unwrap();
    let status = pod.status.clone().unwrap();
    let node_name = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
    let node = env
        .node(&node_name)
        .unwrap_or_else(|| panic!("scheduled on {node_name}, not a local Node"));
    assert_eq!(
        status.pod_ip.as_deref(),
        Some(node.address.to_string().as_str())
    );
    assert_eq!(
        status.host_ip.as_deref(),
        Some(node.address.to_string().as_str())
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let container = &status.container_statuses.as_ref().unwrap()[0];
    assert!(container.ready && container.started == Some(true));

    let addr = SocketAddr::new(node.address.into(), port);
    assert_eq!(get(addr, "/readyz").await.unwrap().status, 200);
    assert!(
        get(SocketAddr::from(([127, 0, 0, 1], port)), "/readyz")
            .await
            .is_err(),
        "listens on the Node's address only"
    );
    let env_var =
        |name: &'static str| async move { get(addr, &format!("/env/{name}")).await.unwrap().body };
    assert_eq!(env_var("POD_NAME").await, pod.name_any());
    assert_eq!(env_var("POD_NAMESPACE").await, ns.name());
    assert_eq!(env_var("NODE_NAME").await, node_name);
    assert_eq!(
        env_var("GREETING").await,
        format!("hello from {}", pod.name_any())
    );
    assert_eq!(env_var("JOIN_KEY").await, "s3cret");
    assert_eq!(env_var("MODE").await, "test");
    let whoami = get(addr, "/whoami").await.unwrap();
    assert_eq!(
        whoami.body,
        format!("system:serviceaccount:{}:default", ns.name()),
        "the pod's own service account"
    );

    let pid = pid(&pod);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    ns.api::<Deployment>()
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    wait::until("the process to end and the pod to go", TIMEOUT, || async {
        let closed = get(addr, "/readyz").await.is_err();
        let exited = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        let gone = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items
            .is_empty();
        (closed && exited && gone).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unknown_image_fails_the_pod_with_image_not_runnable() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("kubelet-image").await.unwrap();
    let name = create_pod(
        &ns,
        json!({
            "metadata": {"name": "nginx"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        }),
    )
    .await;
    let pod = pod_until(&ns, &name, "Failed", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
    })
    .await;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("ImageNotRunnable"));
    assert!(status.message.unwrap().contains("nginx:1.27"));
    let waiting = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ImageNotRunnable"));
}

#[tokio::test]
async fn exiting_process_is_restarted_and_counted() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("kubelet-restart").await.unwrap();
    let args = [
        format!("--port={}", port()),
        "--exit-after-secs=0.3".into(),
        "--exit-code=3".into(),
    ];
    let name = create_pod(
        &ns,
        json!({
            "metadata": {"name": "crashy"},
            "spec": {"containers": [{"name": "c", "image": IMAGE, "args": args}]},
        }),
    )
    .await;
    let restarted = |p: &Pod| {
        let statuses = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        statuses.is_some_and(|cs| cs[0].restart_count >= 2)
    };
    let pod = pod_until(&ns, &name, "restartCount >= 2", restarted).await;
    let status = pod.status.unwrap();
    assert_eq!(
        status.phase.as_deref(),
        Some("Running"),
        "restartPolicy Always keeps the pod running"
    );
    let last = status.container_statuses.unwrap()[0]
        .last_state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")));
    let log = std::fs::read_to_string(env.container_log(ns.name(), &name, "c").unwrap()).unwrap();
    assert!(
        log.matches("harness-kubelet starts").count() >= 3,
        "every start is in the log:\n{log}"
    );
    assert!(log.contains("exiting with 3 as asked"), "{log}");
}

#[tokio::test]
async fn restart_policies_never_and_on_failure_end_the_pod() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("kubelet-policy").await.unwrap();
    let pod = |name: &str, policy: &str, code: i32| {
        json!({
            "metadata": {"name": name},
            "spec": {"restartPolicy": policy, "containers": [{"name": "c", "image": IMAGE,
                     "args": [format!("--port={}", port()), "--exit-after-secs=0.2", format!("--exit-code={code}")]}]},
        })
    };
    let never = create_pod(&ns, pod("never", "Never", 3)).await;
    let on_failure = create_pod(&ns, pod("on-failure", "OnFailure", 0)).await;
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    let failed = pod_until(&ns, &never, "Failed", |p| phase(p) == "Failed").await;
    let c = &failed.status.unwrap().container_statuses.unwrap()[0];
    let terminated = c.state.clone().unwrap().terminated.unwrap();
    assert_eq!((terminated.exit_code, c.restart_count), (3, 0));
    let succeeded = pod_until(&ns, &on_failure, "Succeeded", |p| phase(p) == "Succeeded").await;
    let c = &succeeded.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        c.state
            .clone()
            .unwrap()
            .terminated
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );
}

#[tokio::test]
async fn deletion_honours_the_grace_period_then_kills() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("kubelet-grace").await.unwrap();
    let name = create_pod(&ns, json!({
        "metadata": {"name": "stubborn"},
        "spec": {"terminationGracePeriodSeconds": 3, "containers": [{"name": "c", "image": IMAGE,
                 "args": [format!("--port={}", port()), "--ignore-sigterm"]}]},
    }))
    .await;
    let pod = pod_until(&ns, &name, "Ready (no probe: ready once running)", |p| {
        condition(p, "Ready")
    })
    .await;
    let pid = pid(&pod);
    let started = Instant::now();
    ns.api::<Pod>()
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    let api = ns.api::<Pod>();
    wait::until("the pod to be removed", TIMEOUT, || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "SIGTERM is ignored, so the pod lives out its grace period ({took:?})"
    );
    assert!(
        took < Duration::from_secs(15),
        "then SIGKILL ends it ({took:?})"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let log = std::fs::read_to_string(env.container_log(ns.name(), &name, "c").unwrap()).unwrap();
    assert!(log.contains("SIGTERM ignored"), "{log}");
}

#[tokio::test]
async fn readiness_probe_holds_ready_back() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("kubelet-probe").await.unwrap();
    let port = port();
    let name = create_pod(&ns, json!({
        "metadata": {"name": "unready"},
        "spec": {"containers": [{"name": "c", "image": IMAGE, "args": [format!("--port={port}"), "--never-ready"],
                 "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1}}]},
    }))
    .await;
    let started = |p: &Pod| {
        let statuses = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        statuses.is_some_and(|cs| cs[0].started == Some(true))
    };
    pod_until(&ns, &name, "started", started).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = ns.api::<Pod>().get(&name).await.unwrap();
    assert!(!condition(&pod, "Ready") && !condition(&pod, "ContainersReady"));
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn failing_liveness_probe_restarts_the_container() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("kubelet-liveness").await.unwrap();
    let port = port();
    let probe = json!({"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 1, "failureThreshold": 2});
    let name = create_pod(
        &ns,
        json!({
            "metadata": {"name": "sick"},
            "spec": {"containers": [{"name": "c", "image": IMAGE, "args": [format!("--port={port}"), "--unhealthy"],
                     "livenessProbe": probe}]},
        }),
    )
    .await;
    let restarted = |p: &Pod| {
        let statuses = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        statuses.is_some_and(|cs| cs[0].restart_count >= 1)
    };
    pod_until(&ns, &name, "restarted by its liveness probe", restarted).await;
    let log = std::fs::read_to_string(env.container_log(ns.name(), &name, "c").unwrap()).unwrap();
    assert!(
        log.contains("SIGTERM: exiting"),
        "stopped with SIGTERM first:\n{log}"
    );
}
