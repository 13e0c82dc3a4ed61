//! Sessions ended on the server through the session registry: a copy of a
//! cookie taken before logout is refused after it, on this instance and on
//! another; listing and ending sessions; the per-user cut-off; the cap; and
//! what a store outage leaves behind. The registry's store here is
//! `MemoryStore` (every store passes the contract in the `remember` suite).

#![cfg(feature = "memory")]

use crate::support::fixtures::*;
use crate::support::{key, trace, Client};
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_latch::clock::Clock;
use axum_latch::registry::{
    Change, Ending, RegistryBuilder, SessionRecord, SessionRegistry, SessionStore, Wake,
};
use axum_latch::remember::{RememberTokens, RevocableRemember, StatelessRemember, StoreError};
use axum_latch::stores::MemoryStore;
use axum_latch::{Auth, Login, Session};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What an anonymous `GET /` gets: the login redirect.
const LOGIN_REDIRECT: StatusCode = StatusCode::FOUND;

// ---------------------------------------------------------------------------
// The app under test
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct EndForm {
    id: String,
}

async fn sessions(auth: Auth<Account>) -> Response {
    match auth.sessions().await {
        Ok(list) => Json(
            list.iter()
                .map(|s| {
                    json!({
                        "id": s.id, "device": s.device, "current": s.current,
                        "remembered": s.remembered, "created_at": s.created_at,
                        "last_active_at": s.last_active_at,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn end_one(auth: Auth<Account>, Form(form): Form<EndForm>) -> String {
    format!(
        "{:?}",
        auth.end_session(&form.id).await.map_err(|e| e.to_string())
    )
}

async fn end_others(auth: Auth<Account>) -> String {
    format!(
        "{:?}",
        auth.end_other_sessions().await.map_err(|e| e.to_string())
    )
}

async fn end_all(auth: Auth<Account>) -> String {
    format!(
        "{:?}",
        auth.end_all_sessions().await.map_err(|e| e.to_string())
    )
}

/// One instance of the app: its own session and login layers, and its own
/// registry over `store` (instances share only the store).
fn instance(
    db: &Arc<Db>,
    registry: SessionRegistry,
    remember: impl RememberTokens,
    clock: &Clock,
) -> Router {
    let login = Login::new(loader(db.clone()))
        .remember_tokens(remember)
        .sessions(registry);
    Router::new()
        .route("/", get(index))
        .route(
            "/sid",
            get(|auth: Auth<Account>| async move {
                auth.session_id().await.unwrap_or_else(|| "none".to_owned())
            }),
        )
        .route("/sessions", get(sessions))
        .route("/sessions/end", post(end_one))
        .route("/sessions/others", post(end_others))
        .route("/sessions/all", post(end_all))
        .merge(account_routes(log_in_handler))
        .with_state(db.clone())
        .layer(login)
        .layer(Session::new(key()).clock(clock.clone()))
}

fn builder(store: impl SessionStore, clock: &Clock) -> RegistryBuilder {
    SessionRegistry::builder(store)
        .clock(clock.clone())
        .poll_every(Duration::from_millis(20))
}

async fn registry(store: impl SessionStore, clock: &Clock) -> SessionRegistry {
    builder(store, clock)
        .connect()
        .await
        .expect("the store answers")
}

/// Two instances over one store, with revocable remember-me tokens in it.
struct Site {
    db: Arc<Db>,
    store: MemoryStore,
    clock: Clock,
    a: Router,
    b: Router,
    registry_a: SessionRegistry,
}

async fn site() -> Site {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::system();
    let registry_a = registry(store.clone(), &clock).await;
    let registry_b = registry(store.clone(), &clock).await;
    let a = instance(
        &db,
        registry_a.clone(),
        RevocableRemember::new(store.clone()),
        &clock,
    );
    let b = instance(
        &db,
        registry_b,
        RevocableRemember::new(store.clone()),
        &clock,
    );
    Site {
        db,
        store,
        clock,
        a,
        b,
        registry_a,
    }
}

/// `client`'s cookies, sent to another instance's app.
fn on(app: &Router, client: &Client) -> Client {
    let mut other = Client::new(app.clone());
    for name in ["session", "_remember"] {
        if let Some(value) = client.cookie(name) {
            other.set_cookie(name, &value);
        }
    }
    other
}

async fn status_of(client: &mut Client) -> StatusCode {
    client.get("/").await.status
}

/// Waits (at most 5 s) until `client`'s `/` answers `expected`.
async fn until_status(client: &mut Client, expected: StatusCode) -> StatusCode {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = status_of(client).await;
        if status == expected || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn list(client: &mut Client) -> Vec<Value> {
    let res = client.get("/sessions").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    match res.json() {
        Value::Array(list) => list,
        other => panic!("a list: {other}"),
    }
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().map(|s| s["id"].as_str().unwrap()).collect()
}

// ---------------------------------------------------------------------------
// A copied cookie after logout
// ---------------------------------------------------------------------------

/// The complaint against every cookie session: log in, copy the cookie, log
/// out, replay it. With the registry the replay is anonymous, here and on
/// another instance.
#[tokio::test]
async fn a_cookie_copied_before_logout_is_refused_after_it_on_every_instance() {
    let t = site().await;
    let mut browser = Client::new(t.a.clone());
    log_in(&mut browser, "user001", "off").await;
    let copy = browser.cookie("session").unwrap();
    assert_eq!(status_of(&mut browser).await, StatusCode::OK);
    let mut on_b = on(&t.b, &browser);
    assert_eq!(
        status_of(&mut on_b).await,
        StatusCode::OK,
        "B takes it before"
    );

    assert_eq!(browser.post("/logout").await.status, StatusCode::SEE_OTHER);
    assert!(!browser.has_cookie("session") || status_of(&mut browser).await != StatusCode::OK);

    let mut replay = Client::new(t.a.clone());
    replay.set_cookie("session", &copy);
    let (status, rejections) = trace::rejections_of(status_of(&mut replay)).await;
    assert_eq!(status, LOGIN_REDIRECT, "the login redirect on A");
    assert!(
        rejections.iter().any(|r| r.contains("ended on the server")),
        "refused as ended: {rejections:?}"
    );
    let mut replay_b = Client::new(t.b.clone());
    replay_b.set_cookie("session", &copy);
    assert_eq!(
        until_status(&mut replay_b, LOGIN_REDIRECT).await,
        LOGIN_REDIRECT,
        "the login redirect on B"
    );
    // And it stays refused: the replay's own clearing of the login is not
    // what refuses it.
    let mut again = Client::new(t.b.clone());
    again.set_cookie("session", &copy);
    assert_eq!(status_of(&mut again).await, LOGIN_REDIRECT);
}

/// Without a registry latch cannot end a copied cookie (the reason this
/// exists): the same replay is let in.
#[tokio::test]
async fn without_a_registry_the_copy_still_works_until_it_expires() {
    let db = Db::new();
    let app = Router::new()
        .route("/", get(index))
        .merge(account_routes(log_in_handler))
        .with_state(db.clone())
        .layer(Login::new(loader(db.clone())))
        .layer(Session::new(key()));
    let mut browser = Client::new(app.clone());
    log_in(&mut browser, "user001", "off").await;
    let copy = browser.cookie("session").unwrap();
    browser.post("/logout").await;
    let mut replay = Client::new(app);
    replay.set_cookie("session", &copy);
    assert_eq!(status_of(&mut replay).await, StatusCode::OK);
}

/// A new password login in the same browser ends the login it replaces: a
/// copy of the earlier cookie stops working.
#[tokio::test]
async fn logging_in_again_ends_the_browsers_earlier_session() {
    let t = site().await;
    let mut browser = Client::new(t.a.clone());
    log_in(&mut browser, "user001", "off").await;
    let copy = browser.cookie("session").unwrap();
    log_in(&mut browser, "user002", "off").await;
    assert_eq!(browser.get("/").await.body, "Hello, david!");
    let mut replay = Client::new(t.a.clone());
    replay.set_cookie("session", &copy);
    assert_eq!(status_of(&mut replay).await, LOGIN_REDIRECT);
}

/// A remembered browser: logout revokes its token, and a copy of the
/// remember cookie (and of the session) is refused too.
#[tokio::test]
async fn logout_ends_a_remembered_browser_and_its_cookie_copies() {
    for remember in ["stateless", "revocable"] {
        let db = Db::new();
        let store = MemoryStore::new();
        let clock = Clock::system();
        let make = |registry: SessionRegistry| match remember {
            "stateless" => instance(&db, registry, StatelessRemember, &clock),
            _ => instance(&db, registry, RevocableRemember::new(store.clone()), &clock),
        };
        let a = make(registry(store.clone(), &clock).await);
        let mut browser = Client::new(a.clone());
        log_in(&mut browser, "user001", "on").await;
        let session_copy = browser.cookie("session").unwrap();
        let remember_copy = browser.cookie("_remember").unwrap();
        browser.post("/logout").await;

        let mut thief = Client::new(a.clone());
        thief.set_cookie("_remember", &remember_copy);
        assert_eq!(
            status_of(&mut thief).await,
            LOGIN_REDIRECT,
            "{remember}: remember copy"
        );
        let mut thief = Client::new(a.clone());
        thief.set_cookie("session", &session_copy);
        thief.set_cookie("_remember", &remember_copy);
        assert_eq!(
            status_of(&mut thief).await,
            LOGIN_REDIRECT,
            "{remember}: both copies"
        );
    }
}

// ---------------------------------------------------------------------------
// Listing and ending sessions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sessions_lists_every_browser_and_marks_this_one() {
    let t = site().await;
    let mut laptop = Client::new(t.a.clone());
    crate::support::fixtures::log_in_through_the_form(
        &mut laptop,
        "user001",
        "on",
        Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    )
    .await;
    let mut phone = Client::new(t.b.clone());
    log_in(&mut phone, "user001", "off").await;
    let mut other_user = Client::new(t.a.clone());
    log_in(&mut other_user, "user002", "off").await;

    let seen = list(&mut laptop).await;
    assert_eq!(seen.len(), 2, "susan's two browsers, not david's: {seen:?}");
    let laptop_sid = laptop.get("/sid").await.body;
    let phone_sid = phone.get("/sid").await.body;
    let this: Vec<_> = seen.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(this.len(), 1);
    assert_eq!(this[0]["id"], laptop_sid.as_str());
    assert_eq!(this[0]["device"], "Firefox on Linux");
    assert_eq!(this[0]["remembered"], true);
    let other = seen.iter().find(|s| s["id"] == phone_sid.as_str()).unwrap();
    assert_eq!(other["remembered"], false);
    assert_eq!(other["current"], false);
    // The same list from the other instance, with its own mark.
    let from_phone = list(&mut phone).await;
    let mut a = ids(&seen);
    let mut b = ids(&from_phone);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // And from the app, outside any request.
    let outside = t.registry_a.sessions(&"user001").await.unwrap();
    assert_eq!(outside.len(), 2);
    assert!(outside.iter().all(|s| !s.current));
}

#[tokio::test]
async fn ending_another_browser_logs_it_out_on_every_instance() {
    let t = site().await;
    let mut first = Client::new(t.a.clone());
    log_in(&mut first, "user001", "off").await;
    let mut second = Client::new(t.b.clone());
    log_in(&mut second, "user001", "on").await;
    let second_sid = second.get("/sid").await.body;
    let second_on_a = on(&t.a, &second);

    let res = first
        .post_form("/sessions/end", &format!("id={second_sid}"))
        .await;
    assert_eq!(res.body, "Ok(true)");
    assert_eq!(
        until_status(&mut second, LOGIN_REDIRECT).await,
        LOGIN_REDIRECT
    );
    let mut second_on_a = second_on_a;
    assert_eq!(status_of(&mut second_on_a).await, LOGIN_REDIRECT);
    // Its remember cookie went with it: revoked in the store.
    assert_eq!(
        axum_latch::remember::RememberStore::list(&t.store, "\"user001\"")
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        status_of(&mut first).await,
        StatusCode::OK,
        "the first carries on"
    );
    assert_eq!(ids(&list(&mut first).await).len(), 1);
}

#[tokio::test]
async fn an_id_of_another_users_session_ends_nothing() {
    let t = site().await;
    let mut susan = Client::new(t.a.clone());
    log_in(&mut susan, "user001", "off").await;
    let mut david = Client::new(t.a.clone());
    log_in(&mut david, "user002", "off").await;
    let david_sid = david.get("/sid").await.body;
    for id in [
        david_sid.as_str(),
        "garbage",
        "",
        "AAAAAAAAAAAAAAAAAAAAAA",
        &"x".repeat(5000),
    ] {
        let res = susan.post_form("/sessions/end", &format!("id={id}")).await;
        assert_eq!(res.body, "Ok(false)", "{id:?}");
    }
    assert_eq!(status_of(&mut david).await, StatusCode::OK);
    // Anonymous: nothing to end, no error.
    let mut stranger = Client::new(t.a.clone());
    let res = stranger
        .post_form("/sessions/end", &format!("id={david_sid}"))
        .await;
    assert_eq!(res.body, "Ok(false)");
}

#[tokio::test]
async fn ending_this_browsers_own_session_logs_it_out() {
    let t = site().await;
    let mut browser = Client::new(t.a.clone());
    log_in(&mut browser, "user001", "on").await;
    let sid = browser.get("/sid").await.body;
    let copy = browser.cookie("session").unwrap();
    let res = browser
        .post_form("/sessions/end", &format!("id={sid}"))
        .await;
    assert_eq!(res.body, "Ok(true)");
    assert_eq!(status_of(&mut browser).await, LOGIN_REDIRECT);
    let mut replay = Client::new(t.a.clone());
    replay.set_cookie("session", &copy);
    assert_eq!(status_of(&mut replay).await, LOGIN_REDIRECT);
}

#[tokio::test]
async fn end_other_sessions_keeps_this_one_only() {
    let t = site().await;
    let mut keep = Client::new(t.a.clone());
    log_in(&mut keep, "user001", "on").await;
    let mut others: Vec<Client> = Vec::new();
    for (app, remember) in [(&t.a, "off"), (&t.b, "on"), (&t.b, "off")] {
        let mut other = Client::new(app.clone());
        log_in(&mut other, "user001", remember).await;
        others.push(other);
    }
    let mut david = Client::new(t.b.clone());
    log_in(&mut david, "user002", "off").await;

    assert_eq!(keep.post("/sessions/others").await.body, "Ok(true)");
    for other in &mut others {
        assert_eq!(until_status(other, LOGIN_REDIRECT).await, LOGIN_REDIRECT);
        // Without its session cookie, the remember cookie cannot bring it back.
        other.remove_cookie("session");
        assert_eq!(status_of(other).await, LOGIN_REDIRECT);
    }
    assert_eq!(status_of(&mut keep).await, StatusCode::OK);
    keep.remove_cookie("session");
    assert_eq!(
        status_of(&mut keep).await,
        StatusCode::OK,
        "its own remember cookie still works"
    );
    assert_eq!(
        status_of(&mut david).await,
        StatusCode::OK,
        "another user's untouched"
    );
    let left = list(&mut keep).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["current"], true);
}

#[tokio::test]
async fn end_all_sessions_logs_out_everywhere_and_a_new_login_works() {
    let t = site().await;
    let mut here = Client::new(t.a.clone());
    log_in(&mut here, "user001", "on").await;
    let mut there = Client::new(t.b.clone());
    log_in(&mut there, "user001", "on").await;
    assert_eq!(here.post("/sessions/all").await.body, "Ok(true)");
    assert_eq!(status_of(&mut here).await, LOGIN_REDIRECT);
    assert_eq!(
        until_status(&mut there, LOGIN_REDIRECT).await,
        LOGIN_REDIRECT
    );
    there.remove_cookie("session");
    assert_eq!(
        status_of(&mut there).await,
        LOGIN_REDIRECT,
        "remember revoked"
    );

    // The cut-off is at a whole second: a login in the same second would
    // fall under it, so the new login waits for the next one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    log_in(&mut there, "user001", "off").await;
    assert_eq!(status_of(&mut there).await, StatusCode::OK);
}

/// An admin (or a disabled account) ends a user's sessions from outside
/// any request.
#[tokio::test]
async fn the_app_ends_a_users_sessions_outside_a_request() {
    let t = site().await;
    let mut susan = Client::new(t.a.clone());
    log_in(&mut susan, "user001", "on").await;
    let mut david = Client::new(t.b.clone());
    log_in(&mut david, "user002", "off").await;
    let david_sid = david.get("/sid").await.body;

    assert!(
        !t.registry_a
            .end_session(&"user001", &david_sid)
            .await
            .unwrap(),
        "not susan's"
    );
    assert!(t
        .registry_a
        .end_session(&"user002", &david_sid)
        .await
        .unwrap());
    assert_eq!(
        until_status(&mut david, LOGIN_REDIRECT).await,
        LOGIN_REDIRECT
    );

    t.registry_a.end_all(&"user001").await.unwrap();
    assert_eq!(status_of(&mut susan).await, LOGIN_REDIRECT);
    susan.remove_cookie("session");
    assert_eq!(
        status_of(&mut susan).await,
        LOGIN_REDIRECT,
        "remember revoked"
    );
    assert!(t.registry_a.sessions(&"user001").await.unwrap().is_empty());
}

/// `end_before` is the per-user "not before" time: logins before it end,
/// later ones do not.
#[tokio::test]
async fn end_before_ends_only_logins_made_before_it() {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::manual(SystemTime::now());
    let registry = registry(store.clone(), &clock).await;
    let app = instance(&db, registry.clone(), StatelessRemember, &clock);
    let mut early = Client::new(app.clone());
    log_in(&mut early, "user001", "on").await;
    clock.advance(Duration::from_secs(10));
    let cut = clock.now();
    clock.advance(Duration::from_secs(10));
    let mut late = Client::new(app.clone());
    log_in(&mut late, "user001", "on").await;

    registry.end_before(&"user001", cut).await.unwrap();
    assert_eq!(status_of(&mut early).await, LOGIN_REDIRECT);
    early.remove_cookie("session");
    assert_eq!(
        status_of(&mut early).await,
        LOGIN_REDIRECT,
        "its stateless remember cookie too"
    );
    assert_eq!(status_of(&mut late).await, StatusCode::OK);
    late.remove_cookie("session");
    assert_eq!(
        status_of(&mut late).await,
        StatusCode::OK,
        "a later remember cookie works"
    );
}

// ---------------------------------------------------------------------------
// Last active, the cap
// ---------------------------------------------------------------------------

#[tokio::test]
async fn last_active_is_written_at_most_once_per_touch_period() {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::manual(SystemTime::now());
    let registry = builder(store.clone(), &clock)
        .touch_every(Duration::from_secs(60))
        .connect()
        .await
        .unwrap();
    let app = instance(&db, registry.clone(), StatelessRemember, &clock);
    let mut browser = Client::new(app);
    log_in(&mut browser, "user001", "off").await;
    let created = registry.sessions(&"user001").await.unwrap()[0].last_active_at;

    let last_active = || async {
        // The write happens in the background: give it a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        registry.sessions(&"user001").await.unwrap()[0].last_active_at
    };
    clock.advance(Duration::from_secs(30));
    browser.get("/").await;
    assert_eq!(
        last_active().await,
        created,
        "within the period: not written"
    );
    clock.advance(Duration::from_secs(31));
    browser.get("/").await;
    assert_eq!(last_active().await, created + 61, "past it: written");
    clock.advance(Duration::from_secs(1));
    browser.get("/").await;
    assert_eq!(
        last_active().await,
        created + 61,
        "and not again right after"
    );
}

#[tokio::test]
async fn a_cap_on_sessions_ends_the_oldest() {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::manual(SystemTime::now());
    let registry = builder(store.clone(), &clock)
        .max_sessions_per_user(2)
        .connect()
        .await
        .unwrap();
    let app = instance(
        &db,
        registry.clone(),
        RevocableRemember::new(store.clone()),
        &clock,
    );
    let mut browsers = Vec::new();
    for _ in 0..3 {
        let mut browser = Client::new(app.clone());
        log_in(&mut browser, "user001", "on").await;
        browsers.push(browser);
        clock.advance(Duration::from_secs(5));
    }
    assert_eq!(
        status_of(&mut browsers[0]).await,
        LOGIN_REDIRECT,
        "the oldest ended"
    );
    browsers[0].remove_cookie("session");
    assert_eq!(
        status_of(&mut browsers[0]).await,
        LOGIN_REDIRECT,
        "with its remember cookie"
    );
    assert_eq!(status_of(&mut browsers[1]).await, StatusCode::OK);
    assert_eq!(status_of(&mut browsers[2]).await, StatusCode::OK);
    assert_eq!(registry.sessions(&"user001").await.unwrap().len(), 2);
}

// ---------------------------------------------------------------------------
// Store outages
// ---------------------------------------------------------------------------

/// A `MemoryStore` that fails every call while `down` is set.
#[derive(Clone)]
struct Flaky {
    store: MemoryStore,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new(std::io::Error::other("store unreachable")))
        } else {
            Ok(())
        }
    }
}

impl SessionStore for Flaky {
    async fn save(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.check()?;
        SessionStore::save(&self.store, record).await
    }
    async fn touch(&self, session_id: &str, at: u64) -> Result<(), StoreError> {
        self.check()?;
        SessionStore::touch(&self.store, session_id, at).await
    }
    async fn list(&self, user_id: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        self.check()?;
        SessionStore::list(&self.store, user_id, now).await
    }
    async fn end(&self, ending: &Ending) -> Result<u64, StoreError> {
        self.check()?;
        SessionStore::end(&self.store, ending).await
    }
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.check()?;
        SessionStore::changes(&self.store, after, limit).await
    }
    async fn listen(&self, wake: Wake) -> Result<(), StoreError> {
        SessionStore::listen(&self.store, wake).await
    }
    fn pushes_changes(&self) -> bool {
        true
    }
    async fn purge(&self, now: u64) -> Result<u64, StoreError> {
        self.check()?;
        SessionStore::purge(&self.store, now).await
    }
}

/// The store is down at logout: the browser is still logged out, the
/// error is logged, this instance refuses copies at once, and the other
/// instance refuses them once the store is back.
#[tokio::test]
async fn logout_while_the_store_is_down_still_ends_the_session() {
    let db = Db::new();
    let store = MemoryStore::new();
    let down = Arc::new(AtomicBool::new(false));
    let clock = Clock::system();
    let flaky = Flaky {
        store: store.clone(),
        down: down.clone(),
    };
    let a = instance(
        &db,
        registry(flaky.clone(), &clock).await,
        StatelessRemember,
        &clock,
    );
    let b = instance(
        &db,
        registry(flaky.clone(), &clock).await,
        StatelessRemember,
        &clock,
    );
    let mut browser = Client::new(a.clone());
    log_in(&mut browser, "user001", "off").await;
    let copy = browser.cookie("session").unwrap();

    down.store(true, Ordering::SeqCst);
    let (captured, _guard) = trace::capture();
    let res = browser.post("/logout").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "logout answers as ever");
    assert_eq!(status_of(&mut browser).await, LOGIN_REDIRECT, "logged out");
    assert!(
        captured
            .take_errors()
            .iter()
            .any(|e| e.contains("session ending not recorded")),
        "the failure is logged"
    );
    let mut replay_a = Client::new(a.clone());
    replay_a.set_cookie("session", &copy);
    assert_eq!(
        status_of(&mut replay_a).await,
        LOGIN_REDIRECT,
        "A knows at once"
    );
    let mut replay_b = Client::new(b.clone());
    replay_b.set_cookie("session", &copy);
    assert_eq!(
        status_of(&mut replay_b).await,
        StatusCode::OK,
        "B cannot know yet"
    );

    down.store(false, Ordering::SeqCst);
    assert_eq!(
        until_status(&mut replay_b, LOGIN_REDIRECT).await,
        LOGIN_REDIRECT,
        "B hears of it once the store is back"
    );
}

/// By default a registry that cannot reach its store keeps serving; with
/// `refuse_when_stale`, sessions are refused past the limit, and accepted
/// again (not lost) once the store answers.
#[tokio::test]
async fn a_stale_registry_serves_by_default_and_refuses_when_asked() {
    let db = Db::new();
    let down = Arc::new(AtomicBool::new(false));
    let clock = Clock::manual(SystemTime::now());
    let flaky = Flaky {
        store: MemoryStore::new(),
        down: down.clone(),
    };
    let lenient = instance(
        &db,
        registry(flaky.clone(), &clock).await,
        StatelessRemember,
        &clock,
    );
    let strict_registry = builder(flaky.clone(), &clock)
        .refuse_when_stale(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let strict = instance(&db, strict_registry, StatelessRemember, &clock);
    let mut browser = Client::new(lenient.clone());
    log_in(&mut browser, "user001", "off").await;
    let mut strict_browser = on(&strict, &browser);

    down.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(31));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status_of(&mut browser).await,
        StatusCode::OK,
        "lenient: serves"
    );
    assert_eq!(
        status_of(&mut strict_browser).await,
        LOGIN_REDIRECT,
        "strict: refuses"
    );
    assert!(
        strict_browser.has_cookie("session"),
        "the login is kept for later"
    );

    down.store(false, Ordering::SeqCst);
    assert_eq!(
        until_status(&mut strict_browser, StatusCode::OK).await,
        StatusCode::OK
    );
}

/// Two instances ending the same session at once is not an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ending_one_session_at_once_is_fine() {
    let t = site().await;
    let mut browser = Client::new(t.a.clone());
    log_in(&mut browser, "user001", "off").await;
    let sid = browser.get("/sid").await.body;
    let registry_b = registry(t.store.clone(), &t.clock).await;
    let (a, b) = tokio::join!(
        t.registry_a.end_session(&"user001", &sid),
        registry_b.end_session(&"user001", &sid),
    );
    assert!(a.is_ok() && b.is_ok());
    assert!(a.unwrap() || b.unwrap(), "at least one found it");
    assert_eq!(status_of(&mut browser).await, LOGIN_REDIRECT);
    let _ = &t.db;
}

/// The registry's API outside a request needs no request, and a registry
/// connected later loads every ending made so far.
#[tokio::test]
async fn a_registry_connected_later_knows_the_endings_made_before() {
    let t = site().await;
    let mut browser = Client::new(t.a.clone());
    log_in(&mut browser, "user001", "off").await;
    let copy = browser.cookie("session").unwrap();
    browser.post("/logout").await;
    let late = registry(t.store.clone(), &t.clock).await;
    assert_eq!(late.ended_size().sessions, 1);
    let c = instance(&t.db, late, StatelessRemember, &t.clock);
    let mut replay = Client::new(c);
    replay.set_cookie("session", &copy);
    assert_eq!(status_of(&mut replay).await, LOGIN_REDIRECT);
}

/// Without a registry, the listing calls say so instead of pretending.
#[tokio::test]
async fn without_a_registry_listing_sessions_is_a_clear_error() {
    let db = Db::new();
    let app = Router::new()
        .route("/sessions", get(sessions))
        .merge(account_routes(log_in_handler))
        .with_state(db.clone())
        .layer(Login::new(loader(db.clone())))
        .layer(Session::new(key()));
    let mut browser = Client::new(app);
    log_in(&mut browser, "user001", "off").await;
    let res = browser.get("/sessions").await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(res.body.contains("Login::sessions"), "{}", res.body);
}

async fn log_in(client: &mut Client, user: &str, remember: &str) {
    crate::support::fixtures::log_in_through_the_form(client, user, remember, None).await;
}

#[allow(dead_code)]
fn unused(_: State<()>) {}
