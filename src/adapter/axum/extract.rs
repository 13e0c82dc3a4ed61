//! Extractors for the logged-in user: `CurrentUser`, `FreshUser`, and
//! `Option<CurrentUser>` where a login is optional.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use std::sync::Arc;

use crate::adapter::axum::rejection::{LoginRejection, LoginRequired};
use crate::adapter::axum::request::login_context;
use crate::login::context::{LoaderFailed, Refusal};
use crate::login::user::User;

/// The logged-in user. Anonymous requests are refused with a redirect to
/// the login page (or a `401` for API clients): see [`LoginRequired`].
///
/// The user is loaded at most once per request, however many extractors
/// ask, and shared: `CurrentUser(user)` gives an `Arc<U>`, whose fields and
/// methods are the user's (`user.name`), never a copy.
///
/// Needs the [`Session`](crate::Session) and [`Login`](crate::Login) layers;
/// without them it rejects with a `500` that names the missing layer. A
/// failing user loader is a `500` too.
///
/// Where a login is optional, take `Option<CurrentUser<U>>`: `None` for an
/// anonymous request, which is let through.
///
/// ```
/// use axum_latch::{CurrentUser, User};
/// # #[derive(Clone)] struct Account { id: u64, name: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// async fn index(CurrentUser(user): CurrentUser<Account>) -> String {
///     format!("Hello, {}!", user.name)
/// }
///
/// async fn home(user: Option<CurrentUser<Account>>) -> String {
///     match user {
///         Some(CurrentUser(user)) => format!("Welcome back, {}", user.name),
///         None => "Welcome, stranger".to_owned(),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct CurrentUser<U>(pub Arc<U>);

/// The logged-in user, logged in with a password during this browser
/// session (and, with [`Login::fresh_within`](crate::Login::fresh_within),
/// recently enough): a login restored from a remember-me cookie is sent to
/// log in again (as Microdot's `@login.fresh`), like an anonymous request is.
///
/// Needs the same layers as [`CurrentUser`], and shares the user the same way.
///
/// ```
/// use axum_latch::{FreshUser, User};
/// # #[derive(Clone)] struct Account { id: u64 }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// async fn change_password(FreshUser(user): FreshUser<Account>) -> String {
///     format!("changing the password of user {}", user.id)
/// }
/// ```
#[derive(Debug)]
pub struct FreshUser<U>(pub Arc<U>);

impl<U> Clone for CurrentUser<U> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<U> Clone for FreshUser<U> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

async fn require<U: User>(parts: &Parts, fresh: bool) -> Result<Arc<U>, LoginRejection> {
    let context = login_context::<U>(&parts.headers, &parts.uri, &parts.extensions, false)?;
    context
        .require(fresh)
        .await
        .map_err(|refusal| match refusal {
            Refusal::LoaderFailed => LoginRejection::LoaderFailed,
            Refusal::Anonymous | Refusal::NotFresh => {
                LoginRejection::LoginRequired(LoginRequired::from_parts(
                    parts,
                    &context.config().login_url,
                    refusal == Refusal::NotFresh,
                ))
            }
        })
}

impl<S: Send + Sync, U: User> FromRequestParts<S> for CurrentUser<U> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        require(parts, false).await.map(CurrentUser)
    }
}

impl<S: Send + Sync, U: User> FromRequestParts<S> for FreshUser<U> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        require(parts, true).await.map(FreshUser)
    }
}

impl<S: Send + Sync, U: User> OptionalFromRequestParts<S> for CurrentUser<U> {
    type Rejection = LoginRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let context = login_context::<U>(&parts.headers, &parts.uri, &parts.extensions, false)?;
        match context.current_user().await {
            Ok(user) => Ok(user.map(CurrentUser)),
            Err(LoaderFailed) => Err(LoginRejection::LoaderFailed),
        }
    }
}
