//! User logins for axum apps: sessions in signed cookies, a login page
//! redirect with a safe `next`, remember-me, fresh-login-only routes, logout,
//! and revocation that needs no server-side session store.
//!
//! latch carries the login extension of Microdot (a small Python web
//! framework) over to Rust, keeping its small API and its cookie format, and
//! closing its security gaps.
//!
//! Coming from another library? The [`guide`] shows the same small app
//! written with [Microdot](guide::from_microdot),
//! [Flask-Login](guide::from_flask_login) or
//! [axum-login](guide::from_axum_login) and with latch, what each call
//! becomes, and what behaves differently.
//!
//! # Wiring
//!
//! Two layers go on the router, [`Login`] inside [`Session`]. axum runs the
//! layer added *last* first, so add them in this order:
//!
//! ```text
//! Router::new()
//!     .route(...)                          // handlers use CurrentUser, Auth, SessionData
//!     .route_layer(login.required())       // optional: a whole group needs a login
//!     .layer(login)                        // 2. who is logged in
//!     .layer(Session::new(key))            // 1. the signed session cookie
//! ```
//!
//! An extractor on a router without these layers answers `500` with a
//! message naming the missing layer (and logs it), so a wiring mistake shows
//! on the first request.
//!
//! # Quickstart
//!
//! ```
//! use axum::{
//!     extract::Form,
//!     response::{IntoResponse, Redirect, Response},
//!     routing::{get, post},
//!     Router,
//! };
//! use axum_latch::{Auth, CurrentUser, FreshUser, Login, Remember, SecretKey, Session, User};
//! use std::convert::Infallible;
//!
//! #[derive(Clone)]
//! struct Account {
//!     id: String,
//!     username: String,
//!     password_hash: String,
//! }
//!
//! impl User for Account {
//!     type Id = String;
//!     fn id(&self) -> String {
//!         self.id.clone()
//!     }
//!     fn auth_hash(&self) -> &[u8] {
//!         self.password_hash.as_bytes()
//!     }
//! }
//!
//! async fn load_user(id: String) -> Result<Option<Account>, Infallible> {
//!     // Look the user up in your database here.
//!     Ok((id == "user001").then(|| Account {
//!         id,
//!         username: "susan".into(),
//!         password_hash: "…".into(),
//!     }))
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Credentials {
//!     username: String,
//!     password: String,
//!     remember_me: Option<String>,
//! }
//!
//! async fn login(auth: Auth<Account>, Form(form): Form<Credentials>) -> Response {
//!     let user = load_user("user001".into()).await.unwrap_or(None);
//!     match user {
//!         // Check form.password against the stored hash here.
//!         Some(user) if form.username == user.username && !form.password.is_empty() => {
//!             let remember = Remember::from(form.remember_me.is_some());
//!             auth.login_user(&user, remember).await.into_response()
//!         }
//!         _ => Redirect::to("/login").into_response(),
//!     }
//! }
//!
//! async fn index(CurrentUser(user): CurrentUser<Account>) -> String {
//!     format!("Hello, {}!", user.username)
//! }
//!
//! async fn fresh(FreshUser(user): FreshUser<Account>) -> String {
//!     format!("Hello, {}! This page needs a fresh login.", user.username)
//! }
//!
//! async fn logout(auth: Auth<Account>) -> Redirect {
//!     auth.logout_user().await;
//!     Redirect::to("/")
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SecretKey::new(std::env::var("SECRET_KEY").unwrap_or_else(|_| "x".repeat(32)))?;
//! let app: Router = Router::new()
//!     .route("/", get(index))
//!     .route("/fresh", get(fresh))
//!     .route("/login", post(login))
//!     .route("/logout", post(logout))
//!     .layer(Login::new(load_user))
//!     .layer(Session::new(key));
//! # Ok(()) }
//! ```
//!
//! # What happens on a request
//!
//! 1. [`Session`] finds the `session` cookie. When something first reads
//!    the session, it verifies the token (signature first, constant-time;
//!    then the header; then `exp`); a bad token is an empty session.
//! 2. [`Login`] finds the user, at most once per request and only when
//!    asked: the user id from the session, else from the `_remember` cookie
//!    (a restored login is not *fresh*); then the [`UserLoader`]; then the
//!    fingerprint of the user's [`User::auth_hash`], so that changing it
//!    ends every other session of the user.
//! 3. [`CurrentUser`] and [`FreshUser`] (or the [`Login::required`] and
//!    [`Login::fresh`] route layers) refuse requests without a (fresh) login:
//!    see [`LoginRequired`].
//! 4. On the way out, the session cookie is written only if it changed or is
//!    due for renewal, and responses that read it get `Vary: Cookie`.
//!
//! Events are logged with `tracing`, target `latch`: logins, logouts,
//! remembered logins, stolen remember cookies (`warn`), and (at `debug`)
//! every rejected cookie with the reason.
//!
//! # Remember-me
//!
//! [`Auth::login_user`] with [`Remember::On`] (30 days) or
//! [`Remember::Days`] sets a `_remember` cookie that logs the user back in
//! after the browser closes; such a login is not *fresh*. Two kinds of token:
//!
//! - [`StatelessRemember`], the default: Microdot's signed token. No server
//!   state; a copy works until it expires or the user's `auth_hash` changes.
//! - [`RevocableRemember`] over a [`RememberStore`]: an opaque
//!   `selector.validator` that rotates on every use, is revoked by logout,
//!   gives away a copied cookie (every remembered login of the user is then
//!   revoked), and lets users list and revoke their remembered devices
//!   ([`Auth::remembered_devices`], [`Auth::forget_device`]). The stores in
//!   [`stores`] are behind cargo features: `memory`, `sqlite`, `postgres`,
//!   `redis`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod cookies;
mod cross_origin;
mod device;
mod error;
mod extract;
mod fingerprint;
pub mod guide;
mod key;
mod login;
mod next;
mod rejection;
mod remember;
mod remember_store;
mod require;
mod revocable;
mod session;
mod session_data;
pub mod stores;
mod throttle;
pub mod token;
mod token_memo;
mod user;
mod user_cache;

pub use auth::Auth;
pub use cookie::SameSite;
pub use cookies::ConfigError;
pub use cross_origin::{
    CrossOriginGuard, CrossOriginGuardFuture, CrossOriginGuardService, OriginError,
};
pub use error::AuthError;
pub use extract::{CurrentUser, FreshUser, MaybeUser};
pub use key::{KeyError, KeyRing, SecretKey, MIN_KEY_LEN};
pub use login::{Login, LoginFuture, LoginService};
pub use next::{is_safe_next, MAX_NEXT_LEN};
pub use rejection::{LoginRejection, LoginRequired, MissingLayer};
pub use remember::{
    Redeemed, Remember, RememberError, RememberGrant, RememberTokens, RememberedDevice,
    StatelessRemember, DEFAULT_REMEMBER_DAYS, MAX_REMEMBER_DAYS,
};
pub use remember_store::{RememberStore, Rotation, StoreError, StoredToken};
pub use require::{RequireLogin, RequireLoginService};
pub use revocable::{Consumed, RevocableRemember, Theft, DEFAULT_GRACE};
pub use session::{Session, SessionFuture, SessionService, MAX_COOKIE_LEN};
pub use session_data::{SessionData, SessionError};
pub use throttle::{LoginAttempt, Throttle, Throttled};
pub use user::{BoxError, User, UserLoader};

/// Entry points for `cargo fuzz` (built only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

/// The README's examples, compiled and run as doctests (one needs the
/// `postgres` store).
#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
