//! The `Login` layer: who is logged in, found lazily and at most once per
//! request, from the session or else from the remember-me cookie.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use crate::cookies::ConfigError;
use crate::events::{EventHook, Events};
use crate::login::cache::UserCache;
use crate::login::next::is_safe_next;
use crate::login::request_loader::RequestLoader;
use crate::login::two_step::{Ledger, TwoStep};
use crate::login::user::DynLoader;
use crate::registry::SessionRegistry;
use crate::remember::{RememberTokens, StatelessRemember};

/// The login layer: put it on the router inside the [`Session`](crate::Session) layer.
///
/// It makes the logged-in user available to the [`CurrentUser`](crate::CurrentUser),
/// [`FreshUser`](crate::FreshUser) and [`Auth`](crate::Auth) extractors and to the [`required`](Self::required)
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
///
/// One `Login` layer serves a router: a route behind two of them (one
/// inside the other) is a wiring mistake, refused with a `500` that says so
/// ([`MissingLayer::TwoLogins`](crate::rejection::MissingLayer::TwoLogins)),
/// never served by the layer the app did not mean for it.
///
/// The layer's type names its loader, `Login<U, L>`, so that the loader's
/// future is not boxed on every request; a function that takes or returns
/// one is generic over it:
///
/// ```
/// use axum_latch::{Login, User, UserLoader};
/// use std::time::Duration;
/// # #[derive(Clone)] struct Account;
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// fn configured<L: UserLoader<Account>>(login: Login<Account, L>) -> Login<Account, L> {
///     login.fresh_within(Duration::from_secs(600))
/// }
/// ```
pub struct Login<U: User, L> {
    /// The loader, as the layer's service calls it.
    pub(crate) loader: Arc<L>,
    pub(crate) config: Arc<LoginConfig<U>>,
}

pub(crate) struct LoginConfig<U: User> {
    pub loader: Arc<dyn DynLoader<U>>,
    pub login_url: String,
    pub default_redirect: String,
    pub remember: Arc<dyn RememberTokens>,
    pub fresh_within: Option<Duration>,
    pub cache: Option<Arc<UserCache<U>>>,
    pub registry: Option<SessionRegistry>,
    /// Where events go, if the app listens.
    pub events: Option<Arc<Events<U::Id>>>,
    /// Logs in API clients from their headers, when the request has no login.
    pub request_loader: Option<Arc<dyn RequestLoader<U>>>,
    /// The `WWW-Authenticate` of a `401`, with a request loader.
    pub challenge: HeaderValue,
    /// How two-step logins behave.
    pub two_step: TwoStep,
    /// What this instance knows of pending logins (shared by clones).
    pub pending: Arc<Ledger>,
}

impl<U: User, L> Clone for Login<U, L> {
    fn clone(&self) -> Self {
        Self {
            loader: self.loader.clone(),
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
            registry: self.registry.clone(),
            events: self.events.clone(),
            request_loader: self.request_loader.clone(),
            challenge: self.challenge.clone(),
            two_step: self.two_step.clone(),
            pending: self.pending.clone(),
        }
    }
}

impl<U: User, L> std::fmt::Debug for Login<U, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("login_url", &self.config.login_url)
            .field("default_redirect", &self.config.default_redirect)
            .finish_non_exhaustive()
    }
}

impl<U: User, L: UserLoader<U>> Login<U, L> {
    /// A login layer that finds users with `loader`, with the login page at
    /// `/login`, `/` as the page to go to after a login without `next`, and
    /// stateless remember-me tokens.
    pub fn new(loader: L) -> Self {
        let loader = Arc::new(loader);
        Self {
            loader: loader.clone(),
            config: Arc::new(LoginConfig {
                loader,
                login_url: "/login".to_owned(),
                default_redirect: "/".to_owned(),
                remember: Arc::new(StatelessRemember),
                fresh_within: None,
                cache: None,
                registry: None,
                events: None,
                request_loader: None,
                challenge: HeaderValue::from_static("Bearer"),
                two_step: TwoStep::default(),
                pending: Arc::new(Ledger::default()),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut LoginConfig<U>)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The login page that anonymous requests are sent to (default `/login`).
    /// It must be a path on this site; a query (`/login?lang=en`) is kept.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(id: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use axum_latch::Login;
    ///
    /// let login = Login::new(load).login_url("/account/sign-in")?;
    /// assert!(Login::new(load).login_url("https://evil.example/").is_err());
    /// # Ok::<(), axum_latch::ConfigError>(())
    /// ```
    pub fn login_url(self, url: &str) -> Result<Self, ConfigError> {
        check_local(url)?;
        Ok(self.edit(|c| c.login_url = url.to_owned()))
    }

    /// Where [`Auth::login_user`](crate::Auth::login_user) redirects when the
    /// request has no safe `next` (default `/`). It must be a path on this site.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(id: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use axum_latch::Login;
    ///
    /// let login = Login::new(load).default_redirect("/dashboard")?;
    /// # Ok::<(), axum_latch::ConfigError>(())
    /// ```
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
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(id: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use axum_latch::remember::RevocableRemember;
    /// use axum_latch::stores::MemoryStore;
    /// use axum_latch::Login;
    ///
    /// # #[cfg(feature = "memory")] {
    /// let login = Login::new(load).remember_tokens(RevocableRemember::new(MemoryStore::new()));
    /// # }
    /// ```
    pub fn remember_tokens(self, tokens: impl RememberTokens) -> Self {
        self.edit(|c| {
            c.remember = Arc::new(tokens);
            if let Some(registry) = &c.registry {
                registry.link_remember(c.remember.clone());
            }
        })
    }

    /// Records every login in `registry`, and checks every logged-in request
    /// against the sessions it has ended (in memory: no store round trip).
    /// With it, [`Auth::logout_user`](crate::Auth::logout_user) ends the
    /// session on the server, so that a copy of the cookie stops working on
    /// every instance, and [`Auth::sessions`](crate::Auth::sessions) lists
    /// where the user is logged in. See [`registry`](crate::registry).
    ///
    /// Ending a remembered browser's session revokes its remember-me token
    /// too; give the registry the same store as
    /// [`RevocableRemember`](crate::remember::RevocableRemember) (stateless
    /// remember-me tokens are refused through the registry instead).
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(id: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # #[cfg(feature = "memory")]
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::remember::RevocableRemember;
    /// use axum_latch::stores::MemoryStore;
    /// use axum_latch::Login;
    ///
    /// let store = MemoryStore::new();
    /// let login = Login::new(load)
    ///     .remember_tokens(RevocableRemember::new(store.clone()))
    ///     .sessions(SessionRegistry::connect(store).await?);
    /// # Ok::<(), axum_latch::registry::RegistryError>(())
    /// # }).unwrap();
    /// ```
    pub fn sessions(self, registry: SessionRegistry) -> Self {
        self.edit(|c| {
            registry.link_remember(c.remember.clone());
            c.registry = Some(registry);
        })
    }

    /// Calls `hook` with every [`LoginEvent`](crate::events::LoginEvent):
    /// logins, logouts, sessions ended, remember-me tokens rotated or
    /// stolen, fresh logins asked for, and the failed and throttled logins
    /// the app reports. The hook runs in the background and never holds up
    /// or fails a request; see [`events`](crate::events).
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use axum_latch::events::LoginEvent;
    /// use axum_latch::Login;
    ///
    /// let login = Login::new(load).on_event(|event: LoginEvent<u64>| async move {
    ///     println!("{} user={:?} device={:?}", event.kind.name(), event.user_id, event.device);
    /// });
    /// ```
    pub fn on_event(self, hook: impl EventHook<U::Id>) -> Self {
        self.edit(|c| c.events = Some(Arc::new(Events::new(hook))))
    }

    /// Logs in API clients: when a request has no login in its session and
    /// no remember-me cookie, latch asks `loader` for the user its headers
    /// name (`Authorization: Bearer ...`, say; see
    /// [`api::bearer_token`](crate::api::bearer_token)), so that
    /// [`CurrentUser`](crate::CurrentUser) and the route layers work for
    /// API clients too.
    ///
    /// Such a login lasts for its request only: it is never fresh, sets no
    /// cookie, and is not a session of the [registry](crate::registry).
    /// Without a user, an API client gets `401` with `WWW-Authenticate:
    /// Bearer` (see [`challenge`](Self::challenge)), and
    /// `Bearer error="invalid_token"` when it sent an `Authorization`
    /// header that the loader refused. See [`api`](crate::api).
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # async fn account_of_token(_: &str) -> Option<Account> { None }
    /// use axum_latch::api::bearer_token;
    /// use axum_latch::Login;
    /// use http::HeaderMap;
    ///
    /// let login = Login::new(load).request_loader(|headers: HeaderMap| async move {
    ///     let Some(token) = bearer_token(&headers) else {
    ///         return Ok::<_, std::convert::Infallible>(None);
    ///     };
    ///     Ok(account_of_token(token).await)
    /// });
    /// ```
    pub fn request_loader(self, loader: impl RequestLoader<U>) -> Self {
        self.edit(|c| c.request_loader = Some(Arc::new(loader)))
    }

    /// How two-step logins behave (see [`two_step`](crate::two_step)):
    /// where the second step is, how long a pending login lasts, how many
    /// wrong codes it allows, and the throttle that counts them.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use axum_latch::throttle::Throttle;
    /// use axum_latch::two_step::TwoStep;
    /// use axum_latch::Login;
    ///
    /// let throttle = Throttle::in_memory(); // the password form's, too
    /// let login = Login::new(load).two_step(TwoStep::new().throttle(throttle.clone()));
    /// ```
    pub fn two_step(self, two_step: TwoStep) -> Self {
        self.edit(|c| c.two_step = two_step)
    }

    /// The `WWW-Authenticate` header of a `401` to an API client, with a
    /// [request loader](Self::request_loader) (default `Bearer`; a realm,
    /// say: `Bearer realm="example"`). An error if it is not a header value.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use axum_latch::Login;
    ///
    /// let login = Login::new(load).challenge(r#"Bearer realm="example""#)?;
    /// assert!(Login::new(load).challenge("Bearer\n").is_err());
    /// # Ok::<(), axum_latch::ConfigError>(())
    /// ```
    pub fn challenge(self, challenge: &str) -> Result<Self, ConfigError> {
        let value = HeaderValue::from_str(challenge)
            .map_err(|_| ConfigError::Header(challenge.to_owned()))?;
        Ok(self.edit(|c| c.challenge = value))
    }
}

fn check_local(url: &str) -> Result<(), ConfigError> {
    if is_safe_next(url) {
        Ok(())
    } else {
        Err(ConfigError::LocalUrl(url.to_owned()))
    }
}

pub(crate) mod cache;
pub(crate) mod context;
pub mod next;
pub(crate) mod permission;
pub(crate) mod request;
pub(crate) mod request_loader;
pub(crate) mod state;
pub(crate) mod two_step;
pub(crate) mod user;

pub use permission::Permission;
pub use user::{User, UserLoader};
