//! HS256 JSON Web Tokens, the format of latch's session and remember cookies.
//!
//! One algorithm only, so there is no `alg` to confuse: the signature is
//! checked (in constant time) before any part of the token is parsed, and the
//! header must then say exactly `HS256`. Tokens made here read in PyJWT (and
//! so in Microdot) and the other way round.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::crypto::key::{KeyRing, SecretKey};

/// The claims of a token: a JSON object.
pub type Claims = Map<String, Value>;

/// The longest token latch will look at, in bytes. Browsers keep cookies of
/// at most about 4 KB, so anything longer did not come from latch.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// `{"alg":"HS256","typ":"JWT"}`, the header PyJWT writes, base64url-encoded.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// The length of an encoded HS256 signature (32 bytes, no padding).
const SIGNATURE_LEN: usize = 43;

/// How far in the future an `iat` or `nbf` may be, for clocks that disagree.
const CLOCK_LEEWAY_SECS: f64 = 60.0;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// The token is not three base64url parts separated by dots.
    #[error("token is not three base64url parts")]
    Malformed,
    /// No key of the ring made this signature.
    #[error("signature does not match any key")]
    BadSignature,
    /// The header is not exactly `{"alg":"HS256"}` (with an optional `"typ":"JWT"`).
    #[error("header is not HS256")]
    BadHeader,
    /// The payload is not a JSON object.
    #[error("payload is not a JSON object")]
    BadPayload,
    /// The token has no `exp` claim, or it is not a number.
    #[error("token has no expiry")]
    MissingExpiry,
    /// The token's `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// The token's `iat` or `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
}

/// A token whose signature and header checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The token's claims.
    pub claims: Claims,
    /// Which key of the ring signed it: `0` is the current key.
    pub key_index: usize,
}

/// Signs `claims` with `key` as an HS256 compact JWT.
pub fn encode(claims: &Claims, key: &SecretKey) -> String {
    let payload = serde_json::to_vec(claims).expect("a JSON map always serializes");
    let mut token = String::with_capacity(HEADER.len() + payload.len() * 4 / 3 + 50);
    token.push_str(HEADER);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = mac(key, token.as_bytes()).finalize().into_bytes();
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}

/// Verifies a token against every key of the ring, then parses it.
///
/// The order is fixed: size, shape, signature (constant-time, against each
/// key), header, payload. Nothing in the token is parsed before its
/// signature is known to be good. Expiry is checked separately, by
/// [`check_expiry`].
pub fn decode(token: &str, keys: &KeyRing) -> Result<Verified, TokenError> {
    let (payload, key_index) = verified_payload(token, keys)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::BadPayload)?;
    Ok(Verified { claims, key_index })
}

/// The first steps of [`decode`]: the token's payload, its signature and
/// header checked, as JSON bytes not parsed yet, and the index of the key
/// that signed it.
pub(crate) fn verified_payload(
    token: &str,
    keys: &KeyRing,
) -> Result<(Vec<u8>, usize), TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
    if signature.len() != SIGNATURE_LEN || payload.contains('.') {
        return Err(TokenError::Malformed);
    }
    let mut signature_bytes = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut signature_bytes) {
        Ok(32) => {}
        _ => return Err(TokenError::Malformed),
    }
    let key_index = keys
        .keys()
        .iter()
        .position(|key| {
            mac(key, signed.as_bytes())
                .verify_slice(&signature_bytes)
                .is_ok()
        })
        .ok_or(TokenError::BadSignature)?;

    if header != HEADER && !header_is_hs256(header) {
        return Err(TokenError::BadHeader);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::BadPayload)?;
    Ok((payload, key_index))
}

/// Checks `exp` (required), and `iat` and `nbf` (if present) against `now`,
/// in seconds since the Unix epoch. Numbers may be integers or floats.
pub fn check_expiry(claims: &Claims, now: u64) -> Result<(), TokenError> {
    let time = |name: &str| match claims.get(name) {
        None => Time::Missing,
        Some(value) => value.as_f64().map_or(Time::NotANumber, Time::At),
    };
    check_times(time("exp"), time("iat"), time("nbf"), now)
}

/// A time claim of a token, as found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) enum Time {
    #[default]
    Missing,
    At(f64),
    NotANumber,
}

impl Time {
    /// The time, if the claim holds a number.
    pub(crate) fn at(self) -> Option<f64> {
        match self {
            Time::At(at) => Some(at),
            Time::Missing | Time::NotANumber => None,
        }
    }
}

/// Reads any JSON value: a number is the time (as [`Value::as_f64`] reads
/// it), anything else is [`Time::NotANumber`].
impl<'de> serde::Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

        struct TimeVisitor;

        impl<'de> Visitor<'de> for TimeVisitor {
            type Value = Time;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Time, E> {
                Ok(Time::At(v as f64))
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Time, E> {
                Ok(Time::At(v as f64))
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Time, E> {
                Ok(Time::At(v))
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<Time, E> {
                Ok(Time::NotANumber)
            }
            fn visit_str<E: Error>(self, _: &str) -> Result<Time, E> {
                Ok(Time::NotANumber)
            }
            fn visit_unit<E: Error>(self) -> Result<Time, E> {
                Ok(Time::NotANumber)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Time, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Time::NotANumber)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Time, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Time::NotANumber)
            }
        }

        deserializer.deserialize_any(TimeVisitor)
    }
}

/// [`check_expiry`] for claims already picked out of the token.
pub(crate) fn check_times(exp: Time, iat: Time, nbf: Time, now: u64) -> Result<(), TokenError> {
    let now = now as f64;
    let Time::At(exp) = exp else {
        return Err(TokenError::MissingExpiry);
    };
    if exp <= now {
        return Err(TokenError::Expired);
    }
    for time in [iat, nbf] {
        match time {
            Time::Missing => {}
            Time::At(t) if t <= now + CLOCK_LEEWAY_SECS => {}
            _ => return Err(TokenError::NotYetValid),
        }
    }
    Ok(())
}

fn mac(key: &SecretKey, data: &[u8]) -> Hmac<Sha256> {
    let mut mac = key.mac();
    mac.update(data);
    mac
}

/// A header other than PyJWT's byte-for-byte one: it must still be a JSON
/// object with `alg` exactly `HS256`, at most a `typ` of `JWT`, and nothing else.
fn header_is_hs256(header: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&bytes) else {
        return false;
    };
    fields.iter().all(|(name, value)| match name.as_str() {
        "alg" => value == "HS256",
        "typ" => value == "JWT",
        _ => false,
    }) && fields.contains_key("alg")
}

/// HMAC-SHA256 of `data` under `key`, for fingerprints.
pub(crate) fn hmac_sha256(key: &SecretKey, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = key.mac();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(byte: u8) -> SecretKey {
        SecretKey::new([byte; 32]).unwrap()
    }

    fn claims(value: Value) -> Claims {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn round_trip() {
        let c = claims(json!({"_user_id": "user001", "exp": 4_000_000_000u64}));
        let token = encode(&c, &key(1));
        let verified = decode(&token, &KeyRing::new(key(1))).unwrap();
        assert_eq!(verified.claims, c);
        assert_eq!(verified.key_index, 0);
    }

    #[test]
    fn previous_key_verifies_and_is_reported() {
        let token = encode(&Claims::new(), &key(2));
        let ring = KeyRing::new(key(1)).with_previous(key(2));
        assert_eq!(decode(&token, &ring).unwrap().key_index, 1);
        assert_eq!(
            decode(&token, &KeyRing::new(key(1))),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let token = encode(&claims(json!({"_user_id": "a"})), &key(1));
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"_user_id":"b"}"#);
        parts[1] = &forged;
        let forged = parts.join(".");
        assert_eq!(
            decode(&forged, &KeyRing::new(key(1))),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn shape_errors() {
        let ring = KeyRing::new(key(1));
        for bad in [
            "",
            ".",
            "..",
            "a.b",
            "a.b.c.d",
            "a.b.c",
            "x".repeat(MAX_TOKEN_LEN + 1).as_str(),
        ] {
            assert!(decode(bad, &ring).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn other_algorithms_are_refused_even_when_signed() {
        // A correctly signed token whose header names another algorithm.
        let k = key(1);
        for header in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"HS256","kid":"x"}"#,
            "[]",
        ] {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode("{}")
            );
            let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(&k, &[signed.as_bytes()]));
            let token = format!("{signed}.{sig}");
            assert_eq!(
                decode(&token, &KeyRing::new(k.clone())),
                Err(TokenError::BadHeader),
                "{header}"
            );
        }
    }

    #[test]
    fn a_header_in_another_key_order_is_accepted() {
        let k = key(1);
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"HS256"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"a":1}"#)
        );
        let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(&k, &[signed.as_bytes()]));
        let verified = decode(&format!("{signed}.{sig}"), &KeyRing::new(k)).unwrap();
        assert_eq!(verified.claims, claims(json!({"a": 1})));
    }

    #[test]
    fn expiry_rules() {
        let now = 1_000_000;
        assert_eq!(
            check_expiry(&Claims::new(), now),
            Err(TokenError::MissingExpiry)
        );
        assert_eq!(
            check_expiry(&claims(json!({"exp": "soon"})), now),
            Err(TokenError::MissingExpiry)
        );
        assert_eq!(
            check_expiry(&claims(json!({"exp": now})), now),
            Err(TokenError::Expired)
        );
        assert_eq!(check_expiry(&claims(json!({"exp": now + 1})), now), Ok(()));
        // Microdot writes exp as a float.
        assert_eq!(
            check_expiry(&claims(json!({"exp": now as f64 + 0.5})), now),
            Ok(())
        );
        assert_eq!(
            check_expiry(&claims(json!({"exp": now + 100, "iat": now + 3600})), now),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check_expiry(&claims(json!({"exp": now + 100, "nbf": "x"})), now),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            check_expiry(&claims(json!({"exp": now + 100, "iat": now + 30})), now),
            Ok(())
        );
    }

    const PYJWT_KEY: &str = "top-secret! top-secret! top-secret!";

    /// Made by PyJWT 2.15 with `jwt.encode({"_user_id": "user001", "_fresh": True,
    /// "exp": 4102444800}, PYJWT_KEY, algorithm="HS256")`.
    const PYJWT_SESSION: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJfdXNlcl9pZCI6InVzZXIwMDEiLCJfZnJlc2giOnRydWUsImV4cCI6NDEwMjQ0NDgwMH0.xCJ3YHMqNkaemL5o_Gw6bmaea0cON4or7EPggEgkzfM";

    /// Made by PyJWT 2.15 with `jwt.encode({"user_id": "user001", "days": 30,
    /// "exp": 4102444800.25}, PYJWT_KEY, algorithm="HS256")`: Microdot's
    /// remember token, with its float `exp`.
    const PYJWT_REMEMBER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoidXNlcjAwMSIsImRheXMiOjMwLCJleHAiOjQxMDI0NDQ4MDAuMjV9.KaIV7UR0F-Nqj4hHcTrj_yNfSpGlOh7zyuR2S8pNN-8";

    #[test]
    fn reads_pyjwt_tokens() {
        let ring = KeyRing::new(SecretKey::new(PYJWT_KEY).unwrap());
        let session = decode(PYJWT_SESSION, &ring).unwrap();
        assert_eq!(
            Value::Object(session.claims),
            json!({"_user_id": "user001", "_fresh": true, "exp": 4102444800u64})
        );
        let remember = decode(PYJWT_REMEMBER, &ring).unwrap();
        assert_eq!(remember.claims["days"], 30);
        assert_eq!(check_expiry(&remember.claims, 4102444800), Ok(()));
    }

    #[test]
    fn writes_pyjwt_s_header() {
        let k = SecretKey::new(PYJWT_KEY).unwrap();
        let c = claims(json!({"_user_id": "user001", "_fresh": true, "exp": 4102444800u64}));
        let ours = encode(&c, &k);
        assert_eq!(ours.split('.').next(), PYJWT_SESSION.split('.').next());
        let ring = KeyRing::new(k);
        assert_eq!(
            decode(&ours, &ring).unwrap().claims,
            decode(PYJWT_SESSION, &ring).unwrap().claims
        );
    }
}
