//! Rendered manifests (`helm template` output) checked by the real API server: each object
//! is sent as a server-side apply with `dryRun=All` and `fieldValidation=Strict`, so unknown
//! or duplicate fields, bad values and failing CEL rules are refused as they would be at
//! install, and nothing is stored. No schema is downloaded: the server's own are used.

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Api, Client};
use serde::Deserialize;

use crate::error::{Context, Error};

/// API groups whose kinds are not served by a bare cluster (Prometheus Operator): their
/// objects are parsed but not sent.
pub const UNSERVED_GROUPS: &[&str] = &["monitoring.coreos.com"];

/// The YAML documents of a rendered chart, without empty ones.
pub fn documents(rendered: &str) -> Result<Vec<serde_json::Value>, Error> {
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(rendered) {
        let value = serde_json::Value::deserialize(document)
            .map_err(|e| Error::RenderedChart(e.to_string()))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Dry-runs every object of `rendered` with strict field validation; returns the kinds
/// seen, in order (including those of [`UNSERVED_GROUPS`], which are only parsed).
pub async fn dry_run_strict(client: &Client, rendered: &str) -> Result<Vec<String>, Error> {
    let mut kinds = Vec::new();
    for document in documents(rendered)? {
        let object: DynamicObject = serde_json::from_value(document.clone())
            .context("a rendered document is not a Kubernetes object")?;
        let types = object.types.clone().ok_or_else(|| {
            Error::RenderedChart(format!("document without apiVersion/kind: {document}"))
        })?;
        let gvk = GroupVersionKind::try_from(&types)
            .map_err(|e| Error::RenderedChart(format!("{}: {e}", types.api_version)))?;
        kinds.push(gvk.kind.clone());
        if UNSERVED_GROUPS.contains(&gvk.group.as_str()) {
            continue;
        }
        let name = object.metadata.name.clone().unwrap_or_default();
        let what = format!("{} {name}", gvk.kind);
        let (resource, capabilities) = discovery::pinned_kind(client, &gvk)
            .await
            .context(format!("discover {}/{}", types.api_version, gvk.kind))?;
        let api: Api<DynamicObject> = match (capabilities.scope, &object.metadata.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            (Scope::Namespaced, None) => {
                return Err(Error::RenderedChart(format!("{what} has no namespace")));
            }
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        let params = PatchParams::apply("conclave-chart-check")
            .force()
            .dry_run()
            .validation_strict();
        api.patch(&name, &params, &Patch::Apply(&document))
            .await
            .context(format!("strict dry-run apply of {what}"))?;
    }
    Ok(kinds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_drops_empty_ones() {
        let rendered = "---\n# Source: a.yaml\nkind: A\n---\n# empty\n---\nkind: B\nx: [1]\n";
        let docs = documents(rendered).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "A");
        assert_eq!(docs[1]["x"][0], 1);
    }
}
