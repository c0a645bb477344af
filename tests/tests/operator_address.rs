//! A media node takes conferences only once its published address answers: with the
//! `conclave.dev/public-ip` annotation of its Kubernetes node pointing at another node, the
//! operator's STUN probe of that address and the pool's UDP port goes unanswered, the
//! MediaNode stays Starting with an `AddressReachable` condition naming the address and where
//! it comes from, and the conference waits unplaced; removing the annotation lets the probe
//! through, the node becomes Ready and the conference is placed on it. With ICE-TCP, a TCP
//! port that does not answer (dropped on its Node) keeps the node out of placement the same
//! way, and opening it lets the node take the conference. A load balancer that names a host
//! is published at the address the name resolves to, once it resolves. Its own binary: the
//! annotation changes a Node every test of a binary shares (the others use another Node).

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::fixtures::{Ports, conference, create, pool, ports};
use conclave_crds::{Conference, ConferencePhase, MediaNode, MediaNodePhase, labels};
use conclave_testenv::dns::DnsServer;
use conclave_testenv::load_balancer::LoadBalancer;
use conclave_testenv::{TestNamespace, wait};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Sets the public-ip annotation of a Node, and removes it when dropped (a failing test too).
struct PublicIpAnnotation {
    nodes: Api<Node>,
    node: String,
}

impl PublicIpAnnotation {
    async fn set(client: Client, node: &str, ip: Option<&str>) -> Self {
        let nodes: Api<Node> = Api::all(client);
        let patch = json!({"metadata": {"annotations": {labels::PUBLIC_IP: ip}}});
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        Self {
            nodes,
            node: node.to_owned(),
        }
    }
}

impl Drop for PublicIpAnnotation {
    fn drop(&mut self) {
        let patch = json!({"metadata": {"annotations": {labels::PUBLIC_IP: null}}});
        let (nodes, node) = (self.nodes.clone(), self.node.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = nodes
                    .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
            });
        });
    }
}

/// The pool's one MediaNode and its AddressReachable message, once the condition is
/// `wanted` (`what` says how, for a timeout).
async fn address_condition(
    ns: &TestNamespace,
    what: &str,
    wanted: impl Fn(&Condition) -> bool,
) -> (MediaNode, String) {
    wait::until(
        &format!("a MediaNode whose AddressReachable {what}"),
        TIMEOUT,
        || async {
            let nodes = ns.api::<MediaNode>().list(&Default::default()).await.ok()?;
            let node = nodes.items.into_iter().next()?;
            let message = node
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == labels::condition::ADDRESS_REACHABLE && wanted(c))?
                .message
                .clone();
            Some((node, message))
        },
    )
    .await
    .unwrap()
}

/// The pool's one MediaNode, once its AddressReachable condition has status `status`.
async fn reachable_condition(ns: &TestNamespace, status: &str) -> (MediaNode, String) {
    address_condition(ns, &format!("is {status}"), |c| c.status == status).await
}

/// The pool's one MediaNode, once its AddressReachable condition says `words`.
async fn condition_saying(ns: &TestNamespace, words: &str) -> (MediaNode, String) {
    address_condition(ns, &format!("says {words:?}"), |c| {
        c.message.contains(words)
    })
    .await
}

/// Creates pool `pinned` (one media node, on Kubernetes node `node`, with `media_node` over its
/// mediaNode spec) and a conference `standup` of it.
async fn pinned_pool_with_standup(ns: &TestNamespace, ports: Ports, node: &str, media_node: Value) {
    let mut spec = json!({
        "scaling": {"minNodes": 1, "maxNodes": 1, "bufferParticipants": 0},
        "mediaNode": {"nodeSelector": {"kubernetes.io/hostname": node}}
    });
    spec["mediaNode"]
        .as_object_mut()
        .unwrap()
        .extend(media_node.as_object().unwrap().clone());
    create(ns, &pool("pinned", ports, spec)).await;
    create(ns, &conference("standup", "pinned", 4, json!({}))).await;
}

/// Asserts media node `node` is held back from Ready while its address does not answer, and
/// the conference `standup` is not placed on it.
async fn held_back(ns: &TestNamespace, node: &MediaNode) {
    assert_eq!(
        node.status.clone().unwrap().phase,
        Some(MediaNodePhase::Starting),
        "not Ready while its address does not answer"
    );
    let waiting = ns.api::<Conference>().get("standup").await.unwrap();
    let status = waiting.status.clone().unwrap_or_default();
    assert_eq!(status.media_node, None, "placed on an unreachable node");
    assert_ne!(status.phase, Some(ConferencePhase::Active));
}

/// The media node the conference `standup` is Active on, once it is.
async fn placed(env: &conclave_testenv::TestEnv, ns: &TestNamespace) -> String {
    wait::until("the conference placed on the node", TIMEOUT, || async {
        let c = ns.api::<Conference>().get("standup").await.ok()?;
        let s = c.status?;
        (s.phase == Some(ConferencePhase::Active)).then_some(s.media_node?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", common::report(env, ns)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_published_address_does_not_answer_takes_no_conference_until_fixed() {
    let (env, ns, _operator) = common::start("address").await;
    let [target, elsewhere, ..] = env.nodes() else {
        panic!("the test cluster has at least two nodes");
    };
    let wrong = elsewhere.address.to_string();
    let annotation = PublicIpAnnotation::set(ns.client(), &target.name, Some(&wrong)).await;
    let ports = ports();
    pinned_pool_with_standup(&ns, ports, &target.name, json!({})).await;

    // The operator probed the wrong address and says so; the node is not Ready and the
    // conference is not placed.
    let (node, message) = reachable_condition(&ns, "False").await;
    println!("AddressReachable False: {message}");
    let probed = format!("{wrong}:{}/udp", ports.udp);
    assert!(message.contains(&probed), "{message} names {probed}");
    assert!(
        message.contains(&format!("annotation of Node {}", target.name)),
        "{message}"
    );
    held_back(&ns, &node).await;

    // Fixed: the probe reaches the node at its Node's own address.
    drop(annotation);
    let (node, message) = reachable_condition(&ns, "True").await;
    println!("AddressReachable True: {message}");
    assert!(
        message.contains(&format!("{}:{}/udp", target.address, ports.udp)),
        "{message}"
    );
    assert_eq!(placed(env, &ns).await, node.name_any());
}

/// TCP to `port` forwarded into pods of a Kubernetes node dropped (an nftables table in the
/// node's namespace) until dropped, a failing test too.
struct TcpBlocked {
    netns: String,
}

const TCP_BLOCK_TABLE: &str = "conclave_tcp_block";

impl TcpBlocked {
    async fn start(netns: &str, port: u16) -> TcpBlocked {
        let script = format!(
            "table inet {TCP_BLOCK_TABLE} {{
  chain wire {{
    type filter hook forward priority -300; policy accept;
    tcp dport {port} drop
  }}
}}
"
        );
        conclave_testenv::netns::exec(netns, &["nft", "-f", "-"], Some(&script))
            .await
            .unwrap();
        TcpBlocked {
            netns: netns.to_owned(),
        }
    }
}

impl Drop for TcpBlocked {
    fn drop(&mut self) {
        conclave_testenv::netns::undo(
            &self.netns,
            &["nft", "delete", "table", "inet", TCP_BLOCK_TABLE],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_ice_tcp_port_does_not_answer_takes_no_conference_until_opened() {
    let (env, ns, _operator) = common::start("address-tcp").await;
    // Another node than the other test's, whose annotation it changes.
    let target = env.nodes().last().unwrap().clone();
    let ports = ports();
    let tcp_port = ports.udp + 1;
    let blocked = TcpBlocked::start(&target.netns(), tcp_port).await;
    pinned_pool_with_standup(&ns, ports, &target.name, json!({"tcpPort": tcp_port})).await;

    // Its UDP port answers, its TCP port does not: not Ready, nothing placed, and the
    // condition names the TCP port and the way out.
    let (node, message) = reachable_condition(&ns, "False").await;
    println!("AddressReachable False: {message}");
    let probed = format!("{}:{tcp_port}/tcp", target.address);
    assert!(message.contains(&probed), "{message} names {probed}");
    assert!(
        message.contains("unset spec.mediaNode.tcpPort"),
        "{message}"
    );
    held_back(&ns, &node).await;

    // Opened: both ports answer, the node is Ready and takes the conference.
    drop(blocked);
    let (node, message) = reachable_condition(&ns, "True").await;
    println!("AddressReachable True: {message}");
    assert!(
        message.contains(&format!(
            "{}:{}/udp and {tcp_port}/tcp answer",
            target.address, ports.udp
        )),
        "{message}"
    );
    assert_eq!(placed(env, &ns).await, node.name_any());
}

/// A load balancer that names a host instead of an address (as AWS's Network Load Balancer
/// does): while the name resolves to nothing, or to an address that does not answer, the node
/// takes no conference and says why; once the name also gives the load balancer's address,
/// the operator moves on to it, its probe answers through the load balancer, and the
/// conference is placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_that_names_a_host_is_published_at_the_address_it_resolves_to() {
    let dns = DnsServer::start().await.unwrap();
    let dns_server = format!("--dns-server={}", dns.address());
    let (env, ns, _operator) = common::start_with("address-lb-host", &[&dns_server]).await;
    // Another node than the annotation test's.
    let target = env.nodes().last().unwrap().clone();
    let ports = ports();
    pinned_pool_with_standup(
        &ns,
        ports,
        &target.name,
        json!({"exposure": "LoadBalancer"}),
    )
    .await;

    let (node, message) = condition_saying(&ns, "has no load-balancer address yet").await;
    let name = node.name_any();
    println!("{name} waits: {message}");
    let host = format!("{name}.lb.conclave.test");
    let pod_ip = wait::until("the media node's pod address", TIMEOUT, || async {
        let pod = ns.api::<Pod>().get(&name).await.ok()?;
        pod.status?.pod_ip?.parse().ok()
    })
    .await
    .unwrap();
    let services = ns.api::<Service>();
    let load_balancer = LoadBalancer::assign_hostname(&services, &name, &target, &host, pod_ip)
        .await
        .unwrap();

    // The name resolves to nothing yet: the operator says so, and the node waits.
    let unresolved = format!("gave the hostname {host}, which resolves to no address");
    let (node, message) = condition_saying(&ns, &unresolved).await;
    println!("{name} waits: {message}");
    held_back(&ns, &node).await;

    // The name gives an address that reaches nothing: published there, its probe goes
    // unanswered, and the node still waits.
    let ip = load_balancer.ip();
    let [a, b, c, d] = ip.octets();
    let nowhere = Ipv4Addr::new(a, b, c, d - 1);
    dns.set(&host, &[nowhere]);
    let silent = format!("{nowhere}:{}/udp did not answer", ports.udp);
    let (node, message) = condition_saying(&ns, &silent).await;
    println!("{name} waits: {message}");
    assert!(message.contains(&host), "{message} names {host}");
    held_back(&ns, &node).await;

    // The name gives the load balancer's address too, after that one: the operator moves on
    // to it, and its probe answers through the load balancer.
    dns.set(&host, &[nowhere, ip]);
    let (node, message) = reachable_condition(&ns, "True").await;
    println!("AddressReachable True: {message}");
    assert!(
        message.contains(&format!("{ip}:{}/udp answers", ports.udp)),
        "{message}"
    );
    let addresses = node.status.unwrap().addresses.unwrap();
    assert_eq!(addresses.public, Some(ip.to_string()));
    assert_eq!(addresses.udp_port, Some(ports.udp), "the pool's own port");
    assert_eq!(placed(env, &ns).await, name);
}
