//! Revocable remember-me over HTTP: `RevocableRemember` with the in-memory
//! store, driven in process through the cookie-keeping test client.
//!
//! Covered: the `selector.validator` cookie and its attributes, restoring a
//! login after a browser restart (not fresh) with rotation, revocation on
//! logout, theft detection (a replayed rotated validator, once the browser
//! confirmed its successor, revokes every remembered login of the user,
//! with a `warn` event that does not leak the cookie), a lost response that
//! is not theft, the grace window for parallel requests, `update_user` and a
//! changed `auth_hash`, remembered devices, bad cookies that never reach the
//! store, and a store that is down.
//!
//! "Browser restart" is modelled by removing the session cookie from the
//! client's jar: only the `_remember` cookie survives. The browser showing
//! that it holds a rotated cookie (what its next request confirms) is done
//! here through `RevocableRemember::confirm` on the app's store.

use crate::support;
use crate::support::fixtures::{
    account_routes, index, loader, log_in_through_the_form, Account, Db, LoginForm,
};

use axum::body::Body;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_latch::clock::Clock;
use axum_latch::remember::{RememberStore, RevocableRemember, Rotation, StoreError, StoredToken};
use axum_latch::session::SameSite;
use axum_latch::stores::MemoryStore;
use axum_latch::{Auth, AuthError, Login, Session, UserLoader};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cookie::Cookie;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use support::jwt;
use support::trace;
use support::{is_removal, key, Client, TestResponse};

// ---------------------------------------------------------------------------
// The app under test
// ---------------------------------------------------------------------------

const REMEMBER: &str = "_remember";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// A grace window longer than any test.
const LONG_GRACE: Duration = Duration::from_secs(3600);

/// Logs in; when the remember store fails, answers 503 and says who the
/// request is logged in as after the failed `login_user`.
async fn login_handler(
    State(db): State<Arc<Db>>,
    auth: Auth<Account>,
    Form(form): Form<LoginForm>,
) -> Response {
    let (user, remember) = match db.check(&form) {
        Ok(checked) => checked,
        Err(refused) => return refused,
    };
    match auth.login_user(&user, remember).await {
        Ok(redirect) => redirect.into_response(),
        Err(AuthError::Remember(error)) => {
            let now = match auth.current_user().await {
                Ok(Some(user)) => user.name.clone(),
                Ok(None) => "anonymous".to_owned(),
                Err(_) => "loader failed".to_owned(),
            };
            let body = format!("not remembered ({error}); logged in as: {now}");
            (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
        }
        Err(other) => other.into_response(),
    }
}

async fn devices(auth: Auth<Account>) -> Result<Json<Value>, AuthError> {
    let devices = auth.remembered_devices().await?;
    let list = devices
        .into_iter()
        .map(|d| {
            json!({
                "id": d.id,
                "device": d.device,
                "current": d.current,
                "created_at": d.created_at,
                "last_used_at": d.last_used_at,
                "expires_at": d.expires_at,
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

async fn forget(auth: Auth<Account>, Path(id): Path<String>) -> Result<Json<bool>, AuthError> {
    Ok(Json(auth.forget_device(&id).await?))
}

fn routes(db: &Arc<Db>, login: &Login<Account, impl UserLoader<Account>>) -> Router {
    let fresh_only = Router::new()
        .route("/sudo", get(|| async { "sudo" }))
        .route_layer(login.fresh());
    Router::new()
        .route("/", get(index))
        .merge(account_routes(login_handler))
        .route("/devices", get(devices))
        .route("/forget/{id}", post(forget))
        .merge(fresh_only)
        .with_state(db.clone())
}

/// The app with revocable remember-me tokens kept in `store`.
fn app_with<S: RememberStore>(db: &Arc<Db>, store: S, grace: Duration) -> Router {
    app_on(db, store, grace, Clock::system())
}

/// [`app_with`], on `clock` (the session's, which remember-me reads too).
fn app_on<S: RememberStore>(db: &Arc<Db>, store: S, grace: Duration, clock: Clock) -> Router {
    let tokens = RevocableRemember::new(store).grace(grace);
    let login = Login::new(loader(db.clone())).remember_tokens(tokens);
    routes(db, &login)
        .layer(login)
        .layer(Session::new(key()).clock(clock))
}

/// The app on a `MemoryStore`, and the store (clones share their tokens).
fn app(grace: Duration) -> (Client, Arc<Db>, MemoryStore) {
    let (client, db, store, _) = app_with_a_clock(grace, Clock::system());
    (client, db, store)
}

/// [`app`] on a clock the test moves (clones share the time), and the clock.
fn app_on_a_manual_clock(grace: Duration) -> (Client, Arc<Db>, MemoryStore, Clock) {
    app_with_a_clock(grace, Clock::manual(SystemTime::now()))
}

fn app_with_a_clock(grace: Duration, clock: Clock) -> (Client, Arc<Db>, MemoryStore, Clock) {
    let db = Db::new();
    let store = MemoryStore::new();
    let client = Client::new(app_on(&db, store.clone(), grace, clock.clone()));
    (client, db, store, clock)
}

// ---------------------------------------------------------------------------
// A store that counts lookups and can be taken down
// ---------------------------------------------------------------------------

/// Delegates to a `MemoryStore`; counts `find` calls; while `down`, every
/// method fails with `StoreError::new("down")`; yields before each call.
#[derive(Clone, Default)]
struct TestStore {
    memory: MemoryStore,
    finds: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl TestStore {
    /// Yields to the runtime first, as a networked store would, so that
    /// concurrent requests interleave between `find` and `rotate`.
    async fn up(&self) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::new("down"))
        } else {
            Ok(())
        }
    }

    fn finds(&self) -> usize {
        self.finds.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl RememberStore for TestStore {
    async fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
        self.up().await?;
        self.memory.insert(token).await
    }

    async fn find(&self, selector: &str) -> Result<Option<StoredToken>, StoreError> {
        self.finds.fetch_add(1, Ordering::SeqCst);
        self.up().await?;
        self.memory.find(selector).await
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        self.up().await?;
        self.memory.rotate(rotation).await
    }

    async fn confirm(&self, selector: &str, current: &[u8; 32]) -> Result<bool, StoreError> {
        self.up().await?;
        self.memory.confirm(selector, current).await
    }

    async fn revoke(&self, selector: &str) -> Result<bool, StoreError> {
        self.up().await?;
        self.memory.revoke(selector).await
    }

    async fn revoke_series(&self, user_id: &str, series: &str) -> Result<bool, StoreError> {
        self.up().await?;
        self.memory.revoke_series(user_id, series).await
    }

    async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.up().await?;
        self.memory.revoke_user(user_id).await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<StoredToken>, StoreError> {
        self.up().await?;
        self.memory.list(user_id).await
    }

    async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        self.up().await?;
        self.memory.purge_expired(now).await
    }
}

fn capture_events() -> (trace::Captured, trace::CaptureGuard) {
    trace::capture()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Logs `client` in as `user` through the form, with a `User-Agent`.
async fn log_in_as(client: &mut Client, user: &str, remember: &str, ua: &str) -> TestResponse {
    log_in_through_the_form(client, user, remember, Some(ua)).await
}

/// Logs in with remember-me on for `days`; returns the remember cookie value.
async fn log_in_remembered(client: &mut Client, user: &str, days: u32) -> String {
    let res = log_in_as(client, user, &days.to_string(), FIREFOX).await;
    let cookie = res
        .set_cookie(REMEMBER)
        .expect("a login with remember-me sets _remember");
    assert!(!is_removal(&cookie), "a new remember cookie: {cookie}");
    cookie.value().to_owned()
}

/// A browser restart: the session cookie is gone, `_remember` stays.
fn restart(client: &mut Client) {
    client.remove_cookie("session");
}

/// A new browser on the same app holding only this remember cookie.
fn browser_with(client: &Client, remember: &str) -> Client {
    let mut other = client.another_browser();
    other.set_cookie(REMEMBER, remember);
    other
}

/// Splits a `selector.validator` cookie value.
fn split(value: &str) -> (&str, &str) {
    value
        .split_once('.')
        .unwrap_or_else(|| panic!("a selector.validator token: {value:?}"))
}

/// The user's tokens, as the store keeps them (user ids are JSON text).
async fn tokens_of<S: RememberStore>(store: &S, user: &str) -> Vec<StoredToken> {
    store
        .list(&json!(user).to_string())
        .await
        .expect("the store answers")
}

/// The stored token of a cookie, looked up without going through latch.
async fn stored<S: RememberStore>(store: &S, cookie: &str) -> Option<StoredToken> {
    store
        .find(split(cookie).0)
        .await
        .expect("the store answers")
}

fn assert_anonymous(res: &TestResponse, uri: &str, what: &str) {
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "{what}: anonymous, sent to log in: {} {:?}",
        res.body,
        res.set_cookies()
    );
    assert_eq!(
        res.location(),
        Some(format!("/login?next={uri}").as_str()),
        "{what}: redirected to the login page"
    );
}

fn assert_logged_in(res: &TestResponse, name: &str, what: &str) {
    assert_eq!(res.status, StatusCode::OK, "{what}: {}", res.body);
    assert_eq!(res.body, format!("Hello, {name}!"), "{what}");
}

/// The response's `_remember` cookie, which must be a deletion.
fn assert_remember_deleted(res: &TestResponse, what: &str) {
    let cookie = res
        .set_cookie(REMEMBER)
        .unwrap_or_else(|| panic!("{what}: _remember is deleted: {:?}", res.set_cookies()));
    assert!(is_removal(&cookie), "{what}: a deletion: {cookie}");
}

/// The response's new (not deleted) `_remember` cookie.
fn new_remember(res: &TestResponse, what: &str) -> Cookie<'static> {
    let cookie = res.set_cookie(REMEMBER).unwrap_or_else(|| {
        panic!(
            "{what}: a new _remember cookie is set: {:?}",
            res.set_cookies()
        )
    });
    assert!(!is_removal(&cookie), "{what}: not a deletion: {cookie}");
    cookie
}

fn assert_good_token(value: &str) {
    assert_eq!(value.len(), 45, "selector.validator is 45 chars: {value:?}");
    let (selector, validator) = split(value);
    for part in [selector, validator] {
        assert_eq!(part.len(), 22, "{value:?}");
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("{part:?} is base64url: {e}"));
        assert_eq!(bytes.len(), 16, "{part:?} holds 16 bytes");
    }
}

fn assert_remember_attributes(cookie: &Cookie<'_>, days: i64) {
    assert_eq!(cookie.http_only(), Some(true), "HttpOnly: {cookie}");
    assert_eq!(
        cookie.same_site(),
        Some(SameSite::Lax),
        "SameSite: {cookie}"
    );
    assert_eq!(
        cookie.max_age(),
        Some(cookie::time::Duration::days(days)),
        "Max-Age of {days} days: {cookie}"
    );
    assert_eq!(cookie.path(), Some("/"), "Path=/: {cookie}");
}

/// The browser shows that it holds `cookie`, a rotated remember cookie:
/// confirmed in `store` with the cookie's tag (base64url of the first 16
/// bytes of the SHA-256 of its validator), as after the browser's next
/// request.
async fn confirm(store: &MemoryStore, cookie: &str) {
    let validator = URL_SAFE_NO_PAD
        .decode(split(cookie).1)
        .expect("a base64url validator");
    let tag = URL_SAFE_NO_PAD.encode(&Sha256::digest(validator)[..16]);
    let confirmed = RevocableRemember::new(store.clone())
        .confirm(cookie, &tag)
        .await
        .expect("the store answers");
    assert!(confirmed, "the current cookie is confirmed");
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Milliseconds since the Unix epoch at `time`.
fn millis(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

fn unknown_token() -> String {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        // Well-formed, and unknown to the store.
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&bytes[..16]),
        URL_SAFE_NO_PAD.encode(&bytes[16..])
    )
}

// ---------------------------------------------------------------------------
// 1. The cookie, and a restored login
// ---------------------------------------------------------------------------

#[tokio::test]
async fn remember_cookie_is_a_selector_validator_and_restores_a_login_that_is_not_fresh() {
    let (mut client, _db, store) = app(LONG_GRACE);
    let res = log_in_as(&mut client, "user001", "7", FIREFOX).await;
    let cookie = new_remember(&res, "login with remember for 7 days");
    assert_good_token(cookie.value());
    assert_remember_attributes(&cookie, 7);
    let original = cookie.value().to_owned();
    let (selector, validator) = split(&original);

    let kept = tokens_of(&store, "user001").await;
    assert_eq!(kept.len(), 1, "one token stored");
    assert_eq!(kept[0].selector, selector, "stored under the selector");
    assert_eq!(kept[0].days, 7);
    assert!(
        !format!("{:?}", kept[0]).contains(validator),
        "the store keeps no plain validator"
    );

    // The fresh login may use the fresh-only route.
    let res = client.get("/sudo").await;
    assert_eq!(res.status, StatusCode::OK, "a password login is fresh");

    // Browser restart: only the remember cookie is left.
    restart(&mut client);
    assert!(!client.has_cookie("session"));
    let res = client.get("/").await;
    assert_logged_in(&res, "susan", "restored from the remember cookie");
    let rotated = new_remember(&res, "a restored login rotates the remember cookie");
    assert_good_token(rotated.value());
    assert_remember_attributes(&rotated, 7);
    let (new_selector, new_validator) = split(rotated.value());
    assert_eq!(new_selector, selector, "the selector stays");
    assert_ne!(new_validator, validator, "the validator is new");
    let session = res
        .set_cookie("session")
        .expect("the restored login gets a session cookie");
    assert!(!is_removal(&session));
    assert_eq!(client.cookie(REMEMBER).as_deref(), Some(rotated.value()));

    // Not fresh: the fresh-only route sends it to log in again.
    let res = client.get("/sudo").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "a restored login is not fresh: {}",
        res.body
    );
    assert_eq!(res.location(), Some("/login?next=/sudo"));
    // The session cookie carries the login from now on.
    assert_logged_in(&client.get("/").await, "susan", "the session");

    // Another restart: the rotated cookie works, and rotates again.
    restart(&mut client);
    let res = client.get("/").await;
    assert_logged_in(&res, "susan", "restored with the rotated cookie");
    let again = new_remember(&res, "rotated again");
    assert_eq!(split(again.value()).0, selector);
    assert_ne!(split(again.value()).1, new_validator);
    assert_eq!(store.len(), 1, "still one token: rotation keeps the series");
}

// ---------------------------------------------------------------------------
// 2. Logout revokes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_copy_of_the_cookie_stops_working_after_logout() {
    let (mut client, _db, store) = app(LONG_GRACE);
    let remember = log_in_remembered(&mut client, "user001", 30).await;
    let mut copy = browser_with(&client, &remember);
    assert!(stored(&store, &remember).await.is_some(), "stored");

    let res = client.post("/logout").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_remember_deleted(&res, "logout");
    assert!(
        stored(&store, &remember).await.is_none(),
        "logout removes the token from the store"
    );
    assert!(store.is_empty(), "nothing left in the store");

    let res = copy.get("/").await;
    assert_anonymous(&res, "/", "a copy of the cookie after logout");
    assert_remember_deleted(&res, "the dead copy");
    assert!(!copy.has_cookie("session"));
}

// ---------------------------------------------------------------------------
// 3. Theft
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_replayed_rotated_cookie_revokes_every_remembered_login_of_the_user() {
    let (mut a, _db, store) = app(Duration::ZERO);
    let original = log_in_remembered(&mut a, "user001", 30).await;
    let mut susan_phone = a.another_browser();
    let phone = log_in_remembered(&mut susan_phone, "user001", 30).await;
    let mut david = a.another_browser();
    log_in_remembered(&mut david, "user002", 30).await;
    // An old copy of A's cookie, taken before it rotates.
    let mut b = browser_with(&a, &original);

    // A restarts and is restored: its cookie rotates.
    restart(&mut a);
    let res = a.get("/").await;
    assert_logged_in(&res, "susan", "A restored");
    let newest = new_remember(&res, "A's cookie rotates").value().to_owned();
    // A's next request shows it holds the new cookie. With a zero grace
    // window, the replaced validator is then a copy's.
    confirm(&store, &newest).await;

    let (captured, guard) = capture_events();
    let res = b.get("/").await;
    drop(guard);
    assert_anonymous(&res, "/", "the replayed old cookie");
    assert_remember_deleted(&res, "the replayed old cookie");
    assert!(!b.has_cookie("session"), "the thief gets no session");

    assert!(
        tokens_of(&store, "user001").await.is_empty(),
        "every remember token of the user is revoked"
    );
    assert_eq!(
        tokens_of(&store, "user002").await.len(),
        1,
        "another user's token is untouched"
    );

    // A's newest cookie no longer restores a login.
    restart(&mut a);
    let res = a.get("/").await;
    assert_anonymous(&res, "/", "A's newest cookie after the theft");
    assert_remember_deleted(&res, "A's newest cookie");
    // Nor does the user's other device.
    restart(&mut susan_phone);
    let res = susan_phone.get("/").await;
    assert_anonymous(&res, "/", "the user's other device after the theft");
    assert_remember_deleted(&res, "the other device's cookie");
    assert!(stored(&store, &phone).await.is_none());
    // Another user's device still restores.
    restart(&mut david);
    let res = david.get("/").await;
    assert_logged_in(&res, "david", "another user's device");
    new_remember(&res, "another user's device rotates");

    // The warn event: target latch, the user id, not the cookie.
    let events = captured.events();
    trace::one_latch_warning(&events, "user001");
    let (selector, old_validator) = split(&original);
    let (_, new_validator) = split(&newest);
    for event in &events {
        let text = event.text();
        for secret in [
            original.as_str(),
            newest.as_str(),
            old_validator,
            new_validator,
            selector,
        ] {
            assert!(
                !text.contains(secret),
                "an event leaks the cookie ({secret}): {text}"
            );
        }
    }
}

/// `Duration::ZERO` "turns the window off": the replaced validator, replayed
/// at the very moment of its rotation (and its successor's confirmation),
/// is theft already.
#[tokio::test]
async fn zero_grace_refuses_the_replaced_validator_at_once() {
    let (mut a, _db, store, clock) = app_on_a_manual_clock(Duration::ZERO);
    let original = log_in_remembered(&mut a, "user001", 30).await;
    let mut b = browser_with(&a, &original);

    // Rotation, confirmation and replay at one instant: the clock stands.
    restart(&mut a);
    let res = a.get("/").await;
    assert_logged_in(&res, "susan", "A restored");
    let newest = new_remember(&res, "A's cookie rotates").value().to_owned();
    confirm(&store, &newest).await;
    let rotated_at_ms = stored(&store, &newest).await.and_then(|t| t.rotated_at_ms);
    assert_eq!(
        rotated_at_ms,
        Some(millis(clock.now())),
        "rotated at the clock's time"
    );
    let res = b.get("/").await;
    assert_anonymous(
        &res,
        "/",
        "a validator replayed at the moment of its rotation, with a zero grace window",
    );
    assert!(
        tokens_of(&store, "user001").await.is_empty(),
        "theft revokes the user's tokens"
    );
}

// ---------------------------------------------------------------------------
// 4. Grace
// ---------------------------------------------------------------------------

#[tokio::test]
async fn within_the_grace_window_parallel_requests_with_the_same_cookie_are_logged_in() {
    let (mut a, _db, store) = app(LONG_GRACE);
    let original = log_in_remembered(&mut a, "user001", 30).await;
    let (selector, _) = split(&original);

    // After a restart, two requests carry the same (original) cookie.
    let mut first = browser_with(&a, &original);
    let mut second = browser_with(&a, &original);
    let res = first.get("/").await;
    assert_logged_in(&res, "susan", "the first request");
    let rotated = new_remember(&res, "the first request rotates");
    assert_eq!(split(rotated.value()).0, selector);
    assert!(res.set_cookie("session").is_some());

    let res = second.get("/").await;
    assert_logged_in(&res, "susan", "the second request, within the grace");
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "only the first sets a new remember cookie: {:?}",
        res.set_cookies()
    );
    assert!(
        res.set_cookie("session").is_some(),
        "the second is logged in too: a session cookie"
    );
    assert_eq!(store.len(), 1, "no theft: the token is still stored");

    // Truly concurrent: exactly one of the two rotates.
    let mut b1 = browser_with(&a, rotated.value());
    let mut b2 = browser_with(&a, rotated.value());
    let (r1, r2) = tokio::join!(b1.get("/"), b2.get("/"));
    assert_logged_in(&r1, "susan", "parallel request 1");
    assert_logged_in(&r2, "susan", "parallel request 2");
    let set = [&r1, &r2]
        .iter()
        .filter(|r| r.set_cookie(REMEMBER).is_some())
        .count();
    assert_eq!(set, 1, "exactly one of the parallel requests rotates");
    assert_eq!(tokens_of(&store, "user001").await.len(), 1);
}

// ---------------------------------------------------------------------------
// 5. update_user
// ---------------------------------------------------------------------------

#[tokio::test]
async fn update_user_keeps_this_session_and_revokes_every_remember_token_of_the_user() {
    let (mut laptop, _db, store) = app(LONG_GRACE);
    let laptop_remember = log_in_remembered(&mut laptop, "user001", 30).await;
    let mut phone = laptop.another_browser();
    let phone_remember = log_in_remembered(&mut phone, "user001", 30).await;
    let mut david = laptop.another_browser();
    log_in_remembered(&mut david, "user002", 30).await;
    assert_eq!(tokens_of(&store, "user001").await.len(), 2);

    let res = laptop.post_form("/password", "hash=hash+of+new").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "password changed");
    assert_remember_deleted(&res, "update_user deletes this browser's cookie");
    assert!(
        tokens_of(&store, "user001").await.is_empty(),
        "every remember token of the user is revoked"
    );
    assert_eq!(
        tokens_of(&store, "user002").await.len(),
        1,
        "other users keep theirs"
    );

    // This session is kept, fresh as it was.
    assert_logged_in(&laptop.get("/").await, "susan", "the session is kept");
    assert_eq!(laptop.get("/sudo").await.status, StatusCode::OK);

    // The other browser's remember cookie no longer logs in.
    restart(&mut phone);
    let res = phone.get("/").await;
    assert_anonymous(&res, "/", "the phone's remember cookie");
    assert_remember_deleted(&res, "the phone's dead cookie");
    // Nor does the laptop's old cookie, anywhere.
    for (what, cookie) in [("laptop", &laptop_remember), ("phone", &phone_remember)] {
        let mut other = browser_with(&laptop, cookie);
        assert_anonymous(&other.get("/").await, "/", what);
    }
}

// ---------------------------------------------------------------------------
// 6. A changed auth_hash behind the app's back
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_whose_fingerprint_no_longer_matches_is_deleted_and_removed() {
    let (mut client, db, store) = app(LONG_GRACE);
    let remember = log_in_remembered(&mut client, "user001", 30).await;
    assert!(stored(&store, &remember).await.is_some());

    // The password changes in the database, not through the app.
    let mut susan = db.find("user001").unwrap();
    susan.hash = "hash of a password set by an admin".to_owned();
    db.put(susan);

    restart(&mut client);
    let res = client.get("/").await;
    assert_anonymous(&res, "/", "a token made for the old auth_hash");
    assert_remember_deleted(&res, "the dead token's cookie");
    assert!(!client.has_cookie(REMEMBER));
    assert!(
        stored(&store, &remember).await.is_none(),
        "the token is removed from the store"
    );
    assert!(store.is_empty());
}

// ---------------------------------------------------------------------------
// 7. Remembered devices
// ---------------------------------------------------------------------------

async fn device_list(client: &mut Client, ua: &str) -> Vec<Value> {
    let res = client
        .request(
            Method::GET,
            "/devices",
            &[("user-agent", ua)],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.json().as_array().expect("a JSON list").clone()
}

async fn forget_device(client: &mut Client, id: &str) -> TestResponse {
    let res = client.post(&format!("/forget/{id}")).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res
}

#[tokio::test]
async fn remembered_devices_are_listed_and_can_be_forgotten() {
    let (mut firefox, _db, store) = app(LONG_GRACE);
    let before = jwt::now();
    let res = log_in_as(&mut firefox, "user001", "on", FIREFOX).await;
    new_remember(&res, "firefox");
    let mut chrome = firefox.another_browser();
    let res = log_in_as(&mut chrome, "user001", "on", CHROME_WINDOWS).await;
    new_remember(&res, "chrome");
    let mut david = firefox.another_browser();
    let res = log_in_as(&mut david, "user002", "on", CHROME_WINDOWS).await;
    new_remember(&res, "david");
    let after = jwt::now();

    let list = device_list(&mut firefox, FIREFOX).await;
    assert_eq!(list.len(), 2, "the user's two devices: {list:#?}");
    let this = list
        .iter()
        .find(|d| d["current"] == true)
        .unwrap_or_else(|| panic!("the current device is marked: {list:#?}"));
    assert_eq!(this["device"], "Firefox on Linux");
    let other = list
        .iter()
        .find(|d| d["current"] == false)
        .unwrap_or_else(|| panic!("one other device: {list:#?}"));
    assert_eq!(other["device"], "Chrome on Windows");
    for device in &list {
        let created = device["created_at"].as_u64().unwrap();
        assert!((before..=after).contains(&created), "{device}");
        assert_eq!(
            device["expires_at"].as_u64().unwrap(),
            device["last_used_at"].as_u64().unwrap() + 30 * 86400,
            "30 days: {device}"
        );
        let id = device["id"].as_str().unwrap();
        assert!(!id.is_empty());
        for token in store.list("\"user001\"").await.unwrap() {
            assert_ne!(id, token.selector, "the id is not the selector");
        }
    }
    let this_id = this["id"].as_str().unwrap().to_owned();
    let other_id = other["id"].as_str().unwrap().to_owned();
    assert_ne!(this_id, other_id);

    // From the other browser, the marks are the other way round.
    let seen_from_chrome = device_list(&mut chrome, CHROME_WINDOWS).await;
    let current: Vec<&Value> = seen_from_chrome
        .iter()
        .filter(|d| d["current"] == true)
        .collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], other_id.as_str());

    // Another user's device id: false, nothing revoked.
    let david_list = device_list(&mut david, CHROME_WINDOWS).await;
    assert_eq!(david_list.len(), 1);
    let david_id = david_list[0]["id"].as_str().unwrap().to_owned();
    let res = forget_device(&mut firefox, &david_id).await;
    assert_eq!(res.json(), json!(false), "another user's device");
    assert!(res.set_cookie(REMEMBER).is_none());
    assert_eq!(tokens_of(&store, "user002").await.len(), 1);
    assert_eq!(tokens_of(&store, "user001").await.len(), 2);
    let res = forget_device(&mut firefox, "no-such-device").await;
    assert_eq!(res.json(), json!(false), "an unknown id");
    assert_eq!(store.len(), 3, "nothing revoked");

    // Forget the other device: that browser is anonymous after a restart.
    let res = forget_device(&mut firefox, &other_id).await;
    assert_eq!(res.json(), json!(true), "the other device is forgotten");
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "this browser's cookie stays: {:?}",
        res.set_cookies()
    );
    assert!(firefox.has_cookie(REMEMBER));
    restart(&mut chrome);
    let res = chrome.get("/").await;
    assert_anonymous(&res, "/", "the forgotten device");
    let list = device_list(&mut firefox, FIREFOX).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["id"], this_id.as_str());

    // Forget this device: its cookie is deleted; the session stays.
    let res = forget_device(&mut firefox, &this_id).await;
    assert_eq!(res.json(), json!(true));
    assert_remember_deleted(&res, "forgetting the current device");
    assert!(!firefox.has_cookie(REMEMBER));
    assert!(tokens_of(&store, "user001").await.is_empty());
    assert_logged_in(&firefox.get("/").await, "susan", "the session stays");
    assert!(device_list(&mut firefox, FIREFOX).await.is_empty());

    // David's device was never touched.
    restart(&mut david);
    assert_logged_in(&david.get("/").await, "david", "another user's device");

    // Anonymous: no devices, nothing to forget.
    let mut anonymous = firefox.another_browser();
    assert!(device_list(&mut anonymous, FIREFOX).await.is_empty());
    let res = forget_device(&mut anonymous, &david_id).await;
    assert_eq!(res.json(), json!(false), "anonymous forgets nothing");
    assert_eq!(tokens_of(&store, "user002").await.len(), 1);
}

// ---------------------------------------------------------------------------
// 8. Bad input never reaches the store
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_remember_cookies_are_anonymous_and_never_reach_the_store() {
    let db = Db::new();
    let store = TestStore::default();
    let router = app_with(&db, store.clone(), LONG_GRACE);
    let mut client = Client::new(router.clone());
    let good = log_in_remembered(&mut client, "user001", 30).await;
    let (selector, validator) = split(&good);

    // A stateless (JWT) remember cookie for the same user, same key.
    let stateless = Login::new(loader(db.clone()));
    let mut jwt_client = Client::new(
        routes(&db, &stateless)
            .layer(stateless)
            .layer(Session::new(key())),
    );
    let jwt = jwt_client
        .post_form("/login", "user=user001&remember=on")
        .await
        .set_cookie(REMEMBER)
        .expect("a stateless remember cookie")
        .value()
        .to_owned();
    assert!(jwt.matches('.').count() == 2, "a JWT: {jwt}");

    let a22 = "A".repeat(22);
    let bad: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("a dot", ".".to_owned()),
        ("44 chars", good[..44].to_owned()),
        ("46 chars", format!("{good}A")),
        ("no dot", good.replace('.', "_")),
        ("21 + 23", format!("{}.{}A", &selector[..21], validator)),
        ("23 + 21", format!("{selector}A.{}", &validator[..21])),
        (
            "not base64",
            format!("{}.{}", "!".repeat(22), "*".repeat(22)),
        ),
        (
            "standard base64",
            format!("{}.{}", "+".repeat(22), "/".repeat(22)),
        ),
        ("padded", format!("{selector}.{}==", &validator[..20])),
        (
            "bits past 16 bytes",
            format!("{selector}.{}", "A".repeat(21) + "B"),
        ),
        (
            "three parts",
            format!("{selector}.{}.{}", &a22[..10], &a22[..11]),
        ),
        ("three short parts", "a.b.c".to_owned()),
        ("a stateless JWT", jwt.clone()),
        ("5000 chars", "A".repeat(5000)),
        (
            "5000 chars with a dot",
            format!("{}.{}", "A".repeat(2500), "A".repeat(2499)),
        ),
        (
            "non-ASCII",
            format!("{}.{}", "é".repeat(11), "é".repeat(11)),
        ),
        (
            "percent-encoded, 45 chars",
            format!("{0}%C3%.{0}%C3%", "%C3%A9".repeat(3)),
        ),
        ("spaces", format!("{}.{}", " ".repeat(22), " ".repeat(22))),
    ];
    let finds_before = store.finds();
    for (what, value) in &bad {
        let mut browser = client.another_browser();
        browser.set_cookie(REMEMBER, value);
        let res = browser.get("/").await;
        assert!(
            !res.status.is_server_error(),
            "{what}: never a 5xx: {}",
            res.status
        );
        assert_anonymous(&res, "/", what);
        assert!(!browser.has_cookie("session"), "{what}: no session");
        assert_eq!(
            store.finds(),
            finds_before,
            "{what}: the store was never asked"
        );
    }

    // Two `_remember` cookies (one of them good): which is ours is unknown.
    let mut browser = client.another_browser();
    let header = format!("{REMEMBER}={good}; {REMEMBER}={}", unknown_token());
    let res = browser
        .request(Method::GET, "/", &[("cookie", &header)], Body::empty())
        .await;
    assert_anonymous(&res, "/", "two _remember cookies");
    let header = format!("{REMEMBER}={good}; {REMEMBER}={good}");
    let res = browser
        .request(Method::GET, "/", &[("cookie", &header)], Body::empty())
        .await;
    assert_anonymous(&res, "/", "the good cookie twice");
    assert_eq!(store.finds(), finds_before, "two cookies: never asked");

    // An unknown, well-formed selector: asked once, anonymous, deleted.
    let unknown = unknown_token();
    assert_good_token(&unknown);
    let mut browser = client.another_browser();
    browser.set_cookie(REMEMBER, &unknown);
    let res = browser.get("/").await;
    assert_anonymous(&res, "/", "an unknown selector");
    assert_remember_deleted(&res, "an unknown selector");
    assert_eq!(store.finds(), finds_before + 1, "looked up once");

    // The good cookie is untouched by all this.
    assert_eq!(store.memory.len(), 1);
    let mut browser = client.another_browser();
    browser.set_cookie(REMEMBER, &good);
    assert_logged_in(&browser.get("/").await, "susan", "the good cookie");
}

// ---------------------------------------------------------------------------
// 9. The store is down
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_store_that_is_down_fails_closed_and_keeps_the_cookie() {
    let db = Db::new();
    let store = TestStore::default();
    let mut remembered = Client::new(app_with(&db, store.clone(), LONG_GRACE));
    let remember = log_in_remembered(&mut remembered, "user001", 30).await;
    restart(&mut remembered);
    let mut with_session = remembered.another_browser();
    log_in_as(&mut with_session, "user001", "off", FIREFOX).await;
    let mut anonymous = remembered.another_browser();

    store.set_down(true);

    // Remember-only: anonymous, no 5xx, the cookie kept for later.
    let res = remembered.get("/").await;
    assert_anonymous(&res, "/", "a remember cookie while the store is down");
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "the cookie is not deleted: {:?}",
        res.set_cookies()
    );
    assert_eq!(
        remembered.cookie(REMEMBER).as_deref(),
        Some(remember.as_str())
    );

    // A session keeps working.
    assert_logged_in(
        &with_session.get("/").await,
        "susan",
        "a session while the store is down",
    );

    // login_user with remember: Err(AuthError::Remember), nothing changed.
    let res = with_session
        .post_form("/login", "user=user002&remember=on")
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert!(
        res.body.ends_with("logged in as: susan"),
        "still the old login after the failed login_user: {}",
        res.body
    );
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "{:?}",
        res.set_cookies()
    );
    assert_logged_in(
        &with_session.get("/").await,
        "susan",
        "the session is as it was",
    );

    let res = anonymous
        .post_form("/login", "user=user002&remember=on")
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert!(
        res.body.ends_with("logged in as: anonymous"),
        "not logged in after the failed login_user: {}",
        res.body
    );
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "{:?}",
        res.set_cookies()
    );
    assert_anonymous(&anonymous.get("/").await, "/", "after the failed login");

    // A browser with a remember cookie that fails to log in again keeps it.
    let res = remembered
        .post_form("/login", "user=user001&remember=on")
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{}", res.body);
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "{:?}",
        res.set_cookies()
    );
    assert_eq!(
        remembered.cookie(REMEMBER).as_deref(),
        Some(remember.as_str())
    );

    // The store is back: the kept cookie works.
    store.set_down(false);
    restart(&mut remembered);
    let res = remembered.get("/").await;
    assert_logged_in(&res, "susan", "the cookie once the store is back");
    new_remember(&res, "rotated once the store is back");
    let res = anonymous
        .post_form("/login", "user=user002&remember=on")
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    new_remember(&res, "remember-me works again");
}

// ---------------------------------------------------------------------------
// Beyond the list: a loader failure during a restore
// ---------------------------------------------------------------------------

/// The user loader fails on the request that restores a login: the token
/// has been rotated in the store by then. The browser did nothing wrong, so
/// once the loader is back (and the grace window is over) its remember
/// cookie must still log it in, not count as a stolen copy.
#[tokio::test]
async fn a_loader_failure_during_a_restore_is_not_theft() {
    let (mut client, db, store, clock) = app_on_a_manual_clock(Duration::ZERO);
    log_in_remembered(&mut client, "user001", 30).await;
    let mut other_device = client.another_browser();
    log_in_remembered(&mut other_device, "user001", 30).await;
    restart(&mut client);

    db.fail.store(true, Ordering::SeqCst);
    let res = client.get("/").await;
    assert!(
        res.status.is_server_error(),
        "the loader failed: {}",
        res.status
    );
    db.fail.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(1));

    let res = client.get("/").await;
    let left = tokens_of(&store, "user001").await.len();
    assert_logged_in(
        &res,
        "susan",
        &format!(
            "the remember cookie after the loader recovered \
             ({left} of the user's 2 remembered logins left in the store)"
        ),
    );
    assert_eq!(left, 2, "no theft: the user's remembered logins stay");
}

/// Two requests with the same cookie really interleave (the store yields
/// between `find` and `rotate`): one rotates; the other loses the
/// compare-and-swap, reads the token again and is let in by the grace window.
#[tokio::test]
async fn a_race_on_the_rotation_is_settled_by_the_grace_window() {
    let db = Db::new();
    let store = TestStore::default();
    let mut client = Client::new(app_with(&db, store.clone(), LONG_GRACE));
    let original = log_in_remembered(&mut client, "user001", 30).await;
    let mut b1 = browser_with(&client, &original);
    let mut b2 = browser_with(&client, &original);
    let finds = store.finds();
    let (r1, r2) = tokio::join!(b1.get("/"), b2.get("/"));
    assert_logged_in(&r1, "susan", "racing request 1");
    assert_logged_in(&r2, "susan", "racing request 2");
    let rotated: Vec<Cookie<'static>> = [&r1, &r2]
        .iter()
        .filter_map(|r| r.set_cookie(REMEMBER))
        .collect();
    assert_eq!(rotated.len(), 1, "exactly one rotates: {rotated:?}");
    assert!(!is_removal(&rotated[0]), "{}", rotated[0]);
    assert_eq!(
        store.finds(),
        finds + 3,
        "the loser of the race read the token again"
    );
    assert_eq!(store.memory.len(), 1, "no theft");
    // The winner's cookie is the current one.
    let mut after = browser_with(&client, rotated[0].value());
    assert_logged_in(&after.get("/").await, "susan", "the winner's cookie");
}

/// Moves a stored token's clock: rewrites it in the store with `edit`.
async fn edit_stored(store: &MemoryStore, cookie: &str, edit: impl FnOnce(&mut StoredToken)) {
    let mut token = stored(store, cookie).await.expect("stored");
    edit(&mut token);
    store
        .insert(&token)
        .await
        .expect("the memory store answers");
}

#[tokio::test]
async fn an_expired_token_is_refused_deleted_and_removed() {
    let (mut client, _db, store) = app(LONG_GRACE);
    let remember = log_in_remembered(&mut client, "user001", 30).await;
    edit_stored(&store, &remember, |t| t.expires_at = jwt::now() - 1).await;
    restart(&mut client);
    let res = client.get("/").await;
    assert_anonymous(&res, "/", "an expired token");
    assert_remember_deleted(&res, "an expired token");
    assert!(store.is_empty(), "the expired token is removed");
}

/// The default grace window (`DEFAULT_GRACE`, 5 seconds), without waiting:
/// the stored rotation time is moved back instead.
#[tokio::test]
async fn the_default_grace_window_lets_a_recent_validator_in_and_not_an_old_one() {
    let db = Db::new();
    let store = MemoryStore::new();
    let tokens = RevocableRemember::new(store.clone());
    let login = Login::new(loader(db.clone())).remember_tokens(tokens);
    let mut a = Client::new(routes(&db, &login).layer(login).layer(Session::new(key())));
    assert_eq!(axum_latch::remember::DEFAULT_GRACE, Duration::from_secs(5));
    let original = log_in_remembered(&mut a, "user001", 30).await;
    restart(&mut a);
    let res = a.get("/").await;
    assert_logged_in(&res, "susan", "A restored");
    let newest = new_remember(&res, "rotated").value().to_owned();

    // A's next request confirms the new cookie.
    confirm(&store, &newest).await;
    // Rotated 2 seconds ago: the old validator is within the grace window.
    edit_stored(&store, &newest, |t| t.rotated_at_ms = Some(now_ms() - 2000)).await;
    let mut b = browser_with(&a, &original);
    let res = b.get("/").await;
    assert_logged_in(&res, "susan", "the replaced validator, 2 s after");
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "{:?}",
        res.set_cookies()
    );

    // Rotated 10 seconds ago, and confirmed: theft.
    edit_stored(&store, &newest, |t| {
        t.rotated_at_ms = Some(now_ms() - 10_000)
    })
    .await;
    let mut c = browser_with(&a, &original);
    let res = c.get("/").await;
    assert_anonymous(&res, "/", "the replaced validator, 10 s after");
    assert!(store.is_empty(), "theft revokes the user's tokens");
}

/// The usual order of a theft: the thief uses the stolen cookie first (and
/// its browser confirms the rotated cookie), then the victim's browser
/// presents the validator the thief rotated away.
#[tokio::test]
async fn theft_is_detected_when_the_thief_uses_the_cookie_first() {
    let (mut victim, _db, store) = app(Duration::ZERO);
    let stolen = log_in_remembered(&mut victim, "user001", 30).await;
    let mut thief = browser_with(&victim, &stolen);
    let res = thief.get("/").await;
    assert_logged_in(&res, "susan", "the thief, first");
    let thiefs = new_remember(&res, "the thief's rotated cookie")
        .value()
        .to_owned();
    confirm(&store, &thiefs).await;

    restart(&mut victim);
    let res = victim.get("/").await;
    assert_anonymous(&res, "/", "the victim's replaced validator");
    assert_remember_deleted(&res, "the victim's cookie");
    assert!(store.is_empty(), "every remember token of the user revoked");

    // The thief's remember cookie is dead too.
    restart(&mut thief);
    let res = thief.get("/").await;
    assert_anonymous(&res, "/", "the thief's cookie after the theft is seen");
    assert_remember_deleted(&res, "the thief's cookie");
}

/// Attack review: the response that rotated a remember cookie never reaches
/// the browser (it disconnected), which keeps the replaced cookie. Presented
/// again after the grace window, it logs in with a new cookie, and none of
/// the user's remembered logins is revoked.
#[tokio::test]
async fn a_lost_rotation_response_is_not_taken_for_theft() {
    let (mut a, _db, store) = app(Duration::ZERO);
    let original = log_in_remembered(&mut a, "user001", 30).await;
    let mut phone = a.another_browser();
    log_in_remembered(&mut phone, "user001", 30).await;

    // After a restart, A's request rotates the cookie; the response is lost.
    let mut lost = browser_with(&a, &original);
    let res = lost.get("/").await;
    assert_logged_in(&res, "susan", "the request whose response is lost");
    let never_seen = new_remember(&res, "rotated").value().to_owned();

    restart(&mut a);
    assert_eq!(a.cookie(REMEMBER).as_deref(), Some(original.as_str()));
    let res = a.get("/").await;
    assert_logged_in(&res, "susan", "the cookie A kept");
    let newest = new_remember(&res, "a new cookie for A").value().to_owned();
    assert_ne!(newest, never_seen);
    assert_eq!(
        tokens_of(&store, "user001").await.len(),
        2,
        "nothing revoked"
    );

    // The new cookie works after the next restart.
    restart(&mut a);
    let res = a.get("/").await;
    assert_logged_in(&res, "susan", "the new cookie");
    new_remember(&res, "rotated again");
    restart(&mut phone);
    assert_logged_in(&phone.get("/").await, "susan", "the other device");
}

/// Once the browser has made a request with its new cookie (and the
/// session the rotation made), the replaced validator is a copy: presented
/// past the grace window, it is theft. The confirmation here is latch's
/// own, on the owner's next request, not a store call by the test.
#[tokio::test]
async fn a_copy_used_after_the_owners_next_request_is_theft() {
    let (mut owner, _db, store, clock) = app_on_a_manual_clock(Duration::from_millis(100));
    let original = log_in_remembered(&mut owner, "user001", 30).await;
    let mut thief = browser_with(&owner, &original);
    restart(&mut owner);
    let res = owner.get("/").await;
    let rotated = new_remember(&res, "the owner's restore rotates the token");
    assert_eq!(
        stored(&store, rotated.value()).await.map(|t| t.confirmed),
        Some(false)
    );
    assert_logged_in(&owner.get("/").await, "susan", "the owner's next request");
    assert_eq!(
        stored(&store, rotated.value()).await.map(|t| t.confirmed),
        Some(true),
        "the next request confirms the new cookie"
    );

    clock.advance(Duration::from_millis(101));
    assert_anonymous(&thief.get("/").await, "/", "the copy");
    assert!(
        tokens_of(&store, "user001").await.is_empty(),
        "theft revokes every remembered login of the user"
    );
}

/// The grace window keeps sub-second precision: within half a second, a
/// restarting browser's parallel request with the old cookie is let in
/// without minting a second cookie, even once the new one is confirmed.
#[tokio::test]
async fn a_sub_second_grace_window_is_kept() {
    let (mut a, _db, store, clock) = app_on_a_manual_clock(Duration::from_millis(500));
    let original = log_in_remembered(&mut a, "user001", 30).await;
    let mut first = browser_with(&a, &original);
    let mut second = browser_with(&a, &original);
    let res = first.get("/").await;
    new_remember(&res, "the first request rotates");
    assert_logged_in(&first.get("/").await, "susan", "its next request confirms");
    // The browser's other request, sent with the old cookie, arrives late,
    // just within the window.
    clock.advance(Duration::from_millis(499));
    let res = second.get("/").await;
    assert_logged_in(&res, "susan", "a parallel request within 500 ms");
    assert!(
        res.set_cookie(REMEMBER).is_none(),
        "no second cookie: {:?}",
        res.set_cookies()
    );
    assert_eq!(store.len(), 1, "no theft");
}
