//! The pool Secret: the join-token signing key and the TURN shared secret, generated once
//! from the OS random source. It is created when missing and never rewritten, so a running
//! pool's keys are never rotated by accident.

use std::collections::BTreeMap;

use base64::Engine;
use conclave_crds::{MediaPool, labels};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use rand::RngCore;

use super::{owner_ref, pool_labels};

/// A new Secret with fresh random keys for `pool`.
pub fn pool_secret(pool: &MediaPool) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        labels::SECRET_JOIN_KEY.to_owned(),
        ByteString(random_key().into_bytes()),
    );
    data.insert(
        labels::SECRET_TURN_SECRET.to_owned(),
        ByteString(random_key().into_bytes()),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(labels::pool_secret_name(&pool.name_any())),
            namespace: pool.namespace(),
            labels: Some(pool_labels(pool, "keys")),
            owner_references: Some(vec![owner_ref(pool)]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// 32 random bytes, base64url: printable so it can be passed in env and used as HMAC key.
fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The keys a Secret must hold, and which are missing from `secret`.
pub fn missing_keys(secret: &Secret) -> Vec<&'static str> {
    let data = secret.data.clone().unwrap_or_default();
    [labels::SECRET_JOIN_KEY, labels::SECRET_TURN_SECRET]
        .into_iter()
        .filter(|k| data.get(*k).is_none_or(|v| v.0.is_empty()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::MediaPoolSpec;

    fn pool() -> MediaPool {
        let mut p = MediaPool::new(
            "default",
            serde_json::from_str::<MediaPoolSpec>("{}").unwrap(),
        );
        p.metadata.namespace = Some("conf".into());
        p.metadata.uid = Some("u1".into());
        p
    }

    #[test]
    fn secret_holds_distinct_random_keys_owned_by_the_pool() {
        let s = pool_secret(&pool());
        let data = s.data.clone().unwrap();
        let join = &data[labels::SECRET_JOIN_KEY].0;
        let turn = &data[labels::SECRET_TURN_SECRET].0;
        assert_eq!(join.len(), 43);
        assert_ne!(join, turn);
        assert_ne!(
            pool_secret(&pool()).data.unwrap()[labels::SECRET_JOIN_KEY].0,
            *join
        );
        assert_eq!(s.metadata.name.as_deref(), Some("default-conclave-keys"));
        assert_eq!(s.metadata.owner_references.unwrap()[0].uid, "u1");
        assert!(missing_keys(&pool_secret(&pool())).is_empty());
        assert_eq!(missing_keys(&Secret::default()).len(), 2);
    }
}
