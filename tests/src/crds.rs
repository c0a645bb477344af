//! Installing Conclave's CustomResourceDefinitions into a cluster: server-side apply of
//! `conclave_crds::crds()`, then waiting until the API server serves them.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::error::{Context, Error};
use crate::wait;

/// Field manager the harness applies CRDs with.
pub const MANAGER: &str = "conclave-testenv";

/// Applies every Conclave CRD and waits until each is Established.
pub async fn install(client: &Client) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crds = conclave_crds::crds();
    for crd in &crds {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(crd),
        )
        .await
        .context(format!("apply CRD {name}"))?;
    }
    for crd in &crds {
        let name = crd.name_any();
        wait::until(
            &format!("CRD {name} to be Established"),
            Duration::from_secs(30),
            || async {
                let crd = api.get(&name).await.ok()?;
                let conditions = crd.status?.conditions?;
                conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            },
        )
        .await?;
    }
    tracing::info!(count = crds.len(), "CRDs installed");
    Ok(())
}
