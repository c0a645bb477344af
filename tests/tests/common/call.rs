//! A call of the operator's making, as an application would set one up: a Conference placed
//! and Active with join info, the pool's keys, and join links with a minted token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conclave_crds::token::{JoinClaims, mint};
use conclave_crds::{Conference, ConferencePhase, labels};
use conclave_testenv::{TestEnv, TestNamespace, wait};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use serde_json::json;

/// How long a conference may take to become Active.
const TIMEOUT: Duration = Duration::from_secs(90);

/// Conference `name` of `pool` for `max` participants, placed and Active with join info.
pub async fn conference_named(
    env: &TestEnv,
    ns: &TestNamespace,
    pool: &str,
    name: &str,
    max: u32,
) -> Conference {
    let conf: Conference = serde_json::from_value(json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": name}, "spec": {"pool": pool, "maxParticipants": max}
    }))
    .unwrap();
    ns.api::<Conference>()
        .create(&PostParams::default(), &conf)
        .await
        .unwrap();
    active_named(env, ns, name, None).await
}

/// Conference `name` once Active with join info, on another node than `not_on` when given.
pub async fn active_named(
    env: &TestEnv,
    ns: &TestNamespace,
    name: &str,
    not_on: Option<&str>,
) -> Conference {
    wait::until("conference Active with join info", TIMEOUT, || async {
        let c = ns.api::<Conference>().get(name).await.ok()?;
        let s = c.status.clone()?;
        let placed = s.phase == Some(ConferencePhase::Active)
            && s.join.is_some()
            && s.media_node.is_some()
            && s.media_node.as_deref() != not_on;
        placed.then_some(c)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", super::report(env, ns)))
}

/// The signaling URL the conference publishes.
pub fn join_url(c: &Conference) -> String {
    c.status.clone().unwrap().join.unwrap().signaling_url
}

/// The keys of pool `pool`.
pub async fn keys_of(ns: &TestNamespace, pool: &str) -> (Vec<u8>, Vec<u8>) {
    let secret = ns
        .api::<Secret>()
        .get(&labels::pool_secret_name(pool))
        .await
        .unwrap();
    let data = secret.data.unwrap();
    (
        data[labels::SECRET_JOIN_KEY].0.clone(),
        data[labels::SECRET_TURN_SECRET].0.clone(),
    )
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A join token for `identity` in `conference`, valid for an hour, signed with the pool's
/// `key`.
pub fn token(conference: &str, key: &[u8], identity: &str) -> String {
    mint(
        key,
        &JoinClaims {
            conference: conference.into(),
            identity: identity.into(),
            exp: now() + 3600,
            publish: true,
        },
    )
}

/// The join link of `identity` to `conference`.
pub fn link_to(
    conference: &str,
    signaling_url: &str,
    key: &[u8],
    identity: &str,
    extra: &str,
) -> String {
    let token = token(conference, key, identity);
    let page = signaling_url
        .replacen("wss://", "https://", 1)
        .replacen("ws://", "http://", 1)
        .trim_end_matches("rtc")
        .to_owned();
    format!("{page}?url={signaling_url}&token={token}&quality=low{extra}")
}
