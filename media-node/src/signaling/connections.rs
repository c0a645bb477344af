//! The signaling connections a node holds, counted per node and per source address (an IPv6
//! client counts by its /64, the smallest block a provider hands out). A connection over
//! either cap is refused before the WebSocket upgrade; an admitted one holds a
//! [`ConnectionPermit`] until its session ends. Addresses with no connection are forgotten.

use crate::sync::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Caps on the node's signaling connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// WebSocket connections the node holds at once, joined or not.
    pub per_node: u32,
    /// Connections from one source address (IPv6: one /64).
    pub per_address: u32,
}

impl Default for ConnectionCaps {
    /// A node carries a few hundred participants; 4,000 sockets leave room for reconnect
    /// storms while capping idle sockets at well under 100 MB. Offices and carrier-grade NAT
    /// put many people behind one address: 256 per address (about 2 MB of idle sockets).
    fn default() -> Self {
        Self {
            per_node: 4000,
            per_address: 256,
        }
    }
}

/// The block of addresses counted together.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SourceKey {
    /// One IPv4 address (or an IPv4-mapped IPv6 address).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl SourceKey {
    /// The key `ip` is counted under.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    SourceKey::V6Prefix([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionRefused {
    /// The node holds its maximum of signaling connections.
    #[error(
        "media node holds its maximum of {max} signaling connections: try again in a few seconds"
    )]
    NodeFull {
        /// The cap.
        max: u32,
    },
    /// The source address holds its maximum.
    #[error(
        "{max} signaling connections from your address are open already: close one (each call \
         page needs one) or try again later"
    )]
    AddressFull {
        /// The cap.
        max: u32,
    },
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_source: HashMap<SourceKey, u32>,
}

/// The node's open signaling connections.
#[derive(Debug)]
pub struct Connections {
    caps: ConnectionCaps,
    counts: Arc<Mutex<Counts>>,
}

impl Connections {
    /// No connections yet.
    pub fn new(caps: ConnectionCaps) -> Self {
        Self {
            caps,
            counts: Arc::default(),
        }
    }

    /// The caps applied.
    pub fn caps(&self) -> ConnectionCaps {
        self.caps
    }

    /// Takes a place for a connection from `ip`, or says which cap refuses it.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionPermit, ConnectionRefused> {
        let key = SourceKey::of(ip);
        let mut counts = lock(&self.counts);
        if counts.total >= self.caps.per_node {
            return Err(ConnectionRefused::NodeFull {
                max: self.caps.per_node,
            });
        }
        let from_source = counts.by_source.get(&key).copied().unwrap_or(0);
        if from_source >= self.caps.per_address {
            return Err(ConnectionRefused::AddressFull {
                max: self.caps.per_address,
            });
        }
        counts.total += 1;
        counts.by_source.insert(key, from_source + 1);
        Ok(ConnectionPermit {
            key,
            counts: Arc::clone(&self.counts),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        lock(&self.counts).total
    }

    /// Source addresses (blocks) with at least one connection.
    pub fn sources(&self) -> usize {
        lock(&self.counts).by_source.len()
    }
}

/// One admitted connection's place; dropping it gives the place back.
#[derive(Debug)]
pub struct ConnectionPermit {
    key: SourceKey,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_source.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_source.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn caps_per_address_and_per_node() {
        let c = Connections::new(ConnectionCaps {
            per_node: 5,
            per_address: 2,
        });
        let a1 = c.admit(ip("192.0.2.1")).expect("first");
        let _a2 = c.admit(ip("192.0.2.1")).expect("second");
        assert_eq!(
            c.admit(ip("192.0.2.1")).err(),
            Some(ConnectionRefused::AddressFull { max: 2 })
        );
        let _b = c.admit(ip("192.0.2.2")).expect("other address");
        let _c1 = c.admit(ip("192.0.2.3")).expect("fourth");
        let _c2 = c.admit(ip("192.0.2.3")).expect("fifth");
        assert_eq!(
            c.admit(ip("192.0.2.4")).err(),
            Some(ConnectionRefused::NodeFull { max: 5 })
        );
        drop(a1);
        assert_eq!(c.open(), 4);
        let _again = c.admit(ip("192.0.2.1")).expect("a place came back");
    }

    #[test]
    fn addresses_without_connections_are_forgotten() {
        let c = Connections::new(ConnectionCaps::default());
        let permits: Vec<_> = (0..100)
            .map(|i| c.admit(ip(&format!("198.51.100.{i}"))).expect("admitted"))
            .collect();
        assert_eq!(c.sources(), 100);
        drop(permits);
        assert_eq!((c.open(), c.sources()), (0, 0));
    }

    #[test]
    fn ipv6_counts_by_64_block_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            SourceKey::of(ip("2001:db8:1:2::1")),
            SourceKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            SourceKey::of(ip("::ffff:192.0.2.7")),
            SourceKey::of(ip("192.0.2.7"))
        );
        let c = Connections::new(ConnectionCaps {
            per_node: 10,
            per_address: 1,
        });
        let _one = c.admit(ip("2001:db8::1")).expect("first");
        assert!(c.admit(ip("2001:db8::2")).is_err(), "same /64");
    }

    #[test]
    fn refusals_say_what_to_do() {
        let m = ConnectionRefused::AddressFull { max: 32 }.to_string();
        assert!(m.contains("32") && m.contains("your address"), "{m}");
        let m = ConnectionRefused::NodeFull { max: 4000 }.to_string();
        assert!(m.contains("4000") && m.contains("try again"), "{m}");
    }
}
