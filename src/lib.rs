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
//! A whole app (it is `examples/quickstart` in the repository): a login
//! form that keeps `next`, a password checked off the async threads with
//! the `password-auth` crate, a page for logged-in users, and logout by
//! `POST`.
//!
#![doc = concat!("```rust,no_run\n", include_str!("../examples/quickstart/main.rs"), "```\n")]
//!
//! # What happens on a request
//!
//! 1. [`Session`] reads nothing until an extractor asks: the first one
//!    finds the `session` cookie and verifies the token (signature first,
//!    constant-time; then the header; then `exp` and the absolute timeout);
//!    a bad token is an empty session.
//! 2. [`Login`] finds the user, at most once per request and only when
//!    asked: the login in the session (which must carry its session id),
//!    else the `_remember` cookie (a restored login is not *fresh*); then
//!    the [`UserLoader`]; then the fingerprint of the user's
//!    [`User::auth_hash`], so that changing it ends every other session of
//!    the user.
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
//! # Ending sessions on the server
//!
//! A signed cookie stays valid until it expires, so by default a copy taken
//! before logout keeps working until its timeouts. Add a
//! [`SessionRegistry`](registry::SessionRegistry) with
//! [`Login::sessions`] and logout ends the session on every instance,
//! [`Auth::sessions`] lists where the user is logged in, and
//! [`Auth::end_session`], [`Auth::end_other_sessions`] and
//! [`Auth::end_all_sessions`] end them; requests are still checked in
//! memory, with no store round trip. See [`registry`].
//!
//! # Permissions, API clients, two-step login, events
//!
//! - [`Login::require`] (a route layer) and the [`Allowed`] extractor let
//!   through only users a check allows; a logged-in user it refuses gets
//!   `403 Forbidden` ([`rejection::Forbidden`]), never the login page.
//! - [`Login::request_loader`] logs in API clients from their headers (a
//!   bearer token: [`api::bearer_token`]): never fresh, no cookie; an API
//!   client without a user gets `401` with `WWW-Authenticate`. See [`api`].
//! - [`Auth::begin_two_step`] starts a login pending a second factor,
//!   which [`two_step::PendingLogin`] completes once the app accepts a
//!   code: a pending login is anonymous everywhere. See [`two_step`].
//! - [`Login::on_event`] hears logins, logouts, ended sessions, remember-me
//!   rotations and thefts, and the failed logins the app reports, for an
//!   audit trail, in the background. See [`events`].
//!
//! # Features
//!
//! None is on by default: the session, login, stateless remember-me,
//! cross-origin guard and in-memory throttle need none. Every store is both
//! a remember-me store and a [session registry](registry)'s store.
//!
//! | Feature | Turns on | Pulls in |
//! |---|---|---|
//! | `memory` | [`stores::MemoryStore`], revocable remember-me tokens and a session registry in this process | |
//! | `sqlite` | [`stores::SqliteStore`] | `sqlx` 0.8 (`sqlite`) |
//! | `postgres` | [`stores::PostgresStore`] | `sqlx` 0.8 (`postgres`) |
//! | `redis` | [`stores::RedisStore`] (on one server or Redis Cluster), and the throttle shared through Redis or Redis Cluster ([`throttle::Throttle::redis`], [`throttle::Throttle::redis_cluster`]) | `redis` 1 (`tokio-comp`, `connection-manager`, `cluster-async`, `script`) |
//! | `tokio` | [`remember::RevocableRemember::spawn_purge`] (every store turns it on) | |
//! | `testing` | [`testing`]: the cookies of a login for the app's own tests, made with its real key and settings (for `[dev-dependencies]`) | |
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
//! (remember-me tokens and the store trait), [`registry`] (ending sessions
//! on the server), [`stores`], [`throttle`], [`api`] (logins of API
//! clients), [`two_step`] (a second factor), [`events`] (the audit
//! trail's hook),
//! [`cross_origin`], [`next`] (the rule for `next`), [`clock`] (the time
//! latch reads, and a clock tests move), [`rejection`] (why a request was
//! refused), [`service`] (the layers' service and future types) and, with
//! the `testing` feature, [`testing`] (logged-in requests for the app's
//! own tests).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod adapter;
pub mod api;
mod boxed_error;
pub mod clock;
mod config;
mod cookies;
pub mod cross_origin;
mod crypto;
mod error;
pub mod events;
pub mod guide;
mod login;
pub mod registry;
pub mod remember;
pub mod session;
pub mod stores;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod throttle;

pub use adapter::axum::{Allowed, Auth, CurrentUser, FreshUser, SessionData};
pub use boxed_error::BoxError;
pub use cookies::ConfigError;
pub use cross_origin::CrossOriginGuard;
pub use crypto::{KeyError, KeyRing, SecretKey};
pub use error::AuthError;
pub use login::next;
pub use login::{Login, Permission, User, UserLoader};
pub use remember::Remember;
pub use session::Session;

/// Two-step login: a password checked, a second factor pending.
///
/// [`Auth::begin_two_step`] (instead of [`Auth::login_user`]) checks the
/// password and starts a **pending** login, then sends the browser to the
/// second step's page, keeping `next`. A pending login is not a login:
/// [`CurrentUser`], [`FreshUser`], the route layers and the request loader
/// all treat the browser as anonymous, and the [session
/// registry](crate::registry) does not list it. The second step's handler
/// takes a [`PendingLogin`](two_step::PendingLogin) (its user, its tries
/// left) and calls [`verify`](two_step::PendingLogin::verify) with the
/// app's check of the code; a right code makes a normal, fresh login with
/// the remember-me choice of the password form, heard as
/// [`LoginMethod::SecondFactor`](events::LoginMethod::SecondFactor).
///
/// The limits, set with [`Login::two_step`]:
///
/// - a pending login lasts 5 minutes ([`TwoStep::expires_after`](two_step::TwoStep::expires_after));
/// - it allows 5 codes ([`TwoStep::max_attempts`](two_step::TwoStep::max_attempts)),
///   counted before they are checked, in this instance's memory by its
///   random id, not in the cookie, so a replayed older cookie or a burst of
///   copies gets no new tries; every code attempt is also counted under
///   the user in a throttle (one in memory by default;
///   [`TwoStep::throttle`](two_step::TwoStep::throttle) shares the app's,
///   on Redis for several instances), apart from the password count, so
///   starting over from the password gives no new tries either;
/// - it completes once: a copy of the cookie, or the cookie replayed after
///   the login, is sent back to the login page (on other instances, once
///   they hear of it from the registry's feed, when there is a registry);
/// - a new password (another `auth_hash`) ends it.
///
/// Codes themselves are the app's: TOTP (RFC 6238) with a crate such as
/// `totp-rs`, recovery codes stored as hashes; the demo in `examples/login`
/// has both.
pub mod two_step {
    pub use crate::adapter::axum::{PendingLogin, Verified};
    pub use crate::login::two_step::TwoStep;
}

/// Why a request that needs a login was refused, as responses.
pub mod rejection {
    pub use crate::adapter::axum::{Forbidden, LoginRejection, LoginRequired, MissingLayer};
}

/// The services and response futures of latch's layers: the types a
/// router names when it is wrapped, which apps rarely write out.
pub mod service {
    pub use crate::adapter::axum::{
        CrossOriginGuardFuture, CrossOriginGuardService, LoginFuture, LoginService, RequireLogin,
        RequireLoginFuture, RequireLoginService, SessionFuture, SessionService,
    };
}

/// Entry points for `cargo fuzz` (built only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

/// The README's examples, compiled and run as doctests (one needs the
/// `postgres` store, one the `testing` module).
#[cfg(all(doctest, feature = "postgres", feature = "testing"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
