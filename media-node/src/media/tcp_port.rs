//! The media node's one TCP port, for clients whose networks let no UDP out (ICE-TCP, RFC
//! 6544, with RFC 4571 framing). The node offers a passive TCP host candidate at this port;
//! clients connect to it. A new connection says who it is for only in its first frame, the
//! ICE check naming the node's username fragment of one peer connection: the port reads that
//! frame, then hands the connection, that frame first, to the peer connection's driver, which
//! reads and writes it from then on. A binding request naming no one (the operator's
//! reachability probe) is answered with the address it came from. A connection that sends
//! anything else, names no one, or stays silent is closed and counted. The node never
//! connects out.
//!
//! Media over TCP must not stall a call: a write that finds the connection's send buffer full
//! drops the frame, as the network would drop a datagram (a frame already begun is finished,
//! or the connection closed, so the framing holds).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use webrtc::runtime::{AsyncTcpListener, AsyncTcpStream};

use super::stun::{self, Binding, Kind};
use crate::sync::lock;

/// Connections that have not yet named a peer connection, at once; more are closed at accept.
const OPENING_AT_ONCE: usize = 256;
/// Of those, from one address (IPv6: one /64): one client holding connections open without
/// sending must not keep the others out.
const OPENING_PER_ADDRESS: u32 = 8;
/// How long a new connection has to send its first frame.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(5);
/// The largest first frame read: an ICE check is about a hundred bytes.
const FIRST_FRAME_MAX: usize = 1024;
/// Connections one peer connection is handed over its life; more are closed. A client opens
/// one per path it tries (and again after an ICE restart).
const CONNECTIONS_PER_PEER: u64 = 8;
/// How long a frame already begun may take to finish before the connection is closed.
const FRAME_FINISH_WITHIN: Duration = Duration::from_secs(2);

/// Why the port closed a connection before any peer connection had it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpRefusal {
    /// Its first frame was not an ICE check (or was too long).
    Malformed,
    /// Its first check named no peer connection of the node.
    UnknownFragment,
    /// It sent no whole frame in time.
    Silent,
    /// Too many connections were opening (from its address, or at all), or its peer
    /// connection had all it may have.
    Busy,
}

impl TcpRefusal {
    /// Every reason, for metrics.
    pub const ALL: [TcpRefusal; 4] = [
        TcpRefusal::Malformed,
        TcpRefusal::UnknownFragment,
        TcpRefusal::Silent,
        TcpRefusal::Busy,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpRefusal::Malformed => "malformed",
            TcpRefusal::UnknownFragment => "unknown_fragment",
            TcpRefusal::Silent => "silent",
            TcpRefusal::Busy => "busy",
        }
    }
}

/// Counters of the TCP port, read by `/metrics`.
#[derive(Debug, Default)]
pub struct TcpCounters {
    handed_over: AtomicU64,
    probes_answered: AtomicU64,
    refused: [AtomicU64; 4],
    frames_dropped: AtomicU64,
}

impl TcpCounters {
    /// Connections handed to a peer connection.
    pub fn handed_over(&self) -> u64 {
        self.handed_over.load(Ordering::Relaxed)
    }
    /// Reachability probes answered (binding requests naming no one).
    pub fn probes_answered(&self) -> u64 {
        self.probes_answered.load(Ordering::Relaxed)
    }
    /// Connections closed for `reason`.
    pub fn refused(&self, reason: TcpRefusal) -> u64 {
        self.refused[reason as usize].load(Ordering::Relaxed)
    }
    /// Frames not sent because the connection's send buffer was full.
    pub fn frames_dropped(&self) -> u64 {
        self.frames_dropped.load(Ordering::Relaxed)
    }
    fn refuse(&self, reason: TcpRefusal) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What the accept task and the endpoints share.
#[derive(Debug, Default)]
struct Shared {
    by_fragment: Mutex<HashMap<String, Weak<TcpEndpoint>>>,
    /// Connections opening, by source (see `source_key`).
    opening: Mutex<HashMap<IpAddr, u32>>,
    counters: TcpCounters,
}

/// The key a source's opening connections are counted under: its address, or its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

impl Shared {
    /// Counts one more connection opening from `ip`; false when it has its share already.
    fn start_opening(&self, ip: IpAddr) -> bool {
        let mut opening = lock(&self.opening);
        let n = opening.entry(source_key(ip)).or_default();
        if *n >= OPENING_PER_ADDRESS {
            return false;
        }
        *n += 1;
        true
    }

    fn done_opening(&self, ip: IpAddr) {
        let mut opening = lock(&self.opening);
        let key = source_key(ip);
        if let Some(n) = opening.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                opening.remove(&key);
            }
        }
    }
}

/// The media node's single TCP port.
#[derive(Debug)]
pub struct TcpPort {
    shared: Arc<Shared>,
    local: SocketAddr,
    acceptor: tokio::task::AbortHandle,
}

impl Drop for TcpPort {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TcpPort {
    /// Binds the port (port 0: one the system picks) and starts accepting. Must be called
    /// inside the tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Arc<Self>> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let acceptor = tokio::spawn(accept(listener, Arc::clone(&shared))).abort_handle();
        Ok(Arc::new(Self {
            shared,
            local,
            acceptor,
        }))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The port's counters.
    pub fn counters(&self) -> &TcpCounters {
        &self.shared.counters
    }

    /// A new endpoint: one peer connection's listener on the port, which believes it is
    /// bound at `presented` (the address its passive candidate is named after).
    pub fn endpoint(&self, presented: SocketAddr) -> Arc<TcpEndpoint> {
        let (handed, waiting) = mpsc::channel(CONNECTIONS_PER_PEER as usize);
        Arc::new(TcpEndpoint {
            shared: Arc::clone(&self.shared),
            presented,
            handed,
            waiting: tokio::sync::Mutex::new(waiting),
            taken: AtomicU64::new(0),
        })
    }
}

/// Accepts connections until the node drops the port.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was accepted.
                tracing::debug!(error = %e, "accepting on the media TCP port");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&opening).try_acquire_owned() else {
            shared.counters.refuse(TcpRefusal::Busy);
            continue;
        };
        if !shared.start_opening(from.ip()) {
            shared.counters.refuse(TcpRefusal::Busy);
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let opened = tokio::time::timeout(FIRST_FRAME_WITHIN, first_frame(stream)).await;
            shared.done_opening(from.ip());
            drop(permit);
            match opened {
                Err(_) => shared.counters.refuse(TcpRefusal::Silent),
                Ok(Err(reason)) => shared.counters.refuse(reason),
                Ok(Ok((stream, frame))) => open(&shared, stream, from, frame),
            }
        });
    }
}

/// Reads a connection's first RFC 4571 frame (its two length bytes included).
async fn first_frame(mut stream: TcpStream) -> Result<(TcpStream, Vec<u8>), TcpRefusal> {
    let mut length = [0u8; 2];
    stream
        .read_exact(&mut length)
        .await
        .map_err(|_| TcpRefusal::Silent)?;
    let len = usize::from(u16::from_be_bytes(length));
    if len > FIRST_FRAME_MAX {
        return Err(TcpRefusal::Malformed);
    }
    let mut frame = vec![0u8; 2 + len];
    frame[..2].copy_from_slice(&length);
    stream
        .read_exact(&mut frame[2..])
        .await
        .map_err(|_| TcpRefusal::Silent)?;
    Ok((stream, frame))
}

/// Answers a reachability probe (a binding request naming no one, the operator's check of
/// the published TCP port) with the address it came from; the connection then closes.
fn answer_probe(shared: &Shared, stream: &TcpStream, from: SocketAddr, request: &[u8]) {
    let mut response = [0u8; stun::MAX_RESPONSE_LEN];
    let n = stun::success_response(request, from, &mut response);
    let mut framed = [0u8; 2 + stun::MAX_RESPONSE_LEN];
    framed[..2].copy_from_slice(&(n as u16).to_be_bytes());
    framed[2..2 + n].copy_from_slice(&response[..n]);
    // A fresh connection's send buffer takes these few bytes at once.
    if stream.try_write(&framed[..2 + n]).is_ok() {
        shared
            .counters
            .probes_answered
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// Does what a connection's first frame (`frame`, length bytes included) asks: answers a
/// probe, or hands the connection to the peer connection its check names.
fn open(shared: &Shared, stream: TcpStream, from: SocketAddr, frame: Vec<u8>) {
    let request = &frame[2..];
    let binding = match stun::kind(request) {
        Kind::Stun => stun::binding(request),
        _ => None,
    };
    match binding {
        Some(Binding::Probe) => answer_probe(shared, &stream, from, request),
        Some(Binding::Check(fragment)) => {
            let endpoint = lock(&shared.by_fragment)
                .get(fragment)
                .and_then(Weak::upgrade);
            match endpoint {
                Some(endpoint) => hand_over(shared, &endpoint, stream, from, frame),
                None => shared.counters.refuse(TcpRefusal::UnknownFragment),
            }
        }
        None => shared.counters.refuse(TcpRefusal::Malformed),
    }
}

/// Gives a connection whose first frame is `frame` to the peer connection of `endpoint`.
fn hand_over(
    shared: &Shared,
    endpoint: &TcpEndpoint,
    stream: TcpStream,
    from: SocketAddr,
    frame: Vec<u8>,
) {
    if endpoint.taken.fetch_add(1, Ordering::Relaxed) >= CONNECTIONS_PER_PEER {
        return shared.counters.refuse(TcpRefusal::Busy);
    }
    let Ok(local) = stream.local_addr() else {
        return shared.counters.refuse(TcpRefusal::Silent);
    };
    let (read, write) = stream.into_split();
    let connection = PortConnection {
        read: tokio::sync::Mutex::new(Reader {
            half: read,
            replay: frame,
            replayed: 0,
        }),
        write: tokio::sync::Mutex::new(write),
        presented: endpoint.presented,
        local,
        peer: from,
        shared: Arc::clone(&endpoint.shared),
        broken: AtomicBool::new(false),
    };
    match endpoint.handed.try_send((Arc::new(connection), from)) {
        Ok(()) => {
            shared.counters.handed_over.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => shared.counters.refuse(TcpRefusal::Busy),
    }
}

/// One peer connection's listener on the port: the connections whose first check named it.
/// Dropping it removes its routes.
#[derive(Debug)]
pub struct TcpEndpoint {
    shared: Arc<Shared>,
    presented: SocketAddr,
    handed: mpsc::Sender<(Arc<dyn AsyncTcpStream>, SocketAddr)>,
    waiting: tokio::sync::Mutex<mpsc::Receiver<(Arc<dyn AsyncTcpStream>, SocketAddr)>>,
    taken: AtomicU64,
}

impl TcpEndpoint {
    /// Hands connections whose first check names `fragment` (the node's ICE username fragment
    /// of this peer connection) here. A fragment already taken by a live endpoint is left to it.
    pub fn accept_fragment(self: &Arc<Self>, fragment: &str) {
        let mut routes = lock(&self.shared.by_fragment);
        let taken = routes
            .get(fragment)
            .is_some_and(|e| e.strong_count() > 0 && e.as_ptr() != Arc::as_ptr(self));
        if !taken {
            routes.insert(fragment.to_owned(), Arc::downgrade(self));
        }
    }
}

impl Drop for TcpEndpoint {
    fn drop(&mut self) {
        let me: *const TcpEndpoint = self;
        lock(&self.shared.by_fragment).retain(|_, e| e.as_ptr() != me);
    }
}

/// A peer connection's endpoint as the webrtc driver's TCP listener.
#[derive(Debug)]
pub struct EndpointListener(pub Arc<TcpEndpoint>);

impl AsyncTcpListener for EndpointListener {
    fn accept<'a>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = io::Result<(Arc<dyn AsyncTcpStream>, SocketAddr)>> + Send + 'a>>
    {
        Box::pin(async move {
            match self.0.waiting.lock().await.recv().await {
                Some(connection) => Ok(connection),
                // The endpoint holds the sender, so this is never reached while it lives.
                None => std::future::pending().await,
            }
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.0.presented)
    }
}

/// The reading side of a handed-over connection: the first frame again, then the socket.
#[derive(Debug)]
struct Reader {
    half: OwnedReadHalf,
    replay: Vec<u8>,
    replayed: usize,
}

/// A connection the port handed to a peer connection.
#[derive(Debug)]
struct PortConnection {
    read: tokio::sync::Mutex<Reader>,
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    /// The address the peer connection's candidate is named after.
    presented: SocketAddr,
    /// The socket's own address, kept for logs.
    local: SocketAddr,
    peer: SocketAddr,
    shared: Arc<Shared>,
    /// A frame was left half written: the connection is shut, nothing more is sent on it.
    broken: AtomicBool,
}

impl AsyncTcpStream for PortConnection {
    fn read<'a, 'b>(
        &'a self,
        buf: &'b mut [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            let mut reader = self.read.lock().await;
            let reader = &mut *reader;
            if reader.replayed < reader.replay.len() {
                let rest = &reader.replay[reader.replayed..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                reader.replayed += n;
                if reader.replayed == reader.replay.len() {
                    reader.replay = Vec::new();
                    reader.replayed = 0;
                }
                return Ok(n);
            }
            reader.half.read(buf).await
        })
    }

    fn write_all<'a, 'b>(
        &'a self,
        buf: &'b [u8],
    ) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            let mut write = self.write.lock().await;
            if self.broken.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let written = match write.try_write(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.shared
                        .counters
                        .frames_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if written < buf.len()
                && let Err(e) = finish(&write, &buf[written..]).await
            {
                tracing::debug!(local = %self.local, peer = %self.peer, error = %e,
                    "closing a media TCP connection that stopped taking frames");
                self.broken.store(true, Ordering::Relaxed);
                // The client reads the end of the stream and drops the path.
                let _ = write.shutdown().await;
                return Err(e);
            }
            Ok(())
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.presented)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

/// Writes the rest of a frame already begun, within `FRAME_FINISH_WITHIN`.
async fn finish(write: &OwnedWriteHalf, mut rest: &[u8]) -> io::Result<()> {
    let deadline = tokio::time::Instant::now() + FRAME_FINISH_WITHIN;
    while !rest.is_empty() {
        tokio::time::timeout_at(deadline, write.writable())
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        match write.try_write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut frame = (message.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(message);
        frame
    }

    async fn port() -> Arc<TcpPort> {
        TcpPort::bind((std::net::Ipv4Addr::LOCALHOST, 0).into()).expect("bind")
    }

    /// A peer connection's endpoint on `port` that takes checks naming ufrag `abcd`.
    fn peer(port: &TcpPort) -> Arc<TcpEndpoint> {
        let endpoint = port.endpoint("10.1.2.3:40111".parse().expect("address"));
        endpoint.accept_fragment("abcd");
        endpoint
    }

    /// Waits until the port counted `reason` `n` times, then checks the client was closed.
    async fn refused(port: &TcpPort, mut client: TcpStream, reason: TcpRefusal, n: u64) {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut rest))
            .await
            .expect("the port closes the connection");
        assert!(closed.is_err() || rest.is_empty(), "the port sent {rest:?}");
        // Counted just after the close.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while port.counters().refused(reason) < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(port.counters().refused(reason), n);
        assert_eq!(port.counters().handed_over(), 0);
    }

    #[tokio::test]
    async fn a_connection_goes_to_the_peer_connection_its_first_check_names() {
        let port = port().await;
        let presented: SocketAddr = "10.1.2.3:40111".parse().expect("address");
        let endpoint = port.endpoint(presented);
        endpoint.accept_fragment("abcd");
        let listener = EndpointListener(Arc::clone(&endpoint));
        let mut client = TcpStream::connect(port.local_addr())
            .await
            .expect("connect");
        let check = framed(&stun::check_naming("abcd"));
        client.write_all(&check).await.expect("write");
        client.write_all(&framed(&[0x80; 20])).await.expect("write");

        let (stream, from) = listener.accept().await.expect("handed over");
        assert_eq!(from, client.local_addr().expect("address"));
        assert_eq!(stream.local_addr().expect("address"), presented);
        // The check first, then what followed it, as the driver's frame decoder needs.
        let mut read = Vec::new();
        let mut buf = [0u8; 16];
        while read.len() < check.len() + 22 {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the connection ended early");
            read.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&read[..check.len()], &check[..]);
        assert_eq!(&read[check.len()..], &framed(&[0x80; 20])[..]);

        stream.write_all(&framed(b"answer")).await.expect("write");
        let mut answer = [0u8; 8];
        client.read_exact(&mut answer).await.expect("read");
        assert_eq!(&answer, &framed(b"answer")[..]);
        assert_eq!(port.counters().handed_over(), 1);
    }

    #[tokio::test]
    async fn connections_that_name_no_one_or_send_garbage_are_closed_and_counted() {
        let port = port().await;
        let endpoint = peer(&port);

        let mut stranger = TcpStream::connect(port.local_addr())
            .await
            .expect("connect");
        stranger
            .write_all(&framed(&stun::check_naming("nobody")))
            .await
            .expect("write");
        refused(&port, stranger, TcpRefusal::UnknownFragment, 1).await;

        let mut garbage = TcpStream::connect(port.local_addr())
            .await
            .expect("connect");
        garbage
            .write_all(&framed(b"GET / HTTP/1.1\r\n\r\n"))
            .await
            .expect("write");
        refused(&port, garbage, TcpRefusal::Malformed, 1).await;

        let mut too_long = TcpStream::connect(port.local_addr())
            .await
            .expect("connect");
        too_long
            .write_all(&[0xff, 0xff, 1, 2, 3])
            .await
            .expect("write");
        refused(&port, too_long, TcpRefusal::Malformed, 2).await;

        // A closed endpoint takes nothing more.
        drop(endpoint);
        let mut late = TcpStream::connect(port.local_addr())
            .await
            .expect("connect");
        late.write_all(&framed(&stun::check_naming("abcd")))
            .await
            .expect("write");
        refused(&port, late, TcpRefusal::UnknownFragment, 2).await;
    }

    #[tokio::test]
    async fn one_address_holding_silent_connections_does_not_keep_others_out() {
        let port = port().await;
        let endpoint = peer(&port);
        let mut silent = Vec::new();
        for _ in 0..OPENING_PER_ADDRESS + 2 {
            silent.push(
                TcpStream::connect(port.local_addr())
                    .await
                    .expect("connect"),
            );
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while port.counters().refused(TcpRefusal::Busy) < 2
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(port.counters().refused(TcpRefusal::Busy), 2);
        // Another source (127.0.0.2 is loopback too) still gets through.
        let other = tokio::net::TcpSocket::new_v4().expect("socket");
        other
            .bind("127.0.0.2:0".parse().expect("address"))
            .expect("bind");
        let mut other = other.connect(port.local_addr()).await.expect("connect");
        other
            .write_all(&framed(&stun::check_naming("abcd")))
            .await
            .expect("write");
        let listener = EndpointListener(Arc::clone(&endpoint));
        let (_, from) = tokio::time::timeout(Duration::from_secs(2), listener.accept())
            .await
            .expect("handed over in time")
            .expect("handed over");
        assert_eq!(from.ip(), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(
            source_key("2001:db8:1:2:3:4:5:6".parse().expect("v6")),
            "2001:db8:1:2::".parse::<IpAddr>().expect("v6")
        );
    }

    #[tokio::test]
    async fn a_probe_is_answered_with_the_address_it_came_from() {
        let port = port().await;
        let mut prober = TcpStream::connect(port.local_addr())
            .await
            .expect("connect");
        let probe = stun::tests_probe();
        prober.write_all(&framed(&probe)).await.expect("write");
        let mut length = [0u8; 2];
        prober.read_exact(&mut length).await.expect("read");
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        prober.read_exact(&mut answer).await.expect("read");
        assert_eq!(&answer[..2], &[0x01, 0x01], "a binding success response");
        assert_eq!(&answer[8..20], &probe[8..20], "the transaction is echoed");
        assert_eq!(port.counters().probes_answered(), 1);
        assert_eq!(port.counters().handed_over(), 0);
    }

    #[tokio::test]
    async fn a_peer_connection_is_handed_a_bounded_number_of_connections() {
        let port = port().await;
        let endpoint = peer(&port);
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS_PER_PEER {
            let mut client = TcpStream::connect(port.local_addr())
                .await
                .expect("connect");
            client
                .write_all(&framed(&stun::check_naming("abcd")))
                .await
                .expect("write");
            clients.push(client);
        }
        let listener = EndpointListener(Arc::clone(&endpoint));
        for _ in 0..CONNECTIONS_PER_PEER {
            listener.accept().await.expect("handed over");
        }
        let mut one_more = TcpStream::connect(port.local_addr())
            .await
            .expect("connect");
        one_more
            .write_all(&framed(&stun::check_naming("abcd")))
            .await
            .expect("write");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), one_more.read_to_end(&mut rest))
            .await
            .expect("the port closes the connection");
        assert_eq!(port.counters().refused(TcpRefusal::Busy), 1);
        assert_eq!(port.counters().handed_over(), CONNECTIONS_PER_PEER);
    }
}
