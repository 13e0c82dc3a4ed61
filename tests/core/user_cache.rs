//! The user cache of `Login::cache_users`, end to end: how often the user
//! loader runs, and when a cached user is dropped, reloaded or evicted.

use crate::support;

use axum::extract::{Form, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_latch::clock::Clock;
use axum_latch::{Auth, CurrentUser, Login, Remember, Session, User, UserLoader};
use http::StatusCode;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::{key, Client};
use tokio::sync::oneshot;

/// A short time-to-live, for the tests that move their clock past it.
const SHORT_TTL: Duration = Duration::from_secs(60);

/// Just past [`SHORT_TTL`]: by the TTL's own measure, not a margin for a
/// slow machine (the tests' clock only moves when they move it).
const PAST_SHORT_TTL: Duration = Duration::from_millis(60_001);

/// Just short of [`SHORT_TTL`].
const WITHIN_SHORT_TTL: Duration = Duration::from_millis(59_999);

/// A time-to-live no test outlasts: users leave the cache only when latch drops them.
const LONG_TTL: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------
// The users, their "database" and the app
// ---------------------------------------------------------------------------

/// A user of the app; its password hash is its `auth_hash`.
#[derive(Clone, Debug, PartialEq)]
struct Account {
    id: u64,
    name: String,
    password_hash: String,
}

impl User for Account {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

/// A loader call held after it has read the users, until the test releases it.
struct Gate {
    /// Told once the held call has read the users.
    read: oneshot::Sender<()>,
    /// The call returns what it read once this is sent to (or dropped).
    release: oneshot::Receiver<()>,
}

/// The users "database", shared by every app of a test (instances of one
/// service), with a count of the loader's calls.
#[derive(Clone)]
struct Db {
    users: Arc<Mutex<HashMap<u64, Account>>>,
    loads: Arc<AtomicUsize>,
    /// Makes the loader fail while set.
    fail: Arc<AtomicBool>,
    /// Holds the next loader call, if set.
    gate: Arc<Mutex<Option<Gate>>>,
}

impl Db {
    /// Users 1 (alice), 2 (bob) and 3 (carol), each with a first password.
    fn new() -> Self {
        let users = [(1, "alice"), (2, "bob"), (3, "carol")]
            .into_iter()
            .map(|(id, name)| {
                let account = Account {
                    id,
                    name: name.to_owned(),
                    password_hash: format!("hash of {name}'s first password"),
                };
                (id, account)
            })
            .collect();
        Self {
            users: Arc::new(Mutex::new(users)),
            loads: Arc::default(),
            fail: Arc::default(),
            gate: Arc::default(),
        }
    }

    /// The user with this id, as stored now (not through latch).
    fn user(&self, id: u64) -> Option<Account> {
        self.users.lock().unwrap().get(&id).cloned()
    }

    /// Stores `account`, replacing the user with its id.
    fn put(&self, account: Account) {
        self.users.lock().unwrap().insert(account.id, account);
    }

    /// Changes a user's password hash straight in the database, as another
    /// instance or an admin script would, and returns the changed user.
    fn set_password(&self, id: u64, password_hash: &str) -> Account {
        let mut users = self.users.lock().unwrap();
        let user = users.get_mut(&id).expect("a seeded user");
        user.password_hash = password_hash.to_owned();
        user.clone()
    }

    /// Renames a user straight in the database.
    fn rename(&self, id: u64, name: &str) {
        let mut users = self.users.lock().unwrap();
        users.get_mut(&id).expect("a seeded user").name = name.to_owned();
    }

    /// Deletes a user, returning it.
    fn delete(&self, id: u64) -> Account {
        self.users
            .lock()
            .unwrap()
            .remove(&id)
            .expect("a seeded user")
    }

    /// How many times the loader has been called, by every app on this database.
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// Makes the loader fail (`true`) or work again (`false`).
    fn set_failing(&self, failing: bool) {
        self.fail.store(failing, Ordering::SeqCst);
    }

    /// Holds the next loader call once it has read the users: the first
    /// channel says it has, sending to the second lets it return.
    fn hold_next_load(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (read, has_read) = oneshot::channel();
        let (release, released) = oneshot::channel();
        *self.gate.lock().unwrap() = Some(Gate {
            read,
            release: released,
        });
        (has_read, release)
    }

    /// The user loader: counts its calls, then reads the users (or fails).
    fn loader(&self) -> impl UserLoader<Account> {
        let db = self.clone();
        move |id: u64| {
            let db = db.clone();
            async move {
                db.loads.fetch_add(1, Ordering::SeqCst);
                if db.fail.load(Ordering::SeqCst) {
                    return Err(std::io::Error::other("the database is down"));
                }
                let found = db.user(id);
                let gate = db.gate.lock().unwrap().take();
                if let Some(gate) = gate {
                    let _ = gate.read.send(());
                    let _ = gate.release.await;
                }
                Ok(found)
            }
        }
    }

    /// A login layer over this database, without a user cache.
    fn login(&self) -> Login<Account, impl UserLoader<Account>> {
        Login::new(self.loader())
    }

    /// A login layer over this database with a cache of its own.
    fn cached_login(
        &self,
        capacity: usize,
        ttl: Duration,
    ) -> Login<Account, impl UserLoader<Account>> {
        self.login().cache_users(capacity, ttl)
    }
}

/// The login form: the user's id, and `remember=on` to be remembered.
#[derive(Deserialize)]
struct LoginForm {
    id: u64,
    remember: Option<String>,
}

/// The password form: whose password, and its new hash.
#[derive(Deserialize)]
struct PasswordForm {
    id: u64,
    hash: String,
}

/// The greeting page, for logged-in users only.
async fn index(CurrentUser(user): CurrentUser<Account>) -> String {
    format!("Hello, {}!", user.name)
}

/// Logs in the user of the form's `id` (no password: the tests are about
/// what happens after a login); `remember=on` remembers them.
async fn log_in_handler(
    State(db): State<Db>,
    auth: Auth<Account>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(user) = db.user(form.id) else {
        return (StatusCode::UNAUTHORIZED, "no such user").into_response();
    };
    let remember = Remember::from(form.remember.as_deref() == Some("on"));
    auth.login_user(&user, remember).await.into_response()
}

/// Logs the browser out.
async fn log_out_handler(auth: Auth<Account>) -> Redirect {
    auth.logout_user().await;
    Redirect::to("/")
}

/// Changes the password of the form's user in the database and keeps this
/// session logged in with `update_user`. It does not ask latch for the
/// current user, so the cache holds only what earlier requests put there.
async fn change_password(
    State(db): State<Db>,
    auth: Auth<Account>,
    Form(form): Form<PasswordForm>,
) -> Response {
    let updated = db.set_password(form.id, &form.hash);
    if auth.update_user(&updated).await {
        "password changed".into_response()
    } else {
        (StatusCode::FORBIDDEN, "not this session's user").into_response()
    }
}

/// One instance of the app, on `db`, with `login`.
fn instance(db: &Db, login: Login<Account, impl UserLoader<Account>>) -> Router {
    instance_on(db, login, Clock::system())
}

/// [`instance`], on `clock` (the session's, which the user cache reads).
fn instance_on(db: &Db, login: Login<Account, impl UserLoader<Account>>, clock: Clock) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", post(log_in_handler))
        .route("/logout", post(log_out_handler))
        .route("/password", post(change_password))
        .with_state(db.clone())
        .layer(login)
        .layer(Session::new(key()).clock(clock))
}

/// A new browser on `app`, logged in as user `id` (remembered with `remember`).
async fn browser(app: &Router, id: u64, remember: bool) -> Client {
    let mut client = Client::new(app.clone());
    let remember = if remember { "on" } else { "off" };
    let res = client
        .post_form("/login", &format!("id={id}&remember={remember}"))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "login: {}", res.body);
    assert!(client.has_cookie("session"), "logged in");
    client
}

/// A browser on `app` with the cookies of `from`: the same browser sent to
/// another instance of the service.
fn moved_to(app: &Router, from: &Client) -> Client {
    let mut client = Client::new(app.clone());
    for cookie in from.cookies() {
        client.set_cookie(&cookie.name, &cookie.value);
    }
    client
}

/// Asks for the greeting page: `Some(greeting)` if the login is accepted,
/// `None` if the browser is sent to log in; anything else fails the test.
async fn visit(client: &mut Client) -> Option<String> {
    let res = client.get("/").await;
    match res.status {
        StatusCode::OK => Some(res.body),
        StatusCode::FOUND => {
            let location = res.location().unwrap_or_default();
            assert!(location.starts_with("/login"), "sent to {location:?}");
            None
        }
        status => panic!("GET / answered {status}: {}", res.body),
    }
}

/// The greeting of an accepted login, failing the test if it is refused.
async fn accepted(client: &mut Client, what: &str) -> String {
    visit(client)
        .await
        .unwrap_or_else(|| panic!("{what}: the login should be accepted"))
}

/// Fails the test unless the browser is sent to log in.
async fn refused(client: &mut Client, what: &str) {
    if let Some(greeting) = visit(client).await {
        panic!("{what}: the login should be refused, got {greeting:?}");
    }
}

// ---------------------------------------------------------------------------
// How often the loader runs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn without_the_cache_every_request_calls_the_loader() {
    let db = Db::new();
    let app = instance(&db, db.login());
    let mut alice = browser(&app, 1, false).await;
    assert_eq!(db.loads(), 0, "logging in does not call the loader");
    for n in 1..=5 {
        assert_eq!(accepted(&mut alice, "uncached").await, "Hello, alice!");
        assert_eq!(db.loads(), n, "one loader call per request");
    }
}

#[tokio::test]
async fn with_the_cache_a_user_is_loaded_once_for_many_requests() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut alice = browser(&app, 1, false).await;
    for _ in 0..5 {
        assert_eq!(accepted(&mut alice, "cached").await, "Hello, alice!");
    }
    assert_eq!(db.loads(), 1, "five requests, one loader call");

    // Another browser of the same user uses the same cached user.
    let mut alice_phone = browser(&app, 1, false).await;
    accepted(&mut alice_phone, "alice's phone").await;
    assert_eq!(db.loads(), 1, "the user is cached, not the session");
}

#[tokio::test]
async fn with_the_cache_two_users_are_loaded_once_each() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut alice = browser(&app, 1, false).await;
    let mut bob = browser(&app, 2, false).await;
    for _ in 0..3 {
        assert_eq!(accepted(&mut alice, "alice").await, "Hello, alice!");
        assert_eq!(accepted(&mut bob, "bob").await, "Hello, bob!");
    }
    assert_eq!(db.loads(), 2, "six requests of two users, two loader calls");
}

#[tokio::test]
async fn cached_users_are_reloaded_after_the_ttl() {
    let db = Db::new();
    let clock = Clock::manual(SystemTime::now());
    let app = instance_on(&db, db.cached_login(100, SHORT_TTL), clock.clone());
    let mut alice = browser(&app, 1, false).await;
    assert_eq!(accepted(&mut alice, "first").await, "Hello, alice!");
    assert_eq!(db.loads(), 1);

    // The trade-off of the cache: a change made in the database is not seen
    // while the user is cached, so the old name is still shown, to the
    // last moment of the TTL...
    db.rename(1, "Alice Liddell");
    clock.advance(WITHIN_SHORT_TTL);
    assert_eq!(
        accepted(&mut alice, "within the TTL").await,
        "Hello, alice!",
        "the cached user is used until the TTL"
    );
    assert_eq!(db.loads(), 1, "no loader call within the TTL");

    // ...until the cached copy is older than the TTL.
    clock.set(clock.now() - WITHIN_SHORT_TTL + PAST_SHORT_TTL);
    assert_eq!(
        accepted(&mut alice, "past the TTL").await,
        "Hello, Alice Liddell!",
        "the user is reloaded past the TTL"
    );
    assert_eq!(db.loads(), 2, "one more loader call past the TTL");
    accepted(&mut alice, "cached again").await;
    assert_eq!(db.loads(), 2, "the reloaded user is cached again");
}

#[tokio::test]
async fn the_oldest_user_is_evicted_beyond_the_capacity() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(2, LONG_TTL));
    let mut alice = browser(&app, 1, false).await;
    let mut bob = browser(&app, 2, false).await;
    let mut carol = browser(&app, 3, false).await;
    accepted(&mut alice, "alice").await;
    accepted(&mut bob, "bob").await;
    assert_eq!(db.loads(), 2);

    // A third user: alice, cached first, makes room.
    accepted(&mut carol, "carol").await;
    assert_eq!(db.loads(), 3);
    accepted(&mut bob, "bob, still cached").await;
    accepted(&mut carol, "carol, still cached").await;
    assert_eq!(db.loads(), 3, "bob and carol are cached");
    accepted(&mut alice, "alice, evicted").await;
    assert_eq!(db.loads(), 4, "alice was evicted and is loaded again");

    // Caching alice again evicts bob, now the oldest.
    accepted(&mut carol, "carol").await;
    assert_eq!(db.loads(), 4, "carol is still cached");
    accepted(&mut bob, "bob, evicted").await;
    assert_eq!(db.loads(), 5, "bob was evicted by alice");
}

#[tokio::test]
async fn loader_errors_are_not_cached() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut alice = browser(&app, 1, false).await;

    db.set_failing(true);
    for n in 1..=2 {
        let res = alice.get("/").await;
        assert_eq!(
            res.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            res.body
        );
        assert_eq!(db.loads(), n, "every request asks the failing loader again");
    }

    db.set_failing(false);
    assert_eq!(accepted(&mut alice, "loader back").await, "Hello, alice!");
    assert_eq!(db.loads(), 3, "the loader is asked once it works again");
    accepted(&mut alice, "cached").await;
    assert_eq!(db.loads(), 3, "and its answer is cached");
}

#[tokio::test]
async fn deleted_users_are_not_cached() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut laptop = browser(&app, 1, false).await;
    let mut phone = browser(&app, 1, false).await;
    let mut tablet = browser(&app, 1, false).await;

    let alice = db.delete(1);
    refused(&mut laptop, "deleted user").await;
    assert_eq!(db.loads(), 1);
    refused(&mut phone, "deleted user, another session").await;
    assert_eq!(db.loads(), 2, "a missing user is asked for again");

    // Had "no such user" been cached, the tablet would be refused too.
    db.put(alice);
    assert_eq!(accepted(&mut tablet, "user back").await, "Hello, alice!");
    assert_eq!(db.loads(), 3);
}

#[tokio::test]
async fn remember_me_restores_use_the_cached_user() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut alice = browser(&app, 1, true).await;
    assert!(alice.has_cookie("_remember"), "remembered");
    accepted(&mut alice, "session").await;
    assert_eq!(db.loads(), 1);

    // The browser restarts: only the remember cookie is left.
    alice.remove_cookie("session");
    let res = alice.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "restored: {}", res.body);
    assert_eq!(res.body, "Hello, alice!");
    assert!(
        res.set_cookie("session").is_some(),
        "the restore starts a new session"
    );
    assert_eq!(db.loads(), 1, "the restore used the cached user");

    // After a password change, a remember cookie made on another instance
    // carries the new fingerprint: the restore reloads the cached user...
    db.set_password(1, "a new hash");
    let app_b = instance(&db, db.cached_login(100, LONG_TTL));
    let mut on_b = browser(&app_b, 1, true).await;
    on_b.remove_cookie("session");
    let mut restored_on_a = moved_to(&app, &on_b);
    assert_eq!(
        accepted(&mut restored_on_a, "a newer remember cookie").await,
        "Hello, alice!"
    );
    assert_eq!(db.loads(), 2, "the restore reloaded the user");

    // ...and the old remember cookie is refused.
    alice.remove_cookie("session");
    refused(&mut alice, "the remember cookie of the old password").await;
}

// ---------------------------------------------------------------------------
// When latch drops a cached user
// ---------------------------------------------------------------------------

#[tokio::test]
async fn logout_drops_the_cached_user() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut laptop = browser(&app, 1, false).await;
    let mut phone = browser(&app, 1, false).await;
    accepted(&mut laptop, "laptop").await;
    accepted(&mut phone, "phone").await;
    assert_eq!(db.loads(), 1, "the phone used the cached user");

    let res = laptop.post("/logout").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    refused(&mut laptop, "logged out").await;
    assert_eq!(db.loads(), 1, "logging out does not load the user");

    assert_eq!(
        accepted(&mut phone, "the other session").await,
        "Hello, alice!",
        "a logout ends only its own session"
    );
    assert_eq!(db.loads(), 2, "the logout dropped the cached user");
}

#[tokio::test]
async fn update_user_keeps_its_session_and_refuses_older_ones_on_a_fresh_cache() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut laptop = browser(&app, 1, false).await;
    let mut phone = browser(&app, 1, false).await;

    // Nothing is cached yet: the password change loads nothing.
    let res = laptop.post_form("/password", "id=1&hash=a+new+hash").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(db.loads(), 0);

    assert_eq!(
        accepted(&mut laptop, "the session that changed it").await,
        "Hello, alice!"
    );
    refused(&mut phone, "a session from before the change").await;
    accepted(&mut laptop, "the session that changed it, again").await;
}

#[tokio::test]
async fn update_user_keeps_its_session_and_refuses_older_ones_with_the_old_user_cached() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut laptop = browser(&app, 1, false).await;
    let mut phone = browser(&app, 1, false).await;
    accepted(&mut laptop, "laptop").await;
    accepted(&mut phone, "phone").await;
    assert_eq!(db.loads(), 1, "the old user is cached");

    let res = laptop.post_form("/password", "id=1&hash=a+new+hash").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    // The phone goes first: had the old user stayed cached, its fingerprint
    // would still match and it would be let in.
    refused(&mut phone, "a session from before the change").await;
    assert_eq!(db.loads(), 2, "update_user dropped the cached user");
    assert_eq!(
        accepted(&mut laptop, "the session that changed it").await,
        "Hello, alice!"
    );
    assert_eq!(db.loads(), 2, "the new user is cached");
    refused(&mut phone, "still refused").await;
}

// ---------------------------------------------------------------------------
// Several instances, each with its own cache
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_newer_session_from_another_instance_reloads_the_cached_user() {
    let db = Db::new();
    let app_a = instance(&db, db.cached_login(100, LONG_TTL));
    let app_b = instance(&db, db.cached_login(100, LONG_TTL));
    let mut old_session = browser(&app_a, 1, false).await;
    accepted(&mut old_session, "cached on A").await;
    assert_eq!(db.loads(), 1);

    // The password changes in the database; the user logs in on B, whose
    // session carries the new fingerprint.
    db.set_password(1, "a new hash");
    let on_b = browser(&app_b, 1, false).await;

    // A still caches the old user, but does not refuse the newer session:
    // the fingerprint does not match, so A asks the loader again.
    let mut new_session = moved_to(&app_a, &on_b);
    assert_eq!(
        accepted(&mut new_session, "the newer session on A").await,
        "Hello, alice!"
    );
    assert_eq!(db.loads(), 2, "A reloaded the user");

    // And A now has the new user: the old session is refused.
    refused(&mut old_session, "the old session on A").await;
    let loads = db.loads();
    accepted(&mut new_session, "the newer session on A, again").await;
    assert_eq!(db.loads(), loads, "the refusal left the new user cached");
}

#[tokio::test]
async fn another_instance_accepts_an_old_session_until_the_ttl() {
    let db = Db::new();
    let clock = Clock::manual(SystemTime::now());
    let app_a = instance_on(&db, db.cached_login(100, SHORT_TTL), clock.clone());
    let app_b = instance_on(&db, db.cached_login(100, SHORT_TTL), clock.clone());
    let mut old_on_a = browser(&app_a, 1, false).await;
    let mut old_on_b = browser(&app_b, 1, false).await;
    accepted(&mut old_on_a, "cached on A").await;
    let mut changing = browser(&app_b, 1, false).await;

    // The password changes through B.
    let res = changing
        .post_form("/password", "id=1&hash=a+new+hash")
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    accepted(&mut changing, "the session that changed it").await;
    refused(&mut old_on_b, "an old session on B").await;

    // The trade-off: A does not hear of it, and still accepts an old
    // session while it caches the old user...
    assert_eq!(
        accepted(&mut old_on_a, "an old session on A within the TTL").await,
        "Hello, alice!"
    );
    // ...but not once the cached user is older than the TTL.
    clock.advance(PAST_SHORT_TTL);
    refused(&mut old_on_a, "an old session on A past the TTL").await;
}

// ---------------------------------------------------------------------------
// Concurrent requests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_load_in_flight_during_update_user_does_not_cache_the_old_user() {
    let db = Db::new();
    let app = instance(&db, db.cached_login(100, LONG_TTL));
    let mut laptop = browser(&app, 1, false).await;
    let mut phone = browser(&app, 1, false).await;

    // A request of the phone reads the user, still with the old password...
    let (has_read, release) = db.hold_next_load();
    let mut in_flight = phone.clone();
    let request = tokio::spawn(async move { visit(&mut in_flight).await });
    has_read.await.expect("the phone's request loads the user");

    // ...the password changes on the laptop while that load is in flight...
    let res = laptop.post_form("/password", "id=1&hash=a+new+hash").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);

    // ...and the load then returns the user it read.
    release.send(()).expect("the load is waiting");
    let first = request.await.expect("the request completes");
    assert!(
        first.is_some(),
        "a request begun before the change may pass"
    );

    // Every request of the phone after the change must be refused.
    refused(&mut phone, "a session from before the change").await;
}
