//! TLS on the signaling port: the certificate and key (PEM files of the pool's mounted
//! `kubernetes.io/tls` Secret), reloaded when the files change (cert-manager renewals), and a
//! listener that hands axum TLS streams. Each handshake runs in its own task under a deadline,
//! so a slow, broken or plain-HTTP client never holds up the others.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; connections beyond are closed at once.
const MAX_HANDSHAKES: usize = 256;
/// How often the certificate files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// What identifies one version of the files: modification time and length of each.
type Stamp = [(Option<SystemTime>, u64); 2];

/// The certificate the node serves, swapped in place when its files change.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Stamp>,
}

impl Certificates {
    /// Loads the certificate chain at `cert` and the private key at `key` (PEM); an error
    /// says which file is wrong and how.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>> {
        let stamp = stamp(cert, key);
        let current = certified_key(cert, key)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(current)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// Loads the files again when they changed since the last load. A change that does not
    /// load (a half-written renewal, a wrong key) keeps the certificate served so far, and is
    /// retried at the next check. True when a new certificate is now served.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.cert, &self.key);
        {
            let last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *last == now {
                return false;
            }
        }
        match certified_key(&self.cert, &self.key) {
            Ok(next) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
                *self.stamp.lock().unwrap_or_else(|e| e.into_inner()) = now;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate files changed but do not load; still serving the previous certificate");
                false
            }
        }
    }

    /// The rustls configuration serving these certificates (HTTP/1.1 only: WebSockets
    /// upgrade over it).
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                // The ring provider supports the default protocol versions.
                .expect("ring supports TLS 1.2 and 1.3")
                .with_no_client_auth()
                .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Checks the files every `interval` until the returned task is aborted.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        let certs = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                certs.reload_if_changed();
            }
        })
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    // metadata() follows the symlinks a Secret volume swaps on update.
    [cert, key].map(|p| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    })
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let bad = |path: &Path, message: String| Error::Tls {
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, format!("no PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no certificate".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(key, format!("no PEM private key: {e}")))?;
    let signer = any_supported_type(&private).map_err(|e| bad(key, e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| bad(key, format!("not the key of the certificate: {e}")))?;
    Ok(certified)
}

/// A listener of TLS connections for `axum::serve`: accepts TCP connections on a bound
/// listener and completes each handshake in its own task within [`HANDSHAKE_TIMEOUT`].
pub struct TlsListener {
    local: std::io::Result<SocketAddr>,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    tasks: [JoinHandle<()>; 2],
}

impl TlsListener {
    /// Serves `certs` on `listener`, checking its files for changes every `reload`.
    pub fn new(listener: TcpListener, certs: &Arc<Certificates>, reload: Duration) -> TlsListener {
        let local = listener.local_addr();
        let acceptor = TlsAcceptor::from(certs.server_config());
        let (tx, ready) = mpsc::channel(64);
        let accept = tokio::spawn(accept_loop(listener, acceptor, tx));
        TlsListener {
            local,
            ready,
            tasks: [accept, certs.watch(reload)],
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accepting a signaling connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
            tracing::warn!(%peer, "too many TLS handshakes in progress; connection closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ends only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A test CA and a certificate for `*.media.test` it signed: (CA PEM, cert PEM, key PEM).
    fn issue(serial: u64) -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["*.media.test".to_owned()]).unwrap();
        params.serial_number = Some(serial.into());
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        (c, k)
    }

    /// A directory of the test's own, removed when the test ends, passed or failed.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("conclave-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    async fn serve(certs: &Arc<Certificates>) -> SocketAddr {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, certs, Duration::from_secs(3600));
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// GET /healthz over TLS as `node-1.media.test`, trusting only `ca`: the response text.
    async fn get(addr: SocketAddr, ca: &str) -> std::io::Result<String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("node-1.media.test").unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(
            b"GET /healthz HTTP/1.1\r\nHost: node-1.media.test\r\nConnection: close\r\n\r\n",
        )
        .await?;
        let mut out = String::new();
        tls.read_to_string(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn serves_https_while_silent_and_plain_http_clients_fail_alone() {
        let dir = temp_dir("serve");
        let (ca, cert, key) = issue(1);
        let (c, k) = write(&dir, &cert, &key);
        let addr = serve(&Certificates::load(&c, &k).unwrap()).await;
        // A client that connects and says nothing, and one speaking plain HTTP.
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "the plain-HTTP client is closed, not left hanging"
        );
        assert!(!String::from_utf8_lossy(&answer).contains("ok"));
        // Meanwhile a TLS client is served at once.
        let started = std::time::Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(5), get(addr, &ca))
            .await
            .expect("served while the silent client holds its handshake")
            .unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("ok"),
            "{out}"
        );
        assert!(started.elapsed() < HANDSHAKE_TIMEOUT);
        // A client trusting another CA refuses the certificate.
        let (other_ca, _, _) = issue(2);
        assert!(get(addr, &other_ca).await.is_err());
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_and_a_broken_one_is_not() {
        let dir = temp_dir("reload");
        let (ca, cert, key) = issue(1);
        let (c, k) = write(&dir, &cert, &key);
        let certs = Certificates::load(&c, &k).unwrap();
        let addr = serve(&certs).await;
        assert!(!certs.reload_if_changed(), "nothing changed");
        // A broken renewal: the old certificate stays.
        write(&dir, "-----BEGIN CERTIFICATE-----\nnope\n", &key);
        assert!(!certs.reload_if_changed());
        assert!(get(addr, &ca).await.unwrap().ends_with("ok"));
        // A renewal from another CA: new handshakes get it.
        let (new_ca, new_cert, new_key) = issue(2);
        write(&dir, &new_cert, &new_key);
        assert!(certs.reload_if_changed());
        assert!(get(addr, &new_ca).await.unwrap().ends_with("ok"));
        assert!(get(addr, &ca).await.is_err());
    }

    #[test]
    fn files_that_do_not_load_say_which_and_why() {
        let dir = temp_dir("errors");
        let (_, cert, key) = issue(1);
        let (_, _, other_key) = issue(2);
        let (c, k) = write(&dir, &cert, &other_key);
        let e = Certificates::load(&c, &k).unwrap_err().to_string();
        assert!(e.contains("tls.key") && e.contains("not the key"), "{e}");
        let (c, k) = write(&dir, "", &key);
        let e = Certificates::load(&c, &k).unwrap_err().to_string();
        assert!(e.contains("tls.crt"), "{e}");
        let e = Certificates::load(&dir.join("missing.crt"), &k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.crt"), "{e}");
    }
}
