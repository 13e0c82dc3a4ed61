//! Two-step login over HTTP: a pending login is anonymous everywhere; the
//! second step needs one, completes it once with a right code into a fresh
//! login that follows `next`, and allows a bounded number of wrong codes
//! that neither a replayed cookie nor starting over resets; it expires; and
//! a copy of the cookie is refused after the login.

#![cfg(feature = "memory")]

use crate::support::fixtures::*;
use crate::support::{key, Client, TestResponse};
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_latch::clock::Clock;
use axum_latch::events::{EventKind, LoginEvent, LoginMethod};
use axum_latch::registry::SessionRegistry;
use axum_latch::stores::MemoryStore;
use axum_latch::throttle::Throttle;
use axum_latch::two_step::{PendingLogin, TwoStep, Verified};
use axum_latch::{Auth, CurrentUser, FreshUser, Login, Session};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// susan's code of the moment, and her one recovery code.
const CODE: &str = "123456";
const RECOVERY: &str = "recovery-1";

#[derive(Clone)]
struct App {
    db: Arc<Db>,
    used_recovery: Arc<Mutex<HashSet<String>>>,
}

#[derive(serde::Deserialize)]
struct CodeForm {
    code: String,
}

/// `POST /login`: the password is right; the code is pending.
async fn begin(
    State(app): State<App>,
    auth: Auth<Account>,
    Form(form): Form<LoginForm>,
) -> Response {
    match app.db.check(&form) {
        Ok((user, remember)) => auth.begin_two_step(&user, remember).await.into_response(),
        Err(refused) => refused,
    }
}

async fn code_page(pending: PendingLogin<Account>) -> String {
    format!(
        "code for {}, {} tries left",
        pending.user().name,
        pending.attempts_left()
    )
}

async fn check_code(
    State(app): State<App>,
    pending: PendingLogin<Account>,
    Form(form): Form<CodeForm>,
) -> Response {
    let verified = pending
        .verify(|_user| async move {
            if form.code == CODE {
                return Some("totp");
            }
            let fresh = app.used_recovery.lock().unwrap().insert(form.code.clone());
            (form.code == RECOVERY && fresh).then_some("recovery_code")
        })
        .await;
    match verified {
        Ok(Verified::LoggedIn(redirect)) => redirect.into_response(),
        Ok(Verified::Wrong { attempts_left }) => {
            (StatusCode::OK, format!("wrong code, {attempts_left} left")).into_response()
        }
        Ok(Verified::Discarded(back)) => back.into_response(),
        Ok(Verified::Throttled(throttled)) => throttled.into_response(),
        Ok(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn sessions(auth: Auth<Account>) -> String {
    match auth.sessions().await {
        Ok(list) => list.len().to_string(),
        Err(error) => error.to_string(),
    }
}

struct Harness {
    browser: Client,
    clock: Clock,
    events: Arc<Mutex<Vec<LoginEvent<String>>>>,
    registry: SessionRegistry,
}

async fn harness(throttle: Throttle) -> Harness {
    let db = Db::new();
    let clock = Clock::manual(SystemTime::now());
    let store = MemoryStore::new();
    let registry = SessionRegistry::connect(store.clone()).await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let heard = events.clone();
    let login = Login::new(loader(db.clone()))
        .sessions(registry.clone())
        .two_step(TwoStep::new().throttle(throttle))
        .on_event(move |event: LoginEvent<String>| {
            let heard = heard.clone();
            async move { heard.lock().unwrap().push(event) }
        });
    let app = App {
        db: db.clone(),
        used_recovery: Arc::default(),
    };
    let router = Router::new()
        .route("/", get(index))
        .route(
            "/sudo",
            get(|FreshUser(user): FreshUser<Account>| async move { user.name.clone() }),
        )
        .route("/login", get(|| async { "the login form" }).post(begin))
        .route("/login/two-step", get(code_page).post(check_code))
        .route("/sessions", get(sessions))
        .route(
            "/password",
            post(
                |State(app): State<App>, CurrentUser(user): CurrentUser<Account>| async move {
                    app.db.put(Account {
                        hash: "a new hash".into(),
                        ..(*user).clone()
                    });
                    "changed"
                },
            ),
        )
        .with_state(app)
        .layer(login)
        .layer(Session::new(key()).clock(clock.clone()));
    Harness {
        browser: Client::new(router),
        clock,
        events,
        registry,
    }
}

/// The events heard so far, once the hook has had a moment.
async fn heard(h: &Harness) -> Vec<LoginEvent<String>> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.events.lock().unwrap().clone()
}

/// The password step for susan, from a page that wanted `/sudo`.
async fn password(browser: &mut Client, remember: &str) -> TestResponse {
    let res = browser
        .post_form(
            "/login?next=/sudo",
            &format!("user=user001&remember={remember}"),
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), Some("/login/two-step?next=/sudo"));
    res
}

async fn code(browser: &mut Client, code: &str) -> TestResponse {
    browser
        .post_form("/login/two-step?next=/sudo", &format!("code={code}"))
        .await
}

/// Back to the login page: `302` for a `GET`, `303` for a `POST`.
fn assert_back_to_login(res: &TestResponse, what: &str) {
    assert!(
        [StatusCode::FOUND, StatusCode::SEE_OTHER].contains(&res.status),
        "{what}: {} {}",
        res.status,
        res.body
    );
    assert_eq!(res.location(), Some("/login?next=/sudo"), "{what}");
}

#[tokio::test]
async fn a_pending_login_is_not_a_login() {
    let mut h = harness(Throttle::in_memory()).await;
    password(&mut h.browser, "off").await;
    for path in ["/", "/sudo"] {
        let res = h.browser.get(path).await;
        assert_eq!(res.status, StatusCode::FOUND, "{path} is anonymous");
    }
    let res = h.browser.get("/sessions").await;
    assert_eq!(res.body, "0", "anonymous: no sessions");
    let res = h.browser.get("/login/two-step?next=/sudo").await;
    assert_eq!(res.body, "code for susan, 5 tries left");
    assert!(h.registry.sessions(&"user001").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_right_code_makes_a_fresh_login_that_follows_next() {
    let mut h = harness(Throttle::in_memory()).await;
    password(&mut h.browser, "30").await;
    let res = code(&mut h.browser, CODE).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.location(), Some("/sudo"));
    assert!(h.browser.has_cookie("_remember"), "the remember-me choice");
    assert_eq!(h.browser.get("/sudo").await.body, "susan", "fresh");
    assert_eq!(h.browser.get("/sessions").await.body, "1");
    let events = heard(&h).await;
    let logged_in: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::LoggedIn(_)))
        .collect();
    assert_eq!(logged_in.len(), 1, "{events:?}");
    assert_eq!(
        logged_in[0].kind,
        EventKind::LoggedIn(LoginMethod::SecondFactor("totp"))
    );
    // The code page has nothing pending any more.
    let res = h.browser.get("/login/two-step?next=/sudo").await;
    assert_back_to_login(&res, "after the login");
    assert_eq!(
        h.browser.get("/").await.status,
        StatusCode::OK,
        "still logged in"
    );
}

#[tokio::test]
async fn without_a_pending_login_the_second_step_sends_back_to_the_login_page() {
    let mut h = harness(Throttle::in_memory()).await;
    let res = h.browser.get("/login/two-step?next=/sudo").await;
    assert_back_to_login(&res, "anonymous");
    let res = code(&mut h.browser, CODE).await;
    assert_back_to_login(&res, "a code without a password");
    // An API client gets a 401.
    let res = h
        .browser
        .get_accepting("/login/two-step?next=/sudo", "application/json")
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn wrong_codes_are_bounded_and_a_replayed_cookie_gets_no_new_tries() {
    let mut h = harness(Throttle::in_memory().username_limit(100)).await;
    password(&mut h.browser, "off").await;
    let before = h.browser.clone();
    for left in (1..=4).rev() {
        let res = code(&mut h.browser, "000000").await;
        assert_eq!(res.body, format!("wrong code, {left} left"));
    }
    // A copy of the cookie from before the wrong codes: the count is the server's.
    let mut replay = before.clone();
    let res = code(&mut replay, "999999").await;
    assert_back_to_login(&res, "the fifth wrong code, from an older cookie");
    let res = code(&mut h.browser, CODE).await;
    assert_back_to_login(&res, "a right code after the last try");
    assert_eq!(h.browser.get("/").await.status, StatusCode::FOUND);
    let failed = heard(&h)
        .await
        .iter()
        .filter(|e| e.kind == EventKind::LoginFailed)
        .count();
    assert_eq!(failed, 5, "each wrong code is a failed login");
}

#[tokio::test]
async fn starting_over_does_not_reset_the_throttle() {
    let mut h = harness(Throttle::in_memory().username_limit(6)).await;
    password(&mut h.browser, "off").await;
    for _ in 0..5 {
        code(&mut h.browser, "000000").await;
    }
    // Again from the password: a new pending login, the same count.
    password(&mut h.browser, "off").await;
    let res = code(&mut h.browser, "000000").await;
    assert_eq!(res.body, "wrong code, 4 left", "the sixth code is tried");
    let res = code(&mut h.browser, CODE).await;
    assert_eq!(
        res.status,
        StatusCode::TOO_MANY_REQUESTS,
        "past the throttle's limit, even the right code is not checked"
    );
}

#[tokio::test]
async fn a_pending_login_expires() {
    let mut h = harness(Throttle::in_memory()).await;
    password(&mut h.browser, "off").await;
    h.clock.advance(Duration::from_secs(5 * 60 + 1));
    let res = code(&mut h.browser, CODE).await;
    assert_back_to_login(&res, "5 minutes later");
    assert_eq!(h.browser.get("/").await.status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_pending_cookie_copied_or_replayed_after_the_login_is_refused() {
    let mut h = harness(Throttle::in_memory()).await;
    password(&mut h.browser, "off").await;
    let mut copy = h.browser.clone();
    let res = code(&mut h.browser, CODE).await;
    assert_eq!(res.location(), Some("/sudo"));
    // The same pending cookie, in another browser, with a recovery code.
    let res = code(&mut copy, RECOVERY).await;
    assert_back_to_login(&res, "a copy after the login");
    assert_eq!(copy.get("/").await.status, StatusCode::FOUND);
    assert!(
        !heard(&h)
            .await
            .iter()
            .any(|e| e.kind == EventKind::LoggedIn(LoginMethod::SecondFactor("recovery_code"))),
        "the copy made no login"
    );
}

#[tokio::test]
async fn two_copies_at_once_complete_one_login() {
    let mut h = harness(Throttle::in_memory()).await;
    password(&mut h.browser, "off").await;
    let mut copies: Vec<Client> = (0..8).map(|_| h.browser.clone()).collect();
    let results =
        futures_util::future::join_all(copies.iter_mut().map(|copy| code(copy, CODE))).await;
    let logged_in = results
        .iter()
        .filter(|res| res.location() == Some("/sudo"))
        .count();
    assert_eq!(logged_in, 1, "one completion of one pending login");
}

#[tokio::test]
async fn a_new_password_ends_the_pending_login() {
    let mut h = harness(Throttle::in_memory()).await;
    // david logged in elsewhere changes susan's hash: stand-in for a reset.
    password(&mut h.browser, "off").await;
    let mut other = h.browser.another_browser();
    log_in_plain(&mut other).await;
    other.post("/password").await;
    let res = code(&mut h.browser, CODE).await;
    assert_back_to_login(&res, "the password changed meanwhile");
}

/// Logs `browser` in as susan through both steps.
async fn log_in_plain(browser: &mut Client) {
    password(browser, "off").await;
    let res = code(browser, CODE).await;
    assert_eq!(res.location(), Some("/sudo"));
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let mut h = harness(Throttle::in_memory()).await;
    password(&mut h.browser, "off").await;
    let res = code(&mut h.browser, RECOVERY).await;
    assert_eq!(res.location(), Some("/sudo"));
    let mut again = h.browser.another_browser();
    password(&mut again, "off").await;
    let res = code(&mut again, RECOVERY).await;
    assert_eq!(res.body, "wrong code, 4 left", "a used recovery code");
}
