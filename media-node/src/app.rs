//! The media node process: binds signaling on the pod IP, reads its MediaNode and waits for
//! the public address, then watches its pool and conferences, reports load, and drains on
//! SIGTERM or `spec.draining`: no new rooms, existing ones kept until they end or move (on
//! SIGTERM: until nobody is left in them) or the grace period passes; it exits on SIGTERM,
//! once drained.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::cluster;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::media::{MediaSettings, TcpPort, UdpMux};
use crate::node::{NodeSettings, NodeState};
use crate::room::task::CloseReason;

/// Settings of the node from its configuration; binds the media port (inside the runtime).
pub fn node_settings(config: &Config) -> Result<NodeSettings> {
    let addr = (config.pod_ip, config.udp_port).into();
    let port = UdpMux::bind(addr).map_err(|source| Error::MediaPort { addr, source })?;
    let tcp_port = config
        .tcp_port
        .map(|tcp| {
            let addr = (config.pod_ip, tcp).into();
            TcpPort::bind(addr).map_err(|source| Error::MediaTcpPort { addr, source })
        })
        .transpose()?;
    Ok(NodeSettings {
        name: config.node_name.clone(),
        join_key: config.join_key.clone().into_bytes(),
        turn_secret: config.turn_secret.clone().into_bytes(),
        media: MediaSettings {
            tcp_port,
            ..MediaSettings::on(config.pod_ip, port)
        },
        peer_disconnect: Duration::from_secs(config.peer_disconnect_seconds),
        chat_max_bytes: config.chat_max_bytes,
    })
}

/// Runs the node until SIGTERM: it drains then, or earlier when its MediaNode is set to
/// draining, and after that waits for the SIGTERM of its pod's deletion. Exiting on its own
/// would have the kubelet restart the container (restartPolicy Always) into a node whose
/// MediaNode is gone, racing the pod's deletion: a SIGTERM that arrives before the new process
/// handles it is lost (the process is PID 1 of its container, which ignores signals it does
/// not handle), and the pod then holds its Node's ports for its whole grace period.
pub async fn run(config: Config) -> Result<()> {
    // Handled first, for the same reason.
    let mut sigterm = signal(SignalKind::terminate()).map_err(|source| Error::Serve {
        addr: (config.pod_ip, config.signaling_port).into(),
        source,
    })?;
    let (terminated_tx, terminated) = watch::channel(false);
    tokio::spawn(async move {
        sigterm.recv().await;
        let _ = terminated_tx.send(true);
    });
    let addr = (config.pod_ip, config.signaling_port).into();
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Serve { addr, source })?;
    let metrics_addr = (config.pod_ip, config.metrics_port()).into();
    let metrics = TcpListener::bind(metrics_addr)
        .await
        .map_err(|source| Error::Serve {
            addr: metrics_addr,
            source,
        })?;
    let client = kube::Client::try_default()
        .await
        .map_err(|source| Error::Kube {
            context: "connecting to the API server".into(),
            source,
        })?;
    let mut on_sigterm = terminated.clone();
    let mut until_sigterm = terminated;
    run_node(
        &config,
        client,
        listener,
        Some(metrics),
        async move {
            let _ = on_sigterm.wait_for(|t| *t).await;
        },
        async move {
            let _ = until_sigterm.wait_for(|t| *t).await;
        },
    )
    .await
}

/// Runs the node on an already-bound signaling listener (and `/metrics` on `metrics`, when
/// given) with a Kubernetes client until it drained (after `stop` resolves, SIGTERM, or its
/// MediaNode is set to draining) and then `hold` resolved: meanwhile it still answers its
/// probes, not ready (`drained`).
pub async fn run_node(
    config: &Config,
    client: kube::Client,
    listener: TcpListener,
    metrics: Option<TcpListener>,
    stop: impl Future<Output = ()> + Send + 'static,
    hold: impl Future<Output = ()> + Send,
) -> Result<()> {
    let state = NodeState::new(node_settings(config)?);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    if let Some(metrics) = metrics {
        let mut stopping = stop_rx.clone();
        tokio::spawn(crate::server::serve_metrics(
            metrics,
            Arc::clone(&state),
            async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            },
        ));
    }
    let stopped = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let limits = config.signaling_limits();
    let server = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let certs = crate::tls::Certificates::load(cert, key)?;
            let listener =
                crate::tls::TlsListener::new(listener, &certs, crate::tls::RELOAD_INTERVAL);
            tokio::spawn(crate::server::run(
                listener,
                Arc::clone(&state),
                limits,
                stopped,
            ))
        }
        _ => tokio::spawn(crate::server::run(
            listener,
            Arc::clone(&state),
            limits,
            stopped,
        )),
    };
    let ns = config.namespace.clone();
    let (facts_tx, mut facts) = watch::channel(cluster::medianode::NodeFacts::default());
    let mut watches = vec![tokio::spawn(cluster::medianode::run(
        client.clone(),
        ns.clone(),
        Arc::clone(&state),
        facts_tx,
    ))];
    let mut stop = Box::pin(stop);

    // Wait for the operator to publish the public address before taking rooms.
    let pool = loop {
        let f = facts.borrow().clone();
        if let (Some(_), Some(pool), Some(uid)) = (f.public_ip, f.pool, f.uid) {
            break Some((pool, uid));
        }
        tokio::select! {
            changed = facts.changed() => if changed.is_err() {
                return Err(Error::Node { name: config.node_name.clone(), message: "MediaNode watch ended".into() });
            },
            _ = &mut stop => break None,
        }
    };
    if let Some((pool, uid)) = pool {
        tracing::info!(node = %config.node_name, %pool, "address published; taking rooms");
        let (heartbeat_timeout, timeouts) = tokio::sync::watch::channel(None);
        watches.push(tokio::spawn(cluster::lease::run(
            client.clone(),
            ns.clone(),
            config.node_name.clone(),
            pool.clone(),
            uid,
            config.heartbeat(),
            timeouts,
        )));
        watches.push(tokio::spawn(cluster::directory::run(
            client.clone(),
            ns.clone(),
            pool.clone(),
            Arc::clone(&state),
        )));
        watches.push(tokio::spawn(cluster::pool::run(
            client.clone(),
            ns.clone(),
            pool,
            Arc::clone(&state),
            heartbeat_timeout,
        )));
        watches.push(tokio::spawn(cluster::conferences::run(
            client.clone(),
            ns.clone(),
            Arc::clone(&state),
        )));
        watches.push(tokio::spawn(cluster::report::run(
            client,
            ns,
            Arc::clone(&state),
            config.load_check(),
        )));
        // A node restarted while its MediaNode is already draining drains at once. A drain
        // the operator takes back while rooms are left (the autoscaler needs the node again)
        // ends there, and the node takes rooms again.
        loop {
            let mut until = DrainUntil::RoomsClosed;
            while !facts.borrow_and_update().draining {
                tokio::select! {
                    _ = &mut stop => { until = DrainUntil::ParticipantsGone; break },
                    changed = facts.changed() => if changed.is_err() { break },
                }
            }
            let taken_back = async {
                let undrained = until == DrainUntil::RoomsClosed
                    && facts.wait_for(|f| !f.draining).await.is_ok();
                if !undrained {
                    std::future::pending::<()>().await;
                }
            };
            match drain(&state, config.drain_grace(), until, taken_back).await {
                DrainEnd::Drained => break,
                DrainEnd::TakenBack => state.end_drain(),
            }
        }
    }
    for watch in watches {
        watch.abort();
    }
    state.mark_drained();
    hold.await;
    let _ = stop_tx.send(true);
    match server.await {
        Ok(served) => served,
        Err(e) => {
            tracing::error!(error = %e, "signaling server task failed");
            Ok(())
        }
    }
}

/// What ends a drain before its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainUntil {
    /// Every room closed: its conference moved elsewhere or ended (`spec.draining`: the
    /// operator keeps the conferences reserved here until then).
    RoomsClosed,
    /// No participant left in any room (SIGTERM: the pod is going; a conference with nobody
    /// in it loses nothing by failing over, and once its namespace is deleted the node may
    /// never learn that its conferences ended).
    ParticipantsGone,
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainEnd {
    /// Its rooms are closed: the node takes none until its pod goes.
    Drained,
    /// `taken_back` resolved while rooms were left: the node keeps them and may take more.
    TakenBack,
}

/// Refuses new rooms, waits until `until` or `grace` passed, then closes the rooms left;
/// unless `taken_back` resolves first, which leaves the rooms open.
pub async fn drain(
    state: &Arc<NodeState>,
    grace: Duration,
    until: DrainUntil,
    taken_back: impl Future<Output = ()>,
) -> DrainEnd {
    state.start_drain();
    let deadline = tokio::time::Instant::now() + grace;
    let holding = || match until {
        DrainUntil::RoomsClosed => state.room_count() > 0,
        DrainUntil::ParticipantsGone => state.room_count() > 0 && state.stats.participants() > 0,
    };
    let mut taken_back = std::pin::pin!(taken_back);
    while holding() {
        let closed = state.room_closed.notified();
        tokio::select! {
            _ = closed => {}
            _ = &mut taken_back => return DrainEnd::TakenBack,
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for name in state.room_names() {
        state.close_room(&name, CloseReason::Drained);
    }
    // Give rooms a moment to say goodbye to their clients.
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    while state.room_count() > 0 && tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(node = %state.settings.name, "drained; waiting for the pod to be deleted");
    DrainEnd::Drained
}
