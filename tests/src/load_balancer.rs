//! A load balancer for one Service of type LoadBalancer, as MetalLB's layer-2 mode is one:
//! the address is added to the interface of the Kubernetes node that runs the Service's pod
//! (so the node answers ARP for it on the node network), the Service's
//! `status.loadBalancer.ingress` names it, and kube-proxy on that node forwards it to the
//! Service's local endpoints. Or, as AWS's Network Load Balancer with IP targets, the status
//! names a hostname (see `dns`) and the address forwards to the pod itself. Dropping the
//! [`LoadBalancer`] removes the address and its forwarding (the Service's status goes with
//! its namespace).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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
    /// Whether it forwards through its own nftables table (a hostname load balancer).
    forwards: bool,
}

/// The nftables table of a load balancer that forwards to its pod itself.
const FORWARD_TABLE: &str = "conclave_lb_forward";

/// Writes `ingress` as the one entry of Service `name`'s `status.loadBalancer.ingress`.
async fn write_ingress(
    services: &Api<Service>,
    name: &str,
    ingress: serde_json::Value,
) -> Result<(), String> {
    let status = json!({"status": {"loadBalancer": {"ingress": [ingress]}}});
    services
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(drop)
        .map_err(|e| format!("writing the load-balancer address of Service {name}: {e}"))
}

impl LoadBalancer {
    /// Gives Service `name` (in `services`' namespace) an address on `node`'s network, served
    /// by `node`.
    pub async fn assign(
        services: &Api<Service>,
        name: &str,
        node: &LocalNode,
    ) -> Result<LoadBalancer, String> {
        let given = Self::address(node).await?;
        let ingress = json!({"ip": given.ip.to_string(), "ipMode": "VIP"});
        write_ingress(services, name, ingress).await?;
        Ok(given)
    }

    /// As AWS's Network Load Balancer with IP targets: the Service's status names `hostname`
    /// instead of an address (the test's DNS server is to resolve it), and the address
    /// forwards each of the Service's ports straight to the pod at `pod_ip` (an nftables
    /// table in the node's namespace, ahead of kube-proxy, which knows no address for it).
    pub async fn assign_hostname(
        services: &Api<Service>,
        name: &str,
        node: &LocalNode,
        hostname: &str,
        pod_ip: Ipv4Addr,
    ) -> Result<LoadBalancer, String> {
        let mut given = Self::address(node).await?;
        let service = services
            .get(name)
            .await
            .map_err(|e| format!("reading Service {name}: {e}"))?;
        let ports = service
            .spec
            .and_then(|s| s.ports)
            .ok_or_else(|| format!("Service {name} has no ports"))?;
        let rules: Vec<String> = ports
            .iter()
            .map(|p| {
                let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                let target = match &p.target_port {
                    Some(IntOrString::Int(t)) => *t,
                    _ => p.port,
                };
                format!(
                    "    ip daddr {} {protocol} dport {} dnat ip to {pod_ip}:{target}",
                    given.ip, p.port
                )
            })
            .collect();
        let script = format!(
            "table ip {FORWARD_TABLE} {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat - 10; policy accept;\n{}\n  }}\n}}\n",
            rules.join("\n")
        );
        exec(&given.netns, &["nft", "-f", "-"], Some(&script)).await?;
        given.forwards = true;
        write_ingress(services, name, json!({"hostname": hostname})).await?;
        Ok(given)
    }

    /// Adds the address to `node`'s interface; dropping what it returns removes it.
    async fn address(node: &LocalNode) -> Result<LoadBalancer, String> {
        let [a, b, c, _] = node.address.octets();
        let ip = Ipv4Addr::new(a, b, c, HOST);
        let netns = node.netns();
        exec(
            &netns,
            &["ip", "addr", "add", &format!("{ip}/32"), "dev", "eth0"],
            None,
        )
        .await?;
        Ok(LoadBalancer {
            netns,
            ip,
            forwards: false,
        })
    }

    /// The address it gave.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        if self.forwards {
            undo(
                &self.netns,
                &["nft", "delete", "table", "ip", FORWARD_TABLE],
            );
        }
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
