//! What latch knows of a session cookie once its signature and JSON have
//! checked out: its times, its shape, and the login in it.

use serde_json::Value;
use std::sync::{Arc, OnceLock};

use crate::crypto::fingerprint;
use crate::crypto::key::KeyRing;
use crate::crypto::random;
use crate::crypto::token::{self, Claims, Time, TokenError};
use crate::session::claims::*;

/// A session cookie whose signature and JSON checked out, with what latch
/// reads of it; shared with the [token memo](crate::session::memo).
pub(crate) struct VerifiedSession {
    pub(crate) payload: Box<[u8]>,
    pub(crate) key_index: usize,
    pub(crate) exp: Time,
    pub(crate) iat: Time,
    pub(crate) nbf: Time,
    pub(crate) login_at: Time,
    pub(crate) shape: Shape,
    pub(crate) login: Option<LoginClaims>,
    /// The fingerprint check for the first user `auth_hash` seen with this
    /// cookie, and its answer.
    pub(crate) fingerprint: OnceLock<(Box<[u8]>, Option<usize>)>,
    /// The hash of the login's user id, as the registry's cut-offs key it.
    pub(crate) user_hash: OnceLock<u64>,
    /// When the registry last wrote this login's "last active", as far as
    /// this cookie knows (0: not yet).
    pub(crate) touched: std::sync::atomic::AtomicU64,
}

/// What kind of token a signed session cookie is, by its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A latch session token: its `_purpose` is `session`.
    Latch,
    /// A Microdot session token: none of latch's claims (no `_purpose`,
    /// `exp`, `iat`, `nbf`, `_auth` or `_login_at`).
    Microdot,
    /// Anything else signed with the key: a remember-me token, say.
    Other,
}

impl Shape {
    fn of(reserved: &Reserved<'_>) -> Self {
        let latch_claims = [reserved.exp, reserved.iat, reserved.nbf, reserved.login_at]
            .iter()
            .any(|time| *time != Time::Missing)
            || !matches!(reserved.fingerprint, Lenient::Missing)
            || !matches!(reserved.session_id, Lenient::Missing);
        match &reserved.purpose {
            Lenient::Valid(purpose) if purpose == SESSION_PURPOSE => Shape::Latch,
            Lenient::Missing if !latch_claims => Shape::Microdot,
            _ => Shape::Other,
        }
    }
}

impl VerifiedSession {
    /// Verifies the signature and reads latch's claims; expiry is not checked.
    pub(crate) fn new(keys: &KeyRing, value: &str) -> Result<Self, TokenError> {
        let (payload, key_index) = token::verified_payload(value, keys)?;
        let reserved = Reserved::parse(&payload).ok_or(TokenError::BadPayload)?;
        let (exp, iat, nbf, login_at) =
            (reserved.exp, reserved.iat, reserved.nbf, reserved.login_at);
        let shape = Shape::of(&reserved);
        let login = LoginClaims::from_reserved(reserved);
        Ok(Self {
            payload: payload.into_boxed_slice(),
            key_index,
            exp,
            iat,
            nbf,
            login_at,
            shape,
            login,
            fingerprint: OnceLock::new(),
            user_hash: OnceLock::new(),
            touched: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

/// What a session says about who is logged in.
#[derive(Clone)]
pub(crate) struct LoginClaims {
    pub user_id: Value,
    pub fingerprint: Option<Arc<str>>,
    pub fresh: bool,
    /// When the user logged in (seconds since the Unix epoch), if recorded.
    pub login_at: Option<f64>,
    /// The token's `iat`, if any: the login was made no earlier.
    pub issued_at: Option<f64>,
    /// The session holds a remember-me confirmation tag.
    pub remember_confirm: bool,
    /// The login's session id, if it has one of the right shape.
    pub session_id: Option<Arc<str>>,
    /// The session id's bits, as the registry's ended set keys them.
    pub session_key: Option<crate::registry::SessionKey>,
    /// The verified cookie these came from, which memoises the fingerprint check.
    pub(crate) verified: Option<Arc<VerifiedSession>>,
    /// When the request's session cookie was checked, if it was: the
    /// request's time.
    pub(crate) checked_at: Option<u64>,
}

impl LoginClaims {
    pub(crate) fn from_claims(claims: &Claims, issued_at: Option<f64>) -> Option<Self> {
        let user_id = claims.get(USER_ID)?.clone();
        if user_id.is_null() {
            return None;
        }
        // A `_fresh` of another type did not come from latch or Microdot.
        let fresh = match claims.get(FRESH) {
            None => false,
            Some(fresh) => fresh.as_bool()?,
        };
        let fingerprint = claims.get(FINGERPRINT).and_then(Value::as_str);
        Some(Self {
            user_id,
            fingerprint: fingerprint.map(Arc::from),
            fresh,
            login_at: claims.get(LOGIN_AT).and_then(Value::as_f64),
            issued_at,
            remember_confirm: claims.contains_key(REMEMBER_CONFIRM),
            session_key: claims
                .get(SESSION_ID)
                .and_then(Value::as_str)
                .and_then(random::session_key)
                .map(crate::registry::SessionKey),
            session_id: claims
                .get(SESSION_ID)
                .and_then(Value::as_str)
                .filter(|id| random::is_session_id(id))
                .map(Arc::from),
            verified: None,
            checked_at: None,
        })
    }

    /// The same as [`from_claims`](Self::from_claims), reading only latch's
    /// claims from the token's JSON instead of building the whole map.
    pub(crate) fn from_reserved(reserved: Reserved<'_>) -> Option<Self> {
        // A missing and a `null` user id are both no login.
        let user_id = reserved.user_id?;
        let fresh = match reserved.fresh {
            Lenient::Missing => false,
            Lenient::Valid(fresh) => fresh,
            Lenient::Invalid => return None,
        };
        let fingerprint = match reserved.fingerprint {
            Lenient::Valid(fingerprint) => Some(Arc::from(fingerprint)),
            Lenient::Missing | Lenient::Invalid => None,
        };
        Some(Self {
            user_id,
            fingerprint,
            fresh,
            login_at: reserved.login_at.at(),
            issued_at: reserved.iat.at(),
            remember_confirm: !matches!(reserved.remember_confirm, Lenient::Missing),
            session_key: match &reserved.session_id {
                Lenient::Valid(id) => random::session_key(id).map(crate::registry::SessionKey),
                _ => None,
            },
            session_id: match reserved.session_id {
                Lenient::Valid(id) if random::is_session_id(&id) => Some(Arc::from(id)),
                _ => None,
            },
            verified: None,
            checked_at: None,
        })
    }

    /// Which key of the ring made the login's `_auth` the fingerprint of
    /// `auth_hash` (see [`fingerprint::matching_key`]), memoised per cookie.
    pub fn matching_key(&self, keys: &KeyRing, auth_hash: &[u8]) -> Option<usize> {
        let claimed = self.fingerprint.as_deref()?;
        let Some(verified) = &self.verified else {
            return fingerprint::matching_key(keys, auth_hash, claimed);
        };
        // The answer depends only on the keys (fixed for the cookie's
        // configuration), the cookie's `_auth` and `auth_hash`.
        let (hash, key) = verified.fingerprint.get_or_init(|| {
            let key = fingerprint::matching_key(keys, auth_hash, claimed);
            (auth_hash.into(), key)
        });
        if **hash == *auth_hash {
            *key
        } else {
            fingerprint::matching_key(keys, auth_hash, claimed)
        }
    }
}
