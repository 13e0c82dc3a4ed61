//! `axum_latch::token::decode` on arbitrary text, twice: as the fuzzer wrote it,
//! and with the text signed (as `header.payload`) by a key of the ring, so
//! that the header, payload and expiry checks behind the signature are
//! fuzzed too.
//!
//! Invariants: no panic; a token is refused as `TooLong` exactly when it is
//! too long; `BadSignature` exactly when no key of the ring signed it; nothing
//! behind the signature is judged (`BadHeader`, `BadPayload`) unless a key
//! signed it; a token of a key outside the ring is never accepted; an
//! accepted token has three parts, the signature of the key it names, an
//! HS256 header, and claims that re-encode, verify and decode to the same
//! claims; `check_expiry` accepts only an `exp` after `now` and no `iat` or
//! `nbf` more than a minute ahead.
#![no_main]

use axum_latch::fuzzing::token::{self, Claims, TokenError, Verified, MAX_TOKEN_LEN};
use axum_latch::{KeyRing, SecretKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;
use std::sync::LazyLock;

/// The ring's keys: current, then previous.
const KEYS: [&[u8]; 2] = [
    b"fuzz-current-key-0123456789abcdef",
    b"fuzz-previous-key-0123456789abcdef",
];
/// A key outside the ring.
const STRANGER: &[u8] = b"fuzz-stranger-key-0123456789abcdef";

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    KeyRing::new(SecretKey::new(KEYS[0]).unwrap()).with_previous(SecretKey::new(KEYS[1]).unwrap())
});
static STRANGERS: LazyLock<KeyRing> =
    LazyLock::new(|| KeyRing::new(SecretKey::new(STRANGER).unwrap()));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text, token::decode(text, &RING));

    // The text as `header.payload`, signed by each key of the ring.
    for (index, key) in KEYS.iter().enumerate() {
        let forged = format!("{text}.{}", URL_SAFE_NO_PAD.encode(sign(key, text)));
        let result = token::decode(&forged, &RING);
        assert_ne!(result, Err(TokenError::BadSignature), "{forged:?}");
        if let Ok(verified) = &result {
            assert_eq!(verified.key_index, index, "{forged:?}");
        }
        check(&forged, result);
        let stranger = token::decode(&forged, &STRANGERS);
        assert!(
            matches!(
                stranger,
                Err(TokenError::BadSignature | TokenError::Malformed | TokenError::TooLong)
            ),
            "a key outside the ring: {stranger:?} for {forged:?}"
        );
    }
});

fn sign(key: &[u8], signed: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(signed.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Which key of the ring (if any) made the signature of `token`, found here
/// without `axum_latch::token`. `None` too for a token that is not three parts.
fn signer(token: &str) -> Option<usize> {
    let (signed, signature) = token.rsplit_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    KEYS.iter()
        .position(|key| sign(key, signed).as_slice() == signature.as_slice())
}

fn check(token: &str, result: Result<Verified, TokenError>) {
    assert_eq!(
        result == Err(TokenError::TooLong),
        token.len() > MAX_TOKEN_LEN,
        "{token:?}: {result:?}"
    );
    let signer = signer(token);
    match &result {
        Err(TokenError::TooLong | TokenError::Malformed) => {}
        Err(TokenError::BadSignature) => assert_eq!(signer, None, "{token:?}"),
        Err(TokenError::BadHeader | TokenError::BadPayload) => {
            assert!(signer.is_some(), "judged before its signature: {token:?}")
        }
        Err(other) => panic!("decode does not check {other:?}"),
        Ok(verified) => accepted(token, verified, signer),
    }
}

fn accepted(token: &str, verified: &Verified, signer: Option<usize>) {
    assert_eq!(token.matches('.').count(), 2, "{token:?}");
    assert_eq!(signer, Some(verified.key_index), "{token:?}");
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let payload = parts.next().unwrap();
    assert!(header_is_hs256(header), "header {header:?}");
    let payload: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap())
        .expect("an accepted payload is a JSON object");
    assert!(same_claims(&payload, &verified.claims), "{token:?}");

    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    for now in [0, 1_000_000_000, today, u64::MAX] {
        expiry(&verified.claims, now);
    }
    if let Some(exp) = verified.claims.get("exp").and_then(Value::as_f64) {
        if exp.is_finite() && exp >= 0.0 && exp < u64::MAX as f64 {
            expiry(&verified.claims, exp as u64);
            expiry(&verified.claims, (exp as u64).saturating_sub(1));
        }
    }

    // Signed again with the current key: verifies, with the same claims.
    // (It may come out longer: a shorter header than PyJWT's, `1E2` that
    // becomes `100.0`.)
    let again = token::encode(&verified.claims, RING.current());
    if again.len() > MAX_TOKEN_LEN {
        assert_eq!(token::decode(&again, &RING), Err(TokenError::TooLong));
        return;
    }
    let reread = token::decode(&again, &RING).expect("a re-encoded token verifies");
    assert_eq!(reread.key_index, 0);
    assert!(same_claims(&verified.claims, &reread.claims), "{again:?}");
    assert!(token::decode(&again, &STRANGERS).is_err());
}

fn expiry(claims: &Claims, now: u64) {
    let result = token::check_expiry(claims, now);
    let number = |name: &str| claims.get(name).map(Value::as_f64);
    let exp = number("exp");
    match result {
        Ok(()) => {
            let exp = exp.flatten().expect("accepted without an exp");
            assert!(exp > now as f64, "exp {exp} accepted at {now}");
            for name in ["iat", "nbf"] {
                if let Some(t) = number(name) {
                    let t = t.expect("accepted with an iat or nbf that is not a number");
                    assert!(t <= now as f64 + 60.0, "{name} {t} accepted at {now}");
                }
            }
        }
        Err(TokenError::MissingExpiry) => assert_eq!(exp.flatten(), None),
        Err(TokenError::Expired) => assert!(exp.flatten().unwrap() <= now as f64),
        Err(TokenError::NotYetValid) => {}
        Err(other) => panic!("check_expiry does not check {other:?}"),
    }
}

/// PyJWT's header, or a JSON object with `alg` `HS256` and at most a `typ`
/// of `JWT`.
fn header_is_hs256(header: &str) -> bool {
    if header == "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" {
        return true;
    }
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice(&bytes) else {
        return false;
    };
    fields.get("alg").and_then(Value::as_str) == Some("HS256")
        && fields.get("typ").is_none_or(|typ| typ == "JWT")
        && fields.keys().all(|name| name == "alg" || name == "typ")
}

/// Equal claims, floats allowed the last-digit drift of a JSON round trip.
fn same_claims(a: &Claims, b: &Claims) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(name, value)| b.get(name).is_some_and(|other| same(value, other)))
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= x.abs().max(y.abs()) * 1e-15,
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => same_claims(x, y),
        _ => a == b,
    }
}
