//! The attacker's kit, shared by the `attacks` suite and `core::key_rotation`:
//! one app with every kind of route latch guards, real tokens to start from,
//! hand-signed tokens, and a probe that tells whether a request was anonymous.
//!
//! The app has a `CurrentUser` route (`/private`), a `FreshUser` route
//! (`/fresh`), an `Option<CurrentUser>` route (`/maybe`) and a `SessionData` route
//! (`/data`). A probe sends the same cookies to all four: an anonymous
//! request is redirected to the login page by the first two and answered
//! `200` by the other two, with no user and no session data. A session
//! cookie issued in reply is sent back, and must not log anyone in either.
//!
//! Tokens are made from real ones (a login through the router), edited, and
//! where a case needs a *valid* signature over a bad header or payload,
//! signed by hand with HMAC-SHA256 (`hmac` and `sha2` are dependencies of
//! latch, so tests can use them too).

use super::jwt::{self, Claims};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use axum_latch::session::SessionError;
use axum_latch::{
    Auth, CurrentUser, FreshUser, Login, Remember, SecretKey, Session, SessionData, User,
    UserLoader,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tower::ServiceExt;

use super::{key, KEY};

/// A key of the right length that is not the app's.
pub const OTHER_KEY: &str = "not the app's key, but just as long as the real one";
pub const DAY: u64 = 24 * 60 * 60;

pub fn other_key() -> SecretKey {
    SecretKey::new(OTHER_KEY).expect("the other key is long enough")
}

// ---------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Account {
    pub id: u64,
    pub name: String,
    pub hash: String,
}

impl User for Account {
    type Id = u64;
    fn id(&self) -> u64 {
        self.id
    }
    fn auth_hash(&self) -> &[u8] {
        self.hash.as_bytes()
    }
}

/// The user table: alice (1) and bob (2). Clones share it.
#[derive(Clone)]
pub struct Users(Arc<Mutex<HashMap<u64, Account>>>);

impl Users {
    pub fn new() -> Self {
        let users = [(1, "alice"), (2, "bob")]
            .into_iter()
            .map(|(id, name)| {
                let hash = format!("{name}'s password hash");
                let name = name.to_owned();
                (id, Account { id, name, hash })
            })
            .collect();
        Self(Arc::new(Mutex::new(users)))
    }

    pub fn find(&self, id: u64) -> Option<Account> {
        self.0.lock().unwrap().get(&id).cloned()
    }

    /// Changes a user's `auth_hash` behind latch's back (a password reset
    /// by an admin, say).
    pub fn set_hash(&self, id: u64, hash: &str) -> Account {
        let mut users = self.0.lock().unwrap();
        let user = users.get_mut(&id).expect("a known user");
        user.hash = hash.to_owned();
        user.clone()
    }
}

impl Default for Users {
    fn default() -> Self {
        Self::new()
    }
}

/// The `Login` layer over `users`, with the defaults.
pub fn login_layer(users: &Users) -> Login<Account, impl UserLoader<Account> + use<>> {
    let users = users.clone();
    Login::new(move |id: u64| {
        let found = users.find(id);
        async move { Ok::<_, std::convert::Infallible>(found) }
    })
}

/// The routes, without the latch layers.
///
/// `GET /value/{name}` answers the JSON of the session's `name`, or `none`;
/// `POST /login/{id}` logs the user in with remember-me on, after storing
/// `theme=dark` in the session (the data a refused token must lose);
/// `POST /logout` logs out; `POST /password/{hash}` changes the logged-in
/// user's `auth_hash` and keeps this session (`Auth::update_user`);
/// `POST /notes/{len}` stores a string of `len` bytes in the session, and
/// `GET /notes` says how long the stored one is.
pub fn routes(users: &Users) -> Router {
    Router::new()
        .route(
            "/private",
            get(|CurrentUser(user): CurrentUser<Account>| async move {
                format!("private:{}", user.name)
            }),
        )
        .route(
            "/fresh",
            get(
                |FreshUser(user): FreshUser<Account>| async move { format!("fresh:{}", user.name) },
            ),
        )
        .route(
            "/maybe",
            get(|user: Option<CurrentUser<Account>>| async move {
                match user {
                    Some(CurrentUser(user)) => format!("user:{}", user.name),
                    None => "anonymous".to_owned(),
                }
            }),
        )
        .route(
            "/data",
            get(|session: SessionData| async move {
                session
                    .get::<String>("theme")
                    .unwrap_or_else(|| "none".into())
            }),
        )
        .route(
            "/value/{name}",
            get(
                |session: SessionData, Path(name): Path<String>| async move {
                    session
                        .get::<Value>(&name)
                        .map_or_else(|| "none".to_owned(), |value| value.to_string())
                },
            ),
        )
        .route(
            "/login/{id}",
            post(
                |State(users): State<Users>,
                 auth: Auth<Account>,
                 session: SessionData,
                 Path(id): Path<u64>| async move {
                    let Some(user) = users.find(id) else {
                        return StatusCode::NOT_FOUND.into_response();
                    };
                    if let Err(error) = session.insert("theme", "dark") {
                        return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
                            .into_response();
                    }
                    auth.login_user(&user, Remember::On).await.into_response()
                },
            ),
        )
        .route(
            "/logout",
            post(|auth: Auth<Account>| async move {
                auth.logout_user().await;
                "logged out"
            }),
        )
        .route(
            "/password/{hash}",
            post(
                |State(users): State<Users>,
                 CurrentUser(user): CurrentUser<Account>,
                 auth: Auth<Account>,
                 Path(hash): Path<String>| async move {
                    let user = users.set_hash(user.id, &hash);
                    if auth.update_user(&user).await {
                        "password changed"
                    } else {
                        "update_user refused the session's own user"
                    }
                },
            ),
        )
        .route(
            "/notes",
            get(|session: SessionData| async move {
                session
                    .get::<String>("notes")
                    .map_or(0, |notes| notes.len())
                    .to_string()
            }),
        )
        .route(
            "/notes/{len}",
            post(|session: SessionData, Path(len): Path<usize>| async move {
                match session.insert("notes", "n".repeat(len)) {
                    Ok(()) => (StatusCode::OK, "accepted".to_owned()),
                    Err(SessionError::TooLarge { key, max }) => (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("too large: {key} {max}"),
                    ),
                    Err(other) => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
                }
            }),
        )
        .with_state(users.clone())
}

pub fn app_with<L: UserLoader<Account>>(
    users: &Users,
    login: Login<Account, L>,
    session: Session,
) -> Router {
    routes(users).layer(login).layer(session)
}

/// The app with latch's defaults and the test key.
pub fn app() -> Router {
    let users = Users::new();
    app_with(&users, login_layer(&users), Session::new(key()))
}

pub async fn send(
    app: &Router,
    method: &str,
    path: &str,
    cookies: &[HeaderValue],
) -> Response<Body> {
    // A browser navigating: an anonymous one is sent to the login page.
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("sec-fetch-mode", "navigate")
        .header(http::header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    for cookie in cookies {
        request.headers_mut().append(COOKIE, cookie.clone());
    }
    app.clone()
        .oneshot(request)
        .await
        .expect("the router is infallible")
}

pub async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Name and value of a `Set-Cookie` header.
pub fn name_value(set_cookie: &str) -> (String, String) {
    let pair = set_cookie.split(';').next().unwrap_or("");
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (name.trim().to_owned(), value.trim().to_owned())
}

pub fn is_deletion(set_cookie: &str) -> bool {
    set_cookie
        .split(';')
        .skip(1)
        .any(|a| a.trim().eq_ignore_ascii_case("Max-Age=0"))
}

/// The value a response sets (not deletes) for the cookie `name`.
pub fn issued(response: &Response<Body>, name: &str) -> Option<String> {
    first_issued(&set_cookies(response), name)
}

/// The first value `set_cookies` set (not delete) for the cookie `name`.
fn first_issued(set_cookies: &[String], name: &str) -> Option<String> {
    set_cookies
        .iter()
        .map(|set| name_value(set))
        .find(|(n, value)| n == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// A `Cookie` header with one cookie.
pub fn header(name: &str, token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}={token}"))
        .unwrap_or_else(|_| panic!("{name}={token:?} is a header value"))
}

// ---------------------------------------------------------------------------
// Real tokens
// ---------------------------------------------------------------------------

/// A real login's cookies, and their claims.
#[derive(Clone)]
pub struct Fixtures {
    pub session: String,
    pub remember: String,
    pub session_claims: Claims,
    pub remember_claims: Claims,
}

/// Logs alice in through the router.
pub async fn fixtures(app: &Router) -> Fixtures {
    fixtures_of(app, 1).await
}

/// Logs the user `id` in through the router, with remember-me on.
pub async fn fixtures_of(app: &Router, id: u64) -> Fixtures {
    let response = send(app, "POST", &format!("/login/{id}"), &[]).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the fixture login succeeds"
    );
    let session = issued(&response, "session").expect("the login sets a session cookie");
    let remember = issued(&response, "_remember").expect("the login sets a remember cookie");
    let session_claims = jwt::decode(&session, &[super::KEY]).unwrap();
    let remember_claims = jwt::decode(&remember, &[super::KEY]).unwrap();
    assert_eq!(session_claims["_user_id"], json!(id));
    assert_eq!(remember_claims["user_id"], json!(id));
    Fixtures {
        session,
        remember,
        session_claims,
        remember_claims,
    }
}

/// One of the two tokens of a login, to forge from.
pub struct Target<'a> {
    /// `session` or `_remember`.
    pub cookie: &'static str,
    pub token: &'a str,
    pub claims: &'a Claims,
    /// Where the token keeps the user id: `_user_id` or `user_id`.
    pub id_field: &'static str,
}

impl Fixtures {
    /// The session token, then the remember token.
    pub fn targets(&self) -> [Target<'_>; 2] {
        [
            Target {
                cookie: "session",
                token: &self.session,
                claims: &self.session_claims,
                id_field: "_user_id",
            },
            Target {
                cookie: "_remember",
                token: &self.remember,
                claims: &self.remember_claims,
                id_field: "user_id",
            },
        ]
    }
}

// ---------------------------------------------------------------------------
// Hand-made tokens
// ---------------------------------------------------------------------------

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub const HS256: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

pub fn mac(key: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A token over any header and payload bytes, correctly signed with `key`.
pub fn sign_raw(header: &[u8], payload: &[u8], key: &str) -> String {
    sign_segments(&b64(header), &b64(payload), key)
}

/// A token over already-encoded segments, correctly signed with `key`.
pub fn sign_segments(header: &str, payload: &str, key: &str) -> String {
    let signed = format!("{header}.{payload}");
    let signature = b64(mac(key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// An HS256 token over any payload bytes, signed with the app's key.
pub fn signed_payload(payload: &[u8]) -> String {
    sign_raw(HS256, payload, KEY)
}

pub fn signed_claims(claims: &Claims) -> String {
    signed_payload(&serde_json::to_vec(claims).unwrap())
}

pub fn with(claims: &Claims, name: &str, value: Value) -> Claims {
    let mut claims = claims.clone();
    claims.insert(name.to_owned(), value);
    claims
}

pub fn without(claims: &Claims, name: &str) -> Claims {
    let mut claims = claims.clone();
    claims.remove(name);
    claims
}

/// The JSON of `claims` with `name` set to `raw`, written as is (for
/// numbers serde_json would not write, such as `1e400`).
pub fn raw_payload(claims: &Claims, name: &str, raw: &str) -> Vec<u8> {
    let rest = serde_json::to_string(&without(claims, name)).unwrap();
    let rest = rest.strip_prefix('{').unwrap();
    let separator = if rest == "}" { "" } else { "," };
    format!("{{{}:{raw}{separator}{rest}", json!(name)).into_bytes()
}

pub fn split(token: &str) -> (&str, &str, &str) {
    let mut parts = token.split('.');
    let parts = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert_eq!(
        parts.0.len() + parts.1.len() + parts.2.len() + 2,
        token.len(),
        "three parts"
    );
    parts
}

/// `text` with the character at `index` replaced by another base64url one.
/// `A` and `E` (0 and 4) both leave the two low bits clear, so the last
/// character of a signature stays a strict encoding, whatever it was:
/// the token keeps its shape and reaches the signature check.
pub fn flip(text: &str, index: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'E' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

// ---------------------------------------------------------------------------
// Probing a request
// ---------------------------------------------------------------------------

/// What the four routes answered for one set of cookies.
pub struct Outcome {
    pub private: (StatusCode, Option<String>),
    pub fresh: StatusCode,
    pub maybe: (StatusCode, String),
    pub data: (StatusCode, String),
    /// Every `Set-Cookie` of every response.
    pub set_cookies: Vec<String>,
}

impl Outcome {
    /// The value the responses set (not deleted) for the cookie `name`.
    pub fn issued(&self, name: &str) -> Option<String> {
        first_issued(&self.set_cookies, name)
    }
}

pub async fn probe(app: &Router, cookies: &[HeaderValue]) -> Outcome {
    let mut set = Vec::new();
    let private = send(app, "GET", "/private", cookies).await;
    set.extend(set_cookies(&private));
    let location = private
        .headers()
        .get(LOCATION)
        .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
    let private = (private.status(), location);
    let fresh = send(app, "GET", "/fresh", cookies).await;
    set.extend(set_cookies(&fresh));
    let maybe = send(app, "GET", "/maybe", cookies).await;
    set.extend(set_cookies(&maybe));
    let maybe = (maybe.status(), body_text(maybe).await);
    let data = send(app, "GET", "/data", cookies).await;
    set.extend(set_cookies(&data));
    let data = (data.status(), body_text(data).await);
    Outcome {
        private,
        fresh: fresh.status(),
        maybe,
        data,
        set_cookies: set,
    }
}

/// Why `outcome` is not that of an anonymous request; empty if it is.
/// `data` is what the `SessionData` route must answer (`None`: any `200`).
pub fn not_anonymous(outcome: &Outcome, data: Option<&str>) -> Vec<String> {
    let mut problems = Vec::new();
    let (status, location) = &outcome.private;
    if *status != StatusCode::FOUND
        || !location
            .as_deref()
            .is_some_and(|l| l.starts_with("/login?next="))
    {
        problems.push(format!(
            "CurrentUser route: expected 302 to /login?next=..., got {status} {location:?}"
        ));
    }
    if outcome.fresh != StatusCode::FOUND {
        problems.push(format!(
            "FreshUser route: expected 302, got {}",
            outcome.fresh
        ));
    }
    if outcome.maybe != (StatusCode::OK, "anonymous".to_owned()) {
        problems.push(format!(
            "Option<CurrentUser> route: expected 200 anonymous, got {:?}",
            outcome.maybe
        ));
    }
    match data {
        Some(data) if outcome.data != (StatusCode::OK, data.to_owned()) => problems.push(format!(
            "SessionData route: expected 200 {data:?}, got {:?}",
            outcome.data
        )),
        None if outcome.data.0 != StatusCode::OK => problems.push(format!(
            "SessionData route: expected 200, got {:?}",
            outcome.data
        )),
        _ => {}
    }
    for set in &outcome.set_cookies {
        let (name, value) = name_value(set);
        match name.as_str() {
            _ if value.is_empty() => {}
            // Checked by sending it back: see `anonymity_problems`.
            "session" => {}
            "_remember" => problems.push(format!("a remember cookie was issued: {set}")),
            _ => problems.push(format!("an unexpected cookie was set: {set}")),
        }
    }
    problems
}

/// The session cookies (not deletions) the responses set, once each, as
/// `Cookie` headers to send back.
fn issued_sessions(outcome: &Outcome) -> Vec<HeaderValue> {
    let mut issued: Vec<HeaderValue> = Vec::new();
    for set in &outcome.set_cookies {
        let (name, value) = name_value(set);
        if name == "session" && !value.is_empty() {
            let cookie = header("session", &value);
            if !issued.contains(&cookie) {
                issued.push(cookie);
            }
        }
    }
    issued
}

/// Sends `cookies` to the four routes, then sends back every session cookie
/// the responses issued: neither may log anyone in.
pub async fn anonymity_problems(
    app: &Router,
    cookies: &[HeaderValue],
    data: Option<&str>,
) -> (Outcome, Vec<String>) {
    let outcome = probe(app, cookies).await;
    let problems = replay_problems(app, &outcome, data).await;
    (outcome, problems)
}

/// Why the requests probed in `outcome` were not anonymous, or the session
/// cookies they were given, sent back, are not.
async fn replay_problems(app: &Router, outcome: &Outcome, data: Option<&str>) -> Vec<String> {
    let mut problems = not_anonymous(outcome, data);
    for issued in issued_sessions(outcome) {
        let replay = probe(app, std::slice::from_ref(&issued)).await;
        for problem in not_anonymous(&replay, None) {
            problems.push(format!(
                "sent back, the session cookie issued in reply logs in: {problem} ({issued:?})"
            ));
        }
    }
    problems
}

/// What is wrong with `rejections` (latch's `debug` reasons, see
/// `trace::CapturedEvent::rejection`) for a request that `reason` must have
/// refused: there must be some, and each must be that one, not another
/// check that happens to refuse the same token.
pub fn refused_by(rejections: &[String], reason: &str) -> Vec<String> {
    if reason == reasons::NONE_LOGGED {
        return rejections
            .iter()
            .map(|rejection| format!("refused as {rejection:?}, expected no rejection"))
            .collect();
    }
    if rejections.is_empty() {
        return vec![format!("no rejection logged; expected {reason:?}")];
    }
    rejections
        .iter()
        .filter(|rejection| !rejection.contains(reason))
        .map(|rejection| format!("refused as {rejection:?}, expected {reason:?}"))
        .collect()
}

pub fn deletes(outcome: &Outcome, name: &str) -> bool {
    outcome
        .set_cookies
        .iter()
        .any(|set| name_value(set) == (name.to_owned(), String::new()) && is_deletion(set))
}

pub struct Case {
    pub name: String,
    pub cookies: Vec<HeaderValue>,
    /// The cookie latch should delete, if it can tell which is bad.
    pub deleted: Option<&'static str>,
    /// What the `SessionData` route must say: `"none"` when the session
    /// token is refused, `"dark"` (the fixture's data) when the token is good
    /// and only the login in it is not; `None` to not check.
    pub data: Option<&'static str>,
    /// Why latch must refuse it (see [`reasons`]); `None` to not check.
    pub reason: Option<&'static str>,
}

impl Case {
    /// A case where nothing of the session survives.
    pub fn empty(
        name: impl Into<String>,
        cookies: Vec<HeaderValue>,
        deleted: Option<&'static str>,
    ) -> Self {
        Self {
            name: name.into(),
            cookies,
            deleted,
            data: Some("none"),
            reason: None,
        }
    }

    /// The case, which latch must refuse for `reason`.
    pub fn because(self, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..self
        }
    }
}

/// The reasons latch gives, in its `debug` events, for what it refuses: the
/// check that refused a token.
pub mod reasons {
    /// No rejection logged at all: latch reads the token as no login.
    pub const NONE_LOGGED: &str = "";
    /// Too long: refused before anything is decoded.
    pub const TOO_LONG: &str = "token is longer than 8192 bytes";
    /// Not three base64url parts, or a signature of the wrong length.
    pub const MALFORMED: &str = "token is not three base64url parts";
    pub const SIGNATURE: &str = "signature does not match any key";
    pub const HEADER: &str = "header is not HS256";
    pub const PAYLOAD: &str = "payload is not a JSON object";
    pub const NO_EXPIRY: &str = "token has no expiry";
    pub const EXPIRED: &str = "token has expired";
    pub const NOT_YET_VALID: &str = "token is not valid yet";
    pub const DUPLICATED: &str = "duplicated";
    pub const LOGIN_TIME: &str = "login time is not a number";
    pub const NO_LOGIN_TIME: &str = "login rejected: no login time";
    pub const ABSOLUTE_TIMEOUT: &str = "login is older than the absolute timeout";
    pub const NO_FINGERPRINT: &str = "no fingerprint";
    pub const AUTH_HASH_CHANGED: &str = "login rejected: auth_hash changed";
    pub const USER_ID_TYPE: &str = "login rejected: user id of another type";
    pub const NO_SUCH_USER: &str = "login rejected: no such user";
    pub const DAYS: &str = "days is not a whole number from 1 to 3650";
    pub const NOT_A_SESSION: &str = "not a session token";
}

/// Sends every case, and fails with the list of every case that was not
/// anonymous (not just the first).
pub async fn assert_all_anonymous(app: &Router, cases: Vec<Case>) {
    assert!(!cases.is_empty());
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let (captured, guard) = super::trace::capture();
        let outcome = probe(app, &case.cookies).await;
        drop(guard);
        let mut problems = replay_problems(app, &outcome, case.data).await;
        if let Some(reason) = case.reason {
            problems.extend(refused_by(&captured.take_rejections(), reason));
        }
        if let Some(name) = case.deleted {
            if !deletes(&outcome, name) {
                problems.push(format!(
                    "the bad `{name}` cookie was not deleted; Set-Cookie: {:?}",
                    outcome.set_cookies
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}:\n    {}", case.name, problems.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases were not anonymous (or not refused for their reason):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A forged token, named for the attack.
pub struct Forgery {
    pub name: String,
    pub token: String,
    /// The token itself is good (latch's own signature, header and expiry)
    /// and only the login in it is not: in the session cookie, latch drops
    /// the login and keeps the rest of the session.
    pub login_only: bool,
    /// Why latch must refuse it (see [`reasons`]); `None`: the default of
    /// [`assert_forgeries_refused`], if any.
    pub reason: Option<&'static str>,
}

impl Forgery {
    /// The forgery, which latch must refuse for `reason`.
    pub fn because(self, reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..self
        }
    }
}

/// A forgery whose token latch must refuse outright.
pub fn forged(name: impl Into<String>, token: String) -> Forgery {
    Forgery {
        name: name.into(),
        token,
        login_only: false,
        reason: None,
    }
}

/// A forgery in a good token: only its login must be refused.
pub fn forged_login(name: impl Into<String>, token: String) -> Forgery {
    Forgery {
        login_only: true,
        ..forged(name, token)
    }
}

/// Two real logins (with remember-me) on one app: the victim's and the
/// attacker's own.
pub struct Logins {
    pub alice: Fixtures,
    pub bob: Fixtures,
}

impl Logins {
    /// Bob's token of the same kind as `target`.
    pub fn bobs<'a>(&'a self, target: &Target<'_>) -> (&'a str, &'a Claims) {
        if target.cookie == "session" {
            (&self.bob.session, &self.bob.session_claims)
        } else {
            (&self.bob.remember, &self.bob.remember_claims)
        }
    }
}

/// The default app, with alice and then bob logged in.
pub async fn two_logins() -> (Router, Logins) {
    let app = app();
    let alice = fixtures(&app).await;
    let bob = fixtures_of(&app, 2).await;
    (app, Logins { alice, bob })
}

/// Makes the forgeries of `make` from both of alice's tokens (with both
/// logins at hand), and asserts that each, sent in its own cookie, is
/// anonymous and (when latch can tell the token is bad) deleted.
pub async fn assert_forgeries_anonymous(make: impl Fn(&Target<'_>, &Logins) -> Vec<Forgery>) {
    assert_forgeries(None, make).await;
}

/// [`assert_forgeries_anonymous`], and each forgery is refused for its own
/// reason or else for `reason`.
pub async fn assert_forgeries_refused(
    reason: &'static str,
    make: impl Fn(&Target<'_>, &Logins) -> Vec<Forgery>,
) {
    assert_forgeries(Some(reason), make).await;
}

async fn assert_forgeries(
    reason: Option<&'static str>,
    make: impl Fn(&Target<'_>, &Logins) -> Vec<Forgery>,
) {
    let (app, logins) = two_logins().await;
    let mut cases = Vec::new();
    for target in logins.alice.targets() {
        let session = target.cookie == "session";
        for forgery in make(&target, &logins) {
            let keeps_data = session && forgery.login_only;
            cases.push(Case {
                name: format!("{}: {}", target.cookie, forgery.name),
                cookies: vec![header(target.cookie, &forgery.token)],
                // A bad remember cookie is always deleted; a session cookie
                // only when the token itself is refused.
                deleted: (!keeps_data).then_some(target.cookie),
                data: Some(if keeps_data { "dark" } else { "none" }),
                reason: forgery.reason.or(reason),
            });
        }
    }
    assert_all_anonymous(&app, cases).await;
}

/// Asserts the request is logged in as alice.
pub async fn assert_alice(
    app: &Router,
    cookies: &[HeaderValue],
    fresh: bool,
    context: &str,
) -> Outcome {
    let outcome = probe(app, cookies).await;
    assert_eq!(
        outcome.private,
        (StatusCode::OK, None),
        "{context}: CurrentUser lets alice in"
    );
    assert_eq!(
        outcome.maybe,
        (StatusCode::OK, "user:alice".to_owned()),
        "{context}: Option<CurrentUser> sees alice"
    );
    let expected_fresh = if fresh {
        StatusCode::OK
    } else {
        StatusCode::FOUND
    };
    assert_eq!(outcome.fresh, expected_fresh, "{context}: FreshUser");
    outcome
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub app: Router,
    pub fixtures: Fixtures,
}

/// One app, runtime and login for all the cases of a property test.
pub fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let app = app();
        let fixtures = runtime.block_on(fixtures(&app));
        Harness {
            runtime,
            app,
            fixtures,
        }
    })
}

/// Sends `cookies` to the four routes; Err with the problems if the request
/// was not anonymous.
pub fn check_anonymous(cookies: &[HeaderValue]) -> Result<(), String> {
    let h = harness();
    let (_, problems) = h
        .runtime
        .block_on(anonymity_problems(&h.app, cookies, Some("none")));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `cookie=token` with the byte at `index` of the token replaced, if that
/// changes it.
pub fn with_one_byte_changed(
    cookie: &str,
    token: &str,
    index: prop::sample::Index,
    replacement: u8,
) -> Option<HeaderValue> {
    let mut bytes = token.as_bytes().to_vec();
    let i = index.index(bytes.len());
    if bytes[i] == replacement {
        return None;
    }
    bytes[i] = replacement;
    let value = [format!("{cookie}=").into_bytes(), bytes].concat();
    Some(HeaderValue::from_bytes(&value).unwrap())
}

/// [`check_anonymous`], and why latch refused what it refused meanwhile
/// (see `trace::CapturedEvent::rejection`).
pub fn check_anonymous_why(cookies: &[HeaderValue]) -> (Result<(), String>, Vec<String>) {
    let (captured, guard) = super::trace::capture();
    let result = check_anonymous(cookies);
    drop(guard);
    (result, captured.take_rejections())
}

/// How many cases of a property reached the check it is about, of how many
/// ran.
#[derive(Debug)]
pub struct Reach {
    pub reached: usize,
    pub total: usize,
}

impl Reach {
    /// The share of cases that reached the check.
    pub fn share(&self) -> f64 {
        self.reached as f64 / self.total.max(1) as f64
    }

    /// Fails unless at least `share` of the cases reached `check`: a
    /// property whose cases mostly stop short of the code it tests proves
    /// little.
    pub fn assert_at_least(&self, share: f64, check: &str) {
        eprintln!(
            "{check}: {} of {} cases ({:.0} %)",
            self.reached,
            self.total,
            100.0 * self.share()
        );
        assert!(
            self.total > 0 && self.share() >= share,
            "only {} of {} cases reached {check} (at least {:.0} % should)",
            self.reached,
            self.total,
            100.0 * share
        );
    }
}

/// Runs `test` on `cases` values of `strategy`, as `proptest!` does (with
/// the failures it finds kept beside `source_file`), and counts the cases
/// for which `test` says (`Ok(true)`) that they reached the check under
/// test.
pub fn run_property<S: Strategy>(
    source_file: &'static str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) -> Reach {
    use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let config = Config {
        cases,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    let reached = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    let outcome = TestRunner::new(config).run(&strategy, |value| {
        total.fetch_add(1, Ordering::Relaxed);
        if test(value)? {
            reached.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    Reach {
        reached: reached.into_inner(),
        total: total.into_inner(),
    }
}
