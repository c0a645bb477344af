//! NAT 1:1 for the node's ICE candidates. webrtc 0.21.1 stores `with_nat_1to1_ips` in its
//! setting engine but never applies it (no candidate is rewritten), so the node rewrites the
//! host candidates it hands out itself: trickled ones and those inside its SDP. The socket
//! stays bound to the pod IP; clients send to the public address, which the 1:1 NAT (or the
//! Node's own address with hostNetwork) delivers to it.

use std::net::IpAddr;

/// Rewrites host candidates to the public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatMapping {
    /// The address clients reach the node at.
    pub public: IpAddr,
}

impl NatMapping {
    /// The mapping to use for a node bound to `bind` and published at `public`, when they
    /// differ.
    pub fn between(bind: IpAddr, public: Option<IpAddr>) -> Option<Self> {
        public.filter(|p| *p != bind).map(|public| Self { public })
    }

    /// A candidate attribute value (`candidate:...`) with its address replaced when it is a
    /// host candidate; anything else is returned unchanged.
    pub fn candidate(&self, candidate: &str) -> String {
        let fields: Vec<&str> = candidate.split(' ').collect();
        let is_host = fields.windows(2).any(|w| w[0] == "typ" && w[1] == "host");
        if fields.len() < 8 || !is_host || fields[4].ends_with(".local") {
            return candidate.to_owned();
        }
        let public = self.public.to_string();
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| if i == 4 { public.as_str() } else { f })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An SDP with every host candidate line rewritten.
    pub fn sdp(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            match line.strip_prefix("a=") {
                Some(rest) if rest.starts_with("candidate:") => {
                    let ending = &rest[rest.trim_end_matches(['\r', '\n']).len()..];
                    out.push_str("a=");
                    out.push_str(&self.candidate(rest.trim_end_matches(['\r', '\n'])));
                    out.push_str(ending);
                }
                _ => out.push_str(line),
            }
        }
        out
    }
}

/// Applies an optional mapping to a candidate.
pub fn map_candidate(nat: Option<NatMapping>, candidate: String) -> String {
    match nat {
        Some(n) => n.candidate(&candidate),
        None => candidate,
    }
}

/// Applies an optional mapping to an SDP.
pub fn map_sdp(nat: Option<NatMapping>, sdp: String) -> String {
    match nat {
        Some(n) => n.sdp(&sdp),
        None => sdp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat() -> NatMapping {
        NatMapping {
            public: "203.0.113.21".parse().expect("ip"),
        }
    }

    #[test]
    fn rewrites_host_candidates_only() {
        assert_eq!(
            nat().candidate("candidate:1 1 udp 2130706431 10.0.3.4 50000 typ host"),
            "candidate:1 1 udp 2130706431 203.0.113.21 50000 typ host"
        );
        let srflx =
            "candidate:2 1 udp 1694498815 198.51.100.1 50000 typ srflx raddr 10.0.3.4 rport 50000";
        assert_eq!(nat().candidate(srflx), srflx);
        assert_eq!(nat().candidate("garbage"), "garbage");
        let mdns = "candidate:1 1 udp 2130706431 abc.local 50000 typ host";
        assert_eq!(nat().candidate(mdns), mdns);
    }

    #[test]
    fn rewrites_sdp_lines_and_keeps_line_endings() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 10.0.3.4 50000 typ host\r\na=end-of-candidates\r\n";
        let mapped = nat().sdp(sdp);
        assert!(mapped.contains("a=candidate:1 1 udp 2130706431 203.0.113.21 50000 typ host\r\n"));
        assert!(mapped.starts_with("v=0\r\nm=audio"));
        assert!(mapped.ends_with("a=end-of-candidates\r\n"));
    }

    #[test]
    fn no_mapping_when_public_is_the_bind_address() {
        let ip: IpAddr = "10.0.3.4".parse().expect("ip");
        assert_eq!(NatMapping::between(ip, Some(ip)), None);
        assert_eq!(NatMapping::between(ip, None), None);
        assert!(NatMapping::between(ip, Some("203.0.113.21".parse().expect("ip"))).is_some());
    }
}
