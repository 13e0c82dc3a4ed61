//! The `SessionData` extractor: the app's own typed values in the session.

use axum::extract::FromRequestParts;
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::adapter::axum::rejection::MissingLayer;
use crate::adapter::axum::request::session_state;
use crate::login::request::RequestState;
use crate::session::claims::is_reserved;
use crate::session::{SessionError, MAX_COOKIE_LEN};
use std::sync::Arc;

/// The app's data in the session, typed with serde. Needs the [`Session`](crate::Session) layer.
///
/// Values are stored as JSON in the signed session cookie, which the
/// browser can read but not change: keep secrets out of it, and keep it
/// small (a browser keeps about 4 KB per cookie). Changes are saved when the
/// response goes out, with no call to make.
///
/// Rejects with `500 Internal Server Error` and a message naming the missing
/// layer if the router has no [`Session`](crate::Session) layer.
///
/// ```
/// use axum_latch::SessionData;
///
/// async fn set_theme(session: SessionData) -> &'static str {
///     session.insert("theme", "dark").expect("a string always serializes");
///     "saved"
/// }
///
/// async fn theme(session: SessionData) -> String {
///     session.get::<String>("theme").unwrap_or_else(|| "light".to_owned())
/// }
/// ```
#[derive(Clone)]
pub struct SessionData(Arc<RequestState>);

impl SessionData {
    /// The value stored under `key`, if there is one of type `T`. A value of
    /// another shape (say, written by an older version of the app) reads as
    /// `None` rather than failing the request.
    ///
    /// ```
    /// use axum_latch::SessionData;
    ///
    /// async fn theme(session: SessionData) -> String {
    ///     session.get::<String>("theme").unwrap_or_else(|| "light".into())
    /// }
    /// ```
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let state = self.0.session.state();
        let value = state.claims().get(key)?;
        match T::deserialize(value) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::debug!(target: "latch", key, %error, "session value of another type ignored");
                None
            }
        }
    }

    /// Stores `value` under `key`, replacing what was there. A session that
    /// would not fit in a browser's cookie (about 4 KB) is refused here, with
    /// [`SessionError::TooLarge`], rather than silently dropped later. An
    /// anonymous session keeps room for a login (a user id of up to 100
    /// bytes of JSON), so that logging in never overflows it.
    ///
    /// ```
    /// use axum_latch::session::SessionError;
    /// use axum_latch::SessionData;
    ///
    /// async fn dark(session: SessionData) -> Result<&'static str, SessionError> {
    ///     session.insert("theme", "dark")?; // saved in the cookie on the way out
    ///     Ok("dark it is")
    /// }
    /// ```
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        if is_reserved(key) {
            return Err(SessionError::ReservedKey(key.to_owned()));
        }
        let value = serde_json::to_value(value).map_err(|source| SessionError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        let mut state = self.0.session.state();
        if state.claims().get(key) == Some(&value) {
            return Ok(());
        }
        let mut claims = state.claims().clone();
        claims.insert(key.to_owned(), value);
        if !self.0.session.fits_with_room_for_login(&claims) {
            return Err(SessionError::TooLarge {
                key: key.to_owned(),
                max: MAX_COOKIE_LEN,
            });
        }
        *state.claims_mut() = claims;
        Ok(())
    }

    /// Removes `key`, telling whether it was there. Keys kept by latch are
    /// left alone (use [`Auth::logout_user`](crate::Auth::logout_user) to log out).
    ///
    /// ```
    /// use axum_latch::SessionData;
    ///
    /// async fn reset(session: SessionData) -> &'static str {
    ///     session.remove("theme");
    ///     "back to the default theme"
    /// }
    /// ```
    pub fn remove(&self, key: &str) -> bool {
        if is_reserved(key) {
            return false;
        }
        let mut state = self.0.session.state();
        if !state.claims().contains_key(key) {
            return false;
        }
        state.claims_mut().remove(key);
        true
    }

    /// Empties the session: the app's values and the login in it; the
    /// session cookie is deleted.
    ///
    /// This is not a logout. A browser with a remember-me cookie is logged
    /// straight back in by its next request (a remembered login, not
    /// fresh), and the remember token stays valid. To log the user out, call
    /// [`Auth::logout_user`](crate::Auth::logout_user), which also revokes
    /// and deletes the remember cookie; `clear` after it empties the rest.
    ///
    /// ```
    /// use axum::response::Redirect;
    /// use axum_latch::{Auth, SessionData, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// async fn logout(auth: Auth<Account>, session: SessionData) -> Redirect {
    ///     auth.logout_user().await; // the login and the remember cookie
    ///     session.clear();          // the app's own values too
    ///     Redirect::to("/")
    /// }
    /// ```
    pub fn clear(&self) {
        let mut state = self.0.session.state();
        if !state.claims().is_empty() {
            state.claims_mut().clear();
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionData {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        session_state(&parts.headers, &parts.uri, &parts.extensions).map(SessionData)
    }
}
