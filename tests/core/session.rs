//! The `Session` layer and the `SessionData` extractor, driven in-process
//! with `tower::ServiceExt::oneshot`.
//!
//! Each test builds a small router, sends it requests with hand-made
//! `Cookie` headers, and looks at the `Set-Cookie` and `Vary` headers of the
//! responses. Tokens are made and read with `axum_latch::token`, with the same
//! key as the router (or another one, to show what is refused).
//!
//! Tokens an attacker sends (forged, expired, past the absolute timeout,
//! too large) have files of their own: `attack_forged_tokens.rs`,
//! `attack_expired_sessions.rs` and `attack_cookies.rs`.

use crate::support::jwt;

use axum::body::Body;
use axum::extract::Path;
use axum::http::header::{COOKIE, SET_COOKIE, VARY};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use axum_latch::session::{SameSite, SessionError};
use axum_latch::{ConfigError, KeyError, KeyRing, SecretKey, Session, SessionData};
use http_body_util::BodyExt;
use jwt::Claims;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const KEY: &str = "the key of the session tests: long enough, and then some";
const OTHER_KEY: &str = "another key entirely, also long enough for latch to take";
const DAY: u64 = 24 * 60 * 60;

fn key() -> SecretKey {
    SecretKey::new(KEY).expect("the test key is long enough")
}

fn other_key() -> SecretKey {
    SecretKey::new(OTHER_KEY).expect("the other test key is long enough")
}

/// A shopping cart: a struct stored in the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
    total_cents: u64,
}

fn cart() -> Cart {
    Cart {
        items: vec!["tea".into(), "scones".into()],
        total_cents: 1250,
    }
}

/// The router every test drives, with `session` as its layer.
fn app(session: Session) -> Router {
    Router::new()
        // Stores one value of each kind.
        .route(
            "/fill",
            post(|s: SessionData| async move {
                s.insert("cart", cart()).unwrap();
                s.insert("count", 42u32).unwrap();
                s.insert("ratio", 0.5f64).unwrap();
                s.insert("name", "Ada").unwrap();
                "filled"
            }),
        )
        // Reads them back with the right types, and with wrong ones.
        .route(
            "/read",
            get(|s: SessionData| async move {
                axum::Json(json!({
                    "cart": s.get::<Cart>("cart"),
                    "count": s.get::<u32>("count"),
                    "ratio": s.get::<f64>("ratio"),
                    "name": s.get::<String>("name"),
                    "missing": s.get::<String>("missing"),
                    // Values of another type read as None.
                    "cart_as_string": s.get::<String>("cart"),
                    "count_as_string": s.get::<String>("count"),
                    "name_as_number": s.get::<u32>("name"),
                    "ratio_as_u32": s.get::<u32>("ratio"),
                    "cart_as_list": s.get::<Vec<String>>("cart"),
                }))
            }),
        )
        .route(
            "/theme",
            get(|s: SessionData| async move { s.get::<String>("theme").unwrap_or_else(|| "-".into()) }),
        )
        .route(
            "/theme/{value}",
            post(|s: SessionData, Path(value): Path<String>| async move {
                s.insert("theme", value).unwrap();
                "saved"
            }),
        )
        .route(
            "/remove/{key}",
            post(|s: SessionData, Path(key): Path<String>| async move { s.remove(&key).to_string() }),
        )
        .route(
            "/clear",
            post(|s: SessionData| async move {
                s.clear();
                "cleared"
            }),
        )
        .route(
            "/reserved/{key}",
            post(|s: SessionData, Path(key): Path<String>| async move {
                match s.insert(&key, "value") {
                    Ok(()) => (StatusCode::OK, "accepted".to_owned()),
                    Err(SessionError::ReservedKey(name)) if name == key => {
                        (StatusCode::BAD_REQUEST, format!("reserved: {}", SessionError::ReservedKey(name)))
                    }
                    Err(other) => (StatusCode::CONFLICT, format!("another error: {other}")),
                }
            }),
        )
        .route("/untouched", get(|| async { "no session here" }))
        .route(
            "/vary-cookie",
            get(|s: SessionData| async move {
                let _ = s.get::<String>("theme");
                ([(VARY, "Cookie")], "vary cookie").into_response()
            }),
        )
        .route(
            "/vary-accept",
            get(|s: SessionData| async move {
                let _ = s.get::<String>("theme");
                ([(VARY, "Accept")], "vary accept").into_response()
            }),
        )
        .layer(session)
}

fn default_app() -> Router {
    app(Session::new(key()))
}

fn request(method: &str, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        builder = builder.header(COOKIE, cookie);
    }
    builder.body(Body::empty()).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone()
        .oneshot(request)
        .await
        .expect("the router is infallible")
}

async fn get_with(app: &Router, uri: &str, cookie: Option<&str>) -> Response<Body> {
    send(app, request("GET", uri, cookie)).await
}

async fn post_with(app: &Router, uri: &str, cookie: Option<&str>) -> Response<Body> {
    send(app, request("POST", uri, cookie)).await
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).expect("bodies are UTF-8")
}

/// Every `Set-Cookie` header of a response, as text.
fn set_cookies(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("Set-Cookie is ASCII").to_owned())
        .collect()
}

/// The one `Set-Cookie` header for the cookie called `name`, if any.
fn set_cookie_for(response: &Response<Body>, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    let found: Vec<String> = set_cookies(response)
        .into_iter()
        .filter(|c| c.starts_with(&prefix))
        .collect();
    assert!(
        found.len() <= 1,
        "more than one Set-Cookie for {name}: {found:?}"
    );
    found.into_iter().next()
}

/// The value part of a `Set-Cookie` header.
fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

/// The attributes of a `Set-Cookie` header, trimmed and lower-cased
/// (`path=/`, `httponly`, ...).
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

fn has_attribute(set_cookie: &str, attribute: &str) -> bool {
    attributes(set_cookie).contains(&attribute.to_ascii_lowercase())
}

fn has_attribute_named(set_cookie: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    attributes(set_cookie)
        .iter()
        .any(|a| a == &name || a.starts_with(&format!("{name}=")))
}

/// The session cookie a response sets (not deletes), as a `Cookie` header
/// value for the next request.
fn next_cookie(response: &Response<Body>) -> String {
    let set = set_cookie_for(response, "session").expect("the response sets the session cookie");
    let value = cookie_value(&set);
    assert!(
        !value.is_empty(),
        "the session cookie was deleted, not set: {set}"
    );
    format!("session={value}")
}

/// The claims of the session cookie a response sets, checked with `keys`.
fn issued_claims(response: &Response<Body>, keys: &[&str]) -> Claims {
    let set = set_cookie_for(response, "session").expect("the response sets the session cookie");
    let value = cookie_value(&set);
    jwt::decode(&value, keys)
        .unwrap_or_else(|e| panic!("the issued token does not decode ({e}): {value}"))
}

fn claims(value: Value) -> Claims {
    value.as_object().expect("claims are a JSON object").clone()
}

/// A session token as latch makes it (with its `_purpose`), signed with
/// `key`, as a `Cookie` header value.
fn cookie_with(value: Value, key: &str) -> String {
    let mut claims = claims(value);
    claims.insert("_purpose".into(), json!("session"));
    format!("session={}", jwt::encode(&claims, key))
}

/// Asserts that the response deletes the session cookie, and returns the
/// deleting `Set-Cookie`.
fn assert_deletes_session(response: &Response<Body>, context: &str) -> String {
    let set = set_cookie_for(response, "session").unwrap_or_else(|| {
        panic!("{context}: expected the session cookie to be deleted, got no Set-Cookie")
    });
    assert_eq!(
        cookie_value(&set),
        "",
        "{context}: a deletion has an empty value: {set}"
    );
    assert!(
        has_attribute(&set, "Max-Age=0"),
        "{context}: a deletion has Max-Age=0: {set}"
    );
    set
}

fn assert_no_session_cookie(response: &Response<Body>, context: &str) {
    assert_eq!(
        set_cookie_for(response, "session"),
        None,
        "{context}: expected no Set-Cookie for the session"
    );
}

/// Every comma-separated `Vary` entry of a response, lower-cased.
fn vary_entries(response: &Response<Body>) -> Vec<String> {
    response
        .headers()
        .get_all(VARY)
        .iter()
        .flat_map(|v| {
            v.to_str()
                .unwrap()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn count(entries: &[String], wanted: &str) -> usize {
    entries.iter().filter(|e| *e == wanted).count()
}

// ---------------------------------------------------------------------------
// Typed values
// ---------------------------------------------------------------------------

#[tokio::test]
async fn typed_values_are_saved_without_a_save_call_and_read_back_next_request() {
    let app = default_app();
    let filled = post_with(&app, "/fill", None).await;
    assert_eq!(filled.status(), StatusCode::OK);
    let cookie = next_cookie(&filled);

    let read = get_with(&app, "/read", Some(&cookie)).await;
    assert_eq!(read.status(), StatusCode::OK);
    let body: Value = serde_json::from_str(&body_text(read).await).unwrap();
    assert_eq!(
        body["cart"],
        json!(cart()),
        "a struct reads back as it was stored"
    );
    assert_eq!(body["count"], json!(42), "a number reads back");
    assert_eq!(body["ratio"], json!(0.5), "a float reads back");
    assert_eq!(body["name"], json!("Ada"), "a string reads back");
    assert_eq!(body["missing"], Value::Null, "a missing key reads as None");
}

#[tokio::test]
async fn a_value_read_as_another_type_is_none() {
    let app = default_app();
    let cookie = next_cookie(&post_with(&app, "/fill", None).await);
    let body: Value =
        serde_json::from_str(&body_text(get_with(&app, "/read", Some(&cookie)).await).await)
            .unwrap();
    for wrong in [
        "cart_as_string",
        "count_as_string",
        "name_as_number",
        "ratio_as_u32",
        "cart_as_list",
    ] {
        assert_eq!(
            body[wrong],
            Value::Null,
            "{wrong}: a value of another type must read as None"
        );
    }
}

#[tokio::test]
async fn values_are_visible_within_the_same_request_they_are_inserted_in() {
    let app = Router::new()
        .route(
            "/",
            get(|s: SessionData| async move {
                s.insert("n", 7i64).unwrap();
                format!("{:?}", s.get::<i64>("n"))
            }),
        )
        .layer(Session::new(key()));
    let response = get_with(&app, "/", None).await;
    assert_eq!(body_text(response).await, "Some(7)");
}

#[tokio::test]
async fn the_issued_token_holds_the_values_as_json() {
    let app = default_app();
    let filled = post_with(&app, "/fill", None).await;
    let claims = issued_claims(&filled, &[KEY]);
    assert_eq!(claims["cart"], json!(cart()));
    assert_eq!(claims["count"], json!(42));
    assert_eq!(claims["name"], json!("Ada"));
}

#[tokio::test]
async fn remove_deletes_a_key_and_says_whether_it_was_there() {
    let app = default_app();
    let cookie = next_cookie(&post_with(&app, "/fill", None).await);

    let removed = post_with(&app, "/remove/count", Some(&cookie)).await;
    let cookie = next_cookie(&removed);
    assert_eq!(body_text(removed).await, "true");

    let again = post_with(&app, "/remove/count", Some(&cookie)).await;
    assert_no_session_cookie(&again, "removing a key that is not there changes nothing");
    assert_eq!(body_text(again).await, "false");

    let body: Value =
        serde_json::from_str(&body_text(get_with(&app, "/read", Some(&cookie)).await).await)
            .unwrap();
    assert_eq!(body["count"], Value::Null, "the removed key is gone");
    assert_eq!(body["name"], json!("Ada"), "the other keys stay");
}

#[tokio::test]
async fn removing_the_last_key_deletes_the_cookie() {
    let app = default_app();
    let cookie = next_cookie(&post_with(&app, "/theme/dark", None).await);
    let removed = post_with(&app, "/remove/theme", Some(&cookie)).await;
    assert_deletes_session(&removed, "an emptied session");
}

#[tokio::test]
async fn remove_leaves_reserved_keys_alone() {
    let app = default_app();
    let now = jwt::now();
    let cookie = cookie_with(
        json!({"_user_id": 1, "theme": "dark", "iat": now, "exp": now + 3600}),
        KEY,
    );
    let response = post_with(&app, "/remove/_user_id", Some(&cookie)).await;
    assert_no_session_cookie(
        &response,
        "remove(\"_user_id\") must not change the session",
    );
    assert_eq!(body_text(response).await, "false");
}

#[tokio::test]
async fn reserved_keys_are_refused_with_a_helpful_message() {
    let app = default_app();
    for reserved in ["_user_id", "_fresh", "_anything", "_", "exp", "iat", "nbf"] {
        let response = post_with(&app, &format!("/reserved/{reserved}"), None).await;
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{reserved}: insert must fail with SessionError::ReservedKey({reserved:?})"
        );
        assert_no_session_cookie(&response, &format!("a refused insert of {reserved}"));
        let message = body_text(response).await;
        assert!(
            message.contains(reserved),
            "{reserved}: the message names the key: {message}"
        );
        assert!(
            message.contains("reserved"),
            "{reserved}: the message says why: {message}"
        );
        assert!(
            message.contains('_') && message.contains("exp"),
            "{reserved}: the message says which names to avoid: {message}"
        );
    }
}

#[tokio::test]
async fn names_that_only_look_reserved_are_accepted() {
    let app = default_app();
    for name in ["user_id", "expiry", "a_b", "EXP", "iat2"] {
        let response = post_with(&app, &format!("/reserved/{name}"), None).await;
        assert_eq!(response.status(), StatusCode::OK, "{name} is not reserved");
        assert!(
            set_cookie_for(&response, "session").is_some(),
            "{name}: the value is saved"
        );
    }
}

#[tokio::test]
async fn an_unchanged_session_sets_no_cookie() {
    let app = default_app();
    let cookie = next_cookie(&post_with(&app, "/fill", None).await);
    let read = get_with(&app, "/read", Some(&cookie)).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(
        set_cookies(&read),
        Vec::<String>::new(),
        "reading a fresh session writes nothing"
    );
}

#[tokio::test]
async fn an_empty_session_that_is_only_read_sets_no_cookie() {
    let app = default_app();
    let response = get_with(&app, "/theme", None).await;
    assert_eq!(set_cookies(&response), Vec::<String>::new());
    assert_eq!(body_text(response).await, "-");
}

#[tokio::test]
async fn a_value_that_is_not_json_is_a_serialize_error() {
    // A map with non-string keys has no JSON form.
    let app = Router::new()
        .route(
            "/",
            get(|s: SessionData| async move {
                let mut map = std::collections::HashMap::new();
                map.insert((1u8, 2u8), "pair");
                match s.insert("pairs", map) {
                    Err(error @ SessionError::Serialize { .. }) => error.to_string(),
                    other => format!("expected SessionError::Serialize, got {other:?}"),
                }
            }),
        )
        .layer(Session::new(key()));
    let response = get_with(&app, "/", None).await;
    assert_no_session_cookie(&response, "a refused value changes nothing");
    let message = body_text(response).await;
    assert!(
        message.contains("\"pairs\""),
        "the message names the key: {message}"
    );
    assert!(message.contains("JSON"), "the message says why: {message}");
}

#[tokio::test]
async fn inserting_the_same_value_again_does_not_reissue_the_cookie() {
    let app = default_app();
    let cookie = next_cookie(&post_with(&app, "/theme/dark", None).await);
    let again = post_with(&app, "/theme/dark", Some(&cookie)).await;
    assert_no_session_cookie(&again, "the same value again");
    let changed = post_with(&app, "/theme/light", Some(&cookie)).await;
    let cookie = next_cookie(&changed);
    assert_eq!(
        body_text(get_with(&app, "/theme", Some(&cookie)).await).await,
        "light"
    );
}

#[tokio::test]
async fn clear_deletes_the_cookie_with_the_default_attributes() {
    let app = default_app();
    let cookie = next_cookie(&post_with(&app, "/fill", None).await);
    let cleared = post_with(&app, "/clear", Some(&cookie)).await;
    let deletion = assert_deletes_session(&cleared, "clear()");
    for attribute in ["Path=/", "SameSite=Lax", "Secure", "HttpOnly"] {
        assert!(
            has_attribute(&deletion, attribute),
            "the deletion repeats {attribute}: {deletion}"
        );
    }
}

#[tokio::test]
async fn clear_deletes_the_cookie_with_the_configured_attributes() {
    let session = Session::new(key())
        .path("/app")
        .unwrap()
        .domain("example.com")
        .unwrap()
        .same_site(SameSite::Strict)
        .secure(false);
    let app = app(session);
    let set = post_with(&app, "/fill", None).await;
    let issued = set_cookie_for(&set, "session").unwrap();
    let cookie = next_cookie(&set);
    let cleared = post_with(&app, "/clear", Some(&cookie)).await;
    let deletion = assert_deletes_session(&cleared, "clear() with a configured cookie");
    for attribute in [
        "Path=/app",
        "Domain=example.com",
        "SameSite=Strict",
        "HttpOnly",
    ] {
        assert!(
            has_attribute(&issued, attribute),
            "the cookie has {attribute}: {issued}"
        );
        assert!(
            has_attribute(&deletion, attribute),
            "the deletion repeats {attribute}: {deletion}"
        );
    }
    assert!(
        !has_attribute(&deletion, "Secure"),
        "secure(false): no Secure on the deletion: {deletion}"
    );
}

#[tokio::test]
async fn clearing_an_empty_session_writes_nothing() {
    let app = default_app();
    let response = post_with(&app, "/clear", None).await;
    assert_eq!(set_cookies(&response), Vec::<String>::new());
}

#[tokio::test]
async fn session_data_without_the_layer_is_a_500_naming_the_layer() {
    let app: Router = Router::new().route(
        "/",
        get(|s: SessionData| async move { s.get::<u8>("x").is_some().to_string() }),
    );
    let response = get_with(&app, "/", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let message = body_text(response).await;
    assert!(
        message.contains("Session"),
        "the message names the missing layer: {message}"
    );
}

// ---------------------------------------------------------------------------
// exp and iat
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tokens_carry_exp_one_day_after_iat_by_default() {
    let app = default_app();
    let before = jwt::now();
    let response = post_with(&app, "/theme/dark", None).await;
    let after = jwt::now();
    let claims = issued_claims(&response, &[KEY]);
    let iat = claims["iat"].as_u64().expect("iat is a whole number");
    let exp = claims["exp"].as_u64().expect("exp is a whole number");
    assert!(
        (before..=after).contains(&iat),
        "iat {iat} is the time of issue ({before}..={after})"
    );
    assert_eq!(exp, iat + DAY, "the default idle timeout is one day");
    assert!(jwt::check_expiry(&claims, after).is_ok());
}

#[tokio::test]
async fn idle_timeout_sets_exp() {
    let app = app(Session::new(key()).idle_timeout(Duration::from_secs(600)));
    let response = post_with(&app, "/theme/dark", None).await;
    let claims = issued_claims(&response, &[KEY]);
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 600);
}

#[tokio::test]
async fn the_session_cookie_has_no_max_age_and_the_default_attributes() {
    let app = default_app();
    let response = post_with(&app, "/theme/dark", None).await;
    let set = set_cookie_for(&response, "session").unwrap();
    assert!(
        !has_attribute_named(&set, "Max-Age"),
        "a browser-session cookie: {set}"
    );
    assert!(
        !has_attribute_named(&set, "Expires"),
        "a browser-session cookie: {set}"
    );
    for attribute in ["Path=/", "SameSite=Lax", "Secure", "HttpOnly"] {
        assert!(
            has_attribute(&set, attribute),
            "default attribute {attribute}: {set}"
        );
    }
    assert!(
        !has_attribute_named(&set, "Domain"),
        "no Domain by default: {set}"
    );
}

// ---------------------------------------------------------------------------
// Refused tokens (the attacks themselves: tests/attack_*.rs)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_hand_made_token_is_accepted() {
    // The control for the refusals below: the same kind of token, made right.
    let app = default_app();
    let now = jwt::now();
    let cookie = cookie_with(json!({"theme": "dark", "iat": now, "exp": now + 3600}), KEY);
    let response = get_with(&app, "/theme", Some(&cookie)).await;
    assert_no_session_cookie(&response, "a good fresh token");
    assert_eq!(body_text(response).await, "dark");
}

#[tokio::test]
async fn a_float_exp_as_microdot_writes_it_is_accepted() {
    let app = default_app();
    let now = jwt::now();
    let cookie = cookie_with(
        json!({"theme": "dark", "iat": now, "exp": now as f64 + 3600.5}),
        KEY,
    );
    assert_eq!(
        body_text(get_with(&app, "/theme", Some(&cookie)).await).await,
        "dark"
    );
}

/// Sends `cookie` to `/theme` and checks that the session is empty and the
/// cookie deleted.
async fn assert_refused(app: &Router, cookie: &str, case: &str) {
    let response = get_with(app, "/theme", Some(cookie)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{case}: a bad token is never an error"
    );
    assert_deletes_session(&response, case);
    assert_eq!(
        body_text(response).await,
        "-",
        "{case}: the session must be empty"
    );
}

#[tokio::test]
async fn a_refused_cookie_is_left_alone_when_the_session_is_not_read() {
    let app = default_app();
    let cookie = cookie_with(json!({"theme": "dark"}), OTHER_KEY);
    let response = get_with(&app, "/untouched", Some(&cookie)).await;
    assert_eq!(
        set_cookies(&response),
        Vec::<String>::new(),
        "nothing read, nothing written"
    );
}

#[tokio::test]
async fn new_data_replaces_a_refused_cookie() {
    let app = default_app();
    let cookie = cookie_with(json!({"theme": "dark"}), OTHER_KEY);
    let response = post_with(&app, "/theme/light", Some(&cookie)).await;
    let claims = issued_claims(&response, &[KEY]);
    assert_eq!(claims["theme"], "light");
}

// ---------------------------------------------------------------------------
// Key ring
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_of_a_previous_key_is_accepted_and_reissued_with_the_current_key() {
    let ring = KeyRing::new(key()).with_previous(other_key());
    let app = app(Session::new(ring));
    let now = jwt::now();
    let old = cookie_with(
        json!({"theme": "dark", "iat": now, "exp": now + 3600}),
        OTHER_KEY,
    );

    let response = get_with(&app, "/theme", Some(&old)).await;
    let claims = issued_claims(&response, &[KEY]);
    assert_eq!(
        claims["theme"], "dark",
        "the re-issued token keeps the data"
    );
    assert_eq!(
        body_text(response).await,
        "dark",
        "the old key's token is accepted"
    );
}

#[tokio::test]
async fn a_key_removed_from_the_ring_ends_its_sessions() {
    let now = jwt::now();
    let signed_by_old = cookie_with(
        json!({"theme": "dark", "iat": now, "exp": now + 3600}),
        OTHER_KEY,
    );
    let without_old = app(Session::new(KeyRing::new(key())));
    assert_refused(&without_old, &signed_by_old, "a key no longer in the ring").await;
}

#[tokio::test]
async fn a_token_of_the_current_key_is_not_reissued_by_a_ring() {
    let app = app(Session::new(KeyRing::new(key()).with_previous(other_key())));
    let now = jwt::now();
    let current = cookie_with(json!({"theme": "dark", "iat": now, "exp": now + 3600}), KEY);
    let response = get_with(&app, "/theme", Some(&current)).await;
    assert_no_session_cookie(&response, "a fresh token of the current key");
}

// ---------------------------------------------------------------------------
// Renewal
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_older_than_a_minute_is_reissued_on_a_read() {
    let app = default_app();
    let now = jwt::now();
    let cookie = cookie_with(
        json!({"theme": "dark", "iat": now - 61, "exp": now + 3600}),
        KEY,
    );
    let response = get_with(&app, "/theme", Some(&cookie)).await;
    let claims = issued_claims(&response, &[KEY]);
    let iat = claims["iat"].as_u64().unwrap();
    assert!(
        iat >= now,
        "the renewed token is issued now ({iat} >= {now})"
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        iat + DAY,
        "renewal pushes exp back a full idle timeout"
    );
    assert_eq!(claims["theme"], "dark", "renewal keeps the data");
    assert_eq!(body_text(response).await, "dark");
}

#[tokio::test]
async fn a_fresh_token_is_not_reissued_on_a_read() {
    let app = default_app();
    let now = jwt::now();
    let cookie = cookie_with(json!({"theme": "dark", "iat": now, "exp": now + 3600}), KEY);
    let response = get_with(&app, "/theme", Some(&cookie)).await;
    assert_no_session_cookie(&response, "a token issued just now");
}

#[tokio::test]
async fn an_old_token_is_not_reissued_when_the_session_is_not_read() {
    let app = default_app();
    let now = jwt::now();
    let cookie = cookie_with(
        json!({"theme": "dark", "iat": now - 600, "exp": now + 3600}),
        KEY,
    );
    let response = get_with(&app, "/untouched", Some(&cookie)).await;
    assert_eq!(set_cookies(&response), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Keys and configuration
// ---------------------------------------------------------------------------

#[test]
fn a_short_secret_key_is_refused_with_advice() {
    let error = SecretKey::new("top-secret!").unwrap_err();
    assert_eq!(error, KeyError::TooShort { len: 11 });
    let message = error.to_string();
    assert!(
        message.contains("at least 32"),
        "the message says how long: {message}"
    );
    assert!(
        message.contains("openssl rand") || message.contains("SecretKey::generate"),
        "the message says how to make a key: {message}"
    );
    assert!(SecretKey::new("x".repeat(31)).is_err());
    assert!(SecretKey::new("x".repeat(32)).is_ok());
}

#[test]
fn a_path_without_a_leading_slash_is_a_config_error() {
    let error = Session::new(key()).path("no-slash").unwrap_err();
    assert_eq!(error, ConfigError::CookiePath("no-slash".into()));
    assert!(error.to_string().contains("must start with `/`"), "{error}");
    for bad in ["", "/a;b", "/a b", "/a\nb"] {
        assert!(Session::new(key()).path(bad).is_err(), "path {bad:?}");
    }
}

#[test]
fn a_bad_cookie_name_is_a_config_error() {
    let error = Session::new(key()).cookie_name("a b").unwrap_err();
    assert_eq!(error, ConfigError::CookieName("a b".into()));
    assert!(error.to_string().contains("cookie name"), "{error}");
    for bad in ["", "a;b", "a=b", "a,b", "é"] {
        assert!(
            Session::new(key()).cookie_name(bad).is_err(),
            "name {bad:?}"
        );
    }
}

#[test]
fn a_bad_domain_is_a_config_error() {
    let error = Session::new(key()).domain("a b").unwrap_err();
    assert_eq!(error, ConfigError::CookieDomain("a b".into()));
    assert!(
        error.to_string().contains("example.com"),
        "the message shows a good domain: {error}"
    );
    for bad in ["", "a;b", "example.com/path"] {
        assert!(Session::new(key()).domain(bad).is_err(), "domain {bad:?}");
    }
}

#[tokio::test]
async fn a_custom_cookie_name_and_path_are_honoured() {
    let app = app(Session::new(key())
        .cookie_name("sid")
        .unwrap()
        .path("/app")
        .unwrap());
    let response = post_with(&app, "/theme/dark", None).await;
    assert_eq!(
        set_cookie_for(&response, "session"),
        None,
        "no cookie under the default name"
    );
    let set = set_cookie_for(&response, "sid").expect("the cookie is called sid");
    assert!(has_attribute(&set, "Path=/app"), "{set}");

    let sid = format!("sid={}", cookie_value(&set));
    assert_eq!(
        body_text(get_with(&app, "/theme", Some(&sid)).await).await,
        "dark",
        "the sid cookie is read"
    );

    // A cookie under the default name is not this app's session.
    let now = jwt::now();
    let default_named = cookie_with(json!({"theme": "light", "iat": now, "exp": now + 60}), KEY);
    let response = get_with(&app, "/theme", Some(&default_named)).await;
    assert_eq!(
        set_cookies(&response),
        Vec::<String>::new(),
        "the `session` cookie is ignored"
    );
    assert_eq!(body_text(response).await, "-");
}

#[tokio::test]
async fn same_site_strict_and_secure_off_are_honoured() {
    let app = app(Session::new(key())
        .same_site(SameSite::Strict)
        .secure(false));
    let response = post_with(&app, "/theme/dark", None).await;
    let set = set_cookie_for(&response, "session").unwrap();
    assert!(has_attribute(&set, "SameSite=Strict"), "{set}");
    assert!(!has_attribute(&set, "SameSite=Lax"), "{set}");
    assert!(!has_attribute(&set, "Secure"), "secure(false): {set}");
    assert!(has_attribute(&set, "HttpOnly"), "{set}");
}

#[tokio::test]
async fn same_site_none_keeps_secure() {
    let app = app(Session::new(key()).same_site(SameSite::None));
    let response = post_with(&app, "/theme/dark", None).await;
    let set = set_cookie_for(&response, "session").unwrap();
    assert!(has_attribute(&set, "SameSite=None"), "{set}");
    assert!(
        has_attribute(&set, "Secure"),
        "browsers drop SameSite=None without Secure: {set}"
    );
}

// ---------------------------------------------------------------------------
// Vary: Cookie
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_response_that_read_the_session_varies_on_cookie() {
    let app = default_app();
    let response = get_with(&app, "/theme", None).await;
    assert_eq!(
        count(&vary_entries(&response), "cookie"),
        1,
        "{:?}",
        vary_entries(&response)
    );
}

#[tokio::test]
async fn a_response_that_did_not_read_the_session_does_not_vary() {
    let app = default_app();
    let response = get_with(&app, "/untouched", Some("session=whatever")).await;
    assert_eq!(vary_entries(&response), Vec::<String>::new());
}

#[tokio::test]
async fn vary_cookie_is_not_duplicated() {
    let app = default_app();
    let response = get_with(&app, "/vary-cookie", None).await;
    let entries = vary_entries(&response);
    assert_eq!(
        count(&entries, "cookie"),
        1,
        "Vary: Cookie once: {entries:?}"
    );
}

#[tokio::test]
async fn vary_cookie_is_added_to_another_vary() {
    let app = default_app();
    let response = get_with(&app, "/vary-accept", None).await;
    let entries = vary_entries(&response);
    assert_eq!(
        count(&entries, "accept"),
        1,
        "the handler's Vary stays: {entries:?}"
    );
    assert_eq!(count(&entries, "cookie"), 1, "Cookie is added: {entries:?}");
}

#[tokio::test]
async fn vary_cookie_inside_a_list_is_not_duplicated() {
    let app = Router::new()
        .route(
            "/",
            get(|s: SessionData| async move {
                let _ = s.get::<u8>("x");
                let mut response = "listed".into_response();
                response
                    .headers_mut()
                    .insert(VARY, HeaderValue::from_static("Accept-Encoding, cookie"));
                response
            }),
        )
        .layer(Session::new(key()));
    let response = get_with(&app, "/", None).await;
    let entries = vary_entries(&response);
    assert_eq!(count(&entries, "cookie"), 1, "{entries:?}");
    assert_eq!(count(&entries, "accept-encoding"), 1, "{entries:?}");
}

/// A `Cookie` header seen before is not read again, but its token's times
/// are still checked on every request: the same header, byte for byte,
/// is refused once its session has expired, and another key's
/// configuration does not take the memo's word for it.
#[tokio::test]
async fn a_cookie_header_seen_before_is_still_checked_for_its_times() {
    use axum_latch::clock::Clock;
    use std::time::SystemTime;

    let clock = Clock::manual(SystemTime::now());
    let first = app(Session::new(key())
        .idle_timeout(Duration::from_secs(3600))
        .clock(clock.clone()));
    let cookie = next_cookie(&post_with(&first, "/theme/dark", None).await);
    for _ in 0..3 {
        let response = get_with(&first, "/theme", Some(&cookie)).await;
        assert_eq!(body_text(response).await, "dark", "the same header, again");
    }
    clock.advance(Duration::from_secs(3601));
    let response = get_with(&first, "/theme", Some(&cookie)).await;
    let deletion = set_cookie_for(&response, "session");
    assert_eq!(body_text(response).await, "-", "expired, memo or not");
    assert!(deletion.is_some(), "and the expired cookie is deleted");

    // Another app with another key, on this thread, sent the same header.
    let other = app(Session::new(SecretKey::new(OTHER_KEY).unwrap()).clock(clock.clone()));
    clock.set(SystemTime::now());
    let response = get_with(&other, "/theme", Some(&cookie)).await;
    assert_eq!(body_text(response).await, "-", "not signed with its key");
}
