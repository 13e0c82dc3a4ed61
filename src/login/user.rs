//! What latch needs of the app's users: the `User` trait, and the
//! `UserLoader` that finds a user by id.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::future::Future;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

pub use crate::boxed_error::BoxError;

/// A user of the app, as latch needs to know it.
///
/// ```
/// use axum_latch::User;
///
/// #[derive(Clone)]
/// struct Account {
///     id: i64,
///     username: String,
///     password_hash: String,
/// }
///
/// impl User for Account {
///     type Id = i64;
///
///     fn id(&self) -> i64 {
///         self.id
///     }
///
///     fn auth_hash(&self) -> &[u8] {
///         // Changing the password changes this, which ends every other
///         // session and remember-me cookie of the user.
///         self.password_hash.as_bytes()
///     }
/// }
/// ```
pub trait User: Clone + Send + Sync + 'static {
    /// The user's id, stored in the session as JSON (Microdot's `_user_id`).
    type Id: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// The user's id.
    fn id(&self) -> Self::Id;

    /// Bytes that change whenever the user's existing logins must end: the
    /// password hash, say, plus a "session version" the app bumps for "log
    /// out everywhere". latch stores only a keyed fingerprint of it.
    fn auth_hash(&self) -> &[u8];

    /// When [`auth_hash`](Self::auth_hash) last changed, if the app records
    /// it (a `credentials_changed_at` column set with every password change
    /// and "log out everywhere"). The default, `None`, means "not recorded".
    ///
    /// Only [Microdot interop mode](crate::Session::microdot_compat) reads
    /// it: Microdot's tokens carry no fingerprint of `auth_hash`, so without
    /// this time a copy of a Microdot cookie made before a password change
    /// still logs in until the mode's deadline. With it, latch refuses every
    /// Microdot token of the user that cannot show it was made after the
    /// change. latch's own tokens need nothing of this: the fingerprint of
    /// `auth_hash` ends them.
    ///
    /// ```
    /// use axum_latch::User;
    /// use std::time::SystemTime;
    ///
    /// #[derive(Clone)]
    /// struct Account {
    ///     id: i64,
    ///     password_hash: String,
    ///     credentials_changed_at: Option<SystemTime>,
    /// }
    ///
    /// impl User for Account {
    ///     type Id = i64;
    ///     fn id(&self) -> i64 {
    ///         self.id
    ///     }
    ///     fn auth_hash(&self) -> &[u8] {
    ///         self.password_hash.as_bytes()
    ///     }
    ///     fn auth_hash_changed_at(&self) -> Option<SystemTime> {
    ///         self.credentials_changed_at
    ///     }
    /// }
    /// ```
    fn auth_hash_changed_at(&self) -> Option<SystemTime> {
        None
    }
}

/// Finds a user by id, for every request with a login.
///
/// Any `async` function or closure from the user's id to
/// `Result<Option<U>, E>` is a loader; `Ok(None)` means the user no longer
/// exists (the request is then anonymous), and an `Err` answers the request
/// with `500 Internal Server Error` and logs the error.
///
/// ```
/// use axum_latch::{Login, User};
/// use std::{collections::HashMap, convert::Infallible, sync::Arc};
///
/// #[derive(Clone)]
/// struct Account { id: String, hash: String }
///
/// impl User for Account {
///     type Id = String;
///     fn id(&self) -> String { self.id.clone() }
///     fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() }
/// }
///
/// let accounts: Arc<HashMap<String, Account>> = Arc::default();
/// let login = Login::new(move |id: String| {
///     let accounts = accounts.clone();
///     async move { Ok::<_, Infallible>(accounts.get(&id).cloned()) }
/// });
/// ```
///
/// A loader written by hand names the future it returns, so that latch can
/// keep it without boxing it on every request:
///
/// ```
/// use axum_latch::{User, UserLoader};
/// use std::future::{ready, Ready};
/// # #[derive(Clone)] struct Account { id: u64 }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// struct Everyone;
///
/// impl UserLoader<Account> for Everyone {
///     type Error = std::convert::Infallible;
///     type Future = Ready<Result<Option<Account>, Self::Error>>;
///
///     fn load_user(&self, id: u64) -> Self::Future {
///         ready(Ok(Some(Account { id })))
///     }
/// }
/// ```
pub trait UserLoader<U: User>: Send + Sync + 'static {
    /// What a failed look-up returns.
    type Error: Into<BoxError>;

    /// The future [`load_user`](Self::load_user) returns.
    type Future: Future<Output = Result<Option<U>, Self::Error>> + Send;

    /// Finds the user with this id, or `None` if there is none.
    fn load_user(&self, id: U::Id) -> Self::Future;
}

impl<U, F, Fut, E> UserLoader<U> for F
where
    U: User,
    F: Fn(U::Id) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<U>, E>> + Send,
    E: Into<BoxError>,
{
    type Error = E;
    type Future = Fut;

    fn load_user(&self, id: U::Id) -> Fut {
        self(id)
    }
}

/// A loader with its types erased, as the [`Login`](crate::Login) layer keeps it.
pub(crate) trait DynLoader<U: User>: Send + Sync {
    fn load(&self, id: U::Id) -> BoxFuture<'_, Result<Option<U>, BoxError>>;
}

impl<U: User, L: UserLoader<U>> DynLoader<U> for L {
    fn load(&self, id: U::Id) -> BoxFuture<'_, Result<Option<U>, BoxError>> {
        Box::pin(async move { self.load_user(id).await.map_err(Into::into) })
    }
}
