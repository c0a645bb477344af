//! The three controllers (pool, node, conference) and what they share: pacing passes,
//! applying status under the operator's field manager, publishing Events, and the error
//! policy.

pub mod conference;
pub mod node;
pub mod pool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use conclave_crds::labels;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::error::{Error, KubeContext, Result};
use crate::pacing::Pacer;
use crate::state::{Context, key};

/// What to do instead of a pass over `obj` under `pacer`, if anything: wait for a change when
/// it is being deleted (its pacing is forgotten), or come back when its interval ends.
pub fn paced<K: ResourceExt>(pacer: &Pacer, obj: &K) -> Option<Action> {
    let k = key(obj);
    if obj.meta().deletion_timestamp.is_some() {
        pacer.forget(&k);
        return Some(Action::await_change());
    }
    pacer.admit(&k, Instant::now()).err().map(Action::requeue)
}

/// Server-side apply parameters of the operator (forcing: it owns what it applies).
pub fn apply_params() -> PatchParams {
    PatchParams::apply(labels::OPERATOR_MANAGER).force()
}

/// Applies `status` (only the fields the operator owns) to the status of `obj`.
pub async fn apply_status<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    apply_status_at(ctx, obj, status, None).await.map(|_| ())
}

/// Applies `status` to the status of `obj` as [`apply_status`] does, only if the object is
/// still at `resource_version` when one is given (the API server refuses it with a conflict
/// otherwise: a write decided on an older object, or by a leader that was paused while
/// another took over, never lands); returns the object as written.
pub async fn apply_status_at<K, S>(
    ctx: &Context,
    obj: &K,
    status: &S,
    resource_version: Option<&str>,
) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let mut patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(rv) = resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": rv});
    }
    let applied = api
        .patch_status(&obj.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
        .action(|| format!("applying status of {} {}", K::kind(&()), obj.name_any()))?;
    Ok(applied)
}

/// Publishes an Event about `obj`; failures are logged, never fatal.
pub async fn event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    warning: bool,
    reason: &str,
    note: String,
) {
    let regarding = obj.object_ref(&());
    if let Err(e) = ctx
        .recorder
        .publish(&regarding, warning, reason, note)
        .await
    {
        warn!(error = %e, reason, "publishing event failed");
    }
}

/// Retry policy shared by the controllers: count the error, back off a little. A conflict
/// means the object changed after the cache saw it, so the watch is about to deliver the new
/// version, and that triggers the next reconcile; retrying sooner would only write again
/// against the same stale version (at a busy moment, when the watch lags by seconds, one
/// conference then cost a refused write every second). The requeue is the fallback if the
/// watch never delivers.
pub fn error_policy<K>(
    controller: &'static str,
) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_obj, error, ctx| {
        ctx.metrics.error(controller, error.kind());
        warn!(controller, %error, "reconcile failed");
        Action::requeue(Duration::from_secs(if error.kind() == "conflict" {
            CONFLICT_FALLBACK_SECONDS
        } else {
            5
        }))
    }
}

/// How long after a conflict a reconcile runs again if no watch event brought it sooner.
const CONFLICT_FALLBACK_SECONDS: u64 = 15;
