//! The `testing` feature, as an app's own tests use it: cookies from
//! `TestLogin`, sent with `tower::ServiceExt::oneshot` (and once with
//! reqwest over TCP) to a router behind the real `Session` and `Login`
//! layers. What it makes is accepted as a real login is; what the app
//! refuses is made only when asked for by name, and then refused.

#![cfg(feature = "testing")]

use crate::support::fixtures::{index, loader, Account, Db};
use crate::support::{is_removal, key, TestResponse};
use axum::body::Body;
use axum::routing::get;
use axum::Router;
use axum_latch::clock::Clock;
use axum_latch::remember::{
    Redeemed, RememberError, RememberGrant, RememberTokens, StatelessRemember,
};
use axum_latch::testing::{TestCookies, TestLogin, TestLoginError};
use axum_latch::{Auth, FreshUser, KeyRing, Login, Remember, SecretKey, Session, User, UserLoader};
use futures_util::future::BoxFuture;
use http::header::COOKIE;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tower::ServiceExt as _;

const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------
// The app under test
// ---------------------------------------------------------------------------

async fn fresh(FreshUser(user): FreshUser<Account>) -> String {
    format!("Fresh login: {}", user.name)
}

async fn session_id(auth: Auth<Account>) -> String {
    auth.session_id().await.unwrap_or_else(|| "none".to_owned())
}

/// `/` (`CurrentUser`), `/fresh` (`FreshUser`) and `/sid` behind the app's
/// own layers: the values a test hands to `TestLogin` too.
fn app<L: UserLoader<Account>>(session: &Session, login: &Login<Account, L>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/fresh", get(fresh))
        .route("/sid", get(session_id))
        .layer(login.clone())
        .layer(session.clone())
}

/// susan's user database, and a clock the test moves.
struct Site {
    db: Arc<Db>,
    clock: Clock,
}

impl Site {
    fn new() -> Self {
        Self {
            db: Db::new(),
            clock: Clock::manual(SystemTime::now()),
        }
    }

    fn susan(&self) -> Account {
        self.db.find("user001").expect("susan is in the database")
    }

    /// The app's session layer: the test key, on the site's clock.
    fn session(&self) -> Session {
        Session::new(key()).clock(self.clock.clone())
    }

    fn login(&self) -> Login<Account, impl UserLoader<Account>> {
        Login::new(loader(self.db.clone()))
    }
}

/// `GET path` with this `Cookie` header (none: an anonymous browser).
async fn send_with(app: &Router, path: &str, cookie: Option<HeaderValue>) -> TestResponse {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let request = request.body(Body::empty()).expect("a valid request");
    let response = app
        .clone()
        .oneshot(request)
        .await
        .expect("an axum router never fails");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("a body").to_bytes();
    TestResponse {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// `GET path` with both cookies of the login.
async fn send(app: &Router, path: &str, cookies: &TestCookies) -> TestResponse {
    send_with(app, path, Some(cookies.header())).await
}

/// `GET path` with only the login's remember cookie: the browser reopened.
async fn send_remembered(app: &Router, path: &str, cookies: &TestCookies) -> TestResponse {
    let header = cookies.remember_header().expect("a remembered login");
    send_with(app, path, Some(header)).await
}

fn assert_logged_in_as_susan(res: &TestResponse) {
    assert_eq!(res.status, StatusCode::OK, "logged in: {}", res.body);
    assert_eq!(res.body, "Hello, susan!");
}

/// Refused as anonymous (the test's requests are not a browser's, so the
/// answer is a `401` rather than a redirect).
fn assert_anonymous(res: &TestResponse) {
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "refused: {}",
        res.body
    );
    assert!(
        res.body.contains(r#""error":"login_required""#),
        "{}",
        res.body
    );
}

/// Logged in, but refused for not being fresh.
fn assert_not_fresh(res: &TestResponse) {
    assert_eq!(
        res.status,
        StatusCode::UNAUTHORIZED,
        "refused: {}",
        res.body
    );
    assert!(
        res.body.contains(r#""error":"fresh_login_required""#),
        "{}",
        res.body
    );
}

// ---------------------------------------------------------------------------
// Fresh and not fresh
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_default_test_login_is_a_fresh_login_the_app_accepts_as_it_is() {
    let site = Site::new();
    let (session, login) = (site.session(), site.login());
    let app = app(&session, &login);
    assert_anonymous(&send_with(&app, "/", None).await);

    let cookies = TestLogin::new(&session, &login, &site.susan())
        .cookies()
        .await
        .expect("a login");
    let res = send(&app, "/", &cookies).await;
    assert_logged_in_as_susan(&res);
    // Written as the session layer writes it: nothing to renew or fix.
    assert!(res.set_cookies().is_empty(), "{:?}", res.set_cookies());
    let res = send(&app, "/fresh", &cookies).await;
    assert_eq!(
        (res.status, res.body.as_str()),
        (StatusCode::OK, "Fresh login: susan")
    );
    assert_eq!(
        send(&app, "/sid", &cookies).await.body,
        cookies.session_id()
    );
    assert_eq!(cookies.remember(), None);
    assert_eq!(cookies.remember_header(), None);
    assert_eq!(
        cookies.to_string(),
        format!("session={}", cookies.session())
    );
    assert_eq!(cookies.header().to_str().unwrap(), cookies.to_string());
}

#[tokio::test]
async fn a_login_that_is_not_fresh_passes_current_user_but_not_fresh_user() {
    let site = Site::new();
    let (session, login) = (site.session(), site.login());
    let app = app(&session, &login);
    let cookies = TestLogin::new(&session, &login, &site.susan())
        .fresh(false)
        .cookies()
        .await
        .expect("a login");
    assert_logged_in_as_susan(&send(&app, "/", &cookies).await);
    assert_not_fresh(&send(&app, "/fresh", &cookies).await);
}

#[tokio::test]
async fn fresh_within_counts_from_the_login_time() {
    let site = Site::new();
    let session = site.session();
    let login = site.login().fresh_within(Duration::from_secs(10 * 60));
    let app = app(&session, &login);
    let susan = site.susan();
    let ago = |minutes: u64| {
        TestLogin::new(&session, &login, &susan)
            .logged_in_ago(Duration::from_secs(minutes * 60))
            .cookies()
    };

    let recent = ago(9).await.expect("a login");
    assert_eq!(send(&app, "/fresh", &recent).await.status, StatusCode::OK);

    let older = ago(11).await.expect("a login");
    assert_logged_in_as_susan(&send(&app, "/", &older).await);
    assert_not_fresh(&send(&app, "/fresh", &older).await);
}

// ---------------------------------------------------------------------------
// What the app refuses: only on request
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_login_past_the_absolute_timeout_is_an_error_unless_expired_is_asked_for() {
    let site = Site::new();
    let session = site.session().absolute_timeout(8 * HOUR);
    let login = site.login();
    let app = app(&session, &login);
    let susan = site.susan();

    let inside = TestLogin::new(&session, &login, &susan)
        .logged_in_ago(8 * HOUR - Duration::from_secs(1))
        .cookies()
        .await
        .expect("a login just inside the timeout");
    assert_logged_in_as_susan(&send(&app, "/", &inside).await);

    let error = TestLogin::new(&session, &login, &susan)
        .logged_in_ago(8 * HOUR)
        .cookies()
        .await
        .expect_err("a login the app refuses is not made by accident");
    assert!(
        matches!(error, TestLoginError::TooOld { ago, absolute_timeout }
            if ago == 8 * HOUR && absolute_timeout == 8 * HOUR),
        "{error:?}"
    );
    assert!(error.to_string().contains(".expired()"), "{error}");

    let expired = TestLogin::new(&session, &login, &susan)
        .logged_in_ago(8 * HOUR)
        .expired()
        .cookies()
        .await
        .expect("made on request");
    let res = send(&app, "/", &expired).await;
    assert_anonymous(&res);
    let deleted = res.set_cookie("session").expect("the bad cookie goes");
    assert!(is_removal(&deleted));
}

#[tokio::test]
async fn an_expired_cookie_is_refused_and_its_remember_cookie_logs_back_in() {
    let site = Site::new();
    let (session, login) = (site.session(), site.login());
    let app = app(&session, &login);
    let susan = site.susan();

    let expired = TestLogin::new(&session, &login, &susan)
        .expired()
        .cookies()
        .await
        .expect("made on request");
    assert_anonymous(&send(&app, "/", &expired).await);

    // Away longer than the idle timeout, but remembered.
    let remembered = TestLogin::new(&session, &login, &susan)
        .remember(Remember::On)
        .expired()
        .cookies()
        .await
        .expect("made on request");
    let res = send(&app, "/", &remembered).await;
    assert_logged_in_as_susan(&res);
    assert!(res.set_cookie("session").is_some(), "a new session cookie");
    assert_not_fresh(&send(&app, "/fresh", &remembered).await);
}

#[tokio::test]
async fn a_stale_auth_hash_is_refused_in_both_cookies() {
    let site = Site::new();
    let (session, login) = (site.session(), site.login());
    let app = app(&session, &login);
    let cookies = TestLogin::new(&session, &login, &site.susan())
        .remember(Remember::On)
        .stale_auth_hash(b"hash of her old password")
        .cookies()
        .await
        .expect("made on request");
    assert_anonymous(&send(&app, "/", &cookies).await);
    assert_anonymous(&send_remembered(&app, "/", &cookies).await);
}

#[tokio::test]
async fn a_remember_token_older_than_its_days_is_an_error_unless_expired() {
    let site = Site::new();
    let (session, login) = (site.session(), site.login());
    let app = app(&session, &login);
    let error = TestLogin::new(&session, &login, &site.susan())
        .remember(Remember::Days(1))
        .logged_in_ago(48 * HOUR)
        .cookies()
        .await
        .expect_err("the token has expired");
    assert!(
        matches!(error, TestLoginError::RememberTooOld { days: 1, .. }),
        "{error:?}"
    );

    let expired = TestLogin::new(&session, &login, &site.susan())
        .remember(Remember::Days(1))
        .logged_in_ago(48 * HOUR)
        .expired()
        .cookies()
        .await
        .expect("made on request");
    assert_anonymous(&send_remembered(&app, "/", &expired).await);
}

// ---------------------------------------------------------------------------
// Remember-me
// ---------------------------------------------------------------------------

/// The remember cookie alone logs the browser back in, not freshly, into
/// the login's own session id.
async fn remember_restores_the_login<L: UserLoader<Account>>(
    site: &Site,
    session: &Session,
    login: &Login<Account, L>,
) -> TestCookies {
    let app = app(session, login);
    let cookies = TestLogin::new(session, login, &site.susan())
        .remember(Remember::On)
        .logged_in_ago(HOUR)
        .cookies()
        .await
        .expect("a remembered login");
    assert_eq!(
        cookies.to_string(),
        format!(
            "session={}; _remember={}",
            cookies.session(),
            cookies.remember().unwrap()
        )
    );
    let res = send_remembered(&app, "/", &cookies).await;
    assert_logged_in_as_susan(&res);
    assert!(res.set_cookie("session").is_some(), "a new session cookie");
    assert_eq!(
        send_remembered(&app, "/sid", &cookies).await.body,
        cookies.session_id(),
        "a remembered browser keeps its session id"
    );
    assert_not_fresh(&send_remembered(&app, "/fresh", &cookies).await);
    cookies
}

#[tokio::test]
async fn remember_restores_the_login_with_stateless_tokens() {
    let site = Site::new();
    let (session, login) = (site.session(), site.login());
    remember_restores_the_login(&site, &session, &login).await;
    // Stated, not just the default.
    let login = site.login().remember_tokens(StatelessRemember);
    remember_restores_the_login(&site, &session, &login).await;
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn remember_restores_the_login_with_revocable_tokens_in_a_store() {
    use axum_latch::remember::RevocableRemember;
    use axum_latch::stores::MemoryStore;

    let site = Site::new();
    let session = site.session();
    let login = site
        .login()
        .remember_tokens(RevocableRemember::new(MemoryStore::new()));
    let cookies = remember_restores_the_login(&site, &session, &login).await;
    let token = cookies.remember().unwrap();
    assert_eq!(token.split('.').count(), 2, "selector.validator: {token}");

    // Only the store knows the token: another store does not.
    let elsewhere = site
        .login()
        .remember_tokens(RevocableRemember::new(MemoryStore::new()));
    let other_app = app(&session, &elsewhere);
    assert_anonymous(&send_remembered(&other_app, "/", &cookies).await);
}

// ---------------------------------------------------------------------------
// The session registry
// ---------------------------------------------------------------------------

#[cfg(feature = "memory")]
#[tokio::test]
async fn a_registry_lists_the_test_login_and_ending_it_refuses_its_cookies() {
    use axum_latch::registry::SessionRegistry;
    use axum_latch::remember::RevocableRemember;
    use axum_latch::stores::MemoryStore;
    use std::time::UNIX_EPOCH;

    let site = Site::new();
    let store = MemoryStore::new();
    let registry = SessionRegistry::builder(store.clone())
        .clock(site.clock.clone())
        .connect()
        .await
        .expect("the store answers");
    let session = site.session();
    let login = site
        .login()
        .remember_tokens(RevocableRemember::new(store.clone()))
        .sessions(registry.clone());
    let app = app(&session, &login);

    let cookies = TestLogin::new(&session, &login, &site.susan())
        .remember(Remember::On)
        .logged_in_ago(HOUR)
        .cookies()
        .await
        .expect("a login");
    assert_logged_in_as_susan(&send(&app, "/", &cookies).await);

    let listed = registry.sessions(&"user001").await.expect("a list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let now = site
        .clock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(listed[0].id, cookies.session_id());
    assert_eq!(listed[0].created_at, now - 3600, "made an hour ago");
    assert!(listed[0].remembered);

    let ended = registry
        .end_session(&"user001", cookies.session_id())
        .await
        .expect("the store answers");
    assert!(ended, "the test login was there to end");
    assert_anonymous(&send(&app, "/", &cookies).await);
    assert_anonymous(&send_remembered(&app, "/", &cookies).await);
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn a_login_the_registry_has_cut_off_is_an_error() {
    use axum_latch::registry::SessionRegistry;
    use axum_latch::stores::MemoryStore;

    let site = Site::new();
    let registry = SessionRegistry::builder(MemoryStore::new())
        .clock(site.clock.clone())
        .connect()
        .await
        .expect("the store answers");
    let session = site.session();
    let login = site.login().sessions(registry.clone());
    let app = app(&session, &login);
    registry.end_all(&"user001").await.expect("a user id");

    let before = TestLogin::new(&session, &login, &site.susan())
        .logged_in_ago(Duration::from_secs(60))
        .cookies()
        .await
        .expect_err("made before the cut-off, so refused");
    assert!(matches!(before, TestLoginError::Ended), "{before:?}");

    site.clock.advance(Duration::from_secs(1));
    let after = TestLogin::new(&session, &login, &site.susan())
        .cookies()
        .await
        .expect("made after the cut-off");
    assert_logged_in_as_susan(&send(&app, "/", &after).await);
}

// ---------------------------------------------------------------------------
// The app's session settings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cookies_follow_the_apps_names_prefix_and_current_key() {
    let site = Site::new();
    let new = SecretKey::new("the new key of the app, at least thirty-two bytes").unwrap();
    let ring = KeyRing::new(new.clone()).with_previous(key());
    let session = Session::new(ring)
        .clock(site.clock.clone())
        .cookie_name("myapp")
        .unwrap()
        .host_prefix()
        .unwrap();
    let login = site.login();
    let site_app = app(&session, &login);

    let cookies = TestLogin::new(&session, &login, &site.susan())
        .remember(Remember::On)
        .cookies()
        .await
        .expect("a login");
    let text = cookies.to_string();
    assert!(text.starts_with("__Host-myapp="), "{text}");
    assert!(text.contains("; __Host-_remember="), "{text}");
    let res = send(&site_app, "/", &cookies).await;
    assert_logged_in_as_susan(&res);
    assert!(
        res.set_cookies().is_empty(),
        "current key: nothing to re-sign"
    );
    assert_logged_in_as_susan(&send_remembered(&site_app, "/", &cookies).await);

    // Signed with the ring's current key: an app that knows only the new
    // key takes it, one that knows only the old key does not.
    let only = |key: SecretKey| {
        Session::new(key)
            .clock(site.clock.clone())
            .cookie_name("myapp")
            .unwrap()
            .host_prefix()
            .unwrap()
    };
    assert_logged_in_as_susan(&send(&app(&only(new), &login), "/", &cookies).await);
    assert_anonymous(&send(&app(&only(key()), &login), "/", &cookies).await);

    // Under the default names, the app finds no login in them.
    assert_anonymous(&send(&app(&site.session(), &login), "/", &cookies).await);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// An id that serde cannot write.
#[derive(Clone, Debug, Deserialize)]
struct Unwritable;

impl Serialize for Unwritable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this id has no JSON"))
    }
}

#[derive(Clone)]
struct Odd;

impl User for Odd {
    type Id = Unwritable;
    fn id(&self) -> Unwritable {
        Unwritable
    }
    fn auth_hash(&self) -> &[u8] {
        b"odd"
    }
}

#[tokio::test]
async fn a_user_id_that_is_not_json_is_an_error() {
    let session = Session::new(key());
    let login = Login::new(|_: Unwritable| async { Ok::<_, std::io::Error>(Some(Odd)) });
    let error = TestLogin::new(&session, &login, &Odd)
        .cookies()
        .await
        .expect_err("no JSON, no login");
    assert!(matches!(error, TestLoginError::UserId(_)), "{error:?}");
    assert!(error.to_string().contains("this id has no JSON"), "{error}");
}

/// Remember-me tokens whose store is down.
struct StoreDown;

impl RememberTokens for StoreDown {
    fn issue<'a>(&'a self, _: RememberGrant<'a>) -> BoxFuture<'a, Result<String, RememberError>> {
        Box::pin(async { Err(RememberError::Store("the store is down".into())) })
    }

    fn redeem<'a>(
        &'a self,
        _: &'a KeyRing,
        _: &'a str,
        _: SystemTime,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Redeemed>, RememberError>> {
        Box::pin(async { Ok(None) })
    }

    fn revoke<'a>(
        &'a self,
        _: &'a KeyRing,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), RememberError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn a_remember_store_that_fails_is_an_error() {
    let site = Site::new();
    let session = site.session();
    let login = site.login().remember_tokens(StoreDown);
    let error = TestLogin::new(&session, &login, &site.susan())
        .remember(Remember::On)
        .cookies()
        .await
        .expect_err("no token, no login");
    assert!(matches!(error, TestLoginError::Remember(_)), "{error:?}");
    assert!(error.to_string().contains("the store is down"), "{error}");

    // Without remember-me, the store is not asked.
    let cookies = TestLogin::new(&session, &login, &site.susan())
        .cookies()
        .await
        .expect("a login");
    assert_logged_in_as_susan(&send(&app(&session, &login), "/", &cookies).await);
}

// ---------------------------------------------------------------------------
// Over TCP, with an HTTP client
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_http_client_sends_the_cookies_to_a_real_server() {
    let site = Site::new();
    let (session, login) = (site.session(), site.login());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let address = listener.local_addr().unwrap();
    let router = app(&session, &login);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let cookies = TestLogin::new(&session, &login, &site.susan())
        .cookies()
        .await
        .expect("a login");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("http://{address}/fresh");
    let res = client
        .get(&url)
        .header("cookie", cookies.to_string())
        .send()
        .await
        .expect("the server answers");
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "Fresh login: susan");

    let anonymous = client.get(&url).send().await.expect("the server answers");
    assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
    server.abort();
}
