//! `conclave-operator release`: what the chart's pre-delete hook runs on `helm uninstall`.
//! It stops the operator (its Deployment scaled to zero, waited until no pod of it runs), then
//! removes Conclave's finalizers from MediaNodes and Conferences, so that nothing the
//! operator would have finished is left stuck in deletion once it is gone: the pool's media
//! nodes are collected with it, and conferences can be deleted later.

use std::time::Duration;

use conclave_crds::{Conference, MediaNode, labels};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::info;

use crate::config::ReleaseConfig;
use crate::error::{Error, KubeContext, Result};

/// The finalizers left once ours are removed, or None when `finalizers` has none of ours.
pub fn without_ours(finalizers: &[String]) -> Option<Vec<String>> {
    let ours = [labels::CONFERENCE_FINALIZER, labels::NODE_FINALIZER];
    finalizers
        .iter()
        .any(|f| ours.contains(&f.as_str()))
        .then(|| {
            finalizers
                .iter()
                .filter(|f| !ours.contains(&f.as_str()))
                .cloned()
                .collect()
        })
}

/// Runs the release; returns how many objects it freed.
pub async fn run(client: Client, cfg: &ReleaseConfig) -> Result<usize> {
    stop_operator(&client, cfg).await?;
    let nodes = free::<MediaNode>(&client, cfg.watch_namespace.as_deref()).await?;
    let conferences = free::<Conference>(&client, cfg.watch_namespace.as_deref()).await?;
    info!(nodes, conferences, "finalizers released");
    Ok(nodes + conferences)
}

async fn stop_operator(client: &Client, cfg: &ReleaseConfig) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), &cfg.namespace);
    let name = &cfg.deployment;
    let patch = serde_json::json!({"spec": {"replicas": 0}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .action(|| format!("scaling the operator Deployment {name} to zero"))?;
    for _ in 0..cfg.timeout_seconds {
        let d = api
            .get(name)
            .await
            .action(|| format!("reading the operator Deployment {name}"))?;
        if d.status.and_then(|s| s.replicas).unwrap_or(0) == 0 {
            info!(deployment = %name, "operator stopped");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(Error::Timeout(format!(
        "the operator Deployment {name} still runs pods after {} s",
        cfg.timeout_seconds
    )))
}

async fn free<K>(client: &Client, namespace: Option<&str>) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let all: Api<K> = crate::start::api(client, namespace);
    let kind = K::kind(&());
    let list = all
        .list(&ListParams::default())
        .await
        .action(|| format!("listing {kind}s"))?;
    let mut freed = 0;
    for o in list.items {
        let Some(rest) = without_ours(o.finalizers()) else {
            continue;
        };
        let name = o.name_any();
        let api: Api<K> = Api::namespaced(client.clone(), &o.namespace().unwrap_or_default());
        // The resourceVersion makes this fail rather than drop a finalizer added meanwhile.
        let patch = serde_json::json!({"metadata": {
            "finalizers": rest, "resourceVersion": o.resource_version()
        }});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .action(|| format!("removing Conclave's finalizer from {kind} {name}"))?;
        freed += 1;
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_conclaves_finalizers_are_removed() {
        let f = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(without_ours(&f(&["other.io/keep"])), None);
        assert_eq!(
            without_ours(&f(&[labels::CONFERENCE_FINALIZER, "other.io/keep"])),
            Some(f(&["other.io/keep"]))
        );
        assert_eq!(without_ours(&f(&[labels::NODE_FINALIZER])), Some(vec![]));
    }
}
