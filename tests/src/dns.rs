//! A DNS server on loopback that answers the A records a test gives it, as a cloud's DNS
//! answers for the hostname of a load balancer (AWS's Network Load Balancer names a host, not
//! an address): the operator is pointed at it with `--dns-server`, so nothing goes through
//! the machine's resolver. Every other name is NXDOMAIN; it stops when dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Seconds an answer may be cached.
const TTL: u32 = 5;

type Records = Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>;

/// The running server and the names it answers.
pub struct DnsServer {
    address: SocketAddr,
    records: Records,
    task: JoinHandle<()>,
}

impl DnsServer {
    /// Serves on a free UDP port of 127.0.0.1, knowing no name yet.
    pub async fn start() -> std::io::Result<DnsServer> {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = socket.local_addr()?;
        let records = Records::default();
        let task = tokio::spawn(serve(socket, records.clone()));
        Ok(DnsServer {
            address,
            records,
            task,
        })
    }

    /// Where it listens (for `--dns-server`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Answers `name` (without its final dot) with `addresses` from now on, in that order.
    pub fn set(&self, name: &str, addresses: &[Ipv4Addr]) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.insert(name.to_ascii_lowercase(), addresses.to_vec());
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, records: Records) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(reply) = answer(&buf[..len], &records) else {
            continue;
        };
        let _ = socket.send_to(&reply, from).await;
    }
}

/// The reply to one query datagram; None for anything that is not a query.
fn answer(datagram: &[u8], records: &Records) -> Option<Vec<u8>> {
    let query = Message::from_vec(datagram).ok()?;
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    let name = question.name().to_ascii();
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let known = records
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&name)
        .cloned();
    match known {
        Some(addresses) if question.query_type() == RecordType::A => {
            for ip in addresses {
                let record = Record::from_rdata(question.name().clone(), TTL, RData::A(A(ip)));
                reply.add_answer(record);
            }
        }
        Some(_) => {}
        None => reply.metadata.response_code = ResponseCode::NXDomain,
    }
    reply.add_query(question);
    reply.to_vec().ok()
}
