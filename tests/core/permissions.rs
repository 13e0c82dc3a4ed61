//! "Logged in but not allowed", over HTTP: the `Login::require` and
//! `Login::require_async` route layers and the `Allowed` extractor answer
//! a refused user with `403` (HTML to a navigation, JSON to an API client),
//! never a redirect to the login page, and an anonymous request as before.

use crate::support::fixtures::*;
use crate::support::{key, Client, TestResponse};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::Router;
use axum_latch::rejection::LoginRejection;
use axum_latch::{Allowed, Login, Permission, Session};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// susan (`user001`) is the admin.
fn is_admin(user: &Account) -> bool {
    user.id == "user001"
}

struct Admin;

impl Permission<Account> for Admin {
    async fn allows(user: &Account) -> bool {
        tokio::task::yield_now().await;
        is_admin(user)
    }
}

/// A handler that takes the rejection, to check which one it is.
async fn which(user: Result<Allowed<Account, Admin>, LoginRejection>) -> String {
    match user {
        Ok(Allowed(user, ..)) => format!("allowed {}", user.name),
        Err(LoginRejection::Forbidden(_)) => "forbidden".to_owned(),
        Err(LoginRejection::LoginRequired(_)) => "login required".to_owned(),
        Err(_) => "other".to_owned(),
    }
}

fn app() -> (Client, Arc<AtomicUsize>) {
    let db = Db::new();
    let login = Login::new(loader(db.clone()));
    let checks = Arc::new(AtomicUsize::new(0));
    let counted = checks.clone();
    let admin = Router::new()
        .route("/admin", get(|| async { "the admin page" }))
        .route_layer(login.require(is_admin));
    let billing = Router::new()
        .route("/billing", get(|| async { "billing" }))
        .route_layer(login.require_async(move |user: Arc<Account>| {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                is_admin(&user)
            }
        }));
    let api = Router::new()
        .route("/users", get(|| async { "[]" }))
        .route_layer(login.require(is_admin).api());
    let router = Router::new()
        .route(
            "/extracted",
            get(|Allowed(user, ..): Allowed<Account, Admin>| async move {
                format!("admin {}", user.name)
            }),
        )
        .route("/which", get(which))
        .merge(admin)
        .merge(billing)
        .nest("/api", api)
        .merge(account_routes(log_in_handler))
        .with_state(db)
        .layer(login)
        .layer(Session::new(key()));
    (Client::new(router), checks)
}

/// A `fetch()` from a page's script.
async fn fetch(client: &mut Client, uri: &str) -> TestResponse {
    let headers = [("sec-fetch-mode", "cors"), ("accept", "*/*")];
    client
        .request(Method::GET, uri, &headers, Body::empty())
        .await
}

fn assert_forbidden_page(res: &TestResponse, what: &str) {
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{what}: {}", res.body);
    assert!(res.location().is_none(), "{what}: never a redirect");
    assert_eq!(
        res.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{what}"
    );
    assert!(
        res.body.contains("<h1>Forbidden</h1>"),
        "{what}: {}",
        res.body
    );
}

fn assert_forbidden_json(res: &TestResponse, what: &str) {
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{what}: {}", res.body);
    assert!(res.location().is_none(), "{what}: never a redirect");
    assert_eq!(
        res.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    assert_eq!(
        res.json(),
        serde_json::json!({ "error": "forbidden" }),
        "{what}"
    );
}

#[tokio::test]
async fn an_anonymous_navigation_goes_to_the_login_page_and_an_api_client_gets_401() {
    let (mut browser, checks) = app();
    for path in ["/admin", "/billing", "/extracted"] {
        let res = browser.get(path).await;
        assert_eq!(res.status, StatusCode::FOUND, "{path}");
        assert_eq!(
            res.location(),
            Some(format!("/login?next={path}").as_str()),
            "{path}"
        );
        let res = fetch(&mut browser, path).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let res = browser.get("/api/users").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "an API group");
    assert_eq!(browser.get("/which").await.body, "login required");
    assert_eq!(
        checks.load(Ordering::SeqCst),
        0,
        "no permission check runs without a user"
    );
}

#[tokio::test]
async fn the_permitted_user_gets_through() {
    let (mut susan, checks) = app();
    log_in_through_the_form(&mut susan, "user001", "off", None).await;
    assert_eq!(susan.get("/admin").await.body, "the admin page");
    assert_eq!(susan.get("/billing").await.body, "billing");
    assert_eq!(susan.get("/extracted").await.body, "admin susan");
    assert_eq!(susan.get("/api/users").await.body, "[]");
    assert_eq!(susan.get("/which").await.body, "allowed susan");
    assert_eq!(checks.load(Ordering::SeqCst), 1, "the async check ran once");
}

#[tokio::test]
async fn a_logged_in_user_who_is_refused_gets_403_never_the_login_page() {
    let (mut david, checks) = app();
    log_in_through_the_form(&mut david, "user002", "off", None).await;
    for path in ["/admin", "/billing", "/extracted"] {
        let res = david.get(path).await;
        assert_forbidden_page(&res, path);
        let res = fetch(&mut david, path).await;
        assert_forbidden_json(&res, path);
    }
    let res = david.get("/api/users").await;
    assert_forbidden_json(&res, "a navigation to an API group");
    assert_eq!(david.get("/which").await.body, "forbidden");
    assert_eq!(checks.load(Ordering::SeqCst), 2);
    // Refused, and still logged in: no cookie was touched.
    let res = david.get("/admin").await;
    assert!(res.set_cookie("session").is_none(), "the session stays");
    assert_eq!(david.get("/which").await.body, "forbidden");
}
