//! Microdot interop mode (`Session::microdot_compat`): latch accepts the
//! tokens a Microdot app with the same secret key makes, which lack latch's
//! claims, and the tokens latch makes carry what Microdot reads.
//!
//! The Microdot tokens here are made as Microdot makes them (PyJWT, HS256):
//! a session `{"_user_id": …, "_fresh": …}` with no `exp`, and a remember
//! cookie `{"user_id": …, "days": …, "exp": <float>}`.

use crate::support;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use axum_latch::{
    Auth, AuthError, CurrentUser, FreshUser, Login, Remember, Session, SessionData, User,
};
use http::StatusCode;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::jwt;
use support::{key, Client, KEY};

/// The seed example's users: ids are strings.
#[derive(Clone, Debug, PartialEq)]
struct Account {
    id: String,
    name: String,
    password: String,
    /// When the password last changed, as an app records it.
    changed_at: Option<SystemTime>,
}

impl User for Account {
    type Id = String;
    fn id(&self) -> String {
        self.id.clone()
    }
    fn auth_hash(&self) -> &[u8] {
        self.password.as_bytes()
    }
    fn auth_hash_changed_at(&self) -> Option<SystemTime> {
        self.changed_at
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
            changed_at: None,
        };
        users.insert(id.to_owned(), account);
    }
    Arc::new(Mutex::new(users))
}

/// Changes the user's password now, recording when (as
/// `User::auth_hash_changed_at` reports it) if `recorded`.
fn change_password(users: &Users, id: &str, recorded: bool) {
    let mut users = users.lock().unwrap();
    let user = users.get_mut(id).unwrap();
    user.password = format!("{} and more", user.password);
    user.changed_at = recorded.then(SystemTime::now);
}

/// `/` greets the user, `/fresh` needs a fresh login, `/login/{id}` logs in
/// with remember-me, `/logout` logs out.
fn app(users: &Users, compat: bool) -> Router {
    app_until(
        users,
        compat.then(|| SystemTime::now() + Duration::from_secs(3600)),
    )
}

/// [`app`], in Microdot interop mode until `until` if set.
fn app_until(users: &Users, until: Option<SystemTime>) -> Router {
    app_with(users, until, None)
}

/// The app, with a session registry if given.
fn app_with(
    users: &Users,
    until: Option<SystemTime>,
    registry: Option<axum_latch::registry::SessionRegistry>,
) -> Router {
    let loader_users = users.clone();
    let login = Login::new(move |id: String| {
        let user = loader_users.lock().unwrap().get(&id).cloned();
        async move { Ok::<_, Infallible>(user) }
    });
    let login = match registry {
        Some(registry) => login.sessions(registry),
        None => login,
    };
    let session = Session::new(key()).secure(false);
    let session = match until {
        Some(until) => session.microdot_compat(until),
        None => session,
    };
    let login_users = users.clone();
    Router::new()
        .route(
            "/",
            get(|CurrentUser(user): CurrentUser<Account>| async move {
                format!("Hello, {}!", user.name)
            }),
        )
        // A page that reads the session but not the login.
        .route(
            "/news",
            get(|session: SessionData| async move {
                session.get::<String>("notice").unwrap_or_default()
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
    jwt::encode(claims.as_object().unwrap(), KEY)
}

/// Microdot's session after `login_user`: no `exp`, no fingerprint.
fn microdot_session(user_id: &str, fresh: bool) -> String {
    microdot_token(json!({"_user_id": user_id, "_fresh": fresh}))
}

/// Microdot's remember cookie: `exp` is a float (`time() + days * 86400`).
fn microdot_remember(user_id: &str, days: u32) -> String {
    microdot_remember_made(user_id, days, jwt::now() as f64 + 0.25)
}

/// Microdot's remember cookie as made at `made` (seconds since the epoch).
fn microdot_remember_made(user_id: &str, days: u32, made: f64) -> String {
    let exp = made + f64::from(days) * 86_400.0;
    microdot_token(json!({"user_id": user_id, "days": days, "exp": exp}))
}

/// The claims of a token latch set, read as Microdot (PyJWT) would.
fn claims_of(token: &str) -> serde_json::Map<String, Value> {
    let claims = jwt::decode(token, &[KEY]).expect("a token latch signed");
    jwt::check_expiry(&claims, jwt::now()).expect("not expired");
    claims
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
    // Adopted, never fresh: see `an_adopted_microdot_login_is_never_fresh`.
    assert_eq!(claims["_fresh"], json!(false));
    for name in ["exp", "iat", "_auth", "_login_at", "_purpose", "_sid"] {
        assert!(claims.contains_key(name), "{name} missing: {claims:?}");
    }
    // A session id of its own, given at adoption, kept from then on.
    let sid = claims["_sid"].as_str().expect("a session id").to_owned();
    assert_eq!(sid.len(), 22, "128 bits in base64url: {sid}");
    let again = browser.get("/").await;
    assert_eq!(again.status, StatusCode::OK);
    let cookie = browser.cookie("session").expect("the adopted session");
    assert_eq!(claims_of(&cookie)["_sid"], json!(sid), "kept");
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
    assert!(remember["exp"].as_f64().unwrap() > jwt::now() as f64 + 6.0 * 86_400.0);
}

#[tokio::test]
async fn the_mode_still_checks_signatures_and_expiry() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    let other_key = "another key, also well over 32 bytes long";
    let forged = jwt::encode(
        json!({"_user_id": "user001", "_fresh": true})
            .as_object()
            .unwrap(),
        other_key,
    );
    browser.set_cookie("session", &forged);
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);

    let expired = microdot_token(json!({"_user_id": "user001", "exp": jwt::now() - 5}));
    browser.set_cookie("session", &expired);
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);

    let exp = jwt::now() as f64 - 1.5;
    let stale = microdot_token(json!({"user_id": "user001", "days": 7, "exp": exp}));
    let mut browser = Client::new(app(&users, true));
    browser.set_cookie("_remember", &stale);
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
}

/// A Microdot session is adopted as a login, but never as a fresh one:
/// latch cannot tell when (or whether) its password was typed, and a copy
/// of the cookie would otherwise reach fresh-only pages for ever.
#[tokio::test]
async fn an_adopted_microdot_login_is_never_fresh() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    browser.set_cookie("session", &microdot_session("user001", true));
    let res = browser.get("/fresh").await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.body);
    let reissued = res.set_cookie("session").expect("the login is re-issued");
    assert_eq!(claims_of(reissued.value())["_fresh"], json!(false));
    assert_eq!(browser.get("/").await.body, "Hello, susan!");
    assert_eq!(browser.get("/fresh").await.status, StatusCode::FOUND);
}

/// In compat mode an anonymous session carries no fingerprint, and a
/// Microdot remember token is `{user_id, days, exp}` without one either: a
/// session whose data holds a `user_id` and `days` the visitor chose must
/// not be taken for a remember cookie (it would log in as that user).
#[tokio::test]
async fn a_session_with_a_visitor_chosen_user_id_is_not_a_remember_token() {
    let users = users();
    let mut browser = Client::new(app(&users, true));
    // What latch writes for an anonymous session whose app data is
    // `user_id` and `days`.
    let now = jwt::now();
    let session = microdot_token(json!({
        "user_id": "user002", "days": 30, "exp": now + 86_400, "iat": now,
        "_purpose": "session",
    }));
    browser.set_cookie("_remember", &session);
    let res = browser.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND, "{}", res.body);
    assert!(!browser.has_cookie("_remember"), "refused and deleted");
    assert!(!browser.has_cookie("session"), "no login was made");
}

/// A copy of a Microdot session cookie made before a password change: with
/// the change time recorded (`User::auth_hash_changed_at`), it is refused,
/// even though it was adopted before; without it, it is adopted again until
/// the mode's deadline (what the docs of `Session::microdot_compat` say).
#[tokio::test]
async fn a_copied_microdot_session_is_refused_after_a_password_change() {
    for recorded in [true, false] {
        let users = users();
        let app = app(&users, true);
        let copy = microdot_session("user001", true);
        let mut owner = Client::new(app.clone());
        owner.set_cookie("session", &copy);
        assert_eq!(owner.get("/").await.body, "Hello, susan!");

        change_password(&users, "user001", recorded);
        // The owner's adopted (re-issued) login ends with the password.
        assert_eq!(owner.get("/").await.status, StatusCode::FOUND);
        let mut thief = Client::new(app);
        thief.set_cookie("session", &copy);
        let res = thief.get("/").await;
        if recorded {
            assert_eq!(res.status, StatusCode::FOUND, "the original copy, replayed");
        } else {
            assert_eq!(
                res.body, "Hello, susan!",
                "adopted again: the documented gap"
            );
        }
    }
}

/// With a session registry, the per-user cut-off closes the gap above: a
/// Microdot session (which carries no time) and a Microdot remember cookie
/// made before it are refused, adopted copies included; the adoption is
/// recorded as a session.
#[cfg(feature = "memory")]
#[tokio::test]
async fn a_registry_cut_off_ends_microdot_tokens_the_app_cannot_date() {
    use axum_latch::registry::SessionRegistry;
    let users = users();
    let registry = SessionRegistry::connect(axum_latch::stores::MemoryStore::new())
        .await
        .unwrap();
    let until = Some(SystemTime::now() + Duration::from_secs(3600));
    let app = app_with(&users, until, Some(registry.clone()));
    let copy = microdot_session("user001", true);
    let remember = microdot_remember_made("user001", 7, jwt::now() as f64 - 5.0);
    let mut owner = Client::new(app.clone());
    owner.set_cookie("session", &copy);
    assert_eq!(owner.get("/").await.body, "Hello, susan!");
    assert_eq!(
        registry.sessions(&"user001").await.unwrap().len(),
        1,
        "recorded"
    );

    // The password changes without `auth_hash_changed_at`; the app ends the
    // user's sessions through the registry instead.
    change_password(&users, "user001", false);
    registry.end_all(&"user001").await.unwrap();
    assert_eq!(owner.get("/").await.status, StatusCode::FOUND);
    let mut thief = Client::new(app.clone());
    thief.set_cookie("session", &copy);
    assert_eq!(thief.get("/").await.status, StatusCode::FOUND, "the copy");
    let mut thief = Client::new(app);
    thief.set_cookie("_remember", &remember);
    assert_eq!(
        thief.get("/").await.status,
        StatusCode::FOUND,
        "the remember cookie"
    );
}

/// A Microdot remember cookie is dated (`exp` less its days): one made
/// before the recorded change is refused, one made after is adopted.
#[tokio::test]
async fn a_microdot_remember_cookie_is_refused_if_made_before_a_password_change() {
    let users = users();
    let app = app(&users, true);
    let now = jwt::now() as f64;
    let before = microdot_remember_made("user002", 7, now - 0.5);
    change_password(&users, "user002", true);
    let after = microdot_remember_made("user002", 7, now + 1.5);

    let mut browser = Client::new(app.clone());
    browser.set_cookie("_remember", &before);
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
    assert!(!browser.has_cookie("_remember"), "refused and deleted");

    let mut browser = Client::new(app);
    browser.set_cookie("_remember", &after);
    assert_eq!(browser.get("/").await.body, "Hello, david!");
}

/// A login Microdot made inside a session latch had issued (Microdot keeps
/// the claims it does not know, `iat` among them) is dated by that `iat`:
/// the login was made no earlier.
#[tokio::test]
async fn a_microdot_login_in_a_latch_session_is_dated_by_its_iat() {
    let users = users();
    let app = app(&users, true);
    change_password(&users, "user001", true);
    let now = jwt::now();
    let login = |iat: u64| {
        microdot_token(json!({
            "_purpose": "session", "exp": now + 3600, "iat": iat, "theme": "dark",
            "_user_id": "user001", "_fresh": true,
        }))
    };
    let mut browser = Client::new(app.clone());
    browser.set_cookie("session", &login(now + 1));
    assert_eq!(browser.get("/").await.body, "Hello, susan!", "made after");
    let mut browser = Client::new(app);
    browser.set_cookie("session", &login(now - 10));
    assert_eq!(
        browser.get("/").await.status,
        StatusCode::FOUND,
        "made before"
    );
}

/// After the mode's deadline, Microdot's own tokens are refused; latch's
/// tokens (which Microdot reads too) keep working.
#[tokio::test]
async fn microdot_tokens_are_refused_after_the_deadline() {
    let users = users();
    let ended = SystemTime::now() - Duration::from_secs(1);
    let mut browser = Client::new(app_until(&users, Some(ended)));
    browser.set_cookie("session", &microdot_session("user001", true));
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
    assert!(!browser.has_cookie("session"), "refused and deleted");
    browser.set_cookie("_remember", &microdot_remember("user001", 7));
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
    assert!(!browser.has_cookie("_remember"), "refused and deleted");

    let res = browser.post("/login/user001").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/").await.body, "Hello, susan!");
    browser.remove_cookie("session");
    assert_eq!(browser.get("/").await.body, "Hello, susan!", "remembered");
}

/// A page that reads the session but not the login re-issues a Microdot
/// session as a latch token without checking its login. The re-issued
/// token must keep the time the original showed (none): dated anew, a
/// copy made before a password change would pass for one made after it.
#[tokio::test]
async fn a_copied_microdot_session_is_not_redated_by_a_page_that_only_reads_the_session() {
    let users = users();
    let mut thief = Client::new(app(&users, true));
    thief.set_cookie("session", &microdot_session("user001", true));
    change_password(&users, "user001", true);
    let res = thief.get("/news").await;
    let reissued = res
        .set_cookie("session")
        .expect("re-issued as a latch token");
    let claims = claims_of(reissued.value());
    assert_eq!(claims["_user_id"], json!("user001"));
    assert!(
        !claims.contains_key("iat"),
        "no time it did not have: {claims:?}"
    );
    let res = thief.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND, "still refused: {}", res.body);
}
