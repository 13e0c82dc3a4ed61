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
//!    see [`LoginRequired`](rejection::LoginRequired).
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
//! - [`StatelessRemember`](remember::StatelessRemember), the default: Microdot's signed token. No server
//!   state; a copy works until it expires or the user's `auth_hash` changes.
//! - [`RevocableRemember`](remember::RevocableRemember) over a
//!   [`RememberStore`](remember::RememberStore): an opaque
//!   `selector.validator` that rotates on every use, is revoked by logout,
//!   gives away a copied cookie (every remembered login of the user is then
//!   revoked), and lets users list and revoke their remembered devices
//!   ([`Auth::remembered_devices`], [`Auth::forget_device`]). The stores in
//!   [`stores`] are behind cargo features (below).
//!
//! # Features
//!
//! None is on by default: the session, login, stateless remember-me,
//! cross-origin guard and in-memory throttle need none.
//!
//! | Feature | Turns on | Pulls in |
//! |---|---|---|
//! | `memory` | [`stores::MemoryStore`], revocable remember-me tokens in this process | `tokio` |
//! | `sqlite` | [`stores::SqliteStore`] | `sqlx` 0.8 (`sqlite`), `tokio` |
//! | `postgres` | [`stores::PostgresStore`] | `sqlx` 0.8 (`postgres`), `tokio` |
//! | `redis` | [`stores::RedisStore`], and the throttle shared through Redis ([`throttle::Throttle::redis`]) | `redis` 1 (`tokio-comp`, `connection-manager`, `script`), `tokio` |
//! | `tokio` | [`remember::RevocableRemember::spawn_purge`] (every store turns it on) | `tokio` |
//!
//! ```toml
//! [dependencies]
//! axum-latch = { version = "0.1", features = ["postgres"] }
//! ```
//!
//! # Where things are
//!
//! The crate root holds what a typical app names. The rest lives with its
//! idea: [`session`] (the session layer's settings), [`remember`]
//! (remember-me tokens and the store trait), [`stores`], [`throttle`],
//! [`cross_origin`], [`next`] (the rule for `next`), [`clock`] (the time
//! latch reads, and a clock tests move), [`rejection`] (why a request was
//! refused) and [`service`] (the layers' service and future types).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod adapter;
mod boxed_error;
pub mod clock;
mod config;
mod cookies;
pub mod cross_origin;
mod crypto;
mod error;
pub mod guide;
mod login;
pub mod remember;
pub mod session;
pub mod stores;
pub mod throttle;

pub use adapter::axum::{Auth, CurrentUser, FreshUser, SessionData};
pub use boxed_error::BoxError;
pub use cookies::ConfigError;
pub use cross_origin::CrossOriginGuard;
pub use crypto::{KeyError, KeyRing, SecretKey};
pub use error::AuthError;
pub use login::next;
pub use login::{Login, User, UserLoader};
pub use remember::Remember;
pub use session::Session;

/// Why a request that needs a login was refused, as responses.
pub mod rejection {
    pub use crate::adapter::axum::{LoginRejection, LoginRequired, MissingLayer};
}

/// The services and response futures of latch's layers: the types a
/// router names when it is wrapped, which apps rarely write out.
pub mod service {
    pub use crate::adapter::axum::{
        CrossOriginGuardFuture, CrossOriginGuardService, LoginFuture, LoginService, RequireLogin,
        RequireLoginService, SessionFuture, SessionService,
    };
}

/// Entry points for `cargo fuzz` (built only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

/// The README's examples, compiled and run as doctests (one needs the
/// `postgres` store).
#[cfg(all(doctest, feature = "postgres"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
