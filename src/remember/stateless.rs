//! Stateless remember-me tokens: Microdot's signed JWT, plus latch's
//! fingerprint and purpose. Nothing is kept on the server.

use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::crypto::key::KeyRing;
use crate::crypto::token;
use crate::remember::{Redeemed, RememberError, RememberGrant, RememberTokens, MAX_REMEMBER_DAYS};

/// Microdot's remember-me token: a signed JWT `{user_id, days, exp}`, plus
/// latch's `_auth` fingerprint and a `_purpose` of `remember` (so that no
/// session token, signed with the same keys, passes for one). Needs no
/// store; a copy of the cookie works until it expires or the user's
/// `auth_hash` changes.
///
/// Each use re-issues it for the same number of days it was made for.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatelessRemember;

impl StatelessRemember {
    fn make(
        keys: &KeyRing,
        user_id: &Value,
        fingerprint: &str,
        days: u32,
        now: u64,
        session_id: Option<&str>,
    ) -> String {
        let mut claims = Map::new();
        claims.insert("user_id".into(), user_id.clone());
        claims.insert("days".into(), Value::from(days));
        claims.insert(
            "exp".into(),
            Value::from(now + u64::from(days) * 24 * 60 * 60),
        );
        claims.insert(
            crate::session::claims::FINGERPRINT.into(),
            Value::from(fingerprint),
        );
        claims.insert(
            crate::session::claims::PURPOSE.into(),
            Value::from(REMEMBER_PURPOSE),
        );
        if let Some(id) = session_id {
            claims.insert(crate::session::claims::SESSION_ID.into(), Value::from(id));
        }
        token::encode(&claims, keys.current())
    }

    fn check(keys: &KeyRing, value: &str, now: u64) -> Result<Redeemed, String> {
        let claims = token::decode(value, keys)
            .map_err(|e| e.to_string())?
            .claims;
        token::check_expiry(&claims, now).map_err(|e| e.to_string())?;
        // latch's own token says what it is for; Microdot's is exactly
        // `{user_id, days, exp}`, and only interop mode takes it.
        let microdot = claims.len() == 3
            && ["user_id", "days", "exp"]
                .iter()
                .all(|name| claims.contains_key(*name));
        let purpose = claims
            .get(crate::session::claims::PURPOSE)
            .and_then(Value::as_str);
        if purpose != Some(REMEMBER_PURPOSE) && !microdot {
            return Err("not a remember-me token".to_owned());
        }
        let user_id = match claims.get("user_id") {
            None | Some(Value::Null) => return Err("no user id".to_owned()),
            Some(id) => id.clone(),
        };
        let days = claims
            .get("days")
            .and_then(Value::as_u64)
            .filter(|days| (1..=u64::from(MAX_REMEMBER_DAYS)).contains(days))
            .ok_or("days is not a whole number from 1 to 3650")? as u32;
        let fingerprint = match claims.get(crate::session::claims::FINGERPRINT) {
            _ if microdot => None,
            Some(Value::String(fingerprint)) => Some(fingerprint.clone()),
            _ => return Err("no fingerprint".to_owned()),
        };
        // `exp` is `days` after the token was made (Microdot writes it as a float).
        let issued_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|exp| exp - f64::from(days) * 24.0 * 60.0 * 60.0)
            .and_then(|at| Duration::try_from_secs_f64(at).ok())
            .and_then(|since| UNIX_EPOCH.checked_add(since));
        // An id of another shape is dropped: the login gets a new one.
        let session_id = claims
            .get(crate::session::claims::SESSION_ID)
            .and_then(Value::as_str)
            .filter(|id| crate::crypto::random::is_session_id(id))
            .map(str::to_owned);
        let replacement = fingerprint
            .as_deref()
            .map(|fp| Self::make(keys, &user_id, fp, days, now, session_id.as_deref()));
        Ok(Redeemed {
            user_id,
            fingerprint,
            issued_at,
            days,
            replacement,
            confirmation: None,
            session_id,
        })
    }
}

/// The `_purpose` of a stateless remember-me token.
const REMEMBER_PURPOSE: &str = "remember";

impl RememberTokens for StatelessRemember {
    fn issue<'a>(
        &'a self,
        grant: RememberGrant<'a>,
    ) -> BoxFuture<'a, Result<String, RememberError>> {
        let token = Self::make(
            grant.keys,
            grant.user_id,
            grant.fingerprint,
            grant.days,
            grant.now,
            grant.session_id,
        );
        Box::pin(std::future::ready(Ok(token)))
    }

    fn redeem<'a>(
        &'a self,
        keys: &'a KeyRing,
        token: &'a str,
        now: SystemTime,
        _user_agent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Redeemed>, RememberError>> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let redeemed = match Self::check(keys, token, now) {
            Ok(redeemed) => Some(redeemed),
            Err(reason) => {
                tracing::debug!(target: "latch", %reason, "remember cookie rejected");
                None
            }
        };
        Box::pin(std::future::ready(Ok(redeemed)))
    }

    fn revoke<'a>(
        &'a self,
        _keys: &'a KeyRing,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<(), RememberError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use serde_json::json;

    fn ring() -> KeyRing {
        KeyRing::new(SecretKey::new([9u8; 32]).unwrap())
    }

    #[test]
    fn stateless_token_round_trip_keeps_its_days() {
        let keys = ring();
        let now = 1_700_000_000;
        let token = StatelessRemember::make(&keys, &json!("user001"), "fp", 7, now, None);
        let redeemed = StatelessRemember::check(&keys, &token, now + 3600).unwrap();
        assert_eq!(redeemed.user_id, json!("user001"));
        assert_eq!(redeemed.days, 7);
        assert_eq!(redeemed.fingerprint.as_deref(), Some("fp"));
        let replacement = redeemed.replacement.unwrap();
        let again = token::decode(&replacement, &keys).unwrap().claims;
        assert_eq!(again["days"], 7);
        assert_eq!(again["exp"], now + 3600 + 7 * 86400);
    }

    #[test]
    fn stateless_token_expires() {
        let keys = ring();
        let token = StatelessRemember::make(&keys, &json!(1), "fp", 1, 1000, None);
        assert!(StatelessRemember::check(&keys, &token, 1000 + 86400).is_err());
    }

    #[test]
    fn microdot_logout_token_has_no_user() {
        // Microdot "deletes" with a token whose user_id is null and days 0.
        let keys = ring();
        let mut claims = Map::new();
        claims.insert("user_id".into(), Value::Null);
        claims.insert("days".into(), json!(0));
        claims.insert("exp".into(), json!(4_000_000_000u64));
        let token = token::encode(&claims, keys.current());
        assert!(StatelessRemember::check(&keys, &token, 1000).is_err());
    }

    #[test]
    fn odd_days_are_refused() {
        let keys = ring();
        for days in [json!(0), json!(-1), json!(1.5), json!("30"), json!(99999)] {
            let mut claims = Map::new();
            claims.insert("user_id".into(), json!("u"));
            claims.insert("days".into(), days.clone());
            claims.insert("exp".into(), json!(4_000_000_000u64));
            let token = token::encode(&claims, keys.current());
            assert!(
                StatelessRemember::check(&keys, &token, 1000).is_err(),
                "{days}"
            );
        }
    }
}
