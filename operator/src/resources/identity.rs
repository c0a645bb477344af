//! The identity media-node pods run as: one ServiceAccount per pool, bound in the pool's
//! namespace to the `conclave-media-node` ClusterRole the chart installs (read MediaNodes,
//! MediaPools and Conferences; write their status). Per pool, so that an admission policy
//! can tie each pod to its own MediaNode.

use conclave_crds::MediaPool;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::ResourceExt;
use kube::api::ObjectMeta;

use super::{owner_ref, pool_labels};

/// Name of the ServiceAccount (and RoleBinding) of `pool`'s media nodes.
pub fn media_node_account(pool: &str) -> String {
    format!("{pool}-media-node")
}

fn meta(pool: &MediaPool) -> ObjectMeta {
    ObjectMeta {
        name: Some(media_node_account(&pool.name_any())),
        namespace: pool.namespace(),
        labels: Some(pool_labels(pool, "media-node-identity")),
        owner_references: Some(vec![owner_ref(pool)]),
        ..Default::default()
    }
}

/// The ServiceAccount of `pool`'s media nodes.
pub fn service_account(pool: &MediaPool) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(pool),
        ..Default::default()
    }
}

/// Binds the ServiceAccount to `cluster_role` in the pool's namespace only.
pub fn role_binding(pool: &MediaPool, cluster_role: &str) -> RoleBinding {
    RoleBinding {
        metadata: meta(pool),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: cluster_role.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: media_node_account(&pool.name_any()),
            namespace: pool.namespace(),
            api_group: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_crds::MediaPoolSpec;

    #[test]
    fn binding_names_the_pool_account_in_the_pool_namespace() {
        let mut p = MediaPool::new("eu", serde_json::from_str::<MediaPoolSpec>("{}").unwrap());
        p.metadata.namespace = Some("rtc".into());
        let b = role_binding(&p, "conclave-media-node");
        assert_eq!(b.role_ref.name, "conclave-media-node");
        let s = &b.subjects.unwrap()[0];
        assert_eq!(
            (s.name.as_str(), s.namespace.as_deref()),
            ("eu-media-node", Some("rtc"))
        );
        assert_eq!(
            service_account(&p).metadata.name.as_deref(),
            Some("eu-media-node")
        );
    }
}
