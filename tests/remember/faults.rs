//! Remember-me and the session registry when their store fails: a real
//! `redis-server`, started by the test on a spare port, is killed and
//! started again under apps that keep running.
//!
//! Remember-me:
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
//! The session registry, two app instances over one Redis:
//!
//! - a logout while Redis is down still clears the browser's cookie, logs
//!   an error, and this instance refuses a copy of the cookie at once;
//! - once Redis is back (with its data, or empty: then it numbers its
//!   changes from the start again), the ending is written, and the other
//!   instance refuses the copy within seconds, as does one started later;
//! - two instances ending one session at once is not an error.
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
use axum_latch::registry::SessionRegistry;
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

/// What a `redis-server` keeps across a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persistence {
    /// An append-only file, synced on every write: back with every key,
    /// even after a kill.
    AppendOnly,
    /// Nothing: back empty.
    Off,
}

/// A `redis-server` child process, killed when dropped (a failing test
/// included).
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on `port` that keeps its data in `dir` as
    /// `persistence` says, and waits until it answers `PING`.
    async fn start(binary: &Path, port: u16, dir: &Path, persistence: Persistence) -> Self {
        let append_only = match persistence {
            Persistence::AppendOnly => "yes",
            Persistence::Off => "no",
        };
        let child = Command::new(binary)
            .arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg(append_only)
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
    let mut server = RedisServer::start(&binary, port, dir.path(), Persistence::AppendOnly).await;
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
    let _server = RedisServer::start(&binary, port, dir.path(), Persistence::AppendOnly).await;
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

// ---------------------------------------------------------------------------
// The session registry: a logout while Redis is down
// ---------------------------------------------------------------------------

/// One app instance with a session registry over the Redis at `url` (keys
/// under `prefix`), which hears the feed by pub/sub and reads the store
/// every 50 ms; no remember-me.
async fn registry_instance(
    db: &Arc<fixtures::Db>,
    url: &str,
    prefix: &str,
) -> (Router, SessionRegistry) {
    let store = RedisStore::new(connect(url).await)
        .prefix(prefix)
        .feed(redis::Client::open(url).expect("a Redis URL"));
    let registry = SessionRegistry::builder(store)
        .poll_every(Duration::from_millis(50))
        .connect()
        .await
        .expect("the registry reads the store");
    let app = Router::new()
        .route("/", get(fixtures::index))
        .merge(fixtures::account_routes(fixtures::log_in_handler))
        .with_state(db.clone())
        .layer(Login::new(fixtures::loader(db.clone())).sessions(registry.clone()))
        .layer(Session::new(key()));
    (app, registry)
}

async fn log_in(client: &mut Client, user: &str) {
    fixtures::log_in_through_the_form(client, user, "off", None).await;
}

/// A browser on `app` with this session cookie.
fn with_session(app: &Router, cookie: &str) -> Client {
    let mut client = Client::new(app.clone());
    client.set_cookie(SESSION, cookie);
    client
}

/// Whether `client`'s `GET /` is logged in (`200`), or sent to log in
/// (`302` to the login page); anything else fails the test.
async fn logged_in(client: &mut Client) -> bool {
    let res = client.get("/").await;
    match res.status {
        StatusCode::OK => true,
        StatusCode::FOUND if res.location().is_some_and(|l| l.starts_with("/login")) => false,
        _ => panic!("neither logged in nor sent to log in: {res:?}"),
    }
}

/// Waits, up to `limit`, until `condition` holds; says `what` if it never does.
async fn wait_until(limit: Duration, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Log in on A, copy the cookie, kill Redis, log out on A; then start Redis
/// again on the same port, with its data or empty (`persistence`).
async fn logout_while_redis_is_down(persistence: Persistence) {
    // A server of the test's own, to kill: whatever TEST_REDIS_URL says.
    let Some(binary) = backend::redis_server_binary() else {
        backend::skip("no redis-server is on PATH (or at the path REDIS_SERVER names)");
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = backend::spare_port();
    let mut server = RedisServer::start(&binary, port, dir.path(), persistence).await;
    let url = server.url();
    let prefix = "latch_test:";
    let db = fixtures::Db::new();
    let (a, _registry_a) = registry_instance(&db, &url, prefix).await;
    let (b, registry_b) = registry_instance(&db, &url, prefix).await;

    // Endings B hears before the outage. A Redis back empty numbers its
    // changes from 1 again, below the last one B has seen: B must read
    // the feed from the start to hear the ending made during the outage.
    for _ in 0..3 {
        let mut david = Client::new(a.clone());
        log_in(&mut david, "user002").await;
        assert_eq!(david.post("/logout").await.status, StatusCode::SEE_OTHER);
    }
    wait_until(
        Duration::from_secs(10),
        "B hears the three logouts",
        async || registry_b.ended_size().sessions == 3,
    )
    .await;

    let mut browser = Client::new(a.clone());
    log_in(&mut browser, "user001").await;
    let copy = browser.cookie(SESSION).expect("a session cookie");
    assert!(
        logged_in(&mut with_session(&b, &copy)).await,
        "B takes the copy before the logout"
    );

    // Redis is down at the logout.
    server.stop();
    let (events, _guard) = capture_events();
    let res = browser.post("/logout").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "logout answers as ever: {res:?}"
    );
    let cleared = res
        .set_cookie(SESSION)
        .unwrap_or_else(|| panic!("the logout clears the session cookie: {res:?}"));
    assert!(support::is_removal(&cleared), "a deletion: {cleared}");
    assert!(!browser.has_cookie(SESSION));
    assert!(!logged_in(&mut browser).await, "the browser is logged out");
    let errors = events.take_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("ERROR latch:") && e.contains("session ending not recorded")),
        "the failed ending is logged as an error: {errors:#?}"
    );
    assert!(
        !logged_in(&mut with_session(&a, &copy)).await,
        "A refuses the copy at once"
    );
    assert!(
        logged_in(&mut with_session(&b, &copy)).await,
        "B cannot know of the logout while Redis is down"
    );

    // Redis is back on the same port; the apps are the same.
    let _server = RedisServer::start(&binary, port, dir.path(), persistence).await;
    if persistence == Persistence::Off {
        let mut check = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let seq: Option<u64> = redis::cmd("GET")
            .arg(format!("{prefix}sessions:{{feed}}:seq"))
            .query_async(&mut check)
            .await
            .unwrap();
        assert!(seq.unwrap_or(0) <= 1, "back empty: seq {seq:?}");
    }
    let mut replay_b = with_session(&b, &copy);
    wait_until(Duration::from_secs(10), "B refuses the copy", async || {
        !logged_in(&mut replay_b).await
    })
    .await;
    assert!(
        events
            .take()
            .iter()
            .any(|e| e.contains("session ending recorded after the store came back")),
        "A wrote the ending once Redis was back"
    );
    let (c, _registry_c) = registry_instance(&db, &url, prefix).await;
    assert!(
        !logged_in(&mut with_session(&c, &copy)).await,
        "an instance started later refuses the copy too"
    );
}

/// Redis killed at the logout and started again with its data (an
/// append-only file): the ending made meanwhile reaches B once it is back.
#[tokio::test]
async fn a_logout_while_redis_is_down_clears_the_cookie_and_reaches_other_instances_once_it_is_back(
) {
    logout_while_redis_is_down(Persistence::AppendOnly).await;
}

/// Redis killed at the logout and started again empty (no persistence):
/// its changes are numbered from 1 again, below what B has seen, and B
/// still hears of the ending once A writes it.
#[tokio::test]
async fn a_logout_while_redis_is_down_reaches_other_instances_even_if_redis_comes_back_empty() {
    logout_while_redis_is_down(Persistence::Off).await;
}

/// Two instances ending one session at the same moment, against real
/// Redis: a logout on each with the same cookie, and both registries
/// ending the same session. Neither fails nor logs an error, and the
/// session ends everywhere.
#[tokio::test]
async fn two_instances_ending_one_session_at_once_on_redis_is_not_an_error() {
    backend::with_redis_prefix(async |url, _, prefix| {
        let db = fixtures::Db::new();
        let (a, registry_a) = registry_instance(&db, &url, &prefix).await;
        let (b, registry_b) = registry_instance(&db, &url, &prefix).await;
        let (events, _guard) = capture_events();

        let mut browser = Client::new(a.clone());
        log_in(&mut browser, "user001").await;
        let copy = browser.cookie(SESSION).expect("a session cookie");
        let mut on_b = with_session(&b, &copy);
        let (on_a, on_b) = tokio::join!(browser.post("/logout"), on_b.post("/logout"));
        assert_eq!(on_a.status, StatusCode::SEE_OTHER, "{on_a:?}");
        assert_eq!(on_b.status, StatusCode::SEE_OTHER, "{on_b:?}");
        for app in [&a, &b] {
            assert!(!logged_in(&mut with_session(app, &copy)).await);
        }

        let mut laptop = Client::new(b.clone());
        log_in(&mut laptop, "user001").await;
        let listed = registry_a.sessions(&"user001").await.unwrap();
        assert_eq!(listed.len(), 1, "the laptop's session: {listed:?}");
        let id = listed[0].id.clone();
        let (ended_a, ended_b) = tokio::join!(
            registry_a.end_session(&"user001", &id),
            registry_b.end_session(&"user001", &id),
        );
        let (ended_a, ended_b) = (ended_a.unwrap(), ended_b.unwrap());
        assert!(ended_a || ended_b, "at least one found it");
        let laptop_copy = laptop.cookie(SESSION).unwrap();
        for app in [&a, &b] {
            assert!(!logged_in(&mut with_session(app, &laptop_copy)).await);
        }
        assert!(registry_a.sessions(&"user001").await.unwrap().is_empty());

        let complaints: Vec<String> = events
            .take()
            .into_iter()
            .filter(|e| e.starts_with("ERROR") || e.starts_with("WARN"))
            .collect();
        assert!(complaints.is_empty(), "{complaints:#?}");
    })
    .await;
}
