//! Remember-me when its store fails: a real `redis-server`, started by the
//! test on a spare port, is killed and started again under an app that keeps
//! running.
//!
//! - Redis up: a remembered login works, and a browser with only the
//!   `_remember` cookie is logged in and gets a rotated cookie.
//! - Redis down: a browser with only the remember cookie is anonymous
//!   (redirected to log in, never a 5xx) and keeps its cookie; an `error`
//!   event with target `latch` is logged; a session keeps working; a login
//!   with remember-me falls back to a login for the session only.
//! - Redis back (same port, same data directory, append-only file on): the
//!   remember cookie works again, as does a new remembered login, without
//!   restarting the app.
//!
//! Needs `redis-server` on `PATH` (or at `/usr/bin/redis-server`, or named
//! by `REDIS_SERVER`); without it the test says `SKIPPED`.

#![cfg(feature = "redis")]

use crate::support;
use crate::support::fixtures::{self, Account};

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_latch::remember::RevocableRemember;
use axum_latch::stores::RedisStore;
use axum_latch::{Auth, AuthError, CurrentUser, Login, Remember, Session};
use http::StatusCode;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{backend, key, trace, Client, TestResponse};

const REMEMBER: &str = "_remember";
const SESSION: &str = "session";

// ---------------------------------------------------------------------------
// A redis-server of the test's own
// ---------------------------------------------------------------------------

/// A `redis-server` child process, killed when dropped (a failing test
/// included).
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on `port` that keeps its data in `dir` (append-only
    /// file, synced on every write, so a killed server loses nothing), and
    /// waits until it answers `PING`.
    async fn start(binary: &Path, port: u16, dir: &Path) -> Self {
        let child = Command::new(binary)
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg("always")
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = Self {
            child: Some(child),
            port,
            dir: dir.to_owned(),
        };
        server.wait_for_ping().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_for_ping(&mut self) {
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
                if pong.as_deref() == Ok("PONG") {
                    return;
                }
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server exited ({status}) before answering PING; its log:\n{}",
                        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------
// The app under test
// ---------------------------------------------------------------------------

type Users = Arc<HashMap<String, Account>>;

fn users() -> Users {
    Arc::new(fixtures::accounts())
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

/// Logs in with remember-me; if the remember store fails, logs in for the
/// session only and says so.
async fn login(
    State(users): State<Users>,
    auth: Auth<Account>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(user) = users.get(&form.user) else {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    };
    match auth.login_user(user, Remember::On).await {
        Ok(redirect) => redirect.into_response(),
        Err(AuthError::Remember(_)) => match auth.login_user(user, Remember::Off).await {
            Ok(_) => format!("logged in as {}, not remembered", user.name).into_response(),
            Err(error) => error.into_response(),
        },
        Err(error) => error.into_response(),
    }
}

async fn account(CurrentUser(user): CurrentUser<Account>) -> String {
    format!("Hello, {}!", user.name)
}

async fn logout(auth: Auth<Account>) -> Redirect {
    auth.logout_user().await;
    Redirect::to("/login")
}

fn app(manager: ConnectionManager) -> Router {
    let users = users();
    let loader = {
        let users = users.clone();
        move |id: String| {
            let user = users.get(&id).cloned();
            async move { Ok::<_, std::convert::Infallible>(user) }
        }
    };
    let login_layer =
        Login::new(loader).remember_tokens(RevocableRemember::new(RedisStore::new(manager)));
    Router::new()
        .route("/account", get(account))
        .route_layer(login_layer.required())
        .route("/login", get(|| async { "the login form" }).post(login))
        .route("/logout", post(logout))
        .with_state(users)
        .layer(login_layer)
        .layer(Session::new(key()))
}

/// A connection that gives up quickly while Redis is down: a store call
/// then fails within a few hundred milliseconds instead of waiting for a
/// long reconnection.
async fn connect(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("a Redis URL");
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(250)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(10))
        .set_max_delay(Duration::from_millis(50));
    ConnectionManager::new_with_config(client, config)
        .await
        .expect("connect to the test's redis-server")
}

fn capture_events() -> (trace::Captured, trace::CaptureGuard) {
    trace::capture()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn assert_logged_in(res: &TestResponse, name: &str, what: &str) {
    assert_eq!(res.status, StatusCode::OK, "{what}: {res:?}");
    assert_eq!(res.body, format!("Hello, {name}!"), "{what}");
}

fn assert_sent_to_login(res: &TestResponse, what: &str) {
    assert!(
        !res.status.is_server_error(),
        "{what}: a failing store must not make a 5xx: {res:?}"
    );
    assert_eq!(res.status, StatusCode::FOUND, "{what}: {res:?}");
    assert_eq!(res.location(), Some("/login?next=/account"), "{what}");
}

/// A browser that was closed and opened again: only the remember cookie is
/// left.
fn restart_browser(browser: &mut Client) {
    browser.remove_cookie(SESSION);
    assert!(browser.has_cookie(REMEMBER), "the browser was remembered");
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[tokio::test]
async fn remembered_logins_fail_closed_while_redis_is_down_and_recover_when_it_is_back() {
    // A server of the test's own, to kill: whatever TEST_REDIS_URL says.
    let Some(binary) = backend::redis_server_binary() else {
        backend::skip("no redis-server is on PATH (or at the path REDIS_SERVER names)");
        return;
    };
    let (events, _guard) = capture_events();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = backend::spare_port();
    let mut server = RedisServer::start(&binary, port, dir.path()).await;
    let manager = connect(&server.url()).await;
    let mut susan = Client::new(app(manager.clone()));

    // (a) Redis is up.
    let res = susan.post_form("/login", "user=user001").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    assert!(susan.has_cookie(SESSION) && susan.has_cookie(REMEMBER));
    assert_logged_in(&susan.get("/account").await, "susan", "after the login");

    let mut remembered = susan.another_browser();
    let issued = susan.cookie(REMEMBER).unwrap();
    remembered.set_cookie(REMEMBER, &issued);
    let res = remembered.get("/account").await;
    assert_logged_in(&res, "susan", "a browser with only the remember cookie");
    let rotated = res
        .set_cookie(REMEMBER)
        .expect("the remember cookie is rotated")
        .value()
        .to_owned();
    assert!(!rotated.is_empty() && rotated != issued, "a new validator");
    assert!(remembered.has_cookie(SESSION), "and a session is made");
    restart_browser(&mut remembered);

    let mut phone = susan.another_browser();
    let res = phone.post_form("/login", "user=user001").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    assert!(phone.has_cookie(REMEMBER));

    // (b) Redis is down.
    server.stop();
    events.take();
    let res = remembered.get("/account").await;
    assert_sent_to_login(&res, "a remember cookie while Redis is down");
    assert_eq!(
        res.set_cookie(REMEMBER),
        None,
        "the remember cookie is neither rotated nor deleted"
    );
    assert_eq!(remembered.cookie(REMEMBER), Some(rotated.clone()));
    let logged = events.take();
    assert!(
        logged
            .iter()
            .any(|e| e.starts_with("ERROR latch:") && e.contains("remember")),
        "an error event with target latch: {logged:#?}"
    );

    assert_logged_in(
        &susan.get("/account").await,
        "susan",
        "a session while Redis is down",
    );

    let mut david = susan.another_browser();
    let res = david.post_form("/login", "user=user002").await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body, "logged in as david, not remembered");
    assert!(!david.has_cookie(REMEMBER), "no remember cookie: {res:?}");
    assert_logged_in(
        &david.get("/account").await,
        "david",
        "a session-only login",
    );

    events.take();
    let res = phone.post("/logout").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "a logout while Redis is down: {res:?}"
    );
    assert!(
        !phone.has_cookie(REMEMBER),
        "the remember cookie is deleted anyway"
    );
    assert_sent_to_login(&phone.get("/account").await, "after a logout");
    let logged = events.take();
    assert!(
        logged
            .iter()
            .any(|e| e.starts_with("ERROR latch:") && e.contains("not revoked")),
        "the failed revocation is logged: {logged:#?}"
    );

    // (c) Redis is back, on the same port with the same data; the app and
    // its connection manager are the same. The manager's last reconnection
    // failed while Redis was down: the store tries once more on a refused
    // connection, so even the first request after the restart works.
    let _server = RedisServer::start(&binary, port, dir.path()).await;
    let res = remembered.get("/account").await;
    assert_logged_in(&res, "susan", "the remember cookie once Redis is back");
    let again = res
        .set_cookie(REMEMBER)
        .expect("the remember cookie is rotated")
        .value()
        .to_owned();
    assert!(!again.is_empty() && again != rotated);

    let mut david_later = david.another_browser();
    let res = david_later.post_form("/login", "user=user002").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "remembered again: {res:?}"
    );
    assert!(david_later.has_cookie(REMEMBER));
    restart_browser(&mut david_later);
    assert_logged_in(
        &david_later.get("/account").await,
        "david",
        "a remember cookie issued after Redis came back",
    );

    // Logging out revokes the token: a copy of the cookie stops working.
    let copy = remembered.cookie(REMEMBER).unwrap();
    let res = remembered.post("/logout").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:?}");
    let mut thief = remembered.another_browser();
    thief.set_cookie(REMEMBER, &copy);
    assert_sent_to_login(&thief.get("/account").await, "a revoked remember cookie");
}
