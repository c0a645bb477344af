//! Time-limited TURN credentials by the TURN REST convention, which coturn checks with
//! `use-auth-secret` and `static-auth-secret`: username `expiry:identity`, password
//! base64(HMAC-SHA1(secret, username)).

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;

/// A TURN username and password valid until `expires_at` (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnCredential {
    /// `expiry:identity`.
    pub username: String,
    /// base64(HMAC-SHA1(shared secret, username)).
    pub credential: String,
    /// Unix seconds after which coturn refuses the credential.
    pub expires_at: u64,
}

/// Mints a credential for `identity` valid for `ttl_seconds` from `now` (Unix seconds).
/// Colons in the identity are replaced, since coturn splits the username at the first one.
pub fn mint(secret: &[u8], identity: &str, now: u64, ttl_seconds: u64) -> TurnCredential {
    let expires_at = now.saturating_add(ttl_seconds);
    let username = format!("{expires_at}:{}", identity.replace(':', "_"));
    TurnCredential {
        credential: password(secret, &username),
        username,
        expires_at,
    }
}

/// The password coturn expects for `username` under `secret`.
pub fn password(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_hmac_sha1() {
        // Reference value computed with Python's hmac module:
        // base64(hmac.new(b"north", b"1700003600:alice", sha1).digest())
        let c = mint(b"north", "alice", 1_700_000_000, 3600);
        assert_eq!(c.username, "1700003600:alice");
        assert_eq!(c.expires_at, 1_700_003_600);
        assert_eq!(c.credential, "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
    }

    #[test]
    fn identity_colons_cannot_forge_an_expiry() {
        let c = mint(b"k", "9999999999:mallory", 100, 60);
        assert_eq!(c.username, "160:9999999999_mallory");
    }
}
