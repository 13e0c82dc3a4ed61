//! HS256 tokens made and read by the tests themselves: latch's own token
//! code is private, and the tests check latch's cookies against this
//! separate, plain implementation (as Microdot's PyJWT would read them).

#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// A token's claims.
pub type Claims = Map<String, Value>;

/// `{"alg":"HS256","typ":"JWT"}`, the header latch and PyJWT write.
const HEADER: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

/// Now, in whole seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn mac(key: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key size");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `claims` signed with the key text `key`, as latch and PyJWT sign them.
pub fn encode(claims: &Claims, key: &str) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = URL_SAFE_NO_PAD.encode(mac(key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// The claims of a token signed by one of `keys` with an HS256 header,
/// and the index of that key; an error says what is wrong.
pub fn decode_with(token: &str, keys: &[&str]) -> Result<(Claims, usize), String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not three parts: {token:?}"));
    };
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|e| format!("signature: {e}"))?;
    let index = keys
        .iter()
        .position(|key| mac(key, signed.as_bytes()) == signature)
        .ok_or("no key made this signature")?;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|e| format!("header: {e}"))?,
    )
    .map_err(|e| format!("header: {e}"))?;
    if header["alg"] != "HS256" {
        return Err(format!("not HS256: {header}"));
    }
    let claims = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| format!("payload: {e}"))?,
    )
    .map_err(|e| format!("payload: {e}"))?;
    Ok((claims, index))
}

/// The claims of a token signed with one of `keys`.
pub fn decode(token: &str, keys: &[&str]) -> Result<Claims, String> {
    decode_with(token, keys).map(|(claims, _)| claims)
}

/// Whether `claims` are valid at `now`: `exp` (a number, integer or float)
/// in the future, and `iat` and `nbf`, if any, not past `now` plus a minute.
pub fn check_expiry(claims: &Claims, now: u64) -> Result<(), String> {
    let now = now as f64;
    let exp = claims.get("exp").and_then(Value::as_f64).ok_or("no exp")?;
    if exp <= now {
        return Err("expired".into());
    }
    for name in ["iat", "nbf"] {
        if let Some(time) = claims.get(name) {
            let time = time.as_f64().ok_or(format!("{name} is not a number"))?;
            if time > now + 60.0 {
                return Err(format!("{name} is in the future"));
            }
        }
    }
    Ok(())
}
