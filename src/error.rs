//! The errors of logging in and out.

use crate::remember::RememberError;

/// Why [`Auth::login_user`](crate::Auth::login_user) or
/// the other [`Auth`](crate::Auth) methods failed.
///
/// As a response it is `500 Internal Server Error`, and the error is logged;
/// an app that wants to do better (say, log the user in without "remember
/// me" when the remember store is down) matches on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The user's id cannot be stored as JSON.
    #[error("the user id cannot be stored in the session: {0}")]
    UserId(#[source] serde_json::Error),
    /// The remember-me store failed. For a login, nothing has changed: the
    /// user is not logged in yet.
    #[error(transparent)]
    Remember(#[from] RememberError),
    /// The session, with the login added, would not fit in a cookie: the
    /// app keeps too much in [`SessionData`](crate::SessionData). Nothing has
    /// changed.
    #[error("the session is too large to add a login to it: keep less in SessionData")]
    SessionTooLarge,
    /// The operating system's random source failed, so no session id
    /// could be made for the login: nothing has changed.
    #[error("the operating system's random source failed: no session id for the login")]
    Random,
    /// The [session registry](crate::registry) failed (its store, say).
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The call needs a [session registry](crate::Login::sessions), and the
    /// login layer has none.
    #[error("no session registry: add one with Login::sessions")]
    NoRegistry,
    /// The user loader failed (it has been logged).
    #[error("the user loader failed")]
    LoaderFailed,
}
