//! `conclave-operator check`: what the chart's `helm test` runs against an installed release.
//! It passes when the operator's Deployment has all its replicas ready, a replica holds the
//! leader Lease and renews it in time (with leader election on), and the Conclave kinds can
//! be listed in the managed namespaces with the operator's own permissions; it prints what it
//! found and, on failure, every problem with what to look at.

use conclave_crds::{Conference, MediaNode, MediaPool};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::config::CheckConfig;
use crate::error::{Error, KubeContext, Result};

/// Problems with the operator's Deployment: `ready` of `desired` replicas.
pub fn deployment_problems(name: &str, desired: i32, ready: i32) -> Vec<String> {
    if desired == 0 {
        return vec![format!(
            "Deployment {name} is scaled to zero: no operator runs (was the release being uninstalled?)"
        )];
    }
    if ready < desired {
        return vec![format!(
            "Deployment {name} has {ready} of {desired} replicas ready: see `kubectl describe deployment {name}` and its pods' logs"
        )];
    }
    Vec::new()
}

/// Problems with the leader Lease `name` at `now`: missing, not held, or not renewed within
/// its duration (the leader stopped acting).
pub fn lease_problems(name: &str, lease: Option<&LeaseSpec>, now: Timestamp) -> Vec<String> {
    let Some(spec) = lease else {
        return vec![format!("Lease {name} does not exist: no replica ever led")];
    };
    let Some(holder) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else {
        return vec![format!("Lease {name} is held by nobody: no replica leads")];
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let stale = match spec.renew_time.as_ref() {
        None => true,
        Some(renewed) => now.duration_since(renewed.0).as_secs() > duration,
    };
    if stale {
        return vec![format!(
            "Lease {name} held by {holder} was not renewed within its {duration} s: its leader stopped acting; see that pod's log"
        )];
    }
    Vec::new()
}

/// Runs the check; Ok with a report when the release is healthy, an error listing every
/// problem when not.
pub async fn run(client: Client, cfg: &CheckConfig) -> Result<String> {
    let mut report = Vec::new();
    let mut problems = Vec::new();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &cfg.namespace);
    let deployment = deployments
        .get(&cfg.deployment)
        .await
        .action(|| format!("reading the operator Deployment {}", cfg.deployment))?;
    let desired = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
    let ready = deployment
        .status
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    report.push(format!("operator: {ready} of {desired} replicas ready"));
    problems.extend(deployment_problems(&cfg.deployment, desired, ready));

    if cfg.leader_elect {
        let leases: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
        let lease = leases
            .get_opt(&cfg.lease_name)
            .await
            .action(|| format!("reading the leader Lease {}", cfg.lease_name))?;
        let spec = lease.and_then(|l| l.spec);
        if let Some(holder) = spec.as_ref().and_then(|s| s.holder_identity.as_deref()) {
            report.push(format!("leader: {holder}"));
        }
        problems.extend(lease_problems(
            &cfg.lease_name,
            spec.as_ref(),
            Timestamp::now(),
        ));
    }

    let ns = cfg.watch_namespace.as_deref();
    report.push(format!(
        "in {}: {} MediaPools, {} MediaNodes, {} Conferences",
        ns.unwrap_or("all namespaces"),
        count::<MediaPool>(&client, ns).await?,
        count::<MediaNode>(&client, ns).await?,
        count::<Conference>(&client, ns).await?,
    ));

    let report = report.join("\n");
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(Error::Check(format!(
            "{report}\nproblems:\n- {}",
            problems.join("\n- ")
        )))
    }
}

/// How many objects of kind `K` the operator's service account can list: an error names the
/// kind when its CRD is missing or the permission is.
async fn count<K>(client: &Client, namespace: Option<&str>) -> Result<usize>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = crate::start::api(client, namespace);
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .action(|| format!("listing {} (is its CRD installed?)", K::kind(&())))?;
    Ok(list.items.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(
        holder: Option<&str>,
        renewed_secs_ago: i64,
        duration: i32,
        now: Timestamp,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(
                now - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago),
            )),
            ..Default::default()
        }
    }

    #[test]
    fn a_ready_deployment_has_no_problem() {
        assert!(deployment_problems("op", 2, 2).is_empty());
    }

    #[test]
    fn replicas_not_ready_or_scaled_to_zero_are_problems() {
        assert!(deployment_problems("op", 2, 1)[0].contains("1 of 2 replicas ready"));
        assert!(deployment_problems("op", 0, 0)[0].contains("scaled to zero"));
    }

    #[test]
    fn a_lease_renewed_within_its_duration_is_fine() {
        let now = Timestamp::now();
        assert!(lease_problems("op", Some(&lease(Some("op-1"), 5, 15, now)), now).is_empty());
    }

    #[test]
    fn a_missing_free_or_stale_lease_is_a_problem() {
        let now = Timestamp::now();
        assert!(lease_problems("op", None, now)[0].contains("does not exist"));
        assert!(lease_problems("op", Some(&lease(None, 1, 15, now)), now)[0].contains("nobody"));
        assert!(
            lease_problems("op", Some(&lease(Some(""), 1, 15, now)), now)[0].contains("nobody")
        );
        let stale = lease_problems("op", Some(&lease(Some("op-1"), 16, 15, now)), now);
        assert!(
            stale[0].contains("held by op-1 was not renewed"),
            "{stale:?}"
        );
    }
}
