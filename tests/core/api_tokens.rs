//! API clients logged in from their headers through a request loader,
//! over HTTP: a good token makes `CurrentUser` work, never fresh and
//! without cookies; bad tokens of every kind are a `401` with
//! `WWW-Authenticate`, never a `5xx`; a session login comes first.

use crate::support::fixtures::*;
use crate::support::{key, Client, TestResponse};
use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::Router;
use axum_latch::api::bearer_token;
use axum_latch::{Auth, CurrentUser, FreshUser, Login, Session};
use http::HeaderMap;
use std::sync::Arc;

/// susan's token; `broken` makes the loader fail, as a database that is down.
const SUSAN_TOKEN: &str = "lt_3q2-7wJ5kPzX9aB4cD8eF0gH1iJ6mN";
const REVOKED: &str = "lt_revoked-0123456789abcdefghijklm";

async fn me(CurrentUser(user): CurrentUser<Account>, auth: Auth<Account>) -> String {
    let session = auth.session_id().await;
    format!("{} session={session:?}", user.name)
}

fn app_with(login: Login<Account, impl axum_latch::UserLoader<Account>>, db: Arc<Db>) -> Client {
    let api = Router::new()
        .route("/me", get(me))
        .route(
            "/sudo",
            get(|FreshUser(user): FreshUser<Account>| async move { user.name.clone() }),
        )
        .route_layer(login.required().api());
    let router = Router::new()
        .nest("/api", api)
        .route("/page", get(me))
        .merge(account_routes(log_in_handler))
        .with_state(db)
        .layer(login)
        .layer(Session::new(key()));
    Client::new(router)
}

fn login_for(db: &Arc<Db>) -> Login<Account, impl axum_latch::UserLoader<Account>> {
    let users = db.clone();
    Login::new(loader(db.clone())).request_loader(move |headers: HeaderMap| {
        let users = users.clone();
        async move {
            let Some(token) = bearer_token(&headers) else {
                return Ok(None);
            };
            match token {
                SUSAN_TOKEN => Ok(users.find("user001")),
                "broken" => Err(std::io::Error::other("token table unreachable")),
                _ => Ok(None),
            }
        }
    })
}

fn app() -> Client {
    let db = Db::new();
    app_with(login_for(&db), db)
}

async fn call(client: &mut Client, uri: &str, authorization: Option<&str>) -> TestResponse {
    let mut headers = vec![("accept", "application/json")];
    headers.extend(authorization.map(|value| ("authorization", value)));
    client
        .request(Method::GET, uri, &headers, Body::empty())
        .await
}

#[tokio::test]
async fn a_good_token_logs_the_request_in_without_cookies_or_a_session() {
    let mut client = app();
    let bearer = format!("Bearer {SUSAN_TOKEN}");
    let res = call(&mut client, "/api/me", Some(&bearer)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body, "susan session=None");
    assert!(
        res.set_cookies().is_empty(),
        "no cookie: {:?}",
        res.set_cookies()
    );
    // Outside the API group too: CurrentUser works for a token.
    let res = call(&mut client, "/page", Some(&bearer)).await;
    assert_eq!(res.body, "susan session=None");
    // The next request without the token is anonymous.
    let res = call(&mut client, "/api/me", None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_login_is_never_fresh() {
    let mut client = app();
    let bearer = format!("Bearer {SUSAN_TOKEN}");
    let res = call(&mut client, "/api/sudo", Some(&bearer)).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.json()["error"], "fresh_login_required");
}

#[tokio::test]
async fn an_anonymous_api_request_gets_401_with_a_bearer_challenge() {
    let mut client = app();
    let res = call(&mut client, "/api/me", None).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.header("www-authenticate"), Some("Bearer"));
    assert_eq!(res.json()["error"], "login_required");
    // A browser's navigation to a page still goes to the login page.
    let res = client.get("/page").await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert!(res.header("www-authenticate").is_none());
}

#[tokio::test]
async fn every_bad_token_is_a_401_never_a_5xx() {
    let mut client = app();
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let bad = [
        "Bearer garbage".to_owned(),
        format!("Bearer {REVOKED}"),
        format!("Bearer {SUSAN_TOKEN}x"),
        format!("Bearer {}", &SUSAN_TOKEN[..SUSAN_TOKEN.len() - 1]),
        format!("bearer  {SUSAN_TOKEN}  junk"),
        format!("Basic {SUSAN_TOKEN}"),
        format!("Token {SUSAN_TOKEN}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer <script>alert(1)</script>".to_owned(),
        "Bearer ../../etc/passwd".to_owned(),
        "Bearer '; DROP TABLE tokens; --".to_owned(),
        huge,
    ];
    for value in &bad {
        let res = call(&mut client, "/api/me", Some(value)).await;
        let shown = &value[..value.len().min(60)];
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "{shown}: {}",
            res.body
        );
        assert_eq!(
            res.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{shown}"
        );
    }
    // Two Authorization headers: which one is meant cannot be told.
    let headers = [
        ("accept", "application/json"),
        ("authorization", "Bearer garbage"),
    ];
    let mut request_headers = headers.to_vec();
    let good = format!("Bearer {SUSAN_TOKEN}");
    request_headers.push(("authorization", &good));
    let res = client
        .request(Method::GET, "/api/me", &request_headers, Body::empty())
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failing_request_loader_is_a_500_that_says_nothing() {
    let mut client = app();
    let res = call(&mut client, "/api/me", Some("Bearer broken")).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!res.body.contains("unreachable"), "{}", res.body);
}

#[tokio::test]
async fn a_session_login_comes_before_the_token() {
    let mut client = app();
    log_in_through_the_form(&mut client, "user002", "off", None).await;
    let bearer = format!("Bearer {SUSAN_TOKEN}");
    let res = call(&mut client, "/api/me", Some(&bearer)).await;
    assert!(res.body.starts_with("david session=Some("), "{}", res.body);
    // A browser's cookie login works on the API without a token.
    let res = call(&mut client, "/api/me", None).await;
    assert!(res.body.starts_with("david "), "{}", res.body);
}

#[tokio::test]
async fn the_challenge_can_name_a_realm_and_is_absent_without_a_request_loader() {
    let db = Db::new();
    let login = login_for(&db).challenge(r#"Bearer realm="latch""#).unwrap();
    let mut client = app_with(login, db);
    let res = call(&mut client, "/api/me", None).await;
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="latch""#)
    );
    let res = call(&mut client, "/api/me", Some("Bearer nope")).await;
    assert_eq!(
        res.header("www-authenticate"),
        Some(r#"Bearer realm="latch", error="invalid_token""#)
    );

    let db = Db::new();
    let mut plain = app_with(Login::new(loader(db.clone())), db);
    let bearer = format!("Bearer {SUSAN_TOKEN}");
    let res = call(&mut plain, "/api/me", Some(&bearer)).await;
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "no loader, no token login"
    );
    assert!(res.header("www-authenticate").is_none());
    assert!(Login::new(loader(Db::new()))
        .challenge("Bearer\r\nX: y")
        .is_err());
}

/// "Log out everywhere else" from a token would keep no session: it is
/// refused (`false`) instead of ending every browser of the user.
#[cfg(feature = "memory")]
#[tokio::test]
async fn a_token_cannot_log_the_user_out_everywhere_else() {
    use axum::routing::post;
    use axum_latch::registry::SessionRegistry;
    use axum_latch::stores::MemoryStore;

    async fn end_others(auth: Auth<Account>) -> String {
        format!("{:?}", auth.end_other_sessions().await.ok())
    }
    let db = Db::new();
    let registry = SessionRegistry::connect(MemoryStore::new()).await.unwrap();
    let login = login_for(&db).sessions(registry);
    let router = Router::new()
        .route("/", get(me))
        .route("/end-others", post(end_others))
        .merge(account_routes(log_in_handler))
        .with_state(db)
        .layer(login)
        .layer(Session::new(key()));
    let mut browser = Client::new(router);
    log_in_through_the_form(&mut browser, "user001", "off", None).await;
    let mut script = browser.another_browser();
    let bearer = format!("Bearer {SUSAN_TOKEN}");
    let headers = [
        ("accept", "application/json"),
        ("authorization", bearer.as_str()),
    ];
    let res = script
        .request(Method::POST, "/end-others", &headers, Body::empty())
        .await;
    assert_eq!(res.body, "Some(false)", "refused for a token login");
    let res = browser.get("/").await;
    assert!(
        res.body.starts_with("susan session=Some("),
        "the browser stays: {}",
        res.body
    );
}
