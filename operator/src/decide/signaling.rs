//! TLS signaling of a pool (`spec.signaling`): the signaling URL each media node publishes,
//! and whether the pool's `kubernetes.io/tls` Secret holds a certificate and key that a media
//! node can serve for `<node>.<domain>`.

use super::certificate::{Names, SecretFiles, problem};

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

/// What is wrong with TLS Secret `secret` (`files` is `None` when it does not exist) for
/// media nodes named `<node>.<domain>` at `now` (Unix seconds), as a message naming the field
/// and the fix; `None` when a media node can serve it.
pub fn certificate_problem(
    secret: &str,
    domain: &str,
    files: Option<SecretFiles<'_>>,
    now: i64,
) -> Option<String> {
    problem(
        "spec.signaling.tlsSecretName",
        secret,
        Names::Under {
            domain,
            field: "spec.signaling.domain",
        },
        files,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
