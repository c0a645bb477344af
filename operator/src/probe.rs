//! The reachability probe of a media node's published address: a STUN binding request
//! (RFC 8489, no username, so the node's UDP port answers it itself) sent from the operator,
//! and the answer awaited from that very address; with ICE-TCP, the same request framed as
//! RFC 4571 over a connection to its TCP port. The decision it feeds is
//! `decide::reachability`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
/// Requests sent before giving up, each waited on this long.
const TRIES: u32 = 3;
const WAIT: Duration = Duration::from_millis(400);

/// A binding request with transaction id `transaction`.
fn binding_request(transaction: [u8; 12]) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[1] = 0x01;
    m[4..8].copy_from_slice(&MAGIC_COOKIE);
    m[8..20].copy_from_slice(&transaction);
    m
}

/// Whether `datagram` is a binding success response to `transaction`.
fn answers(datagram: &[u8], transaction: &[u8; 12]) -> bool {
    datagram.len() >= 20
        && datagram[..2] == BINDING_SUCCESS
        && datagram[4..8] == MAGIC_COOKIE
        && datagram[8..20] == transaction[..]
}

/// True when `target` answers a binding request within the tries; false on silence, an
/// ICMP refusal or a local error (logged).
pub async fn answers_binding(target: SocketAddr) -> bool {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot bind a socket to probe media-node addresses");
            return false;
        }
    };
    // Connected: only datagrams from the target are read, and an ICMP refusal is reported.
    if let Err(e) = socket.connect(target).await {
        tracing::debug!(%target, error = %e, "probe: no route");
        return false;
    }
    let transaction: [u8; 12] = rand::random();
    let request = binding_request(transaction);
    let mut buf = [0u8; 128];
    for _ in 0..TRIES {
        if socket.send(&request).await.is_err() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Ok(Ok(n)) if answers(&buf[..n], &transaction) => return true,
                // Something else from the target (a late answer to an earlier try is the
                // same transaction): keep waiting.
                Ok(Ok(_)) => continue,
                // Refused (ICMP port unreachable) or any other error: try again after the wait.
                Ok(Err(_)) => {
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    false
}

/// How long a TCP probe may take, connection included.
const TCP_WAIT: Duration = Duration::from_millis(1500);

/// True when `target`'s TCP port answers a framed binding request within `TCP_WAIT`.
pub async fn answers_binding_over_tcp(target: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let transaction: [u8; 12] = rand::random();
    let request = binding_request(transaction);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        let mut framed = (request.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&request);
        stream.write_all(&framed).await?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length)).min(512)];
        stream.read_exact(&mut answer).await?;
        std::io::Result::Ok(answers(&answer, &transaction))
    };
    match tokio::time::timeout(TCP_WAIT, exchange).await {
        Ok(Ok(answered)) => answered,
        Ok(Err(e)) => {
            tracing::debug!(%target, error = %e, "TCP probe failed");
            false
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_the_answer_to_its_own_transaction() {
        let t = [7u8; 12];
        let request = binding_request(t);
        assert_eq!(&request[..8], &[0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42]);
        let mut answer = request;
        answer[..2].copy_from_slice(&BINDING_SUCCESS);
        assert!(answers(&answer, &t));
        assert!(!answers(&answer, &[8u8; 12]));
        assert!(!answers(&request, &t), "a request is not an answer");
        assert!(!answers(&answer[..19], &t));
    }

    #[tokio::test]
    async fn a_closed_port_does_not_answer() {
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target = closed.local_addr().expect("addr");
        drop(closed);
        assert!(!answers_binding(target).await);
    }

    #[tokio::test]
    async fn an_answering_port_does() {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            let mut answer = buf;
            answer[..2].copy_from_slice(&BINDING_SUCCESS);
            server.send_to(&answer[..n], from).await.expect("send");
        });
        assert!(answers_binding(target).await);
    }
}
