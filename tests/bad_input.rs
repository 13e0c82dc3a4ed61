//! Hostile and broken cookies: whatever a client sends in its `Cookie`
//! header, the request is anonymous (or keeps the good login it has), never a
//! panic, never a 5xx.
//!
//! The router has a `CurrentUser` route (`/private`), a `FreshUser` route
//! (`/fresh`), a `MaybeUser` route (`/maybe`) and a `SessionData` route
//! (`/data`). Each bad cookie is sent to all four: an anonymous request is
//! redirected to the login page by the first two and answered `200` by the
//! other two, with no user and no session data.
//!
//! Tokens are made from real ones (a login through the router), edited, and
//! where a case needs a *valid* signature over a bad header or payload,
//! signed by hand with HMAC-SHA256 (`hmac` and `sha2` are dependencies of
//! latch, so tests can use them too).

use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::BodyExt;
use latch::token::{self, Claims};
use latch::{
    Auth, CurrentUser, FreshUser, KeyRing, Login, MaybeUser, Remember, SecretKey, Session,
    SessionData, User,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::Sha256;
use std::convert::Infallible;
use std::sync::OnceLock;
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------

const KEY: &str = "the key of the bad-input tests, long enough for latch";
const OTHER_KEY: &str = "not the app's key, but just as long as the real one";
const DAY: u64 = 24 * 60 * 60;

fn key() -> SecretKey {
    SecretKey::new(KEY).unwrap()
}

#[derive(Clone, Debug)]
struct Account {
    id: u64,
    name: &'static str,
    hash: &'static str,
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

/// The in-memory user table.
fn find(id: u64) -> Option<Account> {
    match id {
        1 => Some(Account {
            id: 1,
            name: "alice",
            hash: "alice's password hash",
        }),
        2 => Some(Account {
            id: 2,
            name: "bob",
            hash: "bob's password hash",
        }),
        _ => None,
    }
}

fn app() -> Router {
    let login = Login::<Account>::new(|id: u64| async move { Ok::<_, Infallible>(find(id)) });
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
            get(|MaybeUser(user): MaybeUser<Account>| async move {
                match user {
                    Some(user) => format!("user:{}", user.name),
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
            "/login/{id}",
            post(
                |auth: Auth<Account>, session: SessionData, Path(id): Path<u64>| async move {
                    let Some(user) = find(id) else {
                        return StatusCode::NOT_FOUND.into_response();
                    };
                    session.insert("theme", "dark").unwrap();
                    auth.login_user(&user, Remember::On).await.into_response()
                },
            ),
        )
        .layer(login)
        .layer(Session::new(key()))
}

async fn send(app: &Router, method: &str, path: &str, cookies: &[HeaderValue]) -> Response<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
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

async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Name and value of a `Set-Cookie` header.
fn name_value(set_cookie: &str) -> (String, String) {
    let pair = set_cookie.split(';').next().unwrap_or("");
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    (name.trim().to_owned(), value.trim().to_owned())
}

fn is_deletion(set_cookie: &str) -> bool {
    set_cookie
        .split(';')
        .skip(1)
        .any(|a| a.trim().eq_ignore_ascii_case("Max-Age=0"))
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// A real login's cookies, and their claims.
#[derive(Clone)]
struct Fixtures {
    session: String,
    remember: String,
    session_claims: Claims,
    remember_claims: Claims,
}

async fn fixtures(app: &Router) -> Fixtures {
    let response = send(app, "POST", "/login/1", &[]).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the fixture login succeeds"
    );
    let mut session = None;
    let mut remember = None;
    for set in set_cookies(&response) {
        match name_value(&set) {
            (name, value) if name == "session" => session = Some(value),
            (name, value) if name == "_remember" => remember = Some(value),
            _ => {}
        }
    }
    let session = session.expect("the login sets a session cookie");
    let remember = remember.expect("the login sets a remember cookie");
    let ring = KeyRing::new(key());
    let session_claims = token::decode(&session, &ring).unwrap().claims;
    let remember_claims = token::decode(&remember, &ring).unwrap().claims;
    assert_eq!(session_claims["_user_id"], json!(1));
    assert_eq!(remember_claims["user_id"], json!(1));
    Fixtures {
        session,
        remember,
        session_claims,
        remember_claims,
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

const HS256: &[u8] = br#"{"alg":"HS256","typ":"JWT"}"#;

fn mac(key: &str, data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// A token over any header and payload bytes, correctly signed with `key`.
fn sign_raw(header: &[u8], payload: &[u8], key: &str) -> String {
    sign_segments(&b64(header), &b64(payload), key)
}

/// A token over already-encoded segments, correctly signed with `key`.
fn sign_segments(header: &str, payload: &str, key: &str) -> String {
    let signed = format!("{header}.{payload}");
    let signature = b64(mac(key, signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// An HS256 token over any payload bytes, signed with the app's key.
fn signed_payload(payload: &[u8]) -> String {
    sign_raw(HS256, payload, KEY)
}

fn signed_claims(claims: &Claims) -> String {
    signed_payload(&serde_json::to_vec(claims).unwrap())
}

fn with(claims: &Claims, name: &str, value: Value) -> Claims {
    let mut claims = claims.clone();
    claims.insert(name.to_owned(), value);
    claims
}

fn without(claims: &Claims, name: &str) -> Claims {
    let mut claims = claims.clone();
    claims.remove(name);
    claims
}

/// The JSON of `claims` with `name` set to `raw`, written as is (for
/// numbers serde_json would not write, such as `1e400`).
fn raw_payload(claims: &Claims, name: &str, raw: &str) -> Vec<u8> {
    let rest = serde_json::to_string(&without(claims, name)).unwrap();
    let rest = rest.strip_prefix('{').unwrap();
    let separator = if rest == "}" { "" } else { "," };
    format!("{{{}:{raw}{separator}{rest}", json!(name)).into_bytes()
}

fn split(token: &str) -> (&str, &str, &str) {
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
fn flip(text: &str, index: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Broken versions of `valid` (a real token with `claims`), each with a
/// name. `id_field` is where the token keeps the user id.
fn token_defects(valid: &str, claims: &Claims, id_field: &str) -> Vec<(String, String)> {
    let (h, p, s) = split(valid);
    let other_user = b64(serde_json::to_vec(&with(claims, id_field, json!(2))).unwrap());
    let now = token::now();
    let cases: Vec<(&str, String)> = vec![
        // Signature.
        (
            "signature with one character changed",
            format!("{h}.{p}.{}", flip(s, 10)),
        ),
        (
            "signature with its last character changed",
            format!("{h}.{p}.{}", flip(s, s.len() - 1)),
        ),
        (
            "signed with another key",
            token::encode(claims, &SecretKey::new(OTHER_KEY).unwrap()),
        ),
        ("signature in padded standard base64", {
            let signature = STANDARD.encode(mac(KEY, format!("{h}.{p}").as_bytes()));
            format!("{h}.{p}.{signature}")
        }),
        ("signature cut off", format!("{h}.{p}")),
        ("empty signature", format!("{h}.{p}.")),
        (
            "signature of 43 bad base64 characters",
            format!("{h}.{p}.{}", "*".repeat(43)),
        ),
        (
            "token truncated by one character",
            valid[..valid.len() - 1].to_owned(),
        ),
        ("token cut in half", valid[..valid.len() / 2].to_owned()),
        ("token padded with =", format!("{valid}=")),
        // Payload.
        (
            "payload swapped for another user's",
            format!("{h}.{other_user}.{s}"),
        ),
        (
            "payload with one character changed",
            format!("{h}.{}.{s}", flip(p, p.len() / 2)),
        ),
        (
            "payload with bad base64",
            format!("{h}.!!!!{}.{s}", &p[4..]),
        ),
        (
            "payload with a space inside",
            format!("{h}.{} {}.{s}", &p[..5], &p[5..]),
        ),
        // Shape.
        ("two parts: header and signature", format!("{h}.{s}")),
        ("four parts: a segment appended", format!("{valid}.{s}")),
        ("four parts: payload twice", format!("{h}.{p}.{p}.{s}")),
        ("the token twice", format!("{valid}{valid}")),
        ("only a dot", ".".to_owned()),
        ("only two dots", "..".to_owned()),
        ("four dots", "....".to_owned()),
        ("one word", "hello".to_owned()),
        // Header.
        (
            "header HS512 with the old signature",
            format!("{}.{p}.{s}", b64(br#"{"alg":"HS512","typ":"JWT"}"#)),
        ),
        (
            "header alg none, no signature",
            format!("{}.{p}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
        ),
        (
            "header alg none, signed with the key",
            sign_segments(&b64(br#"{"alg":"none","typ":"JWT"}"#), p, KEY),
        ),
        (
            "header alg None, signed with the key",
            sign_segments(&b64(br#"{"alg":"None"}"#), p, KEY),
        ),
        (
            "header alg HS512, signed with the key",
            sign_segments(&b64(br#"{"alg":"HS512","typ":"JWT"}"#), p, KEY),
        ),
        (
            "header alg RS256, signed with the key",
            sign_segments(&b64(br#"{"alg":"RS256","typ":"JWT"}"#), p, KEY),
        ),
        (
            "header alg hs256 in lower case, signed",
            sign_segments(&b64(br#"{"alg":"hs256","typ":"JWT"}"#), p, KEY),
        ),
        (
            "header without alg, signed with the key",
            sign_segments(&b64(br#"{"typ":"JWT"}"#), p, KEY),
        ),
        (
            "header with a kid, signed with the key",
            sign_segments(&b64(br#"{"alg":"HS256","kid":"../../etc/passwd"}"#), p, KEY),
        ),
        (
            "header with a jku, signed with the key",
            sign_segments(
                &b64(br#"{"alg":"HS256","jku":"https://evil.example/"}"#),
                p,
                KEY,
            ),
        ),
        (
            "header alg twice, signed with the key",
            sign_segments(&b64(br#"{"alg":"HS256","alg":"none"}"#), p, KEY),
        ),
        (
            "header a JSON array, signed with the key",
            sign_segments(&b64(b"[]"), p, KEY),
        ),
        (
            "header not JSON, signed with the key",
            sign_segments(&b64(b"HS256"), p, KEY),
        ),
        (
            "header not base64, signed with the key",
            sign_segments("!!!!", p, KEY),
        ),
        (
            "empty header, signed with the key",
            sign_segments("", p, KEY),
        ),
        // Payload shapes, correctly signed.
        ("payload a JSON array, signed", signed_payload(b"[1,2,3]")),
        ("payload a JSON number, signed", signed_payload(b"42")),
        (
            "payload a JSON string, signed",
            signed_payload(br#""_user_id""#),
        ),
        ("payload JSON null, signed", signed_payload(b"null")),
        (
            "payload invalid JSON, signed",
            signed_payload(br#"{"_user_id":1,"#),
        ),
        (
            "payload JSON with trailing garbage, signed",
            signed_payload(&[serde_json::to_vec(claims).unwrap(), b"}garbage".to_vec()].concat()),
        ),
        (
            "payload not UTF-8, signed",
            signed_payload(b"{\"_user_id\":\"\xff\xfe\"}"),
        ),
        ("payload empty, signed", signed_payload(b"")),
        (
            "payload deeply nested arrays, signed",
            signed_payload(
                format!(
                    "{{\"{id_field}\":{}1{}}}",
                    "[".repeat(3000),
                    "]".repeat(3000)
                )
                .as_bytes(),
            ),
        ),
        // Expiry, correctly signed.
        (
            "expired, signed",
            signed_claims(&with(claims, "exp", json!(now - 10))),
        ),
        (
            "expired long ago, signed",
            signed_claims(&with(claims, "exp", json!(0))),
        ),
        (
            "exp missing, signed",
            signed_claims(&without(claims, "exp")),
        ),
        (
            "exp a string, signed",
            signed_claims(&with(claims, "exp", json!("4102444800"))),
        ),
        (
            "exp null, signed",
            signed_claims(&with(claims, "exp", Value::Null)),
        ),
        (
            "exp NaN-like huge, signed",
            signed_payload(&raw_payload(claims, "exp", "1e400")),
        ),
        (
            "issued a day ahead, signed",
            signed_claims(&with(claims, "iat", json!(now + DAY))),
        ),
        (
            "not valid before tomorrow, signed",
            signed_claims(&with(claims, "nbf", json!(now + DAY))),
        ),
        // Size.
        ("10 KB of garbage", "a".repeat(10 * 1024)),
        (
            "10 KB token, correctly signed",
            signed_claims(&with(claims, "pad", json!("x".repeat(10 * 1024)))),
        ),
    ];
    let mut cases: Vec<(String, String)> =
        cases.into_iter().map(|(n, t)| (n.to_owned(), t)).collect();

    // The user id, of every wrong shape, in an otherwise good token.
    for (label, raw) in [
        ("a number too big for JSON (1e400)", "1e400"),
        ("a number too big for u64", "18446744073709551616"),
        ("a huge number (1e300)", "1e300"),
        ("negative", "-1"),
        ("a fraction", "1.5"),
        ("a float", "1.0"),
        ("a string", "\"1\""),
        ("an empty string", "\"\""),
        ("a boolean", "true"),
        ("null", "null"),
        ("an array", "[1]"),
        ("an object", "{\"id\":1}"),
        ("a user that does not exist", "99"),
    ] {
        cases.push((
            format!("{id_field} {label}, signed"),
            signed_payload(&raw_payload(claims, id_field, raw)),
        ));
    }
    // The fingerprint of the user's auth_hash, of every wrong shape.
    for (label, value) in [
        ("missing", None),
        ("empty", Some(json!(""))),
        ("of another value", Some(json!("AAAAAAAAAAAAAAAAAAAAAA"))),
        ("a number", Some(json!(1))),
        ("null", Some(Value::Null)),
    ] {
        let edited = match value {
            None => without(claims, "_auth"),
            Some(value) => with(claims, "_auth", value),
        };
        cases.push((format!("_auth {label}, signed"), signed_claims(&edited)));
    }
    cases
}

/// Cookie-level defects for the cookie `name` whose good value is `valid`.
fn cookie_defects(name: &str, valid: &str) -> Vec<(String, Vec<HeaderValue>, bool)> {
    let text = |s: String| HeaderValue::from_str(&s).unwrap();
    let bytes = |b: Vec<u8>| HeaderValue::from_bytes(&b).unwrap();
    let many_cookies: String = (0..10_000)
        .map(|i| format!("c{i}=v{i}; "))
        .collect::<String>()
        + &format!("{name}=garbage");
    assert!(many_cookies.len() > 100 * 1024, "a 100 KB header");
    // (case, Cookie headers, whether latch can tell it is one bad cookie and delete it)
    vec![
        ("empty value".into(), vec![text(format!("{name}="))], true),
        ("name without =".into(), vec![text(name.to_owned())], false),
        (
            "quoted value".into(),
            vec![text(format!("{name}=\"{valid}\""))],
            true,
        ),
        (
            "percent-encoded dots".into(),
            vec![text(format!("{name}={}", valid.replace('.', "%2E")))],
            true,
        ),
        (
            "10 KB value".into(),
            vec![text(format!("{name}={}", "a".repeat(10 * 1024)))],
            true,
        ),
        (
            "100 KB header of many cookies".into(),
            vec![text(many_cookies)],
            true,
        ),
        (
            "valid twice in one header".into(),
            vec![text(format!("{name}={valid}; {name}={valid}"))],
            false,
        ),
        (
            "valid then garbage".into(),
            vec![text(format!("{name}={valid}; {name}=garbage"))],
            false,
        ),
        (
            "garbage then valid".into(),
            vec![text(format!("{name}=garbage; {name}={valid}"))],
            false,
        ),
        (
            "valid then empty".into(),
            vec![text(format!("{name}={valid}; {name}="))],
            false,
        ),
        (
            "valid in two Cookie headers".into(),
            vec![
                text(format!("{name}={valid}")),
                text(format!("{name}={valid}")),
            ],
            false,
        ),
        (
            "valid and garbage in two Cookie headers".into(),
            vec![text(format!("{name}={valid}")), text(format!("{name}=x"))],
            false,
        ),
        (
            "non-UTF-8 byte after the token".into(),
            vec![bytes(
                [format!("{name}={valid}").into_bytes(), b"\xff".to_vec()].concat(),
            )],
            false,
        ),
        (
            "non-UTF-8 in another cookie".into(),
            vec![bytes(
                [
                    b"x=\xc3\x28; ".to_vec(),
                    format!("{name}={valid}").into_bytes(),
                ]
                .concat(),
            )],
            false,
        ),
        (
            "non-UTF-8 in a second Cookie header".into(),
            vec![
                text(format!("{name}={valid}")),
                bytes(b"x=\xe2\x82".to_vec()),
            ],
            false,
        ),
        (
            "Latin-1 value".into(),
            vec![bytes(
                [format!("{name}=").into_bytes(), b"caf\xe9".to_vec()].concat(),
            )],
            false,
        ),
    ]
}

fn header(name: &str, token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{name}={token}"))
        .unwrap_or_else(|_| panic!("{name}={token:?} is a header value"))
}

// ---------------------------------------------------------------------------
// Probing a request
// ---------------------------------------------------------------------------

/// What the four routes answered for one set of cookies.
struct Outcome {
    private: (StatusCode, Option<String>),
    fresh: StatusCode,
    maybe: (StatusCode, String),
    data: (StatusCode, String),
    /// Every `Set-Cookie` of every response.
    set_cookies: Vec<String>,
}

async fn probe(app: &Router, cookies: &[HeaderValue]) -> Outcome {
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
fn not_anonymous(outcome: &Outcome, data: Option<&str>) -> Vec<String> {
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
            "MaybeUser route: expected 200 anonymous, got {:?}",
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
async fn anonymity_problems(
    app: &Router,
    cookies: &[HeaderValue],
    data: Option<&str>,
) -> (Outcome, Vec<String>) {
    let outcome = probe(app, cookies).await;
    let mut problems = not_anonymous(&outcome, data);
    for issued in issued_sessions(&outcome) {
        let replay = probe(app, std::slice::from_ref(&issued)).await;
        for problem in not_anonymous(&replay, None) {
            problems.push(format!(
                "sent back, the session cookie issued in reply logs in: {problem} ({issued:?})"
            ));
        }
    }
    (outcome, problems)
}

fn deletes(outcome: &Outcome, name: &str) -> bool {
    outcome
        .set_cookies
        .iter()
        .any(|set| name_value(set) == (name.to_owned(), String::new()) && is_deletion(set))
}

struct Case {
    name: String,
    cookies: Vec<HeaderValue>,
    /// The cookie latch should delete, if it can tell which is bad.
    deleted: Option<&'static str>,
    /// What the `SessionData` route must say: `"none"` when the session
    /// token is refused, `"dark"` (the fixture's data) when the token is good
    /// and only the login in it is not; `None` to not check.
    data: Option<&'static str>,
}

impl Case {
    /// A case where nothing of the session survives.
    fn empty(
        name: impl Into<String>,
        cookies: Vec<HeaderValue>,
        deleted: Option<&'static str>,
    ) -> Self {
        Self {
            name: name.into(),
            cookies,
            deleted,
            data: Some("none"),
        }
    }
}

/// Sends every case, and fails with the list of every case that was not
/// anonymous (not just the first).
async fn assert_all_anonymous(app: &Router, cases: Vec<Case>) {
    assert!(!cases.is_empty());
    let total = cases.len();
    let mut failures = Vec::new();
    for case in cases {
        let (outcome, mut problems) = anonymity_problems(app, &case.cookies, case.data).await;
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
        "{} of {total} cases were not anonymous:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Asserts the request is logged in as alice.
async fn assert_alice(
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
        "{context}: MaybeUser sees alice"
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
// Controls: good cookies do log in, so the refusals below mean something
// ---------------------------------------------------------------------------

#[tokio::test]
async fn control_a_good_session_cookie_logs_in() {
    let app = app();
    let fx = fixtures(&app).await;
    let outcome = assert_alice(
        &app,
        &[header("session", &fx.session)],
        true,
        "the good session",
    )
    .await;
    assert_eq!(
        outcome.data,
        (StatusCode::OK, "dark".to_owned()),
        "the session data is there"
    );
}

#[tokio::test]
async fn control_a_good_remember_cookie_logs_in_not_freshly() {
    let app = app();
    let fx = fixtures(&app).await;
    let outcome = assert_alice(
        &app,
        &[header("_remember", &fx.remember)],
        false,
        "the good remember cookie",
    )
    .await;
    assert!(
        outcome
            .set_cookies
            .iter()
            .any(|c| name_value(c).0 == "_remember" && !name_value(c).1.is_empty()),
        "the remember cookie is rotated: {:?}",
        outcome.set_cookies
    );
}

#[tokio::test]
async fn control_hand_signed_tokens_are_accepted() {
    // The hand-made HMAC agrees with latch's, so the cases "signed with the
    // key" below really do carry a good signature.
    let app = app();
    let fx = fixtures(&app).await;
    assert_eq!(
        signed_claims(&fx.session_claims),
        fx.session,
        "the same bytes, the same token"
    );
    let session = signed_payload(&raw_payload(&fx.session_claims, "_user_id", "1"));
    assert_alice(
        &app,
        &[header("session", &session)],
        true,
        "hand-signed session",
    )
    .await;
    let remember = signed_payload(&raw_payload(&fx.remember_claims, "user_id", "1"));
    assert_alice(
        &app,
        &[header("_remember", &remember)],
        false,
        "hand-signed remember",
    )
    .await;
    // And a header in another key order, also signed by hand, is fine.
    let (_, p, _) = split(&fx.session);
    let reordered = sign_segments(&b64(br#"{"typ":"JWT","alg":"HS256"}"#), p, KEY);
    assert_alice(
        &app,
        &[header("session", &reordered)],
        true,
        "header in another order",
    )
    .await;
}

#[tokio::test]
async fn control_a_good_session_among_100_kb_of_other_cookies_still_logs_in() {
    let app = app();
    let fx = fixtures(&app).await;
    let junk: String = (0..5000).map(|i| format!("c{i}=v{i}; ")).collect();
    let cookie = format!("{junk}session={}; {junk}", fx.session);
    assert!(cookie.len() > 100 * 1024);
    assert_alice(
        &app,
        &[HeaderValue::from_str(&cookie).unwrap()],
        true,
        "100 KB header",
    )
    .await;
}

#[tokio::test]
async fn no_cookie_at_all_is_anonymous() {
    let app = app();
    assert_all_anonymous(
        &app,
        vec![
            Case::empty("no Cookie header", vec![], None),
            Case::empty(
                "empty Cookie header",
                vec![HeaderValue::from_static("")],
                None,
            ),
            Case::empty(
                "only semicolons",
                vec![HeaderValue::from_static(";;; ; =; ==")],
                None,
            ),
            Case::empty(
                "other cookies only",
                vec![HeaderValue::from_static("a=1; b=2")],
                None,
            ),
            Case::empty(
                "cookie name in another case",
                vec![HeaderValue::from_static("SESSION=x; _REMEMBER=y")],
                None,
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// The session cookie
// ---------------------------------------------------------------------------

/// Whether latch can tell the session token is bad (and so delete it): it
/// reads the token, and refuses it before it gets to the login.
fn session_token_is_refused(case: &str) -> bool {
    // These tokens are good; the login in them is not, so latch drops the
    // login and keeps (re-issues) the rest of the session.
    !(case.starts_with("_user_id ") && !case.contains("1e400") || case.starts_with("_auth "))
}

#[tokio::test]
async fn bad_session_tokens_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let cases = token_defects(&fx.session, &fx.session_claims, "_user_id")
        .into_iter()
        .map(|(name, token)| {
            let refused = session_token_is_refused(&name);
            Case {
                deleted: refused.then_some("session"),
                data: Some(if refused { "none" } else { "dark" }),
                cookies: vec![header("session", &token)],
                name: format!("session: {name}"),
            }
        })
        .collect();
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn bad_session_cookies_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let cases = cookie_defects("session", &fx.session)
        .into_iter()
        .map(|(name, cookies, deletable)| {
            Case::empty(
                format!("session cookie: {name}"),
                cookies,
                deletable.then_some("session"),
            )
        })
        .collect();
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn a_session_without_latch_s_claims_is_anonymous() {
    // Microdot's own session: `_user_id` and `_fresh` only, no fingerprint.
    let app = app();
    let now = token::now();
    let microdot = signed_claims(
        &json!({"_user_id": 1, "_fresh": true, "exp": now + 3600})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "Microdot-style session",
            vec![header("session", &microdot)],
            None,
        )],
    )
    .await;
}

#[tokio::test]
async fn a_session_with_login_at_as_a_string_is_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let token = signed_claims(&with(&fx.session_claims, "_login_at", json!("2024-01-01")));
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "_login_at as a string",
            vec![header("session", &token)],
            Some("session"),
        )],
    )
    .await;
}

#[tokio::test]
async fn a_session_with_an_ancient_login_at_is_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let token = signed_claims(&with(&fx.session_claims, "_login_at", json!(0)));
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "_login_at of 1970",
            vec![header("session", &token)],
            Some("session"),
        )],
    )
    .await;
}

#[tokio::test]
async fn a_session_with_fresh_as_a_string_is_never_fresh() {
    let app = app();
    let fx = fixtures(&app).await;
    for fresh in [
        json!("true"),
        json!(1),
        json!("yes"),
        json!([true]),
        Value::Null,
    ] {
        let token = signed_claims(&with(&fx.session_claims, "_fresh", fresh.clone()));
        let response = send(&app, "GET", "/fresh", &[header("session", &token)]).await;
        assert_eq!(
            response.status(),
            StatusCode::FOUND,
            "_fresh = {fresh}: only the boolean true is a fresh login"
        );
    }
}

/// The brief: a `_fresh` that is not a boolean makes the request anonymous,
/// like every other latch claim of the wrong type (`_user_id`, `_auth`,
/// `_login_at`).
#[tokio::test]
async fn a_session_with_fresh_as_a_string_is_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let token = signed_claims(&with(&fx.session_claims, "_fresh", json!("true")));
    assert_all_anonymous(
        &app,
        vec![Case {
            name: "_fresh as a string".into(),
            cookies: vec![header("session", &token)],
            deleted: None,
            // Whether the session's data survives is the implementation's
            // choice (drop the login, or refuse the token).
            data: None,
        }],
    )
    .await;
}

// ---------------------------------------------------------------------------
// The remember cookie
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_remember_tokens_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let cases = token_defects(&fx.remember, &fx.remember_claims, "user_id")
        .into_iter()
        .map(|(name, token)| {
            Case::empty(
                format!("remember: {name}"),
                vec![header("_remember", &token)],
                Some("_remember"),
            )
        })
        .collect();
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn bad_remember_cookies_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let cases = cookie_defects("_remember", &fx.remember)
        .into_iter()
        .map(|(name, cookies, deletable)| {
            Case::empty(
                format!("remember cookie: {name}"),
                cookies,
                deletable.then_some("_remember"),
            )
        })
        .collect();
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn remember_tokens_with_bad_days_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let mut cases = Vec::new();
    for (label, raw) in [
        ("0", "0"),
        ("negative", "-1"),
        ("very negative", "-9223372036854775808"),
        ("over ten years", "3651"),
        ("huge", "99999999999"),
        ("more than u32", "4294967297"),
        ("too big for JSON", "1e400"),
        ("a float", "30.0"),
        ("a fraction", "1.5"),
        ("a string", "\"30\""),
        ("null", "null"),
        ("true", "true"),
    ] {
        let token = signed_payload(&raw_payload(&fx.remember_claims, "days", raw));
        cases.push(Case::empty(
            format!("days {label}"),
            vec![header("_remember", &token)],
            Some("_remember"),
        ));
    }
    cases.push(Case::empty(
        "days missing",
        vec![header(
            "_remember",
            &signed_claims(&without(&fx.remember_claims, "days")),
        )],
        Some("_remember"),
    ));
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn microdot_s_logout_remember_token_is_anonymous() {
    // Microdot logs out by writing a remember token with no user and 0 days.
    let app = app();
    let now = token::now();
    let mut cases = Vec::new();
    for (label, claims) in [
        (
            "user_id null, days 0",
            json!({"user_id": null, "days": 0, "exp": now + 3600}),
        ),
        (
            "user_id null, days 30",
            json!({"user_id": null, "days": 30, "exp": now + 3600}),
        ),
        ("user_id missing", json!({"days": 30, "exp": now + 3600})),
        (
            "Microdot's login token, without a fingerprint",
            json!({"user_id": 1, "days": 30, "exp": now as f64 + 3600.25}),
        ),
    ] {
        let token = signed_claims(claims.as_object().unwrap());
        cases.push(Case::empty(
            label,
            vec![header("_remember", &token)],
            Some("_remember"),
        ));
    }
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn a_bad_session_and_a_bad_remember_cookie_together_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let (h, p, s) = split(&fx.session);
    let bad_session = format!("{h}.{p}.{}", flip(s, 5));
    let (h, p, s) = split(&fx.remember);
    let bad_remember = format!("{h}.{p}.{}", flip(s, 5));
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "both tampered",
            vec![HeaderValue::from_str(&format!(
                "session={bad_session}; _remember={bad_remember}"
            ))
            .unwrap()],
            Some("_remember"),
        )],
    )
    .await;
}

#[tokio::test]
async fn a_session_token_in_the_remember_cookie_and_back_is_anonymous() {
    // The two tokens are signed with the same key: each must still be
    // refused in the other's cookie.
    let app = app();
    let fx = fixtures(&app).await;
    assert_all_anonymous(
        &app,
        vec![
            Case::empty(
                "session token as the remember cookie",
                vec![header("_remember", &fx.session)],
                Some("_remember"),
            ),
            Case::empty(
                "remember token as the session cookie",
                vec![header("session", &fx.remember)],
                None,
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: Router,
    fixtures: Fixtures,
}

fn harness() -> &'static Harness {
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

/// Sends `cookie` to the four routes; Err with the problems if the request
/// was not anonymous.
fn check_anonymous(cookies: &[HeaderValue]) -> Result<(), String> {
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

/// Any byte a `HeaderValue` accepts: tab, visible ASCII, space, and every
/// byte from 0x80 up.
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff]
}

/// Pieces that look like cookies and tokens, to get past the parser.
fn cookie_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("session=".to_owned()),
        Just("_remember=".to_owned()),
        Just("; ".to_owned()),
        Just(";".to_owned()),
        Just("=".to_owned()),
        Just(".".to_owned()),
        Just("\"".to_owned()),
        Just(" ".to_owned()),
        Just("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9".to_owned()),
        Just("eyJhbGciOiJub25lIn0".to_owned()),
        "[A-Za-z0-9_-]{0,60}",
        "[A-Za-z0-9_-]{43}",
        any::<Vec<u8>>().prop_map(b64),
        Just(b64(br#"{"_user_id":1,"exp":9999999999}"#)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_cookie_bytes_are_anonymous(bytes in proptest::collection::vec(header_byte(), 0..2048)) {
        let cookie = HeaderValue::from_bytes(&bytes).expect("the strategy makes valid header bytes");
        prop_assert_eq!(check_anonymous(&[cookie]), Ok(()));
    }

    #[test]
    fn arbitrary_cookie_like_text_is_anonymous(pieces in proptest::collection::vec(cookie_piece(), 0..40)) {
        let text = pieces.concat();
        let cookie = HeaderValue::from_str(&text).expect("pieces are visible ASCII");
        prop_assert_eq!(check_anonymous(&[cookie]), Ok(()));
    }

    #[test]
    fn a_good_session_token_with_any_one_byte_changed_is_anonymous(
        index in any::<prop::sample::Index>(),
        replacement in 0x21u8..=0x7e,
    ) {
        let token = harness().fixtures.session.clone();
        let mut bytes = token.into_bytes();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let cookie = HeaderValue::from_bytes(&[b"session=".as_slice(), &bytes].concat()).unwrap();
        prop_assert_eq!(check_anonymous(&[cookie]), Ok(()));
    }

    #[test]
    fn a_good_remember_token_with_any_one_byte_changed_is_anonymous(
        index in any::<prop::sample::Index>(),
        replacement in 0x21u8..=0x7e,
    ) {
        let token = harness().fixtures.remember.clone();
        let mut bytes = token.into_bytes();
        let i = index.index(bytes.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let cookie = HeaderValue::from_bytes(&[b"_remember=".as_slice(), &bytes].concat()).unwrap();
        prop_assert_eq!(check_anonymous(&[cookie]), Ok(()));
    }

    #[test]
    fn any_prefix_of_a_good_session_token_is_anonymous(cut in any::<prop::sample::Index>()) {
        let token = &harness().fixtures.session;
        let prefix = &token[..cut.index(token.len())];
        prop_assert_eq!(check_anonymous(&[header("session", prefix)]), Ok(()));
    }
}
