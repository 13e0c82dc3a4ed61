//! The `Session` layer: a session kept in a signed cookie, read lazily and
//! written back only when it changed.

use axum::extract::OriginalUri;
use cookie::SameSite;
use http::header::{HOST, VARY};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tower_layer::Layer;
use tower_service::Service;

use crate::cookies::{self, ConfigError, CookieAttributes, CookieHeaders, Lookup};
use crate::fingerprint;
use crate::key::KeyRing;
use crate::token::{self, Claims, Time, TokenError};
use crate::token_memo;
use serde::Deserialize;
use std::borrow::Cow;

/// Session claims latch keeps for itself. Apps may not set them, nor any
/// other name that starts with `_`.
pub(crate) const USER_ID: &str = "_user_id";
pub(crate) const FRESH: &str = "_fresh";
pub(crate) const AUTH: &str = "_auth";
pub(crate) const LOGIN_AT: &str = "_login_at";
/// What a token is for: [`SESSION_PURPOSE`] in a session token, `remember`
/// in a stateless remember-me token. Both are signed with the same keys, so
/// each verifier checks it and neither token is accepted as the other.
pub(crate) const PURPOSE: &str = "_purpose";
/// The [`PURPOSE`] of a session token.
pub(crate) const SESSION_PURPOSE: &str = "session";
/// The confirmation tag of a remember-me token rotated in this browser,
/// until the browser shows it holds the new token (its next request with
/// this session carries it).
pub(crate) const REMEMBER_CONFIRM: &str = "_remember_confirm";
/// Every claim of a login, removed together when it ends.
const LOGIN_CLAIMS: [&str; 5] = [USER_ID, FRESH, AUTH, LOGIN_AT, REMEMBER_CONFIRM];
/// Standard JWT claims, set by latch on every token.
const EXP: &str = "exp";
const IAT: &str = "iat";

/// The session layer: put it on the router, outside the [`Login`](crate::Login) layer.
///
/// It reads the session cookie (a signed HS256 token) when a handler or
/// latch itself first asks for the session, never before, and writes the
/// cookie back only when the session changed, was renewed, or must be
/// deleted. A cookie that is missing, tampered with, expired, duplicated or
/// unreadable is an empty session, never an error response. A duplicated
/// cookie (a second `session` planted at another path, say, by a page
/// elsewhere on the site or a sibling subdomain) cannot be told from
/// latch's own, so latch deletes the name at every path the request could
/// have carried it from; [`host_prefix`](Self::host_prefix) keeps such
/// cookies from being planted at all.
///
/// Defaults: cookie `session`, `Path=/`, `HttpOnly`, `SameSite=Lax`,
/// `Secure`, no `Max-Age` (it ends when the browser closes); an idle timeout
/// of 1 day renewed by activity (the cookie is re-issued at most once a
/// minute), and an absolute timeout of 14 days from the password login.
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_latch::{Session, SessionData, SecretKey};
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
/// # Ok::<(), axum_latch::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
}

#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    /// Tells this configuration's entries in the token memo from others'.
    id: u64,
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
    /// Accept Microdot's tokens, which lack latch's claims, until a deadline.
    pub microdot_compat: Option<MicrodotCompat>,
}

/// Microdot interop mode: until when Microdot's own tokens are accepted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MicrodotCompat {
    /// Seconds since the Unix epoch.
    until: u64,
}

impl MicrodotCompat {
    /// Whether Microdot's tokens are still accepted at `now` (seconds).
    pub fn open_at(&self, now: u64) -> bool {
        now < self.until
    }

    /// Whether Microdot's tokens are still accepted.
    pub fn open(&self) -> bool {
        self.open_at(token::now())
    }
}

impl Session {
    /// A session layer that signs with `keys` (a [`SecretKey`](crate::SecretKey)
    /// or a [`KeyRing`]).
    pub fn new(keys: impl Into<KeyRing>) -> Self {
        Self {
            config: Arc::new(SessionConfig {
                id: token_memo::next_config_id(),
                keys: keys.into(),
                cookie_name: "session".to_owned(),
                remember_cookie: crate::login::REMEMBER_COOKIE.to_owned(),
                base_name: "session".to_owned(),
                host_prefix: false,
                attributes: CookieAttributes::default(),
                idle_timeout: Duration::from_secs(24 * 60 * 60),
                absolute_timeout: Duration::from_secs(14 * 24 * 60 * 60),
                renew_after: Duration::from_secs(60),
                microdot_compat: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut SessionConfig)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.id = token_memo::next_config_id();
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
    /// same site cannot plant or overwrite them: the defence against a
    /// planted duplicate that keeps a user logged out, or logs them in as
    /// someone else. Use it whenever the site is served over HTTPS.
    ///
    /// Fails if `Secure` is off, the path is not `/` or a domain is set; and
    /// afterwards, [`path`](Self::path) and [`domain`](Self::domain) refuse
    /// what the prefix forbids.
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
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

    /// Microdot interop mode (off by default), until `until`: a Microdot
    /// app and this one, with the same secret key, share logins both ways
    /// while an app moves from Microdot to latch.
    ///
    /// latch's own tokens already read in Microdot (it ignores the claims it
    /// does not know). This mode makes latch accept Microdot's tokens too,
    /// by their exact shape (a session token with none of latch's claims; a
    /// remember token of exactly `user_id`, `days` and `exp`), and re-issue
    /// them at once as latch tokens:
    ///
    /// - a Microdot login is *adopted*: tied to the user's current
    ///   `auth_hash` from then on, its absolute timeout counted from the
    ///   adoption, and **never fresh** (latch cannot tell when, or whether,
    ///   a password was typed), so [`FreshUser`](crate::FreshUser) asks for
    ///   the password again;
    /// - a Microdot remember cookie logs the user in (not freshly) and is
    ///   replaced by a latch one.
    ///
    /// What the mode gives up: a Microdot token has no fingerprint of the
    /// user's credentials, and a Microdot session token has no expiry and no
    /// time at all. So a *copy* of a Microdot cookie is adopted again each
    /// time it is presented, up to `until`, unless the user record says
    /// when its `auth_hash` last changed
    /// ([`User::auth_hash_changed_at`](crate::User::auth_hash_changed_at)):
    ///
    /// | | without `auth_hash_changed_at` | with it |
    /// |---|---|---|
    /// | Microdot session token, after a password change or "log out everywhere" | adopted until `until` | refused (it cannot show it was made after the change) |
    /// | Microdot remember token made before the change | adopted until `until` | refused |
    /// | Microdot remember token made after the change | adopted until `until` | adopted until `until` |
    /// | any Microdot token after `until` | refused | refused |
    ///
    /// After `until`, only latch's tokens log in: users whose last login
    /// was on Microdot log in again. Pick the end of the migration, weeks
    /// rather than years away. What latch enforces on Microdot tokens
    /// throughout: the signature (HS256 with the key ring), the header,
    /// `exp` where the token has one, and the shape.
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let key = SecretKey::new("the secret_key of the Microdot app, 32+ bytes")?;
    /// let migration_ends = SystemTime::now() + Duration::from_secs(30 * 24 * 60 * 60);
    /// let session = Session::new(key).microdot_compat(migration_ends);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn microdot_compat(self, until: SystemTime) -> Self {
        let until = until
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.edit(|c| c.microdot_compat = Some(MicrodotCompat { until }))
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
        let cookies = CookieHeaders::new(request.headers());
        // Inside a nested router the URI has lost its prefix: the original
        // one says which paths the browser's cookies could have.
        let uri = request
            .extensions()
            .get::<OriginalUri>()
            .map_or(request.uri(), |original| &original.0);
        let path = uri.path_and_query().cloned();
        let host = match uri.host() {
            Some(host) => HeaderValue::from_str(host).ok(),
            None => request.headers().get(HOST).cloned(),
        };
        let handle = SessionHandle::new(self.config.clone(), cookies, path, host);
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
    /// The request's cookies, read when first needed.
    cookies: CookieHeaders,
    /// The request's path and `Host`, for deleting a duplicated cookie
    /// wherever it could have been set.
    path: Option<PathAndQuery>,
    host: Option<HeaderValue>,
    state: Mutex<State>,
}

struct State {
    /// The session cookie has been looked for and verified.
    loaded: bool,
    /// The verified cookie, until something needs all of its claims: the
    /// login check needs only latch's own, read when it was verified.
    verified: Option<Arc<VerifiedSession>>,
    /// The session's claims, without `exp` and `iat` (once parsed).
    claims: Claims,
    /// The request carried a session cookie, good or bad.
    had_cookie: bool,
    /// The request carried the session cookie more than once.
    duplicated: bool,
    /// The verified token's `iat`: a lower bound of when a login in it
    /// that latch did not make was made.
    issued_at: Option<f64>,
    /// The claims changed: the cookie must be written (or deleted).
    changed: bool,
    /// The cookie must be re-issued even if nothing changed (renewal, old key).
    renew: bool,
    /// Something looked at the session: the response depends on the cookie.
    read: bool,
}

/// What a session says about who is logged in.
#[derive(Clone)]
pub(crate) struct LoginClaims {
    pub user_id: Value,
    pub auth: Option<Arc<str>>,
    pub fresh: bool,
    /// When the user logged in (seconds since the Unix epoch), if recorded.
    pub login_at: Option<f64>,
    /// The token's `iat`, if any: the login was made no earlier.
    pub issued_at: Option<f64>,
    /// The session holds a remember-me confirmation tag.
    pub remember_confirm: bool,
    /// The verified cookie these came from, which memoises the fingerprint check.
    verified: Option<Arc<VerifiedSession>>,
}

impl LoginClaims {
    fn from_claims(claims: &Claims, issued_at: Option<f64>) -> Option<Self> {
        let user_id = claims.get(USER_ID)?.clone();
        if user_id.is_null() {
            return None;
        }
        // A `_fresh` of another type did not come from latch or Microdot.
        let fresh = match claims.get(FRESH) {
            None => false,
            Some(fresh) => fresh.as_bool()?,
        };
        let auth = claims.get(AUTH).and_then(Value::as_str);
        Some(Self {
            user_id,
            auth: auth.map(Arc::from),
            fresh,
            login_at: claims.get(LOGIN_AT).and_then(Value::as_f64),
            issued_at,
            remember_confirm: claims.contains_key(REMEMBER_CONFIRM),
            verified: None,
        })
    }

    /// The same as [`from_claims`](Self::from_claims), reading only latch's
    /// claims from the token's JSON instead of building the whole map.
    fn from_reserved(reserved: Reserved<'_>) -> Option<Self> {
        // A missing and a `null` user id are both no login.
        let user_id = reserved.user_id?;
        let fresh = match reserved.fresh {
            Lenient::Missing => false,
            Lenient::Valid(fresh) => fresh,
            Lenient::Invalid => return None,
        };
        let auth = match reserved.auth {
            Lenient::Valid(auth) => Some(Arc::from(auth)),
            Lenient::Missing | Lenient::Invalid => None,
        };
        Some(Self {
            user_id,
            auth,
            fresh,
            login_at: reserved.login_at.at(),
            issued_at: reserved.iat.at(),
            remember_confirm: !matches!(reserved.remember_confirm, Lenient::Missing),
            verified: None,
        })
    }

    /// Which key of the ring made the login's `_auth` the fingerprint of
    /// `auth_hash` (see [`fingerprint::matching_key`]), memoised per cookie.
    pub fn matching_key(&self, keys: &KeyRing, auth_hash: &[u8]) -> Option<usize> {
        let auth = self.auth.as_deref()?;
        let Some(verified) = &self.verified else {
            return fingerprint::matching_key(keys, auth_hash, auth);
        };
        // The answer depends only on the keys (fixed for the cookie's
        // configuration), the cookie's `_auth` and `auth_hash`.
        let (hash, key) = verified.fingerprint.get_or_init(|| {
            let key = fingerprint::matching_key(keys, auth_hash, auth);
            (auth_hash.into(), key)
        });
        if **hash == *auth_hash {
            *key
        } else {
            fingerprint::matching_key(keys, auth_hash, auth)
        }
    }
}

/// A session cookie whose signature and JSON checked out, with what latch
/// reads of it; shared with the [token memo](crate::token_memo).
pub(crate) struct VerifiedSession {
    payload: Box<[u8]>,
    key_index: usize,
    exp: Time,
    iat: Time,
    nbf: Time,
    login_at: Time,
    shape: Shape,
    login: Option<LoginClaims>,
    /// The fingerprint check for the first user `auth_hash` seen with this
    /// cookie, and its answer.
    fingerprint: OnceLock<(Box<[u8]>, Option<usize>)>,
}

/// What kind of token a signed session cookie is, by its claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A latch session token: its `_purpose` is `session`.
    Latch,
    /// A Microdot session token: none of latch's claims (no `_purpose`,
    /// `exp`, `iat`, `nbf`, `_auth` or `_login_at`).
    Microdot,
    /// Anything else signed with the key: a remember-me token, say.
    Other,
}

impl Shape {
    fn of(reserved: &Reserved<'_>) -> Self {
        let latch_claims = [reserved.exp, reserved.iat, reserved.nbf, reserved.login_at]
            .iter()
            .any(|time| *time != Time::Missing)
            || !matches!(reserved.auth, Lenient::Missing);
        match &reserved.purpose {
            Lenient::Valid(purpose) if purpose == SESSION_PURPOSE => Shape::Latch,
            Lenient::Missing if !latch_claims => Shape::Microdot,
            _ => Shape::Other,
        }
    }
}

impl VerifiedSession {
    /// Verifies the signature and reads latch's claims; expiry is not checked.
    fn new(config: &SessionConfig, value: &str) -> Result<Self, TokenError> {
        let (payload, key_index) = token::verified_payload(value, &config.keys)?;
        let reserved = Reserved::parse(&payload).ok_or(TokenError::BadPayload)?;
        let (exp, iat, nbf, login_at) =
            (reserved.exp, reserved.iat, reserved.nbf, reserved.login_at);
        let shape = Shape::of(&reserved);
        let login = LoginClaims::from_reserved(reserved);
        Ok(Self {
            payload: payload.into_boxed_slice(),
            key_index,
            exp,
            iat,
            nbf,
            login_at,
            shape,
            login,
            fingerprint: OnceLock::new(),
        })
    }
}

/// The claims of a session token that latch reads itself, read straight
/// from the token's JSON; the app's own claims are skipped, not built.
#[derive(Deserialize)]
struct Reserved<'a> {
    #[serde(rename = "_user_id", default)]
    user_id: Option<Value>,
    #[serde(rename = "_fresh", default)]
    fresh: Lenient<bool>,
    #[serde(rename = "_auth", default, borrow)]
    auth: Lenient<Cow<'a, str>>,
    #[serde(rename = "_login_at", default)]
    login_at: Time,
    #[serde(rename = "_purpose", default, borrow)]
    purpose: Lenient<Cow<'a, str>>,
    #[serde(rename = "_remember_confirm", default, borrow)]
    remember_confirm: Lenient<Cow<'a, str>>,
    #[serde(default)]
    exp: Time,
    #[serde(default)]
    iat: Time,
    #[serde(default)]
    nbf: Time,
}

impl<'a> Reserved<'a> {
    /// Reads the claims, or `None` if the payload is not a JSON object
    /// (or names a claim twice).
    fn parse(payload: &'a [u8]) -> Option<Self> {
        // A struct would also read from a JSON array; a token's claims are an object.
        let first = payload.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

/// A claim of a given JSON type: absent, of that type, or of another type
/// (which only makes that claim unusable, not the whole token).
#[derive(Default)]
enum Lenient<T> {
    #[default]
    Missing,
    Valid(T),
    Invalid,
}

/// Reads any JSON value: the wanted type's visits give `Valid`, the others
/// `Invalid`, and arrays and objects are skipped.
struct LenientVisitor<T>(std::marker::PhantomData<T>);

macro_rules! lenient_others {
    ($($visit:ident: $t:ty),*) => {
        $(fn $visit<E: serde::de::Error>(self, _: $t) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        })*
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(Lenient::Invalid)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
            Ok(Lenient::Invalid)
        }
    };
}

impl<'de> serde::de::Visitor<'de> for LenientVisitor<bool> {
    type Value = Lenient<bool>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Lenient::Valid(v))
    }
    lenient_others!(visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

impl<'de> Deserialize<'de> for Lenient<bool> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor::<bool>(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> serde::de::Visitor<'de> for LenientVisitor<Cow<'a, str>> {
    type Value = Lenient<Cow<'a, str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient::Valid(Cow::Borrowed(v)))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Valid(Cow::Owned(v.to_owned())))
    }
    lenient_others!(visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_bool: bool);
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<Cow<'a, str>> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor::<Cow<'a, str>>(std::marker::PhantomData))
    }
}

impl SessionHandle {
    fn new(
        config: Arc<SessionConfig>,
        cookies: CookieHeaders,
        path: Option<PathAndQuery>,
        host: Option<HeaderValue>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                cookies,
                path,
                host,
                state: Mutex::new(State {
                    loaded: false,
                    verified: None,
                    claims: Claims::new(),
                    had_cookie: false,
                    duplicated: false,
                    issued_at: None,
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

    /// The session, locked, with its cookie verified but not necessarily parsed.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.loaded {
            state.loaded = true;
            let cookie = self
                .shared
                .cookies
                .find_borrowed(&self.shared.config.cookie_name);
            state.load(&self.shared.config, cookie);
        }
        state.read = true;
        state
    }

    /// The request's cookie called `name`.
    pub fn cookie(&self, name: &str) -> Lookup {
        self.shared.cookies.find(name)
    }

    /// Deletes the cookie `name` wherever else the request could have
    /// carried it from: at every path it could have been set for, host-only
    /// and for the request's host and each of its parent domains (where a
    /// sibling subdomain can plant a cookie). For a cookie the request had
    /// more than once, which latch cannot tell from a planted copy. The
    /// cookie at latch's own path and domain is written (or deleted)
    /// separately, after these.
    pub fn delete_strays(&self, headers: &mut HeaderMap, name: &str) {
        let Some(path) = &self.shared.path else {
            return;
        };
        let attributes = &self.shared.config.attributes;
        let host = self.shared.host.as_ref().and_then(cookies::request_host);
        let domains: Vec<Option<&str>> = std::iter::once(None)
            .chain(
                host.iter()
                    .flat_map(|host| cookies::domains_of(host))
                    .map(Some),
            )
            .collect();
        let strays = cookies::paths_sent_to(path.path())
            .flat_map(|stray| domains.iter().map(move |domain| (*domain, stray)))
            .filter(|&(domain, stray)| {
                stray != attributes.path || domain != attributes.domain.as_deref()
            })
            .take(cookies::MAX_STRAY_DELETIONS);
        for (domain, stray) in strays {
            cookies::append(headers, attributes.delete_at(name, domain, stray));
        }
    }

    /// The decoded session, locked.
    pub fn state(&self) -> StateGuard<'_> {
        let mut state = self.lock();
        state.parse();
        StateGuard(state)
    }

    /// Who the session says is logged in, if anyone.
    pub fn login(&self) -> Option<LoginClaims> {
        let state = self.lock();
        match &state.verified {
            Some(verified) => {
                let mut login = verified.login.clone()?;
                login.verified = Some(verified.clone());
                Some(login)
            }
            None => LoginClaims::from_claims(&state.claims, state.issued_at),
        }
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

    /// Ties a login adopted from a Microdot token to `auth`: never fresh,
    /// and its absolute timeout counted from now.
    pub fn adopt_login(&self, auth: String) {
        let mut state = self.state();
        let claims = state.claims_mut();
        claims.insert(AUTH.to_owned(), Value::String(auth));
        claims.insert(FRESH.to_owned(), Value::Bool(false));
        claims.insert(LOGIN_AT.to_owned(), Value::from(token::now()));
    }

    /// Removes the login from the session, keeping the app's own data.
    pub fn clear_login(&self) {
        let mut state = self.state();
        let had_login = LOGIN_CLAIMS
            .iter()
            .any(|name| state.0.claims.contains_key(*name));
        if had_login {
            let claims = state.claims_mut();
            for name in LOGIN_CLAIMS {
                claims.remove(name);
            }
        }
    }

    /// Keeps the confirmation tag of the remember-me token just redeemed
    /// with the login, until [`take_remember_confirmation`](Self::take_remember_confirmation).
    pub fn set_remember_confirmation(&self, tag: String) {
        let mut state = self.state();
        state
            .claims_mut()
            .insert(REMEMBER_CONFIRM.to_owned(), Value::String(tag));
    }

    /// Removes the confirmation tag from the session, returning it.
    pub fn take_remember_confirmation(&self) -> Option<String> {
        let mut state = self.state();
        let tag = state
            .claims()
            .get(REMEMBER_CONFIRM)?
            .as_str()
            .map(str::to_owned);
        state.claims_mut().remove(REMEMBER_CONFIRM);
        tag
    }

    /// Adds `Vary: Cookie` and the session cookie to a response, as needed.
    fn write_to(&self, headers: &mut HeaderMap) {
        let mut state = self
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
        state.parse();
        let config = &self.shared.config;
        if state.duplicated {
            self.delete_strays(headers, &config.cookie_name);
        }
        if state.claims.is_empty() {
            if state.had_cookie {
                cookies::append(headers, config.attributes.delete(&config.cookie_name));
            }
            return;
        }
        let now = token::now();
        let mut claims = state.claims.clone();
        claims.insert(PURPOSE.to_owned(), Value::from(SESSION_PURPOSE));
        // A login latch has not adopted yet (Microdot's, with no
        // fingerprint) is dated by the token's `iat`: re-issuing it must
        // keep that, or a copy made before a password change would come
        // back dated after it.
        let unadopted = claims.contains_key(USER_ID) && !claims.contains_key(AUTH);
        let iat = match (unadopted, state.issued_at) {
            (false, _) => Some(Value::from(now)),
            (true, Some(at)) if at.fract() == 0.0 && (0.0..=9e15).contains(&at) => {
                Some(Value::from(at as u64))
            }
            (true, at) => at.map(Value::from),
        };
        if let Some(iat) = iat {
            claims.insert(IAT.to_owned(), iat);
        }
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
    fn load(&mut self, config: &SessionConfig, cookie: Lookup<&str>) {
        let value = match cookie {
            Lookup::Missing => return,
            Lookup::Found(value) => value,
            Lookup::Duplicate => {
                // Which one is latch's cannot be told: delete them all.
                tracing::debug!(target: "latch", reason = "duplicated cookie", "session cookie rejected");
                self.had_cookie = true;
                self.duplicated = true;
                self.changed = true;
                return;
            }
            Lookup::Unreadable => {
                tracing::debug!(target: "latch", reason = "Cookie header is not text", "session cookie rejected");
                return;
            }
        };
        self.had_cookie = true;
        match verify(config, value) {
            Ok((verified, renew)) => {
                self.issued_at = verified.iat.at();
                self.verified = Some(verified);
                self.renew = renew;
            }
            Err(reason) => {
                tracing::debug!(target: "latch", %reason, "session cookie rejected");
                // Delete the bad cookie rather than have it sent again and again.
                self.changed = true;
            }
        }
    }

    /// Builds the claims map from the verified payload, if not done yet.
    fn parse(&mut self) {
        let Some(verified) = self.verified.take() else {
            return;
        };
        match serde_json::from_slice::<Claims>(&verified.payload) {
            Ok(mut claims) => {
                for name in [PURPOSE, IAT, EXP] {
                    claims.remove(name);
                }
                self.claims = claims;
            }
            Err(error) => {
                // `verify` read the whole payload as an object already.
                tracing::debug!(target: "latch", %error, "session cookie rejected");
                self.changed = true;
            }
        }
    }
}

/// Checks a session token: signature, header, expiry, absolute timeout.
/// Returns it verified (claims not parsed yet) and whether to re-issue it.
fn verify(config: &SessionConfig, value: &str) -> Result<(Arc<VerifiedSession>, bool), Rejected> {
    let verified = match token_memo::get(config.id, value) {
        Some(verified) => verified,
        None => {
            let verified = Arc::new(VerifiedSession::new(config, value)?);
            token_memo::put(config.id, value, verified.clone());
            verified
        }
    };
    let now = token::now();
    let exp = match (verified.shape, config.microdot_compat) {
        (Shape::Latch, _) => verified.exp,
        // Microdot's session tokens never expire; latch re-issues them.
        (Shape::Microdot, Some(compat)) if compat.open_at(now) => Time::At(f64::INFINITY),
        (Shape::Microdot, Some(_)) => return Err(Rejected::MicrodotDeadline),
        (Shape::Microdot | Shape::Other, _) => return Err(Rejected::Purpose),
    };
    token::check_times(exp, verified.iat, verified.nbf, now)?;
    match verified.login_at {
        Time::Missing => {}
        Time::NotANumber => return Err(Rejected::LoginTime),
        Time::At(login_at) => {
            if login_at + config.absolute_timeout.as_secs() as f64 <= now as f64 {
                return Err(Rejected::AbsoluteTimeout);
            }
        }
    }
    let issued = match verified.iat {
        Time::At(issued) => issued,
        Time::Missing | Time::NotANumber => 0.0,
    };
    let renew =
        verified.key_index != 0 || (now as f64) - issued >= config.renew_after.as_secs() as f64;
    Ok((verified, renew))
}

/// Why a session cookie was refused.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("login time is not a number")]
    LoginTime,
    #[error("login is older than the absolute timeout")]
    AbsoluteTimeout,
    #[error("not a session token")]
    Purpose,
    #[error("a Microdot session token, after the end of Microdot interop mode")]
    MicrodotDeadline,
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
    /// still would with one added (a user id of up to [`LOGIN_ROOM`] bytes
    /// of JSON, and a remember-me confirmation tag): what
    /// `SessionData::insert` allows.
    pub fn fits_with_room_for_login(&self, claims: &Claims) -> bool {
        if claims.contains_key(USER_ID) {
            return self.fits(claims);
        }
        let mut with_login = claims.clone();
        let placeholder_id = Value::String("u".repeat(LOGIN_ROOM - 2));
        let placeholder_auth = "a".repeat(22);
        add_login(&mut with_login, placeholder_id, placeholder_auth, true);
        // A login restored from a remember-me cookie also keeps a tag.
        let placeholder_tag = Value::String("t".repeat(22));
        with_login.insert(REMEMBER_CONFIRM.to_owned(), placeholder_tag);
        self.fits(&with_login)
    }

    /// Whether the session, with these claims, fits in a cookie. The token
    /// is the fixed header, the base64 of the JSON claims (plus `_purpose`,
    /// `exp` and `iat`, at most 64 bytes), and the signature.
    pub fn fits(&self, claims: &Claims) -> bool {
        let json = serde_json::to_vec(claims).map_or(usize::MAX, |json| json.len() + 64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;
    use serde_json::json;

    fn config(key: &str) -> Arc<SessionConfig> {
        Session::new(SecretKey::new(key.repeat(32)).unwrap()).config
    }

    fn token(key: &str, claims: Value) -> String {
        let key = SecretKey::new(key.repeat(32)).unwrap();
        token::encode(claims.as_object().unwrap(), &key)
    }

    fn login_claims(now: u64) -> Value {
        json!({"_user_id": 7, "_fresh": true, "_auth": "a".repeat(22), "_login_at": now,
               "_purpose": "session", "exp": now + 600, "iat": now, "app": [1, {"x": null}]})
    }

    #[test]
    fn a_cookie_seen_again_comes_from_the_memo() {
        let config = config("a");
        let cookie = token("a", login_claims(token::now()));
        let (first, _) = verify(&config, &cookie).unwrap();
        let (second, renew) = verify(&config, &cookie).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert!(!renew);
        let login = second.login.clone().unwrap();
        assert_eq!(login.user_id, json!(7));
        assert!(login.fresh);
    }

    #[test]
    fn the_memo_does_not_skip_the_expiry_check() {
        let config = config("b");
        let now = token::now();
        let mut claims = login_claims(now);
        claims["exp"] = json!(now - 1);
        let cookie = token("b", claims);
        for _ in 0..2 {
            assert!(matches!(
                verify(&config, &cookie),
                Err(Rejected::Token(TokenError::Expired))
            ));
        }
    }

    #[test]
    fn another_configuration_verifies_for_itself() {
        let signer = config("c");
        let cookie = token("c", login_claims(token::now()));
        verify(&signer, &cookie).unwrap();
        // Same cookie, other keys: not accepted because the memo knows it.
        let other = config("d");
        assert!(matches!(
            verify(&other, &cookie),
            Err(Rejected::Token(TokenError::BadSignature))
        ));
        // A configuration changed after it was made gets a new id.
        let changed = Session::new(SecretKey::new("c".repeat(32)).unwrap())
            .idle_timeout(Duration::from_secs(5))
            .config;
        assert_ne!(changed.id, signer.id);
    }

    #[test]
    fn the_memo_stays_bounded() {
        let config = config("e");
        let now = token::now();
        for i in 0..token_memo::CAPACITY + 10 {
            let mut claims = login_claims(now);
            claims["n"] = json!(i);
            verify(&config, &token("e", claims)).unwrap();
        }
        assert!(token_memo::len() <= token_memo::CAPACITY);
    }

    #[test]
    fn the_fingerprint_memo_answers_only_for_the_same_auth_hash() {
        let config = config("f");
        let now = token::now();
        let key = config.keys.current();
        let mut claims = login_claims(now);
        claims["_auth"] = json!(fingerprint::fingerprint(key, b"old hash"));
        let (verified, _) = verify(&config, &token("f", claims)).unwrap();
        let mut login = verified.login.clone().unwrap();
        login.verified = Some(verified);
        for _ in 0..2 {
            assert_eq!(login.matching_key(&config.keys, b"old hash"), Some(0));
            assert_eq!(login.matching_key(&config.keys, b"new hash"), None);
        }
    }

    #[test]
    fn latch_claims_of_the_wrong_type_spoil_only_the_login() {
        let config = config("g");
        let now = token::now();
        for (name, bad) in [
            ("_fresh", json!("yes")),
            ("_fresh", json!(null)),
            ("_user_id", json!(null)),
        ] {
            let mut claims = login_claims(now);
            claims[name] = bad;
            let (verified, _) = verify(&config, &token("g", claims)).unwrap();
            assert!(verified.login.is_none(), "{name}");
        }
        let mut claims = login_claims(now);
        claims["_login_at"] = json!("yesterday");
        assert!(matches!(
            verify(&config, &token("g", claims)),
            Err(Rejected::LoginTime)
        ));
        let not_yet = json!({"exp": now + 60, "iat": "soon"});
        assert!(verify(&config, &token("g", not_yet)).is_err());
        // Signed, but an array rather than an object of claims, or with
        // one of latch's claims twice.
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
        let any = token("g", json!({}));
        let header = any.split('.').next().unwrap();
        let key = SecretKey::new("g".repeat(32)).unwrap();
        let exp = now + 60;
        for payload in [
            "[1,2]".to_owned(),
            format!(r#"{{"exp":{exp},"_user_id":1,"_user_id":2}}"#),
            format!(r#"{{"exp":{exp},"exp":{exp}}}"#),
        ] {
            let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload.as_bytes()));
            let signature = URL_SAFE_NO_PAD.encode(token::hmac_sha256(&key, &[signed.as_bytes()]));
            assert!(
                matches!(
                    verify(&config, &format!("{signed}.{signature}")),
                    Err(Rejected::Token(TokenError::BadPayload))
                ),
                "{payload}"
            );
        }
    }
}
