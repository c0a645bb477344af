//! TLS signaling of a pool (`spec.signaling`): the signaling URL each media node publishes,
//! and whether the pool's `kubernetes.io/tls` Secret holds a certificate and key that a media
//! node can serve for `<node>.<domain>`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Key of the certificate chain (PEM) in a `kubernetes.io/tls` Secret.
pub const CERT_FILE: &str = "tls.crt";
/// Key of the private key (PEM) in a `kubernetes.io/tls` Secret.
pub const KEY_FILE: &str = "tls.key";

/// How a pool's media nodes serve signaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signaling<'a> {
    /// Plain `ws://` on the node's public address (local clusters and tests).
    Plain,
    /// `wss://<node>.<domain>`, served by the node with the pool's certificate; `usable` when
    /// the pool's Secret holds a valid certificate and key for that domain.
    Tls {
        /// `spec.signaling.domain`.
        domain: &'a str,
        /// The Secret was found valid ([`certificate_problem`] found nothing).
        usable: bool,
    },
}

/// The signaling URL media node `node` publishes. `public` is its public address, `published`
/// the URL it published before. Under TLS, a URL is only newly published while the pool's
/// certificate is usable: a node started without one could not answer. A URL published while
/// it was usable stays: its node loaded that certificate and keeps it when a replacement is
/// unreadable, so its calls go on.
pub fn signaling_url(
    node: &str,
    public: Option<&str>,
    port: u16,
    signaling: Signaling<'_>,
    published: Option<&str>,
) -> Option<String> {
    let ip = public?;
    match signaling {
        Signaling::Plain if ip.contains(':') => Some(format!("ws://[{ip}]:{port}/rtc")),
        Signaling::Plain => Some(format!("ws://{ip}:{port}/rtc")),
        Signaling::Tls { domain, usable } => {
            let url = if port == 443 {
                format!("wss://{node}.{domain}/rtc")
            } else {
                format!("wss://{node}.{domain}:{port}/rtc")
            };
            (usable || published == Some(url.as_str())).then_some(url)
        }
    }
}

/// The files of the pool's TLS Secret: `None` for a key the Secret lacks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecretFiles<'a> {
    /// `tls.crt`.
    pub cert: Option<&'a [u8]>,
    /// `tls.key`.
    pub key: Option<&'a [u8]>,
}

/// What is wrong with TLS Secret `secret` (`files` is `None` when it does not exist) for
/// media nodes named `<node>.<domain>` at `now` (Unix seconds), as a message naming the field
/// and the fix; `None` when a media node can serve it.
pub fn certificate_problem(
    secret: &str,
    domain: &str,
    files: Option<SecretFiles<'_>>,
    now: i64,
) -> Option<String> {
    let field = format!("spec.signaling.tlsSecretName {secret:?}");
    let Some(files) = files else {
        return Some(format!(
            "{field}: no such Secret in the pool's namespace; create a kubernetes.io/tls Secret with a certificate for *.{domain} (e.g. a cert-manager Certificate with secretName {secret})"
        ));
    };
    match check(files, domain, now) {
        Ok(()) => None,
        Err(why) => Some(format!("{field}: {why}")),
    }
}

fn check(files: SecretFiles<'_>, domain: &str, now: i64) -> Result<(), String> {
    let cert = files.cert.ok_or_else(|| {
        format!("has no {CERT_FILE}; put the certificate chain for *.{domain} there in PEM")
    })?;
    let key = files.key.ok_or_else(|| {
        format!("has no {KEY_FILE}; put the certificate's private key there in PEM")
    })?;
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{CERT_FILE} is not PEM ({e}); store a PEM certificate chain"))?;
    let leaf = chain.first().ok_or_else(|| {
        format!("{CERT_FILE} holds no certificate; store a PEM certificate chain")
    })?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        format!("{KEY_FILE} holds no PEM private key ({e}); store the certificate's key")
    })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| {
        format!(
            "{KEY_FILE} is not a usable key ({e}); use an RSA, ECDSA P-256/P-384 or Ed25519 key"
        )
    })?;
    rustls::sign::CertifiedKey::new(chain.clone(), signer)
        .keys_match()
        .map_err(|_| format!("{KEY_FILE} is not the key of the certificate in {CERT_FILE}; store the matching pair"))?;
    let parsed = webpki::EndEntityCert::try_from(leaf).map_err(|e| {
        format!(
            "{CERT_FILE}'s first certificate cannot be read ({e}); store a valid X.509 certificate"
        )
    })?;
    let sample = format!("node.{domain}");
    let name = ServerName::try_from(sample.as_str())
        .map_err(|_| format!("spec.signaling.domain {domain:?} is no DNS name"))?;
    parsed
        .verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the certificate in {CERT_FILE} is not valid for *.{domain}; issue one with the DNS name *.{domain}"))?;
    validity_problem(leaf, now)
}

/// Whether the leaf certificate is valid at `now`: browsers refuse an expired one (and one not
/// valid yet) whatever its names.
fn validity_problem(leaf: &CertificateDer<'_>, now: i64) -> Result<(), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        format!(
            "{CERT_FILE}'s first certificate cannot be read ({e}); store a valid X.509 certificate"
        )
    })?;
    let validity = cert.validity();
    let rfc3339 = |t: &x509_parser::time::ASN1Time| {
        k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
            .map_or_else(|_| t.to_string(), |t| t.to_string())
    };
    if now > validity.not_after.timestamp() {
        return Err(format!(
            "the certificate in {CERT_FILE} expired at {}; renew it (cert-manager renews before expiry when the Certificate is still there)",
            rfc3339(&validity.not_after)
        ));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "the certificate in {CERT_FILE} is not valid before {}; check the issuer's clock or wait",
            rfc3339(&validity.not_before)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2027-01-15, within rcgen's default validity (1975 to 4096).
    const NOW: i64 = 1_800_000_000;

    fn issue(names: &[&str]) -> (String, String) {
        issue_valid(names, None)
    }

    /// A self-signed certificate for `names`, valid between the given years when set.
    fn issue_valid(names: &[&str], years: Option<(i32, i32)>) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        if let Some((from, to)) = years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn files<'a>(cert: &'a str, key: &'a str) -> Option<SecretFiles<'a>> {
        Some(SecretFiles {
            cert: Some(cert.as_bytes()),
            key: Some(key.as_bytes()),
        })
    }

    #[test]
    fn plain_urls_name_the_public_address() {
        let url = |ip| signaling_url("eu-b4x9k", ip, 7880, Signaling::Plain, None);
        assert_eq!(
            url(Some("203.0.113.7")).as_deref(),
            Some("ws://203.0.113.7:7880/rtc")
        );
        assert_eq!(
            url(Some("2001:db8::7")).as_deref(),
            Some("ws://[2001:db8::7]:7880/rtc")
        );
        assert_eq!(url(None), None);
    }

    #[test]
    fn tls_urls_name_the_node_under_the_domain_once_the_certificate_is_usable() {
        let tls = |usable| Signaling::Tls {
            domain: "media.example.com",
            usable,
        };
        let ip = Some("203.0.113.7");
        assert_eq!(
            signaling_url("eu-b4x9k", ip, 7880, tls(true), None).as_deref(),
            Some("wss://eu-b4x9k.media.example.com:7880/rtc")
        );
        assert_eq!(
            signaling_url("eu-b4x9k", ip, 443, tls(true), None).as_deref(),
            Some("wss://eu-b4x9k.media.example.com/rtc")
        );
        // No public address yet: DNS could not point at the node either.
        assert_eq!(signaling_url("eu-b4x9k", None, 7880, tls(true), None), None);
        // A bad Secret: nothing new is published, what was published stays.
        assert_eq!(signaling_url("eu-b4x9k", ip, 7880, tls(false), None), None);
        let old = "wss://eu-b4x9k.media.example.com:7880/rtc";
        assert_eq!(
            signaling_url("eu-b4x9k", ip, 7880, tls(false), Some(old)).as_deref(),
            Some(old)
        );
        // A URL of another shape (plain before, another domain) does not survive.
        for stale in [
            "ws://203.0.113.7:7880/rtc",
            "wss://eu-b4x9k.old.example.com:7880/rtc",
        ] {
            assert_eq!(
                signaling_url("eu-b4x9k", ip, 7880, tls(false), Some(stale)),
                None
            );
        }
    }

    #[test]
    fn a_wildcard_certificate_with_its_key_is_usable() {
        let (cert, key) = issue(&["*.media.example.com"]);
        assert_eq!(
            certificate_problem("media-tls", "media.example.com", files(&cert, &key), NOW),
            None
        );
    }

    #[test]
    fn every_problem_names_the_field_and_the_fix() {
        let (cert, key) = issue(&["*.media.example.com"]);
        let (other_cert, other_key) = issue(&["*.other.example.com"]);
        let expired = issue_valid(&["*.media.example.com"], Some((2025, 2026)));
        let future = issue_valid(&["*.media.example.com"], Some((2028, 2029)));
        let cases: Vec<(Option<SecretFiles<'_>>, &str)> = vec![
            (None, "no such Secret"),
            (
                Some(SecretFiles {
                    cert: None,
                    key: Some(key.as_bytes()),
                }),
                "has no tls.crt",
            ),
            (
                Some(SecretFiles {
                    cert: Some(cert.as_bytes()),
                    key: None,
                }),
                "has no tls.key",
            ),
            (files("", &key), "holds no certificate"),
            (files(&cert, "not a key"), "holds no PEM private key"),
            (
                files(&cert, &other_key),
                "is not the key of the certificate",
            ),
            (
                files(&other_cert, &other_key),
                "not valid for *.media.example.com",
            ),
            (
                files(&expired.0, &expired.1),
                "expired at 2026-01-01T00:00:00Z",
            ),
            (
                files(&future.0, &future.1),
                "not valid before 2028-01-01T00:00:00Z",
            ),
        ];
        for (input, words) in cases {
            let problem = certificate_problem("media-tls", "media.example.com", input, NOW)
                .unwrap_or_else(|| panic!("{words}: no problem found"));
            assert!(
                problem.starts_with("spec.signaling.tlsSecretName \"media-tls\": "),
                "{problem}"
            );
            assert!(problem.contains(words), "{words}: {problem}");
        }
    }
}
