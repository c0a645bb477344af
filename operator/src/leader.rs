//! Leader election with a coordination.k8s.io Lease, so that two operator replicas can run
//! and only one acts. The leader renews the Lease every third of its duration; a follower
//! takes it over when it expired. A leader that fails to renew before expiry stops acting
//! (the process exits and is restarted as a follower), as controller-runtime does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

use crate::error::{KubeContext, Result, is_conflict, is_not_found};

/// A Lease held (or sought) by this replica.
pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: i32,
}

impl LeaderLease {
    /// A lease `name` in `namespace`, held for `duration` seconds, as `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: u32) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration: i32::try_from(duration).unwrap_or(15),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            if self.try_acquire().await? {
                info!(lease = %self.name, identity = %self.identity, "became leader");
                return Ok(());
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease duration; returns then.
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            match self.try_acquire().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = %self.name, "lease taken by another replica");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "lease renewal failed");
                    if last_renewed.elapsed() > Duration::from_secs(self.duration as u64) {
                        return;
                    }
                }
            }
        }
    }

    fn retry_period(&self) -> Duration {
        Duration::from_secs((self.duration as u64 / 3).max(1))
    }

    /// One attempt: create the lease, renew it if ours, or take it if expired.
    async fn try_acquire(&self) -> Result<bool> {
        let now = Timestamp::now();
        let existing = match self.api.get(&self.name).await {
            Ok(l) => Some(l),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e).action(|| format!("reading lease {}", self.name)),
        };
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e).action(|| format!("creating lease {}", self.name)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec
            .renew_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let expired = now.as_second() - renewed.as_second()
            > i64::from(spec.lease_duration_seconds.unwrap_or(self.duration));
        if holder != self.identity && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
        let acquired = if holder == self.identity {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        // Replace carries the resourceVersion read above, so two contenders cannot both win.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e).action(|| format!("updating lease {}", self.name)),
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}
