//! The host candidate clients are given. Every peer connection's ICE agent names its host
//! candidate after the ephemeral socket its driver bound (and that the node closed, see
//! `peer_socket`), at the pod IP; the node rewrites it, in trickled candidates and inside its
//! SDP, to the address and port clients reach: the published address (the Node's address
//! behind a hostPort, a 1:1 NAT's public address, or the pod IP itself) and the node's one UDP
//! port. (webrtc 0.21.1 stores `with_nat_1to1_ips` but never applies it.) With ICE-TCP, the
//! passive TCP candidate gets the node's TCP port the same way, and the active one the driver
//! also names is withheld: the node connects to no one.

use std::net::IpAddr;

/// Where clients reach the node's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCandidate {
    /// The published address.
    pub ip: IpAddr,
    /// The node's UDP port.
    pub port: u16,
    /// The node's TCP port, with ICE-TCP.
    pub tcp_port: Option<u16>,
}

impl HostCandidate {
    /// A candidate attribute value (`candidate:...`) as clients get it: a UDP or passive TCP
    /// host candidate with its address and port replaced, none for an active TCP one (or a
    /// passive one without ICE-TCP), anything else unchanged.
    pub fn candidate(&self, candidate: &str) -> Option<String> {
        let fields: Vec<&str> = candidate.split(' ').collect();
        let is_host = fields.windows(2).any(|w| w[0] == "typ" && w[1] == "host");
        if fields.len() < 8 || !is_host || fields[4].ends_with(".local") {
            return Some(candidate.to_owned());
        }
        let port = if fields[2].eq_ignore_ascii_case("udp") {
            self.port
        } else if fields[2].eq_ignore_ascii_case("tcp") {
            let passive = fields
                .windows(2)
                .any(|w| w[0] == "tcptype" && w[1] == "passive");
            self.tcp_port.filter(|_| passive)?
        } else {
            return Some(candidate.to_owned());
        };
        let ip = self.ip.to_string();
        let port = port.to_string();
        let rewritten = fields
            .iter()
            .enumerate()
            .map(|(i, f)| match i {
                4 => ip.as_str(),
                5 => port.as_str(),
                _ => f,
            })
            .collect::<Vec<_>>()
            .join(" ");
        Some(rewritten)
    }

    /// An SDP with every host candidate line rewritten, or left out (see `candidate`).
    pub fn sdp(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            match line.strip_prefix("a=") {
                Some(rest) if rest.starts_with("candidate:") => {
                    let ending = &rest[rest.trim_end_matches(['\r', '\n']).len()..];
                    if let Some(candidate) = self.candidate(rest.trim_end_matches(['\r', '\n'])) {
                        out.push_str("a=");
                        out.push_str(&candidate);
                        out.push_str(ending);
                    }
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
            tcp_port: Some(7883),
        }
    }

    #[test]
    fn rewrites_udp_host_candidates_and_leaves_the_rest() {
        assert_eq!(
            published()
                .candidate("candidate:1 1 udp 2130706431 10.0.3.4 43117 typ host")
                .as_deref(),
            Some("candidate:1 1 udp 2130706431 203.0.113.21 7882 typ host")
        );
        let srflx =
            "candidate:2 1 udp 1694498815 198.51.100.1 50000 typ srflx raddr 10.0.3.4 rport 50000";
        assert_eq!(published().candidate(srflx).as_deref(), Some(srflx));
        assert_eq!(published().candidate("garbage").as_deref(), Some("garbage"));
        let mdns = "candidate:1 1 udp 2130706431 abc.local 50000 typ host";
        assert_eq!(published().candidate(mdns).as_deref(), Some(mdns));
    }

    #[test]
    fn publishes_the_passive_tcp_candidate_at_the_tcp_port_and_withholds_the_active_one() {
        let passive = "candidate:3 1 tcp 1671430143 10.0.3.4 40111 typ host tcptype passive";
        let active = "candidate:4 1 tcp 1671430143 10.0.3.4 9 typ host tcptype active";
        assert_eq!(
            published().candidate(passive).as_deref(),
            Some("candidate:3 1 tcp 1671430143 203.0.113.21 7883 typ host tcptype passive")
        );
        assert_eq!(published().candidate(active), None);
        let udp_only = HostCandidate {
            tcp_port: None,
            ..published()
        };
        assert_eq!(udp_only.candidate(passive), None);
        let sdp = format!(
            "v=0\r\na=candidate:{}\r\na=candidate:{}\r\n",
            &passive[10..],
            &active[10..]
        );
        assert_eq!(
            published().sdp(&sdp),
            "v=0\r\na=candidate:3 1 tcp 1671430143 203.0.113.21 7883 typ host tcptype passive\r\n"
        );
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
