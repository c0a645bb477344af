//! Shared by the operator end-to-end tests: running the operator binary against the test
//! namespace, installing the media-node ClusterRole, and a failure report with logs.

#![allow(dead_code, reason = "each test binary uses a subset")]

pub mod fixtures;

use std::process::{Child, Command, Stdio};

use conclave_testenv::testenv::settings::{default_bin_dir, workspace_dir};
use conclave_testenv::{TestEnv, TestNamespace};
use kube::api::{Patch, PatchParams};

/// The operator binary, watching one namespace, killed when dropped.
pub struct Operator(Child);

impl Operator {
    pub fn start(env: &TestEnv, ns: &TestNamespace) -> Operator {
        let log =
            std::fs::File::create(env.artifacts().join(format!("operator-{}.log", ns.name())))
                .unwrap();
        let child = Command::new(default_bin_dir().join("conclave-operator"))
            .args(["run", "--leader-elect=false", "--metrics-addr=127.0.0.1:0"])
            .arg(format!("--watch-namespace={}", ns.name()))
            .env("KUBECONFIG", env.kubeconfig())
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("conclave-operator is built (make build)");
        Operator(child)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn install_media_node_role(ns: &TestNamespace) {
    let template = std::fs::read_to_string(
        workspace_dir().join("charts/conclave/templates/media-node-clusterrole.yaml"),
    )
    .unwrap();
    // The template is plain YAML apart from the release's name and service, which a
    // release named `conclave` gives the name the operator binds by default.
    let text = template
        .replace("{{ .Release.Name }}", "conclave")
        .replace("{{ .Release.Service }}", "Helm");
    let role: k8s_openapi::api::rbac::v1::ClusterRole = serde_yaml::from_str(&text).unwrap();
    let api: kube::Api<k8s_openapi::api::rbac::v1::ClusterRole> = kube::Api::all(ns.client());
    api.patch(
        "conclave-media-node",
        &PatchParams::apply("conclave-tests").force(),
        &Patch::Apply(&role),
    )
    .await
    .unwrap();
}

pub fn report(env: &TestEnv, ns: &TestNamespace) -> String {
    let op = std::fs::read_to_string(env.artifacts().join(format!("operator-{}.log", ns.name())))
        .unwrap_or_default();
    let tail: Vec<&str> = op.lines().rev().take(40).collect();
    format!(
        "operator log (last lines, newest first):\n{}\n{}",
        tail.join("\n"),
        ns.container_logs()
    )
}

/// The shared environment, a fresh namespace `prefix-*`, the media-node ClusterRole, and
/// the operator watching that namespace: what every operator test starts with.
pub async fn start(prefix: &str) -> (&'static TestEnv, TestNamespace, Operator) {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace(prefix).await.unwrap();
    install_media_node_role(&ns).await;
    let operator = Operator::start(env, &ns);
    (env, ns, operator)
}
