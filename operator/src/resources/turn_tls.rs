//! TURN over TLS for a pool's relays (`spec.turn.tls`): what coturn's container gets when the
//! pool's certificate is usable — the Secret mounted read-only, the TLS listener's flags and
//! port, the privileges a port below 1024 needs — and the `turns:` URL clients get.

use conclave_crds::pool::TurnTls;
use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};

use super::restricted_container;
use crate::decide::certificate::{CERT_FILE, KEY_FILE};

/// Where the relays' TLS Secret is mounted.
pub const TLS_DIR: &str = "/var/run/conclave/turn-tls";
/// Pod-template annotation holding the hash of the served certificate: a renewed certificate
/// changes it, and the Deployment replaces the relays, which read certificates at start.
pub const CERTIFICATE_ANNOTATION: &str = "conclave.dev/turn-tls-certificate";
const VOLUME: &str = "turn-tls";
/// The relay image's unprivileged user (uid and gid 65532 in its /etc/passwd), which coturn
/// drops to after binding a low port; coturn takes names only.
const RELAY_USER: &str = "nonroot";

/// TLS the relays serve: the pool's settings and the hash of the certificate they load.
#[derive(Clone, Copy, Debug)]
pub struct Serving<'a> {
    /// `spec.turn.tls`.
    pub tls: &'a TurnTls,
    /// [`super::content_hash`] of the Secret's certificate.
    pub certificate: &'a str,
}

impl Serving<'_> {
    /// coturn's flags: the TLS listener with the mounted certificate, TLS 1.2 and later, and
    /// for a port below 1024 the user to drop to once it is bound.
    pub fn coturn_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--tls-listening-port={}", self.tls.port),
            format!("--cert={TLS_DIR}/{CERT_FILE}"),
            format!("--pkey={TLS_DIR}/{KEY_FILE}"),
            "--no-tlsv1".to_owned(),
            "--no-tlsv1_1".to_owned(),
        ];
        if self.low_port() {
            args.push(format!("--proc-user={RELAY_USER}"));
            args.push(format!("--proc-group={RELAY_USER}"));
        }
        args
    }

    /// A port below 1024 needs root with the capability to bind it (and to change user);
    /// coturn binds it, then drops to the image's user. Others run as that user throughout.
    pub fn security_context(&self) -> SecurityContext {
        if !self.low_port() {
            return restricted_container();
        }
        SecurityContext {
            run_as_non_root: Some(false),
            run_as_user: Some(0),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: Some(
                    ["NET_BIND_SERVICE", "SETUID", "SETGID"]
                        .map(str::to_owned)
                        .to_vec(),
                ),
            }),
            ..restricted_container()
        }
    }

    /// The TLS listener, on the Node's port.
    pub fn port(&self) -> ContainerPort {
        ContainerPort {
            name: Some("turn-tls".to_owned()),
            container_port: i32::from(self.tls.port),
            host_port: Some(i32::from(self.tls.port)),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }
    }

    /// The Secret, readable by coturn whatever user it runs as.
    pub fn volume(&self) -> Volume {
        Volume {
            name: VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(self.tls.secret_name.clone()),
                default_mode: Some(0o444),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The Secret's mount in coturn's container.
    pub fn mount(&self) -> VolumeMount {
        VolumeMount {
            name: VOLUME.to_owned(),
            mount_path: TLS_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        }
    }

    fn low_port(&self) -> bool {
        self.tls.port < 1024
    }
}

/// The `turns:` URL of the relays' TLS listener.
pub fn url(tls: &TurnTls) -> String {
    format!("turns:{}:{}?transport=tcp", tls.host, tls.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(port: u16) -> TurnTls {
        TurnTls {
            host: "turn.example.com".into(),
            port,
            secret_name: "turn-tls".into(),
        }
    }

    #[test]
    fn a_high_port_runs_as_the_relay_user_with_no_capability() {
        let t = tls(5349);
        let s = Serving {
            tls: &t,
            certificate: "abc",
        };
        let args = s.coturn_args();
        assert!(
            args.contains(&"--tls-listening-port=5349".to_owned()),
            "{args:?}"
        );
        assert!(
            args.contains(&format!("--cert={TLS_DIR}/tls.crt")),
            "{args:?}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("--proc-user")),
            "{args:?}"
        );
        assert_eq!(s.security_context(), restricted_container());
        assert_eq!(url(&t), "turns:turn.example.com:5349?transport=tcp");
    }

    #[test]
    fn port_443_binds_as_root_with_only_that_capability_then_drops() {
        let t = tls(443);
        let s = Serving {
            tls: &t,
            certificate: "abc",
        };
        assert!(s.coturn_args().contains(&"--proc-user=nonroot".to_owned()));
        let sc = s.security_context();
        assert_eq!((sc.run_as_user, sc.run_as_non_root), (Some(0), Some(false)));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        let caps = sc.capabilities.unwrap();
        assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            caps.add,
            Some(vec![
                "NET_BIND_SERVICE".into(),
                "SETUID".into(),
                "SETGID".into()
            ])
        );
    }
}
