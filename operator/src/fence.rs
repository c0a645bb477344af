//! Fencing of the leader's writes. The operator may write to the API only while its Lease is
//! known to be held: until the renew deadline after the last successful renewal, which comes
//! before the Lease expires for the other replicas. A leader that was paused (a frozen VM, a
//! stopped process, a long GC) wakes past that deadline, and its pending reconciles find every
//! write refused instead of overwriting the new leader's decisions. A layer of the kube client
//! stack; reads pass.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Method, Request};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

/// Until when writes are allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// No leader election: this replica always writes.
    Unfenced,
    /// Writes are allowed before this instant (a past one once leadership is lost).
    HeldUntil(Instant),
}

/// Whether a request with `method` may go to the API server at `now`.
pub fn allows(lease: Lease, method: &Method, now: Instant) -> bool {
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
    match lease {
        _ if reads.contains(method) => true,
        Lease::Unfenced => true,
        Lease::HeldUntil(until) => now < until,
    }
}

/// The fence shared by the client stack and the leader election.
#[derive(Clone, Debug)]
pub struct Fence(Arc<Mutex<Lease>>);

impl Fence {
    /// A fence that lets everything through (no leader election).
    pub fn unfenced() -> Self {
        Self(Arc::new(Mutex::new(Lease::Unfenced)))
    }

    /// A fence that refuses writes until leadership is acquired.
    pub fn closed() -> Self {
        Self(Arc::new(Mutex::new(Lease::HeldUntil(Instant::now()))))
    }

    /// Allows writes until `until`.
    pub fn hold_until(&self, until: Instant) {
        *crate::state::lock(&self.0) = Lease::HeldUntil(until);
    }

    /// Refuses writes from now on.
    pub fn close(&self) {
        self.hold_until(Instant::now());
    }

    fn lease(&self) -> Lease {
        *crate::state::lock(&self.0)
    }
}

/// The client-stack layer that refuses writes outside the fence.
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

/// A kube client service behind the fence.
#[derive(Clone, Debug)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

/// Why a write was refused, as the error the caller's API call returns.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path} refused: this replica no longer holds the leader Lease")]
pub struct NotLeader {
    method: Method,
    path: String,
}

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !allows(self.fence.lease(), request.method(), Instant::now()) {
            let refused = NotLeader {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
            };
            tracing::warn!("{refused}");
            return Box::pin(async move { Err(refused.into()) });
        }
        let response = self.inner.call(request);
        Box::pin(async move { response.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reads_always_pass_writes_only_while_the_lease_is_held() {
        let now = Instant::now();
        let held = Lease::HeldUntil(now + Duration::from_secs(10));
        let lapsed = Lease::HeldUntil(now - Duration::from_millis(1));
        for write in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(allows(held, &write, now), "{write}");
            assert!(!allows(lapsed, &write, now), "{write}");
            assert!(allows(Lease::Unfenced, &write, now), "{write}");
            assert!(
                !allows(held, &write, now + Duration::from_secs(10)),
                "{write}"
            );
        }
        assert!(allows(lapsed, &Method::GET, now));
    }

    #[tokio::test]
    async fn the_service_refuses_writes_outside_the_fence() {
        let fence = Fence::closed();
        let inner = tower::service_fn(|_: Request<()>| async { Ok::<_, BoxError>("sent") });
        let mut service = FenceLayer(fence.clone()).layer(inner);
        let patch = || {
            Request::patch("/apis/conclave.dev/v1alpha1/x")
                .body(())
                .unwrap()
        };
        let refused = service.call(patch()).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("no longer holds the leader Lease"),
            "{refused}"
        );
        let get = Request::get("/api/v1/pods").body(()).unwrap();
        assert_eq!(service.call(get).await.unwrap(), "sent");
        fence.hold_until(Instant::now() + Duration::from_secs(5));
        assert_eq!(service.call(patch()).await.unwrap(), "sent");
        fence.close();
        assert!(service.call(patch()).await.is_err());
    }
}
