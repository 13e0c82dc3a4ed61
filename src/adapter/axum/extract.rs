//! Extractors for the logged-in user: `CurrentUser`, `FreshUser`,
//! `Option<CurrentUser>` where a login is optional, and `Allowed` where a
//! permission is needed.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::adapter::axum::rejection::{Forbidden, LoginRejection, LoginRequired};
use crate::adapter::axum::request::login_context;
use crate::login::context::{LoaderFailed, Refusal};
use crate::login::permission::Permission;
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
                if refusal == Refusal::NotFresh {
                    context.emit_fresh_login_required();
                }
                let required = LoginRequired::from_parts(
                    parts,
                    &context.config().login_url,
                    refusal == Refusal::NotFresh,
                );
                LoginRejection::LoginRequired(required.with_challenge(context.challenge()))
            }
        })
}

/// The logged-in user, if the [`Permission`] `P` allows them: a logged-in
/// user it refuses gets `403 Forbidden` ([`Forbidden`]), an anonymous
/// request what [`CurrentUser`] answers (the login page, or a `401`).
///
/// For a whole group of routes, the route layer
/// [`Login::require`](crate::Login::require) does the same with a closure.
///
/// ```
/// use axum_latch::{Allowed, Permission, User};
/// # #[derive(Clone)] struct Account { id: u64, name: String, is_admin: bool }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// struct Admin;
///
/// impl Permission<Account> for Admin {
///     async fn allows(user: &Account) -> bool {
///         user.is_admin
///     }
/// }
///
/// async fn users(Allowed(admin, ..): Allowed<Account, Admin>) -> String {
///     format!("{} may see every user", admin.name)
/// }
/// ```
pub struct Allowed<U, P>(pub Arc<U>, pub PhantomData<fn() -> P>);

impl<U, P> Clone for Allowed<U, P> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<U: std::fmt::Debug, P> std::fmt::Debug for Allowed<U, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Allowed").field(&self.0).finish()
    }
}

impl<S: Send + Sync, U: User, P: Permission<U>> FromRequestParts<S> for Allowed<U, P> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let user = require::<U>(parts, false).await?;
        if P::allows(&user).await {
            Ok(Allowed(user, PhantomData))
        } else {
            tracing::debug!(target: "latch", user_id = ?user.id(), "request refused: the user lacks the permission");
            Err(LoginRejection::Forbidden(Forbidden::new(
                &parts.headers,
                &parts.extensions,
            )))
        }
    }
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
