//! Whether a `kubernetes.io/tls` Secret holds a certificate and key that can be served for
//! given names now: the pool's signaling certificate (`*.<domain>`) and its relays' TURN
//! certificate (one host).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Key of the certificate chain (PEM) in a `kubernetes.io/tls` Secret.
pub const CERT_FILE: &str = "tls.crt";
/// Key of the private key (PEM) in a `kubernetes.io/tls` Secret.
pub const KEY_FILE: &str = "tls.key";

/// The files of a `kubernetes.io/tls` Secret: `None` for a key the Secret lacks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecretFiles<'a> {
    /// `tls.crt`.
    pub cert: Option<&'a [u8]>,
    /// `tls.key`.
    pub key: Option<&'a [u8]>,
}

/// The names a certificate must be valid for.
#[derive(Clone, Copy, Debug)]
pub enum Names<'a> {
    /// Every `<name>.<domain>` (a wildcard certificate), the domain set by `field`.
    Under {
        /// The domain.
        domain: &'a str,
        /// The spec field that sets it.
        field: &'a str,
    },
    /// One host name, set by `field`.
    Host {
        /// The name.
        host: &'a str,
        /// The spec field that sets it.
        field: &'a str,
    },
}

impl Names<'_> {
    /// The names as a person would ask a CA for them.
    fn shown(&self) -> String {
        match self {
            Names::Under { domain, .. } => format!("*.{domain}"),
            Names::Host { host, .. } => (*host).to_owned(),
        }
    }

    /// One name the certificate must be valid for.
    fn sample(&self) -> String {
        match self {
            Names::Under { domain, .. } => format!("node.{domain}"),
            Names::Host { host, .. } => (*host).to_owned(),
        }
    }

    fn field(&self) -> &str {
        match self {
            Names::Under { field, .. } | Names::Host { field, .. } => field,
        }
    }
}

/// What is wrong with the TLS Secret `secret`, named by the spec field `secret_field`
/// (`files` is `None` when it does not exist), for serving `names` at `now` (Unix seconds),
/// as a message naming the field and the fix; `None` when it can be served.
pub fn problem(
    secret_field: &str,
    secret: &str,
    names: Names<'_>,
    files: Option<SecretFiles<'_>>,
    now: i64,
) -> Option<String> {
    let field = format!("{secret_field} {secret:?}");
    let Some(files) = files else {
        return Some(format!(
            "{field}: no such Secret in the pool's namespace; create a kubernetes.io/tls Secret with a certificate for {} (e.g. a cert-manager Certificate with secretName {secret})",
            names.shown()
        ));
    };
    match check(files, names, now) {
        Ok(()) => None,
        Err(why) => Some(format!("{field}: {why}")),
    }
}

fn check(files: SecretFiles<'_>, names: Names<'_>, now: i64) -> Result<(), String> {
    let shown = names.shown();
    let cert = files.cert.ok_or_else(|| {
        format!("has no {CERT_FILE}; put the certificate chain for {shown} there in PEM")
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
    let sample = names.sample();
    let name = ServerName::try_from(sample.as_str())
        .map_err(|_| format!("{} {sample:?} is no DNS name", names.field()))?;
    parsed
        .verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the certificate in {CERT_FILE} is not valid for {shown}; issue one with the DNS name {shown}"))?;
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

    const FIELD: &str = "spec.signaling.tlsSecretName";
    const WILDCARD: Names<'static> = Names::Under {
        domain: "media.example.com",
        field: "spec.signaling.domain",
    };

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
    fn a_wildcard_certificate_with_its_key_is_usable() {
        let (cert, key) = issue(&["*.media.example.com"]);
        assert_eq!(
            problem(FIELD, "media-tls", WILDCARD, files(&cert, &key), NOW),
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
            let problem = problem(FIELD, "media-tls", WILDCARD, input, NOW)
                .unwrap_or_else(|| panic!("{words}: no problem found"));
            assert!(
                problem.starts_with("spec.signaling.tlsSecretName \"media-tls\": "),
                "{problem}"
            );
            assert!(problem.contains(words), "{words}: {problem}");
        }
    }

    #[test]
    fn a_host_certificate_covers_its_host_only() {
        let (cert, key) = issue(&["turn.example.com"]);
        let host = |host| Names::Host {
            host,
            field: "spec.turn.tls.host",
        };
        let check = |h| {
            problem(
                "spec.turn.tls.secretName",
                "turn-tls",
                host(h),
                files(&cert, &key),
                NOW,
            )
        };
        assert_eq!(check("turn.example.com"), None);
        let other = check("relay.example.com").unwrap();
        assert!(
            other.starts_with("spec.turn.tls.secretName \"turn-tls\": ")
                && other.contains("not valid for relay.example.com"),
            "{other}"
        );
    }
}
