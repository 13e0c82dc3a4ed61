//! Attacks on the session registry: keeping or regaining a session that the
//! user or an admin ended, making an instance miss an ending, and growing
//! what every instance must read. Each test says what the attacker does and
//! what latch must do; the registry's store is `MemoryStore`, sometimes
//! behind a wrapper that lags, resets or counts.

use crate::support::fixtures::*;
use crate::support::{jwt, key, Client, KEY};
use axum::extract::Form;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_latch::clock::Clock;
use axum_latch::registry::{
    Change, Ending, RegistryBuilder, SessionRecord, SessionRegistry, SessionStore, Wake,
};
use axum_latch::remember::{RememberTokens, StatelessRemember, StoreError};
use axum_latch::stores::MemoryStore;
use axum_latch::{Auth, CurrentUser, Login, Session, User, UserLoader};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// What an anonymous `GET /` gets: the login redirect.
const LOGIN_REDIRECT: StatusCode = StatusCode::FOUND;

// ---------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct EndForm {
    id: String,
}

/// One instance: its own layers and registry over a shared store.
fn app<L: UserLoader<Account>>(
    db: &Arc<Db>,
    loader: L,
    registry: SessionRegistry,
    remember: impl RememberTokens,
    clock: &Clock,
) -> Router {
    let login = Login::new(loader)
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
        .route(
            "/sessions",
            get(|auth: Auth<Account>| async move {
                let list = auth.sessions().await.unwrap_or_default();
                Json(list.into_iter().map(|s| s.id).collect::<Vec<_>>())
            }),
        )
        .route(
            "/sessions/end",
            post(
                |auth: Auth<Account>, Form(form): Form<EndForm>| async move {
                    format!("{:?}", auth.end_session(&form.id).await.ok())
                },
            ),
        )
        .route(
            "/sessions/others",
            post(|auth: Auth<Account>| async move {
                format!("{:?}", auth.end_other_sessions().await.ok())
            }),
        )
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

async fn status_of(client: &mut Client) -> StatusCode {
    client.get("/").await.status
}

/// Waits (at most `wait`) until `client`'s `/` answers `expected`.
async fn until_status(client: &mut Client, expected: StatusCode, wait: Duration) -> StatusCode {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let status = status_of(client).await;
        if status == expected || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (at most 5 s) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn log_in(client: &mut Client, user: &str, remember: &str) {
    log_in_through_the_form(client, user, remember, None).await;
}

/// A browser that carries only these cookies.
fn browser_with(app: &Router, cookies: &[(&str, &str)]) -> Client {
    let mut client = Client::new(app.clone());
    for (name, value) in cookies {
        client.set_cookie(name, value);
    }
    client
}

/// A user loader that, once armed, stops in its next call until released:
/// the attacker's request is held between latch's checks and the login it
/// writes.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    entered: Notify,
    release: Notify,
}

fn gated_loader(db: Arc<Db>, gate: Arc<Gate>) -> impl UserLoader<Account> {
    move |id: String| {
        let db = db.clone();
        let gate = gate.clone();
        async move {
            if gate.armed.swap(false, Ordering::SeqCst) {
                gate.entered.notify_one();
                gate.release.notified().await;
            }
            Ok::<_, std::io::Error>(db.find(&id))
        }
    }
}

// ---------------------------------------------------------------------------
// A restore from a remember cookie racing a cut-off
// ---------------------------------------------------------------------------

/// The attacker holds a copy of the victim's remember cookie and sends it
/// just as an admin ends every session of the victim (`end_all`, a
/// compromised account). The restore passed the registry's check, then
/// waited on the user loader; the cut-off lands meanwhile, and the restore
/// writes its login a second later, so the new session's login time falls
/// after the cut-off. latch must refuse that session: the login it restores
/// began before the cut-off. (It was let in for its 14-day absolute
/// timeout, and listed nowhere.)
#[tokio::test]
async fn a_remember_restore_in_flight_survives_end_all() {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::manual(SystemTime::now());
    let gate = Arc::new(Gate::default());
    let registry = registry(store.clone(), &clock).await;
    let site = app(
        &db,
        gated_loader(db.clone(), gate.clone()),
        registry.clone(),
        StatelessRemember,
        &clock,
    );
    let mut victim = Client::new(site.clone());
    log_in(&mut victim, "user001", "on").await;
    let copy = victim.cookie("_remember").unwrap();
    clock.advance(Duration::from_secs(10));

    let mut thief = browser_with(&site, &[("_remember", &copy)]);
    gate.armed.store(true, Ordering::SeqCst);
    let restore = tokio::spawn(async move {
        thief.get("/").await;
        thief
    });
    gate.entered.notified().await;
    registry.end_all(&"user001").await.unwrap();
    clock.advance(Duration::from_secs(1));
    gate.release.notify_one();
    let mut thief = restore.await.unwrap();

    assert_eq!(
        status_of(&mut thief).await,
        LOGIN_REDIRECT,
        "the session restored across the cut-off is refused"
    );
    assert_eq!(status_of(&mut victim).await, LOGIN_REDIRECT);
}

/// A `MemoryStore` whose change feed this instance hears late: while `hold`
/// is set, `changes` answers nothing new (the feed has not reached it).
#[derive(Clone)]
struct Lagging {
    store: MemoryStore,
    hold: Arc<AtomicBool>,
}

impl SessionStore for Lagging {
    async fn save(&self, record: &SessionRecord) -> Result<(), StoreError> {
        SessionStore::save(&self.store, record).await
    }
    async fn touch(&self, session_id: &str, at: u64) -> Result<(), StoreError> {
        SessionStore::touch(&self.store, session_id, at).await
    }
    async fn list(&self, user_id: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        SessionStore::list(&self.store, user_id, now).await
    }
    async fn end(&self, ending: &Ending) -> Result<u64, StoreError> {
        SessionStore::end(&self.store, ending).await
    }
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        if self.hold.load(Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        SessionStore::changes(&self.store, after, limit).await
    }
    async fn listen(&self, wake: Wake) -> Result<(), StoreError> {
        SessionStore::listen(&self.store, wake).await
    }
    fn pushes_changes(&self) -> bool {
        true
    }
    async fn purge(&self, now: u64) -> Result<u64, StoreError> {
        SessionStore::purge(&self.store, now).await
    }
}

/// The same race across instances: the admin ends every session of the
/// victim on instance A, and the attacker restores from the copied
/// remember cookie on instance B a second later, before B has heard of the
/// cut-off. SECURITY.md allows B to accept sessions *until the ending
/// reaches it*; but the session B made has a login time after the cut-off,
/// so once B (and A) hear of it, it is still accepted, for good, while the
/// store lists it as ended. It must be refused once the ending arrives.
#[tokio::test]
async fn a_restore_on_a_lagging_instance_outlives_end_all() {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::manual(SystemTime::now());
    let hold = Arc::new(AtomicBool::new(false));
    let registry_a = registry(store.clone(), &clock).await;
    let registry_b = registry(
        Lagging {
            store: store.clone(),
            hold: hold.clone(),
        },
        &clock,
    )
    .await;
    let a = app(
        &db,
        loader(db.clone()),
        registry_a.clone(),
        StatelessRemember,
        &clock,
    );
    let b = app(
        &db,
        loader(db.clone()),
        registry_b.clone(),
        StatelessRemember,
        &clock,
    );
    let mut victim = Client::new(a.clone());
    log_in(&mut victim, "user001", "on").await;
    let copy = victim.cookie("_remember").unwrap();
    clock.advance(Duration::from_secs(10));

    hold.store(true, Ordering::SeqCst);
    registry_a.end_all(&"user001").await.unwrap();
    clock.advance(Duration::from_secs(1));
    let mut thief = browser_with(&b, &[("_remember", &copy)]);
    // Within the propagation window: B does not know yet.
    status_of(&mut thief).await;
    hold.store(false, Ordering::SeqCst);
    until(|| registry_b.ended_size().users == 1).await;
    assert_eq!(
        registry_b.ended_size().users,
        1,
        "B has heard of the cut-off"
    );

    assert_eq!(
        status_of(&mut thief).await,
        LOGIN_REDIRECT,
        "refused on B once it knows"
    );
    let session = thief.cookie("session").unwrap_or_default();
    let mut on_a = browser_with(&a, &[("session", &session)]);
    assert_eq!(status_of(&mut on_a).await, LOGIN_REDIRECT, "and on A");
}

// ---------------------------------------------------------------------------
// Two cut-offs
// ---------------------------------------------------------------------------

/// The attacker, in a session of the victim's account made at t0, clicks
/// "log out everywhere else" at t0+20, kicking the victim. The admin then
/// ends every session made at or before t0+5 (`end_before`, the time of
/// the compromise). The attacker's session was made at t0: it must end.
/// (The registry kept only the cut-off with the later time, whose `except`
/// spares the attacker's session, and dropped the admin's.) The same
/// happens when two instances' clocks differ by a second or two and the
/// admin's `end_all` follows the attacker's "end the others".
#[tokio::test]
async fn an_earlier_cut_off_heard_after_end_others_still_ends_the_kept_session() {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::manual(SystemTime::now());
    let registry = registry(store.clone(), &clock).await;
    let site = app(
        &db,
        loader(db.clone()),
        registry.clone(),
        StatelessRemember,
        &clock,
    );
    let t0 = clock.now();
    let mut attacker = Client::new(site.clone());
    log_in(&mut attacker, "user001", "off").await;
    clock.advance(Duration::from_secs(10));
    let mut victim = Client::new(site.clone());
    log_in(&mut victim, "user001", "off").await;
    clock.advance(Duration::from_secs(10));

    assert_eq!(attacker.post("/sessions/others").await.body, "Some(true)");
    assert_eq!(status_of(&mut victim).await, LOGIN_REDIRECT);
    registry
        .end_before(&"user001", t0 + Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        status_of(&mut attacker).await,
        LOGIN_REDIRECT,
        "a session made before the admin's cut-off is refused"
    );
}

// ---------------------------------------------------------------------------
// User ids of another JSON shape
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct MemberId {
    // Not in alphabetical order: a JSON map would sort them.
    org: String,
    num: u64,
}

#[derive(Clone, Debug)]
struct Member {
    id: MemberId,
}

impl User for Member {
    type Id = MemberId;
    fn id(&self) -> MemberId {
        self.id.clone()
    }
    fn auth_hash(&self) -> &[u8] {
        b"member hash"
    }
}

/// An app whose user ids are structs (`{"org": .., "num": ..}`). An admin
/// disables a compromised member with `registry.end_all(&id)`: every
/// session of the member must end. (The registry wrote the id as the
/// struct's JSON, `{"org":"acme","num":7}`, while sessions carry it as a
/// JSON value, whose keys are sorted, `{"num":7,"org":"acme"}`: the cut-off
/// never matched, and `sessions(&id)` listed nothing.)
#[tokio::test]
async fn end_all_from_outside_a_request_ends_a_struct_user_id() {
    let clock = Clock::system();
    let registry = registry(MemoryStore::new(), &clock).await;
    let member = Member {
        id: MemberId {
            org: "acme".to_owned(),
            num: 7,
        },
    };
    let found = member.clone();
    let loader = move |id: MemberId| {
        let found = found.clone();
        async move { Ok::<_, std::io::Error>((id == found.id).then_some(found)) }
    };
    let logged_in = member.clone();
    let site = Router::new()
        .route(
            "/",
            get(|CurrentUser(user): CurrentUser<Member>| async move { user.id.org.clone() }),
        )
        .route(
            "/login",
            post(move |auth: Auth<Member>| {
                let user = logged_in.clone();
                async move { auth.login_user(&user, false).await.is_ok().to_string() }
            }),
        )
        .layer(Login::new(loader).sessions(registry.clone()))
        .layer(Session::new(key()).clock(clock.clone()));
    let mut browser = Client::new(site);
    assert_eq!(browser.post("/login").await.body, "true");
    assert_eq!(status_of(&mut browser).await, StatusCode::OK);
    assert_eq!(
        registry.sessions(&member.id).await.unwrap().len(),
        1,
        "the admin sees the member's session"
    );

    registry.end_all(&member.id).await.unwrap();
    assert_eq!(
        status_of(&mut browser).await,
        LOGIN_REDIRECT,
        "the member's session ended"
    );
}

// ---------------------------------------------------------------------------
// Remember cookies without a session id
// ---------------------------------------------------------------------------

/// A stateless remember cookie made before the registry (or adopted from
/// Microdot) carries no `_sid`, so each restore got a new session id. The
/// user ends that browser from "Where you're logged in": its next request
/// is anonymous, and the one after came straight back, restored from the
/// same cookie as a new session. Ending the entry must log the browser out
/// (README: "ending the entry ends both").
#[tokio::test]
async fn ending_a_browser_whose_remember_cookie_has_no_session_id_logs_it_out() {
    let db = Db::new();
    let clock = Clock::system();
    let registry = registry(MemoryStore::new(), &clock).await;
    let site = app(
        &db,
        loader(db.clone()),
        registry.clone(),
        StatelessRemember,
        &clock,
    );
    // A remember cookie of latch's format without `_sid`.
    let mut scratch = Client::new(site.clone());
    log_in(&mut scratch, "user001", "on").await;
    let made = scratch.cookie("_remember").unwrap();
    let mut claims = jwt::decode(&made, &[KEY]).unwrap();
    assert!(claims.remove("_sid").is_some());
    let old_format = jwt::encode(&claims, KEY);

    let mut phone = browser_with(&site, &[("_remember", &old_format)]);
    assert_eq!(status_of(&mut phone).await, StatusCode::OK, "restored");
    let phone_sid = phone.get("/sid").await.body;
    assert!(registry.end_session(&"user001", &phone_sid).await.unwrap());
    assert_eq!(status_of(&mut phone).await, LOGIN_REDIRECT);
    assert_eq!(
        status_of(&mut phone).await,
        LOGIN_REDIRECT,
        "the ended browser does not come back from its remember cookie"
    );
}

// ---------------------------------------------------------------------------
// Growing the feed
// ---------------------------------------------------------------------------

/// With one session cookie of an account of their own, ended long ago, the
/// attacker posts `/logout` again and again with a junk `_remember`
/// cookie. Each logout appended the same ending to the store's feed again,
/// kept for ten years (no record, and "a remember cookie"), and every
/// instance read each one: unbounded growth of the store and of every
/// instance's catch-up, for no password. A session already ended must not
/// be ended again.
#[tokio::test]
async fn replaying_logout_with_an_ended_cookie_does_not_grow_the_feed() {
    let db = Db::new();
    let store = MemoryStore::new();
    let clock = Clock::system();
    let registry = registry(store.clone(), &clock).await;
    let site = app(&db, loader(db.clone()), registry, StatelessRemember, &clock);
    let mut browser = Client::new(site.clone());
    log_in(&mut browser, "user001", "off").await;
    let copy = browser.cookie("session").unwrap();
    browser.post("/logout").await;
    for _ in 0..20 {
        let mut replay = browser_with(&site, &[("session", &copy), ("_remember", "junk")]);
        replay.post("/logout").await;
    }
    let feed = SessionStore::changes(&store, 0, 1000).await.unwrap();
    assert_eq!(feed.len(), 1, "one ending, however often replayed");
}

// ---------------------------------------------------------------------------
// refuse_when_stale
// ---------------------------------------------------------------------------

/// An app sets `refuse_when_stale(2 s)`. The store is healthy, but the
/// registry only reads it every 5 seconds (a store with a feed and no
/// change): from 2 s after each read, every session was refused, so every
/// user was logged out most of the time. A healthy store must keep the
/// registry fresh enough for its own limit.
#[tokio::test]
async fn refuse_when_stale_below_the_read_period_keeps_healthy_sessions() {
    let db = Db::new();
    let clock = Clock::manual(SystemTime::now());
    let registry = SessionRegistry::builder(MemoryStore::new())
        .clock(clock.clone())
        .refuse_when_stale(Duration::from_secs(2))
        .connect()
        .await
        .unwrap();
    let site = app(&db, loader(db.clone()), registry, StatelessRemember, &clock);
    let mut browser = Client::new(site);
    log_in(&mut browser, "user001", "off").await;
    // The registry's first reads of its store are done by now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(Duration::from_secs(3));
    assert_eq!(
        until_status(&mut browser, StatusCode::OK, Duration::from_millis(2500)).await,
        StatusCode::OK,
        "the store answers: the session is served"
    );
}

// ---------------------------------------------------------------------------
// A store whose numbering starts over
// ---------------------------------------------------------------------------

/// A `MemoryStore` that can be swapped for an empty one, with no error seen
/// by anyone: a SQLite file restored from a backup or recreated, a Redis
/// `FLUSHALL`, a table truncated with its identity restarted.
#[derive(Clone)]
struct Resettable(Arc<Mutex<MemoryStore>>);

impl Resettable {
    fn inner(&self) -> MemoryStore {
        self.0.lock().unwrap().clone()
    }
}

impl SessionStore for Resettable {
    async fn save(&self, record: &SessionRecord) -> Result<(), StoreError> {
        SessionStore::save(&self.inner(), record).await
    }
    async fn touch(&self, session_id: &str, at: u64) -> Result<(), StoreError> {
        SessionStore::touch(&self.inner(), session_id, at).await
    }
    async fn list(&self, user_id: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        SessionStore::list(&self.inner(), user_id, now).await
    }
    async fn end(&self, ending: &Ending) -> Result<u64, StoreError> {
        SessionStore::end(&self.inner(), ending).await
    }
    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        SessionStore::changes(&self.inner(), after, limit).await
    }
    async fn purge(&self, now: u64) -> Result<u64, StoreError> {
        SessionStore::purge(&self.inner(), now).await
    }
}

/// The registry's store starts over with its numbering (see `Resettable`)
/// while instances run. The victim then logs out on A; the attacker
/// replays the victim's copied cookie on B. B had applied changes up to
/// number 1 before the reset, so the new store's change number 1, the
/// victim's logout, is never read: B accepts the copy for as long as it
/// runs. SECURITY.md: "an ending is never lost". An instance must notice
/// that the numbering went back and read the feed again.
#[tokio::test]
async fn a_store_whose_numbering_starts_over_makes_an_instance_miss_an_ending() {
    let db = Db::new();
    let clock = Clock::system();
    let store = Resettable(Arc::new(Mutex::new(MemoryStore::new())));
    let registry_a = registry(store.clone(), &clock).await;
    let registry_b = registry(store.clone(), &clock).await;
    let a = app(
        &db,
        loader(db.clone()),
        registry_a,
        StatelessRemember,
        &clock,
    );
    let b = app(
        &db,
        loader(db.clone()),
        registry_b.clone(),
        StatelessRemember,
        &clock,
    );
    // One ending before the reset, which B applies: B is at number 1.
    let mut earlier = Client::new(a.clone());
    log_in(&mut earlier, "user002", "off").await;
    earlier.post("/logout").await;
    until(|| registry_b.ended_size().sessions == 1).await;
    assert_eq!(registry_b.ended_size().sessions, 1);

    *store.0.lock().unwrap() = MemoryStore::new();
    let mut victim = Client::new(a.clone());
    log_in(&mut victim, "user001", "off").await;
    let copy = victim.cookie("session").unwrap();
    victim.post("/logout").await;

    let mut replay = browser_with(&b, &[("session", &copy)]);
    assert_eq!(
        until_status(&mut replay, LOGIN_REDIRECT, Duration::from_secs(3)).await,
        LOGIN_REDIRECT,
        "B hears of the logout"
    );
}
