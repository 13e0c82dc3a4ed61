//! Revocable remember-me: split `selector.validator` tokens kept in a
//! [`RememberStore`], rotated on every use, confirmed by the browser's next
//! use, with theft detection.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

use crate::crypto::fingerprint;
use crate::crypto::key::KeyRing;
use crate::remember::device;
use crate::remember::store::{RememberStore, Rotation, StoreError, StoredToken};
use crate::remember::{
    Redeemed, Redemption, RememberError, RememberGrant, RememberTokens, RememberedDevice,
};

/// How many random bytes a selector and a validator each have (128 bits).
const PART_BYTES: usize = 16;

/// The length of one part, base64url without padding.
const PART_LEN: usize = 22;

/// The length of a whole `selector.validator` token.
pub(crate) const TOKEN_LEN: usize = 2 * PART_LEN + 1;

/// The default grace window: how long after a rotation the validator it
/// replaced is let in without a new cookie, for the parallel requests a
/// browser makes after a restart.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// How many times [`RevocableRemember::consume`] reads a token and tries to
/// rotate it before it gives up on a token that others keep rotating.
const ROUNDS: usize = 3;

/// How many bytes of the validator hash a confirmation tag carries.
const TAG_BYTES: usize = 16;

/// Remember-me tokens that the server can revoke: a random selector and a
/// random validator (128 bits each, from the OS) in the `_remember` cookie,
/// kept in a [`RememberStore`] as the selector and the SHA-256 of the
/// validator.
///
/// - Each use replaces the validator and re-sets the cookie.
/// - The browser then shows that it holds the new validator: the login
///   layer keeps the use's confirmation tag ([`Redeemed::confirmation`])
///   in the session it makes, and on the browser's next request with that
///   session, which carries the new cookie too, it calls
///   [`RememberTokens::confirm`], which records it in the store (one store
///   call, once per rotation).
/// - Until then, the validator it replaced keeps working: the response that
///   carried the new cookie may never have reached the browser (it
///   disconnected, a tab was restored, a request was cancelled). Presented
///   again, it gets another new validator, and the one the browser never
///   saw is discarded; nothing is revoked.
/// - The replaced validator presented after the new one was confirmed, or
///   any older validator, is theft: someone holds a copy of the cookie.
///   Every remember token of that user is revoked, a `warn` event is logged
///   (target `latch`, with the user id and the token's series), and the
///   request is anonymous.
/// - Within the [grace window](Self::grace) after a rotation (default 5
///   s), the validator it replaced is let in without a new cookie, confirmed
///   or not, so that the parallel requests of a restarting browser, which
///   all carry the same cookie, do not each mint a new one.
/// - [`Auth::logout_user`](crate::Auth::logout_user) revokes the token, so a
///   copy of the cookie stops working at once; a change of the user's
///   `auth_hash` makes all of the user's tokens fail.
/// - If the store is down, a remembered login fails closed: the request is
///   anonymous and an `error` event is logged; ordinary sessions keep
///   working, and [`Auth::login_user`](crate::Auth::login_user) with
///   remember-me returns an error. A logout while the store is down deletes
///   the cookie but cannot revoke the token (an `error` event says so): a
///   copy of the cookie works again once the store is back, until it is
///   used after the real one (theft) or expires.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use axum_latch::{stores::MemoryStore, Login, User};
/// use axum_latch::remember::RevocableRemember;
/// use std::time::Duration;
/// # #[derive(Clone)] struct Account;
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
/// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
///
/// let tokens = RevocableRemember::new(MemoryStore::new()).grace(Duration::from_secs(10));
/// let login = Login::new(load).remember_tokens(tokens);
/// # }
/// ```
#[derive(Clone)]
pub struct RevocableRemember<S> {
    store: S,
    grace: Duration,
    on_theft: Option<TheftHook>,
}

type TheftHook = Arc<dyn Fn(Theft) -> BoxFuture<'static, ()> + Send + Sync>;

impl<S: std::fmt::Debug> std::fmt::Debug for RevocableRemember<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocableRemember")
            .field("store", &self.store)
            .field("grace", &self.grace)
            .field("on_theft", &self.on_theft.is_some())
            .finish()
    }
}

/// A stolen remember cookie, as [`RevocableRemember::on_theft`] hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theft {
    /// The user whose cookie was copied.
    pub user_id: Value,
    /// The series of the copied token (a [`RememberedDevice::id`]).
    pub series: String,
    /// The device the token was issued to, like `Firefox on Linux`.
    pub device: String,
}

impl<S: RememberStore> RevocableRemember<S> {
    /// Remember-me tokens kept in `store`, with a grace window of
    /// [`DEFAULT_GRACE`].
    ///
    /// ```
    /// use axum_latch::remember::RevocableRemember;
    /// use axum_latch::stores::MemoryStore;
    ///
    /// # #[cfg(feature = "memory")] {
    /// let tokens = RevocableRemember::new(MemoryStore::new());
    /// # }
    /// ```
    pub fn new(store: S) -> Self {
        Self {
            store,
            grace: DEFAULT_GRACE,
            on_theft: None,
        }
    }

    /// Calls `hook` when a copied cookie is detected, after every remember
    /// token of the user has been revoked.
    ///
    /// Revoking the tokens does not end the sessions already made from them,
    /// and the thief may have used the cookie first: sessions live in signed
    /// cookies, and only a change of the user's
    /// [`auth_hash`](crate::User::auth_hash) ends them. Change it here (bump
    /// a session version, say) to log the user out everywhere, thief
    /// included; the user then logs in again with a password.
    ///
    /// ```
    /// # #[cfg(feature = "memory")] {
    /// use axum_latch::stores::MemoryStore;
    /// use axum_latch::remember::{RevocableRemember, Theft};
    ///
    /// let tokens = RevocableRemember::new(MemoryStore::new()).on_theft(|theft: Theft| async move {
    ///     // UPDATE users SET session_version = session_version + 1 WHERE id = theft.user_id
    ///     eprintln!("remember cookie of {} copied ({})", theft.user_id, theft.device);
    /// });
    /// # }
    /// ```
    pub fn on_theft<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Theft) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_theft = Some(Arc::new(move |theft| Box::pin(hook(theft))));
        self
    }

    /// How long after a rotation the validator it replaced is let in
    /// without a new cookie (default 5 s; kept to the millisecond, finer is
    /// rounded down). The window is for the parallel requests of a
    /// restarting browser, which all carry the same cookie: one rotates it,
    /// the others are let in as they are. Within it the replaced validator
    /// works even after the new one was confirmed; after it, it is theft
    /// once the new one is confirmed, and a lost response (another new
    /// validator) until then.
    ///
    /// `Duration::ZERO` turns the window off: each of those parallel
    /// requests then rotates the token again and gets a cookie of its own,
    /// and the browser keeps whichever response it reads last.
    ///
    /// ```
    /// use axum_latch::remember::RevocableRemember;
    /// use axum_latch::stores::MemoryStore;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "memory")] {
    /// let tokens = RevocableRemember::new(MemoryStore::new()).grace(Duration::from_secs(10));
    /// # }
    /// ```
    pub fn grace(mut self, window: Duration) -> Self {
        self.grace = window;
        self
    }

    /// The store.
    ///
    /// ```
    /// use axum_latch::remember::RevocableRemember;
    /// use axum_latch::stores::MemoryStore;
    ///
    /// # #[cfg(feature = "memory")] {
    /// let tokens = RevocableRemember::new(MemoryStore::new());
    /// assert!(tokens.store().is_empty());
    /// # }
    /// ```
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Checks a token and, if it is good, rotates it: what a request with a
    /// `_remember` cookie does. See [`Consumed`] and the rules above.
    ///
    /// When another request rotates the token between the read and the
    /// compare-and-swap, the token is read again and judged anew (three
    /// rounds at most; then [`Consumed::Rejected`] with `"contended"`).
    pub async fn consume(&self, token: &str, now: SystemTime) -> Result<Consumed, StoreError> {
        let Some((selector, validator)) = parse(token) else {
            return Ok(Consumed::Rejected("malformed token"));
        };
        let presented = sha256(&validator);
        let now_secs = unix_seconds(now);
        let now_ms = unix_millis(now);
        let Some(mut stored) = self.store.find(&selector).await? else {
            return Ok(Consumed::Rejected("unknown selector"));
        };
        for round in 1..=ROUNDS {
            if stored.expires_at <= now_secs {
                self.store.revoke(&selector).await?;
                return Ok(Consumed::Rejected("expired"));
            }
            let current = bool::from(stored.validator_hash.ct_eq(&presented));
            let previous = stored
                .previous_hash
                .is_some_and(|previous| bool::from(previous.ct_eq(&presented)));
            // What becomes `previous_hash` if the rotation below swaps.
            let keep = if current {
                stored.validator_hash
            } else if previous && self.in_grace(&stored, now_ms) {
                return Ok(Consumed::Grace(Box::new(stored)));
            } else if previous && !stored.confirmed {
                // The browser never showed it got the current validator:
                // the response that carried it was lost. A new one replaces
                // it, and the validator the browser does hold stays the
                // previous one until the new one is confirmed.
                tracing::debug!(
                    target: "latch",
                    series = %stored.series,
                    "replaced remember validator presented before the new one was confirmed: a lost response, rotated again"
                );
                presented
            } else {
                return self.theft(stored).await;
            };
            let fresh = random_part();
            let replacement = sha256(&fresh);
            let rotated = self
                .store
                .rotate(&Rotation {
                    selector: &selector,
                    expected: &stored.validator_hash,
                    confirmed: stored.confirmed,
                    previous: &keep,
                    replacement: &replacement,
                    now: now_secs,
                    rotated_at_ms: now_ms,
                    expires_at: expiry(now_secs, stored.days),
                })
                .await?;
            if rotated {
                let token = format!("{selector}.{}", URL_SAFE_NO_PAD.encode(fresh));
                return Ok(Consumed::Rotated {
                    token,
                    stored: Box::new(stored),
                });
            }
            if round == ROUNDS {
                break;
            }
            // Another request rotated it first: judge again what it left.
            stored = match self.store.find(&selector).await? {
                Some(after) => after,
                None => return Ok(Consumed::Rejected("revoked meanwhile")),
            };
        }
        Ok(Consumed::Rejected("contended"))
    }

    /// Whether `now_ms` is within the grace window after the last rotation.
    fn in_grace(&self, stored: &StoredToken, now_ms: u64) -> bool {
        let window = u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX);
        !self.grace.is_zero()
            && stored
                .rotated_at_ms
                .is_some_and(|at| now_ms <= at.saturating_add(window))
    }

    /// A copied cookie: revokes every token of the user, logs it and calls
    /// the hook.
    async fn theft(&self, stored: StoredToken) -> Result<Consumed, StoreError> {
        let revoked = self.store.revoke_user(&stored.user_id).await?;
        tracing::warn!(
            target: "latch",
            user_id = %stored.user_id,
            series = %stored.series,
            revoked,
            "remember validator presented after its successor was confirmed or replaced: the cookie was copied; all of the user's remembered logins revoked"
        );
        if let Some(hook) = &self.on_theft {
            match serde_json::from_str(&stored.user_id) {
                Ok(user_id) => {
                    hook(Theft {
                        user_id,
                        series: stored.series.clone(),
                        device: stored.device.clone(),
                    })
                    .await
                }
                Err(error) => {
                    tracing::error!(target: "latch", %error, "stored user id is not JSON: on_theft not called")
                }
            }
        }
        Ok(Consumed::Theft(Box::new(stored)))
    }

    /// Records that the browser holds the validator of `token`, if
    /// `confirmation` is the tag of that validator
    /// ([`Consumed::confirmation`], [`Redeemed::confirmation`]) and it is
    /// still the token's current one. Returns whether it did; a malformed
    /// token or another tag is `Ok(false)`, without asking the store.
    ///
    /// After it, the validator the current one replaced no longer passes as
    /// a lost response: presented after the grace window, it is theft.
    pub async fn confirm(&self, token: &str, confirmation: &str) -> Result<bool, StoreError> {
        let Some((selector, validator)) = parse(token) else {
            return Ok(false);
        };
        let hash = sha256(&validator);
        let tag = confirmation_tag(&hash);
        if !bool::from(tag.as_bytes().ct_eq(confirmation.as_bytes())) {
            return Ok(false);
        }
        self.store.confirm(&selector, &hash).await
    }

    /// Spawns a task that purges expired tokens every `period`, on the
    /// current Tokio runtime. Failures are logged and retried next period.
    /// Abort the returned handle to stop it.
    #[cfg(feature = "tokio")]
    #[cfg_attr(
        docsrs,
        doc(cfg(any(
            feature = "memory",
            feature = "sqlite",
            feature = "postgres",
            feature = "redis"
        )))
    )]
    ///
    /// ```
    /// use axum_latch::remember::RevocableRemember;
    /// use axum_latch::stores::MemoryStore;
    /// use std::time::Duration;
    ///
    /// # #[cfg(feature = "memory")]
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let tokens = RevocableRemember::new(MemoryStore::new());
    /// let purge = tokens.spawn_purge(Duration::from_secs(60 * 60)); // hourly
    /// // ... and when shutting down:
    /// purge.abort();
    /// # });
    /// ```
    pub fn spawn_purge(&self, period: Duration) -> tokio::task::JoinHandle<()>
    where
        S: Clone,
    {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match store
                    .purge_expired(crate::clock::Clock::system().unix_secs())
                    .await
                {
                    Ok(0) => {}
                    Ok(purged) => {
                        tracing::debug!(target: "latch", purged, "expired remember tokens purged")
                    }
                    Err(error) => {
                        tracing::error!(target: "latch", %error, "purging expired remember tokens failed")
                    }
                }
            }
        })
    }
}

/// What [`RevocableRemember::consume`] made of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consumed {
    /// The current validator, or the previous one when the browser never
    /// confirmed the current one (a lost response) and the grace window is
    /// over: it has been replaced by the one in `token`, which goes into the
    /// cookie.
    Rotated {
        /// The new `selector.validator` for the cookie.
        token: String,
        /// The token as it was stored before the rotation.
        stored: Box<StoredToken>,
    },
    /// The previous validator, within the grace window: good, but the
    /// cookie is left as it is (the request that rotated it sets it).
    Grace(Box<StoredToken>),
    /// A copied cookie: the previous validator after the grace window once
    /// the current one was confirmed, or an older validator. Every token of
    /// the user has been revoked.
    Theft(Box<StoredToken>),
    /// Not a token of this store (malformed, unknown, expired), or one that
    /// other requests kept rotating (`"contended"`); the reason is for logs.
    Rejected(&'static str),
}

impl Consumed {
    /// The confirmation tag of a good token, for
    /// [`RevocableRemember::confirm`]: base64url (no padding) of the first
    /// 16 bytes of the SHA-256 of the token's current validator, the new one
    /// for `Rotated` and the stored one for `Grace`. It names the validator
    /// without revealing it. `None` for `Theft` and `Rejected`.
    pub fn confirmation(&self) -> Option<String> {
        match self {
            Consumed::Rotated { token, .. } => {
                parse(token).map(|(_, validator)| confirmation_tag(&sha256(&validator)))
            }
            Consumed::Grace(stored) => Some(confirmation_tag(&stored.validator_hash)),
            Consumed::Theft(_) | Consumed::Rejected(_) => None,
        }
    }
}

impl<S: RememberStore> RememberTokens for RevocableRemember<S> {
    fn issue<'a>(
        &'a self,
        grant: RememberGrant<'a>,
    ) -> BoxFuture<'a, Result<String, RememberError>> {
        Box::pin(async move {
            let selector = URL_SAFE_NO_PAD.encode(random_part());
            let validator = random_part();
            let stored = StoredToken {
                selector: selector.clone(),
                validator_hash: sha256(&validator),
                previous_hash: None,
                rotated_at_ms: None,
                confirmed: false,
                user_id: grant.user_id.to_string(),
                fingerprint: grant.fingerprint.to_owned(),
                // The series names the browser: its session id when the
                // login has one, so that the registry's entry and the
                // remembered device are one.
                series: match grant.session_id {
                    Some(id) if crate::crypto::random::is_session_id(id) => id.to_owned(),
                    _ => URL_SAFE_NO_PAD.encode(random_part()),
                },
                days: grant.days,
                created_at: grant.now,
                last_used_at: grant.now,
                expires_at: expiry(grant.now, grant.days),
                device: device::summarize(grant.user_agent),
            };
            self.store.insert(&stored).await.map_err(store_error)?;
            Ok(format!("{selector}.{}", URL_SAFE_NO_PAD.encode(validator)))
        })
    }

    fn redeem<'a>(
        &'a self,
        keys: &'a KeyRing,
        token: &'a str,
        now: SystemTime,
        user_agent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Redeemed>, RememberError>> {
        Box::pin(async move {
            Ok(
                match self.redeem_outcome(keys, token, now, user_agent).await? {
                    Redemption::Redeemed(redeemed) => Some(redeemed),
                    Redemption::Refused | Redemption::Stolen { .. } => None,
                },
            )
        })
    }

    fn redeem_outcome<'a>(
        &'a self,
        _keys: &'a KeyRing,
        token: &'a str,
        now: SystemTime,
        _user_agent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Redemption, RememberError>> {
        Box::pin(async move {
            let consumed = self.consume(token, now).await.map_err(store_error)?;
            let confirmation = consumed.confirmation();
            let (stored, replacement) = match consumed {
                Consumed::Rotated { token, stored } => (stored, Some(token)),
                Consumed::Grace(stored) => (stored, None),
                Consumed::Theft(stored) => {
                    return Ok(Redemption::Stolen {
                        user_id: serde_json::from_str(&stored.user_id).ok(),
                    })
                }
                Consumed::Rejected(reason) => {
                    tracing::debug!(target: "latch", reason, "remember cookie rejected");
                    return Ok(Redemption::Refused);
                }
            };
            let Ok(user_id) = serde_json::from_str::<Value>(&stored.user_id) else {
                tracing::debug!(target: "latch", "remember cookie rejected: stored user id is not JSON");
                return Ok(Redemption::Refused);
            };
            Ok(Redemption::Redeemed(Redeemed {
                user_id,
                fingerprint: Some(stored.fingerprint),
                issued_at: Some(UNIX_EPOCH + Duration::from_secs(stored.created_at)),
                days: stored.days,
                replacement,
                confirmation,
                session_id: crate::crypto::random::is_session_id(&stored.series)
                    .then(|| stored.series.clone()),
            }))
        })
    }

    fn confirm<'a>(
        &'a self,
        token: &'a str,
        confirmation: &'a str,
    ) -> BoxFuture<'a, Result<bool, RememberError>> {
        Box::pin(async move {
            RevocableRemember::confirm(self, token, confirmation)
                .await
                .map_err(store_error)
        })
    }

    fn revoke<'a>(
        &'a self,
        _keys: &'a KeyRing,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), RememberError>> {
        Box::pin(async move {
            if let Some((selector, _)) = parse(token) {
                self.store.revoke(&selector).await.map_err(store_error)?;
            }
            Ok(())
        })
    }

    fn revoke_user<'a>(&'a self, user_id: &'a Value) -> BoxFuture<'a, Result<(), RememberError>> {
        Box::pin(async move {
            self.store
                .revoke_user(&user_id.to_string())
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn devices<'a>(
        &'a self,
        keys: &'a KeyRing,
        user_id: &'a Value,
        auth_hash: &'a [u8],
        current_token: Option<&'a str>,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<RememberedDevice>, RememberError>> {
        Box::pin(async move {
            let current = current_token.and_then(parse).map(|(selector, _)| selector);
            let stored = self
                .store
                .list(&user_id.to_string())
                .await
                .map_err(store_error)?;
            Ok(stored
                .into_iter()
                .filter(|token| token.expires_at > now)
                .filter(|token| {
                    fingerprint::matching_key(keys, auth_hash, &token.fingerprint).is_some()
                })
                .map(|token| RememberedDevice {
                    current: current.as_deref() == Some(token.selector.as_str()),
                    id: token.series,
                    device: token.device,
                    created_at: token.created_at,
                    last_used_at: token.last_used_at,
                    expires_at: token.expires_at,
                })
                .collect())
        })
    }

    fn revoke_device<'a>(
        &'a self,
        user_id: &'a Value,
        id: &'a str,
    ) -> BoxFuture<'a, Result<bool, RememberError>> {
        Box::pin(async move {
            self.store
                .revoke_series(&user_id.to_string(), id)
                .await
                .map_err(store_error)
        })
    }
}

fn store_error(error: StoreError) -> RememberError {
    RememberError::Store(error.into_inner())
}

/// Splits a cookie value into its selector (base64url, as stored) and its
/// validator (raw bytes). Anything but two 22-character base64url parts
/// of 16 bytes each is refused here, before any store is asked.
fn parse(token: &str) -> Option<(String, [u8; PART_BYTES])> {
    if token.len() != TOKEN_LEN {
        return None;
    }
    let (selector, validator) = token.split_once('.')?;
    let mut selector_bytes = [0u8; PART_BYTES];
    let mut validator_bytes = [0u8; PART_BYTES];
    decode_part(selector, &mut selector_bytes)?;
    decode_part(validator, &mut validator_bytes)?;
    Some((selector.to_owned(), validator_bytes))
}

fn decode_part(part: &str, out: &mut [u8; PART_BYTES]) -> Option<()> {
    if part.len() != PART_LEN {
        return None;
    }
    // The buffer must hold the decoder's estimate, which rounds up.
    let mut buffer = [0u8; PART_BYTES + 2];
    match URL_SAFE_NO_PAD.decode_slice(part, &mut buffer) {
        Ok(PART_BYTES) => {
            out.copy_from_slice(&buffer[..PART_BYTES]);
            Some(())
        }
        _ => None,
    }
}

fn random_part() -> [u8; PART_BYTES] {
    let mut bytes = [0u8; PART_BYTES];
    // The OS random source failing leaves no safe way to make a token.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

fn sha256(validator: &[u8]) -> [u8; 32] {
    Sha256::digest(validator).into()
}

/// The confirmation tag of a validator hash: base64url of its first 16
/// bytes.
fn confirmation_tag(hash: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(&hash[..TAG_BYTES])
}

/// Whole seconds since the Unix epoch (0 before it).
fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Milliseconds since the Unix epoch (0 before it).
fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn expiry(now: u64, days: u32) -> u64 {
    now.saturating_add(u64::from(days) * 24 * 60 * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_two_16_byte_parts() {
        let good = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode([1u8; 16]),
            URL_SAFE_NO_PAD.encode([2u8; 16])
        );
        let (selector, validator) = parse(&good).unwrap();
        assert_eq!(selector, URL_SAFE_NO_PAD.encode([1u8; 16]));
        assert_eq!(validator, [2u8; 16]);
        let bad = [
            String::new(),
            ".".into(),
            good.replace('.', "_"),
            format!("{good}="),
            good[..TOKEN_LEN - 1].into(),
            format!("{}.{}", "A".repeat(21), "A".repeat(23)),
            format!("{}.{}", "A".repeat(22), "!".repeat(22)),
            // 22 characters whose last one carries bits past 16 bytes.
            format!("{}.{}", "A".repeat(22), "A".repeat(21) + "B"),
            "a.b.c".into(),
            "é".repeat(22) + ".",
        ];
        for token in bad {
            assert!(parse(&token).is_none(), "{token:?}");
        }
    }

    #[cfg(feature = "memory")]
    #[tokio::test]
    async fn theft_calls_the_hook_once_with_the_user_and_device() {
        use crate::stores::MemoryStore;
        use crate::{KeyRing, SecretKey};

        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tokens = RevocableRemember::new(MemoryStore::new())
            .grace(Duration::ZERO)
            .on_theft({
                let heard = heard.clone();
                move |theft: Theft| {
                    heard.lock().unwrap().push(theft);
                    std::future::ready(())
                }
            });
        let keys = KeyRing::new(SecretKey::new([7u8; 32]).unwrap());
        let user_id = serde_json::json!("user001");
        let grant = RememberGrant {
            keys: &keys,
            user_id: &user_id,
            fingerprint: "fp",
            days: 30,
            now: 1_000,
            user_agent: Some("curl/8.5.0"),
            session_id: None,
        };
        let first = tokens.issue(grant).await.unwrap();
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        let rotated = tokens.consume(&first, at(1_000)).await.unwrap();
        let confirmation = rotated.confirmation().unwrap();
        let Consumed::Rotated { token: next, .. } = rotated else {
            panic!("the current validator rotates: {rotated:?}");
        };
        assert!(tokens.confirm(&next, &confirmation).await.unwrap());
        assert!(heard.lock().unwrap().is_empty());
        let Consumed::Theft(stored) = tokens.consume(&first, at(1_001)).await.unwrap() else {
            panic!("a replaced validator after the confirmation is theft");
        };
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 1);
        assert_eq!(heard[0].user_id, user_id);
        assert_eq!(heard[0].series, stored.series);
        assert_eq!(heard[0].device, "curl");
        assert!(tokens.store().is_empty());
    }

    #[test]
    fn random_parts_differ() {
        assert_ne!(random_part(), random_part());
    }
}
