//! The `Login` layer: who is logged in, found lazily and at most once per
//! request, from the session or else from the remember-me cookie.

use futures_util::lock::Mutex as AsyncMutex;
use http::header::USER_AGENT;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tower_layer::Layer;
use tower_service::Service;

use crate::cookies::{self, ConfigError, Lookup};
use crate::fingerprint;
use crate::next::is_safe_next;
use crate::rejection::{LoginRejection, MissingLayer};
use crate::remember::{RememberTokens, StatelessRemember};
use crate::require::RequireLogin;
use crate::session::{LoginClaims, SessionHandle};
use crate::token;
use crate::user::{DynLoader, User, UserLoader};
use crate::user_cache::UserCache;

/// The remember-me cookie's name, as in Microdot (before any prefix).
pub(crate) const REMEMBER_COOKIE: &str = "_remember";

/// How much of a `User-Agent` latch keeps, in bytes, for device names.
const MAX_USER_AGENT: usize = 256;

/// The login layer: put it on the router inside the [`Session`](crate::Session) layer.
///
/// It makes the logged-in user available to the [`CurrentUser`](crate::CurrentUser),
/// [`FreshUser`](crate::FreshUser), [`MaybeUser`](crate::MaybeUser) and
/// [`Auth`](crate::Auth) extractors and to the [`required`](Self::required)
/// and [`fresh`](Self::fresh) route layers. Nothing is loaded until one of
/// them asks, and then the user is loaded once for the whole request.
///
/// Layer order: axum runs the layer added last first, so add `Login`, then
/// `Session`:
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_latch::{CurrentUser, Login, SecretKey, Session, User};
/// use std::convert::Infallible;
///
/// #[derive(Clone)]
/// struct Account { id: u64, name: String, hash: String }
///
/// impl User for Account {
///     type Id = u64;
///     fn id(&self) -> u64 { self.id }
///     fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() }
/// }
///
/// async fn load(id: u64) -> Result<Option<Account>, Infallible> {
///     Ok(Some(Account { id, name: format!("user{id}"), hash: String::new() }))
/// }
///
/// async fn index(CurrentUser(user): CurrentUser<Account>) -> String {
///     format!("Hello, {}!", user.name)
/// }
///
/// let login = Login::new(load);
/// let app: Router = Router::new()
///     .route("/", get(index))
///     .layer(login)                                   // inner: who is logged in
///     .layer(Session::new(SecretKey::generate()?));   // outer: the cookie
/// # Ok::<(), axum_latch::KeyError>(())
/// ```
pub struct Login<U: User> {
    config: Arc<LoginConfig<U>>,
}

pub(crate) struct LoginConfig<U: User> {
    pub loader: Arc<dyn DynLoader<U>>,
    pub login_url: String,
    pub default_redirect: String,
    pub remember: Arc<dyn RememberTokens>,
    pub fresh_within: Option<Duration>,
    pub cache: Option<Arc<UserCache<U>>>,
}

impl<U: User> Clone for Login<U> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<U: User> Clone for LoginConfig<U> {
    fn clone(&self) -> Self {
        Self {
            loader: self.loader.clone(),
            login_url: self.login_url.clone(),
            default_redirect: self.default_redirect.clone(),
            remember: self.remember.clone(),
            fresh_within: self.fresh_within,
            cache: self.cache.clone(),
        }
    }
}

impl<U: User> std::fmt::Debug for Login<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("login_url", &self.config.login_url)
            .field("default_redirect", &self.config.default_redirect)
            .finish_non_exhaustive()
    }
}

impl<U: User> Login<U> {
    /// A login layer that finds users with `loader`, with the login page at
    /// `/login`, `/` as the page to go to after a login without `next`, and
    /// stateless remember-me tokens.
    pub fn new(loader: impl UserLoader<U>) -> Self {
        Self {
            config: Arc::new(LoginConfig {
                loader: Arc::new(loader),
                login_url: "/login".to_owned(),
                default_redirect: "/".to_owned(),
                remember: Arc::new(StatelessRemember),
                fresh_within: None,
                cache: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut LoginConfig<U>)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The login page that anonymous requests are sent to (default `/login`).
    /// It must be a path on this site; a query (`/login?lang=en`) is kept.
    pub fn login_url(self, url: &str) -> Result<Self, ConfigError> {
        check_local(url)?;
        Ok(self.edit(|c| c.login_url = url.to_owned()))
    }

    /// Where [`Auth::login_user`](crate::Auth::login_user) redirects when the
    /// request has no safe `next` (default `/`). It must be a path on this site.
    pub fn default_redirect(self, url: &str) -> Result<Self, ConfigError> {
        check_local(url)?;
        Ok(self.edit(|c| c.default_redirect = url.to_owned()))
    }

    /// How recent a password login must be to count as fresh (default: any
    /// password login in this browser session). With it, [`FreshUser`](crate::FreshUser)
    /// and [`fresh`](Self::fresh) send users who logged in longer ago than
    /// `window` to log in again, as "sudo mode" does before sensitive pages.
    ///
    /// ```
    /// # use axum_latch::{Login, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use std::time::Duration;
    ///
    /// // Pages behind `FreshUser` need a password typed in the last 10 minutes.
    /// let login = Login::new(load).fresh_within(Duration::from_secs(10 * 60));
    /// ```
    pub fn fresh_within(self, window: Duration) -> Self {
        self.edit(|c| c.fresh_within = Some(window))
    }

    /// Keeps up to `capacity` users for `ttl` after they are loaded, so that
    /// requests do not each call the loader: for loaders that query a
    /// database. Off by default.
    ///
    /// latch drops a user from the cache when they log out and when
    /// [`Auth::update_user`](crate::Auth::update_user) records a new
    /// `auth_hash`, and reloads a cached user whose `auth_hash` does not
    /// match a request's session (a newer login, made after a password
    /// change on another instance, is not refused).
    ///
    /// **The trade-off:** each instance has its own cache, and it does not
    /// hear of changes made elsewhere. A password change, "log out
    /// everywhere", a deleted user, or a changed name made through another
    /// instance (or straight in the database) is seen here only once the
    /// cached copy is `ttl` old: until then this instance still accepts the
    /// user's old sessions and shows the old data. Keep `ttl` as short as
    /// that delay is acceptable (seconds, not minutes), or leave the cache
    /// off when a revocation must take effect at once everywhere.
    ///
    /// ```
    /// # use axum_latch::{Login, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load_from_database(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use std::time::Duration;
    ///
    /// // At most 10,000 users, each reloaded at least every 5 seconds.
    /// let login = Login::new(load_from_database).cache_users(10_000, Duration::from_secs(5));
    /// ```
    pub fn cache_users(self, capacity: usize, ttl: Duration) -> Self {
        self.edit(|c| c.cache = Some(Arc::new(UserCache::new(capacity, ttl))))
    }

    /// Uses other remember-me tokens than the stateless default.
    pub fn remember_tokens(self, tokens: impl RememberTokens) -> Self {
        self.edit(|c| c.remember = Arc::new(tokens))
    }

    /// A route layer that lets only logged-in users through, for a group of
    /// routes. Others get what [`LoginRequired`](crate::LoginRequired) says.
    ///
    /// ```
    /// # use axum::{routing::get, Router};
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// let login = Login::new(load);
    /// let app: Router = Router::new()
    ///     .route("/settings", get(|| async { "settings" }))
    ///     .route("/billing", get(|| async { "billing" }))
    ///     .route_layer(login.required())
    ///     .route("/login", get(|| async { "the form" }))
    ///     .layer(login)
    ///     .layer(Session::new(SecretKey::generate()?));
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn required(&self) -> RequireLogin<U> {
        RequireLogin::new(self.config.login_url.clone(), false)
    }

    /// A route layer that lets only users with a fresh login through: one
    /// made with a password in this browser session, not restored from a
    /// remember-me cookie. Others are sent to log in again.
    pub fn fresh(&self) -> RequireLogin<U> {
        RequireLogin::new(self.config.login_url.clone(), true)
    }
}

fn check_local(url: &str) -> Result<(), ConfigError> {
    if is_safe_next(url) {
        Ok(())
    } else {
        Err(ConfigError::LocalUrl(url.to_owned()))
    }
}

impl<S, U: User> Layer<S> for Login<U> {
    type Service = LoginService<S, U>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by the [`Login`] layer.
pub struct LoginService<S, U: User> {
    inner: S,
    config: Arc<LoginConfig<U>>,
}

impl<S: Clone, U: User> Clone for LoginService<S, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, U, ReqBody, ResBody> Service<Request<ReqBody>> for LoginService<S, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    U: User,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = LoginFuture<S::Future, U>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let context = match request.extensions().get::<SessionHandle>() {
            Some(session) => {
                let context =
                    LoginContext::new(self.config.clone(), session.clone(), request.headers());
                request.extensions_mut().insert(context.clone());
                Some(context)
            }
            None => {
                tracing::error!(target: "latch", "{}", MissingLayer::Session);
                None
            }
        };
        LoginFuture {
            inner: self.inner.call(request),
            context,
        }
    }
}

pin_project! {
    /// The response future of [`LoginService`].
    pub struct LoginFuture<F, U: User> {
        #[pin]
        inner: F,
        context: Option<LoginContext<U>>,
    }
}

impl<F, U, ResBody, E> Future for LoginFuture<F, U>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    U: User,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(context) = this.context.take() {
            if context.inner.remember_duplicated.load(Ordering::Relaxed) {
                let name = &context.session().config().remember_cookie;
                context
                    .session()
                    .delete_strays(response.headers_mut(), name);
            }
            if let Some(cookie) = context.take_remember_cookie() {
                cookies::append(response.headers_mut(), cookie);
            }
        }
        Poll::Ready(Ok(response))
    }
}

/// The user of a request, once found.
#[derive(Clone)]
pub(crate) enum Resolved<U> {
    Anonymous,
    User {
        user: U,
        fresh: bool,
    },
    /// The loader failed; the request cannot be answered for this user.
    Failed,
}

/// How a login's user is checked once loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check<'a> {
    /// The session's `_auth` must be the fingerprint of the user's `auth_hash`.
    Fingerprint,
    /// The remember token's fingerprint must be that of the user's `auth_hash`.
    Claimed(&'a str),
    /// A Microdot token, which has no fingerprint: adopted if it was made
    /// after the user's `auth_hash` last changed (seconds since the epoch;
    /// `None`: the token does not say when it was made).
    Adopt { made_after: Option<f64> },
    /// Not a login latch accepts.
    Refuse,
}

/// Why a loaded user was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepted {
    /// The fingerprint was made with this key of the ring (`0`: the current one).
    Key(usize),
    /// A Microdot login, adopted: it gets a fingerprint under the current key.
    Adopted,
}

/// Whether a Microdot token made after `made_after` may still be adopted for
/// `user`: always if the app does not record when `auth_hash` changed;
/// otherwise only if the token shows it was made after the last change.
fn microdot_token_current<U: User>(user: &U, made_after: Option<f64>) -> bool {
    match user.auth_hash_changed_at() {
        None => true,
        Some(changed) => {
            let changed = seconds(changed);
            let current = made_after.is_some_and(|made| made > changed);
            if !current {
                tracing::debug!(target: "latch", user_id = ?user.id(), "Microdot token rejected: made before the user's auth_hash changed");
            }
            current
        }
    }
}

/// Seconds since the Unix epoch, negative before it.
fn seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Why [`LoginContext::require`] found no user to let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Anonymous,
    NotFresh,
    LoaderFailed,
}

/// One request's login state, in the request's extensions.
pub(crate) struct LoginContext<U: User> {
    inner: Arc<ContextInner<U>>,
}

impl<U: User> Clone for LoginContext<U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct ContextInner<U: User> {
    config: Arc<LoginConfig<U>>,
    session: SessionHandle,
    /// The request's remember cookie, looked for when first needed.
    remember_cookie: OnceLock<Lookup>,
    user_agent: Option<HeaderValue>,
    resolved: AsyncMutex<Option<Resolved<U>>>,
    /// The `Set-Cookie` for the remember cookie, if it changes.
    remember_update: Mutex<Option<HeaderValue>>,
    /// The request carried the remember cookie more than once.
    remember_duplicated: AtomicBool,
}

impl<U: User> LoginContext<U> {
    fn new(config: Arc<LoginConfig<U>>, session: SessionHandle, headers: &http::HeaderMap) -> Self {
        Self {
            inner: Arc::new(ContextInner {
                config,
                session,
                remember_cookie: OnceLock::new(),
                user_agent: headers.get(USER_AGENT).cloned(),
                resolved: AsyncMutex::new(None),
                remember_update: Mutex::new(None),
                remember_duplicated: AtomicBool::new(false),
            }),
        }
    }

    /// The context put in the request by the [`Login`] layer, or which layer is missing.
    pub fn from_extensions(extensions: &http::Extensions) -> Result<Self, MissingLayer> {
        match extensions.get::<Self>() {
            Some(context) => Ok(context.clone()),
            None if extensions.get::<SessionHandle>().is_none() => Err(MissingLayer::Session),
            None => Err(MissingLayer::Login),
        }
    }

    pub fn config(&self) -> &LoginConfig<U> {
        &self.inner.config
    }

    pub fn session(&self) -> &SessionHandle {
        &self.inner.session
    }

    /// The request's user, found on the first call and remembered.
    pub async fn resolve(&self) -> Resolved<U> {
        let mut resolved = self.inner.resolved.lock().await;
        if let Some(found) = &*resolved {
            return found.clone();
        }
        let found = self.find_user().await;
        *resolved = Some(found.clone());
        found
    }

    /// The user, if logged in; an error only when the loader failed.
    pub async fn current_user(&self) -> Result<Option<U>, LoginRejection> {
        match self.resolve().await {
            Resolved::User { user, .. } => Ok(Some(user)),
            Resolved::Anonymous => Ok(None),
            Resolved::Failed => Err(LoginRejection::LoaderFailed),
        }
    }

    /// The user, if logged in (and freshly so, when `fresh` is asked for).
    pub async fn require(&self, fresh: bool) -> Result<U, Refusal> {
        match self.resolve().await {
            Resolved::User {
                user,
                fresh: is_fresh,
            } if is_fresh || !fresh => Ok(user),
            Resolved::User { .. } => Err(Refusal::NotFresh),
            Resolved::Anonymous => Err(Refusal::Anonymous),
            Resolved::Failed => Err(Refusal::LoaderFailed),
        }
    }

    /// Replaces what [`resolve`](Self::resolve) returns, after a login or logout.
    pub async fn set_resolved(&self, found: Resolved<U>) {
        *self.inner.resolved.lock().await = Some(found);
    }

    /// Whether a login made at `login_at` is recent enough to be fresh.
    fn recent(&self, login_at: Option<f64>) -> bool {
        match (self.inner.config.fresh_within, login_at) {
            (None, _) => true,
            (Some(window), Some(at)) => (token::now() as f64) - at <= window.as_secs_f64(),
            (Some(_), None) => false,
        }
    }

    /// Whether logins without latch's fingerprint (Microdot's) may be
    /// adopted now.
    fn adopting(&self) -> bool {
        self.inner
            .session
            .config()
            .microdot_compat
            .is_some_and(|compat| compat.open())
    }

    fn keys(&self) -> &crate::KeyRing {
        &self.inner.session.config().keys
    }

    async fn find_user(&self) -> Resolved<U> {
        match self.inner.session.login() {
            Some(login) => self.check_session_login(login).await,
            None => self.restore_remembered().await,
        }
    }

    /// Checks the session's login against the user it names.
    async fn check_session_login(&self, login: LoginClaims) -> Resolved<U> {
        let keys = self.keys();
        let check = match (&login.auth, login.login_at) {
            (Some(_), Some(_)) => Check::Fingerprint,
            (Some(_), None) => {
                // latch writes both: without a start, the absolute timeout
                // would never end the login.
                tracing::debug!(target: "latch", "login rejected: no login time");
                Check::Refuse
            }
            (None, _) if self.adopting() => Check::Adopt {
                made_after: login.issued_at,
            },
            (None, _) => {
                tracing::debug!(target: "latch", "login rejected: no fingerprint");
                Check::Refuse
            }
        };
        if check == Check::Refuse {
            self.inner.session.clear_login();
            return Resolved::Anonymous;
        }
        let accept = |user: &U| match check {
            Check::Fingerprint => login
                .matching_key(keys, user.auth_hash())
                .map(Accepted::Key),
            Check::Adopt { made_after } => {
                microdot_token_current(user, made_after).then_some(Accepted::Adopted)
            }
            Check::Claimed(_) | Check::Refuse => None,
        };
        match self.load_checked(login.user_id.clone(), accept).await {
            Ok(Some((user, accepted))) => {
                // Computed only when the session needs a new fingerprint.
                let current = || fingerprint::fingerprint(self.keys().current(), user.auth_hash());
                let fresh = match accepted {
                    Accepted::Adopted => {
                        // A Microdot login: tied to the user's auth_hash
                        // from now on, and never fresh.
                        self.inner.session.adopt_login(current());
                        tracing::info!(target: "latch", user_id = ?user.id(), "Microdot login adopted");
                        false
                    }
                    Accepted::Key(0) => login.fresh && self.recent(login.login_at),
                    Accepted::Key(_) => {
                        // Signed before a key rotation: move to the current key.
                        self.inner.session.set_auth(current());
                        login.fresh && self.recent(login.login_at)
                    }
                };
                if login.remember_confirm {
                    self.confirm_remembered().await;
                }
                Resolved::User { user, fresh }
            }
            Ok(None) => {
                self.inner.session.clear_login();
                Resolved::Anonymous
            }
            Err(()) => Resolved::Failed,
        }
    }

    /// Loads the user with this id and checks it with `accept` (the
    /// fingerprint of its `auth_hash`, say), returning the user and what
    /// `accept` said. `Ok(None)` for a user that is gone or refused; `Err`
    /// when the loader failed (already logged).
    async fn load_checked(
        &self,
        user_id: Value,
        accept: impl Fn(&U) -> Option<Accepted>,
    ) -> Result<Option<(U, Accepted)>, ()> {
        let cache = self.inner.config.cache.as_deref();
        let key = cache.map(|_| UserCache::<U>::key(&user_id));
        let id: U::Id = match serde_json::from_value(user_id) {
            Ok(id) => id,
            Err(error) => {
                tracing::debug!(target: "latch", %error, "login rejected: user id of another type");
                return Ok(None);
            }
        };
        if let (Some(cache), Some(key)) = (cache, &key) {
            if let Some(user) = cache.get(key) {
                if let Some(accepted) = accept(&user) {
                    return Ok(Some((user, accepted)));
                }
                // Perhaps changed since it was cached: ask the loader.
                cache.remove(key);
            }
        }
        let generation = cache.map(UserCache::generation);
        let user = match self.inner.config.loader.load(id.clone()).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                tracing::debug!(target: "latch", user_id = ?id, "login rejected: no such user");
                return Ok(None);
            }
            Err(error) => {
                tracing::error!(target: "latch", user_id = ?id, %error, "user loader failed");
                return Err(());
            }
        };
        if let (Some(cache), Some(key), Some(generation)) = (cache, key, generation) {
            cache.insert(generation, key, user.clone());
        }
        match accept(&user) {
            Some(accepted) => Ok(Some((user, accepted))),
            None => {
                tracing::debug!(target: "latch", user_id = ?id, "login rejected: auth_hash changed");
                Ok(None)
            }
        }
    }

    /// Logs the user in from the remember cookie, if there is a good one.
    async fn restore_remembered(&self) -> Resolved<U> {
        let token = match self.remember_lookup() {
            Lookup::Missing => return Resolved::Anonymous,
            Lookup::Found(token) => token.as_str(),
            Lookup::Unreadable => {
                tracing::debug!(target: "latch", "remember cookie rejected: unreadable");
                return Resolved::Anonymous;
            }
            Lookup::Duplicate => {
                // Which one is latch's cannot be told: delete them all.
                tracing::debug!(target: "latch", "remember cookie rejected: duplicated");
                self.delete_remember_cookie();
                self.inner
                    .remember_duplicated
                    .store(true, Ordering::Relaxed);
                return Resolved::Anonymous;
            }
        };
        let remember = &self.inner.config.remember;
        let redeemed = remember
            .redeem(self.keys(), token, SystemTime::now(), self.user_agent())
            .await;
        let redeemed = match redeemed {
            Ok(Some(redeemed)) => redeemed,
            Ok(None) => {
                self.delete_remember_cookie();
                return Resolved::Anonymous;
            }
            Err(error) => {
                tracing::error!(target: "latch", %error, "remember cookie not checked");
                return Resolved::Anonymous;
            }
        };
        let keys = self.keys();
        let check = match &redeemed.fingerprint {
            Some(claimed) => Check::Claimed(claimed),
            None if self.adopting() => Check::Adopt {
                made_after: redeemed.issued_at.map(seconds),
            },
            None => {
                tracing::debug!(target: "latch", "remember cookie rejected: a Microdot token, not accepted now");
                self.delete_remember_cookie();
                return Resolved::Anonymous;
            }
        };
        let accept = |user: &U| match &check {
            Check::Claimed(claimed) => {
                fingerprint::matching_key(keys, user.auth_hash(), claimed).map(Accepted::Key)
            }
            Check::Adopt { made_after } => {
                microdot_token_current(user, *made_after).then_some(Accepted::Adopted)
            }
            Check::Fingerprint | Check::Refuse => None,
        };
        let (user, accepted) = match self.load_checked(redeemed.user_id.clone(), accept).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                // The user is gone or changed credentials: the token is dead.
                let token = redeemed.replacement.as_deref().unwrap_or(token);
                if let Err(error) = remember.revoke(self.keys(), token).await {
                    tracing::error!(target: "latch", %error, "remember token not revoked");
                }
                self.delete_remember_cookie();
                return Resolved::Anonymous;
            }
            Err(()) => {
                // The token has been rotated: send the browser the new one
                // (without it, it would present the old one again, which
                // then costs a second rotation).
                if let Some(replacement) = &redeemed.replacement {
                    self.set_remember_cookie(replacement, redeemed.days);
                }
                return Resolved::Failed;
            }
        };
        let auth = fingerprint::fingerprint(self.keys().current(), user.auth_hash());
        let mut replacement = redeemed.replacement;
        if accepted != Accepted::Key(0) {
            // Made before a key rotation, or by Microdot: a new token
            // carries the current key's fingerprint.
            replacement = self
                .reissue(token, replacement, &redeemed.user_id, &auth, redeemed.days)
                .await;
        }
        self.inner.session.set_login(redeemed.user_id, auth, false);
        if let (Some(tag), Accepted::Key(0)) = (redeemed.confirmation, accepted) {
            // The browser's next request shows whether it got the new token.
            self.inner.session.set_remember_confirmation(tag);
        }
        if let Some(replacement) = replacement {
            self.set_remember_cookie(&replacement, redeemed.days);
        }
        tracing::info!(target: "latch", user_id = ?user.id(), "login restored from remember cookie");
        Resolved::User { user, fresh: false }
    }

    /// The first request of a session made from a remember-me cookie that
    /// rotated: if it carries the new cookie, the browser has it, and from
    /// now on the cookie it replaced is a copy (see
    /// [`RememberTokens::confirm`]). Asked once; a store that fails leaves
    /// the replaced cookie acceptable until the next rotation.
    async fn confirm_remembered(&self) {
        let Some(tag) = self.inner.session.take_remember_confirmation() else {
            return;
        };
        let Some(token) = self.remember_cookie() else {
            return;
        };
        let remember = &self.inner.config.remember;
        match remember.confirm(token, &tag).await {
            Ok(true) => tracing::debug!(target: "latch", "remember cookie confirmed"),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(target: "latch", %error, "remember cookie not confirmed")
            }
        }
    }

    /// Replaces a remember token made under a previous key with one made
    /// under the current key; on failure, keeps what the browser should have.
    async fn reissue(
        &self,
        token: &str,
        replacement: Option<String>,
        user_id: &Value,
        auth: &str,
        days: u32,
    ) -> Option<String> {
        let remember = &self.inner.config.remember;
        let grant = crate::remember::RememberGrant {
            keys: self.keys(),
            user_id,
            fingerprint: auth,
            days,
            now: token::now(),
            user_agent: self.user_agent(),
        };
        match remember.issue(grant).await {
            Ok(fresh) => {
                let old = replacement.as_deref().unwrap_or(token);
                if let Err(error) = remember.revoke(self.keys(), old).await {
                    tracing::error!(target: "latch", %error, "remember token of an old key not revoked");
                }
                Some(fresh)
            }
            Err(error) => {
                tracing::error!(target: "latch", %error, "remember token not moved to the current key");
                replacement
            }
        }
    }

    /// The request's remember cookie, as found.
    fn remember_lookup(&self) -> &Lookup {
        self.inner.remember_cookie.get_or_init(|| {
            let session = &self.inner.session;
            session.cookie(&session.config().remember_cookie)
        })
    }

    /// Drops the user with this id from the user cache, if there is one.
    pub fn forget_cached_user(&self, user_id: &Value) {
        if let Some(cache) = &self.inner.config.cache {
            cache.remove(&UserCache::<U>::key(user_id));
        }
    }

    /// The remember cookie the request came with, if exactly one.
    pub fn remember_cookie(&self) -> Option<&str> {
        match self.remember_lookup() {
            Lookup::Found(token) => Some(token),
            _ => None,
        }
    }

    /// The request's `User-Agent`, if it is text, cut to its first 256 bytes.
    pub fn user_agent(&self) -> Option<&str> {
        // `to_str` accepts visible ASCII only, so any cut is a char boundary.
        let agent = self.inner.user_agent.as_ref()?.to_str().ok()?;
        Some(&agent[..agent.len().min(MAX_USER_AGENT)])
    }

    pub fn set_remember_cookie(&self, token: &str, days: u32) {
        let attributes = &self.inner.session.config().attributes;
        let max_age = Duration::from_secs(u64::from(days) * 24 * 60 * 60);
        let name = &self.inner.session.config().remember_cookie;
        let cookie = attributes.set(name, token, Some(max_age));
        *self.remember_update() = Some(cookie);
    }

    /// Deletes the remember cookie if the request had one or this response sets one.
    pub fn delete_remember_cookie(&self) {
        let mut update = self.remember_update();
        if update.is_some() || *self.remember_lookup() != Lookup::Missing {
            *update = Some(
                self.inner
                    .session
                    .config()
                    .attributes
                    .delete(&self.inner.session.config().remember_cookie),
            );
        }
    }

    fn remember_update(&self) -> std::sync::MutexGuard<'_, Option<HeaderValue>> {
        self.inner
            .remember_update
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take_remember_cookie(&self) -> Option<HeaderValue> {
        self.remember_update().take()
    }
}
