//! Logged-in requests for an app's own tests: the cookies of a login made
//! with the app's real [`Session`] and [`Login`], without the login form.
//!
//! [`TestLogin`] writes a login the way [`Auth::login_user`](crate::Auth::login_user)
//! does: signed with the current key, tied to the fingerprint of the user's
//! [`auth_hash`](User::auth_hash), under a new random session id, recorded
//! in the [session registry](crate::Login::sessions) if the app has one,
//! and with a remember-me token from the app's own
//! [`RememberTokens`](crate::remember::RememberTokens) when asked. What it
//! makes, the app's layers accept, unless a test asks by name for a cookie
//! they refuse ([`TestLogin::expired`], [`TestLogin::stale_auth_hash`]).
//!
//! Build the router from the same [`Session`] and [`Login`] values (or
//! clones of them) that the test hands to [`TestLogin::new`]: the cookies
//! are signed with that session's keys and named as it names them.
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{header, Request, StatusCode};
//! use axum::routing::get;
//! use axum::Router;
//! use axum_latch::testing::TestLogin;
//! use axum_latch::{CurrentUser, Login, SecretKey, Session, User};
//! use tower::ServiceExt; // for `oneshot`
//!
//! #[derive(Clone)]
//! struct Account { id: u64, name: String, password_hash: String }
//!
//! impl User for Account {
//!     type Id = u64;
//!     fn id(&self) -> u64 { self.id }
//!     fn auth_hash(&self) -> &[u8] { self.password_hash.as_bytes() }
//! }
//!
//! async fn load(id: u64) -> Result<Option<Account>, std::convert::Infallible> {
//!     Ok((id == 1).then(|| Account { id, name: "susan".into(), password_hash: "x".into() }))
//! }
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let session = Session::new(SecretKey::generate()?);
//! let login = Login::new(load);
//! let app: Router = Router::new()
//!     .route("/account", get(|CurrentUser(user): CurrentUser<Account>| async move { user.name.clone() }))
//!     .layer(login.clone())
//!     .layer(session.clone());
//!
//! let susan = load(1).await?.expect("susan is there");
//! let cookies = TestLogin::new(&session, &login, &susan).cookies().await?;
//! let request = Request::get("/account")
//!     .header(header::COOKIE, cookies.header())
//!     .body(Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use http::header::HeaderMap;
use http::HeaderValue;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::fingerprint::fingerprint;
use crate::crypto::random;
use crate::login::context::LoginContext;
use crate::login::request::RequestState;
use crate::login::{Login, User};
use crate::registry::{Refused, SessionKey};
use crate::remember::{Remember, RememberError, RememberGrant};
use crate::session::state::{RequestView, SessionState};
use crate::session::Session;

/// A login made for a test, as a browser would hold it after logging in:
/// set it up with the methods below, then take its [`cookies`](Self::cookies).
///
/// By default the login is what a password login just made is: fresh,
/// made now, without remember-me.
///
/// ```
/// # use axum_latch::{Login, SecretKey, Session, User};
/// # #[derive(Clone)] struct Account { id: u64, hash: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
/// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// use axum_latch::testing::TestLogin;
/// use axum_latch::Remember;
/// use std::time::Duration;
///
/// let session = Session::new(SecretKey::generate()?);
/// let login = Login::new(load);
/// let susan = Account { id: 1, hash: "her password hash".into() };
/// // A browser that logged in with "remember me" an hour ago.
/// let cookies = TestLogin::new(&session, &login, &susan)
///     .logged_in_ago(Duration::from_secs(3600))
///     .remember(Remember::On)
///     .cookies()
///     .await?;
/// assert!(cookies.remember().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a TestLogin makes nothing until its `cookies` are asked for"]
pub struct TestLogin<'a, U: User, L> {
    session: &'a Session,
    login: &'a Login<U, L>,
    user: &'a U,
    fresh: bool,
    ago: Duration,
    remember: Remember,
    expired: bool,
    stale_auth_hash: Option<&'a [u8]>,
}

impl<U: User, L> fmt::Debug for TestLogin<'_, U, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestLogin")
            .field("user_id", &self.user.id())
            .field("fresh", &self.fresh)
            .field("logged_in_ago", &self.ago)
            .field("remember", &self.remember)
            .field("expired", &self.expired)
            .field("stale_auth_hash", &self.stale_auth_hash.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a, U: User, L> TestLogin<'a, U, L> {
    /// A login of `user`, made with the app's `session` and `login` layers
    /// (the values the app's router is built from, or clones of them).
    ///
    /// The app's loader must find `user` by its id, as for any login.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// use axum_latch::testing::TestLogin;
    ///
    /// let session = Session::new(SecretKey::generate()?);
    /// let login = Login::new(load);
    /// let susan = Account { id: 1, hash: "her password hash".into() };
    /// let cookies = TestLogin::new(&session, &login, &susan).cookies().await?;
    /// assert!(cookies.to_string().starts_with("session="));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(session: &'a Session, login: &'a Login<U, L>, user: &'a U) -> Self {
        Self {
            session,
            login,
            user,
            fresh: true,
            ago: Duration::ZERO,
            remember: Remember::Off,
            expired: false,
            stale_auth_hash: None,
        }
    }

    /// Whether the login is fresh (default `true`, as a password login
    /// makes it). `false` is a login as a remember-me cookie restores it:
    /// [`CurrentUser`](crate::CurrentUser) takes it,
    /// [`FreshUser`](crate::FreshUser) does not. A fresh login older than
    /// [`Login::fresh_within`] is not fresh either.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    ///
    /// // Logged in, but asked for the password again on `FreshUser` routes.
    /// let cookies = TestLogin::new(&session, &login, &susan).fresh(false).cookies().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }

    /// When the user logged in: `ago` before now on the session's
    /// [clock](crate::Session::clock), in whole seconds (default 0). The
    /// session cookie itself is written now, as after a request a moment
    /// ago, so only the timeouts that count from the login apply: the
    /// absolute timeout, [`Login::fresh_within`], and the remember-me
    /// token's days.
    ///
    /// A login older than the session's
    /// [absolute timeout](crate::Session::absolute_timeout) (or, with
    /// [`remember`](Self::remember), than its remember-me token lasts) is
    /// refused by the app; [`cookies`](Self::cookies) answers
    /// [`TestLoginError::TooOld`] (or [`RememberTooOld`](TestLoginError::RememberTooOld))
    /// for it, unless [`expired`](Self::expired)
    /// asks for such a cookie.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// use axum_latch::testing::{TestLogin, TestLoginError};
    /// use std::time::Duration;
    ///
    /// let session = Session::new(SecretKey::generate()?).absolute_timeout(Duration::from_secs(8 * 3600));
    /// let login = Login::new(load).fresh_within(Duration::from_secs(600));
    /// let susan = Account { id: 1, hash: String::new() };
    /// // Logged in, no longer fresh: FreshUser asks for the password again.
    /// let an_hour_ago = TestLogin::new(&session, &login, &susan)
    ///     .logged_in_ago(Duration::from_secs(3600))
    ///     .cookies()
    ///     .await?;
    /// // Past the absolute timeout: the app would refuse it.
    /// let too_old = TestLogin::new(&session, &login, &susan)
    ///     .logged_in_ago(Duration::from_secs(9 * 3600))
    ///     .cookies()
    ///     .await;
    /// assert!(matches!(too_old, Err(TestLoginError::TooOld { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn logged_in_ago(mut self, ago: Duration) -> Self {
        self.ago = ago;
        self
    }

    /// Remember-me, as with [`Auth::login_user`](crate::Auth::login_user)
    /// (default [`Remember::Off`]): the cookies then include a remember-me
    /// token, issued through the app's
    /// [`RememberTokens`](crate::remember::RememberTokens) (with
    /// [`RevocableRemember`](crate::remember::RevocableRemember), it is in
    /// the store) for the login's session id, as if issued when the user
    /// logged in. [`TestCookies::remember_header`] sends it alone, as a
    /// browser does once the session cookie is gone.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    /// use axum_latch::Remember;
    ///
    /// let cookies = TestLogin::new(&session, &login, &susan)
    ///     .remember(Remember::Days(7))
    ///     .cookies()
    ///     .await?;
    /// assert!(cookies.to_string().contains("; _remember="));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remember(mut self, remember: impl Into<Remember>) -> Self {
        self.remember = remember.into();
        self
    }

    /// Makes cookies the app refuses because their time is up, to test what
    /// the app does then. The session cookie expired: it was last written
    /// longer ago than the [idle timeout](crate::Session::idle_timeout)
    /// (and the login is at least that old, or older if
    /// [`logged_in_ago`](Self::logged_in_ago) says so). The login may also
    /// be past the absolute timeout, and a remember-me token past its days.
    ///
    /// A remember-me token still within its days keeps working: a browser
    /// that was away longer than the idle timeout is logged back in by it.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    /// use std::time::Duration;
    ///
    /// // A session cookie the app treats as no login at all.
    /// let expired = TestLogin::new(&session, &login, &susan)
    ///     .logged_in_ago(Duration::from_secs(30 * 24 * 3600))
    ///     .expired()
    ///     .cookies()
    ///     .await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }

    /// Makes cookies tied to `old` instead of the user's current
    /// [`auth_hash`](User::auth_hash): those of a browser that logged in
    /// before the user's password changed (or a "log out everywhere"). The
    /// app refuses them: the request is anonymous, and a remember-me token
    /// made with them is revoked.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// use axum_latch::testing::TestLogin;
    ///
    /// let susan = Account { id: 1, hash: "hash of her new password".into() };
    /// let before_the_change = TestLogin::new(&session, &login, &susan)
    ///     .stale_auth_hash(b"hash of her old password")
    ///     .cookies()
    ///     .await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stale_auth_hash(mut self, old: &'a [u8]) -> Self {
        self.stale_auth_hash = Some(old);
        self
    }

    /// Makes the login: writes the session cookie, issues the remember-me
    /// token if asked for, and records the login in the app's session
    /// registry if it has one (unless the record would have lapsed
    /// already: an [`expired`](Self::expired) login past every timeout).
    ///
    /// # Errors
    ///
    /// [`TestLoginError::TooOld`] and [`TestLoginError::RememberTooOld`]
    /// for a login the app would refuse for its age (see
    /// [`logged_in_ago`](Self::logged_in_ago)), and
    /// [`TestLoginError::BeforeEpoch`] for one older than the session's
    /// clock can say; [`TestLoginError::Ended`] if the app's
    /// session registry has ended the user's sessions made at that time;
    /// [`TestLoginError::UserId`], [`TestLoginError::TooLarge`],
    /// [`TestLoginError::Remember`], [`TestLoginError::Random`] and
    /// [`TestLoginError::InvalidCookie`] where
    /// [`Auth::login_user`](crate::Auth::login_user) would fail too.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    ///
    /// let cookies = TestLogin::new(&session, &login, &susan).cookies().await?;
    /// assert_eq!(cookies.session_id().len(), 22);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn cookies(self) -> Result<TestCookies, TestLoginError> {
        let config = &self.session.config;
        let site = &config.site;
        let now = site.clock.unix_secs();
        let idle = config.idle_timeout.as_secs();
        let absolute = config.absolute_timeout.as_secs();
        let ago = self.ago.as_secs();
        let before = |secs: u64| {
            now.checked_sub(secs).ok_or(TestLoginError::BeforeEpoch {
                ago: Duration::from_secs(secs),
            })
        };
        // When the cookie was last written: now, or for an expired cookie,
        // just over an idle timeout ago.
        let written_at = match self.expired {
            false => now,
            true => before(idle.saturating_add(1))?,
        };
        let login_at = before(ago)?.min(written_at);
        let days = self.remember.days();
        if !self.expired {
            if login_at.saturating_add(absolute) <= now {
                return Err(TestLoginError::TooOld {
                    ago: self.ago,
                    absolute_timeout: config.absolute_timeout,
                });
            }
            if let Some(days) = days {
                if login_at.saturating_add(u64::from(days) * DAY) <= now {
                    return Err(TestLoginError::RememberTooOld {
                        ago: self.ago,
                        days,
                    });
                }
            }
        }

        // The login goes through one request's state, as a real one does.
        let request = Arc::new(RequestState {
            session: SessionState::new(config.clone()),
            login: Default::default(),
        });
        let headers = HeaderMap::new();
        let view = RequestView {
            headers: &headers,
            path: None,
            uri_host: None,
        };
        request.prime(&view, true);
        let context = LoginContext::from_parts(request, self.login.config.clone());
        let session = context.session();

        let user_id = serde_json::to_value(self.user.id()).map_err(TestLoginError::UserId)?;
        let auth_hash = self.stale_auth_hash.unwrap_or(self.user.auth_hash());
        let auth = fingerprint(site.keys.current(), auth_hash);
        if !session.login_fits(&user_id, &auth) {
            return Err(TestLoginError::TooLarge);
        }
        let session_id = random::session_id().ok_or(TestLoginError::Random)?;
        let registry = context.config().registry.as_ref();
        if let Some(registry) = registry {
            let key = random::session_key(&session_id).map(SessionKey);
            if let Some(Refused::Ended(_)) =
                registry.refusal(key, &user_id, None, Some(login_at), now)
            {
                return Err(TestLoginError::Ended);
            }
        }
        let remember = match days {
            Some(days) => {
                let grant = RememberGrant {
                    keys: &site.keys,
                    user_id: &user_id,
                    fingerprint: &auth,
                    days,
                    now: login_at,
                    user_agent: context.user_agent(),
                    session_id: Some(&session_id),
                };
                let token = context.config().remember.issue(grant).await;
                Some(token.map_err(TestLoginError::Remember)?)
            }
            None => None,
        };
        let user_json = user_id.to_string();
        session.set_login_at(user_id, auth, session_id.clone(), self.fresh, login_at);
        let value = session.token_at(written_at);

        let mut text = format!("{}={value}", site.cookie_name);
        if let Some(token) = &remember {
            text = format!("{text}; {}={token}", site.remember_cookie);
        }
        let header =
            HeaderValue::try_from(text.as_str()).map_err(|_| TestLoginError::InvalidCookie)?;
        let remember_header = match &remember {
            Some(token) => Some(
                HeaderValue::try_from(format!("{}={token}", site.remember_cookie))
                    .map_err(|_| TestLoginError::InvalidCookie)?,
            ),
            None => None,
        };

        if let Some(registry) = registry {
            let mut record = context.session_record(session_id.clone(), user_json, days);
            // The record is made now; this login was made `ago` before.
            record.expires_at = record.expires_at.saturating_sub(now - login_at);
            record.created_at = login_at;
            record.last_active_at = written_at;
            if record.expires_at > now {
                registry.record(record).await;
            }
        }
        Ok(TestCookies {
            text,
            header,
            remember_header,
            session: value,
            remember,
            session_id,
        })
    }
}

/// Seconds in a day.
const DAY: u64 = 24 * 60 * 60;

/// The cookies of a [`TestLogin`]: what a browser sends after that login.
///
/// Send [`header`](Self::header) as a request's `Cookie` header (its
/// [`Display`](fmt::Display) is the same text, for HTTP clients that take
/// strings):
///
/// ```
/// # use axum_latch::{Login, SecretKey, Session, User};
/// # #[derive(Clone)] struct Account { id: u64, hash: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
/// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
/// # tokio::runtime::Runtime::new()?.block_on(async {
/// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
/// # let susan = Account { id: 1, hash: String::new() };
/// use axum::body::Body;
/// use axum::http::{header, Request};
/// use axum_latch::testing::TestLogin;
///
/// let cookies = TestLogin::new(&session, &login, &susan).cookies().await?;
/// let request = Request::get("/account")
///     .header(header::COOKIE, cookies.header())
///     .body(Body::empty())?;
/// // With reqwest: client.get(url).header("cookie", cookies.to_string())
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TestCookies {
    text: String,
    header: HeaderValue,
    remember_header: Option<HeaderValue>,
    session: String,
    remember: Option<String>,
    session_id: String,
}

impl TestCookies {
    /// The `Cookie` header with both cookies, under the names the app's
    /// [`Session`] gives them: `session=...; _remember=...` by default,
    /// with the [`__Host-` prefix](crate::Session::host_prefix) or another
    /// [name](crate::Session::cookie_name) when the app sets one.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    ///
    /// let session = Session::new(SecretKey::generate()?).host_prefix()?;
    /// let login = Login::new(load);
    /// let cookies = TestLogin::new(&session, &login, &susan).cookies().await?;
    /// assert!(cookies.header().to_str()?.starts_with("__Host-session="));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn header(&self) -> HeaderValue {
        self.header.clone()
    }

    /// The `Cookie` header of the same browser after it was closed and
    /// opened again: only the remember-me cookie, which logs it back in.
    /// `None` without [remember-me](TestLogin::remember).
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    /// use axum_latch::Remember;
    ///
    /// let cookies = TestLogin::new(&session, &login, &susan).remember(Remember::On).cookies().await?;
    /// let reopened = cookies.remember_header().expect("remembered");
    /// assert!(reopened.to_str()?.starts_with("_remember="));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remember_header(&self) -> Option<HeaderValue> {
        self.remember_header.clone()
    }

    /// The session cookie's value: the signed token.
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    ///
    /// let cookies = TestLogin::new(&session, &login, &susan).cookies().await?;
    /// assert_eq!(cookies.session().split('.').count(), 3); // a JWT
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The remember-me cookie's value, if the login has
    /// [one](TestLogin::remember).
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    ///
    /// let cookies = TestLogin::new(&session, &login, &susan).cookies().await?;
    /// assert_eq!(cookies.remember(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remember(&self) -> Option<&str> {
        self.remember.as_deref()
    }

    /// The login's session id: what [`Auth::session_id`](crate::Auth::session_id)
    /// reads in the app, and what the session registry lists it under (to
    /// end it with [`SessionRegistry::end_session`](crate::registry::SessionRegistry::end_session)).
    ///
    /// ```
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// # let (session, login) = (Session::new(SecretKey::generate()?), Login::new(load));
    /// # let susan = Account { id: 1, hash: String::new() };
    /// use axum_latch::testing::TestLogin;
    ///
    /// let first = TestLogin::new(&session, &login, &susan).cookies().await?;
    /// let second = TestLogin::new(&session, &login, &susan).cookies().await?;
    /// assert_ne!(first.session_id(), second.session_id()); // a new id for every login
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
}

impl fmt::Display for TestCookies {
    /// The text of [`header`](Self::header).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why [`TestLogin::cookies`] made no login.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestLoginError {
    /// The login is as old as the session's absolute timeout, or older:
    /// the app would refuse it.
    #[error(
        "a login made {ago:?} ago is past the session's absolute timeout of {absolute_timeout:?}, \
         so the app would refuse it: make it more recent, or call .expired() to get such a cookie on purpose"
    )]
    TooOld {
        /// What [`TestLogin::logged_in_ago`] asked for.
        ago: Duration,
        /// The session's [absolute timeout](crate::Session::absolute_timeout).
        absolute_timeout: Duration,
    },
    /// The login's remember-me token would have expired by now: the app
    /// would refuse it.
    #[error(
        "a remember-me token made {ago:?} ago, for {days} days, has expired, so the app would refuse it: \
         make the login more recent, or call .expired() to get such a cookie on purpose"
    )]
    RememberTooOld {
        /// What [`TestLogin::logged_in_ago`] asked for.
        ago: Duration,
        /// How many days the token is for.
        days: u32,
    },
    /// The session's clock reads less than that long since the Unix epoch
    /// (a [manual clock](crate::clock::Clock::manual) set near it, say).
    #[error("a login made {ago:?} ago would be before the Unix epoch on the session's clock")]
    BeforeEpoch {
        /// How long ago the login (or the expired cookie) would be made.
        ago: Duration,
    },
    /// The app's session registry has ended the user's sessions made at the
    /// login's time (`end_all`, `end_before`, "log out everywhere"), so
    /// the app would refuse it.
    #[error(
        "the session registry has ended the user's sessions made at or before this login's time, \
         so the app would refuse it: make the login later than the ending"
    )]
    Ended,
    /// The user's id cannot be written as JSON.
    #[error("the user's id cannot be written as JSON: {0}")]
    UserId(#[source] serde_json::Error),
    /// The user's id is too large for a session cookie.
    #[error("the user's id is too large to fit in a session cookie")]
    TooLarge,
    /// The remember-me tokens failed to issue a token (their store failed).
    #[error("the remember-me token could not be issued: {0}")]
    Remember(#[source] RememberError),
    /// The operating system's random source failed to make a session id.
    #[error("no session id could be made: the operating system's random source failed")]
    Random,
    /// The remember-me tokens made a token that cannot go in a `Cookie` header.
    #[error("the remember-me token has characters that cannot go in a Cookie header")]
    InvalidCookie,
}
