//! The `Session` layer: a session kept in a signed cookie, read lazily and
//! written back only when it changed.

use cookie::SameSite;
use http::header::VARY;
use http::{HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

use crate::cookies::{self, ConfigError, CookieAttributes, Lookup};
use crate::key::KeyRing;
use crate::token::{self, Claims};

/// Session claims latch keeps for itself. Apps may not set them, nor any
/// other name that starts with `_`.
pub(crate) const USER_ID: &str = "_user_id";
pub(crate) const FRESH: &str = "_fresh";
pub(crate) const AUTH: &str = "_auth";
pub(crate) const LOGIN_AT: &str = "_login_at";
/// Standard JWT claims, set by latch on every token.
const EXP: &str = "exp";
const IAT: &str = "iat";

/// The session layer: put it on the router, outside the [`Login`](crate::Login) layer.
///
/// It reads the session cookie (a signed HS256 token) when a handler or
/// latch itself first asks for the session, never before, and writes the
/// cookie back only when the session changed, was renewed, or must be
/// deleted. A cookie that is missing, tampered with, expired, duplicated or
/// unreadable is an empty session, never an error response.
///
/// Defaults: cookie `session`, `Path=/`, `HttpOnly`, `SameSite=Lax`,
/// `Secure`, no `Max-Age` (it ends when the browser closes); an idle timeout
/// of 1 day renewed by activity (the cookie is re-issued at most once a
/// minute), and an absolute timeout of 14 days from the password login.
///
/// ```
/// use axum::{routing::get, Router};
/// use latch::{Session, SessionData, SecretKey};
///
/// async fn visits(session: SessionData) -> String {
///     let n: u32 = session.get("visits").unwrap_or(0) + 1;
///     session.insert("visits", n).expect("a number always serializes");
///     format!("visit number {n}")
/// }
///
/// let key = SecretKey::new("an example key, at least thirty-two bytes")?;
/// let app: Router = Router::new()
///     .route("/", get(visits))
///     .layer(Session::new(key));
/// # Ok::<(), latch::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
}

#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    pub keys: KeyRing,
    /// The session cookie's name as sent, with the `__Host-` prefix if on.
    pub cookie_name: String,
    /// The remember-me cookie's name as sent.
    pub remember_cookie: String,
    /// The session cookie's name as configured, without a prefix.
    base_name: String,
    host_prefix: bool,
    pub attributes: CookieAttributes,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub renew_after: Duration,
}

impl Session {
    /// A session layer that signs with `keys` (a [`SecretKey`](crate::SecretKey)
    /// or a [`KeyRing`]).
    pub fn new(keys: impl Into<KeyRing>) -> Self {
        Self {
            config: Arc::new(SessionConfig {
                keys: keys.into(),
                cookie_name: "session".to_owned(),
                remember_cookie: crate::login::REMEMBER_COOKIE.to_owned(),
                base_name: "session".to_owned(),
                host_prefix: false,
                attributes: CookieAttributes::default(),
                idle_timeout: Duration::from_secs(24 * 60 * 60),
                absolute_timeout: Duration::from_secs(14 * 24 * 60 * 60),
                renew_after: Duration::from_secs(60),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut SessionConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Whether cookies carry `Secure` (default `true`). Turn it off only for
    /// development over plain HTTP: browsers do not send `Secure` cookies
    /// over `http://` except to `localhost`. Turning it off also turns off
    /// the [`__Host-` prefix](Self::host_prefix), which needs it (with a
    /// warning in the log).
    pub fn secure(self, secure: bool) -> Self {
        self.edit(|c| {
            c.attributes.secure = secure;
            if !secure && c.host_prefix {
                tracing::warn!(target: "latch", "Session::secure(false) turns off the __Host- cookie prefix, which needs Secure");
                c.host_prefix = false;
                c.name_cookies();
            }
        })
    }

    /// Names the cookies with the `__Host-` prefix (`__Host-session`,
    /// `__Host-_remember`). Browsers then accept them only with `Secure`,
    /// `Path=/` and no `Domain`, so a subdomain or a plain-HTTP page of the
    /// same site cannot plant or overwrite them.
    ///
    /// Fails if `Secure` is off, the path is not `/` or a domain is set; and
    /// afterwards, [`path`](Self::path) and [`domain`](Self::domain) refuse
    /// what the prefix forbids.
    ///
    /// ```
    /// use latch::{SecretKey, Session};
    ///
    /// let session = Session::new(SecretKey::generate()?).host_prefix()?;
    /// assert!(Session::new(SecretKey::generate()?).domain("example.com")?.host_prefix().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn host_prefix(self) -> Result<Self, ConfigError> {
        let a = &self.config.attributes;
        if !a.secure {
            return Err(ConfigError::HostPrefix("Secure is off"));
        }
        if a.path != "/" {
            return Err(ConfigError::HostPrefix("the path is not `/`"));
        }
        if a.domain.is_some() {
            return Err(ConfigError::HostPrefix("a domain is set"));
        }
        Ok(self.edit(|c| {
            c.host_prefix = true;
            c.name_cookies();
        }))
    }

    /// The `SameSite` attribute of the cookies (default `Lax`).
    pub fn same_site(self, same_site: SameSite) -> Self {
        self.edit(|c| c.attributes.same_site = same_site)
    }

    /// The session cookie's name (default `session`, as in Microdot).
    pub fn cookie_name(self, name: &str) -> Result<Self, ConfigError> {
        cookies::check_name(name)?;
        Ok(self.edit(|c| {
            c.base_name = name.to_owned();
            c.name_cookies();
        }))
    }

    /// The cookies' `Path` (default `/`).
    pub fn path(self, path: &str) -> Result<Self, ConfigError> {
        cookies::check_path(path)?;
        if self.config.host_prefix && path != "/" {
            return Err(ConfigError::HostPrefix("the path is not `/`"));
        }
        Ok(self.edit(|c| c.attributes.path = path.to_owned()))
    }

    /// The cookies' `Domain` (default none: the cookie goes to this host only).
    pub fn domain(self, domain: &str) -> Result<Self, ConfigError> {
        cookies::check_domain(domain)?;
        if self.config.host_prefix {
            return Err(ConfigError::HostPrefix("a domain is set"));
        }
        Ok(self.edit(|c| c.attributes.domain = Some(domain.to_owned())))
    }

    /// How long a session lasts without being used (default 1 day). Each use
    /// pushes the end back; the cookie is re-issued at most once a minute.
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.edit(|c| c.idle_timeout = timeout)
    }

    /// How long a login lasts at most, counted from the password login,
    /// whatever the activity (default 14 days).
    pub fn absolute_timeout(self, timeout: Duration) -> Self {
        self.edit(|c| c.absolute_timeout = timeout)
    }
}

impl SessionConfig {
    /// Sets the names the cookies are sent under.
    fn name_cookies(&mut self) {
        let prefix = if self.host_prefix { "__Host-" } else { "" };
        self.cookie_name = format!("{prefix}{}", self.base_name);
        self.remember_cookie = format!("{prefix}{}", crate::login::REMEMBER_COOKIE);
    }
}

impl<S> Layer<S> for Session {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by the [`Session`] layer.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<SessionConfig>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SessionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let cookie = cookies::find(request.headers(), &self.config.cookie_name);
        let handle = SessionHandle::new(self.config.clone(), cookie);
        request.extensions_mut().insert(handle.clone());
        SessionFuture {
            inner: self.inner.call(request),
            handle: Some(handle),
        }
    }
}

pin_project! {
    /// The response future of [`SessionService`].
    pub struct SessionFuture<F> {
        #[pin]
        inner: F,
        handle: Option<SessionHandle>,
    }
}

impl<F, ResBody, E> Future for SessionFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(handle) = this.handle.take() {
            handle.write_to(response.headers_mut());
        }
        Poll::Ready(Ok(response))
    }
}

/// One request's session, shared by the layer, latch's extractors and the
/// app's handlers through the request's extensions.
#[derive(Clone)]
pub(crate) struct SessionHandle {
    shared: Arc<Shared>,
}

struct Shared {
    config: Arc<SessionConfig>,
    state: Mutex<State>,
}

struct State {
    /// The cookie as found, until it is decoded.
    cookie: Option<Lookup>,
    /// The session's claims, without `exp` and `iat`.
    claims: Claims,
    /// The request carried a session cookie, good or bad.
    had_cookie: bool,
    /// The claims changed: the cookie must be written (or deleted).
    changed: bool,
    /// The cookie must be re-issued even if nothing changed (renewal, old key).
    renew: bool,
    /// Something looked at the session: the response depends on the cookie.
    read: bool,
}

/// What a session says about who is logged in.
pub(crate) struct LoginClaims {
    pub user_id: Value,
    pub auth: Option<String>,
    pub fresh: bool,
    /// When the user logged in (seconds since the Unix epoch), if recorded.
    pub login_at: Option<f64>,
}

impl SessionHandle {
    fn new(config: Arc<SessionConfig>, cookie: Lookup) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State {
                    cookie: Some(cookie),
                    claims: Claims::new(),
                    had_cookie: false,
                    changed: false,
                    renew: false,
                    read: false,
                }),
            }),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }

    /// The decoded session, locked.
    pub fn state(&self) -> StateGuard<'_> {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(cookie) = state.cookie.take() {
            state.load(&self.shared.config, cookie);
        }
        state.read = true;
        StateGuard(state)
    }

    /// Who the session says is logged in, if anyone.
    pub fn login(&self) -> Option<LoginClaims> {
        let state = self.state();
        let user_id = state.0.claims.get(USER_ID)?.clone();
        if user_id.is_null() {
            return None;
        }
        // A `_fresh` of another type did not come from latch or Microdot.
        let fresh = match state.0.claims.get(FRESH) {
            None => false,
            Some(fresh) => fresh.as_bool()?,
        };
        let auth = state.0.claims.get(AUTH).and_then(Value::as_str);
        let login_at = state.0.claims.get(LOGIN_AT).and_then(Value::as_f64);
        Some(LoginClaims {
            user_id,
            auth: auth.map(str::to_owned),
            fresh,
            login_at,
        })
    }

    /// Records a login in the session.
    pub fn set_login(&self, user_id: Value, auth: String, fresh: bool) {
        let mut state = self.state();
        add_login(state.claims_mut(), user_id, auth, fresh);
    }

    /// Whether the session still fits in a cookie with this login in it.
    pub fn login_fits(&self, user_id: &Value, auth: &str) -> bool {
        let mut claims = self.state().claims().clone();
        add_login(&mut claims, user_id.clone(), auth.to_owned(), true);
        self.fits(&claims)
    }

    /// Replaces the fingerprint of the login in the session, keeping the
    /// rest. Returns whether the login is fresh.
    pub fn set_auth(&self, auth: String) -> bool {
        let mut state = self.state();
        let fresh = state
            .claims()
            .get(FRESH)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        state
            .claims_mut()
            .insert(AUTH.to_owned(), Value::String(auth));
        fresh
    }

    /// Removes the login from the session, keeping the app's own data.
    pub fn clear_login(&self) {
        let mut state = self.state();
        let had_login = [USER_ID, FRESH, AUTH, LOGIN_AT]
            .iter()
            .any(|name| state.0.claims.contains_key(*name));
        if had_login {
            let claims = state.claims_mut();
            for name in [USER_ID, FRESH, AUTH, LOGIN_AT] {
                claims.remove(name);
            }
        }
    }

    /// Adds `Vary: Cookie` and the session cookie to a response, as needed.
    fn write_to(&self, headers: &mut HeaderMap) {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.read {
            return;
        }
        add_vary_cookie(headers);
        if !(state.changed || state.renew) {
            return;
        }
        let config = &self.shared.config;
        if state.claims.is_empty() {
            if state.had_cookie {
                cookies::append(headers, config.attributes.delete(&config.cookie_name));
            }
            return;
        }
        let now = token::now();
        let mut claims = state.claims.clone();
        claims.insert(IAT.to_owned(), Value::from(now));
        claims.insert(
            EXP.to_owned(),
            Value::from(now + config.idle_timeout.as_secs()),
        );
        let value = token::encode(&claims, config.keys.current());
        cookies::append(
            headers,
            config.attributes.set(&config.cookie_name, &value, None),
        );
    }
}

/// The locked state of one request's session.
pub(crate) struct StateGuard<'a>(MutexGuard<'a, State>);

impl StateGuard<'_> {
    /// The claims, to read.
    pub fn claims(&self) -> &Claims {
        &self.0.claims
    }

    /// The claims, to change: the cookie will be written back.
    pub fn claims_mut(&mut self) -> &mut Claims {
        self.0.changed = true;
        &mut self.0.claims
    }
}

impl State {
    fn load(&mut self, config: &SessionConfig, cookie: Lookup) {
        let value = match cookie {
            Lookup::Missing => return,
            Lookup::Found(value) => value,
            Lookup::Duplicate => {
                tracing::debug!(target: "latch", reason = "duplicated cookie", "session cookie rejected");
                return;
            }
            Lookup::Unreadable => {
                tracing::debug!(target: "latch", reason = "Cookie header is not text", "session cookie rejected");
                return;
            }
        };
        self.had_cookie = true;
        match verify(config, &value) {
            Ok((claims, renew)) => {
                self.claims = claims;
                self.renew = renew;
            }
            Err(reason) => {
                tracing::debug!(target: "latch", reason = %reason, "session cookie rejected");
                // Delete the bad cookie rather than have it sent again and again.
                self.changed = true;
            }
        }
    }
}

/// Checks a session token: signature, header, expiry, absolute timeout.
/// Returns the claims (without `exp` and `iat`) and whether to re-issue it.
fn verify(config: &SessionConfig, value: &str) -> Result<(Claims, bool), String> {
    let verified = token::decode(value, &config.keys).map_err(|e| e.to_string())?;
    let now = token::now();
    let mut claims = verified.claims;
    token::check_expiry(&claims, now).map_err(|e| e.to_string())?;
    if let Some(login_at) = claims.get(LOGIN_AT) {
        let login_at = login_at.as_f64().ok_or("login time is not a number")?;
        if login_at + config.absolute_timeout.as_secs() as f64 <= now as f64 {
            return Err("login is older than the absolute timeout".to_owned());
        }
    }
    let issued = claims.remove(IAT).and_then(|v| v.as_f64()).unwrap_or(0.0);
    claims.remove(EXP);
    let renew =
        verified.key_index != 0 || (now as f64) - issued >= config.renew_after.as_secs() as f64;
    Ok((claims, renew))
}

/// Adds `Cookie` to the response's `Vary` header, once.
fn add_vary_cookie(headers: &mut HeaderMap) {
    let already = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("cookie") || part.trim() == "*")
        })
    });
    if !already {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
}

/// The largest session cookie latch writes (`name=value`), in bytes:
/// browsers keep cookies of about 4 KB at most, and drop larger ones silently.
pub const MAX_COOKIE_LEN: usize = 4000;

impl SessionHandle {
    /// Whether these claims fit in a cookie and, if they hold no login yet,
    /// still would with one added (a user id of up to
    /// [`LOGIN_ROOM`] bytes of JSON): what `SessionData::insert` allows.
    pub fn fits_with_room_for_login(&self, claims: &Claims) -> bool {
        if claims.contains_key(USER_ID) {
            return self.fits(claims);
        }
        let mut with_login = claims.clone();
        let placeholder_id = Value::String("u".repeat(LOGIN_ROOM - 2));
        let placeholder_auth = "a".repeat(22);
        add_login(&mut with_login, placeholder_id, placeholder_auth, true);
        self.fits(&with_login)
    }

    /// Whether the session, with these claims, fits in a cookie. The token
    /// is the fixed header, the base64 of the JSON claims (plus `exp` and
    /// `iat`, at most 40 bytes), and the signature.
    pub fn fits(&self, claims: &Claims) -> bool {
        let json = serde_json::to_vec(claims).map_or(usize::MAX, |json| json.len() + 40);
        let token = 36 + 1 + json.saturating_mul(4).div_ceil(3) + 1 + 43;
        self.shared.config.cookie_name.len() + 1 + token <= MAX_COOKIE_LEN
    }
}

fn add_login(claims: &mut Claims, user_id: Value, auth: String, fresh: bool) {
    claims.insert(USER_ID.to_owned(), user_id);
    claims.insert(FRESH.to_owned(), Value::Bool(fresh));
    claims.insert(AUTH.to_owned(), Value::String(auth));
    claims.insert(LOGIN_AT.to_owned(), Value::from(token::now()));
}

/// The room an anonymous session keeps for a login's user id, in bytes of JSON.
pub(crate) const LOGIN_ROOM: usize = 100;

/// Whether `name` is kept by latch and refused to apps.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with('_') || matches!(name, "exp" | "iat" | "nbf")
}
