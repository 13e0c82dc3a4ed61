//! One request's session: the cookie, read from the request's headers by
//! the first extractor that needs it, the claims read from it, what
//! changed, and the `Set-Cookie` written back.

use http::header::{COOKIE, VARY};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::config::SiteConfig;
use crate::cookies::{self, Lookup};
use crate::crypto::random;
use crate::crypto::token::{self, Claims};
use crate::session::claims::*;
use crate::session::memo;
use crate::session::verified::{LoginClaims, VerifiedSession};
use crate::session::verify::{self, verify};
use crate::session::{SessionConfig, MAX_COOKIE_LEN};

/// One request's session: kept in the request's state (see
/// `login::request`), read by the layers, latch's extractors and the app's
/// handlers.
pub(crate) struct SessionState {
    config: Arc<SessionConfig>,
    /// The request's path and host, kept only when a cookie came more than
    /// once: to delete it wherever it could have been set.
    strays: OnceLock<Strays>,
    state: Mutex<State>,
}

/// Where a request's duplicated cookie could have been set.
struct Strays {
    path: PathAndQuery,
    host: Option<String>,
}

/// What latch reads of a request, borrowed while an extractor (or a route
/// guard) has it: the session is read from it the first time.
pub(crate) struct RequestView<'a> {
    pub headers: &'a HeaderMap,
    /// The path the browser asked for (before any nesting stripped a prefix).
    pub path: Option<&'a PathAndQuery>,
    /// The host the URI names, if it names one (else the `Host` header's).
    pub uri_host: Option<&'a str>,
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
    /// When the verified token's times were checked (seconds since the
    /// Unix epoch): the request's time, for checks that follow.
    checked_at: u64,
    /// The claims changed: the cookie must be written (or deleted).
    changed: bool,
    /// The cookie must be re-issued even if nothing changed (renewal, old key).
    renew: bool,
    /// Something looked at the session: the response depends on the cookie.
    read: bool,
}

impl SessionState {
    pub(crate) fn new(config: Arc<SessionConfig>) -> Self {
        Self {
            config,
            strays: OnceLock::new(),
            state: Mutex::new(State {
                loaded: false,
                verified: None,
                claims: Claims::new(),
                had_cookie: false,
                duplicated: false,
                issued_at: None,
                checked_at: 0,
                changed: false,
                renew: false,
                read: false,
            }),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The settings the rest of latch reads: keys, clock, cookies.
    pub fn site(&self) -> &SiteConfig {
        &self.config.site
    }

    /// Reads the session cookie from the request, the first time; later
    /// calls do nothing. Every extractor and route guard calls it before
    /// anything reads the session. It does not count as reading the
    /// session (no `Vary: Cookie` for it).
    pub fn prime(&self, request: &RequestView<'_>) {
        let mut state = self.raw_lock();
        if state.loaded {
            return;
        }
        state.loaded = true;
        // A browser sends the same `Cookie` header request after request:
        // one this thread has seen is not read again (only its token's
        // times are checked).
        let mut all = request.headers.get_all(COOKIE).iter();
        let single = match (all.next(), all.next()) {
            (Some(header), None) => Some(header),
            _ => None,
        };
        if let Some(header) = single {
            if let Some(verified) = memo::get(self.config.id, header.as_bytes()) {
                state.had_cookie = true;
                state.check(&self.config, verified);
                return;
            }
        }
        let cookie = cookies::find_borrowed(request.headers, &self.config.site.cookie_name);
        let verified = state.load(&self.config, cookie);
        if let (Some(header), Some(verified)) = (single, verified) {
            memo::put(self.config.id, header.as_bytes(), verified);
        }
        if state.duplicated {
            self.keep_strays(request);
        }
    }

    /// Keeps the request's path and host, to delete a duplicated cookie.
    pub fn keep_strays(&self, request: &RequestView<'_>) {
        let Some(path) = request.path else {
            return;
        };
        let host = match request.uri_host {
            Some(host) => HeaderValue::from_str(host).ok(),
            None => request.headers.get(http::header::HOST).cloned(),
        };
        let _ = self.strays.set(Strays {
            path: path.clone(),
            host: host.as_ref().and_then(cookies::request_host),
        });
    }

    fn raw_lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session, locked, with its cookie verified but not necessarily parsed.
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.raw_lock();
        // Every way into the session primes it first; should one not, the
        // session reads as empty rather than as someone else's.
        debug_assert!(state.loaded, "the session was read before it was primed");
        state.read = true;
        state
    }

    /// Whether finding the user may need the remember cookie: the session
    /// has no login, or one whose remember-me rotation is to be confirmed.
    pub fn login_needs_remember(&self) -> bool {
        let state = self.raw_lock();
        match &state.verified {
            Some(verified) => verified
                .login
                .as_ref()
                .is_none_or(|login| login.remember_confirm),
            None => {
                !state.claims.contains_key(USER_ID) || state.claims.contains_key(REMEMBER_CONFIRM)
            }
        }
    }

    /// Deletes the cookie `name` wherever else the request could have
    /// carried it from: at every path it could have been set for, host-only
    /// and for the request's host and each of its parent domains (where a
    /// sibling subdomain can plant a cookie). For a cookie the request had
    /// more than once, which latch cannot tell from a planted copy. The
    /// cookie at latch's own path and domain is written (or deleted)
    /// separately, after these.
    pub fn delete_strays(&self, headers: &mut HeaderMap, name: &str) {
        let Some(Strays { path, host }) = self.strays.get() else {
            return;
        };
        let attributes = &self.config.site.attributes;
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
                login.checked_at = Some(state.checked_at);
                Some(login)
            }
            None => LoginClaims::from_claims(&state.claims, state.issued_at),
        }
    }

    /// Records a login in the session, under the new `session_id`.
    pub fn set_login(&self, user_id: Value, auth: String, session_id: String, fresh: bool) {
        let now = self.config.site.clock.unix_secs();
        self.set_login_at(user_id, auth, session_id, fresh, now);
    }

    /// Records a login made at `login_at` (seconds since the Unix epoch):
    /// its absolute timeout and its freshness window count from then.
    pub fn set_login_at(
        &self,
        user_id: Value,
        auth: String,
        session_id: String,
        fresh: bool,
        login_at: u64,
    ) {
        let mut state = self.state();
        add_login(
            state.claims_mut(),
            user_id,
            auth,
            session_id,
            fresh,
            login_at,
        );
    }

    /// Whether the session still fits in a cookie with this login in it.
    pub fn login_fits(&self, user_id: &Value, auth: &str) -> bool {
        let mut claims = self.state().claims().clone();
        add_login(
            &mut claims,
            user_id.clone(),
            auth.to_owned(),
            placeholder_session_id(),
            true,
            0,
        );
        self.fits(&claims)
    }

    /// Replaces the fingerprint of the login in the session, keeping the
    /// rest. Returns whether the login is fresh.
    pub fn set_fingerprint(&self, auth: String) -> bool {
        let mut state = self.state();
        let fresh = state
            .claims()
            .get(FRESH)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        state
            .claims_mut()
            .insert(FINGERPRINT.to_owned(), Value::String(auth));
        fresh
    }

    /// Ties a login adopted from a Microdot token to `auth`: never fresh,
    /// its absolute timeout counted from now, and a session id of its own.
    /// Returns the new session id, or `None`, changing nothing, if no random
    /// id could be made.
    #[must_use]
    pub fn adopt_login(&self, auth: String) -> Option<String> {
        let Some(session_id) = random::session_id() else {
            tracing::error!(target: "latch", "Microdot login not adopted: the random source failed");
            return None;
        };
        let mut state = self.state();
        let claims = state.claims_mut();
        claims.insert(SESSION_ID.to_owned(), Value::String(session_id.clone()));
        claims.insert(FINGERPRINT.to_owned(), Value::String(auth));
        claims.insert(FRESH.to_owned(), Value::Bool(false));
        claims.insert(
            LOGIN_AT.to_owned(),
            Value::from(self.config.site.clock.unix_secs()),
        );
        Some(session_id)
    }

    /// The pending login of a two-step login, as the session holds it.
    pub fn pending(&self) -> Option<Value> {
        self.state().claims().get(PENDING).cloned()
    }

    /// Starts a pending login: the session's login, if any, is removed.
    pub fn set_pending(&self, pending: Value) {
        let mut state = self.state();
        let claims = state.claims_mut();
        for name in LOGIN_CLAIMS {
            claims.remove(name);
        }
        claims.insert(PENDING.to_owned(), pending);
    }

    /// Removes the pending login, if any.
    pub fn clear_pending(&self) {
        let mut state = self.state();
        if state.claims().contains_key(PENDING) {
            state.claims_mut().remove(PENDING);
        }
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

    /// The session cookie's value as [`write_to`](Self::write_to) would
    /// write it at `now` (seconds since the Unix epoch), for the cookies
    /// that `testing` makes.
    #[cfg(feature = "testing")]
    pub(crate) fn token_at(&self, now: u64) -> String {
        let mut state = self.raw_lock();
        state.parse();
        state.token(&self.config, now)
    }

    /// Adds `Vary: Cookie` and the session cookie to a response, as needed.
    pub(crate) fn write_to(&self, headers: &mut HeaderMap) {
        let mut state = self
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
        let config = &self.config;
        if state.duplicated {
            self.delete_strays(headers, &config.site.cookie_name);
        }
        if state.claims.is_empty() {
            if state.had_cookie {
                cookies::append(
                    headers,
                    config.site.attributes.delete(&config.site.cookie_name),
                );
            }
            return;
        }
        let now = config.site.clock.unix_secs();
        let value = state.token(config, now);
        cookies::append(
            headers,
            config
                .site
                .attributes
                .set(&config.site.cookie_name, &value, None),
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
    /// The session cookie's value for these claims, as written at `now`
    /// (seconds since the Unix epoch): it expires an idle timeout later.
    fn token(&self, config: &SessionConfig, now: u64) -> String {
        let mut claims = self.claims.clone();
        claims.insert(PURPOSE.to_owned(), Value::from(SESSION_PURPOSE));
        // A login latch has not adopted yet (Microdot's, with no
        // fingerprint) is dated by the token's `iat`: re-issuing it must
        // keep that, or a copy made before a password change would come
        // back dated after it.
        let unadopted = claims.contains_key(USER_ID) && !claims.contains_key(FINGERPRINT);
        let iat = match (unadopted, self.issued_at) {
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
        token::encode(&claims, config.site.keys.current())
    }

    /// Reads the session cookie found in the request. Returns the verified
    /// token, if it checked out, for the memo of whole `Cookie` headers.
    fn load(
        &mut self,
        config: &SessionConfig,
        cookie: Lookup<&str>,
    ) -> Option<Arc<VerifiedSession>> {
        let value = match cookie {
            Lookup::Missing => return None,
            Lookup::Found(value) => value,
            Lookup::Duplicate => {
                // Which one is latch's cannot be told: delete them all.
                tracing::debug!(target: "latch", reason = "duplicated cookie", "session cookie rejected");
                self.had_cookie = true;
                self.duplicated = true;
                self.changed = true;
                return None;
            }
            Lookup::Unreadable => {
                tracing::debug!(target: "latch", reason = "Cookie header is not text", "session cookie rejected");
                return None;
            }
        };
        self.had_cookie = true;
        match verify(config, value) {
            Ok((verified, renew, now)) => self.accept(verified, renew, now),
            Err(reason) => {
                self.reject(reason);
                None
            }
        }
    }

    /// Takes a token verified before (found in the memo), checking its times.
    fn check(&mut self, config: &SessionConfig, verified: Arc<VerifiedSession>) {
        match verify::check(config, verified) {
            Ok((verified, renew, now)) => {
                self.accept(verified, renew, now);
            }
            Err(reason) => self.reject(reason),
        }
    }

    fn accept(
        &mut self,
        verified: Arc<VerifiedSession>,
        renew: bool,
        now: u64,
    ) -> Option<Arc<VerifiedSession>> {
        self.issued_at = verified.iat.at();
        self.checked_at = now;
        self.verified = Some(verified.clone());
        self.renew = renew;
        Some(verified)
    }

    fn reject(&mut self, reason: verify::Rejected) {
        tracing::debug!(target: "latch", %reason, "session cookie rejected");
        // Delete the bad cookie rather than have it sent again and again.
        self.changed = true;
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

/// A stand-in for a session id, of the same length, to measure a cookie.
fn placeholder_session_id() -> String {
    "s".repeat(random::ID_LEN)
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

impl SessionState {
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
        add_login(
            &mut with_login,
            placeholder_id,
            placeholder_auth,
            placeholder_session_id(),
            true,
            0,
        );
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
        self.config.site.cookie_name.len() + 1 + token <= MAX_COOKIE_LEN
    }
}
