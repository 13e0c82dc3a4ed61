//! Extractors for the logged-in user: `CurrentUser`, `FreshUser` and `MaybeUser`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;

use crate::login::{LoginContext, Refusal};
use crate::rejection::{LoginRejection, LoginRequired};
use crate::user::User;

/// The logged-in user. Anonymous requests are refused with a redirect to
/// the login page (or a `401` for API clients): see [`LoginRequired`].
///
/// Needs the [`Session`](crate::Session) and [`Login`](crate::Login) layers;
/// without them it rejects with a `500` that names the missing layer. A
/// failing user loader is a `500` too. The user is loaded at most once per
/// request, however many extractors ask.
///
/// ```
/// use axum_latch::{CurrentUser, User};
/// # #[derive(Clone)] struct Account { id: u64, name: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// async fn index(CurrentUser(user): CurrentUser<Account>) -> String {
///     format!("Hello, {}!", user.name)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CurrentUser<U>(pub U);

/// The logged-in user, logged in with a password during this browser
/// session: a login restored from a remember-me cookie is sent to log in
/// again (as Microdot's `@login.fresh`), like an anonymous request is.
///
/// Needs the same layers as [`CurrentUser`].
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
#[derive(Debug, Clone)]
pub struct FreshUser<U>(pub U);

/// The logged-in user if there is one: `MaybeUser(None)` for anonymous
/// requests, which are let through.
///
/// Needs the same layers as [`CurrentUser`]. `Option<CurrentUser<U>>` works
/// the same way.
///
/// ```
/// use axum_latch::{MaybeUser, User};
/// # #[derive(Clone)] struct Account { id: u64, name: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// async fn home(MaybeUser(user): MaybeUser<Account>) -> String {
///     match user {
///         Some(user) => format!("Welcome back, {}", user.name),
///         None => "Welcome, stranger".to_owned(),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct MaybeUser<U>(pub Option<U>);

async fn require<U: User>(parts: &Parts, fresh: bool) -> Result<U, LoginRejection> {
    let context = LoginContext::<U>::from_extensions(&parts.extensions)?;
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

impl<S: Send + Sync, U: User> FromRequestParts<S> for MaybeUser<U> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let context = LoginContext::<U>::from_extensions(&parts.extensions)?;
        context.current_user().await.map(MaybeUser)
    }
}

impl<S: Send + Sync, U: User> OptionalFromRequestParts<S> for CurrentUser<U> {
    type Rejection = LoginRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let MaybeUser(user) =
            <MaybeUser<U> as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        Ok(user.map(CurrentUser))
    }
}
