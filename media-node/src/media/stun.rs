//! What the shared UDP port needs to know about a datagram before any peer connection sees
//! it: its protocol (RFC 7983 demultiplexing), and for a STUN binding request, the node's ICE
//! username fragment it is addressed to. Also the answer to a binding request that names no
//! peer connection: the reachability probe of the node's published address. Pure and
//! allocation-free on the read side; nothing here trusts a length it has not checked.

use std::net::{IpAddr, SocketAddr};

/// The STUN magic cookie (RFC 8489).
const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER_LEN: usize = 20;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// The protocols sharing the port, told apart by the first byte (RFC 7983).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// STUN (ICE connectivity checks and their answers).
    Stun,
    /// DTLS (the handshake, and SCTP for data channels).
    Dtls,
    /// SRTP or SRTCP.
    Media,
    /// Anything else: dropped.
    Unknown,
}

/// The protocol of a datagram.
pub fn kind(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) if is_stun(datagram) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) if datagram.len() >= 12 => Kind::Media,
        _ => Kind::Unknown,
    }
}

/// A well-formed STUN header: the cookie, and a length that matches the datagram.
fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN
        && u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]) == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([datagram[2], datagram[3]])) + HEADER_LEN
            == datagram.len()
}

fn message_type(datagram: &[u8]) -> u16 {
    u16::from_be_bytes([datagram[0], datagram[1]])
}

/// A STUN binding request, as far as routing needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding<'a> {
    /// An ICE check to the peer connection whose local username fragment this is (the part
    /// of USERNAME before the colon).
    Check(&'a str),
    /// A request naming no username: a plain STUN query, answered by the port itself.
    Probe,
}

/// The binding request in a datagram already classified as STUN; `None` for other STUN
/// messages (responses, indications) and for malformed attributes.
pub fn binding(datagram: &[u8]) -> Option<Binding<'_>> {
    if !is_stun(datagram) || message_type(datagram) != BINDING_REQUEST {
        return None;
    }
    let mut rest = &datagram[HEADER_LEN..];
    while rest.len() >= 4 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let local = username.split(':').next().filter(|u| !u.is_empty())?;
            return Some(Binding::Check(local));
        }
        let padded = 4 + len.next_multiple_of(4);
        rest = rest.get(padded..).unwrap_or_default();
    }
    rest.is_empty().then_some(Binding::Probe)
}

/// The largest binding success response `success_response` writes (IPv6 address).
pub const MAX_RESPONSE_LEN: usize = HEADER_LEN + 4 + 20;

/// Writes the success response to the binding request `request` received from `from` into
/// `out`, returning its length: the transaction id echoed, and the address seen as
/// XOR-MAPPED-ADDRESS. `request` must be a binding request (`binding` returned `Some`).
pub fn success_response(
    request: &[u8],
    from: SocketAddr,
    out: &mut [u8; MAX_RESPONSE_LEN],
) -> usize {
    let mut address = [0u8; 16];
    let (family, address) = match from.ip() {
        IpAddr::V4(ip) => {
            address[..4].copy_from_slice(&ip.octets());
            (0x01, &address[..4])
        }
        IpAddr::V6(ip) => {
            address.copy_from_slice(&ip.octets());
            (0x02, &address[..])
        }
    };
    let value_len = 4 + address.len();
    out[0..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out[2..4].copy_from_slice(&((4 + value_len) as u16).to_be_bytes());
    // The cookie and the transaction id, echoed.
    out[4..20].copy_from_slice(&request[4..20]);
    out[20..22].copy_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out[22..24].copy_from_slice(&(value_len as u16).to_be_bytes());
    out[24] = 0;
    out[25] = family;
    let port = from.port() ^ (MAGIC_COOKIE >> 16) as u16;
    out[26..28].copy_from_slice(&port.to_be_bytes());
    // The address XORed with the cookie and, past it (IPv6), the transaction id: the same
    // bytes the request carries at 4..20.
    for (i, byte) in address.iter().enumerate() {
        out[28 + i] = byte ^ request[4 + i];
    }
    HEADER_LEN + 4 + value_len
}

/// An ICE check naming the node's username fragment `fragment`, for tests of the ports.
#[cfg(test)]
pub(crate) fn check_naming(fragment: &str) -> Vec<u8> {
    tests::request(&[(ATTR_USERNAME, format!("{fragment}:client").as_bytes())])
}

/// A binding request naming no one (a reachability probe), for tests of the ports.
#[cfg(test)]
pub(crate) fn tests_probe() -> Vec<u8> {
    tests::request(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A binding request with the given attributes (type, value), padded.
    pub(super) fn request(attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (typ, value) in attributes {
            body.extend_from_slice(&typ.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn tells_the_protocols_apart() {
        assert_eq!(kind(&request(&[])), Kind::Stun);
        assert_eq!(kind(&[22, 254, 253, 0]), Kind::Dtls);
        assert_eq!(kind(&[0x80; 12]), Kind::Media);
        assert_eq!(kind(&[0x80; 4]), Kind::Unknown);
        assert_eq!(kind(&[0; 20]), Kind::Unknown, "no magic cookie");
        assert_eq!(kind(b"GET / HTTP/1.1"), Kind::Unknown);
        assert_eq!(kind(&[]), Kind::Unknown);
        let mut long = request(&[]);
        long.push(0);
        assert_eq!(kind(&long), Kind::Unknown, "length field disagrees");
    }

    #[test]
    fn an_ice_check_names_the_local_fragment() {
        let check = request(&[(0x0024, &[0, 0, 0, 1]), (ATTR_USERNAME, b"node1:client")]);
        assert_eq!(binding(&check), Some(Binding::Check("node1")));
        let odd = request(&[(ATTR_USERNAME, b"abc:de")]);
        assert_eq!(binding(&odd), Some(Binding::Check("abc")));
    }

    #[test]
    fn a_request_without_username_is_a_probe() {
        assert_eq!(binding(&request(&[])), Some(Binding::Probe));
        assert_eq!(
            binding(&request(&[(0x8028, &[1, 2, 3, 4])])),
            Some(Binding::Probe)
        );
    }

    #[test]
    fn malformed_attributes_and_other_messages_route_nowhere() {
        assert_eq!(binding(&request(&[(ATTR_USERNAME, b":client")])), None);
        assert_eq!(binding(&request(&[(ATTR_USERNAME, &[0xff, 0xfe])])), None);
        let mut truncated = request(&[(ATTR_USERNAME, b"node1:client")]);
        truncated[23] = 200; // the attribute claims more than the message holds
        assert_eq!(binding(&truncated), None);
        let mut response = request(&[]);
        response[..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
        assert_eq!(binding(&response), None);
    }

    #[test]
    fn the_probe_answer_carries_the_address_seen() {
        let probe = request(&[]);
        let mut out = [0; MAX_RESPONSE_LEN];
        let from: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        let n = success_response(&probe, from, &mut out);
        assert_eq!(n, 32);
        assert_eq!(kind(&out[..n]), Kind::Stun);
        assert_eq!(message_type(&out[..n]), BINDING_SUCCESS);
        assert_eq!(&out[8..20], &probe[8..20], "transaction id echoed");
        let port = u16::from_be_bytes([out[26], out[27]]) ^ 0x2112;
        let ip: Vec<u8> = out[28..32]
            .iter()
            .zip(MAGIC_COOKIE.to_be_bytes())
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!((ip.as_slice(), port), (&[192, 0, 2, 7][..], 40000));
        let v6: SocketAddr = "[2001:db8::1]:5".parse().expect("addr");
        assert_eq!(success_response(&probe, v6, &mut out), MAX_RESPONSE_LEN);
    }

    proptest! {
        #[test]
        fn no_datagram_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120), stun_header in any::<bool>()) {
            let mut datagram = bytes;
            if stun_header && datagram.len() >= HEADER_LEN {
                datagram[0] = 0;
                datagram[1] = 1;
                let len = (datagram.len() - HEADER_LEN) as u16;
                datagram[2..4].copy_from_slice(&len.to_be_bytes());
                datagram[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            }
            let _ = kind(&datagram);
            if binding(&datagram).is_some() {
                let mut out = [0; MAX_RESPONSE_LEN];
                let _ = success_response(&datagram, "[::1]:1".parse().expect("addr"), &mut out);
            }
        }
    }
}
