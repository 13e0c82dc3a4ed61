//! The login side of latch, end to end through in-process routers: the
//! login page redirect and its `next`, API clients, nested routers, lazy
//! user loading, loader failures, route layers, missing layers,
//! remember-me, revocation through `auth_hash`, `Vary: Cookie` and cookie
//! attributes.
//!
//! Attacks have files of their own: `attack_open_redirect.rs` (where a
//! login may redirect to), `attack_forged_tokens.rs`,
//! `attack_expired_sessions.rs` (renewal included), `attack_cookies.rs` and
//! `attack_remember_replay.rs`.

use crate::support;
use crate::support::fixtures::{
    account_routes, index, loader, log_in_handler, log_in_through_the_form, logout, Account, Db,
    LOADER_ERROR,
};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_latch::clock::Clock;
use axum_latch::rejection::MissingLayer;
use axum_latch::session::SameSite;
use axum_latch::{
    Auth, ConfigError, CurrentUser, FreshUser, Login, Session, SessionData, User, UserLoader,
};
use cookie::Cookie;
use http::{Method, Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use support::jwt;
use support::{is_removal, key, Client, TestResponse, KEY};
use tower::ServiceExt as _;

// ---------------------------------------------------------------------------
// The app under test
// ---------------------------------------------------------------------------

fn login_for(db: &Arc<Db>) -> Login<Account, impl UserLoader<Account>> {
    Login::new(loader(db.clone()))
}

async fn fresh(FreshUser(user): FreshUser<Account>) -> String {
    format!("Fresh login: {}", user.name)
}

async fn maybe(user: Option<CurrentUser<Account>>) -> String {
    user.map_or_else(
        || "anonymous".to_owned(),
        |CurrentUser(user)| user.name.clone(),
    )
}

async fn current(auth: Auth<Account>) -> Response {
    match auth.current_user().await {
        Ok(Some(user)) => user.name.clone().into_response(),
        Ok(None) => "anonymous".into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

/// Asks for the user every way there is (behind `login.required()` too).
async fn all(
    CurrentUser(a): CurrentUser<Account>,
    b: Option<CurrentUser<Account>>,
    auth: Auth<Account>,
) -> String {
    let b = b.expect("Option<CurrentUser> sees the logged-in user");
    let c = auth
        .current_user()
        .await
        .expect("the loader works")
        .expect("Auth::current_user sees the logged-in user");
    let CurrentUser(b) = b;
    assert!(a == b && b == c, "every extractor sees the same user");
    format!("all: {}", a.name)
}

async fn api_me(CurrentUser(user): CurrentUser<Account>) -> Json<Value> {
    Json(json!({ "id": user.id }))
}

/// The app's routes, before the latch layers. `/all` and `/group/*` need a
/// login through `login.required()`, `/sudo/*` a fresh one through
/// `login.fresh()`; the rest decide in their handlers.
fn routes(db: &Arc<Db>, login: &Login<Account, impl UserLoader<Account>>) -> Router {
    let required = Router::new()
        .route("/all", get(all))
        .route("/group/a", get(|| async { "group a" }))
        .route("/group/b", post(|| async { "group b" }))
        .route_layer(login.required());
    let fresh_only = Router::new()
        .route("/sudo/a", get(|| async { "sudo a" }))
        .route("/sudo/b", get(|| async { "sudo b" }))
        .route_layer(login.fresh());
    let forced_api = Router::new()
        .route("/forced/me", get(api_me))
        .route("/forced/fresh", get(fresh))
        .route_layer(login.required().api());
    Router::new()
        .route("/", get(index).post(index).put(index).delete(index))
        .route("/fresh", get(fresh))
        .route("/maybe", get(maybe))
        .route("/current", get(current))
        .route("/public", get(|| async { "public" }))
        .route(
            "/sid",
            get(|auth: Auth<Account>| async move {
                auth.session_id().await.unwrap_or_else(|| "none".to_owned())
            }),
        )
        .route(
            "/clear",
            post(|session: SessionData| async move {
                session.clear();
                "cleared"
            }),
        )
        .merge(account_routes(log_in_handler))
        .route("/api/me", get(api_me))
        .route("/docs/{*rest}", get(index))
        .merge(required)
        .merge(fresh_only)
        .merge(forced_api)
        .with_state(db.clone())
}

fn app_with(
    db: &Arc<Db>,
    login: Login<Account, impl UserLoader<Account>>,
    session: Session,
) -> Router {
    routes(db, &login).layer(login).layer(session)
}

fn app(db: &Arc<Db>) -> Router {
    app_with(db, login_for(db), Session::new(key()))
}

/// A browser on the default app.
fn browser() -> (Client, Arc<Db>) {
    let db = Db::new();
    (Client::new(app(&db)), db)
}

/// Logs `client` in as `user`, checking the login worked.
async fn log_in(client: &mut Client, user: &str, remember: &str) -> TestResponse {
    log_in_through_the_form(client, user, remember, None).await
}

async fn get_with(client: &mut Client, uri: &str, headers: &[(&str, &str)]) -> TestResponse {
    client
        .request(Method::GET, uri, headers, Body::empty())
        .await
}

/// The `next` of a login page URL, decoded once.
fn next_of(location: &str) -> Option<String> {
    let (_, query) = location.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "next")
        .map(|(_, value)| value.into_owned())
}

/// The claims of a latch token, checked with the test key.
fn claims_of(token_value: &str) -> jwt::Claims {
    jwt::decode(token_value, &[KEY]).expect("the token is signed with the test key")
}

/// The attributes that a deletion must repeat.
fn attributes(
    cookie: &Cookie<'_>,
) -> (Option<String>, Option<String>, bool, bool, Option<SameSite>) {
    (
        cookie.path().map(str::to_owned),
        cookie.domain().map(str::to_owned),
        cookie.secure() == Some(true),
        cookie.http_only() == Some(true),
        cookie.same_site(),
    )
}

fn assert_missing_layer(res: &TestResponse, missing: MissingLayer, what: &str) {
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{what}: a missing layer is a 500: {}",
        res.body
    );
    assert_eq!(res.body, missing.to_string(), "{what}: the body explains");
    let name = match missing {
        MissingLayer::Session => "`Session`",
        MissingLayer::Login => "`Login`",
        other => panic!("{what}: a missing layer this test does not know: {other:?}"),
    };
    assert!(
        res.body.contains(name),
        "{what}: the body names {name}: {}",
        res.body
    );
}

// ---------------------------------------------------------------------------
// login_url and default_redirect
// ---------------------------------------------------------------------------

#[tokio::test]
async fn login_url_defaults_to_login() {
    let (mut client, _db) = browser();
    for uri in ["/", "/fresh", "/group/a", "/sudo/a"] {
        let res = client.get(uri).await;
        assert_eq!(
            res.status,
            StatusCode::FOUND,
            "{uri}: anonymous is redirected"
        );
        assert_eq!(
            res.location(),
            Some(format!("/login?next={uri}").as_str()),
            "{uri}: redirected to the default /login"
        );
    }
}

#[tokio::test]
async fn custom_login_url_is_used_by_extractors_and_route_layers() {
    let db = Db::new();
    let login = login_for(&db)
        .login_url("/signin")
        .expect("/signin is a path on this site");
    let mut client = Client::new(app_with(&db, login, Session::new(key())));
    for uri in ["/", "/fresh", "/group/a", "/sudo/a"] {
        let res = client.get(uri).await;
        assert_eq!(res.status, StatusCode::FOUND, "{uri}");
        assert_eq!(
            res.location(),
            Some(format!("/signin?next={uri}").as_str()),
            "{uri}: sent to the custom login URL"
        );
    }
    let res = get_with(&mut client, "/api/me", &[("accept", "application/json")]).await;
    assert_eq!(res.json()["login_url"], "/signin?next=/api/me");
}

#[tokio::test]
async fn login_url_with_a_query_keeps_it() {
    let db = Db::new();
    let login = login_for(&db).login_url("/signin?lang=en").unwrap();
    let mut client = Client::new(app_with(&db, login, Session::new(key())));
    let res = client.get("/?a=1").await;
    assert_eq!(res.location(), Some("/signin?lang=en&next=/%3Fa%3D1"));
}

#[test]
fn off_site_login_url_is_a_config_error() {
    let db = Db::new();
    for bad in [
        "https://evil.example/login",
        "//evil.example/login",
        "/\\evil.example/login",
        "javascript:alert(1)",
        "login",
        "",
        "/log in",
    ] {
        let err = login_for(&db)
            .login_url(bad)
            .expect_err("an off-site login URL is refused");
        assert_eq!(
            err,
            ConfigError::LocalUrl(bad.to_owned()),
            "login_url({bad:?})"
        );
        assert!(
            err.to_string().contains("path on this site"),
            "the error says what to use: {err}"
        );
        let err = login_for(&db)
            .default_redirect(bad)
            .expect_err("an off-site default redirect is refused");
        assert_eq!(
            err,
            ConfigError::LocalUrl(bad.to_owned()),
            "default_redirect({bad:?})"
        );
    }
    assert!(login_for(&db).login_url("/accounts/login").is_ok());
    assert!(login_for(&db).default_redirect("/home").is_ok());
}

#[tokio::test]
async fn default_redirect_is_where_a_login_without_next_goes() {
    let (mut client, _db) = browser();
    let res = log_in(&mut client, "user001", "off").await;
    assert_eq!(res.location(), Some("/"), "the default redirect is /");

    let db = Db::new();
    let login = login_for(&db).default_redirect("/home").unwrap();
    let mut client = Client::new(app_with(&db, login, Session::new(key())));
    let res = log_in(&mut client, "user001", "off").await;
    assert_eq!(res.location(), Some("/home"), "no next: the custom default");
    let res = client
        .post_form("/login?next=//evil.example", "user=user001")
        .await;
    assert_eq!(
        res.location(),
        Some("/home"),
        "unsafe next: the custom default"
    );
    let res = client
        .post_form("/login?next=/account", "user=user001")
        .await;
    assert_eq!(
        res.location(),
        Some("/account"),
        "a safe next wins over the default"
    );
}

#[tokio::test]
async fn failed_credentials_do_not_log_in() {
    let (mut client, _db) = browser();
    let res = client.post_form("/login", "user=nobody").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.set_cookies().is_empty(), "no cookie for a failed login");
    assert_eq!(client.get("/maybe").await.body, "anonymous");
}

// ---------------------------------------------------------------------------
// Anonymous requests: browsers and API clients
// ---------------------------------------------------------------------------

#[tokio::test]
async fn anonymous_navigation_is_redirected_with_next_encoded_once() {
    let (mut client, _db) = browser();
    let uri = "/docs/report?year=2024&q=a%20b";
    let expected = "/login?next=/docs/report%3Fyear%3D2024%26q%3Da%2520b";
    let navigations: [&[(&str, &str)]; 6] = [
        // Current browsers: a page load says `Sec-Fetch-Mode: navigate`,
        // whatever its Accept.
        &[("sec-fetch-mode", "navigate")],
        &[("sec-fetch-mode", "navigate"), ("accept", "*/*")],
        &[
            ("sec-fetch-mode", "navigate"),
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
        ],
        // A browser without Fetch Metadata asks for HTML.
        &[("accept", "text/html")],
        &[(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )],
        &[("accept", "application/json, text/html;q=0.5")],
    ];
    for headers in navigations {
        let res = get_with(&mut client, uri, headers).await;
        assert_eq!(res.status, StatusCode::FOUND, "{headers:?}: a redirect");
        assert_eq!(res.location(), Some(expected), "{headers:?}");
        assert_eq!(
            next_of(expected).as_deref(),
            Some(uri),
            "decoding next once gives back the path and query"
        );
    }
}

/// What `fetch()`, axios, reqwest and curl send is not a navigation: a
/// `401` with JSON, never a redirect to an HTML page.
#[tokio::test]
async fn scripts_and_api_clients_get_401_whatever_they_accept() {
    let (mut client, db) = browser();
    let clients: [(&str, &[(&str, &str)]); 5] = [
        ("fetch()", &[("sec-fetch-mode", "cors"), ("accept", "*/*")]),
        (
            "axios",
            &[
                ("sec-fetch-mode", "cors"),
                ("accept", "application/json, text/plain, */*"),
            ],
        ),
        (
            "fetch() asking for HTML",
            &[("sec-fetch-mode", "cors"), ("accept", "text/html")],
        ),
        ("curl", &[("accept", "*/*")]),
        ("no-cors", &[("sec-fetch-mode", "no-cors")]),
    ];
    for (who, headers) in clients {
        for uri in ["/", "/group/a"] {
            let res = get_with(&mut client, uri, headers).await;
            assert_eq!(
                res.status,
                StatusCode::UNAUTHORIZED,
                "{who} {uri}: {}",
                res.body
            );
            assert_eq!(res.location(), None, "{who} {uri}: no redirect");
            assert_eq!(res.json()["error"], "login_required", "{who} {uri}");
        }
    }
    // reqwest sends neither Accept nor Sec-Fetch-Mode.
    let bare = Request::get("/").body(Body::empty()).unwrap();
    let res = app(&db).oneshot(bare).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no headers at all");
}

/// Behind `login.required().api()`, every request without a login gets a
/// `401`, a browser navigating included, from the guard and from the
/// extractors of those routes alike.
#[tokio::test]
async fn an_api_group_answers_401_to_every_request() {
    let (mut client, _db) = browser();
    for uri in ["/forced/me", "/forced/fresh"] {
        for headers in [
            &[][..],
            &[("sec-fetch-mode", "navigate"), ("accept", "text/html")][..],
            &[("accept", "application/json")][..],
        ] {
            let res = get_with(&mut client, uri, headers).await;
            assert_eq!(
                res.status,
                StatusCode::UNAUTHORIZED,
                "{uri} {headers:?}: {}",
                res.body
            );
            assert_eq!(res.location(), None, "{uri} {headers:?}");
            assert_eq!(res.json()["error"], "login_required", "{uri} {headers:?}");
        }
    }
    // A remembered login (not fresh) on the group's fresh-only route: a
    // 401 too, from the `FreshUser` extractor, for a navigation as well.
    log_in(&mut client, "user001", "on").await;
    client.remove_cookie("session");
    let res = client.get("/forced/me").await;
    assert_eq!(res.status, StatusCode::OK, "restored: {}", res.body);
    let res = client.get("/forced/fresh").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(res.json()["error"], "fresh_login_required");
    // Outside the group, the same navigation is redirected.
    let res = client.get("/fresh").await;
    assert_eq!(res.status, StatusCode::FOUND);
}

#[tokio::test]
async fn next_survives_the_whole_round_trip() {
    let (mut client, _db) = browser();
    let uri = "/docs/caf%C3%A9/a%2Fb?q=x%26y&lang=fr#top";
    let res = client.get(uri).await;
    let login_page = res.location().expect("redirected to log in").to_owned();
    assert!(login_page.starts_with("/login?next="), "{login_page}");
    assert_eq!(
        next_of(&login_page).as_deref(),
        Some("/docs/caf%C3%A9/a%2Fb?q=x%26y&lang=fr"),
        "next is the path and query (a fragment never reaches the server)"
    );
    // The login form posts to its own URL, with next, as Microdot's does.
    let res = client.post_form(&login_page, "user=user001").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(
        res.location(),
        Some("/docs/caf%C3%A9/a%2Fb?q=x%26y&lang=fr"),
        "the login goes back to exactly the page asked for"
    );
    let res = client.get(res.location().unwrap()).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "Hello, susan!");
}

#[tokio::test]
async fn anonymous_non_get_requests_get_303_and_head_302() {
    let (mut client, _db) = browser();
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let res = client
            .request(method.clone(), "/?x=1", &[], Body::empty())
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{method}: 303 See Other");
        assert_eq!(res.location(), Some("/login?next=/%3Fx%3D1"), "{method}");
    }
    let res = client.post("/group/b").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "route layer, POST: 303");
    assert_eq!(res.location(), Some("/login?next=/group/b"));
    let res = client.request(Method::HEAD, "/", &[], Body::empty()).await;
    assert_eq!(res.status, StatusCode::FOUND, "HEAD: 302 like GET");
}

#[tokio::test]
async fn api_clients_get_401_with_json() {
    let (mut client, _db) = browser();
    let cases: [&[(&str, &str)]; 4] = [
        &[("accept", "application/json")],
        &[("accept", "application/vnd.api+json")],
        &[("x-requested-with", "XMLHttpRequest")],
        &[
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest"),
        ],
    ];
    for headers in cases {
        for uri in ["/api/me?x=1", "/group/a"] {
            let res = get_with(&mut client, uri, headers).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{uri} {headers:?}");
            assert_eq!(res.location(), None, "{uri} {headers:?}: no redirect");
            assert!(
                res.header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "{uri} {headers:?}: JSON content type: {:?}",
                res.header("content-type")
            );
            let body = res.json();
            assert_eq!(body["error"], "login_required", "{uri} {headers:?}");
            let expected = if uri == "/group/a" {
                "/login?next=/group/a"
            } else {
                "/login?next=/api/me%3Fx%3D1"
            };
            assert_eq!(body["login_url"], expected, "{uri} {headers:?}");
        }
    }
}

#[tokio::test]
async fn api_clients_with_a_stale_login_get_fresh_login_required() {
    let (mut client, _db) = browser();
    log_in(&mut client, "user001", "on").await;
    client.remove_cookie("session");
    let res = client.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "restored from the remember cookie"
    );
    for uri in ["/fresh", "/sudo/a"] {
        let res = get_with(&mut client, uri, &[("accept", "application/json")]).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{uri}: {}", res.body);
        assert_eq!(
            res.json(),
            json!({ "error": "fresh_login_required", "login_url": format!("/login?next={uri}") }),
            "{uri}"
        );
        let res = client.get(uri).await;
        assert_eq!(
            res.status,
            StatusCode::FOUND,
            "{uri}: a browser is redirected"
        );
        assert_eq!(res.location(), Some(format!("/login?next={uri}").as_str()));
    }
}

// ---------------------------------------------------------------------------
// Nested routers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn nested_routers_keep_the_full_path_in_next() {
    let db = Db::new();
    let login = login_for(&db);
    let admin = Router::new()
        .route("/users", get(index))
        .route("/fresh", get(fresh));
    let guarded = Router::new()
        .route("/reports", get(|| async { "reports" }))
        .route_layer(login.required());
    let deep = Router::new().nest("/b", Router::new().route("/c", get(index)));
    let app = Router::new()
        .nest("/admin", admin)
        .nest("/guarded", guarded)
        .nest("/a", deep)
        .merge(routes(&db, &login))
        .layer(login)
        .layer(Session::new(key()));
    let mut client = Client::new(app);

    for (uri, expected) in [
        ("/admin/users?page=2", "/login?next=/admin/users%3Fpage%3D2"),
        ("/admin/fresh", "/login?next=/admin/fresh"),
        (
            "/guarded/reports?x=y",
            "/login?next=/guarded/reports%3Fx%3Dy",
        ),
        ("/a/b/c", "/login?next=/a/b/c"),
    ] {
        let res = client.get(uri).await;
        assert_eq!(res.status, StatusCode::FOUND, "{uri}");
        assert_eq!(
            res.location(),
            Some(expected),
            "{uri}: next has the full path"
        );
    }
    log_in(&mut client, "user001", "off").await;
    assert_eq!(client.get("/admin/users").await.body, "Hello, susan!");
    assert_eq!(client.get("/guarded/reports").await.body, "reports");
    assert_eq!(client.get("/a/b/c").await.body, "Hello, susan!");
}

#[tokio::test]
async fn layers_on_a_nested_router_still_see_the_full_path() {
    let db = Db::new();
    let login = login_for(&db);
    let inner = routes(&db, &login).layer(login).layer(Session::new(key()));
    let mut client = Client::new(Router::new().nest("/app", inner));
    let res = client.get("/app/docs/x?y=1").await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(res.location(), Some("/login?next=/app/docs/x%3Fy%3D1"));
    let res = client.get("/app/group/a").await;
    assert_eq!(res.location(), Some("/login?next=/app/group/a"));
}

// ---------------------------------------------------------------------------
// The login page redirect's next, as a property (where a login may
// redirect to afterwards: attack_open_redirect.rs)
// ---------------------------------------------------------------------------

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The login redirect's `next`, decoded once, is the path and query asked for.
    #[test]
    fn login_redirect_next_decodes_to_the_request(
        segments in proptest::collection::vec(any::<String>(), 1..4),
        query in proptest::option::of(any::<String>()),
    ) {
        let (mut client, _db) = browser();
        let mut uri = String::from("/docs/p");
        for segment in &segments {
            uri.push('/');
            uri.extend(percent_encoding::utf8_percent_encode(
                segment,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
        if let Some(query) = &query {
            uri.push_str("?q=");
            uri.extend(form_urlencoded::byte_serialize(query.as_bytes()));
        }
        let res = block_on(client.get(&uri));
        prop_assert_eq!(res.status, StatusCode::FOUND);
        let location = res.location().expect("a Location").to_owned();
        prop_assert!(location.starts_with("/login?next="), "{}", location);
        prop_assert_eq!(next_of(&location), Some(uri));
    }
}

// ---------------------------------------------------------------------------
// Loading the user: once, lazily, and failures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_user_is_loaded_at_most_once_per_request() {
    let (mut client, db) = browser();
    log_in(&mut client, "user001", "on").await;
    assert_eq!(db.loads(), 0, "login_user does not call the loader");

    db.reset_loads();
    let res = client.get("/all").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "all: susan");
    assert_eq!(
        db.loads(),
        1,
        "route layer, CurrentUser and Auth::current_user share one load"
    );

    // The same, when the login is restored from the remember cookie.
    client.remove_cookie("session");
    db.reset_loads();
    let res = client.get("/all").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(db.loads(), 1, "a restored login is loaded once too");
}

#[tokio::test]
async fn the_user_is_loaded_only_when_asked_for() {
    let (mut client, db) = browser();
    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(db.loads(), 0, "no session: nothing to load");

    log_in(&mut client, "user001", "off").await;
    db.reset_loads();
    let res = client.get("/public").await;
    assert_eq!(res.body, "public");
    assert_eq!(db.loads(), 0, "a route that never asks loads no user");
    let res = client.get("/login").await;
    assert_eq!(res.body, "the login form");
    assert_eq!(db.loads(), 0, "a route that never asks loads no user");
}

#[tokio::test]
async fn a_failing_loader_is_a_500_not_a_panic() {
    let (mut client, db) = browser();
    log_in(&mut client, "user001", "on").await;
    db.fail.store(true, Ordering::SeqCst);
    for uri in [
        "/", "/fresh", "/maybe", "/current", "/all", "/group/a", "/sudo/a",
    ] {
        let res = client.get(uri).await;
        assert_eq!(
            res.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{uri}: the loader failed: {}",
            res.body
        );
        assert!(
            !res.body.contains(LOADER_ERROR),
            "{uri}: the loader's error stays in the logs: {}",
            res.body
        );
    }
    assert!(
        client.has_cookie("session"),
        "a failing loader does not end the session"
    );

    // Through the remember cookie too.
    let mut restoring = client.another_browser();
    restoring.set_cookie("_remember", &client.cookie("_remember").unwrap());
    let res = restoring.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        res.body
    );

    db.fail.store(false, Ordering::SeqCst);
    let res = client.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the login works again: {}",
        res.body
    );
}

#[tokio::test]
async fn a_user_the_loader_no_longer_finds_is_anonymous() {
    let (mut client, db) = browser();
    log_in(&mut client, "user001", "on").await;
    db.remove("user001");
    assert_eq!(client.get("/maybe").await.body, "anonymous");
    assert_eq!(client.get("/current").await.body, "anonymous");
    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND, "a vanished user must log in");
    assert_eq!(res.location(), Some("/login?next=/"));
    let res = client.get("/group/a").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "route layer: a vanished user must log in"
    );

    // The remember cookie cannot bring the user back either.
    client.remove_cookie("session");
    let res = client.get("/maybe").await;
    assert_eq!(res.body, "anonymous");
}

// ---------------------------------------------------------------------------
// Route layers on groups of routes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn route_layers_guard_their_group_and_nothing_else() {
    let (mut client, _db) = browser();
    for uri in ["/group/a", "/sudo/a", "/sudo/b", "/all"] {
        let res = client.get(uri).await;
        assert_eq!(res.status, StatusCode::FOUND, "anonymous {uri}");
        assert_eq!(res.location(), Some(format!("/login?next={uri}").as_str()));
    }
    for (uri, body) in [
        ("/public", "public"),
        ("/login", "the login form"),
        ("/maybe", "anonymous"),
    ] {
        let res = client.get(uri).await;
        assert_eq!(res.status, StatusCode::OK, "{uri} stays public");
        assert_eq!(res.body, body);
    }

    log_in(&mut client, "user001", "on").await;
    for (uri, body) in [
        ("/group/a", "group a"),
        ("/sudo/a", "sudo a"),
        ("/sudo/b", "sudo b"),
    ] {
        let res = client.get(uri).await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "fresh login, {uri}: {}",
            res.body
        );
        assert_eq!(res.body, body);
    }
    assert_eq!(client.post("/group/b").await.body, "group b");

    // A login restored from the remember cookie is not fresh.
    client.remove_cookie("session");
    let res = client.get("/group/a").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "required(): a restored login will do"
    );
    for uri in ["/sudo/a", "/sudo/b"] {
        let res = client.get(uri).await;
        assert_eq!(
            res.status,
            StatusCode::FOUND,
            "fresh(): {uri} needs a password login"
        );
        assert_eq!(res.location(), Some(format!("/login?next={uri}").as_str()));
    }
    assert_eq!(client.get("/public").await.body, "public");
}

// ---------------------------------------------------------------------------
// Missing layers
// ---------------------------------------------------------------------------

/// Every way of asking for the user, as routes, with no latch layer.
fn user_routes(login: &Login<Account, impl UserLoader<Account>>) -> Router {
    let guarded = Router::new()
        .route("/required", get(|| async { "required" }))
        .route_layer(login.required());
    let fresh_only = Router::new()
        .route("/fresh-layer", get(|| async { "fresh" }))
        .route_layer(login.fresh());
    Router::new()
        .route("/current-user", get(index))
        .route("/fresh-user", get(fresh))
        .route("/maybe-user", get(maybe))
        .route("/auth", get(current))
        .route("/logout", post(logout))
        .merge(guarded)
        .merge(fresh_only)
}

const USER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/current-user"),
    ("GET", "/fresh-user"),
    ("GET", "/maybe-user"),
    ("GET", "/auth"),
    ("POST", "/logout"),
    ("GET", "/required"),
    ("GET", "/fresh-layer"),
];

async fn check_missing(app: Router, missing: MissingLayer, setup: &str) {
    let mut client = Client::new(app);
    for (method, uri) in USER_ROUTES {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let res = client.request(method, uri, &[], Body::empty()).await;
        assert_missing_layer(&res, missing, &format!("{setup}, {uri}"));
    }
}

#[tokio::test]
async fn without_any_layer_the_session_layer_is_named() {
    let db = Db::new();
    let login = login_for(&db);
    check_missing(user_routes(&login), MissingLayer::Session, "no layers").await;
}

#[tokio::test]
async fn without_the_login_layer_it_is_named() {
    let db = Db::new();
    let login = login_for(&db);
    let app = user_routes(&login).layer(Session::new(key()));
    check_missing(app, MissingLayer::Login, "Session only").await;
}

#[tokio::test]
async fn without_the_session_layer_it_is_named_even_with_login() {
    let db = Db::new();
    let login = login_for(&db);
    let app = user_routes(&login).layer(login.clone());
    check_missing(app, MissingLayer::Session, "Login only").await;
}

#[tokio::test]
async fn layers_in_the_wrong_order_are_a_500_that_gives_the_order() {
    let db = Db::new();
    let login = login_for(&db);
    // Session added first runs inside Login: the Login layer finds no
    // session, so the extractors find no login for the request.
    let app = user_routes(&login)
        .layer(Session::new(key()))
        .layer(login.clone());
    check_missing(app, MissingLayer::Login, "Session inside Login").await;
    let advice = MissingLayer::Login.to_string();
    assert!(
        advice.contains("`Session`") && advice.contains("Login::new"),
        "the message says where the Login layer goes: {advice}"
    );
}

#[tokio::test]
async fn a_login_layer_for_another_user_type_does_not_count() {
    #[derive(Clone)]
    struct Other;
    impl User for Other {
        type Id = u64;
        fn id(&self) -> u64 {
            1
        }
        fn auth_hash(&self) -> &[u8] {
            b""
        }
    }
    let db = Db::new();
    let login = login_for(&db);
    let other = Login::new(|_id: u64| async { Ok::<_, std::convert::Infallible>(Some(Other)) });
    let app = user_routes(&login).layer(other).layer(Session::new(key()));
    check_missing(app, MissingLayer::Login, "Login<Other>").await;
}

// ---------------------------------------------------------------------------
// Remember me
// ---------------------------------------------------------------------------

#[tokio::test]
async fn remember_off_sets_no_remember_cookie_and_deletes_an_old_one() {
    let (mut client, _db) = browser();
    let res = log_in(&mut client, "user001", "off").await;
    assert_eq!(
        res.set_cookies().len(),
        1,
        "only the session: {:?}",
        res.set_cookies()
    );
    assert!(res.set_cookie("_remember").is_none());
    assert!(!client.has_cookie("_remember"));

    let res = log_in(&mut client, "user001", "on").await;
    let set = res
        .set_cookie("_remember")
        .expect("remember on sets the cookie");
    assert!(client.has_cookie("_remember"));

    let res = log_in(&mut client, "user002", "off").await;
    let deleted = res
        .set_cookie("_remember")
        .expect("a login without remember deletes the old remember cookie");
    assert!(is_removal(&deleted), "a deletion: {deleted}");
    assert_eq!(
        attributes(&deleted),
        attributes(&set),
        "deleted with the attributes it was set with"
    );
    assert!(!client.has_cookie("_remember"));
    assert_eq!(client.get("/").await.body, "Hello, david!");
    client.remove_cookie("session");
    assert_eq!(
        client.get("/maybe").await.body,
        "anonymous",
        "nothing left to restore"
    );
}

#[tokio::test]
async fn remember_on_lasts_30_days() {
    let (mut client, _db) = browser();
    let before = jwt::now();
    let res = log_in(&mut client, "user001", "on").await;
    let cookie = res.set_cookie("_remember").expect("a remember cookie");
    assert!(
        res.set_cookies()
            .iter()
            .any(|c| c.starts_with("_remember=") && c.contains("Max-Age=2592000")),
        "{:?}",
        res.set_cookies()
    );
    assert_eq!(cookie.max_age(), Some(cookie::time::Duration::days(30)));
    let claims = claims_of(cookie.value());
    assert_eq!(claims["days"], 30);
    let exp = claims["exp"].as_u64().expect("exp is a number");
    assert!(
        (before + 30 * 86400..=jwt::now() + 30 * 86400).contains(&exp),
        "exp is 30 days away: {exp}"
    );
    assert_eq!(claims["user_id"], "user001");

    // Logging in again with a remember cookie replaces it: one Set-Cookie.
    let res = log_in(&mut client, "user001", "on").await;
    let replaced = res.set_cookie("_remember").expect("a new remember cookie");
    assert!(!is_removal(&replaced), "a new cookie, not a deletion");
    assert_eq!(replaced.max_age(), Some(cookie::time::Duration::days(30)));
}

#[tokio::test]
async fn remember_days_is_kept_when_the_cookie_is_reissued() {
    let (mut client, _db) = browser();
    let res = log_in(&mut client, "user001", "7").await;
    let cookie = res.set_cookie("_remember").expect("a remember cookie");
    assert!(
        res.set_cookies()
            .iter()
            .any(|c| c.starts_with("_remember=") && c.contains("Max-Age=604800")),
        "{:?}",
        res.set_cookies()
    );
    let mut claims = claims_of(cookie.value());
    assert_eq!(claims["days"], 7);

    // Age the token: it now expires in 3 days.
    claims.insert("exp".into(), json!(jwt::now() + 3 * 86400));
    let aged = jwt::encode(&claims, KEY);
    client.remove_cookie("session");
    client.set_cookie("_remember", &aged);

    let before = jwt::now();
    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "restored: {}", res.body);
    assert_eq!(res.body, "Hello, susan!");
    let reissued = res
        .set_cookie("_remember")
        .expect("a restored login re-issues the remember cookie");
    assert_eq!(
        reissued.max_age(),
        Some(cookie::time::Duration::days(7)),
        "for 7 days"
    );
    let claims = claims_of(reissued.value());
    assert_eq!(claims["days"], 7, "the new token keeps its days");
    let exp = claims["exp"].as_u64().expect("exp is a number");
    assert!(
        (before + 7 * 86400..=jwt::now() + 7 * 86400).contains(&exp),
        "the new token expires 7 days from now: {exp}"
    );

    let session = res
        .set_cookie("session")
        .expect("the restored login has a session");
    let session = claims_of(session.value());
    assert_eq!(session["_user_id"], "user001");
    assert_eq!(session["_fresh"], false, "a restored login is not fresh");

    let res = client.get("/fresh").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "FreshUser refuses a restored login"
    );
    assert_eq!(res.location(), Some("/login?next=/fresh"));
    let res = client.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "CurrentUser takes a restored login"
    );
    assert_eq!(res.body, "Hello, susan!");
}

#[tokio::test]
async fn a_bad_remember_cookie_is_anonymous_and_deleted() {
    let (mut client, _db) = browser();
    log_in(&mut client, "user001", "on").await;
    let good = client.cookie("_remember").unwrap();
    client.remove_cookie("session");
    let mut forged = good.clone();
    forged.pop();
    forged.push(if good.ends_with('A') { 'B' } else { 'A' });
    for bad in [forged.as_str(), "garbage", "a.b.c"] {
        client.set_cookie("_remember", bad);
        let res = client.get("/maybe").await;
        assert_eq!(res.status, StatusCode::OK, "{bad}");
        assert_eq!(res.body, "anonymous", "{bad}");
        let deleted = res
            .set_cookie("_remember")
            .expect("the bad cookie is deleted");
        assert!(is_removal(&deleted), "{deleted}");
    }
}

async fn check_logout_deletes_like_set(mut client: Client, prefix: &str) {
    let res = client
        .post_form(&format!("{prefix}/login"), "user=user001&remember=on")
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let set_session = res.set_cookie("session").expect("session set");
    let set_remember = res.set_cookie("_remember").expect("remember set");
    assert_eq!(client.get(&format!("{prefix}/maybe")).await.body, "susan");

    let res = client.post(&format!("{prefix}/logout")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let deleted_remember = res
        .set_cookie("_remember")
        .expect("logout deletes _remember");
    assert!(is_removal(&deleted_remember), "{deleted_remember}");
    assert_eq!(
        attributes(&deleted_remember),
        attributes(&set_remember),
        "_remember is deleted with the Path/Domain/Secure/HttpOnly/SameSite it was set with"
    );
    let deleted_session = res
        .set_cookie("session")
        .expect("logout empties the session");
    assert!(is_removal(&deleted_session), "{deleted_session}");
    assert_eq!(attributes(&deleted_session), attributes(&set_session));
    assert!(!client.has_cookie("_remember") && !client.has_cookie("session"));
    assert_eq!(
        client.get(&format!("{prefix}/maybe")).await.body,
        "anonymous"
    );
}

#[tokio::test]
async fn logout_deletes_remember_with_the_attributes_it_was_set_with() {
    let (client, _db) = browser();
    check_logout_deletes_like_set(client, "").await;
}

#[tokio::test]
async fn logout_deletes_remember_with_custom_attributes() {
    let db = Db::new();
    let login = login_for(&db).login_url("/app/login").unwrap();
    let session = Session::new(key())
        .secure(false)
        .same_site(SameSite::Strict)
        .domain("example.com")
        .unwrap()
        .path("/app")
        .unwrap();
    let app = Router::new()
        .nest("/app", routes(&db, &login))
        .layer(login)
        .layer(session);
    let client = Client::new(app);
    let mut probe = client.clone();
    let res = probe
        .post_form("/app/login", "user=user001&remember=on")
        .await;
    let remember = res.set_cookie("_remember").expect("remember set");
    assert_eq!(
        attributes(&remember),
        (
            Some("/app".into()),
            Some("example.com".into()),
            false,
            true,
            Some(SameSite::Strict)
        ),
        "the configured attributes are used"
    );
    check_logout_deletes_like_set(client, "/app").await;
}

// ---------------------------------------------------------------------------
// Revocation through auth_hash
// ---------------------------------------------------------------------------

#[tokio::test]
async fn changing_auth_hash_ends_every_other_session_and_remember_cookie() {
    let db = Db::new();
    let mut alice_laptop = Client::new(app(&db));
    let mut alice_phone = alice_laptop.another_browser();
    let mut david = alice_laptop.another_browser();
    log_in(&mut alice_laptop, "user001", "on").await;
    log_in(&mut alice_phone, "user001", "on").await;
    log_in(&mut david, "user002", "on").await;
    let phone_remember = alice_phone.cookie("_remember").unwrap();
    let laptop_old_remember = alice_laptop.cookie("_remember").unwrap();

    let res = alice_laptop
        .post_form("/password", "hash=hash%20of%20a%20new%20password")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "password changed");
    assert_eq!(db.find("user001").unwrap().hash, "hash of a new password");
    let deleted = res
        .set_cookie("_remember")
        .expect("update_user deletes this browser's old remember cookie");
    assert!(is_removal(&deleted), "{deleted}");

    let res = alice_laptop.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the browser that changed it stays in"
    );
    assert_eq!(res.body, "Hello, susan!");
    let res = alice_laptop.get("/fresh").await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "and its login stays fresh: {}",
        res.body
    );

    let res = alice_phone.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND, "the other session has ended");
    assert_eq!(res.location(), Some("/login?next=/"));
    let res = alice_phone.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "the other browser's remember cookie does not bring it back"
    );
    assert!(
        !alice_phone.has_cookie("_remember") && !alice_phone.has_cookie("session"),
        "the other browser's cookies are deleted: {:?}",
        alice_phone.cookies()
    );

    for (what, remember) in [
        ("the other browser's remember cookie", phone_remember),
        (
            "the old remember cookie of the browser that changed it",
            laptop_old_remember,
        ),
    ] {
        let mut restoring = alice_laptop.another_browser();
        restoring.set_cookie("_remember", &remember);
        let res = restoring.get("/").await;
        assert_eq!(res.status, StatusCode::FOUND, "{what} no longer logs in");
        let deleted = res.set_cookie("_remember").expect("and it is deleted");
        assert!(is_removal(&deleted), "{what}: {deleted}");
    }

    let res = david.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "other users are not affected");
    assert_eq!(res.body, "Hello, david!");

    // A new password login works with the new auth_hash.
    log_in(&mut alice_phone, "user001", "on").await;
    assert_eq!(alice_phone.get("/").await.body, "Hello, susan!");
    alice_phone.remove_cookie("session");
    assert_eq!(
        alice_phone.get("/").await.body,
        "Hello, susan!",
        "new remember cookie works"
    );
}

// ---------------------------------------------------------------------------
// Vary and cookie attributes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn vary_cookie_only_where_the_session_is_read() {
    let (mut client, _db) = browser();
    for uri in ["/public", "/login"] {
        let res = client.get(uri).await;
        assert!(
            !res.varies_on_cookie(),
            "anonymous {uri} never reads the session"
        );
        assert!(res.set_cookies().is_empty(), "{uri}");
    }
    for uri in ["/", "/maybe", "/group/a"] {
        let res = client.get(uri).await;
        assert!(
            res.varies_on_cookie(),
            "anonymous {uri} depends on the cookie"
        );
        assert!(
            res.set_cookies().is_empty(),
            "anonymous {uri}: no cookie to set"
        );
    }
    let res = log_in(&mut client, "user001", "off").await;
    assert!(res.varies_on_cookie(), "the login response");

    for uri in ["/", "/maybe", "/group/a", "/sudo/a", "/all"] {
        let res = client.get(uri).await;
        assert_eq!(res.status, StatusCode::OK, "{uri}: {}", res.body);
        assert!(res.varies_on_cookie(), "{uri} depends on the cookie");
        assert!(
            res.set_cookies().is_empty(),
            "{uri}: no Set-Cookie on a plain authenticated GET: {:?}",
            res.set_cookies()
        );
    }
    for uri in ["/public", "/login"] {
        let res = client.get(uri).await;
        assert!(
            !res.varies_on_cookie(),
            "logged-in {uri} never reads the session"
        );
        assert!(res.set_cookies().is_empty(), "{uri}");
    }
}

#[tokio::test]
async fn cookie_attributes_by_default() {
    let (mut client, _db) = browser();
    let res = log_in(&mut client, "user001", "on").await;
    for name in ["session", "_remember"] {
        let cookie = res.set_cookie(name).expect("both cookies are set");
        assert_eq!(cookie.path(), Some("/"), "{name}: Path=/");
        assert_eq!(cookie.http_only(), Some(true), "{name}: HttpOnly");
        assert_eq!(
            cookie.same_site(),
            Some(SameSite::Lax),
            "{name}: SameSite=Lax"
        );
        assert_eq!(cookie.secure(), Some(true), "{name}: Secure");
        assert_eq!(cookie.domain(), None, "{name}: no Domain");
    }
    let session = res.set_cookie("session").unwrap();
    assert_eq!(session.max_age(), None, "the session cookie has no Max-Age");
    assert!(
        session.expires().is_none(),
        "nor Expires: it ends with the browser"
    );
    let remember = res.set_cookie("_remember").unwrap();
    assert!(
        remember.max_age().is_some(),
        "the remember cookie has a Max-Age"
    );
}

#[tokio::test]
async fn secure_false_drops_secure() {
    let db = Db::new();
    let mut client = Client::new(app_with(
        &db,
        login_for(&db),
        Session::new(key()).secure(false),
    ));
    let res = log_in(&mut client, "user001", "on").await;
    for text in res.set_cookies() {
        assert!(
            !text.to_ascii_lowercase().contains("secure"),
            "no Secure: {text}"
        );
        let cookie = Cookie::parse(text.clone()).unwrap();
        assert_eq!(cookie.http_only(), Some(true), "still HttpOnly: {text}");
        assert_eq!(cookie.same_site(), Some(SameSite::Lax), "still Lax: {text}");
    }
    let res = client.post("/logout").await;
    for text in res.set_cookies() {
        assert!(
            !text.to_ascii_lowercase().contains("secure"),
            "deletions match: {text}"
        );
    }
}

/// `SessionData::clear` empties the session, login included, but is not a
/// logout: the remember cookie logs the user straight back in, not freshly
/// (as its docs say).
#[tokio::test]
async fn clearing_the_session_is_not_a_logout() {
    let (mut client, _db) = browser();
    log_in(&mut client, "user001", "on").await;
    let res = client.post("/clear").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        !client.has_cookie("session"),
        "the session cookie is deleted"
    );
    assert!(client.has_cookie("_remember"), "the remember cookie stays");
    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "logged back in: {}", res.body);
    let res = client.get("/fresh").await;
    assert_eq!(res.status, StatusCode::FOUND, "but not freshly");
}

/// The absolute timeout counts from the login, and a restore from the
/// remember cookie is a new login: a remembered user kept active is
/// restored once the password login's 14 days are over, and the new
/// session's 14 days count from the restore (as `Session::absolute_timeout`
/// says).
#[tokio::test]
async fn a_remember_me_restore_starts_a_new_absolute_timeout() {
    const HOUR: Duration = Duration::from_secs(3600);
    let clock = Clock::manual(SystemTime::now());
    let db = Db::new();
    let session = Session::new(key()).clock(clock.clone());
    let mut client = Client::new(app_with(&db, login_for(&db), session));
    log_in(&mut client, "user001", "on").await;
    let logged_in_at = claims_of(&client.cookie("session").unwrap())["_login_at"].clone();

    // Active every 23 hours, so the idle timeout never ends the session.
    for _ in 0..14 {
        clock.advance(23 * HOUR);
        assert_eq!(client.get("/").await.status, StatusCode::OK);
    }
    let before = claims_of(&client.cookie("session").unwrap());
    assert_eq!(before["_login_at"], logged_in_at, "the same login so far");
    assert_eq!(before["_fresh"], true);

    // 14 days and 2 hours after the password login: that login is over;
    // the remember cookie makes a new one, not fresh, dated now.
    clock.advance(24 * HOUR);
    let restored_at = clock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let after = claims_of(&client.cookie("session").unwrap());
    assert_eq!(after["_login_at"], restored_at, "dated by the restore");
    assert_eq!(after["_fresh"], false);

    // Its own 14 days: still the same login 13 days later.
    for _ in 0..13 {
        clock.advance(23 * HOUR);
        assert_eq!(client.get("/").await.status, StatusCode::OK);
    }
    let later = claims_of(&client.cookie("session").unwrap());
    assert_eq!(later["_login_at"], restored_at, "not restored again");
}

/// The session id of the browser's login, read from its cookie.
fn session_id_of(client: &Client) -> Option<String> {
    let cookie = client.cookie("session")?;
    claims_of(&cookie)["_sid"].as_str().map(str::to_owned)
}

/// Every login gets a random session id of its own: 128 bits, as 22
/// characters of base64url. Logging in again, even as the same user in
/// the same browser, makes a new one.
#[tokio::test]
async fn every_login_gets_a_new_session_id() {
    let (mut client, _db) = browser();
    assert_eq!(client.get("/sid").await.body, "none", "anonymous: none");
    log_in(&mut client, "user001", "off").await;
    let first = session_id_of(&client).expect("a session id");
    assert_eq!(first.len(), 22);
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{first}"
    );
    assert_eq!(client.get("/sid").await.body, first, "Auth::session_id");

    log_in(&mut client, "user001", "off").await;
    let second = session_id_of(&client).expect("a session id");
    assert_ne!(second, first, "a new login, a new id");

    let mut other = client.another_browser();
    log_in(&mut other, "user001", "off").await;
    assert_ne!(
        session_id_of(&other),
        Some(second.clone()),
        "another browser's own"
    );

    client.post("/logout").await;
    assert_eq!(session_id_of(&client), None, "logout removes it");
    assert_eq!(client.get("/sid").await.body, "none");
}

/// The id lasts as long as the login: through renewals, a password change
/// that keeps this session, and restores from the remember cookie (a
/// remembered browser is one session); a password login makes a new one.
#[tokio::test]
async fn the_session_id_lasts_as_long_as_the_login() {
    let clock = Clock::manual(SystemTime::now());
    let db = Db::new();
    let session = Session::new(key()).clock(clock.clone());
    let mut client = Client::new(app_with(&db, login_for(&db), session));
    log_in(&mut client, "user001", "on").await;
    let sid = session_id_of(&client).expect("a session id");

    clock.advance(Duration::from_secs(2 * 60));
    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(res.set_cookie("session").is_some(), "renewed");
    assert_eq!(session_id_of(&client), Some(sid.clone()), "kept by renewal");

    let res = client
        .post_form("/password", "hash=hash%20of%20a%20new%20password")
        .await;
    assert_eq!(res.body, "password changed");
    assert_eq!(
        session_id_of(&client),
        Some(sid.clone()),
        "kept by update_user"
    );

    // The browser closes; the remember cookie logs it in again.
    log_in(&mut client, "user001", "on").await;
    let before_restore = session_id_of(&client).expect("a session id");
    assert_ne!(before_restore, sid, "a password login is a new one");
    client.remove_cookie("session");
    assert_eq!(client.get("/").await.status, StatusCode::OK, "restored");
    let restored = session_id_of(&client).expect("a session id");
    assert_eq!(
        restored, before_restore,
        "a remembered browser keeps its id"
    );
    client.remove_cookie("session");
    assert_eq!(
        client.get("/").await.status,
        StatusCode::OK,
        "restored again"
    );
    assert_eq!(session_id_of(&client), Some(before_restore), "and again");
}

/// A login without a session id, or with one of another shape, is not one
/// latch made: anonymous (and the login leaves the session).
#[tokio::test]
async fn a_login_without_a_well_formed_session_id_is_anonymous() {
    let (mut client, _db) = browser();
    log_in(&mut client, "user001", "off").await;
    let good = client.cookie("session").unwrap();
    let claims = claims_of(&good);
    let cases = [
        ("no _sid", None),
        ("a short one", Some(json!("abc"))),
        ("padded", Some(json!("AAAAAAAAAAAAAAAAAAAAA="))),
        ("standard base64", Some(json!("AAAAAAAAAAAAAAAAAAAA+A"))),
        ("a number", Some(json!(12345))),
        ("null", Some(Value::Null)),
    ];
    for (what, sid) in cases {
        let mut forged = claims.clone();
        match sid {
            Some(sid) => forged.insert("_sid".into(), sid),
            None => forged.remove("_sid"),
        };
        let mut browser = client.another_browser();
        browser.set_cookie("session", &jwt::encode(&forged, KEY));
        let res = browser.get("/").await;
        assert_eq!(res.status, StatusCode::FOUND, "{what}: {}", res.body);
    }
    // Control: the cookie as latch made it logs in.
    let mut browser = client.another_browser();
    browser.set_cookie("session", &good);
    assert_eq!(browser.get("/").await.status, StatusCode::OK);
}
