//! Which peers a pool's TURN relays may forward to. By default none on private (RFC 1918,
//! RFC 6598, unique-local), loopback, link-local or unspecified addresses, so that TURN
//! credentials do not open the cluster's own network; `spec.turn.allowedPeers` lifts that for
//! the ranges listed (the media nodes' addresses when those are private). Gives coturn's flags,
//! and which media-node addresses the relays would refuse.

use std::net::IpAddr;

/// Ranges refused unless allowed: (CIDR, what it is). Not `::/128`: coturn reads a range
/// starting at the unspecified address as having no lower bound, so `::-::` would refuse
/// every peer (coturn refuses unspecified peers on its own).
pub const DENIED_BY_DEFAULT: [(&str, &str); 10] = [
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata services)"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
];

/// A CIDR range as its first and last address; None when `cidr` is not one.
pub fn cidr_bounds(cidr: &str) -> Option<(IpAddr, IpAddr)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    match addr {
        IpAddr::V4(a) if len <= 32 => {
            let bits = u32::from(a);
            let host = u32::MAX.checked_shr(len).unwrap_or(0);
            let v4 = |b: u32| IpAddr::V4(b.into());
            Some((v4(bits & !host), v4(bits | host)))
        }
        IpAddr::V6(a) if len <= 128 => {
            let bits = u128::from(a);
            let host = u128::MAX.checked_shr(len).unwrap_or(0);
            let v6 = |b: u128| IpAddr::V6(b.into());
            Some((v6(bits & !host), v6(bits | host)))
        }
        _ => None,
    }
}

fn contains(cidr: &str, ip: IpAddr) -> bool {
    match (cidr_bounds(cidr), ip) {
        (Some((IpAddr::V4(lo), IpAddr::V4(hi))), IpAddr::V4(ip)) => lo <= ip && ip <= hi,
        (Some((IpAddr::V6(lo), IpAddr::V6(hi))), IpAddr::V6(ip)) => lo <= ip && ip <= hi,
        _ => false,
    }
}

fn is_loopback(cidr: &str) -> bool {
    matches!(cidr, "127.0.0.0/8" | "::1/128")
}

/// The pool's peer policy.
#[derive(Clone, Copy, Debug)]
pub struct PeerPolicy<'a> {
    /// `spec.turn.allowedPeers`.
    pub allowed: &'a [String],
    /// `spec.turn.allowLoopbackPeers`.
    pub allow_loopback: bool,
}

impl PeerPolicy<'_> {
    /// coturn's flags for the policy: each default-denied range (but loopback when allowed,
    /// which `--allow-loopback-peers` also opens), then each allowed range, which coturn lets
    /// through even inside a denied one.
    pub fn coturn_args(&self) -> Vec<String> {
        let range = |cidr: &str| cidr_bounds(cidr).map(|(lo, hi)| format!("{lo}-{hi}"));
        let denied = DENIED_BY_DEFAULT
            .iter()
            .filter(|(cidr, _)| !(self.allow_loopback && is_loopback(cidr)))
            .filter_map(|(cidr, _)| range(cidr))
            .map(|r| format!("--denied-peer-ip={r}"));
        let allowed = self
            .allowed
            .iter()
            .filter_map(|cidr| range(cidr))
            .map(|r| format!("--allowed-peer-ip={r}"));
        let loopback = self
            .allow_loopback
            .then(|| "--allow-loopback-peers".to_owned());
        denied.chain(allowed).chain(loopback).collect()
    }

    /// Why the relays would refuse to forward to `ip` (the kind of range), or None.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allowed.iter().any(|cidr| contains(cidr, ip)) {
            return None;
        }
        DENIED_BY_DEFAULT
            .iter()
            .filter(|(cidr, _)| !(self.allow_loopback && is_loopback(cidr)))
            .find(|(cidr, _)| contains(cidr, ip))
            .map(|(_, kind)| *kind)
    }
}

/// The range to suggest for `ip` in `spec.turn.allowedPeers`: its /24 (IPv4) or /64 (IPv6).
pub fn suggested_range(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let [x, y, z, _] = a.octets();
            format!("{x}.{y}.{z}.0/24")
        }
        IpAddr::V6(a) => {
            let net = u128::from(a) & !(u128::MAX >> 64);
            format!("{}/64", std::net::Ipv6Addr::from(net))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_bounds_cover_the_range() {
        assert_eq!(
            cidr_bounds("10.213.0.0/16"),
            Some((ip("10.213.0.0"), ip("10.213.255.255")))
        );
        assert_eq!(
            cidr_bounds("192.0.2.7/32"),
            Some((ip("192.0.2.7"), ip("192.0.2.7")))
        );
        assert_eq!(
            cidr_bounds("0.0.0.0/0"),
            Some((ip("0.0.0.0"), ip("255.255.255.255")))
        );
        assert_eq!(
            cidr_bounds("fd00::/8"),
            Some((ip("fd00::"), ip("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")))
        );
        for bad in ["10.0.0.0", "10.0.0.0/33", "::/129", "x/8", "10.0.0.0/-1"] {
            assert_eq!(cidr_bounds(bad), None, "{bad}");
        }
    }

    #[test]
    fn private_loopback_and_link_local_peers_are_refused_by_default() {
        let policy = PeerPolicy {
            allowed: &[],
            allow_loopback: false,
        };
        for (addr, kind) in [
            ("10.1.2.3", "private"),
            ("172.31.255.1", "private"),
            ("192.168.0.1", "private"),
            ("100.100.0.1", "shared address space"),
            ("127.0.0.1", "loopback"),
            ("169.254.169.254", "link-local (cloud metadata services)"),
            ("::1", "loopback"),
            ("fd12::1", "unique-local"),
            ("fe80::1", "link-local"),
        ] {
            assert_eq!(policy.refuses(ip(addr)), Some(kind), "{addr}");
        }
        for public in ["192.0.2.10", "172.32.0.1", "8.8.8.8", "2001:db8::1"] {
            assert_eq!(policy.refuses(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn allowed_ranges_and_loopback_are_let_through() {
        let allowed = vec!["10.213.0.0/16".to_owned()];
        let policy = PeerPolicy {
            allowed: &allowed,
            allow_loopback: true,
        };
        assert_eq!(policy.refuses(ip("10.213.4.11")), None);
        assert_eq!(policy.refuses(ip("127.0.0.1")), None);
        assert_eq!(policy.refuses(ip("10.214.0.1")), Some("private"));
        let args = policy.coturn_args();
        assert!(args.contains(&"--allowed-peer-ip=10.213.0.0-10.213.255.255".to_owned()));
        assert!(args.contains(&"--denied-peer-ip=10.0.0.0-10.255.255.255".to_owned()));
        assert!(args.contains(&"--allow-loopback-peers".to_owned()));
        assert!(
            !args.iter().any(|a| a.starts_with("--denied-peer-ip=127.")),
            "{args:?}"
        );
    }

    #[test]
    fn suggested_ranges_cover_the_address() {
        assert_eq!(suggested_range(ip("10.213.0.11")), "10.213.0.0/24");
        assert_eq!(suggested_range(ip("fd00:1:2:3:4::5")), "fd00:1:2:3::/64");
        let allowed = vec![suggested_range(ip("10.213.0.11"))];
        let policy = PeerPolicy {
            allowed: &allowed,
            allow_loopback: false,
        };
        assert_eq!(policy.refuses(ip("10.213.0.11")), None);
    }

    #[test]
    fn coturn_denies_every_default_range_without_allowances() {
        let args = PeerPolicy {
            allowed: &[],
            allow_loopback: false,
        }
        .coturn_args();
        assert_eq!(args.len(), DENIED_BY_DEFAULT.len());
        assert!(args.contains(&"--denied-peer-ip=169.254.0.0-169.254.255.255".to_owned()));
        assert!(args.contains(
            &"--denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".to_owned()
        ));
    }
}
