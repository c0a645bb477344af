//! A load balancer for one Service of type LoadBalancer, as MetalLB's layer-2 mode is one:
//! the address is added to the interface of the Kubernetes node that runs the Service's pod
//! (so the node answers ARP for it on the node network), the Service's
//! `status.loadBalancer.ingress` names it, and kube-proxy on that node forwards it to the
//! Service's local endpoints. Dropping the [`LoadBalancer`] removes the address (the Service's
//! status goes with its namespace).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::netns::{exec, undo};
use crate::testenv::LocalNode;

/// The host number, on the node network, of the address this load balancer gives: above
/// the nodes' (10 + i), below the broadcast.
const HOST: u8 = 240;

/// The address given to one Service, until dropped.
#[derive(Debug)]
pub struct LoadBalancer {
    netns: String,
    ip: Ipv4Addr,
}

impl LoadBalancer {
    /// Gives Service `name` (in `services`' namespace) an address on `node`'s network, served
    /// by `node`.
    pub async fn assign(
        services: &Api<Service>,
        name: &str,
        node: &LocalNode,
    ) -> Result<LoadBalancer, String> {
        let [a, b, c, _] = node.address.octets();
        let ip = Ipv4Addr::new(a, b, c, HOST);
        let netns = node.netns();
        exec(
            &netns,
            &["ip", "addr", "add", &format!("{ip}/32"), "dev", "eth0"],
            None,
        )
        .await?;
        // From here on, dropping it removes the address (a failed status write too).
        let given = LoadBalancer { netns, ip };
        let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}});
        services
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(|e| format!("writing the load-balancer address of Service {name}: {e}"))?;
        Ok(given)
    }

    /// The address it gave.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        undo(
            &self.netns,
            &[
                "ip",
                "addr",
                "del",
                &format!("{}/32", self.ip),
                "dev",
                "eth0",
            ],
        );
    }
}
