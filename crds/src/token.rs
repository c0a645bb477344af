//! Join tokens: HS256 JWTs signed with the pool's key, naming one conference, one identity,
//! an expiry and whether the holder may publish media. Minted by applications (or
//! `conclave-operator token`) and verified by media nodes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a join token grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    /// Conference (metadata.name) the holder may join.
    pub conference: String,
    /// Who joins: shown to other participants and used in TURN usernames.
    pub identity: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Whether the holder may publish audio, video and screen share (else: watch only).
    #[serde(default = "default_publish")]
    pub publish: bool,
}

fn default_publish() -> bool {
    true
}

/// Why a token was refused. Each reason is distinct so clients and logs can tell them apart.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts holding a JWT header and claims.
    #[error("join token is malformed: {0}")]
    Malformed(&'static str),
    /// Signed with another algorithm than HS256 (`none` included).
    #[error("join token uses algorithm {0:?}; only HS256 is accepted")]
    Algorithm(String),
    /// The signature does not match the pool's key.
    #[error("join token signature is invalid: it was not signed with this pool's key")]
    Signature,
    /// Past its expiry.
    #[error("join token expired at {exp} (now {now}): ask the application for a new one")]
    Expired {
        /// The token's expiry, Unix seconds.
        exp: u64,
        /// The time it was checked at, Unix seconds.
        now: u64,
    },
    /// Valid, but for another conference.
    #[error("join token is for conference {token:?}, not {wanted:?}")]
    WrongConference {
        /// Conference named in the token.
        token: String,
        /// Conference the holder tried to join.
        wanted: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// Signs `claims` with `key` as an HS256 JWT.
pub fn mint(key: &[u8], claims: &JoinClaims) -> String {
    let header = Header {
        alg: "HS256".into(),
        typ: Some("JWT".into()),
    };
    // Serialising plain structs of strings, integers and booleans cannot fail.
    let header = serde_json::to_vec(&header).expect("header serialises");
    let body = serde_json::to_vec(claims).expect("claims serialise");
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(body)
    );
    let signature = mac(key, signing_input.as_bytes()).finalize().into_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Checks `token` against `key`, the time `now` (Unix seconds) and the conference the holder
/// wants to join, and returns its claims.
pub fn verify(
    key: &[u8],
    token: &str,
    conference: &str,
    now: u64,
) -> Result<JoinClaims, TokenError> {
    let claims = verify_signature(key, token)?;
    if claims.exp <= now {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now,
        });
    }
    if claims.conference != conference {
        return Err(TokenError::WrongConference {
            token: claims.conference,
            wanted: conference.to_owned(),
        });
    }
    Ok(claims)
}

/// Checks only the form, algorithm and signature of `token`, and returns its claims.
pub fn verify_signature(key: &[u8], token: &str) -> Result<JoinClaims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header: Header = decode_json(header, "header")?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm(header.alg));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    let signed_len = token.len() - signature_len(token);
    mac(key, &token.as_bytes()[..signed_len])
        .verify_slice(&signature)
        .map_err(|_| TokenError::Signature)?;
    decode_json(body, "claims")
}

fn signature_len(token: &str) -> usize {
    token.rsplit('.').next().map_or(0, |s| s.len() + 1)
}

fn decode_json<T: for<'de> Deserialize<'de>>(
    part: &str,
    what: &'static str,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        TokenError::Malformed(if what == "header" {
            "header is not base64url"
        } else {
            "claims are not base64url"
        })
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        TokenError::Malformed(if what == "header" {
            "header is not a JWT header"
        } else {
            "claims lack conference, identity or exp"
        })
    })
}

fn mac(key: &[u8], input: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(input);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"pool-key";

    fn claims(exp: u64) -> JoinClaims {
        JoinClaims {
            conference: "standup".into(),
            identity: "alice".into(),
            exp,
            publish: true,
        }
    }

    #[test]
    fn verifies_a_token_signed_by_another_implementation() {
        // Made with Python's hmac and base64 modules, not with this code.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJjb25mZXJlbmNlIjoic3RhbmR1cCIsImlkZW50aXR5IjoiYWxpY2UiLCJleHAiOjE3MDAwMDM2MDAsInB1Ymxpc2giOnRydWV9.RFResxv-UPxjBbFglKxUYJCZJ9xML1F6T0S40ppbxbI";
        assert_eq!(
            verify(KEY, token, "standup", 1_700_000_000),
            Ok(claims(1_700_003_600))
        );
    }

    #[test]
    fn round_trips() {
        let token = mint(KEY, &claims(2000));
        assert_eq!(verify(KEY, &token, "standup", 1999), Ok(claims(2000)));
    }

    #[test]
    fn refuses_expired_wrongly_signed_and_wrong_conference_distinctly() {
        let token = mint(KEY, &claims(2000));
        assert_eq!(
            verify(KEY, &token, "standup", 2000),
            Err(TokenError::Expired {
                exp: 2000,
                now: 2000
            })
        );
        assert_eq!(
            verify(b"other-key", &token, "standup", 1000),
            Err(TokenError::Signature)
        );
        assert!(matches!(
            verify(KEY, &token, "retro", 1000),
            Err(TokenError::WrongConference { .. })
        ));
    }

    #[test]
    fn refuses_alg_none_and_tampered_claims() {
        let token = mint(KEY, &claims(2000));
        let parts: Vec<&str> = token.split('.').collect();
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            verify(KEY, &format!("{none}.{}.", parts[1]), "standup", 1000),
            Err(TokenError::Algorithm("none".into()))
        );
        let forged = URL_SAFE_NO_PAD
            .encode(br#"{"conference":"standup","identity":"mallory","exp":9999999999}"#);
        assert_eq!(
            verify(
                KEY,
                &format!("{}.{forged}.{}", parts[0], parts[2]),
                "standup",
                1000
            ),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn refuses_malformed_tokens() {
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(
                matches!(
                    verify(KEY, bad, "standup", 0),
                    Err(TokenError::Malformed(_)) | Err(TokenError::Algorithm(_))
                ),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_input(s in ".{0,200}") {
            let _ = verify(KEY, &s, "standup", 0);
        }
    }
}
