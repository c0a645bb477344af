//! TLS signaling in tests: a test CA with a wildcard certificate for a pool's domain, its
//! `kubernetes.io/tls` Secret, an NSS store in which Chromium trusts the CA (`certutil`, from
//! `scripts/ensure-packages.sh`), and a Rust wss client that trusts only that CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// A test CA and a certificate it signed (for `*.<domain>`, or one name), in PEM.
pub struct TestCa {
    /// The CA's certificate.
    pub ca: String,
    /// The certificate it signed.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl TestCa {
    /// A fresh CA and a certificate for `*.<domain>`.
    pub fn issue(domain: &str) -> TestCa {
        TestCa::issue_for(&format!("*.{domain}"))
    }

    /// A fresh CA and a certificate for `name` (a DNS name, a wildcard or an IP address).
    pub fn issue_for(name: &str) -> TestCa {
        let ca_key = rcgen::KeyPair::generate().expect("a key pair");
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Conclave test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = rcgen::KeyPair::generate().expect("a key pair");
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        TestCa {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// The `kubernetes.io/tls` Secret `name` holding the wildcard certificate and its key.
    pub fn secret(&self, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(
                [
                    ("tls.crt", self.cert.as_bytes()),
                    ("tls.key", self.key.as_bytes()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.to_vec())))
                .collect(),
            ),
            ..Default::default()
        }
    }

    /// A HOME directory for Chromium whose NSS store (`.pki/nssdb`) trusts this CA for web
    /// sites, made under `dir`.
    pub fn chromium_home(&self, dir: &Path) -> PathBuf {
        let home = dir.join("home");
        let db = home.join(".pki/nssdb");
        std::fs::create_dir_all(&db).expect("NSS store directory");
        let ca = dir.join("test-ca.pem");
        std::fs::write(&ca, &self.ca).expect("CA file");
        ensure_certutil();
        let store = format!("sql:{}", db.display());
        certutil(&["-N", "-d", &store, "--empty-password"]);
        certutil(&[
            "-A",
            "-d",
            &store,
            "-n",
            "conclave-test-ca",
            "-t",
            "C,,",
            "-i",
            &ca.display().to_string(),
        ]);
        home
    }

    /// Opens the WebSocket at `url` (`wss://<host>:<port>/…`) at `addr` instead of resolving
    /// the host, checking the node's certificate for the host against this CA only.
    pub async fn open_wss(&self, url: &str, addr: SocketAddr) -> Result<(), String> {
        let host = url
            .strip_prefix("wss://")
            .and_then(|rest| rest.split([':', '/']).next())
            .ok_or_else(|| format!("{url} is no wss:// URL"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca.as_bytes()).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host} at {addr}: {e}"))?;
        let (mut socket, response) = tokio_tungstenite::client_async(url, tls)
            .await
            .map_err(|e| format!("WebSocket upgrade at {url}: {e}"))?;
        let _ = socket.close(None).await;
        if response.status().as_u16() == 101 {
            Ok(())
        } else {
            Err(format!("{url} answered {}", response.status()))
        }
    }
}

/// Installs `certutil` (Debian's libnss3-tools) through the project's script when missing.
fn ensure_certutil() {
    let found = std::process::Command::new("certutil")
        .arg("-H")
        .output()
        .is_ok();
    if !found {
        let status = std::process::Command::new("bash")
            .arg(
                conclave_testenv::testenv::settings::workspace_dir()
                    .join("scripts/ensure-packages.sh"),
            )
            .status()
            .expect("bash runs scripts/ensure-packages.sh");
        assert!(
            status.success(),
            "scripts/ensure-packages.sh failed ({status}): run `make deps`"
        );
    }
}

fn certutil(args: &[&str]) {
    let out = std::process::Command::new("certutil")
        .args(args)
        .output()
        .expect("certutil runs");
    assert!(
        out.status.success(),
        "certutil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
