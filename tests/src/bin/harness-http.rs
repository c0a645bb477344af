//! `harness-http` (image `conclave.dev/testenv/http`): a small HTTP server for harness
//! tests. It listens on POD_IP:<port> and answers `/readyz`, `/healthz`, `/env/NAME` (the
//! value of an environment variable, to check what the kubelet passed) and `/whoami` (the
//! identity its KUBECONFIG gives it, by a SelfSubjectReview). Flags make it misbehave on
//! purpose: exit after a while, ignore SIGTERM, never become ready, fail liveness.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
struct Args {
    /// Port to listen on.
    #[arg(long)]
    port: u16,
    /// Address to listen on (the pod IP).
    #[arg(long, env = "POD_IP", default_value = "127.0.0.1")]
    address: IpAddr,
    /// Exit after this many seconds.
    #[arg(long)]
    exit_after_secs: Option<f64>,
    /// Exit code used by --exit-after-secs.
    #[arg(long, default_value_t = 0)]
    exit_code: i32,
    /// Keep running on SIGTERM (only SIGKILL ends it).
    #[arg(long)]
    ignore_sigterm: bool,
    /// Answer /readyz with 503 forever.
    #[arg(long)]
    never_ready: bool,
    /// Answer /healthz with 500 forever.
    #[arg(long)]
    unhealthy: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let addr = SocketAddr::new(args.address, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    println!("harness-http listening on {addr}");
    let faults = Faults {
        never_ready: args.never_ready,
        unhealthy: args.unhealthy,
    };
    let server = async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(stream, faults));
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    };
    let exit_after = async {
        match args.exit_after_secs {
            Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
            None => std::future::pending().await,
        }
    };
    let mut terminate = signal(SignalKind::terminate()).context("watch SIGTERM")?;
    let sigterm = async {
        loop {
            terminate.recv().await;
            if !args.ignore_sigterm {
                return;
            }
            println!("SIGTERM ignored");
        }
    };
    tokio::select! {
        () = server => Ok(()),
        () = exit_after => {
            println!("exiting with {} as asked", args.exit_code);
            std::process::exit(args.exit_code)
        }
        () = sigterm => {
            println!("SIGTERM: exiting");
            Ok(())
        }
    }
}

/// Probe endpoints that fail on purpose.
#[derive(Debug, Clone, Copy)]
struct Faults {
    never_ready: bool,
    unhealthy: bool,
}

async fn answer(mut stream: TcpStream, faults: Faults) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/readyz" if faults.never_ready => (503, "not ready, as asked".to_owned()),
        "/healthz" if faults.unhealthy => (500, "unhealthy, as asked".to_owned()),
        "/readyz" | "/healthz" => (200, "ok".to_owned()),
        "/whoami" => whoami().await,
        _ => match path.strip_prefix("/env/") {
            // Echoing the environment is this server's purpose: tests check what the kubelet passed.
            Some(name) => {
                std::env::var(name).map_or((404, format!("{name} is not set")), |v| (200, v))
            }
            None => (404, "unknown path".to_owned()),
        },
    };
    let reason = if status == 200 { "OK" } else { "Not OK" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
}

/// The user name the API server sees for this process's KUBECONFIG.
async fn whoami() -> (u16, String) {
    let review = async {
        let client = kube::Client::try_default().await?;
        let api: kube::Api<SelfSubjectReview> = kube::Api::all(client);
        api.create(&Default::default(), &SelfSubjectReview::default())
            .await
    };
    match review.await {
        Ok(r) => {
            let user = r
                .status
                .and_then(|s| s.user_info)
                .and_then(|u| u.username)
                .unwrap_or_default();
            (200, user)
        }
        Err(e) => (500, e.to_string()),
    }
}
