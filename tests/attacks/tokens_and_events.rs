//! Attacks on API token logins, the audit trail's events and permission
//! checks: a token used where only a password login (or a browser
//! session) should do, a refused cookie login falling back to a token,
//! bytes of the request reaching `WWW-Authenticate`, events heard for
//! things that did not happen (or lost for things that did), and
//! permission checks got round.
//!
//! The app: susan (`user001`, the admin) and david (`user002`), each with
//! an API token; revocable remember-me with no grace window (a replayed
//! cookie is theft at once); a session registry; and a hook that records
//! every event. Tests whose name starts with `finding_` show a weakness
//! and are ignored until it is fixed.

use crate::support::fixtures::*;
use crate::support::trace::rejections_of;
use crate::support::{key, Client, TestResponse};
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use axum_latch::api::bearer_token;
use axum_latch::events::{EventKind, LoginEvent, LoginMethod};
use axum_latch::registry::SessionRegistry;
use axum_latch::remember::{
    Redeemed, RememberError, RememberGrant, RememberTokens, RevocableRemember,
};
use axum_latch::stores::MemoryStore;
use axum_latch::{Allowed, Auth, CurrentUser, FreshUser, KeyRing, Login, Permission, Session};
use futures_util::future::BoxFuture;
use http::HeaderMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

const SUSAN_TOKEN: &str = "lt_susan-8Jq2vX0pLw4Rz7Tn1Ks5Hd9";
const DAVID_TOKEN: &str = "lt_david-3Mf6yB1cQe8Gu2Wa7Np0Vx4";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------

/// What the hook heard, in order.
#[derive(Clone, Default)]
struct Heard {
    events: Arc<Mutex<Vec<LoginEvent<String>>>>,
    arrived: Arc<Notify>,
}

impl Heard {
    fn push(&self, event: LoginEvent<String>) {
        self.events.lock().unwrap().push(event);
        self.arrived.notify_waiters();
    }

    /// Waits (up to `wait`) until `n` events have arrived; returns them
    /// all, or `Err` with those heard.
    async fn within(
        &self,
        n: usize,
        wait: Duration,
    ) -> Result<Vec<LoginEvent<String>>, Vec<LoginEvent<String>>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            {
                let events = self.events.lock().unwrap();
                if events.len() >= n {
                    return Ok(events.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.events.lock().unwrap().clone());
            }
        }
    }

    async fn wait_for(&self, n: usize) -> Vec<LoginEvent<String>> {
        self.within(n, Duration::from_secs(5))
            .await
            .unwrap_or_else(|heard| panic!("waited for {n} events, heard {heard:?}"))
    }

    /// Everything heard, after giving the hook a moment.
    async fn settled(&self) -> Vec<LoginEvent<String>> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.events.lock().unwrap().clone()
    }

    fn kinds_now(&self) -> Vec<EventKind> {
        let events = self.events.lock().unwrap();
        events.iter().map(|event| event.kind.clone()).collect()
    }

    fn clear(&self) {
        self.events.lock().unwrap().clear();
    }
}

/// susan is the admin.
fn is_admin(user: &Account) -> bool {
    user.id == "user001"
}

struct Admin;

impl Permission<Account> for Admin {
    async fn allows(user: &Account) -> bool {
        CHECKS.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        is_admin(user)
    }
}

/// How often `Admin` ran, over every test (only compared as a difference
/// within one test that holds `CHECKS_LOCK`).
static CHECKS: AtomicUsize = AtomicUsize::new(0);
static CHECKS_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the app counts: request-loader calls and async permission checks.
#[derive(Clone, Default)]
struct Counts {
    token_loads: Arc<AtomicUsize>,
    async_checks: Arc<AtomicUsize>,
}

/// The request loader: susan's and david's tokens, `broken` fails.
fn with_tokens<L: axum_latch::UserLoader<Account>>(
    login: Login<Account, L>,
    db: &Arc<Db>,
    counts: &Counts,
) -> Login<Account, L> {
    let users = db.clone();
    let loads = counts.token_loads.clone();
    login.request_loader(move |headers: HeaderMap| {
        let users = users.clone();
        loads.fetch_add(1, Ordering::SeqCst);
        async move {
            let Some(token) = bearer_token(&headers) else {
                return Ok(None);
            };
            match token {
                SUSAN_TOKEN => Ok(users.find("user001")),
                DAVID_TOKEN => Ok(users.find("user002")),
                "broken" => Err(std::io::Error::other("token table unreachable")),
                _ => Ok(None),
            }
        }
    })
}

/// `/me`: the user's name and this browser's login id.
async fn me(CurrentUser(user): CurrentUser<Account>, auth: Auth<Account>) -> String {
    format!("{} session={:?}", user.name, auth.session_id().await)
}

/// `/update`: `Auth::update_user` with the request's own user.
async fn update(CurrentUser(user): CurrentUser<Account>, auth: Auth<Account>) -> String {
    auth.update_user(&user).await.to_string()
}

#[derive(serde::Deserialize)]
struct Failed {
    user: Option<String>,
}

async fn failed(auth: Auth<Account>, axum::Form(form): axum::Form<Failed>) -> StatusCode {
    auth.report_failed_login(form.user);
    StatusCode::UNAUTHORIZED
}

/// Every route of the attacks, on `login`.
fn router<L: axum_latch::UserLoader<Account>>(
    login: Login<Account, L>,
    db: &Arc<Db>,
    counts: &Counts,
) -> Router {
    let async_checks = counts.async_checks.clone();
    let guarded = Router::new()
        .route("/admin", get(|| async { "the admin page" }))
        .route_layer(login.require(is_admin));
    let guarded_async = Router::new()
        .route("/admin-async", get(|| async { "the async admin page" }))
        .route_layer(login.require_async(move |user: Arc<Account>| {
            let checks = async_checks.clone();
            async move {
                checks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                is_admin(&user)
            }
        }));
    let fresh = Router::new()
        .route("/fresh-guarded", get(|| async { "sudo mode" }))
        .route_layer(login.fresh());
    let api = Router::new()
        .route("/users", get(|| async { "[]" }))
        .route_layer(login.require(is_admin).api());
    Router::new()
        .route("/", get(index))
        .route("/plain", get(|| async { "no user asked for" }))
        .route("/me", get(me))
        .route(
            "/many",
            get(
                |CurrentUser(a): CurrentUser<Account>,
                 b: Option<CurrentUser<Account>>,
                 auth: Auth<Account>| async move {
                    let c = auth.current_user().await.ok().flatten();
                    let same = b.is_some_and(|CurrentUser(b)| Arc::ptr_eq(&a, &b))
                        && c.is_some_and(|c| Arc::ptr_eq(&a, &c));
                    format!("{} same={same}", a.name)
                },
            ),
        )
        .route(
            "/sudo",
            get(|FreshUser(user): FreshUser<Account>| async move { user.name.clone() }),
        )
        .route(
            "/allowed",
            get(|Allowed(user, ..): Allowed<Account, Admin>| async move {
                format!("admin {}", user.name)
            }),
        )
        .route("/update", post(update))
        .route("/failed", post(failed))
        .route(
            "/end-others",
            post(|auth: Auth<Account>| async move {
                format!("{:?}", auth.end_other_sessions().await.ok())
            }),
        )
        .merge(guarded)
        .merge(guarded_async)
        .merge(fresh)
        .nest("/api", api)
        .merge(account_routes(log_in_handler))
        .with_state(db.clone())
        .layer(login)
        .layer(Session::new(key()))
}

/// The whole app: tokens, revocable remember-me, a registry and `hook`.
async fn app_with_hook(
    hook: impl Fn(LoginEvent<String>) -> BoxFuture<'static, ()> + Send + Sync + 'static,
) -> (Client, Arc<Db>, Counts) {
    let (router, db, counts) = router_with_hook(hook).await;
    (Client::new(router), db, counts)
}

/// [`app_with_hook`]'s router, for requests the kit's `Client` cannot
/// write (bytes that are not UTF-8).
async fn router_with_hook(
    hook: impl Fn(LoginEvent<String>) -> BoxFuture<'static, ()> + Send + Sync + 'static,
) -> (Router, Arc<Db>, Counts) {
    let db = Db::new();
    let counts = Counts::default();
    let store = MemoryStore::new();
    let registry = SessionRegistry::connect(store.clone()).await.unwrap();
    let login = Login::new(loader(db.clone()))
        .remember_tokens(RevocableRemember::new(store).grace(Duration::ZERO))
        .sessions(registry)
        .on_event(hook);
    let login = with_tokens(login, &db, &counts);
    (router(login, &db, &counts), db, counts)
}

/// The app with a hook that records into `heard`.
async fn app(heard: &Heard) -> (Client, Arc<Db>, Counts) {
    let recorder = heard.clone();
    app_with_hook(move |event| {
        let recorder = recorder.clone();
        Box::pin(async move { recorder.push(event) })
    })
    .await
}

/// A request from an API client (`Accept: application/json`), with an
/// `Authorization` header if given.
async fn call(client: &mut Client, method: Method, uri: &str, auth: Option<&str>) -> TestResponse {
    let mut headers = vec![("accept", "application/json")];
    headers.extend(auth.map(|value| ("authorization", value)));
    client.request(method, uri, &headers, Body::empty()).await
}

/// susan logged in through the form in a browser of her own; her session
/// cookie.
async fn susan_logged_in(client: &Client, remember: &str) -> (Client, String) {
    let mut browser = client.another_browser();
    log_in_through_the_form(&mut browser, "user001", remember, None).await;
    let cookie = browser.cookie("session").expect("a session cookie");
    (browser, cookie)
}

// ---------------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------------

/// Finding 1. The hook runs as `hook.handle(event)`, and only the future
/// it returns is inside `catch_unwind`: a hook whose closure panics before
/// it returns its future (`|e| { let id = e.user_id.unwrap(); async move
/// {..} }`) kills the hook's task, and every event queued behind the one
/// that panicked is lost with the task's channel, against "a hook that
/// panics loses that event only". An attacker who can make that one
/// event (a failed login for an unknown name has no user id) erases the
/// audit trail's backlog: here, david's login.
#[tokio::test]
async fn finding_1_a_hook_panicking_before_its_future_loses_only_that_event() {
    let heard = Heard::default();
    let gate = Arc::new(Semaphore::new(0));
    let first = Arc::new(AtomicBool::new(true));
    let recorder = heard.clone();
    let held = gate.clone();
    let (mut client, _db, _) = app_with_hook(move |event: LoginEvent<String>| {
        // The app's hook: its synchronous part assumes a user id.
        let user_id = event.user_id.clone().expect("every event names a user");
        let recorder = recorder.clone();
        let gate = held.clone();
        let is_first = first.swap(false, Ordering::SeqCst);
        Box::pin(async move {
            if is_first {
                // The hook is busy (a slow database): the next events queue.
                drop(gate.acquire().await);
            }
            let _ = user_id;
            recorder.push(event);
        })
    })
    .await;
    let mut susan = client.another_browser();
    log_in_through_the_form(&mut susan, "user001", "off", None).await; // heard, held
                                                                       // A failed login for a name that is no user's: no user id.
    let res = client.post_form("/failed", "").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let mut david = client.another_browser();
    log_in_through_the_form(&mut david, "user002", "off", None).await; // queued
    gate.add_permits(1);
    let heard = heard.within(2, Duration::from_secs(3)).await;
    let heard = heard.unwrap_or_else(|heard| {
        panic!("the panic lost the events queued behind it: heard only {heard:?}")
    });
    assert_eq!(heard[1].user_id.as_deref(), Some("user002"), "{heard:?}");
}

/// Finding 2. `Auth::logout_user` emits `LoggedOut` for whatever login the
/// session cookie names, without checking that latch would accept it: a
/// copy of a cookie whose session was ended (or whose user changed their
/// password, or was deleted) is "logged out" again on every replay. The
/// audit trail then shows the victim logging out, from the attacker's
/// device and address, as often as the attacker likes; a hook that mails
/// the user ("you logged out on Firefox") mails on the attacker's behalf.
#[tokio::test]
async fn finding_2_a_dead_login_replayed_to_logout_is_not_heard_as_a_logout() {
    let heard = Heard::default();
    let (client, db, _) = app(&heard).await;

    // An ended session: susan logs out; the attacker kept a copy.
    let (mut susan, copy) = susan_logged_in(&client, "off").await;
    assert_eq!(susan.post("/logout").await.status, StatusCode::SEE_OTHER);
    heard.wait_for(2).await;
    heard.clear();
    let mut attacker = client.another_browser();
    attacker.set_cookie("session", &copy);
    let (res, why) = rejections_of(attacker.get("/")).await;
    assert_eq!(res.status, StatusCode::FOUND, "the copy is refused");
    assert!(
        why.iter().any(|w| w.contains("ended on the server")),
        "{why:?}"
    );

    // A changed password: david's old cookie.
    let (mut david, old) = {
        let mut david = client.another_browser();
        log_in_through_the_form(&mut david, "user002", "off", None).await;
        let old = david.cookie("session").unwrap();
        (david, old)
    };
    let mut changed = db.find("user002").unwrap();
    changed.hash = "hash of a new password".into();
    db.put(changed);
    assert_eq!(david.get("/").await.status, StatusCode::FOUND, "logged out");
    heard.wait_for(1).await;
    heard.clear();

    for _ in 0..3 {
        attacker.set_cookie("session", &copy);
        attacker.post("/logout").await;
        attacker.set_cookie("session", &old);
        attacker.post("/logout").await;
    }
    let events = heard.settled().await;
    assert!(
        events.is_empty(),
        "logouts of logins latch refuses were heard: {events:?}"
    );
}

/// Finding 3. Every event shares one queue of 1,024, and events are
/// dropped once it is full, whatever their kind. The events anyone can
/// cause without a login (`LoginFailed` and `Throttled`, which the app
/// reports for each bad attempt; `FreshLoginRequired` for any logged-in
/// user or token) crowd out the ones the trail is for: an attacker sends
/// failed logins faster than the hook keeps up (a hook that mails or
/// calls a webhook keeps up with a few a second), then logs in with a
/// stolen password, and "new login" is never heard.
#[tokio::test]
async fn finding_3_a_flood_of_failed_logins_does_not_drop_a_login_event() {
    let heard = Heard::default();
    let gate = Arc::new(Semaphore::new(0));
    let recorder = heard.clone();
    let held = gate.clone();
    let (mut attacker, _db, _) = app_with_hook(move |event| {
        let recorder = recorder.clone();
        let gate = held.clone();
        Box::pin(async move {
            // A hook slower than the flood: each event waits for a permit.
            drop(gate.acquire().await);
            recorder.push(event);
        })
    })
    .await;
    for i in 0..1_100 {
        let res = attacker.post_form("/failed", &format!("user=u{i}")).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    }
    log_in_through_the_form(&mut attacker, "user001", "off", None).await;
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kinds = heard.kinds_now();
    assert!(
        kinds.len() > 500,
        "the hook ran meanwhile: {} events",
        kinds.len()
    );
    assert!(
        kinds.contains(&EventKind::LoggedIn(LoginMethod::Password)),
        "susan's login was dropped behind {} failed logins",
        kinds.len()
    );
}

// ---------------------------------------------------------------------------
// Token logins: stopped
// ---------------------------------------------------------------------------

/// A cookie login latch refuses (ended on the server, or made before the
/// user's password changed) makes the request anonymous: it does not fall
/// back to a bearer token sent with it (whoever's), nor to the remember
/// cookie, in that request.
#[tokio::test]
async fn a_refused_cookie_login_does_not_fall_back_to_a_token() {
    let heard = Heard::default();
    let (client, db, counts) = app(&heard).await;
    let (mut susan, copy) = susan_logged_in(&client, "off").await;
    susan.post("/logout").await;
    let mut attacker = client.another_browser();
    for token in [DAVID_TOKEN, SUSAN_TOKEN] {
        attacker.set_cookie("session", &copy);
        let auth = bearer(token);
        let (res, why) = rejections_of(call(&mut attacker, Method::GET, "/me", Some(&auth))).await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "{token}: {}",
            res.body
        );
        assert_eq!(res.json()["error"], "login_required");
        assert!(
            why.iter().any(|w| w.contains("ended on the server")),
            "{why:?}"
        );
    }
    assert_eq!(counts.token_loads.load(Ordering::SeqCst), 0, "never asked");

    let mut david = client.another_browser();
    log_in_through_the_form(&mut david, "user002", "off", None).await;
    let mut changed = db.find("user002").unwrap();
    changed.hash = "hash of a new password".into();
    db.put(changed);
    let auth = bearer(SUSAN_TOKEN);
    let (res, why) = rejections_of(call(&mut david, Method::GET, "/me", Some(&auth))).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert!(
        why.iter().any(|w| w.contains("auth_hash changed")),
        "{why:?}"
    );
    // The refused login left the session: the token works from now on.
    let res = call(&mut david, Method::GET, "/me", Some(&auth)).await;
    assert_eq!(res.body, "susan session=None");
}

/// A token login is never fresh, whatever the route asks for it, and
/// `Auth::update_user` (which keeps a login's freshness) refuses it: it
/// writes no session, so the token cannot be turned into a cookie login,
/// fresh or not. A logout with only a token is no one's logout.
#[tokio::test]
async fn a_token_gets_no_fresh_login_no_session_and_no_logout() {
    let heard = Heard::default();
    let (client, _db, _) = app(&heard).await;
    let mut api = client.another_browser();
    let auth = bearer(SUSAN_TOKEN);
    for path in ["/sudo", "/fresh-guarded"] {
        let res = call(&mut api, Method::GET, path, Some(&auth)).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{path}: {}", res.body);
        assert_eq!(res.json()["error"], "fresh_login_required", "{path}");
        assert_eq!(res.header("www-authenticate"), Some("Bearer"), "{path}");
    }
    let res = call(&mut api, Method::POST, "/update", Some(&auth)).await;
    assert_eq!(res.body, "false", "update_user refuses a token login");
    assert!(res.set_cookies().is_empty(), "{:?}", res.set_cookies());
    let res = call(&mut api, Method::POST, "/logout", Some(&auth)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.set_cookies().is_empty(), "{:?}", res.set_cookies());
    assert!(!api.has_cookie("session"), "no cookie login was made");
    let res = call(&mut api, Method::GET, "/sudo", Some(&auth)).await;
    assert_eq!(
        res.json()["error"],
        "fresh_login_required",
        "still not fresh"
    );
    let kinds: Vec<EventKind> = heard.settled().await.into_iter().map(|e| e.kind).collect();
    assert!(
        kinds
            .iter()
            .all(|kind| *kind == EventKind::FreshLoginRequired),
        "no login or logout heard for a token: {kinds:?}"
    );
}

/// A remember cookie is checked before any token: a stolen one is still
/// caught (every remembered login of its user revoked, and heard) when
/// the thief adds a token of their own, and a garbage one is deleted.
#[tokio::test]
async fn a_remember_cookie_is_judged_before_the_token_beside_it() {
    let heard = Heard::default();
    let (client, _db, _) = app(&heard).await;
    let (mut susan, _) = susan_logged_in(&client, "30").await;
    let original = susan.cookie("_remember").unwrap();
    susan.remove_cookie("session");
    assert_eq!(susan.get("/").await.status, StatusCode::OK, "restored");
    assert_eq!(susan.get("/").await.status, StatusCode::OK, "confirmed");
    heard.wait_for(3).await;
    heard.clear();

    let mut thief = client.another_browser();
    thief.set_cookie("_remember", &original);
    let auth = bearer(DAVID_TOKEN);
    let res = call(&mut thief, Method::GET, "/me", Some(&auth)).await;
    assert_eq!(res.body, "david session=None", "the thief's own token");
    let events = heard.wait_for(1).await;
    assert_eq!(events[0].kind, EventKind::RememberTheft);
    assert_eq!(events[0].user_id.as_deref(), Some("user001"));
    let removal = res.set_cookie("_remember").expect("the copy is deleted");
    assert!(crate::support::is_removal(&removal));
    // susan's own (rotated) cookie was revoked with it.
    susan.remove_cookie("session");
    assert_eq!(susan.get("/").await.status, StatusCode::FOUND);

    let mut other = client.another_browser();
    other.set_cookie("_remember", "garbage.garbage");
    let res = call(&mut other, Method::GET, "/me", Some(&auth)).await;
    assert_eq!(res.body, "david session=None");
    assert!(crate::support::is_removal(
        &res.set_cookie("_remember").unwrap()
    ));
}

/// The request loader runs only for a request without a cookie login,
/// only when something asks for the user, and once however many ask: an
/// anonymous flood costs one loader call per request that needs a user,
/// and a logged-in browser's `Authorization` header (or its copy) is
/// never looked at.
#[tokio::test]
async fn the_request_loader_runs_once_and_only_without_a_cookie_login() {
    let heard = Heard::default();
    let (client, _db, counts) = app(&heard).await;
    let loads = || counts.token_loads.load(Ordering::SeqCst);
    let mut api = client.another_browser();
    let auth = bearer(SUSAN_TOKEN);
    for _ in 0..5 {
        let res = call(&mut api, Method::GET, "/plain", Some(&auth)).await;
        assert_eq!(res.body, "no user asked for");
    }
    assert_eq!(loads(), 0, "nothing asked for the user");
    let res = call(&mut api, Method::GET, "/many", Some(&auth)).await;
    assert_eq!(res.body, "susan same=true");
    assert_eq!(loads(), 1, "three extractors, one loader call");

    let mut david = client.another_browser();
    log_in_through_the_form(&mut david, "user002", "off", None).await;
    let before = loads();
    let res = call(&mut david, Method::GET, "/many", Some(&auth)).await;
    assert_eq!(res.body, "david same=true", "the cookie login comes first");
    assert_eq!(loads(), before, "the token is never looked at");
}

/// Nothing of the request reaches `WWW-Authenticate`: quotes, commas,
/// obs-text, a tab, padding in the middle, a huge header, or two headers in an
/// `Authorization` header all get the one fixed challenge, and a `401`,
/// never a `5xx`.
#[tokio::test]
async fn the_challenge_carries_nothing_of_the_request() {
    let (router, _db, _) = router_with_hook(|_| Box::pin(async {})).await;
    let huge = format!("Bearer {}", "A".repeat(1 << 20));
    let values: Vec<Vec<u8>> = vec![
        br#"Bearer x", error_description="pwned"#.to_vec(),
        b"Bearer x\", realm=\"evil".to_vec(),
        b"Bearer \xff\xfe\x80".to_vec(),
        b"\xe2\x80\xa8Bearer abc".to_vec(),
        b"Bearer abc\tdef".to_vec(),
        format!("Bearer {SUSAN_TOKEN}, Bearer {DAVID_TOKEN}").into_bytes(),
        format!("Bearer {SUSAN_TOKEN}=x").into_bytes(),
        huge.into_bytes(),
    ];
    for value in &values {
        let shown = String::from_utf8_lossy(&value[..value.len().min(60)]).into_owned();
        let header = HeaderValue::from_bytes(value).expect("a header value");
        let request = Request::get("/me")
            .header("accept", "application/json")
            .header("authorization", header)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{shown}");
        let challenges: Vec<_> = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .collect();
        assert_eq!(challenges, [r#"Bearer error="invalid_token""#], "{shown}");
    }
    // Two headers, one of them good: refused, which one was meant unknown.
    let request = Request::get("/me")
        .header("accept", "application/json")
        .header("authorization", bearer(SUSAN_TOKEN))
        .header("authorization", "Bearer x\", realm=\"evil")
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    // A failing token table is a bare 500, not a word of its error.
    let request = Request::get("/me")
        .header("authorization", "Bearer broken")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = crate::support::attack::body_text(response).await;
    assert!(!body.contains("unreachable"), "{body}");
}

// ---------------------------------------------------------------------------
// Events: stopped
// ---------------------------------------------------------------------------

/// Remember-me tokens whose store is down: `issue` fails.
struct DownTokens;

impl RememberTokens for DownTokens {
    fn issue<'a>(&'a self, _: RememberGrant<'a>) -> BoxFuture<'a, Result<String, RememberError>> {
        Box::pin(async {
            Err(RememberError::Store(Box::new(std::io::Error::other(
                "down",
            ))))
        })
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

/// No `LoggedIn` for a `login_user` that failed (the remember-me store is
/// down: nothing changed), none for a remembered login the registry
/// refuses (its session was ended) and no rotation heard for it, and no
/// `LoggedOut` for an anonymous browser or a token.
#[tokio::test]
async fn no_event_is_heard_for_what_did_not_happen() {
    let heard = Heard::default();
    let recorder = heard.clone();
    let db = Db::new();
    let counts = Counts::default();
    let login = Login::new(loader(db.clone()))
        .remember_tokens(DownTokens)
        .on_event(move |event: LoginEvent<String>| {
            let recorder = recorder.clone();
            async move { recorder.push(event) }
        });
    let mut browser = Client::new(router(with_tokens(login, &db, &counts), &db, &counts));
    let form = "user=user001&remember=30";
    let res = browser.post_form("/login", form).await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        res.body
    );
    assert!(!browser.has_cookie("session"), "nothing changed");
    let res = browser.post("/logout").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let auth = bearer(SUSAN_TOKEN);
    call(&mut browser, Method::POST, "/logout", Some(&auth)).await;
    assert_eq!(heard.settled().await, [], "nothing happened");

    // A remembered login whose session was ended from another browser.
    let heard = Heard::default();
    let (client, _db, _) = app(&heard).await;
    let (mut laptop, _) = susan_logged_in(&client, "30").await;
    let (mut phone, _) = susan_logged_in(&client, "off").await;
    assert_eq!(phone.post("/end-others").await.body, "Some(true)");
    heard.wait_for(3).await;
    heard.clear();
    laptop.remove_cookie("session");
    let (res, why) = rejections_of(laptop.get("/")).await;
    assert_eq!(res.status, StatusCode::FOUND, "refused: {}", res.body);
    assert!(why.iter().any(|w| w.contains("ended")), "{why:?}");
    assert_eq!(heard.settled().await, [], "no login, no rotation heard");
}

/// No event carries a secret of the request: not the bearer token, not
/// the session or remember cookie, not the password hash, whichever path
/// made it (password, remembered, rotated, theft, logout, ended, fresh
/// login asked for, a token's request).
#[tokio::test]
async fn no_event_carries_a_token_a_cookie_or_a_password_hash() {
    let heard = Heard::default();
    let (client, _db, _) = app(&heard).await;
    let (mut susan, session) = susan_logged_in(&client, "30").await;
    let original = susan.cookie("_remember").unwrap();
    susan.remove_cookie("session");
    susan.get("/").await;
    susan.get("/sudo").await;
    let rotated = susan.cookie("_remember").unwrap();
    let restored = susan.cookie("session").unwrap();
    let mut thief = client.another_browser();
    thief.set_cookie("_remember", &original);
    thief.get("/").await;
    let mut api = client.another_browser();
    let auth = bearer(SUSAN_TOKEN);
    call(&mut api, Method::GET, "/sudo", Some(&auth)).await;
    let mut other = client.another_browser();
    log_in_through_the_form(&mut other, "user002", "off", Some(SUSAN_TOKEN)).await;
    other.post("/end-others").await;
    other.post("/logout").await;
    let events = heard.settled().await;
    assert!(events.len() >= 8, "{events:?}");
    let text = format!("{events:?}");
    let mut secrets = vec!["hash of hello", "hash of bye"];
    for cookie in [&session, &restored] {
        let signature = cookie.rsplit('.').next().unwrap();
        secrets.push(signature);
    }
    for token in [&original, &rotated] {
        let (selector, validator) = token.split_once('.').unwrap();
        secrets.extend([selector, validator]);
    }
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} in {text}");
    }
    // A client that puts its token in its User-Agent gets a device name
    // that is its first word: its own choice, not latch's leak.
    let device = events
        .iter()
        .rev()
        .find_map(|e| e.device.clone())
        .unwrap_or_default();
    assert!(device.len() <= 64, "{device}");
}

// ---------------------------------------------------------------------------
// Permissions: stopped
// ---------------------------------------------------------------------------

/// A token login is checked like a cookie login: a user the check refuses
/// gets `403` (JSON to an API client, never a redirect), whichever form
/// the check takes.
#[tokio::test]
async fn a_token_user_is_held_to_the_permission_checks() {
    let _lock = CHECKS_LOCK.lock().await;
    let heard = Heard::default();
    let (client, _db, counts) = app(&heard).await;
    let mut api = client.another_browser();
    let david = bearer(DAVID_TOKEN);
    for path in ["/admin", "/admin-async", "/allowed", "/api/users"] {
        let res = call(&mut api, Method::GET, path, Some(&david)).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}: {}", res.body);
        assert!(res.location().is_none(), "{path}");
        assert_eq!(res.json(), serde_json::json!({ "error": "forbidden" }));
    }
    let susan = bearer(SUSAN_TOKEN);
    for (path, body) in [
        ("/admin", "the admin page"),
        ("/admin-async", "the async admin page"),
        ("/allowed", "admin susan"),
        ("/api/users", "[]"),
    ] {
        let res = call(&mut api, Method::GET, path, Some(&susan)).await;
        assert_eq!(res.body, body, "{path}");
    }
    assert_eq!(counts.async_checks.load(Ordering::SeqCst), 2);
}

/// A user loader or request loader that fails is a `500` before any
/// permission check runs (never a `403` the app would take for "not
/// allowed", never a pass), and a refused cookie login on a guarded page
/// is sent to the login page, which is not behind the guard: no loop.
#[tokio::test]
async fn a_failing_loader_is_a_500_and_no_check_runs() {
    let _lock = CHECKS_LOCK.lock().await;
    let heard = Heard::default();
    let (client, db, counts) = app(&heard).await;
    let (mut susan, _) = susan_logged_in(&client, "off").await;
    db.fail.store(true, Ordering::SeqCst);
    let before = CHECKS.load(Ordering::SeqCst);
    for path in ["/admin", "/admin-async", "/allowed", "/api/users"] {
        let res = susan.get(path).await;
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(!res.body.contains(LOADER_ERROR), "{path}: {}", res.body);
    }
    db.fail.store(false, Ordering::SeqCst);
    let mut api = client.another_browser();
    for path in ["/admin", "/admin-async", "/allowed", "/api/users"] {
        let res = call(&mut api, Method::GET, path, Some("Bearer broken")).await;
        assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(!res.body.contains("unreachable"), "{path}: {}", res.body);
    }
    assert_eq!(counts.async_checks.load(Ordering::SeqCst), 0);
    assert_eq!(CHECKS.load(Ordering::SeqCst), before, "Admin never ran");

    // The session ended: the guarded page sends the browser to log in.
    let mut copy = susan.another_browser();
    copy.set_cookie("session", &susan.cookie("session").unwrap());
    susan.post("/logout").await;
    let res = copy.get("/admin").await;
    assert_eq!(res.status, StatusCode::FOUND);
    assert_eq!(res.location(), Some("/login?next=/admin"));
    assert_eq!(copy.get("/login").await.status, StatusCode::OK, "no loop");
}
