//! `conclave-operator token`: mints a join token for a conference with its pool's key, for
//! demos and scripts (applications mint their own with the same key).

use conclave_crds::labels;
use conclave_crds::token::{JoinClaims, mint};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::config::TokenConfig;
use crate::error::{Error, KubeContext, Result};

/// Parses a duration such as `90s`, `30m`, `1h` or `2d` into seconds.
pub fn parse_ttl(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| {
        Error::Invalid(format!(
            "ttl {s:?}: expected a number and a unit, e.g. 30m or 1h"
        ))
    })?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(Error::Invalid(format!(
                "ttl {s:?}: unit must be s, m, h or d"
            )));
        }
    };
    if n == 0 {
        return Err(Error::Invalid("ttl must be more than zero".to_owned()));
    }
    Ok(n.saturating_mul(scale))
}

/// Reads the pool's key and prints a signed token.
pub async fn run(client: Client, cfg: &TokenConfig) -> Result<String> {
    let ttl = parse_ttl(&cfg.ttl)?;
    let name = labels::pool_secret_name(&cfg.pool);
    let secret = Api::<Secret>::namespaced(client, &cfg.namespace)
        .get(&name)
        .await
        .action(|| {
            format!(
                "reading Secret {name} of pool {} in namespace {}",
                cfg.pool, cfg.namespace
            )
        })?;
    let key = secret
        .data
        .and_then(|d| d.get(labels::SECRET_JOIN_KEY).cloned())
        .ok_or_else(|| {
            Error::Secret(format!("Secret {name} has no {}", labels::SECRET_JOIN_KEY))
        })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = JoinClaims {
        conference: cfg.conference.clone(),
        identity: cfg.identity.clone(),
        exp: now + ttl,
        publish: !cfg.no_publish,
    };
    Ok(mint(&key.0, &claims))
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn parses_units() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("2d").unwrap(), 172800);
        for bad in ["", "h", "1y", "-1h", "0m", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}
