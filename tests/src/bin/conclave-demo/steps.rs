//! The demo's steps after the cluster is up, in order. Each is a hook later work fills in
//! (operator, pool, conference, join links); until then it only says it is not wired yet.

use std::path::PathBuf;

use conclave_testenv::LocalNode;
use kube::Client;

/// Namespace the demo puts Conclave's objects in.
pub const NAMESPACE: &str = "conclave";

/// What the steps can use.
pub struct Demo {
    #[expect(dead_code, reason = "the steps use it once they are wired")]
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub nodes: Vec<LocalNode>,
}

/// Runs every step in order.
pub async fn run(demo: &Demo) -> anyhow::Result<()> {
    install_operator(demo).await?;
    create_pool(demo).await?;
    create_conference(demo).await?;
    print_join_links(demo).await
}

/// Installs the operator as the chart does (RBAC, Deployment of the operator image, which
/// the harness kubelet runs as the built `conclave-operator`).
async fn install_operator(demo: &Demo) -> anyhow::Result<()> {
    let kubeconfig = demo.kubeconfig.display();
    not_wired(
        "install_operator",
        &format!("the operator is not installed; the cluster is {kubeconfig}"),
    );
    Ok(())
}

/// Creates the demo MediaPool in [`NAMESPACE`], sized for the local Nodes.
async fn create_pool(demo: &Demo) -> anyhow::Result<()> {
    let nodes = demo.nodes.len();
    not_wired(
        "create_pool",
        &format!("no MediaPool is created in namespace {NAMESPACE} for the {nodes} local Nodes"),
    );
    Ok(())
}

/// Creates a Conference and waits until it is placed on a media node.
async fn create_conference(_demo: &Demo) -> anyhow::Result<()> {
    not_wired("create_conference", "no Conference is created");
    Ok(())
}

/// Prints a browser join link for the Conference.
async fn print_join_links(_demo: &Demo) -> anyhow::Result<()> {
    not_wired("print_join_links", "no join link to print");
    Ok(())
}

fn not_wired(step: &str, consequence: &str) {
    tracing::warn!(step, "demo step not wired yet: {consequence}");
}
