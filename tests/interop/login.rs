//! Microdot's `tests/test_login.py`, scenario by scenario, against latch.
//!
//! Differences that hold for every test here: latch answers the login `POST`
//! with `303 See Other` where Microdot answers `302 Found` (the browser then
//! follows with a `GET`, whatever the method was); and latch refuses secret
//! keys shorter than 32 bytes, so Microdot's `secret` becomes
//! [`support::KEY`]. Microdot's `@login` is the `CurrentUser` extractor,
//! `@login.fresh` is `FreshUser`, and `request.g.current_user` is what those
//! extractors (and `Auth::current_user`) return.

use crate::support;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_latch::{
    Auth, AuthError, CurrentUser, FreshUser, Login, Remember, Session, User, UserLoader,
};
use http::StatusCode;
use serde_json::json;
use std::convert::Infallible;
use support::{key, Client};

/// Microdot's test `User`: an id and a name.
#[derive(Clone, Debug, PartialEq)]
struct TestUser {
    id: u64,
    name: String,
}

impl TestUser {
    fn new(id: u64) -> Self {
        Self {
            id,
            name: format!("user{id}"),
        }
    }
}

impl User for TestUser {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn auth_hash(&self) -> &[u8] {
        // Microdot has no revocation; every test user has the same hash.
        b"no password in these tests"
    }
}

/// Microdot's `load_user` that finds every id: `User(user_id, f'user{user_id}')`.
async fn load_any_user(id: u64) -> Result<Option<TestUser>, Infallible> {
    Ok(Some(TestUser::new(id)))
}

/// Microdot's `load_user` that finds no one.
async fn load_no_user(_id: u64) -> Result<Option<TestUser>, Infallible> {
    Ok(None)
}

fn with_layers(router: Router, login: Login<TestUser, impl UserLoader<TestUser>>) -> Router {
    router.layer(login).layer(Session::new(key()))
}

/// Microdot's `test_login`: an anonymous request is sent to the login page
/// with `next` set to the path and query, encoded once; the login redirects
/// back to `next` with one cookie; the user is then let in (and is the same
/// whichever way the handler asks); after logout the page needs a login
/// again.
///
/// Differences: the login answers `303` (Microdot `302`). latch also
/// deletes the emptied session cookie on logout, which the test checks.
#[tokio::test]
async fn test_login() {
    async fn index(CurrentUser(user): CurrentUser<TestUser>, auth: Auth<TestUser>) -> String {
        let again = auth.current_user().await.expect("the loader does not fail");
        assert_eq!(
            again.as_ref(),
            Some(&user),
            "Auth::current_user and CurrentUser give the same user"
        );
        user.name.clone()
    }
    async fn login_route(auth: Auth<TestUser>) -> Result<Redirect, AuthError> {
        auth.login_user(&TestUser::new(123), Remember::Off).await
    }
    async fn logout_route(auth: Auth<TestUser>) -> &'static str {
        auth.logout_user().await;
        "ok"
    }
    let app = Router::new()
        .route("/", get(index))
        .route("/login", post(login_route))
        .route("/logout", post(logout_route));
    let mut client = Client::new(with_layers(app, Login::new(load_any_user)));

    let res = client.get("/?foo=bar").await;
    assert_eq!(res.status, StatusCode::FOUND, "anonymous GET is redirected");
    assert_eq!(res.location(), Some("/login?next=/%3Ffoo%3Dbar"));

    let res = client.post("/login?next=/%3Ffoo=bar").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "latch answers the login POST with 303 (Microdot: 302): {}",
        res.body
    );
    assert_eq!(
        res.location(),
        Some("/?foo=bar"),
        "the login goes back to next"
    );
    assert_eq!(
        res.set_cookies().len(),
        1,
        "only the session cookie is set: {:?}",
        res.set_cookies()
    );
    assert!(
        client.has_cookie("session"),
        "the browser keeps the session cookie"
    );

    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "logged in: {}", res.body);
    assert_eq!(res.body, "user123");

    let res = client.post("/logout").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "ok");
    assert!(
        !client.has_cookie("session"),
        "the emptied session cookie is deleted: {:?}",
        res.set_cookies()
    );

    let res = client.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "logged out: login required again"
    );
    assert_eq!(res.location(), Some("/login?next=/"));
}

/// Microdot's `test_login_bad_user_id`: a login whose user the loader no
/// longer finds is no login; the page redirects to the login page.
///
/// Differences: the login answers `303` (Microdot `302`).
#[tokio::test]
async fn test_login_bad_user_id() {
    async fn foo(CurrentUser(_user): CurrentUser<TestUser>) -> &'static str {
        "ok"
    }
    async fn login_route(auth: Auth<TestUser>) -> Result<Redirect, AuthError> {
        auth.login_user(&TestUser::new(1), Remember::Off).await
    }
    let app = Router::new()
        .route("/foo", get(foo))
        .route("/login", post(login_route));
    let mut client = Client::new(with_layers(app, Login::new(load_no_user)));

    let res = client.post("/login?next=/").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "latch answers 303 (Microdot: 302)"
    );
    assert_eq!(res.location(), Some("/"));
    assert!(
        client.has_cookie("session"),
        "the login was stored in the session"
    );

    let res = client.get("/foo").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "a user the loader does not find is anonymous: {}",
        res.body
    );
    assert_eq!(res.location(), Some("/login?next=/foo"));
    assert_ne!(res.body, "ok", "the handler did not run");
}

/// Microdot's `test_login_bad_redirect`: a `next` on another site is
/// ignored, and the login goes to `/`.
///
/// Differences: the login answers `303` (Microdot `302`). Microdot follows
/// any `next` that starts with `/`, so `//example.com` (another site, to a
/// browser) and `/\example.com` get through there; latch keeps those off
/// too, which this test also checks.
#[tokio::test]
async fn test_login_bad_redirect() {
    async fn index(CurrentUser(_user): CurrentUser<TestUser>) -> &'static str {
        "ok"
    }
    async fn login_route(auth: Auth<TestUser>) -> Result<Redirect, AuthError> {
        auth.login_user(&TestUser::new(1), Remember::Off).await
    }
    let app = Router::new()
        .route("/", get(index))
        .route("/login", post(login_route));
    let mut client = Client::new(with_layers(app, Login::new(load_any_user)));

    let res = client.post("/login?next=http://example.com").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "latch answers 303 (Microdot: 302)"
    );
    assert_eq!(res.location(), Some("/"), "an absolute URL is not followed");

    for next in ["//example.com", "/%5Cexample.com", "%2F%2Fexample.com"] {
        let res = client.post(&format!("/login?next={next}")).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert_eq!(
            res.location(),
            Some("/"),
            "next={next} leads to another site and is not followed"
        );
    }
}

/// Microdot's `test_login_remember`: a login with "remember me" sets the
/// session and the `_remember` cookie; without the session cookie the
/// remember cookie logs the user back in, but not freshly, so the fresh page
/// sends the user to log in again; logout deletes the remember cookie.
///
/// Differences: the login answers `303` (Microdot `302`). The JSON body is
/// compared as JSON (axum writes `{"user":1}`, Python `{"user": 1}`). When
/// the remember cookie restores a login, latch re-issues it for the number
/// of days it was made for (Microdot always re-issues for 30 days); here
/// that is 30 days, checked through `Max-Age`.
#[tokio::test]
async fn test_login_remember() {
    async fn index(CurrentUser(user): CurrentUser<TestUser>) -> Json<serde_json::Value> {
        Json(json!({ "user": user.id }))
    }
    async fn login_route(auth: Auth<TestUser>) -> Result<Redirect, AuthError> {
        auth.login_user(&TestUser::new(1), true).await
    }
    async fn logout(auth: Auth<TestUser>) -> &'static str {
        auth.logout_user().await;
        "ok"
    }
    async fn fresh(FreshUser(user): FreshUser<TestUser>) -> String {
        format!("fresh {}", user.id)
    }
    let app = Router::new()
        .route("/", get(index))
        .route("/login", post(login_route))
        .route("/logout", post(logout))
        .route("/fresh", get(fresh));
    let mut client = Client::new(with_layers(app, Login::new(load_any_user)));

    let res = client.post("/login?next=/%3Ffoo=bar").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "latch answers 303 (Microdot: 302)"
    );
    assert_eq!(res.location(), Some("/?foo=bar"));
    assert_eq!(
        res.set_cookies().len(),
        2,
        "the session and the remember cookie are set: {:?}",
        res.set_cookies()
    );
    assert!(
        client.has_cookie("session"),
        "the browser keeps the session cookie"
    );
    assert!(
        client.has_cookie("_remember"),
        "the browser keeps the remember cookie"
    );

    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json(), json!({ "user": 1 }));
    let res = client.get("/fresh").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "a password login is fresh: {}",
        res.body
    );
    assert_eq!(res.body, "fresh 1");

    client.remove_cookie("session");
    let res = client.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the remember cookie restores the login: {}",
        res.body
    );
    assert_eq!(res.json(), json!({ "user": 1 }));
    let reissued = res
        .set_cookie("_remember")
        .expect("the restored login re-issues the remember cookie");
    assert_eq!(
        reissued.max_age(),
        Some(cookie::time::Duration::days(30)),
        "re-issued for the 30 days it was made for"
    );
    assert!(
        client.has_cookie("session"),
        "the restored login gets a session again"
    );

    let res = client.get("/fresh").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "a restored login is not fresh"
    );
    assert_eq!(res.location(), Some("/login?next=/fresh"));

    let res = client.post("/logout").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        !client.has_cookie("_remember"),
        "logout deletes the remember cookie: {:?}",
        res.set_cookies()
    );

    let res = client.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "logged out: login required again"
    );
}
