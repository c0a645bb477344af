//! The node's liveness, as the kubelet shows a Node's: a `coordination.k8s.io` Lease named like
//! its MediaNode and owned by it (`conclave_crds::report::lease_renewal`), renewed by
//! server-side apply under the media node's field manager three times per heartbeat timeout
//! of its pool (`lease_renewal_interval`), which the pool watch passes on. The operator reads
//! the renew time; the node's load goes to its MediaNode status only when it changes (see
//! `report`), so nobody watching MediaNodes hears from every node every few seconds.

use std::time::Duration;

use conclave_crds::labels;
use conclave_crds::pool::DEFAULT_HEARTBEAT_TIMEOUT_SECONDS;
use conclave_crds::report::{RENEWALS_PER_TIMEOUT, lease_renewal, lease_renewal_interval};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// How often to renew and for how long a renewal holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cadence {
    pub every: Duration,
    pub holds: Duration,
}

/// The cadence for the pool's heartbeat timeout (None until the pool is read: the CRD's
/// default), unless `--heartbeat-seconds` set one.
pub fn cadence(set: Option<Duration>, pool_timeout_seconds: Option<u32>) -> Cadence {
    match set {
        Some(every) => Cadence {
            every,
            holds: every * RENEWALS_PER_TIMEOUT,
        },
        None => {
            let timeout = pool_timeout_seconds.unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT_SECONDS);
            Cadence {
                every: lease_renewal_interval(timeout),
                holds: Duration::from_secs(u64::from(timeout)),
            }
        }
    }
}

/// Renews the Lease forever, at the cadence of `set` or of the pool's heartbeat timeout as
/// `timeouts` last said. A renewal that takes longer than the interval is abandoned for a
/// fresh one; a new timeout moves the next renewal to one new interval after the last.
pub async fn run(
    client: Client,
    namespace: String,
    name: String,
    pool: String,
    uid: String,
    set: Option<Duration>,
    mut timeouts: watch::Receiver<Option<u32>>,
) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let params = PatchParams::apply(labels::MEDIA_NODE_MANAGER).force();
    let mut last: Option<Instant> = None;
    loop {
        let now_cadence = cadence(set, *timeouts.borrow_and_update());
        if let Some(at) = last {
            tokio::select! {
                () = tokio::time::sleep_until(at + now_cadence.every) => {}
                Ok(()) = timeouts.changed() => continue,
            }
        }
        last = Some(Instant::now());
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let body = lease_renewal(&name, &pool, &uid, now_cadence.holds, &now);
        let patch = Patch::Apply(&body);
        let renew = leases.patch(&name, &params, &patch);
        let every = now_cadence.every;
        match tokio::time::timeout(every, renew).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(node = %name, error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!(node = %name, ?every, "lease renewal timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_sets_the_cadence_unless_the_command_line_did() {
        let s = Duration::from_secs;
        let c = |every, holds| Cadence { every, holds };
        assert_eq!(cadence(None, None), c(s(5), s(15)));
        assert_eq!(cadence(None, Some(60)), c(s(20), s(60)));
        assert_eq!(cadence(Some(s(1)), Some(60)), c(s(1), s(3)));
    }
}
