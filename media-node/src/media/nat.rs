//! The host candidate clients are given. Every peer connection's ICE agent names its host
//! candidate after the ephemeral socket its driver bound (and that the node closed, see
//! `peer_socket`), at the pod IP; the node rewrites it, in trickled candidates and inside its
//! SDP, to the address and port clients reach: the published address (the Node's address
//! behind a hostPort, a 1:1 NAT's public address, or the pod IP itself) and the node's one UDP
//! port. (webrtc 0.21.1 stores `with_nat_1to1_ips` but never applies it.)

use std::net::IpAddr;

/// Where clients reach the node's UDP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCandidate {
    /// The published address.
    pub ip: IpAddr,
    /// The node's UDP port.
    pub port: u16,
}

impl HostCandidate {
    /// A candidate attribute value (`candidate:...`) with its address and port replaced when
    /// it is a UDP host candidate; anything else is returned unchanged.
    pub fn candidate(&self, candidate: &str) -> String {
        let fields: Vec<&str> = candidate.split(' ').collect();
        let is_host = fields.windows(2).any(|w| w[0] == "typ" && w[1] == "host");
        if fields.len() < 8
            || !is_host
            || !fields[2].eq_ignore_ascii_case("udp")
            || fields[4].ends_with(".local")
        {
            return candidate.to_owned();
        }
        let ip = self.ip.to_string();
        let port = self.port.to_string();
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| match i {
                4 => ip.as_str(),
                5 => port.as_str(),
                _ => f,
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// An SDP with every UDP host candidate line rewritten.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> HostCandidate {
        HostCandidate {
            ip: "203.0.113.21".parse().expect("ip"),
            port: 7882,
        }
    }

    #[test]
    fn rewrites_udp_host_candidates_only() {
        assert_eq!(
            published().candidate("candidate:1 1 udp 2130706431 10.0.3.4 43117 typ host"),
            "candidate:1 1 udp 2130706431 203.0.113.21 7882 typ host"
        );
        let srflx =
            "candidate:2 1 udp 1694498815 198.51.100.1 50000 typ srflx raddr 10.0.3.4 rport 50000";
        assert_eq!(published().candidate(srflx), srflx);
        let tcp = "candidate:3 1 tcp 1518280447 10.0.3.4 9 typ host tcptype active";
        assert_eq!(published().candidate(tcp), tcp);
        assert_eq!(published().candidate("garbage"), "garbage");
        let mdns = "candidate:1 1 udp 2130706431 abc.local 50000 typ host";
        assert_eq!(published().candidate(mdns), mdns);
    }

    #[test]
    fn rewrites_sdp_lines_and_keeps_line_endings() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 10.0.3.4 43117 typ host\r\na=end-of-candidates\r\n";
        let mapped = published().sdp(sdp);
        assert!(mapped.contains("a=candidate:1 1 udp 2130706431 203.0.113.21 7882 typ host\r\n"));
        assert!(mapped.starts_with("v=0\r\nm=audio"));
        assert!(mapped.ends_with("a=end-of-candidates\r\n"));
    }
}
