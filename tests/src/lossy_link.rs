//! Random packet loss on a media node's UDP port, both ways: an nftables table in the network
//! namespace of the Kubernetes node the pod runs on drops a share of the datagrams forwarded
//! to the pod's port and of those it sends, chosen with `numgen random` (the kernel here has
//! no netem), and counts what it saw and what it dropped. The node's namespace, not the
//! pod's, so that the loss is on the wire: a datagram dropped on its way out of the sender's
//! own namespace fails the send call, which no real network does. Dropping the [`LossyLink`]
//! deletes the table.

use serde::Serialize;
use serde_json::Value;

use crate::netns::{exec, undo};

/// The table's name in the node's namespace.
const TABLE: &str = "conclave_loss";

/// What the link saw and dropped, by direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkCounters {
    /// Datagrams that reached the port.
    pub arrived: u64,
    /// Of those, dropped before the node read them.
    pub arrived_dropped: u64,
    /// Datagrams the port sent.
    pub left: u64,
    /// Of those, dropped before they left the pod.
    pub left_dropped: u64,
}

impl LinkCounters {
    /// Counts between `earlier` and `self`.
    pub fn since(&self, earlier: &LinkCounters) -> LinkCounters {
        LinkCounters {
            arrived: self.arrived - earlier.arrived,
            arrived_dropped: self.arrived_dropped - earlier.arrived_dropped,
            left: self.left - earlier.left,
            left_dropped: self.left_dropped - earlier.left_dropped,
        }
    }
}

/// Loss applied to one media node's port until dropped.
pub struct LossyLink {
    netns: String,
}

/// The nftables script that drops `percent` % of UDP datagrams to and from `port` (100: all
/// of them, a network that lets no UDP through).
fn script(port: u16, percent: u8) -> String {
    let chosen = if percent >= 100 {
        String::new()
    } else {
        format!("numgen random mod 100 < {percent} ")
    };
    format!(
        "table inet {TABLE} {{
  counter arrived {{}}
  counter arrived_dropped {{}}
  counter left {{}}
  counter left_dropped {{}}
  chain wire {{
    type filter hook forward priority -300; policy accept;
    udp dport {port} counter name arrived
    udp dport {port} {chosen}counter name arrived_dropped drop
    udp sport {port} counter name left
    udp sport {port} {chosen}counter name left_dropped drop
  }}
}}
"
    )
}

impl LossyLink {
    /// Drops `percent` % of the UDP datagrams forwarded to and from pods' `port` in network
    /// namespace `netns` (a node's, see [`crate::LocalNode::netns`]), each way.
    pub async fn start(netns: &str, port: u16, percent: u8) -> Result<LossyLink, String> {
        exec(netns, &["nft", "-f", "-"], Some(&script(port, percent))).await?;
        Ok(LossyLink {
            netns: netns.to_owned(),
        })
    }

    /// What the link saw and dropped so far.
    pub async fn counters(&self) -> Result<LinkCounters, String> {
        let listed = exec(
            &self.netns,
            &["nft", "-j", "list", "counters", "table", "inet", TABLE],
            None,
        )
        .await?;
        parse_counters(&listed)
    }
}

/// The packet counts of `nft -j list counters` output, by counter name.
fn parse_counters(listed: &str) -> Result<LinkCounters, String> {
    let json: Value =
        serde_json::from_str(listed).map_err(|e| format!("nft said {listed:?}: {e}"))?;
    let mut counters = LinkCounters::default();
    for entry in json["nftables"].as_array().into_iter().flatten() {
        let counter = &entry["counter"];
        let packets = counter["packets"].as_u64().unwrap_or(0);
        match counter["name"].as_str() {
            Some("arrived") => counters.arrived = packets,
            Some("arrived_dropped") => counters.arrived_dropped = packets,
            Some("left") => counters.left = packets,
            Some("left_dropped") => counters.left_dropped = packets,
            _ => {}
        }
    }
    Ok(counters)
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        undo(&self.netns, &["nft", "delete", "table", "inet", TABLE]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_name() {
        let listed = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
          {"counter": {"family": "inet", "name": "arrived", "table": "conclave_loss", "handle": 1, "packets": 200, "bytes": 1}},
          {"counter": {"family": "inet", "name": "arrived_dropped", "table": "conclave_loss", "handle": 2, "packets": 10, "bytes": 1}},
          {"counter": {"family": "inet", "name": "left", "table": "conclave_loss", "handle": 3, "packets": 400, "bytes": 1}},
          {"counter": {"family": "inet", "name": "left_dropped", "table": "conclave_loss", "handle": 4, "packets": 21, "bytes": 1}}]}"#;
        let c = parse_counters(listed).unwrap();
        assert_eq!(
            c,
            LinkCounters {
                arrived: 200,
                arrived_dropped: 10,
                left: 400,
                left_dropped: 21
            }
        );
        assert_eq!(c.since(&c), LinkCounters::default());
    }

    #[test]
    fn the_script_names_the_port_and_share() {
        let s = script(50000, 5);
        assert!(s.contains("udp dport 50000 numgen random mod 100 < 5"));
        assert!(s.contains("udp sport 50000 numgen random mod 100 < 5"));
        let all = script(50000, 100);
        assert!(all.contains("udp dport 50000 counter name arrived_dropped drop"));
        assert!(!all.contains("numgen"));
    }
}
