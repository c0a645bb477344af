//! One peer connection's place on the node's UDP port. The webrtc driver binds its own UDP
//! socket; the runtime given to it here is tokio's in everything except that socket, which it
//! swaps for an endpoint of the shared port (the bound socket is closed at once, its address
//! stays the name of the host candidate, and the node rewrites that candidate to the port).
//! The peer task tells it the ICE username fragments its descriptions carry, so the checks
//! that name them reach this peer connection. With ICE-TCP on, the TCP listener the driver
//! binds is swapped the same way for an endpoint of the node's TCP port (`tcp_port`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

use super::mux::{Endpoint, EndpointSocket, UdpMux};
use super::tcp_port::{EndpointListener, TcpEndpoint, TcpPort};
use crate::sync::lock;

/// The runtime of one peer connection, and its handle on the port.
#[derive(Debug)]
pub struct PeerSocket {
    mux: Arc<UdpMux>,
    endpoint: Mutex<Weak<Endpoint>>,
    tcp: Option<Arc<TcpPort>>,
    tcp_endpoint: Mutex<Weak<TcpEndpoint>>,
    fragments: Mutex<Vec<String>>,
}

/// Username fragments kept per peer connection (the current one and the one before an ICE
/// restart, whose checks may still be in flight).
const FRAGMENTS_KEPT: usize = 2;

impl PeerSocket {
    /// A runtime placing its peer connection on `mux`, and on `tcp` when the node takes
    /// ICE-TCP.
    pub fn new(mux: Arc<UdpMux>, tcp: Option<Arc<TcpPort>>) -> Arc<Self> {
        Arc::new(Self {
            mux,
            endpoint: Mutex::new(Weak::new()),
            tcp,
            tcp_endpoint: Mutex::new(Weak::new()),
            fragments: Mutex::new(Vec::new()),
        })
    }

    /// Routes the checks naming the ICE username fragments of `sdp` (a local description) to
    /// this peer connection.
    pub fn accept_fragments_of(&self, sdp: &str) {
        let mut fragments = lock(&self.fragments);
        for fragment in ice_fragments(sdp) {
            if !fragments.iter().any(|f| f == fragment) {
                fragments.push(fragment.to_owned());
                if fragments.len() > FRAGMENTS_KEPT {
                    fragments.remove(0);
                }
            }
        }
        if let Some(endpoint) = lock(&self.endpoint).upgrade() {
            for fragment in fragments.iter() {
                endpoint.accept_fragment(fragment);
            }
        }
        if let Some(endpoint) = lock(&self.tcp_endpoint).upgrade() {
            for fragment in fragments.iter() {
                endpoint.accept_fragment(fragment);
            }
        }
    }
}

/// The `a=ice-ufrag:` values of an SDP.
fn ice_fragments(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .filter(|f| !f.is_empty())
}

impl Runtime for PeerSocket {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let presented = socket.local_addr()?;
        drop(socket);
        let endpoint = self.mux.endpoint(presented);
        for fragment in lock(&self.fragments).iter() {
            endpoint.accept_fragment(fragment);
        }
        *lock(&self.endpoint) = Arc::downgrade(&endpoint);
        Ok(Arc::new(EndpointSocket(endpoint)))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        let presented = listener.local_addr()?;
        drop(listener);
        let Some(port) = &self.tcp else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the media node has no TCP port",
            ));
        };
        let endpoint = port.endpoint(presented);
        for fragment in lock(&self.fragments).iter() {
            endpoint.accept_fragment(fragment);
        }
        *lock(&self.tcp_endpoint) = Arc::downgrade(&endpoint);
        Ok(Arc::new(EndpointListener(endpoint)))
    }

    fn connect_tcp<'a>(
        &'a self,
        _remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        // Clients connect to the node, never the other way (a client must not make the node
        // open connections to addresses of its choosing).
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the media node opens no TCP connections",
            ))
        })
    }

    fn resolve_host<'a>(
        &'a self,
        _host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        // The node has no ICE servers and resolves no names.
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the media node resolves no host names",
            ))
        })
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TokioRuntime.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TokioRuntime.block_on(future);
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.yield_now()
    }

    fn name(&self) -> &'static str {
        "conclave-port"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fragments_of_a_description() {
        let sdp = "v=0\r\na=ice-ufrag:abcd\r\nm=audio 9 x\r\na=ice-ufrag:abcd\r\na=ice-ufrag:\r\n";
        assert_eq!(ice_fragments(sdp).collect::<Vec<_>>(), vec!["abcd", "abcd"]);
    }
}
