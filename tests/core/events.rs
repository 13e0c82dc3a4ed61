//! The event hook for an audit trail, over HTTP: each kind of event is
//! heard once, with the user, the device, the client's address and the
//! session; never a token; and a hook that is slow or panics holds up or
//! fails no request.

#![cfg(feature = "memory")]

use crate::support::fixtures::*;
use crate::support::{key, Client};
use axum::extract::{Form, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_latch::events::{ClientAddress, Ended, EventKind, LoginEvent, LoginMethod};
use axum_latch::registry::SessionRegistry;
use axum_latch::remember::RevocableRemember;
use axum_latch::stores::MemoryStore;
use axum_latch::throttle::Throttled;
use axum_latch::{Auth, CurrentUser, FreshUser, Login, Session};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const ADDRESS: &str = "203.0.113.7";

/// What the hook heard, in order.
#[derive(Clone, Default)]
struct Heard {
    events: Arc<Mutex<Vec<LoginEvent<String>>>>,
    arrived: Arc<Notify>,
}

impl Heard {
    /// Waits (up to 5 s) until `n` events have arrived; returns them all.
    async fn wait_for(&self, n: usize) -> Vec<LoginEvent<String>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.arrived.notified();
            {
                let events = self.events.lock().unwrap();
                if events.len() >= n {
                    return events.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let events = self.events.lock().unwrap().clone();
                panic!("waited for {n} events, heard {}: {events:?}", events.len());
            }
        }
    }

    /// The kinds heard so far, after giving the hook a moment.
    async fn kinds(&self) -> Vec<EventKind> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let events = self.events.lock().unwrap();
        events.iter().map(|event| event.kind.clone()).collect()
    }

    fn clear(&self) {
        self.events.lock().unwrap().clear();
    }
}

#[derive(serde::Deserialize)]
struct Failed {
    user: Option<String>,
}

async fn failed(auth: Auth<Account>, Form(form): Form<Failed>) -> StatusCode {
    auth.report_failed_login(form.user);
    StatusCode::UNAUTHORIZED
}

async fn throttled(auth: Auth<Account>) -> Response {
    let throttled = Throttled {
        retry_after: Duration::from_secs(90),
    };
    auth.report_throttled(Some("user001".to_owned()), &throttled);
    throttled.into_response()
}

async fn end_others(auth: Auth<Account>) -> String {
    format!("{:?}", auth.end_other_sessions().await.is_ok())
}

/// Puts the test's client address in every request, as an app's
/// middleware would from `ConnectInfo`.
async fn with_address(mut request: Request, next: Next) -> Response {
    let address: IpAddr = ADDRESS.parse().unwrap();
    request.extensions_mut().insert(ClientAddress(address));
    next.run(request).await
}

/// The app: revocable remember-me with no grace window (so a replayed
/// cookie is theft at once), a registry, and a hook that records.
async fn app(heard: &Heard) -> (Client, Arc<Db>) {
    let db = Db::new();
    let store = MemoryStore::new();
    let registry = SessionRegistry::connect(store.clone()).await.unwrap();
    let recorder = heard.clone();
    let login = Login::new(loader(db.clone()))
        .remember_tokens(RevocableRemember::new(store).grace(Duration::ZERO))
        .sessions(registry)
        .on_event(move |event: LoginEvent<String>| {
            let recorder = recorder.clone();
            async move {
                recorder.events.lock().unwrap().push(event);
                recorder.arrived.notify_waiters();
            }
        });
    let router = Router::new()
        .route("/", get(index))
        .route(
            "/sudo",
            get(|FreshUser(user): FreshUser<Account>| async move { user.name.clone() }),
        )
        .route("/failed", post(failed))
        .route("/throttled", post(throttled))
        .route("/end-others", post(end_others))
        .merge(account_routes(log_in_handler))
        .with_state(db.clone())
        .layer(login)
        .layer(Session::new(key()))
        .layer(middleware::from_fn(with_address));
    (Client::new(router), db)
}

#[tokio::test]
async fn a_password_login_and_a_logout_are_heard_with_user_device_address_and_session() {
    let heard = Heard::default();
    let (mut browser, _db) = app(&heard).await;
    log_in_through_the_form(&mut browser, "user001", "off", Some(FIREFOX)).await;
    let events = heard.wait_for(1).await;
    let login = &events[0];
    assert_eq!(login.kind, EventKind::LoggedIn(LoginMethod::Password));
    assert_eq!(login.user_id.as_deref(), Some("user001"));
    assert_eq!(login.device.as_deref(), Some("Firefox on Linux"));
    assert_eq!(login.client, Some(ADDRESS.parse().unwrap()));
    let session_id = login.session_id.clone().expect("the new login's id");
    assert_eq!(session_id.len(), 22, "latch's session id: {session_id}");
    let age = login.at.elapsed().unwrap_or_default();
    assert!(age < Duration::from_secs(60), "stamped now: {age:?}");

    let res = browser.post("/logout").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let events = heard.wait_for(2).await;
    assert_eq!(events[1].kind, EventKind::LoggedOut);
    assert_eq!(events[1].user_id.as_deref(), Some("user001"));
    assert_eq!(events[1].session_id.as_deref(), Some(session_id.as_str()));

    // An anonymous logout is not a logout of anyone.
    browser.post("/logout").await;
    assert_eq!(heard.kinds().await.len(), 2, "nothing heard for it");
}

#[tokio::test]
async fn a_remembered_login_a_rotation_and_a_theft_are_heard_and_no_token_is_in_them() {
    let heard = Heard::default();
    let (mut a, _db) = app(&heard).await;
    log_in_through_the_form(&mut a, "user001", "30", Some(FIREFOX)).await;
    let original = a.cookie("_remember").expect("remembered");
    heard.wait_for(1).await;
    heard.clear();

    // The browser restarts: restored from its cookie, which rotates.
    a.remove_cookie("session");
    let res = a.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "restored: {}", res.body);
    let events = heard.wait_for(2).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            EventKind::RememberRotated,
            EventKind::LoggedIn(LoginMethod::Remembered)
        ]
    );
    assert!(events
        .iter()
        .all(|e| e.user_id.as_deref() == Some("user001")));
    // The browser's next request confirms the new cookie.
    a.get("/").await;
    heard.clear();

    // A copy of the cookie from before the rotation is a thief's.
    let mut thief = a.another_browser();
    thief.set_cookie("_remember", &original);
    let res = thief.get("/").await;
    assert_eq!(res.status, StatusCode::FOUND, "the thief is anonymous");
    let events = heard.wait_for(1).await;
    assert_eq!(events[0].kind, EventKind::RememberTheft);
    assert_eq!(events[0].user_id.as_deref(), Some("user001"));
    let text = format!("{events:?}");
    let (selector, validator) = original.split_once('.').unwrap();
    assert!(
        !text.contains(validator) && !text.contains(selector),
        "no token in an event: {text}"
    );
}

#[tokio::test]
async fn fresh_login_required_failed_logins_and_throttling_are_heard() {
    let heard = Heard::default();
    let (mut browser, _db) = app(&heard).await;
    log_in_through_the_form(&mut browser, "user001", "30", Some(FIREFOX)).await;
    browser.remove_cookie("session");
    assert_eq!(browser.get("/").await.status, StatusCode::OK, "restored");
    heard.wait_for(3).await;
    heard.clear();

    let res = browser.get("/sudo").await;
    assert_eq!(res.status, StatusCode::FOUND, "sent to log in again");
    let events = heard.wait_for(1).await;
    assert_eq!(events[0].kind, EventKind::FreshLoginRequired);
    assert_eq!(events[0].user_id.as_deref(), Some("user001"));
    heard.clear();

    let mut stranger = browser.another_browser();
    let res = stranger.post_form("/failed", "user=user002").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    stranger.post_form("/failed", "").await;
    let res = stranger.post("/throttled").await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    let events = heard.wait_for(3).await;
    assert_eq!(events[0].kind, EventKind::LoginFailed);
    assert_eq!(events[0].user_id.as_deref(), Some("user002"));
    assert_eq!(events[1].kind, EventKind::LoginFailed);
    assert_eq!(events[1].user_id, None, "an unknown user name");
    assert_eq!(
        events[2].kind,
        EventKind::Throttled {
            retry_after: Duration::from_secs(90)
        }
    );
    assert!(events.iter().all(|e| e.session_id.is_none()));
}

#[tokio::test]
async fn ending_the_other_sessions_is_heard_once() {
    let heard = Heard::default();
    let (mut laptop, _db) = app(&heard).await;
    let mut phone = laptop.another_browser();
    log_in_through_the_form(&mut laptop, "user001", "off", Some(FIREFOX)).await;
    log_in_through_the_form(&mut phone, "user001", "off", None).await;
    let events = heard.wait_for(2).await;
    let laptop_session = events[0].session_id.clone();
    assert_eq!(events[1].device.as_deref(), Some("Unknown device"));
    heard.clear();

    let res = laptop.post("/end-others").await;
    assert_eq!(res.body, "true");
    let events = heard.wait_for(1).await;
    assert_eq!(events[0].kind, EventKind::SessionsEnded(Ended::Others));
    assert_eq!(
        events[0].session_id, laptop_session,
        "ended from the laptop"
    );
    assert_eq!(phone.get("/").await.status, StatusCode::FOUND);
    assert_eq!(heard.kinds().await.len(), 1);
}

/// An app whose hook is `hook`, with the usual routes.
fn app_with_hook(
    hook: impl Fn(LoginEvent<String>) -> futures_util::future::BoxFuture<'static, ()>
        + Send
        + Sync
        + 'static,
) -> Client {
    let db = Db::new();
    let login = Login::new(loader(db.clone())).on_event(hook);
    let router = Router::new()
        .route("/", get(index))
        .merge(account_routes(log_in_handler))
        .with_state(db)
        .layer(login)
        .layer(Session::new(key()));
    Client::new(router)
}

#[tokio::test]
async fn a_hook_that_panics_fails_no_request_and_hears_the_next_event() {
    let heard = Heard::default();
    let recorder = heard.clone();
    let mut browser = app_with_hook(move |event| {
        let recorder = recorder.clone();
        Box::pin(async move {
            if event.kind == EventKind::LoggedOut {
                panic!("the app's audit table is gone");
            }
            recorder.events.lock().unwrap().push(event);
            recorder.arrived.notify_waiters();
        })
    });
    log_in_through_the_form(&mut browser, "user001", "off", None).await;
    let res = browser.post("/logout").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "the logout is done");
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
    log_in_through_the_form(&mut browser, "user002", "off", None).await;
    let events = heard.wait_for(2).await;
    assert_eq!(
        events[1].user_id.as_deref(),
        Some("user002"),
        "heard after the panic"
    );
}

#[tokio::test]
async fn a_hook_that_never_returns_holds_up_no_request() {
    let stuck = Arc::new(Notify::new());
    let waiting = stuck.clone();
    let mut browser = app_with_hook(move |_| {
        let waiting = waiting.clone();
        // Stuck on a dead database, for ever.
        Box::pin(async move { waiting.notified().await })
    });
    for _ in 0..3 {
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            log_in_through_the_form(&mut browser, "user001", "off", None),
        )
        .await
        .expect("a login is not held up by the hook");
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        let res = browser.post("/logout").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
    }
    assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn without_a_hook_the_app_works_and_reporting_is_harmless() {
    let db = Db::new();
    let login = Login::new(loader(db.clone()));
    let router = Router::new()
        .route("/failed", post(failed))
        .route(
            "/",
            get(|CurrentUser(u): CurrentUser<Account>| async move { u.name.clone() }),
        )
        .merge(account_routes(log_in_handler))
        .with_state(db)
        .layer(login)
        .layer(Session::new(key()));
    let mut browser = Client::new(router);
    let res = browser.post_form("/failed", "user=user001").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    log_in_through_the_form(&mut browser, "user001", "off", None).await;
    assert_eq!(browser.get("/").await.body, "susan");
}
