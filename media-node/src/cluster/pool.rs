//! Watches the node's MediaPool for the ICE servers clients get (status.turn.urls), the
//! TURN credential lifetime (spec.turn.credentialTtlSeconds) and the heartbeat timeout the
//! Lease's renewals follow (spec.mediaNode.heartbeatTimeoutSeconds).

use std::sync::Arc;

use conclave_crds::MediaPool;
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;

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
pub async fn run(
    client: Client,
    namespace: String,
    name: String,
    state: Arc<NodeState>,
    heartbeat_timeout: watch::Sender<Option<u32>>,
) {
    let api: Api<MediaPool> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = stream.next().await {
        match item {
            Ok(pool) => {
                state.set_ice(ice_config(&pool));
                heartbeat_timeout.send_if_modified(|t| {
                    let now = Some(pool.spec.media_node.heartbeat_timeout_seconds);
                    std::mem::replace(t, now) != now
                });
            }
            Err(e) => tracing::warn!(pool = %name, error = %e, "MediaPool watch"),
        }
    }
}
