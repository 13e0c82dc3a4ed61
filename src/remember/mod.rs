//! Remember-me: how long a login outlives the browser session, and the
//! `RememberTokens` trait that makes and checks the `_remember` cookie.

use futures_util::future::BoxFuture;
use serde_json::Value;
use std::time::SystemTime;

use crate::boxed_error::BoxError;
use crate::crypto::key::KeyRing;

pub(crate) mod device;
pub(crate) mod revocable;
mod stateless;
mod store;

pub use revocable::{Consumed, RevocableRemember, Theft, DEFAULT_GRACE};
pub use stateless::StatelessRemember;
pub use store::{RememberStore, Rotation, StoreError, StoredToken};

/// How many days "remember me" lasts when it is simply on, as in Microdot.
pub const DEFAULT_REMEMBER_DAYS: u32 = 30;

/// The most days latch remembers a login for (ten years).
pub const MAX_REMEMBER_DAYS: u32 = 3650;

/// Whether a login outlives the browser session, and for how long.
///
/// ```
/// use axum_latch::Remember;
///
/// assert_eq!(Remember::On.days(), Some(30));
/// assert_eq!(Remember::Days(7).days(), Some(7));
/// assert_eq!(Remember::from(false).days(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Remember {
    /// The login ends when the browser closes.
    #[default]
    Off,
    /// The login is remembered for 30 days.
    On,
    /// The login is remembered for this many days (`0` is off; at most
    /// [`MAX_REMEMBER_DAYS`]).
    Days(u32),
}

impl Remember {
    /// The number of days, or `None` when off.
    ///
    /// ```
    /// use axum_latch::Remember;
    ///
    /// assert_eq!(Remember::On.days(), Some(30));
    /// assert_eq!(Remember::Days(7).days(), Some(7));
    /// assert_eq!(Remember::Off.days(), None);
    /// ```
    pub fn days(self) -> Option<u32> {
        match self {
            Remember::Off | Remember::Days(0) => None,
            Remember::On => Some(DEFAULT_REMEMBER_DAYS),
            Remember::Days(days) => Some(days.min(MAX_REMEMBER_DAYS)),
        }
    }
}

impl From<bool> for Remember {
    /// `true` is [`Remember::On`] (30 days), like Microdot's `remember=True`.
    fn from(on: bool) -> Self {
        if on {
            Remember::On
        } else {
            Remember::Off
        }
    }
}

/// Why a remember-me token could not be made or checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RememberError {
    /// The store behind the tokens failed.
    #[error("the remember-me store failed: {0}")]
    Store(#[source] BoxError),
}

/// What a new remember-me token is for.
#[derive(Debug, Clone, Copy)]
pub struct RememberGrant<'a> {
    /// The keys to sign with, if the tokens are signed.
    pub keys: &'a KeyRing,
    /// The user's id, as stored in the session (JSON).
    pub user_id: &'a Value,
    /// The fingerprint of the user's `auth_hash`.
    pub fingerprint: &'a str,
    /// How many days the token lasts.
    pub days: u32,
    /// The current time, in seconds since the Unix epoch.
    pub now: u64,
    /// The request's `User-Agent`, for stores that list devices.
    pub user_agent: Option<&'a str>,
    /// The session id of the login: logins the token restores keep it, so
    /// that a remembered browser is one session, listed and ended as one
    /// (see [`registry`](crate::registry)). Tokens that can carry it do.
    pub session_id: Option<&'a str>,
}

/// A remember-me token that checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Redeemed {
    /// The user's id (JSON).
    pub user_id: Value,
    /// The fingerprint of the user's `auth_hash` when the token was made;
    /// `None` for a token latch did not make (Microdot's), which only
    /// [Microdot interop mode](crate::Session::microdot_compat) accepts.
    pub fingerprint: Option<String>,
    /// When the token was made, if it says.
    pub issued_at: Option<SystemTime>,
    /// How many days the token was made for.
    pub days: u32,
    /// The token that replaces it in the cookie, if any.
    pub replacement: Option<String>,
    /// For tokens whose rotation the browser confirms: the tag that
    /// [`RememberTokens::confirm`] takes, with the cookie of a later
    /// request, to record that the browser holds the token's current
    /// validator. Keep it in the session. `None` for stateless tokens.
    pub confirmation: Option<String>,
    /// The session id the token was made for ([`RememberGrant::session_id`]),
    /// if it carries one of latch's shape: the restored login keeps it.
    /// `None` for older tokens and Microdot's: the login gets a new one.
    pub session_id: Option<String>,
}

/// What checking a remember-me token found, as
/// [`RememberTokens::redeem_outcome`] tells it: latch reports a stolen
/// token to the app's [event hook](crate::events).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Redemption {
    /// The token is good.
    Redeemed(Redeemed),
    /// The token is not (or no longer) good.
    Refused,
    /// The token is a copy of one that has been used since: someone else
    /// holds the cookie. The tokens' own defences have run (every token of
    /// the user revoked, for [`RevocableRemember`]); the request is
    /// anonymous.
    Stolen {
        /// The user whose cookie it was, if known.
        user_id: Option<Value>,
    },
}

/// Makes, checks and revokes the tokens of the `_remember` cookie.
///
/// latch ships [`StatelessRemember`] (the default) and
/// [`RevocableRemember`], which keeps tokens in a
/// [`RememberStore`] so the server can rotate, list and
/// revoke them; either plugs in through
/// [`Login::remember_tokens`](crate::Login::remember_tokens) without any
/// other change to the app. latch checks the user and the fingerprint that
/// [`redeem`](Self::redeem) returns, so an implementation only vouches for
/// the token itself.
pub trait RememberTokens: Send + Sync + 'static {
    /// Makes a token for a login.
    fn issue<'a>(
        &'a self,
        grant: RememberGrant<'a>,
    ) -> BoxFuture<'a, Result<String, RememberError>>;

    /// Checks a token from a request at time `now`: `Ok(None)` for a token
    /// that is not (or no longer) good, which makes the request anonymous.
    fn redeem<'a>(
        &'a self,
        keys: &'a KeyRing,
        token: &'a str,
        now: SystemTime,
        user_agent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Redeemed>, RememberError>>;

    /// [`redeem`](Self::redeem), telling a stolen token from a bad one.
    /// latch calls this one; the default calls `redeem`, for tokens that
    /// cannot tell theft.
    fn redeem_outcome<'a>(
        &'a self,
        keys: &'a KeyRing,
        token: &'a str,
        now: SystemTime,
        user_agent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Redemption, RememberError>> {
        Box::pin(async move {
            Ok(match self.redeem(keys, token, now, user_agent).await? {
                Some(redeemed) => Redemption::Redeemed(redeemed),
                None => Redemption::Refused,
            })
        })
    }

    /// Records that the browser holds `token`, the remember cookie of a
    /// request that carries the `confirmation` of an earlier
    /// [`redeem`](Self::redeem) ([`Redeemed::confirmation`]). Returns
    /// whether it did: `false` when the tag is not that token's, or the
    /// token has been rotated or revoked since. The default does nothing
    /// and returns `false`: stateless tokens have nothing to confirm.
    fn confirm<'a>(
        &'a self,
        token: &'a str,
        confirmation: &'a str,
    ) -> BoxFuture<'a, Result<bool, RememberError>> {
        let _ = (token, confirmation);
        Box::pin(std::future::ready(Ok(false)))
    }

    /// Revokes a token, on logout. Stateless tokens cannot be revoked one by
    /// one; deleting the cookie is all that can be done for them.
    fn revoke<'a>(
        &'a self,
        keys: &'a KeyRing,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), RememberError>>;

    /// Revokes all of a user's tokens, after the user's `auth_hash` changed.
    /// The default does nothing: stateless tokens already fail then.
    fn revoke_user<'a>(&'a self, user_id: &'a Value) -> BoxFuture<'a, Result<(), RememberError>> {
        let _ = user_id;
        Box::pin(std::future::ready(Ok(())))
    }

    /// The user's remembered devices whose tokens still work (made for this
    /// `auth_hash`, not expired), marking the one of `current_token`. The
    /// default lists none: stateless tokens are not kept anywhere.
    fn devices<'a>(
        &'a self,
        keys: &'a KeyRing,
        user_id: &'a Value,
        auth_hash: &'a [u8],
        current_token: Option<&'a str>,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<RememberedDevice>, RememberError>> {
        let _ = (keys, user_id, auth_hash, current_token, now);
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Revokes one remembered device of the user, by its
    /// [`id`](RememberedDevice::id). Returns whether there was one. The
    /// default has none to revoke.
    fn revoke_device<'a>(
        &'a self,
        user_id: &'a Value,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, RememberError>> {
        let _ = (user_id, id);
        Box::pin(std::future::ready(Ok(false)))
    }
}

/// A browser or app where a user is remembered, for a page that lists them
/// with a button to revoke each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RememberedDevice {
    /// What [`Auth::forget_device`](crate::Auth::forget_device) takes to
    /// revoke it. Not a secret: it cannot be used to log in.
    pub id: String,
    /// A summary of the device's `User-Agent`, like `Firefox on Linux`.
    pub device: String,
    /// When "remember me" was chosen there (seconds since the Unix epoch).
    pub created_at: u64,
    /// When the device last used its remember-me cookie to log in.
    pub last_used_at: u64,
    /// When the remembered login ends unless used before.
    pub expires_at: u64,
    /// Whether it is the device of the request.
    pub current: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remember_days() {
        assert_eq!(Remember::Off.days(), None);
        assert_eq!(Remember::Days(0).days(), None);
        assert_eq!(Remember::On.days(), Some(30));
        assert_eq!(Remember::from(true), Remember::On);
        assert_eq!(Remember::Days(u32::MAX).days(), Some(MAX_REMEMBER_DAYS));
    }
}
