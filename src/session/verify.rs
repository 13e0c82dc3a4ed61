//! Checking a session token: its signature and shape (once per cookie and
//! thread, through the memo), then its times on every request.

use std::sync::Arc;

use crate::crypto::token::{self, Time, TokenError};
use crate::session::memo;
use crate::session::verified::{Shape, VerifiedSession};
use crate::session::SessionConfig;

/// Checks a session token: signature, header, expiry, absolute timeout.
/// Returns it verified (claims not parsed yet), whether to re-issue it, and
/// the time it was checked at.
pub(crate) fn verify(
    config: &SessionConfig,
    value: &str,
) -> Result<(Arc<VerifiedSession>, bool, u64), Rejected> {
    let verified = match memo::get(config.id, value.as_bytes()) {
        Some(verified) => verified,
        None => {
            let verified = Arc::new(VerifiedSession::new(&config.site.keys, value)?);
            memo::put(config.id, value.as_bytes(), verified.clone());
            verified
        }
    };
    check(config, verified)
}

/// The checks of a verified token that depend on the time, made on every
/// request: expiry, `iat` and `nbf`, the absolute timeout; whether to
/// re-issue it; and the time of the checks (seconds since the Unix epoch).
pub(crate) fn check(
    config: &SessionConfig,
    verified: Arc<VerifiedSession>,
) -> Result<(Arc<VerifiedSession>, bool, u64), Rejected> {
    let now = config.site.clock.unix_secs();
    let exp = match (verified.shape, config.microdot_compat) {
        (Shape::Latch, _) => verified.exp,
        // Microdot's session tokens never expire; latch re-issues them.
        (Shape::Microdot, Some(compat)) if compat.open_at(now) => Time::At(f64::INFINITY),
        (Shape::Microdot, Some(_)) => return Err(Rejected::MicrodotDeadline),
        (Shape::Microdot | Shape::Other, _) => return Err(Rejected::Purpose),
    };
    token::check_times(exp, verified.iat, verified.nbf, now)?;
    match verified.login_at {
        Time::Missing => {}
        Time::NotANumber => return Err(Rejected::LoginTime),
        Time::At(login_at) => {
            if login_at + config.absolute_timeout.as_secs() as f64 <= now as f64 {
                return Err(Rejected::AbsoluteTimeout);
            }
        }
    }
    let issued = match verified.iat {
        Time::At(issued) => issued,
        Time::Missing | Time::NotANumber => 0.0,
    };
    let renew =
        verified.key_index != 0 || (now as f64) - issued >= config.renew_after.as_secs() as f64;
    Ok((verified, renew, now))
}

/// Why a session cookie was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejected {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("login time is not a number")]
    LoginTime,
    #[error("login is older than the absolute timeout")]
    AbsoluteTimeout,
    #[error("not a session token")]
    Purpose,
    #[error("a Microdot session token, after the end of Microdot interop mode")]
    MicrodotDeadline,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::fingerprint;
    use crate::crypto::SecretKey;
    use crate::session::Session;
    use serde_json::{json, Value};
    use std::time::Duration;

    fn config(key: &str) -> Arc<SessionConfig> {
        Session::new(SecretKey::new(key.repeat(32)).unwrap()).config
    }

    fn token(key: &str, claims: Value) -> String {
        let key = SecretKey::new(key.repeat(32)).unwrap();
        token::encode(claims.as_object().unwrap(), &key)
    }

    fn login_claims(now: u64) -> Value {
        json!({"_user_id": 7, "_fresh": true, "_auth": "a".repeat(22), "_login_at": now,
               "_purpose": "session", "exp": now + 600, "iat": now, "app": [1, {"x": null}]})
    }

    #[test]
    fn a_cookie_seen_again_comes_from_the_memo() {
        let config = config("a");
        let cookie = token("a", login_claims(crate::clock::Clock::system().unix_secs()));
        let (first, _, _) = verify(&config, &cookie).unwrap();
        let (second, renew, _) = verify(&config, &cookie).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!renew);
        let login = second.login.clone().unwrap();
        assert_eq!(login.user_id, json!(7));
        assert!(login.fresh);
    }

    #[test]
    fn the_memo_does_not_skip_the_expiry_check() {
        let config = config("b");
        let now = crate::clock::Clock::system().unix_secs();
        let mut claims = login_claims(now);
        claims["exp"] = json!(now - 1);
        let cookie = token("b", claims);
        for _ in 0..2 {
            assert!(matches!(
                verify(&config, &cookie),
                Err(Rejected::Token(TokenError::Expired))
            ));
        }
    }

    #[test]
    fn another_configuration_verifies_for_itself() {
        let signer = config("c");
        let cookie = token("c", login_claims(crate::clock::Clock::system().unix_secs()));
        verify(&signer, &cookie).unwrap();
        // Same cookie, other keys: not accepted because the memo knows it.
        let other = config("d");
        assert!(matches!(
            verify(&other, &cookie),
            Err(Rejected::Token(TokenError::BadSignature))
        ));
        // A configuration changed after it was made gets a new id.
        let changed = Session::new(SecretKey::new("c".repeat(32)).unwrap())
            .idle_timeout(Duration::from_secs(5))
            .config;
        assert_ne!(changed.id, signer.id);
    }

    #[test]
    fn the_memo_stays_bounded() {
        let config = config("e");
        let now = crate::clock::Clock::system().unix_secs();
        for i in 0..memo::CAPACITY + 10 {
            let mut claims = login_claims(now);
            claims["n"] = json!(i);
            verify(&config, &token("e", claims)).unwrap();
        }
        assert!(memo::len() <= memo::CAPACITY);
    }

    #[test]
    fn the_fingerprint_memo_answers_only_for_the_same_auth_hash() {
        let config = config("f");
        let now = crate::clock::Clock::system().unix_secs();
        let key = config.site.keys.current();
        let mut claims = login_claims(now);
        claims["_auth"] = json!(fingerprint::fingerprint(key, b"old hash"));
        let (verified, _, _) = verify(&config, &token("f", claims)).unwrap();
        let mut login = verified.login.clone().unwrap();
        login.verified = Some(verified);
        for _ in 0..2 {
            assert_eq!(login.matching_key(&config.site.keys, b"old hash"), Some(0));
            assert_eq!(login.matching_key(&config.site.keys, b"new hash"), None);
        }
    }

    #[test]
    fn latch_claims_of_the_wrong_type_spoil_only_the_login() {
        let config = config("g");
        let now = crate::clock::Clock::system().unix_secs();
        for (name, bad) in [
            ("_fresh", json!("yes")),
            ("_fresh", json!(null)),
            ("_user_id", json!(null)),
        ] {
            let mut claims = login_claims(now);
            claims[name] = bad;
            let (verified, _, _) = verify(&config, &token("g", claims)).unwrap();
            assert!(verified.login.is_none(), "{name}");
        }
        let mut claims = login_claims(now);
        claims["_login_at"] = json!("yesterday");
        assert!(matches!(
            verify(&config, &token("g", claims)),
            Err(Rejected::LoginTime)
        ));
        let not_yet = json!({"exp": now + 60, "iat": "soon"});
        assert!(verify(&config, &token("g", not_yet)).is_err());
        // Signed, but an array rather than an object of claims, or with
        // one of latch's claims twice.
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
        let any = token("g", json!({}));
        let header = any.split('.').next().unwrap();
        let key = SecretKey::new("g".repeat(32)).unwrap();
        let exp = now + 60;
        for payload in [
            "[1,2]".to_owned(),
            format!(r#"{{"exp":{exp},"_user_id":1,"_user_id":2}}"#),
            format!(r#"{{"exp":{exp},"exp":{exp}}}"#),
        ] {
            let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload.as_bytes()));
            let signature = URL_SAFE_NO_PAD.encode(token::hmac_sha256(&key, &[signed.as_bytes()]));
            assert!(
                matches!(
                    verify(&config, &format!("{signed}.{signature}")),
                    Err(Rejected::Token(TokenError::BadPayload))
                ),
                "{payload}"
            );
        }
    }
}
