//! The media nodes' ClusterRole, installed from the chart's template for environments that run
//! the operator without Helm (tests, the placement benchmark): a release named `conclave`
//! gives it the name the operator binds by default (`conclave-media-node`).

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::error::{Context, Error};
use crate::testenv::settings::workspace_dir;

/// Where the template lives, relative to the workspace.
const TEMPLATE: &str = "charts/conclave/templates/media-node-clusterrole.yaml";

/// Applies the ClusterRole as the chart would for a release named `conclave`.
pub async fn install(client: &Client) -> Result<(), Error> {
    let path = workspace_dir().join(TEMPLATE);
    let template = std::fs::read_to_string(&path).context(format!("read {}", path.display()))?;
    // The template is plain YAML apart from the quoted release name and service.
    let text = template
        .replace("{{ .Release.Name }}", "conclave")
        .replace("{{ .Release.Service }}", "Helm");
    let role: ClusterRole =
        serde_yaml::from_str(&text).expect("the chart's media-node ClusterRole is plain YAML");
    Api::<ClusterRole>::all(client.clone())
        .patch(
            "conclave-media-node",
            &PatchParams::apply("conclave-tests").force(),
            &Patch::Apply(&role),
        )
        .await
        .context("apply the media-node ClusterRole")?;
    Ok(())
}
