//! Delay and random loss on a media node's UDP port, both ways, in user space (the kernel
//! here has no netem): an nftables rule in the network namespace of the Kubernetes node the
//! pod runs on redirects datagrams arriving for the pod's port to a relay listening in that
//! namespace, which drops a share of them and sends the rest on to the pod after a fixed
//! delay, from a socket of its own per client; the pod's replies take the same way back, and
//! conntrack gives them the node's address and port as their source again, so the client
//! sees nothing but a slower, lossier path. The relay's sockets are bound by a thread that
//! entered the namespace (a socket keeps the namespace it was made in); its tasks run on the
//! caller's tokio runtime. Only flows that begin after [`DelayRelay::start`] are redirected.
//! Dropping the [`DelayRelay`] deletes the rule and stops the relay.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::lossy_link::LinkCounters;
use crate::netns::{exec, undo};

/// The table's name in the node's namespace.
const TABLE: &str = "conclave_delay";
/// Clients the relay carries at most (one upstream socket each, bound at start).
pub const MAX_CLIENTS: usize = 8;
/// Datagrams waiting out their delay at most, per client and direction.
const MAX_IN_FLIGHT: usize = 8_192;

/// The relay's counters, as [`LinkCounters`] name them.
#[derive(Debug, Default)]
struct Counters {
    arrived: AtomicU64,
    arrived_dropped: AtomicU64,
    left: AtomicU64,
    left_dropped: AtomicU64,
}

/// A relay in front of one pod's port until dropped.
pub struct DelayRelay {
    netns: String,
    counters: Arc<Counters>,
    tasks: JoinSet<()>,
}

/// Binds a UDP socket on each of `addresses` inside network namespace `netns`.
fn bind_in(netns: &str, addresses: &[SocketAddr]) -> Result<Vec<std::net::UdpSocket>, String> {
    let path = format!("/var/run/netns/{netns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let namespace = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                setns(&namespace, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering {path}: {e}"))?;
                addresses
                    .iter()
                    .map(|a| {
                        let socket =
                            std::net::UdpSocket::bind(a).map_err(|e| format!("bind {a}: {e}"))?;
                        socket
                            .set_nonblocking(true)
                            .map_err(|e| format!("{a}: {e}"))?;
                        Ok(socket)
                    })
                    .collect()
            })
            .join()
            .map_err(|_| "the namespace thread panicked".to_owned())?
    })
}

/// The nftables script that redirects datagrams arriving for `port` to `relay_port`.
fn script(port: u16, relay_port: u16) -> String {
    format!(
        "table ip {TABLE} {{
  chain prerouting {{
    type nat hook prerouting priority -150; policy accept;
    udp dport {port} redirect to :{relay_port}
  }}
}}
"
    )
}

/// True with probability `percent` %.
fn lost(percent: u8) -> bool {
    rand::random_range(0..100u8) < percent
}

/// Sends what `queue` hands over to its address from `socket`, each at its time.
async fn deliver(
    socket: Arc<UdpSocket>,
    mut queue: mpsc::Receiver<(Instant, Vec<u8>, SocketAddr)>,
) {
    while let Some((due, datagram, to)) = queue.recv().await {
        tokio::time::sleep_until(due).await;
        let _ = socket.send_to(&datagram, to).await;
    }
}

impl DelayRelay {
    /// Relays datagrams for `pod`'s UDP port through network namespace `netns` (the node's
    /// hosting the pod, see [`crate::LocalNode::netns`]), `delay` each way, dropping
    /// `loss_percent` % each way.
    pub async fn start(
        netns: &str,
        pod: SocketAddr,
        delay: Duration,
        loss_percent: u8,
    ) -> Result<DelayRelay, String> {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let mut sockets = bind_in(netns, &[any; MAX_CLIENTS + 1])?.into_iter();
        let listen = sockets.next().ok_or("no listening socket")?;
        let relay_port = listen.local_addr().map_err(|e| e.to_string())?.port();
        let listen = Arc::new(UdpSocket::from_std(listen).map_err(|e| e.to_string())?);
        let mut free: Vec<Arc<UdpSocket>> = sockets
            .map(|s| UdpSocket::from_std(s).map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let counters = Arc::new(Counters::default());
        let mut tasks = JoinSet::new();
        let (to_clients, from_pod) = mpsc::channel(MAX_IN_FLIGHT);
        tasks.spawn(deliver(Arc::clone(&listen), from_pod));
        let c = Arc::clone(&counters);
        tasks.spawn(async move {
            // Client address → the queue of datagrams to the pod from its upstream socket.
            let mut clients: HashMap<SocketAddr, mpsc::Sender<_>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            let mut relays = JoinSet::new();
            while let Ok((n, client)) = listen.recv_from(&mut buf).await {
                c.arrived.fetch_add(1, Ordering::Relaxed);
                if lost(loss_percent) {
                    c.arrived_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let to_pod = match clients.entry(client) {
                    Entry::Occupied(known) => known.into_mut(),
                    Entry::Vacant(new) => {
                        let Some(upstream) = free.pop() else {
                            continue;
                        };
                        let (to_pod, queue) = mpsc::channel(MAX_IN_FLIGHT);
                        relays.spawn(deliver(Arc::clone(&upstream), queue));
                        let (back, c) = (to_clients.clone(), Arc::clone(&c));
                        relays.spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok((n, _)) = upstream.recv_from(&mut buf).await {
                                c.left.fetch_add(1, Ordering::Relaxed);
                                if lost(loss_percent) {
                                    c.left_dropped.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                let due = Instant::now() + delay;
                                let _ = back.try_send((due, buf[..n].to_vec(), client));
                            }
                        });
                        new.insert(to_pod)
                    }
                };
                let due = Instant::now() + delay;
                let _ = to_pod.try_send((due, buf[..n].to_vec(), pod));
            }
        });
        exec(
            netns,
            &["nft", "-f", "-"],
            Some(&script(pod.port(), relay_port)),
        )
        .await?;
        Ok(DelayRelay {
            netns: netns.to_owned(),
            counters,
            tasks,
        })
    }

    /// What the relay saw and dropped so far.
    pub fn counters(&self) -> LinkCounters {
        let c = &self.counters;
        LinkCounters {
            arrived: c.arrived.load(Ordering::Relaxed),
            arrived_dropped: c.arrived_dropped.load(Ordering::Relaxed),
            left: c.left.load(Ordering::Relaxed),
            left_dropped: c.left_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        undo(&self.netns, &["nft", "delete", "table", "ip", TABLE]);
        self.tasks.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_redirects_the_ports_datagrams_to_the_relay() {
        let s = script(56_000, 41_234);
        assert!(s.contains("hook prerouting priority -150"));
        assert!(s.contains("udp dport 56000 redirect to :41234"));
    }
}
