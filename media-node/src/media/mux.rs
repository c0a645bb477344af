//! The media node's one UDP port. Every peer connection's traffic goes through one socket:
//! a receive task reads it in batches (recvmmsg, GRO) and hands each datagram to the peer
//! connection it belongs to, found by the remote address, or, for the ICE check that opens
//! a path, by the node's username fragment the check names. A binding request naming no one
//! (a reachability probe) is answered here. Everything else is dropped and counted. Sends
//! from every peer connection go out of the same socket: queued in the port's `outbox` (a
//! driver that finds it full waits) and written by its sender task in runs (GSO).
//!
//! The node sends ICE checks only to addresses that reached it first (it answers and sends
//! triggered checks; clients, the controlling side, open the paths). Behind a hostPort the
//! Node's connection tracking maps a client's packets to the pod; a check the pod sent first
//! would open a second mapping, and the client's packets would then reach the pod from a
//! translated port. It also keeps a client from making the node send to addresses of its
//! choosing.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::task::AtomicWaker;
use webrtc::runtime::{BATCH_SIZE, RecvMeta, Transmit, UdpSockRef, UdpSocketState};

use super::outbox::{self, Outbox};
use super::stun::{self, Binding, Kind};
use crate::sync::lock;

/// Datagrams waiting for one peer connection's driver; more are dropped (`QueueFull`).
const INBOX_DEPTH: usize = 1024;
/// Remote addresses the port keeps routes for, over all peer connections.
const MAX_ROUTES: usize = 65_536;
/// Reachability probes answered per second (a bucket of this size refilled each second):
/// an unauthenticated answer must not make the port a reflector.
const PROBES_PER_SECOND: f64 = 50.0;
/// The largest datagram read (GRO may coalesce several of them into one buffer).
const DATAGRAM_LEN: usize = 1500;
/// Received bytes are copied into arenas of this size, so a datagram costs no allocation.
const ARENA_LEN: usize = 256 * 1024;
/// Socket buffers asked for (the kernel caps them at net.core.rmem_max / wmem_max): a frame
/// burst to every subscriber, or from every publisher, must not overflow them.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Why the port dropped a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortDrop {
    /// Not STUN, DTLS or RTP (RFC 7983), or a malformed STUN message.
    Malformed,
    /// From an address no peer connection has a path with, and not an ICE check naming one.
    UnknownSource,
    /// The peer connection's inbox was full.
    QueueFull,
    /// A reachability probe over the answer rate.
    ProbeLimited,
}

impl PortDrop {
    /// Every reason, for metrics.
    pub const ALL: [PortDrop; 4] = [
        PortDrop::Malformed,
        PortDrop::UnknownSource,
        PortDrop::QueueFull,
        PortDrop::ProbeLimited,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            PortDrop::Malformed => "malformed",
            PortDrop::UnknownSource => "unknown_source",
            PortDrop::QueueFull => "queue_full",
            PortDrop::ProbeLimited => "probe_limited",
        }
    }
}

/// Counters of the port, read by `/metrics`.
#[derive(Debug, Default)]
pub struct PortCounters {
    received: AtomicU64,
    probes_answered: AtomicU64,
    checks_withheld: AtomicU64,
    sends_failed: AtomicU64,
    dropped: [AtomicU64; 4],
}

impl PortCounters {
    /// Datagrams read from the port.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// Reachability probes answered.
    pub fn probes_answered(&self) -> u64 {
        self.probes_answered.load(Ordering::Relaxed)
    }
    /// ICE checks not sent, to addresses that never reached the node.
    pub fn checks_withheld(&self) -> u64 {
        self.checks_withheld.load(Ordering::Relaxed)
    }
    /// Datagrams lost to sends the socket refused.
    pub fn sends_failed(&self) -> u64 {
        self.sends_failed.load(Ordering::Relaxed)
    }
    /// Datagrams dropped for `reason`.
    pub fn dropped(&self, reason: PortDrop) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }
    fn drop_one(&self, reason: PortDrop) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Who gets what arrives: by remote address, and by the node's ICE username fragment.
#[derive(Debug, Default)]
struct Routes {
    by_address: HashMap<SocketAddr, Weak<Endpoint>>,
    by_fragment: HashMap<String, Weak<Endpoint>>,
    probe_tokens: f64,
    probe_refilled: Option<Instant>,
}

impl Routes {
    /// The peer connection `address` has a path with.
    fn reached_from(&self, address: SocketAddr) -> Option<Arc<Endpoint>> {
        self.by_address.get(&address).and_then(Weak::upgrade)
    }

    /// Whether what `address` sends goes to `endpoint`.
    fn routes_to(&self, address: SocketAddr, endpoint: &Arc<Endpoint>) -> bool {
        self.by_address
            .get(&address)
            .is_some_and(|e| e.as_ptr() == Arc::as_ptr(endpoint))
    }

    fn learn(&mut self, address: SocketAddr, endpoint: &Arc<Endpoint>) {
        if self.routes_to(address, endpoint) {
            return;
        }
        if self.by_address.len() >= MAX_ROUTES {
            self.by_address.retain(|_, e| e.strong_count() > 0);
            if self.by_address.len() >= MAX_ROUTES {
                return;
            }
        }
        self.by_address.insert(address, Arc::downgrade(endpoint));
    }

    fn may_answer_probe(&mut self, now: Instant) -> bool {
        let elapsed = self
            .probe_refilled
            .map_or(1.0, |t| now.duration_since(t).as_secs_f64());
        self.probe_tokens =
            (self.probe_tokens + elapsed * PROBES_PER_SECOND).min(PROBES_PER_SECOND);
        self.probe_refilled = Some(now);
        if self.probe_tokens >= 1.0 {
            self.probe_tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The socket and routing state, shared by the receive task and the endpoints.
#[derive(Debug)]
struct Shared {
    io: tokio::net::UdpSocket,
    batch: UdpSocketState,
    routes: Mutex<Routes>,
    counters: PortCounters,
    outbox: Outbox,
}

impl Shared {
    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        if self.outbox.push(
            transmit.destination,
            transmit.contents,
            transmit.segment_size,
            cx.waker(),
        ) {
            Poll::Ready(Ok(transmit.contents.len()))
        } else {
            Poll::Pending
        }
    }

    /// Writes `transmit` to the socket now, or says when it can be.
    fn poll_send_now(
        &self,
        cx: &mut Context<'_>,
        transmit: &Transmit<'_>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.io.poll_send_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            // Through `try_io`, so tokio learns when the socket stops being writable.
            match self.io.try_io(tokio::io::Interest::WRITABLE, || {
                self.batch
                    .try_send(UdpSockRef::from(&self.io), transmit)
                    .map(|()| transmit.contents.len())
            }) {
                Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    /// Routes one batch of received datagrams under one lock, then wakes the peer
    /// connections that got some (`woken` is scratch space, kept between batches).
    fn deliver(&self, datagrams: &mut Vec<(SocketAddr, Bytes)>, woken: &mut Vec<Arc<Endpoint>>) {
        self.counters
            .received
            .fetch_add(datagrams.len() as u64, Ordering::Relaxed);
        let mut routes = lock(&self.routes);
        for (from, datagram) in datagrams.drain(..) {
            let endpoint = match stun::kind(&datagram) {
                Kind::Unknown => {
                    self.counters.drop_one(PortDrop::Malformed);
                    continue;
                }
                Kind::Stun => match stun::binding(&datagram) {
                    Some(Binding::Check(fragment)) => {
                        match routes.by_fragment.get(fragment).and_then(Weak::upgrade) {
                            Some(endpoint) => {
                                routes.learn(from, &endpoint);
                                Some(endpoint)
                            }
                            None => None,
                        }
                    }
                    Some(Binding::Probe) => {
                        if routes.may_answer_probe(Instant::now()) {
                            self.answer_probe(&datagram, from);
                        } else {
                            self.counters.drop_one(PortDrop::ProbeLimited);
                        }
                        continue;
                    }
                    // Answers to the node's own checks, and indications.
                    None => routes.reached_from(from),
                },
                Kind::Dtls | Kind::Media => routes.reached_from(from),
            };
            let Some(endpoint) = endpoint else {
                self.counters.drop_one(PortDrop::UnknownSource);
                continue;
            };
            if endpoint.push(from, datagram) {
                if !woken.iter().any(|e| Arc::ptr_eq(e, &endpoint)) {
                    woken.push(endpoint);
                }
            } else {
                self.counters.drop_one(PortDrop::QueueFull);
            }
        }
        drop(routes);
        for endpoint in woken.drain(..) {
            endpoint.waker.wake();
        }
    }

    fn answer_probe(&self, request: &[u8], from: SocketAddr) {
        let mut out = [0u8; stun::MAX_RESPONSE_LEN];
        let n = stun::success_response(request, from, &mut out);
        // Best effort: a probe that meets a full send buffer is simply not answered.
        if self.io.try_send_to(&out[..n], from).is_ok() {
            self.counters
                .probes_answered
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The media node's single UDP port.
#[derive(Debug)]
pub struct UdpMux {
    shared: Arc<Shared>,
    local: SocketAddr,
    receiver: tokio::task::AbortHandle,
    sender: tokio::task::AbortHandle,
}

impl Drop for UdpMux {
    fn drop(&mut self) {
        self.receiver.abort();
        self.sender.abort();
    }
}

impl UdpMux {
    /// Binds the port (port 0: one the system picks) and starts reading it. Must be called
    /// inside the tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Arc<Self>> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let sized = socket2::SockRef::from(&socket);
        for (what, result) in [
            ("receive", sized.set_recv_buffer_size(SOCKET_BUFFER)),
            ("send", sized.set_send_buffer_size(SOCKET_BUFFER)),
        ] {
            if let Err(e) = result {
                tracing::warn!(error = %e, "the media port keeps its default {what} buffer");
            }
        }
        let io = tokio::net::UdpSocket::from_std(socket)?;
        let batch = UdpSocketState::new(UdpSockRef::from(&io))?;
        let local = io.local_addr()?;
        let shared = Arc::new(Shared {
            io,
            batch,
            routes: Mutex::new(Routes::default()),
            counters: PortCounters::default(),
            outbox: Outbox::default(),
        });
        let receiver = tokio::spawn(receive(Arc::clone(&shared))).abort_handle();
        let sender = tokio::spawn(send(Arc::clone(&shared))).abort_handle();
        Ok(Arc::new(Self {
            shared,
            local,
            receiver,
            sender,
        }))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The port's counters.
    pub fn counters(&self) -> &PortCounters {
        &self.shared.counters
    }

    /// A new endpoint: one peer connection's view of the port, which believes it is bound
    /// at `presented` (the address its ICE agent names its host candidate after).
    pub fn endpoint(&self, presented: SocketAddr) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            shared: Arc::clone(&self.shared),
            presented,
            inbox: Mutex::new(VecDeque::new()),
            waker: AtomicWaker::new(),
        })
    }
}

/// Writes what the peer connections queued in the outbox until the node drops the port:
/// each run of datagrams to one address in one send (GSO where the kernel has it).
async fn send(shared: Arc<Shared>) {
    let mut pass = Vec::with_capacity(outbox::PASS);
    let mut spent = Vec::with_capacity(outbox::PASS);
    let mut joined = Vec::new();
    loop {
        shared.outbox.queued.notified().await;
        loop {
            shared.outbox.take(&mut pass, &mut spent);
            if pass.is_empty() {
                break;
            }
            // Read per pass: the socket stops offering GSO after a send the path refused.
            let max_segments = shared.batch.max_gso_segments().max(1);
            for run in outbox::runs(&pass, max_segments) {
                let (destination, first) = &pass[run.start];
                let (contents, segment_size) = if run.len() == 1 {
                    (first.as_slice(), None)
                } else {
                    joined.clear();
                    for (_, datagram) in &pass[run.clone()] {
                        joined.extend_from_slice(datagram);
                    }
                    (joined.as_slice(), Some(first.len()))
                };
                let transmit = Transmit {
                    destination: *destination,
                    ecn: None,
                    contents,
                    segment_size,
                    src_ip: None,
                };
                let sent = futures::future::poll_fn(|cx| shared.poll_send_now(cx, &transmit)).await;
                if let Err(e) = sent {
                    // As a driver's own send would: the datagrams are lost on the way.
                    shared
                        .counters
                        .sends_failed
                        .fetch_add(run.len() as u64, Ordering::Relaxed);
                    tracing::debug!(to = %destination, error = %e, "media port send failed");
                }
            }
            spent.append(&mut pass);
        }
    }
}

/// Reads the port until the node drops it.
async fn receive(shared: Arc<Shared>) {
    let gro = shared.batch.gro_segments().max(1);
    // Reused for every read: nothing is allocated per datagram (the arena is refilled in
    // 256 KiB steps once the datagrams it holds are consumed).
    let mut buffers: [Vec<u8>; BATCH_SIZE] = std::array::from_fn(|_| vec![0u8; DATAGRAM_LEN * gro]);
    let mut meta = [RecvMeta::default(); BATCH_SIZE];
    let mut arena = BytesMut::with_capacity(ARENA_LEN);
    let mut batch: Vec<(SocketAddr, Bytes)> = Vec::with_capacity(BATCH_SIZE * gro);
    let mut woken = Vec::with_capacity(BATCH_SIZE);
    loop {
        if let Err(e) = shared.io.readable().await {
            tracing::error!(error = %e, "the media port cannot be read");
            return;
        }
        let received = shared.io.try_io(tokio::io::Interest::READABLE, || {
            let mut slices = buffers.each_mut().map(|b| IoSliceMut::new(b));
            let n = shared
                .batch
                .recv(UdpSockRef::from(&shared.io), &mut slices, &mut meta)?;
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match received {
            Ok(n) => n,
            Err(e) if transient(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the media port");
                continue;
            }
        };
        let datagrams =
            buffers.iter().zip(&meta).take(n).flat_map(|(buffer, m)| {
                segments(&buffer[..m.len], m.stride).map(move |d| (m.addr, d))
            });
        for (from, d) in datagrams {
            if arena.capacity() < d.len() {
                arena = BytesMut::with_capacity(ARENA_LEN);
            }
            arena.extend_from_slice(d);
            batch.push((from, arena.split().freeze()));
        }
        shared.deliver(&mut batch, &mut woken);
    }
}

/// The datagrams of one received buffer, `stride` bytes each but the last (GRO coalesces
/// a flow's datagrams); an empty datagram is one too.
fn segments(buffer: &[u8], stride: usize) -> impl Iterator<Item = &[u8]> {
    let empty = buffer.is_empty().then_some(buffer);
    buffer.chunks(stride.max(1)).chain(empty)
}

/// Errors a socket shared by many peers reports for one of them (ICMP unreachable and the
/// like), or readiness races: reading goes on.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::TimedOut
    )
}

/// One peer connection's view of the port: datagrams routed to it, and sends from the shared
/// socket. Dropping it removes its routes.
#[derive(Debug)]
pub struct Endpoint {
    shared: Arc<Shared>,
    presented: SocketAddr,
    inbox: Mutex<VecDeque<(SocketAddr, Bytes)>>,
    waker: AtomicWaker,
}

impl Endpoint {
    fn push(&self, from: SocketAddr, datagram: Bytes) -> bool {
        let mut inbox = lock(&self.inbox);
        if inbox.len() >= INBOX_DEPTH {
            return false;
        }
        inbox.push_back((from, datagram));
        true
    }

    /// Routes ICE checks naming `fragment` (the node's ICE username fragment of this peer
    /// connection) here. A fragment already taken by a live endpoint is left to it.
    pub fn accept_fragment(self: &Arc<Self>, fragment: &str) {
        let mut routes = lock(&self.shared.routes);
        let taken = routes
            .by_fragment
            .get(fragment)
            .is_some_and(|e| e.strong_count() > 0 && e.as_ptr() != Arc::as_ptr(self));
        if taken {
            tracing::warn!(fragment, "ICE username fragment already in use on the port");
            return;
        }
        routes
            .by_fragment
            .insert(fragment.to_owned(), Arc::downgrade(self));
    }

    /// Whether `address` reached this peer connection (so the node may send checks there).
    fn reached_by(self: &Arc<Self>, address: SocketAddr) -> bool {
        lock(&self.shared.routes).routes_to(address, self)
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let me: *const Endpoint = self;
        let mut routes = lock(&self.shared.routes);
        routes.by_address.retain(|_, e| e.as_ptr() != me);
        routes.by_fragment.retain(|_, e| e.as_ptr() != me);
    }
}

/// An endpoint as the webrtc driver's socket.
#[derive(Debug)]
pub struct EndpointSocket(pub Arc<Endpoint>);

impl webrtc::runtime::AsyncUdpSocket for EndpointSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.0.presented)
    }

    fn max_gso_segments(&self) -> usize {
        self.0.shared.batch.max_gso_segments()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // Checks only where the client reached the node first (see the module's note); the
        // driver is told it was sent, as if lost on the way.
        if stun::kind(transmit.contents) == Kind::Stun && !self.0.reached_by(transmit.destination) {
            self.0
                .shared
                .counters
                .checks_withheld
                .fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Ok(transmit.contents.len()));
        }
        self.0.shared.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let filled = self.fill(bufs, meta);
        if filled > 0 {
            return Poll::Ready(Ok(filled));
        }
        self.0.waker.register(cx.waker());
        // A datagram pushed between the first look and the registration is not missed.
        match self.fill(bufs, meta) {
            0 => Poll::Pending,
            n => Poll::Ready(Ok(n)),
        }
    }
}

impl EndpointSocket {
    fn fill(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        let mut inbox = lock(&self.0.inbox);
        let mut n = 0;
        for (buf, m) in bufs.iter_mut().zip(meta.iter_mut()) {
            let Some((from, datagram)) = inbox.pop_front() else {
                break;
            };
            let len = datagram.len().min(buf.len());
            buf[..len].copy_from_slice(&datagram[..len]);
            m.addr = from;
            m.len = len;
            m.stride = len.max(1);
            m.ecn = None;
            m.dst_ip = None;
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coalesced_buffer_splits_at_the_stride() {
        let buffer = [1u8; 2500];
        let lengths: Vec<usize> = segments(&buffer, 1000).map(<[u8]>::len).collect();
        assert_eq!(lengths, vec![1000, 1000, 500]);
        assert_eq!(segments(&buffer[..40], 40).count(), 1);
        assert_eq!(
            segments(&[], 0).map(<[u8]>::len).collect::<Vec<_>>(),
            vec![0]
        );
    }

    #[test]
    fn probes_are_answered_up_to_the_rate() {
        let mut routes = Routes::default();
        let start = Instant::now();
        let answered = (0..200).filter(|_| routes.may_answer_probe(start)).count();
        assert_eq!(answered, PROBES_PER_SECOND as usize);
        assert!(!routes.may_answer_probe(start));
        assert!(routes.may_answer_probe(start + std::time::Duration::from_millis(100)));
    }
}
