//! Shared by the operator end-to-end tests: running the operator binary against the test
//! namespace, installing the media-node ClusterRole, and a failure report with logs.

#![allow(dead_code, reason = "each test binary uses a subset")]

pub mod api_proxy;
pub mod call;
pub mod fixtures;
pub mod tls;

use std::path::Path;

use conclave_testenv::operator::Operator;
use conclave_testenv::{TestEnv, TestNamespace, media_node_role};

/// The operator binary watching the test namespace, logging to the artifacts.
pub fn start_operator(env: &TestEnv, ns: &TestNamespace) -> Operator {
    start_operator_with(env, ns, &[])
}

/// As `start_operator`, with `extra` arguments.
pub fn start_operator_with(env: &TestEnv, ns: &TestNamespace, extra: &[&str]) -> Operator {
    start_operator_at(env, ns, env.kubeconfig(), extra)
}

/// As `start_operator_with`, reaching the API server through `kubeconfig`.
pub fn start_operator_at(
    env: &TestEnv,
    ns: &TestNamespace,
    kubeconfig: &Path,
    extra: &[&str],
) -> Operator {
    let log = env.artifacts().join(format!("operator-{}.log", ns.name()));
    Operator::start_with(kubeconfig, ns.name(), &log, extra)
        .expect("conclave-operator is built (make build)")
}

pub async fn install_media_node_role(ns: &TestNamespace) {
    media_node_role::install(&ns.client()).await.unwrap();
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
    start_with(prefix, &[]).await
}

/// As `start`, the operator run with `extra` arguments.
pub async fn start_with(
    prefix: &str,
    extra: &[&str],
) -> (&'static TestEnv, TestNamespace, Operator) {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace(prefix).await.unwrap();
    install_media_node_role(&ns).await;
    let operator = start_operator_with(env, &ns, extra);
    (env, ns, operator)
}
