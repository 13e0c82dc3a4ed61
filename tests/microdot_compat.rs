//! Microdot interop mode (`Session::microdot_compat`): latch accepts the
//! tokens a Microdot app with the same secret key makes, which lack latch's
//! claims, and the tokens latch makes carry what Microdot reads.
//!
//! The Microdot tokens here are made as Microdot makes them (PyJWT, HS256):
//! a session `{"_user_id": …, "_fresh": …}` with no `exp`, and a remember
//! cookie `{"user_id": …, "days": …, "exp": <float>}`.

mod support;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;
use latch::{
    token, Auth, AuthError, CurrentUser, FreshUser, KeyRing, Login, Remember, Session, User,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use support::{key, Client};

/// The seed example's users: ids are strings.
#[derive(Clone, Debug, PartialEq)]
struct Account {
    id: String,
    name: String,
    password: String,
}

impl User for Account {
    type Id = String;
    fn id(&self) -> String {
        self.id.clone()
    }
    fn auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
}

type Users = Arc<Mutex<HashMap<String, Account>>>;

fn users() -> Users {
    let mut users = HashMap::new();
    for (id, name, password) in [("user001", "susan", "hello"), ("user002", "david", "bye")] {
        let account = Account {
            id: id.to_owned(),
            name: name.to_owned(),
            password: password.to_owned(),
        };
        users.insert(id.to_owned(), account);
    }
    Arc::new(Mutex::new(users))
}

/// `/` greets the user, `/fresh` needs a fresh login, `/login/{id}` logs in
/// with remember-me, `/logout` logs out.
fn app(users: &Users, compat: bool) -> Router {
    let loader_users = users.clone();
    let login = Login::new(move |id: String| {
        let user = loader_users.lock().unwrap().get(&id).cloned();
        async move { Ok::<_, Infallible>(user) }
    });
    let session = Session::new(key()).secure(false);
    let session = if compat {
        session.microdot_compat()
    } else {
        session
    };
    let login_users = users.clone();
    Router::new()
        .route(
            "/",
            get(|CurrentUser(user): CurrentUser<Account>| async move {
                format!("Hello, {}!", user.name)
            }),
        )
        .route(
            "/fresh",
            get(|FreshUser(user): FreshUser<Account>| async move {
                format!("Fresh, {}!", user.name)
            }),
        )
        .route(
            "/login/{id}",
            post(
                move |auth: Auth<Account>,
                      axum::extract::Path(id): axum::extract::Path<String>| {
                    let user = login_users.lock().unwrap().get(&id).cloned().unwrap();
                    async move { auth.login_user(&user, Remember::Days(7)).await }
                },
            ),
        )
        .route(
            "/logout",
            post(|auth: Auth<Account>| async move {
                auth.logout_user().await;
                Ok::<_, AuthError>(Redirect::to("/"))
            }),
        )
        .layer(login)
        .layer(session)
}

/// A token as Microdot's `Session.encode` makes it.
fn microdot_token(claims: Value) -> String {
    token::encode(claims.as_object().unwrap(), &key())
}

/// Microdot's session after `login_user`: no `exp`, no fingerprint.
fn microdot_session(user_id: &str, fresh: bool) -> String {
    microdot_token(json!({"_user_id": user_id, "_fresh": fresh}))
}

/// Microdot's remember cookie: `exp` is a float (`time() + days * 86400`).
fn microdot_remember(user_id: &str, days: u32) -> String {
    let exp = token::now() as f64 + 0.25 + f64::from(days) * 86_400.0;
    microdot_token(json!({"user_id": user_id, "days": days, "exp": exp}))
}

/// The claims of a token latch set, read as Microdot (PyJWT) would.
fn claims_of(token: &str) -> serde_json::Map<String, Value> {
    let verified = token::decode(token, &KeyRing::new(key())).expect("a token latch signed");
    token::check_expiry(&verified.claims, token::now()).expect("not expired");
    verified.claims
}

#[tokio::test]
async fn without_the_mode_a_microdot_session_is_refused() {
    let users = users();
    let mut browser = Client::new(app(&users, false));
    browser.set_cookie("session", &microdot_session("user001", true));
    let res = browser.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.body);
    assert!(res.location().unwrap().starts_with("/login"));
}

#[tokio::test]
async fn a_microdot_session_is_adopted_and_reissued_as_a_latch_token() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    browser.set_cookie("session", &microdot_session("user001", true));
    let res = browser.get("/").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "Hello, susan!");

    // Re-issued at once, with latch's claims added and Microdot's kept.
    let reissued = res.set_cookie("session").expect("the session is re-issued");
    let claims = claims_of(reissued.value());
    assert_eq!(claims["_user_id"], json!("user001"));
    assert_eq!(claims["_fresh"], json!(true));
    for name in ["exp", "iat", "_auth", "_login_at"] {
        assert!(claims.contains_key(name), "{name} missing: {claims:?}");
    }
    // A fresh Microdot login stays fresh.
    let res = browser.get("/fresh").await;
    assert_eq!(res.body, "Fresh, susan!");
}

#[tokio::test]
async fn an_adopted_login_ends_when_the_password_changes() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    browser.set_cookie("session", &microdot_session("user002", true));
    assert_eq!(browser.get("/").await.body, "Hello, david!");
    users.lock().unwrap().get_mut("user002").unwrap().password = "new".to_owned();
    let res = browser.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "the adopted login is tied to the old password"
    );
}

#[tokio::test]
async fn a_microdot_remember_cookie_logs_in_and_is_replaced() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    browser.set_cookie("_remember", &microdot_remember("user001", 7));
    let res = browser.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "Hello, susan!");
    let remember = res
        .set_cookie("_remember")
        .expect("a replaced remember cookie");
    let claims = claims_of(remember.value());
    // What Microdot reads (user_id, days, exp), plus latch's fingerprint.
    assert_eq!(claims["user_id"], json!("user001"));
    assert_eq!(claims["days"], json!(7));
    assert!(claims.contains_key("_auth"));
    // A remembered login is not fresh, as in Microdot.
    let res = browser.get("/fresh").await;
    assert_eq!(res.status, StatusCode::FOUND);
}

#[tokio::test]
async fn without_the_mode_a_microdot_remember_cookie_is_refused_and_deleted() {
    let users = users();
    let mut browser = Client::new(app(&users, false));
    browser.set_cookie("_remember", &microdot_remember("user001", 7));
    let res = browser.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert!(!browser.has_cookie("_remember"));
}

#[tokio::test]
async fn tokens_latch_makes_carry_what_microdot_reads() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    let res = browser.post("/login/user001").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let session = claims_of(&browser.cookie("session").unwrap());
    assert_eq!(session["_user_id"], json!("user001"));
    assert_eq!(session["_fresh"], json!(true));
    let remember = claims_of(&browser.cookie("_remember").unwrap());
    assert_eq!(remember["user_id"], json!("user001"));
    assert_eq!(remember["days"], json!(7));
    assert!(remember["exp"].as_f64().unwrap() > token::now() as f64 + 6.0 * 86_400.0);
}

#[tokio::test]
async fn the_mode_still_checks_signatures_and_expiry() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    let other_key = latch::SecretKey::new("another key, also well over 32 bytes long").unwrap();
    let forged = token::encode(
        json!({"_user_id": "user001", "_fresh": true})
            .as_object()
            .unwrap(),
        &other_key,
    );
    browser.set_cookie("session", &forged);
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);

    let expired = microdot_token(json!({"_user_id": "user001", "exp": token::now() - 5}));
    browser.set_cookie("session", &expired);
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);

    let exp = token::now() as f64 - 1.5;
    let stale = microdot_token(json!({"user_id": "user001", "days": 7, "exp": exp}));
    let mut browser = Client::new(app(&users, true));
    browser.set_cookie("_remember", &stale);
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
}
