//! Child objects of a pool, built by pure functions: the pool Secret, MediaNodes, their Pods
//! and (with NodePort exposure) their Services, and the TURN Deployment and Service (with TLS
//! from `turn_tls`). Unit-tested on their output; the controllers apply them with
//! server-side apply.

pub mod identity;
pub mod media_node;
pub mod node_service;
pub mod secret;
pub mod turn;
pub mod turn_tls;

use std::collections::BTreeMap;

use conclave_crds::{MediaPool, labels};
use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// A short, stable hash of `bytes` (FNV-1a, as Kubernetes hashes pod templates): the same
/// bytes hash the same in every operator build, so a changed hash means changed content.
pub fn content_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// Owner reference making `owner` the controller of a child (deletion cascades).
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Labels every child of `pool` carries, plus the component.
pub fn pool_labels(pool: &MediaPool, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::POOL.to_owned(), pool.name_any()),
        (labels::COMPONENT.to_owned(), component.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "conclave".to_owned(),
        ),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "conclave".to_owned(),
        ),
    ])
}

/// The pod securityContext of the media-node and relay pods: a non-root user (the images'
/// 65532) and the runtime's default seccomp profile.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The container securityContext of the media-node and relay containers: no capabilities, no
/// privilege escalation, a read-only root filesystem (neither writes files).
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..Default::default()
    }
}
