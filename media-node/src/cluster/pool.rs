//! Watches the node's MediaPool for the ICE servers clients get (status.turn.urls) and the
//! TURN credential lifetime (spec.turn.credentialTtlSeconds).

use std::sync::Arc;

use conclave_crds::MediaPool;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::node::{IceConfig, NodeState};

/// The ICE configuration a pool gives its clients.
pub fn ice_config(pool: &MediaPool) -> IceConfig {
    let urls = if pool.spec.turn.enabled {
        pool.relay_urls().to_vec()
    } else {
        Vec::new()
    };
    IceConfig {
        urls,
        credential_ttl_seconds: u64::from(pool.spec.turn.credential_ttl_seconds),
    }
}

/// Watches MediaPool `name` forever.
pub async fn run(client: Client, namespace: String, name: String, state: Arc<NodeState>) {
    let api: Api<MediaPool> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(pool) => state.set_ice(ice_config(&pool)),
            Err(e) => tracing::warn!(pool = %name, error = %e, "MediaPool watch"),
        }
    }
}
