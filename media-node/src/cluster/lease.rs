//! The node's liveness, as the kubelet shows a Node's: a `coordination.k8s.io` Lease named like
//! its MediaNode and owned by it (`conclave_crds::report::lease_renewal`), renewed every
//! heartbeat interval by server-side apply under the media node's field manager. The operator
//! reads the renew time; the node's load goes to its MediaNode status only when it changes
//! (see `report`), so nobody watching MediaNodes hears from every node every few seconds.

use std::time::Duration;

use conclave_crds::labels;
use conclave_crds::report::lease_renewal;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// Renews the Lease every `interval` forever. A renewal that takes longer than the interval
/// is abandoned for a fresh one.
pub async fn run(
    client: Client,
    namespace: String,
    name: String,
    pool: String,
    uid: String,
    interval: Duration,
) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let params = PatchParams::apply(labels::MEDIA_NODE_MANAGER).force();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let body = lease_renewal(&name, &pool, &uid, interval * 3, &now);
        let patch = Patch::Apply(&body);
        let renew = leases.patch(&name, &params, &patch);
        match tokio::time::timeout(interval, renew).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(node = %name, error = %e, "lease renewal failed"),
            Err(_) => tracing::warn!(node = %name, ?interval, "lease renewal timed out"),
        }
    }
}
