//! A TURN client for tests: allocates a relay on a TURN server with long-term (TURN REST)
//! credentials and proves that datagrams cross it both ways, using the sans-IO TURN client of
//! the `rtc` crate over a blocking UDP socket.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::sansio::Protocol;
use rtc::shared::{TransportContext, TransportMessage, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event};

/// Credentials and where to find the server.
#[derive(Clone, Debug)]
pub struct TurnLogin {
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    pub realm: String,
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the server refused the allocation: {0}")]
    Refused(String),
    #[error("no answer from the TURN server within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

/// Allocates a relay, lets a local peer socket exchange a datagram with the client through
/// it in both directions, and returns the relayed address.
pub fn relay_round_trip(login: &TurnLogin, timeout: Duration) -> Result<SocketAddr, ProbeError> {
    probe(login, None, timeout)
}

/// Allocates a relay and asks for a permission to send to `peer` (any address, such as the
/// server's own loopback); returns the relayed address once the permission is granted.
pub fn permit_peer(
    login: &TurnLogin,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, ProbeError> {
    probe(login, Some(peer), timeout)
}

fn probe(
    login: &TurnLogin,
    permit_only: Option<SocketAddr>,
    timeout: Duration,
) -> Result<SocketAddr, ProbeError> {
    let other = |e: &dyn std::fmt::Display| ProbeError::Other(e.to_string());
    // The client and the peer use this machine's address towards the server (on a real
    // node's bridge, or loopback): a peer at 0.0.0.0 would be no address to permit.
    let route = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| other(&e))?;
    route.connect(login.server).map_err(|e| other(&e))?;
    let local_ip = route.local_addr().map_err(|e| other(&e))?.ip();
    let socket = UdpSocket::bind((local_ip, 0)).map_err(|e| other(&e))?;
    let peer = UdpSocket::bind((local_ip, 0)).map_err(|e| other(&e))?;
    peer.set_nonblocking(true).map_err(|e| other(&e))?;
    let local_addr = socket.local_addr().map_err(|e| other(&e))?;
    let peer_addr = permit_only.map_or_else(|| peer.local_addr().map_err(|e| other(&e)), Ok)?;
    let config = ClientConfig {
        turn_serv_addr: login.server.to_string(),
        local_addr,
        transport_protocol: TransportProtocol::UDP,
        username: login.username.clone(),
        password: login.password.clone(),
        realm: login.realm.clone(),
        ..Default::default()
    };
    let provider = rtc::crypto::default_provider().map_err(|e| other(&e))?;
    let mut client = Client::new(config, provider).map_err(|e| other(&e))?;
    client.allocate(Instant::now()).map_err(|e| other(&e))?;

    let deadline = Instant::now() + timeout;
    let mut relayed = None;
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(out) = client.poll_write() {
            socket
                .send_to(&out.message, out.transport.peer_addr)
                .map_err(|e| other(&e))?;
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::AllocateResponse(_, addr) => {
                    relayed = Some(addr);
                    client
                        .relay(addr)
                        .and_then(|mut r| r.create_permission(Instant::now(), peer_addr))
                        .map_err(|e| other(&e))?;
                }
                Event::AllocateError(_, e) => return Err(ProbeError::Refused(e.to_string())),
                Event::CreatePermissionResponse(..) => {
                    let addr = relayed.ok_or_else(|| other(&"permission before allocation"))?;
                    if permit_only.is_some() {
                        return Ok(addr);
                    }
                    client
                        .relay(addr)
                        .and_then(|mut r| r.send_to(Instant::now(), b"ping", peer_addr))
                        .map_err(|e| other(&e))?;
                }
                Event::CreatePermissionError(_, e) => {
                    return Err(ProbeError::Refused(e.to_string()));
                }
                Event::DataIndicationOrChannelData(_, from, data)
                    if from == peer_addr && &data[..] == b"pong" =>
                {
                    return relayed.ok_or_else(|| other(&"data before allocation"));
                }
                Event::TransactionTimeout(_) => return Err(ProbeError::Timeout(timeout)),
                _ => {}
            }
        }
        // The peer sees the datagram come from the relayed address and answers.
        if let (Ok((n, from)), Some(addr)) = (peer.recv_from(&mut buf), relayed) {
            if &buf[..n] != b"ping" || from != addr {
                return Err(other(&format!(
                    "peer got {n} bytes from {from}, not ping from {addr}"
                )));
            }
            peer.send_to(b"pong", addr).map_err(|e| other(&e))?;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ProbeError::Timeout(timeout));
        }
        let wake = client
            .poll_timeout()
            .unwrap_or(deadline)
            .min(deadline)
            .min(now + Duration::from_millis(20));
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).map_err(|e| other(&e))?;
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            client
                .handle_read(TransportMessage {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr,
                        peer_addr: from,
                        transport_protocol: TransportProtocol::UDP,
                        ecn: None,
                    },
                    message: BytesMut::from(&buf[..n]),
                })
                .map_err(|e| other(&e))?;
        }
        client
            .handle_timeout(Instant::now())
            .map_err(|e| other(&e))?;
    }
}
