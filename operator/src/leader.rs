//! Leader election with a coordination.k8s.io Lease, so that two operator replicas can run
//! and only one acts. The leader renews the Lease every third of its duration, each call
//! bounded by that period; a follower takes it over when it expired. A leader that cannot
//! renew stops acting at the renew deadline (two thirds of the duration), before the Lease
//! expires for the others: its write fence (`crate::fence`) closes and the process exits to be
//! restarted as a follower, as controller-runtime does. On shutdown it releases the Lease, so
//! the standby takes over at once instead of after expiry.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

use crate::error::{Error, KubeContext, Result, is_conflict, is_not_found};
use crate::fence::Fence;

/// What one attempt on the lease found.
enum Attempt {
    /// This replica holds the lease (created, renewed or taken over).
    Acquired,
    /// Another replica holds it: its identity, when the lease was read.
    HeldBy(Option<String>),
}

/// A Lease held (or sought) by this replica.
pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: i32,
    fence: Fence,
}

impl LeaderLease {
    /// A lease `name` in `namespace`, held for `duration` seconds, as `identity`; `fence`
    /// opens while it is held.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: u32,
        fence: Fence,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration: i32::try_from(duration).unwrap_or(15),
            fence,
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<()> {
        let mut seen_holder = None;
        loop {
            let started = tokio::time::Instant::now();
            match self.try_acquire().await? {
                Attempt::Acquired => {
                    self.fence.hold_until(started + self.renew_deadline());
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Attempt::HeldBy(Some(holder)) if seen_holder.as_ref() != Some(&holder) => {
                    info!(lease = %self.name, %holder, "standing by: the leader's log has the controllers' work");
                    seen_holder = Some(holder);
                }
                Attempt::HeldBy(_) => {}
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews the lease until another replica holds it or renewal failed up to the renew
    /// deadline; closes the fence and returns then.
    pub async fn hold(&self) {
        let mut held_since_attempt = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.retry_period()).await;
            let started = tokio::time::Instant::now();
            match self.try_acquire().await {
                Ok(Attempt::Acquired) => {
                    held_since_attempt = started;
                    self.fence.hold_until(started + self.renew_deadline());
                }
                Ok(Attempt::HeldBy(holder)) => {
                    self.fence.close();
                    warn!(lease = %self.name, ?holder, "lease taken by another replica");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "lease renewal failed");
                    if held_since_attempt.elapsed() >= self.renew_deadline() {
                        self.fence.close();
                        warn!(lease = %self.name, "renew deadline passed: no longer acting as leader");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up if this replica holds it: the holder is cleared and the lease
    /// expires a second later, so the standby takes over without waiting out the duration.
    pub async fn release(&self) {
        self.fence.close();
        let release = async {
            let mut lease = self.api.get(&self.name).await?;
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(false);
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
                .map(|_| true)
        };
        match tokio::time::timeout(self.retry_period(), release).await {
            Ok(Ok(true)) => info!(lease = %self.name, "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => warn!(lease = %self.name, error = %e, "could not release the lease"),
            Err(_) => warn!(lease = %self.name, "could not release the lease: no answer in time"),
        }
    }

    fn retry_period(&self) -> Duration {
        Duration::from_secs((self.duration as u64 / 3).max(1))
    }

    /// How long after a successful renewal this replica still acts: two thirds of the
    /// duration, so it stops before the others may take the lease.
    fn renew_deadline(&self) -> Duration {
        Duration::from_millis(self.duration as u64 * 2000 / 3)
    }

    /// One attempt, bounded by the retry period.
    async fn try_acquire(&self) -> Result<Attempt> {
        let period = self.retry_period();
        tokio::time::timeout(period, self.attempt())
            .await
            .unwrap_or_else(|_| {
                Err(Error::Timeout(format!(
                    "lease {}: no answer within {period:?}",
                    self.name
                )))
            })
    }

    /// One attempt: create the lease, renew it if ours, or take it if expired.
    async fn attempt(&self) -> Result<Attempt> {
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
                Ok(_) => Ok(Attempt::Acquired),
                Err(e) if is_conflict(&e) => Ok(Attempt::HeldBy(None)),
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
            return Ok(Attempt::HeldBy(Some(holder)));
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
            Ok(_) => Ok(Attempt::Acquired),
            Err(e) if is_conflict(&e) => Ok(Attempt::HeldBy(None)),
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
