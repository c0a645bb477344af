//! One watch per kind the operator reads. Each keeps the cache the controllers read (with
//! `managedFields` dropped: the operator never reads them, and on a Conference written by
//! three field managers they are a large share of the object) and fans every object it
//! touched out to the controllers that react to that kind. Without this every controller
//! opened its own watch and kept its own copy of its main kind, so each Conference was held
//! twice and sent to the operator three times by the API server.

use std::fmt::Debug;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

/// Objects a watch touched (applied or deleted), as a controller takes them.
pub type Feed<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// Starts the watch of `api` and returns its cache and `N` feeds of what it touches. The
/// cache is updated before an object reaches the feeds, so a reconcile triggered by a feed
/// reads at least that version from the cache.
pub fn watch<K, const N: usize>(api: Api<K>, config: watcher::Config) -> (Store<K>, [Feed<K>; N])
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watch_indexed(api, config, |_: &watcher::Event<K>| ())
}

/// [`watch`], with `index` following every event right after the cache (see `index`), so
/// both answer for the same version when a feed delivers an object.
pub fn watch_indexed<K, const N: usize>(
    api: Api<K>,
    config: watcher::Config,
    index: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> (Store<K>, [Feed<K>; N])
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let channels: [_; N] = std::array::from_fn(|_| mpsc::unbounded::<K>());
    let senders: Vec<_> = channels.iter().map(|(s, _)| s.clone()).collect();
    let touched = watcher(api, config)
        .default_backoff()
        .modify(|o: &mut K| o.managed_fields_mut().clear())
        .reflect(writer)
        .map(move |event| {
            if let Ok(event) = &event {
                index(event);
            }
            event
        })
        .touched_objects();
    tokio::spawn(async move {
        let mut touched = std::pin::pin!(touched);
        while let Some(item) = touched.next().await {
            match item {
                Ok(obj) => {
                    for s in &senders {
                        // A closed feed belongs to a controller that stopped at shutdown.
                        let _ = s.unbounded_send(obj.clone());
                    }
                }
                Err(e) => warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying"),
            }
        }
    });
    (reader, channels.map(|(_, r)| r.map(Ok).boxed()))
}
