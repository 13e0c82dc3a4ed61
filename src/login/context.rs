//! One request's login: who is logged in, found at most once and only when
//! asked, from the session or else from the remember-me cookie.

use futures_util::future::BoxFuture;
use http::HeaderValue;
use serde::Deserialize as _;
use serde_json::Value;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cookies::Lookup;
use crate::crypto::fingerprint;
use crate::crypto::random;
use crate::events::{EventKind, LoginEvent, LoginMethod};
use crate::login::cache::UserCache;
use crate::login::request::RequestState;
use crate::login::state::{Found, LoginState, Want};
use crate::login::user::BoxError;
use crate::login::{LoginConfig, User};
use crate::registry::{Refused, SessionKey, SessionRecord};
use crate::remember::Redemption;
use crate::session::state::SessionState;
use crate::session::verified::LoginClaims;

/// How much of a `User-Agent` latch keeps, in bytes, for device names.
const MAX_USER_AGENT: usize = 256;

/// The user of a request, once found.
#[derive(Clone)]
pub(crate) enum Resolved<U> {
    Anonymous,
    User {
        user: Arc<U>,
        fresh: bool,
    },
    /// The loader failed; the request cannot be answered for this user.
    Failed,
}

/// The user of a request with its type erased, to keep in the request's state.
fn erase<U: User>(resolved: &Resolved<U>) -> Found {
    match resolved {
        Resolved::Anonymous => Found::Anonymous,
        Resolved::Failed => Found::Failed,
        Resolved::User { user, fresh } => Found::User {
            user: user.clone(),
            fresh: *fresh,
        },
    }
}

/// How a login's user is checked once loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Check<'a> {
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

/// Whole seconds since the Unix epoch from a claim's time (0 before it).
fn whole_seconds(at: f64) -> u64 {
    if at.is_finite() && at > 0.0 {
        at as u64
    } else {
        0
    }
}

/// Seconds since the Unix epoch, negative before it.
fn seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The user loader failed (it has been logged): the request cannot be
/// answered for this user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoaderFailed;

/// Why [`LoginContext::require`] found no user to let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Anonymous,
    NotFresh,
    LoaderFailed,
}

/// One request's login, as latch's extractors and the login layer see it:
/// the request's state and the login layer's configuration, both shared.
pub(crate) struct LoginContext<U: User> {
    request: Arc<RequestState>,
    config: Arc<LoginConfig<U>>,
    /// Set while finding the user: the count of the handler's logins and
    /// logouts when the search began. Its writes to the session and the
    /// remember cookie are made only if the handler has made none since.
    finding: Option<u64>,
}

impl<U: User> Clone for LoginContext<U> {
    fn clone(&self) -> Self {
        Self {
            request: self.request.clone(),
            config: self.config.clone(),
            finding: self.finding,
        }
    }
}

/// What finding the user needs next, as the login layer's future runs it:
/// nothing (found), the loader's future (which the layer's future keeps
/// without boxing), or slower work (a remember-me cookie to redeem, a store
/// to ask), boxed.
pub(crate) enum Step<U: User> {
    Done(Resolved<U>),
    Load(U::Id, PendingLoad),
    Slow(BoxFuture<'static, Resolved<U>>),
}

/// A session login waiting for its user from the loader.
pub(crate) struct PendingLoad {
    /// What [`LoginContext::finding`] was when the search began.
    finding: u64,
    login: LoginClaims,
    check: Check<'static>,
    /// The user cache's key and generation, when there is a cache.
    cached: Option<(String, u64)>,
}

impl<U: User> LoginContext<U> {
    /// The request's login context, if a `Login<U, _>` layer has seen it.
    pub fn new(request: Arc<RequestState>) -> Option<Self> {
        let config = request.login.config()?.clone().downcast().ok()?;
        Some(Self {
            request,
            config,
            finding: None,
        })
    }

    /// The context of a request whose login `config` already attached.
    pub fn from_parts(request: Arc<RequestState>, config: Arc<LoginConfig<U>>) -> Self {
        Self {
            request,
            config,
            finding: None,
        }
    }

    /// This context, about to find the user: its writes from now on are
    /// dropped if the handler logs in, logs out or updates the user first.
    fn finder(&self) -> Self {
        Self {
            finding: Some(self.state().changes()),
            ..self.clone()
        }
    }

    /// Runs a write to the session or the remember cookie: at once for the
    /// handler's own calls; while finding the user, only if the handler
    /// has made no login, logout or update since the search began.
    fn write<T>(&self, write: impl FnOnce() -> T) -> Option<T> {
        match self.finding {
            None => Some(write()),
            Some(seen) => self.state().unless_changed(seen, write),
        }
    }

    /// Called by `Auth` before it logs in, logs out or updates the user.
    pub fn begin_change(&self) {
        self.state().begin_change();
    }

    pub fn config(&self) -> &LoginConfig<U> {
        &self.config
    }

    pub fn session(&self) -> &SessionState {
        &self.request.session
    }

    /// The request's login state.
    pub fn state(&self) -> &LoginState {
        &self.request.login
    }

    /// The request's user, found on the first call and remembered. Within
    /// the login layer's future, the layer finds it (running the loader's
    /// future unboxed); otherwise (from a task the handler spawned, after the
    /// response) this call finds it.
    pub async fn resolve(&self) -> Resolved<U> {
        let mut own = None;
        std::future::poll_fn(|cx| self.poll_resolve(cx, &mut own)).await
    }

    /// [`resolve`](Self::resolve), polled: `own` keeps the caller's own
    /// search for the user, when it has to find the user itself.
    pub fn poll_resolve(
        &self,
        cx: &mut Context<'_>,
        own: &mut Option<BoxFuture<'static, Resolved<U>>>,
    ) -> Poll<Resolved<U>> {
        if let Some(found) = self.state().found() {
            return Poll::Ready(self.downcast(found));
        }
        if own.is_none() {
            match self.state().want(cx) {
                Want::Wait => return Poll::Pending,
                Want::Found(found) => return Poll::Ready(self.downcast(found)),
                Want::FindItself => {}
            }
        }
        let work = own.get_or_insert_with(|| {
            let context = self.clone();
            Box::pin(async move { context.find_user().await })
        });
        let resolved = std::task::ready!(work.as_mut().poll(cx));
        self.store(&resolved);
        Poll::Ready(self.downcast(self.state().found().expect("just stored")))
    }

    fn downcast(&self, found: Found) -> Resolved<U> {
        match found {
            Found::Anonymous => Resolved::Anonymous,
            Found::Failed => Resolved::Failed,
            Found::User { user, fresh } => match user.downcast::<U>() {
                Ok(user) => Resolved::User { user, fresh },
                // Only a user of this login layer's type is ever stored.
                Err(_) => Resolved::Failed,
            },
        }
    }

    /// Keeps what was found, unless a login or logout set the user meanwhile.
    pub fn store(&self, resolved: &Resolved<U>) {
        self.state().set_found_if_unset(erase(resolved));
    }

    /// The user, if logged in; an error only when the loader failed.
    pub async fn current_user(&self) -> Result<Option<Arc<U>>, LoaderFailed> {
        match self.resolve().await {
            Resolved::User { user, .. } => Ok(Some(user)),
            Resolved::Anonymous => Ok(None),
            Resolved::Failed => Err(LoaderFailed),
        }
    }

    /// The user, if logged in (and freshly so, when `fresh` is asked for).
    pub async fn require(&self, fresh: bool) -> Result<Arc<U>, Refusal> {
        Self::required(self.resolve().await, fresh)
    }

    /// What [`require`](Self::require) makes of a resolved user.
    pub fn required(resolved: Resolved<U>, fresh: bool) -> Result<Arc<U>, Refusal> {
        match resolved {
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
    pub fn set_resolved(&self, found: Resolved<U>) {
        self.state().set_found(erase(&found));
    }

    /// Whether a login made at `login_at` is recent enough to be fresh.
    fn recent(&self, login_at: Option<f64>) -> bool {
        match (self.config.fresh_within, login_at) {
            (None, _) => true,
            (Some(window), Some(at)) => {
                (self.clock().unix_secs() as f64) - at <= window.as_secs_f64()
            }
            (Some(_), None) => false,
        }
    }

    /// Whether logins without latch's fingerprint (Microdot's) may be
    /// adopted now.
    fn adopting(&self) -> bool {
        self.session()
            .config()
            .microdot_compat
            .is_some_and(|compat| compat.open_at(self.clock().unix_secs()))
    }

    /// Where latch reads the time: the session's clock.
    fn clock(&self) -> &crate::clock::Clock {
        &self.session().site().clock
    }

    fn keys(&self) -> &crate::crypto::KeyRing {
        &self.session().site().keys
    }

    /// Finds the user, all of it in one future (boxed loader and all): for
    /// a request whose login layer's future is not there to run it.
    async fn find_user(&self) -> Resolved<U> {
        let finder = self.finder();
        match finder.session().login() {
            Some(login) => finder.check_session_login(login).await,
            None => finder.restore_or_load().await,
        }
    }

    /// A request without a login in its session: the user of its remember
    /// cookie, else the one the request loader finds from its headers.
    async fn restore_or_load(&self) -> Resolved<U> {
        match self.restore_remembered().await {
            Resolved::Anonymous => self.load_from_request().await,
            resolved => resolved,
        }
    }

    /// The user the app's request loader finds from the request's headers
    /// (an API client's token): never fresh, and nothing written.
    async fn load_from_request(&self) -> Resolved<U> {
        let (Some(loader), Some(headers)) = (&self.config.request_loader, self.state().headers())
        else {
            return Resolved::Anonymous;
        };
        let credentials = headers.contains_key(http::header::AUTHORIZATION);
        match loader.load(headers.clone()).await {
            Ok(Some(user)) => Resolved::User {
                user: Arc::new(user),
                fresh: false,
            },
            Ok(None) => {
                if credentials {
                    tracing::debug!(target: "latch", "request credentials rejected: the request loader found no user");
                    self.state().set_credentials_refused();
                }
                Resolved::Anonymous
            }
            Err(error) => {
                tracing::error!(target: "latch", %error, "request loader failed");
                Resolved::Failed
            }
        }
    }

    /// The `WWW-Authenticate` of a `401` for this request: with a request
    /// loader, its challenge, saying `invalid_token` when the request's
    /// `Authorization` named no user.
    pub fn challenge(&self) -> Option<HeaderValue> {
        self.config.request_loader.as_ref()?;
        let challenge = &self.config.challenge;
        if !self.state().credentials_refused() {
            return Some(challenge.clone());
        }
        let text = challenge.as_bytes();
        let separator: &[u8] = if text.contains(&b' ') { b", " } else { b" " };
        let value = [text, separator, br#"error="invalid_token""#].concat();
        HeaderValue::from_bytes(&value)
            .ok()
            .or_else(|| Some(challenge.clone()))
    }

    /// Sends an event to the app's hook, if it listens, about the user
    /// with this id.
    pub fn emit(&self, kind: EventKind, user_id: Option<U::Id>, session_id: Option<String>) {
        let Some(events) = &self.config.events else {
            return;
        };
        events.send(LoginEvent {
            kind,
            user_id,
            at: self.clock().now(),
            device: Some(crate::remember::device::summarize(self.user_agent())),
            client: self.state().client(),
            session_id,
        });
    }

    /// [`emit`](Self::emit) for a user id as stored (JSON).
    pub fn emit_json(&self, kind: EventKind, user_id: Option<&Value>, session_id: Option<String>) {
        if self.config.events.is_none() {
            return;
        }
        let user_id = user_id.and_then(|id| U::Id::deserialize(id).ok());
        self.emit(kind, user_id, session_id);
    }

    /// Tells the app's hook that the request's user needed a fresh login.
    pub fn emit_fresh_login_required(&self) {
        if self.config.events.is_none() {
            return;
        }
        let user_id = match self.state().found().map(|found| self.downcast(found)) {
            Some(Resolved::User { user, .. }) => Some(user.id()),
            _ => None,
        };
        let session_id = self
            .session()
            .login()
            .and_then(|login| login.session_id.as_deref().map(str::to_owned));
        self.emit(EventKind::FreshLoginRequired, user_id, session_id);
    }

    /// The first step of finding the user, for the login layer's future:
    /// done at once (anonymous, refused, or from the user cache), the
    /// loader to call, or slower work.
    pub fn start(&self) -> Step<U> {
        let finder = self.finder();
        match finder.session().login() {
            Some(login) => finder.start_with(login),
            None => Step::Slow(Box::pin(async move { finder.restore_or_load().await })),
        }
    }

    /// [`start`](Self::start) for the session's login.
    fn start_with(&self, login: LoginClaims) -> Step<U> {
        let Some(check) = self.session_check(&login) else {
            return Step::Done(Resolved::Anonymous);
        };
        let cache = self.config.cache.as_deref();
        let key = cache.map(|_| UserCache::<U>::key(&login.user_id));
        let id: U::Id = match U::Id::deserialize(&login.user_id) {
            Ok(id) => id,
            Err(error) => {
                tracing::debug!(target: "latch", %error, "login rejected: user id of another type");
                return self.session_user(login, None);
            }
        };
        if let (Some(cache), Some(key)) = (cache, &key) {
            if let Some(user) = cache.get(key, self.clock().now()) {
                if let Some(accepted) = self.accept_session(&login, check, &user) {
                    return self.session_user(login, Some((user, accepted)));
                }
                // Perhaps changed since it was cached: ask the loader.
                cache.remove(key);
            }
        }
        let cached = cache.zip(key).map(|(cache, key)| (key, cache.generation()));
        let finding = self.finding.unwrap_or_else(|| self.state().changes());
        Step::Load(
            id,
            PendingLoad {
                finding,
                login,
                check,
                cached,
            },
        )
    }

    /// The step after the loader answered for a session's login.
    pub fn finish_load(
        &self,
        pending: PendingLoad,
        loaded: Result<Option<U>, BoxError>,
    ) -> Step<U> {
        let finder = Self {
            finding: Some(pending.finding),
            ..self.clone()
        };
        finder.finish_loaded(pending, loaded)
    }

    fn finish_loaded(&self, pending: PendingLoad, loaded: Result<Option<U>, BoxError>) -> Step<U> {
        let PendingLoad {
            finding: _,
            login,
            check,
            cached,
        } = pending;
        let user = match loaded {
            Ok(Some(user)) => Arc::new(user),
            Ok(None) => {
                tracing::debug!(target: "latch", user_id = ?login.user_id, "login rejected: no such user");
                return self.session_user(login, None);
            }
            Err(error) => {
                tracing::error!(target: "latch", user_id = ?login.user_id, %error, "user loader failed");
                return Step::Done(Resolved::Failed);
            }
        };
        if let (Some(cache), Some((key, generation))) = (&self.config.cache, cached) {
            cache.insert(generation, key, user.clone(), self.clock().now());
        }
        match self.accept_session(&login, check, &user) {
            Some(accepted) => self.session_user(login, Some((user, accepted))),
            None => {
                tracing::debug!(target: "latch", user_id = ?login.user_id, "login rejected: auth_hash changed");
                self.session_user(login, None)
            }
        }
    }

    /// How the session's login is to be checked, or `None` (and the login
    /// cleared) if it cannot be accepted whoever the user is.
    fn session_check(&self, login: &LoginClaims) -> Option<Check<'static>> {
        let check = match (&login.fingerprint, login.login_at) {
            (Some(_), Some(_)) if login.session_id.is_some() => Check::Fingerprint,
            (Some(_), Some(_)) => {
                // latch gives every login a session id of its shape.
                tracing::debug!(target: "latch", "login rejected: no session id, or one of another shape");
                Check::Refuse
            }
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
            self.write(|| self.session().clear_login());
            return None;
        }
        if let Some(registry) = &self.config.registry {
            // Microdot's logins have no login time: their `iat` stands in.
            let login_at = login.login_at.or(login.issued_at).map(whole_seconds);
            let now = login.checked_at.unwrap_or_else(|| self.clock().unix_secs());
            let memo = login
                .verified
                .as_deref()
                .map(|verified| &verified.user_hash);
            match registry.refusal(login.session_key, &login.user_id, memo, login_at, now) {
                None => {}
                Some(Refused::Ended(reason)) => {
                    tracing::debug!(target: "latch", reason, "login rejected: ended on the server");
                    self.write(|| self.session().clear_login());
                    return None;
                }
                Some(Refused::Stale) => {
                    // Refused for now, kept for when the store is back.
                    tracing::warn!(target: "latch", "login refused: the session registry is out of date");
                    return None;
                }
            }
        }
        Some(check)
    }

    /// Whether `user` is the one the session's login was made for.
    fn accept_session(&self, login: &LoginClaims, check: Check<'_>, user: &U) -> Option<Accepted> {
        match check {
            Check::Fingerprint => login
                .matching_key(self.keys(), user.auth_hash())
                .map(Accepted::Key),
            Check::Adopt { made_after } => {
                microdot_token_current(user, made_after).then_some(Accepted::Adopted)
            }
            Check::Claimed(_) | Check::Refuse => None,
        }
    }

    /// The outcome of a session's login: the user it was accepted for (the
    /// session moved to the current key or adopted as needed), or, with
    /// `None`, anonymous (the login leaves the session).
    fn session_user(&self, login: LoginClaims, found: Option<(Arc<U>, Accepted)>) -> Step<U> {
        let Some((user, accepted)) = found else {
            self.write(|| self.session().clear_login());
            return Step::Done(Resolved::Anonymous);
        };
        // Computed only when the session needs a new fingerprint.
        let current = || fingerprint::fingerprint(self.keys().current(), user.auth_hash());
        let fresh = match accepted {
            Accepted::Adopted => {
                // A Microdot login: tied to the user's auth_hash from now
                // on, and never fresh.
                let adopted = self.write(|| {
                    let adopted = self.session().adopt_login(current());
                    if adopted.is_none() {
                        self.session().clear_login();
                    }
                    adopted
                });
                let session_id = match adopted {
                    Some(Some(session_id)) => session_id,
                    Some(None) => return Step::Done(Resolved::Failed),
                    // The handler logged in or out meanwhile: its word stands.
                    None => return Step::Done(Resolved::Anonymous),
                };
                tracing::info!(target: "latch", user_id = ?user.id(), "Microdot login adopted");
                self.emit(
                    EventKind::LoggedIn(LoginMethod::Adopted),
                    Some(user.id()),
                    Some(session_id.clone()),
                );
                if let Some(registry) = self.config.registry.clone() {
                    // An adopted login is a login: the registry records it.
                    let remembered = self.remember_cookie().is_some().then_some(0);
                    let record =
                        self.session_record(session_id, login.user_id.to_string(), remembered);
                    let resolved = Resolved::User { user, fresh: false };
                    return Step::Slow(Box::pin(async move {
                        registry.record(record).await;
                        resolved
                    }));
                }
                false
            }
            Accepted::Key(0) => login.fresh && self.recent(login.login_at),
            Accepted::Key(_) => {
                // Signed before a key rotation: move to the current key.
                self.write(|| self.session().set_fingerprint(current()));
                login.fresh && self.recent(login.login_at)
            }
        };
        if let (Some(registry), Some(key), Some(id)) = (
            &self.config.registry,
            login.session_key,
            login.session_id.as_deref(),
        ) {
            let now = login.checked_at.unwrap_or_else(|| self.clock().unix_secs());
            let memo = login.verified.as_deref().map(|verified| &verified.touched);
            registry.seen(key, id, now, memo);
        }
        let resolved = Resolved::User { user, fresh };
        if !login.remember_confirm {
            return Step::Done(resolved);
        }
        let context = self.clone();
        Step::Slow(Box::pin(async move {
            context.confirm_remembered().await;
            resolved
        }))
    }

    /// Checks the session's login against the user it names.
    async fn check_session_login(&self, login: LoginClaims) -> Resolved<U> {
        let mut step = self.start_with(login);
        loop {
            step = match step {
                Step::Done(resolved) => return resolved,
                Step::Slow(work) => return work.await,
                Step::Load(id, pending) => {
                    let loaded = self.config.loader.load(id).await;
                    self.finish_load(pending, loaded)
                }
            };
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
    ) -> Result<Option<(Arc<U>, Accepted)>, ()> {
        let cache = self.config.cache.as_deref();
        let key = cache.map(|_| UserCache::<U>::key(&user_id));
        let id: U::Id = match serde_json::from_value(user_id) {
            Ok(id) => id,
            Err(error) => {
                tracing::debug!(target: "latch", %error, "login rejected: user id of another type");
                return Ok(None);
            }
        };
        if let (Some(cache), Some(key)) = (cache, &key) {
            if let Some(user) = cache.get(key, self.clock().now()) {
                if let Some(accepted) = accept(&user) {
                    return Ok(Some((user, accepted)));
                }
                // Perhaps changed since it was cached: ask the loader.
                cache.remove(key);
            }
        }
        let generation = cache.map(UserCache::generation);
        let user = match self.config.loader.load(id.clone()).await {
            Ok(Some(user)) => Arc::new(user),
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
            cache.insert(generation, key, user.clone(), self.clock().now());
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
                self.write(|| self.state().set_remember_duplicated());
                return Resolved::Anonymous;
            }
        };
        let remember = &self.config.remember;
        let redeemed = remember
            .redeem_outcome(self.keys(), token, self.clock().now(), self.user_agent())
            .await;
        let redeemed = match redeemed {
            Ok(Redemption::Redeemed(redeemed)) => redeemed,
            Ok(Redemption::Stolen { user_id }) => {
                self.emit_json(EventKind::RememberTheft, user_id.as_ref(), None);
                self.delete_remember_cookie();
                return Resolved::Anonymous;
            }
            Ok(_) => {
                self.delete_remember_cookie();
                return Resolved::Anonymous;
            }
            Err(error) => {
                tracing::error!(target: "latch", %error, "remember cookie not checked");
                return Resolved::Anonymous;
            }
        };
        let held = redeemed.replacement.as_deref();
        if self
            .remember_refused(&redeemed, redeemed.session_id.as_deref(), token, held)
            .await
        {
            return Resolved::Anonymous;
        }
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
        let mut replacement = redeemed.replacement.clone();
        // A remembered browser keeps its session id from login to login.
        let Some(session_id) = redeemed.session_id.clone().or_else(random::session_id) else {
            tracing::error!(target: "latch", "remembered login not restored: the random source failed");
            if let Some(replacement) = &replacement {
                self.set_remember_cookie(replacement, redeemed.days);
            }
            return Resolved::Failed;
        };
        // A token without a session id (Microdot's, or made before latch
        // put one in) would restore a new session every time, so ending
        // the session in the registry would not end the browser's login.
        let sessionless = redeemed.session_id.is_none() && self.config.registry.is_some();
        let reissued = accepted != Accepted::Key(0) || sessionless;
        if reissued {
            // Made before a key rotation, by Microdot, or without a session
            // id: a new token carries the current key's fingerprint and the
            // session's id.
            replacement = self
                .reissue(token, replacement, &redeemed, &auth, &session_id)
                .await;
        }
        // The checks above waited on the store and the user loader: an
        // ending may have landed meanwhile, a cut-off whose second is past
        // by now, which the login written below (made now) would outlive.
        let held = replacement.as_deref().or(Some(token));
        if self
            .remember_refused(&redeemed, Some(&session_id), token, held)
            .await
        {
            return Resolved::Anonymous;
        }
        let days = redeemed.days;
        let user_json = redeemed.user_id.to_string();
        let restored = self.write(|| {
            self.session()
                .set_login(redeemed.user_id, auth, session_id.clone(), false);
            if let (Some(tag), false) = (redeemed.confirmation, reissued) {
                // The browser's next request shows whether it got the new token.
                self.session().set_remember_confirmation(tag);
            }
            if let Some(replacement) = &replacement {
                self.set_remember_cookie_now(replacement, days);
            }
        });
        if restored.is_none() {
            // The handler logged in or out meanwhile: its word stands, and
            // this restore leaves the session and the cookie alone.
            tracing::debug!(target: "latch", "remembered login not restored: the handler logged in or out meanwhile");
            return Resolved::Anonymous;
        }
        tracing::info!(target: "latch", user_id = ?user.id(), "login restored from remember cookie");
        if redeemed.replacement.is_some() {
            self.emit(EventKind::RememberRotated, Some(user.id()), None);
        }
        self.emit(
            EventKind::LoggedIn(LoginMethod::Remembered),
            Some(user.id()),
            Some(session_id.clone()),
        );
        if let Some(registry) = &self.config.registry {
            registry
                .record(self.session_record(session_id, user_json, Some(days)))
                .await;
        }
        Resolved::User { user, fresh: false }
    }

    /// Whether the registry refuses the login that a remember cookie
    /// restores (into `session_id`): its session was ended, it was issued
    /// before its user's cut-off, or the registry is stale. If so, the
    /// cookie is dealt with: revoked and deleted (`held`, the token the
    /// browser would hold after this response, or else `token`), or, for a
    /// stale registry, kept for later.
    async fn remember_refused(
        &self,
        redeemed: &crate::remember::Redeemed,
        session_id: Option<&str>,
        token: &str,
        held: Option<&str>,
    ) -> bool {
        let Some(registry) = &self.config.registry else {
            return false;
        };
        let key = session_id.and_then(random::session_key).map(SessionKey);
        let issued = redeemed.issued_at.map(|at| whole_seconds(seconds(at)));
        let now = self.clock().unix_secs();
        match registry.refusal(key, &redeemed.user_id, None, issued, now) {
            None => false,
            Some(Refused::Ended(reason)) => {
                tracing::debug!(target: "latch", reason, "remember cookie rejected: its session was ended");
                let held = held.unwrap_or(token);
                if let Err(error) = self.config.remember.revoke(self.keys(), held).await {
                    tracing::error!(target: "latch", %error, "remember token not revoked");
                }
                self.delete_remember_cookie();
                true
            }
            Some(Refused::Stale) => {
                tracing::warn!(target: "latch", "remembered login refused: the session registry is out of date");
                if let Some(held) = held.filter(|held| *held != token) {
                    self.set_remember_cookie(held, redeemed.days);
                }
                true
            }
        }
    }

    /// The first request of a session made from a remember-me cookie that
    /// rotated: if it carries the new cookie, the browser has it, and from
    /// now on the cookie it replaced is a copy (see
    /// [`RememberTokens::confirm`]). Asked once; a store that fails leaves
    /// the replaced cookie acceptable until the next rotation.
    async fn confirm_remembered(&self) {
        let Some(tag) = self
            .write(|| self.session().take_remember_confirmation())
            .flatten()
        else {
            return;
        };
        let Some(token) = self.remember_cookie() else {
            return;
        };
        let remember = &self.config.remember;
        match remember.confirm(token, &tag).await {
            Ok(true) => tracing::debug!(target: "latch", "remember cookie confirmed"),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(target: "latch", %error, "remember cookie not confirmed")
            }
        }
    }

    /// Replaces a remember token made under a previous key with one made
    /// under the current key, for the same session id; on failure, keeps
    /// what the browser should have.
    async fn reissue(
        &self,
        token: &str,
        replacement: Option<String>,
        redeemed: &crate::remember::Redeemed,
        auth: &str,
        session_id: &str,
    ) -> Option<String> {
        let remember = &self.config.remember;
        let grant = crate::remember::RememberGrant {
            keys: self.keys(),
            user_id: &redeemed.user_id,
            fingerprint: auth,
            days: redeemed.days,
            now: self.clock().unix_secs(),
            user_agent: self.user_agent(),
            session_id: Some(session_id),
        };
        // The old token goes first: a store may keep one token per session id.
        let old = replacement.as_deref().unwrap_or(token);
        if let Err(error) = remember.revoke(self.keys(), old).await {
            tracing::error!(target: "latch", %error, "remember token of an old key not revoked");
            return replacement;
        }
        match remember.issue(grant).await {
            Ok(fresh) => Some(fresh),
            Err(error) => {
                // The browser keeps its session; it logs in again after.
                tracing::error!(target: "latch", %error, "remember token not moved to the current key");
                None
            }
        }
    }

    /// The registry's record of a login made now in this browser, under
    /// `session_id`, remembered for `days` if at all.
    pub fn session_record(
        &self,
        session_id: String,
        user_id: String,
        days: Option<u32>,
    ) -> SessionRecord {
        let now = self.clock().unix_secs();
        let absolute = self.session().config().absolute_timeout.as_secs();
        let remembered = days.map_or(0, |days| u64::from(days) * 24 * 60 * 60);
        SessionRecord {
            session_id,
            user_id,
            device: crate::remember::device::summarize(self.user_agent()),
            created_at: now,
            last_active_at: now,
            expires_at: now.saturating_add(absolute.max(remembered)),
            remembered: days.is_some(),
        }
    }

    /// The request's remember cookie, as found.
    fn remember_lookup(&self) -> &Lookup {
        self.state().remember_lookup()
    }

    /// Drops the user with this id from the user cache, if there is one.
    pub fn forget_cached_user(&self, user_id: &Value) {
        if let Some(cache) = &self.config.cache {
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
        let agent = self.state().user_agent()?.to_str().ok()?;
        Some(&agent[..agent.len().min(MAX_USER_AGENT)])
    }

    /// Sets the remember cookie on the response (unless the handler logged
    /// in or out since this search for the user began).
    pub fn set_remember_cookie(&self, token: &str, days: u32) {
        self.write(|| self.set_remember_cookie_now(token, days));
    }

    fn set_remember_cookie_now(&self, token: &str, days: u32) {
        let attributes = &self.session().site().attributes;
        let max_age = Duration::from_secs(u64::from(days) * 24 * 60 * 60);
        let name = &self.session().site().remember_cookie;
        let cookie = attributes.set(name, token, Some(max_age));
        *self.remember_update() = Some(cookie);
    }

    /// Deletes the remember cookie if the request had one or this response sets one.
    pub fn delete_remember_cookie(&self) {
        self.write(|| self.delete_remember_cookie_now());
    }

    fn delete_remember_cookie_now(&self) {
        let mut update = self.remember_update();
        if update.is_some() || *self.remember_lookup() != Lookup::Missing {
            *update = Some(
                self.session()
                    .site()
                    .attributes
                    .delete(&self.session().site().remember_cookie),
            );
        }
    }

    fn remember_update(&self) -> std::sync::MutexGuard<'_, Option<HeaderValue>> {
        self.state().remember_update()
    }

    /// Whether the request carried the remember cookie more than once.
    pub(crate) fn remember_duplicated(&self) -> bool {
        self.state().remember_duplicated()
    }

    pub(crate) fn take_remember_cookie(&self) -> Option<HeaderValue> {
        self.state().take_remember_update()
    }
}
