//! The demo's steps after the cluster is up, in order: install the chart (operator pods from
//! the operator image under the chart's RBAC, and a default pool with one media node per
//! node), create a conference, and print a browser join link per participant.

use std::time::Duration;

use anyhow::Context;
use conclave_crds::token::{JoinClaims, mint};
use conclave_crds::{Conference, ConferencePhase, labels};
use conclave_testenv::helm::Helm;
use conclave_testenv::testenv::nodes;
use conclave_testenv::{LocalNode, wait};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

/// Namespace (and Helm release) the demo installs Conclave into.
pub const NAMESPACE: &str = "conclave";
const RELEASE: &str = "conclave";
const POOL: &str = "default";
const CONFERENCE: &str = "standup";
/// The people the join links are for, one link each.
const PARTICIPANTS: [&str; 2] = ["alice", "bob"];

/// What the steps can use.
pub struct Demo {
    pub client: Client,
    pub kubeconfig: std::path::PathBuf,
    pub nodes: Vec<LocalNode>,
    pub helm: Helm,
}

/// Runs every step in order.
pub async fn run(demo: &Demo) -> anyhow::Result<()> {
    install_chart(demo).await?;
    create_conference(demo).await?;
    print_join_links(demo).await
}

/// Installs the chart with its default images: two operator replicas (one leader), and a pool
/// of one media node per node with TURN.
async fn install_chart(demo: &Demo) -> anyhow::Result<()> {
    let n = demo.nodes.len();
    // Media nodes publish the Nodes' private addresses, which the TURN relays refuse unless
    // `spec.turn.allowedPeers` lists them.
    let nodes_range = nodes::private_range(&demo.nodes).context("the cluster has no nodes")?;
    let values = serde_json::json!({
        "operator": {"metrics": {"bindAddress": "$(POD_IP)"}},
        "defaultPool": {
            "enabled": true,
            "name": POOL,
            "spec": {
                "nodeCapacity": {"participants": 100, "rooms": 20},
                "scaling": {"minNodes": n, "maxNodes": n, "bufferParticipants": 10},
                "mediaNode": {"udpPort": 50000},
                "turn": {"enabled": true, "allowedPeers": [nodes_range]}
            }
        }
    });
    demo.helm
        .install(RELEASE, NAMESPACE, &values)
        .await
        .context("installing the chart")?;
    println!(
        "chart charts/conclave installed as release {RELEASE} in namespace {NAMESPACE} \
         (operator {RELEASE}-operator, MediaPool {POOL} of {n} media nodes)"
    );
    Ok(())
}

/// Creates a Conference and waits until it is placed on a media node.
async fn create_conference(demo: &Demo) -> anyhow::Result<()> {
    let api = Api::<Conference>::namespaced(demo.client.clone(), NAMESPACE);
    let conf: Conference = serde_json::from_value(serde_json::json!({
        "apiVersion": "conclave.dev/v1alpha1", "kind": "Conference",
        "metadata": {"name": CONFERENCE, "namespace": NAMESPACE},
        "spec": {"pool": POOL, "maxParticipants": 8}
    }))?;
    api.patch(
        CONFERENCE,
        &PatchParams::apply("conclave-demo").force(),
        &Patch::Apply(&conf),
    )
    .await?;
    let placed = wait::until(
        "the demo conference to be Active",
        Duration::from_secs(180),
        || async {
            let c = api.get(CONFERENCE).await.ok()?;
            let s = c.status?;
            (s.phase == Some(ConferencePhase::Active) && s.join.is_some()).then_some(s)
        },
    )
    .await?;
    println!(
        "Conference {NAMESPACE}/{CONFERENCE} is Active on media node {}",
        placed.media_node.unwrap_or_default()
    );
    Ok(())
}

/// Prints, for each participant, a link that opens the call in a browser on this machine:
/// the media node's page with the signaling URL and a join token signed with the pool's key,
/// both through a loopback forwarder (see `forward.rs`).
async fn print_join_links(demo: &Demo) -> anyhow::Result<()> {
    let conf = Api::<Conference>::namespaced(demo.client.clone(), NAMESPACE)
        .get(CONFERENCE)
        .await?;
    let join = conf
        .status
        .and_then(|s| s.join)
        .context("conference has no join info")?;
    let secret = Api::<Secret>::namespaced(demo.client.clone(), NAMESPACE)
        .get(&labels::pool_secret_name(POOL))
        .await?;
    let key = secret
        .data
        .and_then(|d| d.get(labels::SECRET_JOIN_KEY).cloned())
        .context("the pool Secret has no join-token key")?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 4 * 3600;
    let node = signaling_address(&join.signaling_url)
        .context("the signaling URL is not ws://<address>:<port>/...")?;
    let port = crate::forward::loopback_to(node, node.port()).await?;
    let signaling_url =
        join.signaling_url
            .replacen(&node.to_string(), &format!("127.0.0.1:{port}"), 1);
    println!("\nJoin {CONFERENCE} in a browser on this machine (links valid 4 hours):");
    for identity in PARTICIPANTS {
        let claims = JoinClaims {
            conference: CONFERENCE.into(),
            identity: identity.into(),
            exp,
            publish: true,
        };
        let link = join_link(&signaling_url, &mint(&key.0, &claims))
            .context("the signaling URL is not ws:// or wss://")?;
        println!("  {identity}: {link}");
    }
    println!(
        "  (127.0.0.1:{port} forwards to the media node's signaling at {node}: browsers allow \
         the camera on http only for loopback pages)"
    );
    println!(
        "More participants: a link above with its token= replaced by the output of\n  \
         KUBECONFIG={} target/debug/conclave-operator token -n {NAMESPACE} --conference {CONFERENCE} --identity NAME\n",
        demo.kubeconfig.display()
    );
    Ok(())
}

/// The node address and port of a `ws://<ip>:<port>/...` signaling URL.
fn signaling_address(signaling_url: &str) -> Option<std::net::SocketAddr> {
    let rest = signaling_url.strip_prefix("ws://")?;
    rest.split('/').next()?.parse().ok()
}

/// The media node's page for a signaling URL (`ws://host:port/rtc` → `http://host:port/`)
/// with the signaling URL and the token as query parameters.
pub fn join_link(signaling_url: &str, token: &str) -> Option<String> {
    let (scheme, rest) = if let Some(rest) = signaling_url.strip_prefix("ws://") {
        ("http", rest)
    } else {
        ("https", signaling_url.strip_prefix("wss://")?)
    };
    let authority = rest.split('/').next()?;
    Some(format!(
        "{scheme}://{authority}/?url={}&token={}",
        query_escape(signaling_url),
        query_escape(token)
    ))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_open_the_nodes_page_with_url_and_token() {
        assert_eq!(
            join_link("ws://127.0.0.2:7880/rtc", "a.b-c_d").unwrap(),
            "http://127.0.0.2:7880/?url=ws%3A%2F%2F127.0.0.2%3A7880%2Frtc&token=a.b-c_d"
        );
        assert_eq!(
            join_link("wss://rtc.example.com/n1/rtc", "t").unwrap(),
            "https://rtc.example.com/?url=wss%3A%2F%2Frtc.example.com%2Fn1%2Frtc&token=t"
        );
        assert_eq!(join_link("http://x/rtc", "t"), None);
    }

    #[test]
    fn signaling_address_is_the_nodes_ip_and_port() {
        assert_eq!(
            signaling_address("ws://10.213.0.11:7880/rtc"),
            Some("10.213.0.11:7880".parse().unwrap())
        );
        assert_eq!(signaling_address("wss://rtc.example.com/n1/rtc"), None);
    }
}
