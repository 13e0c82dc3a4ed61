//! The `RememberStore` trait: where revocable remember-me tokens live, so
//! that they can be rotated, listed and revoked on the server.

use std::future::Future;

use crate::boxed_error::BoxError;

/// One remembered login (one device), as a [`RememberStore`] keeps it.
///
/// The cookie carries `selector.validator`; the store keeps the selector and
/// only the SHA-256 of the validator, so a copy of the store does not give
/// anyone a working cookie. The selector stays the same for the life of the
/// token; the validator changes on every use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The lookup key: 16 random bytes, base64url (22 characters).
    pub selector: String,
    /// SHA-256 of the current validator.
    pub validator_hash: [u8; 32],
    /// SHA-256 of the previous validator, if the token has been rotated:
    /// the one the browser held before the last rotation it is known to
    /// have seen. It stays acceptable until the browser shows it holds the
    /// current one (`confirmed`).
    pub previous_hash: Option<[u8; 32]>,
    /// When the validator was last rotated, in milliseconds since the Unix
    /// epoch; the previous one is accepted without a new cookie for the
    /// grace window after it.
    pub rotated_at_ms: Option<u64>,
    /// Whether the browser has shown that it holds the current validator
    /// ([`RememberStore::confirm`]); every rotation resets it. Until then,
    /// the previous validator presented again is taken for a response that
    /// never reached the browser; after it, for a copied cookie.
    pub confirmed: bool,
    /// The user's id, as JSON text (`"user001"`, `42`).
    pub user_id: String,
    /// The fingerprint of the user's `auth_hash` when the token was made.
    pub fingerprint: String,
    /// A public id for the device, stable across rotations: what logs show
    /// and what a "remembered devices" page revokes by. It is not a secret
    /// and grants nothing.
    pub series: String,
    /// How many days each use extends the token by.
    pub days: u32,
    /// When the token was issued (seconds since the Unix epoch).
    pub created_at: u64,
    /// When the token was last used to log in.
    pub last_used_at: u64,
    /// When the token stops working.
    pub expires_at: u64,
    /// A short summary of the device, like `Firefox on Linux`.
    pub device: String,
}

/// A compare-and-swap of a token's validator: [`RememberStore::rotate`].
#[derive(Debug, Clone, Copy)]
pub struct Rotation<'a> {
    /// Which token.
    pub selector: &'a str,
    /// The current validator hash the caller read; the swap happens only if
    /// it is still the current one.
    pub expected: &'a [u8; 32],
    /// Whether the caller read the current validator as confirmed; the
    /// swap happens only if that is still so (a browser's confirmation that
    /// lands between the read and the swap must not be overwritten by a
    /// rotation meant for a validator that was never seen).
    pub confirmed: bool,
    /// The new `previous_hash`: `expected` for an ordinary rotation, or the
    /// previous hash kept as it was when a browser that never got the
    /// current validator is given a new one.
    pub previous: &'a [u8; 32],
    /// The new validator hash.
    pub replacement: &'a [u8; 32],
    /// The time of the rotation, in seconds since the Unix epoch: the new
    /// `last_used_at`.
    pub now: u64,
    /// The time of the rotation, in milliseconds since the Unix epoch: the
    /// new `rotated_at_ms`.
    pub rotated_at_ms: u64,
    /// The new expiry.
    pub expires_at: u64,
}

/// A remember-me store failed (it is unreachable, say, or a query failed).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(BoxError);

impl StoreError {
    /// Wraps the error of a store's client library.
    ///
    /// ```
    /// use axum_latch::remember::StoreError;
    ///
    /// fn from_io(error: std::io::Error) -> StoreError {
    ///     StoreError::new(error) // any error, boxed
    /// }
    /// ```
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(error.into())
    }

    /// The client library's error.
    ///
    /// ```
    /// use axum_latch::remember::StoreError;
    ///
    /// let error = StoreError::new(std::io::Error::other("disk full"));
    /// assert_eq!(error.into_inner().to_string(), "disk full");
    /// ```
    pub fn into_inner(self) -> BoxError {
        self.0
    }
}

/// Where revocable remember-me tokens are kept.
///
/// A store keeps [`StoredToken`]s and does a few atomic operations on them;
/// [`RevocableRemember`](crate::remember::RevocableRemember) builds remember-me on
/// top: it makes the random selector and validator, checks validators in
/// constant time, consumes and rotates tokens (`find`, then `rotate`),
/// records that the browser holds the new validator (`confirm`), applies
/// the grace window and revokes every token of a user whose replaced
/// validator comes back after the new one was confirmed. Every store passes
/// the same contract tests.
///
/// latch ships four stores, each behind a cargo feature:
/// [`MemoryStore`](crate::stores::MemoryStore) (`memory`),
/// `SqliteStore` (`sqlite`), `PostgresStore` (`postgres`) and `RedisStore`
/// (`redis`), all in [`stores`](crate::stores).
///
/// Methods take `now` from the caller (seconds since the Unix epoch), so
/// that expiry follows one clock. Stores may drop expired tokens on their own
/// (Redis does, by key TTL); a token past its `expires_at` is refused by
/// latch whether or not it is still stored.
pub trait RememberStore: Send + Sync + 'static {
    /// Stores a newly issued token. Its selector and series are new (random);
    /// a store may refuse a series already in use.
    fn insert(&self, token: &StoredToken) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The token with this selector, if stored.
    fn find(
        &self,
        selector: &str,
    ) -> impl Future<Output = Result<Option<StoredToken>, StoreError>> + Send;

    /// Atomically replaces the token's validator hash with
    /// `rotation.replacement` if it is still `rotation.expected`:
    /// `previous_hash` becomes `rotation.previous`, `rotated_at_ms`,
    /// `last_used_at` and `expires_at` are updated, and `confirmed` becomes
    /// `false`. Returns whether it swapped. Of many concurrent rotations
    /// from the same validator, exactly one swaps.
    fn rotate(
        &self,
        rotation: &Rotation<'_>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Atomically sets `confirmed` if the token's validator hash is still
    /// `current`: the browser has shown it holds that validator. Returns
    /// whether the hash matched (the token is now confirmed); an unknown
    /// selector or another hash changes nothing.
    fn confirm(
        &self,
        selector: &str,
        current: &[u8; 32],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the token with this selector. Returns whether there was one.
    fn revoke(&self, selector: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes the user's token of this series (one remembered device).
    /// Returns whether there was one; a series of another user is left alone.
    fn revoke_series(
        &self,
        user_id: &str,
        series: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes all of the user's tokens. Returns how many there were.
    fn revoke_user(&self, user_id: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The user's tokens, most recently used first.
    fn list(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredToken>, StoreError>> + Send;

    /// Deletes every token whose `expires_at` is at or before `now`.
    /// Returns how many it deleted.
    fn purge_expired(&self, now: u64) -> impl Future<Output = Result<u64, StoreError>> + Send;
}
