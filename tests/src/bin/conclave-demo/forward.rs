//! The demo's loopback forwarder to a media node. Browsers give camera and microphone to pages
//! of secure origins only, and `http://127.0.0.1` is one while `http://10.213.0.11` (a node's
//! address) is not; until signaling has TLS, the demo's join links open the media node's page
//! and signaling through a loopback port that this forwards to the node. Media (ICE) still goes
//! straight to the node's address.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

/// Forwards TCP connections on a loopback port (`preferred` when it is free) to `target`, for
/// as long as the demo runs; returns the port.
pub async fn loopback_to(target: SocketAddr, preferred: u16) -> anyhow::Result<u16> {
    let listener = match TcpListener::bind(("127.0.0.1", preferred)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a loopback port for the join links")?,
    };
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        loop {
            let Ok((mut browser, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                match TcpStream::connect(target).await {
                    Ok(mut node) => {
                        let _ = copy_bidirectional(&mut browser, &mut node).await;
                    }
                    Err(e) => tracing::warn!(%target, "forwarding a browser connection: {e}"),
                }
            });
        }
    });
    Ok(port)
}
