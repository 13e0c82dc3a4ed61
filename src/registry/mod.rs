//! The session registry: where a user is logged in, and ending those
//! sessions server-side, on every instance of the app, with no store round
//! trip on the request path.
//!
//! latch's sessions live in signed cookies, so a copy of a cookie keeps
//! working until it expires. With a [`SessionRegistry`] on the
//! [`Login`](crate::Login) layer ([`Login::sessions`](crate::Login::sessions)):
//!
//! - every login is recorded (browser, when it began, when last seen), and
//!   [`Auth::sessions`](crate::Auth::sessions) lists them;
//! - [`Auth::logout_user`](crate::Auth::logout_user) ends the session on the
//!   server, so a copy of the cookie taken before the logout stops working;
//!   [`Auth::end_session`](crate::Auth::end_session),
//!   [`end_other_sessions`](crate::Auth::end_other_sessions) and
//!   [`end_all_sessions`](crate::Auth::end_all_sessions) end others, and the
//!   registry itself does the same outside a request (an admin, a disabled
//!   account);
//! - each instance keeps the endings in memory and checks every logged-in
//!   request against them; the store's change feed (Redis pub/sub,
//!   PostgreSQL `LISTEN`, or polling for SQLite) brings endings made on
//!   other instances within about a second.
//!
//! ```
//! # #[cfg(feature = "memory")]
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use axum_latch::registry::SessionRegistry;
//! use axum_latch::stores::MemoryStore;
//! use axum_latch::{Login, User};
//! # #[derive(Clone)] struct Account;
//! # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
//! # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
//!
//! let registry = SessionRegistry::connect(MemoryStore::new()).await?;
//! let login = Login::new(load).sessions(registry.clone());
//! // Elsewhere, outside any request: an admin ends every session of user 7.
//! registry.end_all(&7).await?;
//! # Ok::<(), axum_latch::registry::RegistryError>(())
//! # }).unwrap();
//! ```
//!
//! **While the feed is down** (the store unreachable), each instance keeps
//! serving with the endings it knows, logs an error, and reads the whole
//! change feed again once the store is back (a store that came back empty
//! numbers its changes from the start; an ending applied twice changes
//! nothing): no ending the store holds is missed. Endings made
//! while the store is down apply at once on the instance that made them and
//! are written to the store when it is back (while that instance runs). An
//! app that would rather refuse every session than accept one that may have
//! ended elsewhere sets [`RegistryBuilder::refuse_when_stale`].

mod ended;
mod feed;
mod record;
mod store;

pub(crate) use ended::SessionKey;
pub use record::{Change, Ending, SessionRecord};
pub use store::{SessionStore, Wake};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Clock;
use crate::remember::{RememberTokens, StoreError, MAX_REMEMBER_DAYS};
use ended::{EndedSet, KeyHasher};

/// How long an ending is kept when the session it ends cannot be looked up:
/// as long as the longest remember-me cookie.
const LONGEST_LIFETIME: u64 = MAX_REMEMBER_DAYS as u64 * 24 * 60 * 60;

/// How many sessions' last touches an instance keeps before starting over.
const MAX_TOUCHED: usize = 100_000;

/// A session registry failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The store behind the registry failed.
    #[error("the session store failed: {0}")]
    Store(#[from] StoreError),
    /// The user's id cannot be written as JSON.
    #[error("the user id cannot be written as JSON: {0}")]
    UserId(#[source] serde_json::Error),
}

/// One of a user's sessions, for a "Where you're logged in" page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSession {
    /// What [`Auth::end_session`](crate::Auth::end_session) and
    /// [`SessionRegistry::end_session`] take. Not a secret.
    pub id: String,
    /// A summary of the browser's `User-Agent`, like `Firefox on Linux`.
    pub device: String,
    /// When the user logged in there (seconds since the Unix epoch).
    pub created_at: u64,
    /// When the browser was last seen (to within the touch period).
    pub last_active_at: u64,
    /// Whether the browser holds a remember-me cookie: ending the session
    /// revokes that too.
    pub remembered: bool,
    /// Whether it is the session of the request that asked.
    pub current: bool,
}

/// The object-safe face of a [`SessionStore`].
trait DynStore: Send + Sync + 'static {
    fn save<'a>(&'a self, record: &'a SessionRecord) -> BoxFuture<'a, Result<(), StoreError>>;
    fn touch<'a>(&'a self, session_id: &'a str, at: u64) -> BoxFuture<'a, Result<(), StoreError>>;
    fn list<'a>(
        &'a self,
        user_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<SessionRecord>, StoreError>>;
    fn end<'a>(&'a self, ending: &'a Ending) -> BoxFuture<'a, Result<u64, StoreError>>;
    fn changes(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Change>, StoreError>>;
    fn listen(&self, wake: Wake) -> BoxFuture<'_, Result<(), StoreError>>;
    fn pushes_changes(&self) -> bool;
    fn purge(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>>;
}

impl<S: SessionStore> DynStore for S {
    fn save<'a>(&'a self, record: &'a SessionRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SessionStore::save(self, record))
    }
    fn touch<'a>(&'a self, session_id: &'a str, at: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SessionStore::touch(self, session_id, at))
    }
    fn list<'a>(
        &'a self,
        user_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<SessionRecord>, StoreError>> {
        Box::pin(SessionStore::list(self, user_id, now))
    }
    fn end<'a>(&'a self, ending: &'a Ending) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(SessionStore::end(self, ending))
    }
    fn changes(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<Change>, StoreError>> {
        Box::pin(SessionStore::changes(self, after, limit))
    }
    fn listen(&self, wake: Wake) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(SessionStore::listen(self, wake))
    }
    fn pushes_changes(&self) -> bool {
        SessionStore::pushes_changes(self)
    }
    fn purge(&self, now: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(SessionStore::purge(self, now))
    }
}

/// The registry's settings; see [`RegistryBuilder`].
#[derive(Debug, Clone)]
struct Settings {
    touch_every: Duration,
    poll_every: Option<Duration>,
    max_per_user: Option<usize>,
    refuse_when_stale: Option<Duration>,
    clock: Clock,
}

/// Sets up a [`SessionRegistry`]: [`SessionRegistry::builder`], then
/// [`connect`](Self::connect).
pub struct RegistryBuilder {
    store: Arc<dyn DynStore>,
    settings: Settings,
}

impl std::fmt::Debug for RegistryBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RegistryBuilder {
    /// How often a session's "last active" time is written (default 5
    /// minutes): at most once per period per session, in the background,
    /// never on every request.
    ///
    /// ```
    /// # #[cfg(feature = "memory")] {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    /// use std::time::Duration;
    ///
    /// let builder = SessionRegistry::builder(MemoryStore::new()).touch_every(Duration::from_secs(60));
    /// # }
    /// ```
    pub fn touch_every(mut self, period: Duration) -> Self {
        self.settings.touch_every = period;
        self
    }

    /// How often the registry reads the store for endings it has not heard
    /// of (default: every second for a store without a change feed, such as
    /// SQLite; every 5 seconds otherwise, as a check on the feed). On
    /// SQLite this is how long an ending takes to reach other instances.
    ///
    /// ```
    /// # #[cfg(feature = "memory")] {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    /// use std::time::Duration;
    ///
    /// let builder = SessionRegistry::builder(MemoryStore::new()).poll_every(Duration::from_millis(500));
    /// # }
    /// ```
    pub fn poll_every(mut self, period: Duration) -> Self {
        self.settings.poll_every = Some(period.max(Duration::from_millis(10)));
        self
    }

    /// At most `max` sessions per user (off by default): a login beyond it
    /// ends the user's sessions that began longest ago (ASVS 7.1.2). Two
    /// logins at the same moment may each end one, leaving fewer.
    ///
    /// ```
    /// # #[cfg(feature = "memory")] {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    ///
    /// let builder = SessionRegistry::builder(MemoryStore::new()).max_sessions_per_user(5);
    /// # }
    /// ```
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.settings.max_per_user = Some(max.max(1));
        self
    }

    /// Refuses every session (each request is anonymous) once the registry
    /// has not heard from its store for `limit`: for apps where accepting a
    /// session that may have been ended elsewhere is worse than logging
    /// everyone out during a store outage. Off by default: the registry logs
    /// an error and keeps serving with the endings it knows. With it, the
    /// registry reads its store at least every third of `limit` (a shorter
    /// [`poll_every`](Self::poll_every) stands), so that a healthy store is
    /// never taken for a stale one.
    ///
    /// ```
    /// # #[cfg(feature = "memory")] {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    /// use std::time::Duration;
    ///
    /// let builder = SessionRegistry::builder(MemoryStore::new()).refuse_when_stale(Duration::from_secs(30));
    /// # }
    /// ```
    pub fn refuse_when_stale(mut self, limit: Duration) -> Self {
        self.settings.refuse_when_stale = Some(limit);
        self
    }

    /// The clock the registry reads (default: the system's); give it the
    /// same [`Clock`] as the [`Session`](crate::Session) layer in tests.
    ///
    /// ```
    /// # #[cfg(feature = "memory")] {
    /// use axum_latch::clock::Clock;
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    ///
    /// let builder = SessionRegistry::builder(MemoryStore::new()).clock(Clock::system());
    /// # }
    /// ```
    pub fn clock(mut self, clock: Clock) -> Self {
        self.settings.clock = clock;
        self
    }

    /// Reads every ending still in force from the store, then follows the
    /// store's change feed in a background task (on the current tokio
    /// runtime) for as long as the registry is in use.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Store`] if the store cannot be read: an instance
    /// that does not know the endings made so far must not start serving.
    pub async fn connect(mut self) -> Result<SessionRegistry, RegistryError> {
        if let Some(limit) = self.settings.refuse_when_stale {
            // A healthy store must be read well within the limit, or every
            // session is refused between two reads.
            let within = (limit / 3).max(Duration::from_millis(10));
            let every = self
                .settings
                .poll_every
                .map_or(within, |every| every.min(within));
            self.settings.poll_every = Some(every);
        }
        let registry = SessionRegistry {
            inner: Arc::new(Inner {
                store: self.store,
                ended: EndedSet::default(),
                settings: self.settings,
                last_seq: AtomicU64::new(0),
                resync: std::sync::atomic::AtomicBool::new(false),
                last_change: Mutex::new(None),
                heard_at: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
                touched: Mutex::default(),
                remember: Mutex::new(None),
                wake: Arc::new(tokio::sync::Notify::new()),
                closed: tokio::sync::watch::channel(()).0,
            }),
        };
        registry.catch_up().await?;
        feed::spawn(&registry);
        Ok(registry)
    }
}

pub(crate) struct Inner {
    store: Arc<dyn DynStore>,
    ended: EndedSet,
    settings: Settings,
    /// The last change this instance has applied.
    last_seq: AtomicU64,
    /// Set when the store was out of reach: read every change again.
    resync: std::sync::atomic::AtomicBool,
    /// The last change applied, checked on every read of the feed.
    last_change: Mutex<Option<Change>>,
    /// When the store last answered a read of the feed (seconds).
    heard_at: AtomicU64,
    /// Endings made here that the store has not taken yet.
    pending: Mutex<Vec<Ending>>,
    /// When this instance last wrote each session's "last active".
    touched: Mutex<HashMap<SessionKey, u64, BuildHasherDefault<KeyHasher>>>,
    /// The login layer's remember-me tokens, revoked with the sessions they restore.
    remember: Mutex<Option<Arc<dyn RememberTokens>>>,
    /// Wakes the feed's follower: a change was heard, or an ending waits.
    wake: Arc<tokio::sync::Notify>,
    /// Dropped with the registry, which stops the feed's listener.
    closed: tokio::sync::watch::Sender<()>,
}

/// Where a user is logged in, and ending those sessions server-side; see the
/// [module](self). Clones share one registry.
#[derive(Clone)]
pub struct SessionRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sessions, users) = self.inner.ended.len();
        f.debug_struct("SessionRegistry")
            .field("ended_sessions", &sessions)
            .field("user_cutoffs", &users)
            .field("last_seq", &self.inner.last_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every change under these locks is one step: never half made.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The JSON text of a user id, as stores key users: written from its JSON
/// value, as sessions carry it (a struct's fields then come in the order a
/// JSON map keeps them, not the struct's).
fn user_json(user_id: &impl Serialize) -> Result<String, RegistryError> {
    serde_json::to_value(user_id)
        .and_then(|value| serde_json::to_string(&value))
        .map_err(RegistryError::UserId)
}

impl SessionRegistry {
    /// A registry over `store`, with the default settings, connected:
    /// [`builder`](Self::builder)`(store).`[`connect`](RegistryBuilder::connect)`()`.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Store`] if the store cannot be read.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    ///
    /// let registry = SessionRegistry::connect(MemoryStore::new()).await?;
    /// assert!(registry.sessions(&7).await?.is_empty());
    /// # Ok::<(), axum_latch::registry::RegistryError>(())
    /// # }).unwrap();
    /// ```
    pub async fn connect(store: impl SessionStore) -> Result<Self, RegistryError> {
        Self::builder(store).connect().await
    }

    /// Settings for a registry over `store`; [`connect`](RegistryBuilder::connect) makes it.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    /// use std::time::Duration;
    ///
    /// let registry = SessionRegistry::builder(MemoryStore::new())
    ///     .max_sessions_per_user(10)
    ///     .touch_every(Duration::from_secs(60))
    ///     .connect()
    ///     .await?;
    /// # Ok::<(), axum_latch::registry::RegistryError>(())
    /// # }).unwrap();
    /// ```
    pub fn builder(store: impl SessionStore) -> RegistryBuilder {
        RegistryBuilder {
            store: Arc::new(store),
            settings: Settings {
                touch_every: Duration::from_secs(5 * 60),
                poll_every: None,
                max_per_user: None,
                refuse_when_stale: None,
                clock: Clock::system(),
            },
        }
    }

    fn now(&self) -> u64 {
        self.inner.settings.clock.unix_secs()
    }

    /// The user's sessions, most recently active first. None is marked
    /// [`current`](ActiveSession::current): outside a request there is no
    /// current one ([`Auth::sessions`](crate::Auth::sessions) marks it).
    ///
    /// # Errors
    ///
    /// [`RegistryError::Store`] if the store failed;
    /// [`RegistryError::UserId`] if the id cannot be written as JSON.
    pub async fn sessions(
        &self,
        user_id: &impl Serialize,
    ) -> Result<Vec<ActiveSession>, RegistryError> {
        let user_id = user_json(user_id)?;
        self.active(&user_id, None).await
    }

    pub(crate) async fn active(
        &self,
        user_id: &str,
        current: Option<&str>,
    ) -> Result<Vec<ActiveSession>, RegistryError> {
        let now = self.now();
        let records = self.inner.store.list(user_id, now).await?;
        Ok(records
            .into_iter()
            .filter(|record| !self.record_ended(record))
            .map(|record| ActiveSession {
                current: current == Some(record.session_id.as_str()),
                id: record.session_id,
                device: record.device,
                created_at: record.created_at,
                last_active_at: record.last_active_at,
                remembered: record.remembered,
            })
            .collect())
    }

    /// Whether this instance knows the record's session to have ended (the
    /// store may not have taken the ending yet).
    fn record_ended(&self, record: &SessionRecord) -> bool {
        let key = crate::crypto::random::session_key(&record.session_id).map(SessionKey);
        key.is_some_and(|key| self.inner.ended.session_ended(key))
            || serde_json::from_str::<Value>(&record.user_id).is_ok_and(|user| {
                self.inner
                    .ended
                    .cut_off(&user, None, Some(record.created_at), key)
            })
    }

    /// Ends one of the user's sessions, by its [`id`](ActiveSession::id):
    /// on every instance, and its remember-me cookie with it. Returns
    /// whether the user had such a session; an id of another user's session
    /// ends nothing.
    ///
    /// # Errors
    ///
    /// [`RegistryError::Store`] if the user's sessions cannot be read (then
    /// nothing has ended).
    pub async fn end_session(
        &self,
        user_id: &impl Serialize,
        session_id: &str,
    ) -> Result<bool, RegistryError> {
        let user_id = user_json(user_id)?;
        let records = self.inner.store.list(&user_id, self.now()).await?;
        let Some(record) = records.into_iter().find(|r| r.session_id == session_id) else {
            return Ok(false);
        };
        self.end_recorded(&record).await;
        Ok(true)
    }

    pub(crate) async fn end_recorded(&self, record: &SessionRecord) {
        self.end(Ending::Session {
            session_id: record.session_id.clone(),
            user_id: record.user_id.clone(),
            until: record.expires_at.max(self.now() + 1),
        })
        .await;
        self.revoke_remembered(&record.user_id, Some(&record.session_id))
            .await;
    }

    /// Ends every session of the user, and every remember-me cookie: an
    /// admin logging a user out everywhere, a disabled account.
    ///
    /// # Errors
    ///
    /// [`RegistryError::UserId`] if the id cannot be written as JSON. A
    /// store that is down is not an error: see [`end_before`](Self::end_before).
    pub async fn end_all(&self, user_id: &impl Serialize) -> Result<(), RegistryError> {
        let user_id = user_json(user_id)?;
        self.cut_off(&user_id, self.now(), None).await;
        self.revoke_remembered(&user_id, None).await;
        Ok(())
    }

    /// Ends every session of the user but `keep` ("log out my other
    /// sessions").
    ///
    /// # Errors
    ///
    /// [`RegistryError::UserId`] if the id cannot be written as JSON.
    pub async fn end_all_except(
        &self,
        user_id: &impl Serialize,
        keep: &str,
    ) -> Result<(), RegistryError> {
        let user_id = user_json(user_id)?;
        self.cut_off(&user_id, self.now(), Some(keep)).await;
        Ok(())
    }

    /// Ends every session (and remember-me cookie) of the user made at or
    /// before `time`, in one write: the per-user "not before" time. Logins
    /// made later are not affected. This is also what ends a user's
    /// Microdot-format cookies after a password change.
    ///
    /// The ending applies on this instance at once. If the store is down,
    /// it is logged, kept, and written when the store is back (while this
    /// instance runs), and other instances hear of it then.
    ///
    /// # Errors
    ///
    /// [`RegistryError::UserId`] if the id cannot be written as JSON.
    pub async fn end_before(
        &self,
        user_id: &impl Serialize,
        time: SystemTime,
    ) -> Result<(), RegistryError> {
        let user_id = user_json(user_id)?;
        let at = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.cut_off(&user_id, at, None).await;
        Ok(())
    }

    /// Ends the user's sessions made up to now but `except`.
    pub(crate) async fn cut_off_json(&self, user_id: &str, except: Option<&str>) {
        self.cut_off(user_id, self.now(), except).await;
    }

    /// Revokes every remember-me token of the user.
    pub(crate) async fn revoke_remembered_json(&self, user_id: &str) {
        self.revoke_remembered(user_id, None).await;
    }

    /// When the registry's record of this session says it could no longer
    /// be valid, if the store has a record and answers.
    pub(crate) async fn recorded_until(&self, user_id: &str, session_id: &str) -> Option<u64> {
        let records = self.inner.store.list(user_id, self.now()).await.ok()?;
        let record = records.into_iter().find(|r| r.session_id == session_id)?;
        Some(record.expires_at.max(self.now() + 1))
    }

    /// Ends a session [`active`](Self::active) listed for the user.
    pub(crate) async fn end_listed(&self, user_id: &str, session: &ActiveSession) {
        let records = self.inner.store.list(user_id, self.now()).await;
        let until = records
            .ok()
            .and_then(|records| records.into_iter().find(|r| r.session_id == session.id))
            .map_or(self.now().saturating_add(LONGEST_LIFETIME), |r| {
                r.expires_at
            });
        self.end_recorded(&SessionRecord {
            session_id: session.id.clone(),
            user_id: user_id.to_owned(),
            device: session.device.clone(),
            created_at: session.created_at,
            last_active_at: session.last_active_at,
            expires_at: until,
            remembered: session.remembered,
        })
        .await;
    }

    async fn cut_off(&self, user_id: &str, not_before: u64, except: Option<&str>) {
        self.end(Ending::User {
            user_id: user_id.to_owned(),
            not_before,
            except: except.map(str::to_owned),
            until: not_before.saturating_add(LONGEST_LIFETIME),
        })
        .await;
    }

    /// Applies an ending here at once, then records it in the store (or
    /// keeps it to record once the store is back).
    pub(crate) async fn end(&self, ending: Ending) {
        self.inner.ended.apply(&ending, self.now());
        match self.inner.store.end(&ending).await {
            Ok(_) => {}
            Err(error) => {
                tracing::error!(target: "latch", %error, user_id = %ending.user_id(), "session ending not recorded: the store failed; retrying");
                lock(&self.inner.pending).push(ending);
                self.inner.wake.notify_one();
            }
        }
    }

    /// Revokes the remember-me tokens of one session (or all the user's).
    async fn revoke_remembered(&self, user_id: &str, session_id: Option<&str>) {
        let Some(tokens) = lock(&self.inner.remember).clone() else {
            return;
        };
        let Ok(user) = serde_json::from_str::<Value>(user_id) else {
            return;
        };
        let revoked = match session_id {
            Some(id) => tokens.revoke_device(&user, id).await.map(drop),
            None => tokens.revoke_user(&user).await,
        };
        if let Err(error) = revoked {
            // The ended set refuses the token anyway when it comes back.
            tracing::error!(target: "latch", %error, "remember token of an ended session not revoked");
        }
    }

    /// The remember-me tokens that sessions of this registry are restored from.
    pub(crate) fn link_remember(&self, tokens: Arc<dyn RememberTokens>) {
        *lock(&self.inner.remember) = Some(tokens);
    }

    /// Records a login (a password login, or a restore from a remember-me
    /// cookie), then enforces the cap on sessions per user.
    pub(crate) async fn record(&self, record: SessionRecord) {
        if let Err(error) = self.inner.store.save(&record).await {
            tracing::error!(target: "latch", %error, "session not recorded: the store failed");
            return;
        }
        if let Some(key) = crate::crypto::random::session_key(&record.session_id) {
            lock(&self.inner.touched).insert(SessionKey(key), record.last_active_at);
        }
        let mut sessions = match self.inner.store.list(&record.user_id, self.now()).await {
            Ok(sessions) => sessions,
            Err(error) => {
                tracing::error!(target: "latch", %error, "session's record not checked: the store failed");
                return;
            }
        };
        if !sessions.iter().any(|r| r.session_id == record.session_id) {
            // The store keeps this session ended: a restore raced a cut-off
            // that this instance has not heard of yet (or heard of after
            // checking). The login it wrote begins after the cut-off, so
            // the cut-off alone would never refuse it: end it by its id.
            tracing::info!(target: "latch", user_id = %record.user_id, "session ended: the store had ended it as it was restored");
            self.end_recorded(&record).await;
            return;
        }
        let Some(max) = self.inner.settings.max_per_user else {
            return;
        };
        sessions.retain(|other| !self.record_ended(other));
        if sessions.len() <= max {
            return;
        }
        sessions.sort_by_key(|other| (other.created_at, other.last_active_at));
        let excess = sessions.len() - max;
        for other in sessions
            .iter()
            .filter(|other| other.session_id != record.session_id)
            .take(excess)
        {
            tracing::info!(target: "latch", user_id = %other.user_id, "session ended: over the cap on sessions per user");
            self.end_recorded(other).await;
        }
    }

    /// Why a login must be refused, if it must: its session has ended, it
    /// began before its user's cut-off, or (with
    /// [`refuse_when_stale`](RegistryBuilder::refuse_when_stale)) the
    /// registry has not heard from its store for too long.
    pub(crate) fn refusal(
        &self,
        key: Option<SessionKey>,
        user_id: &Value,
        user_hash: Option<&std::sync::OnceLock<u64>>,
        login_at: Option<u64>,
        now: u64,
    ) -> Option<Refused> {
        if let Some(limit) = self.inner.settings.refuse_when_stale {
            let heard = self.inner.heard_at.load(Ordering::Acquire);
            if now.saturating_sub(heard) > limit.as_secs() {
                return Some(Refused::Stale);
            }
        }
        if key.is_some_and(|key| self.inner.ended.session_ended(key)) {
            return Some(Refused::Ended("the session was ended"));
        }
        if self.inner.ended.cut_off(user_id, user_hash, login_at, key) {
            return Some(Refused::Ended(
                "the login began before the user's sessions were ended",
            ));
        }
        None
    }

    /// Whether this instance knows the session to have been ended by its id.
    pub(crate) fn ended_here(&self, key: SessionKey) -> bool {
        self.inner.ended.session_ended(key)
    }

    /// Notes that a session was seen at `now`: at most once per touch
    /// period, writes its "last active" in the background.
    /// `memo`, the session cookie's own note of its last touch, spares the
    /// lookup in the instance's table while the cookie is the same.
    pub(crate) fn seen(
        &self,
        key: SessionKey,
        session_id: &str,
        now: u64,
        memo: Option<&AtomicU64>,
    ) {
        let period = self.inner.settings.touch_every.as_secs();
        if let Some(memo) = memo {
            let last = memo.load(Ordering::Relaxed);
            if last != 0 && now.saturating_sub(last) < period {
                return;
            }
        }
        {
            let mut touched = lock(&self.inner.touched);
            if let Some(last) = touched.get(&key) {
                if now.saturating_sub(*last) < period {
                    if let Some(memo) = memo {
                        memo.store(*last, Ordering::Relaxed);
                    }
                    return;
                }
            }
            if let Some(memo) = memo {
                memo.store(now.max(1), Ordering::Relaxed);
            }
            if touched.len() >= MAX_TOUCHED {
                touched.retain(|_, last| now.saturating_sub(*last) < period);
                if touched.len() >= MAX_TOUCHED {
                    touched.clear();
                }
            }
            touched.insert(key, now);
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.inner.store.clone();
            let session_id = session_id.to_owned();
            runtime.spawn(async move {
                if let Err(error) = store.touch(&session_id, now).await {
                    tracing::warn!(target: "latch", %error, "session's last activity not recorded");
                }
            });
        }
    }

    /// Reads the changes after the last one applied, until there are none.
    /// After the store was out of reach, reads them all again: a store that
    /// came back empty (a Redis restarted without persistence) numbers its
    /// changes from the start again, and applying a change twice is harmless.
    pub(crate) async fn catch_up(&self) -> Result<(), StoreError> {
        const PAGE: usize = 10_000;
        let result = async {
            if !self.inner.resync.load(Ordering::Acquire) && !self.last_change_still_there().await? {
                // The store's numbering started over (restored, flushed,
                // truncated) without an error seen here.
                tracing::warn!(target: "latch", "session store's change feed started over; reading it all again");
                self.resync();
            }
            if self.inner.resync.swap(false, Ordering::AcqRel) {
                self.inner.last_seq.store(0, Ordering::Release);
                *lock(&self.inner.last_change) = None;
            }
            self.read_changes(PAGE).await
        }
        .await;
        if result.is_err() {
            self.inner.resync.store(true, Ordering::Release);
        }
        result
    }

    /// Marks that the next catch-up must read every change again.
    pub(crate) fn resync(&self) {
        self.inner.resync.store(true, Ordering::Release);
    }

    /// Whether the last change applied here is still in the store under
    /// its number. A store that lost its feed and numbers anew would hand
    /// out numbers this instance believes it has read.
    async fn last_change_still_there(&self) -> Result<bool, StoreError> {
        let Some(last) = lock(&self.inner.last_change).clone() else {
            return Ok(true);
        };
        let found = self.inner.store.changes(last.seq - 1, 1).await?;
        Ok(found.first() == Some(&last))
    }

    async fn read_changes(&self, page: usize) -> Result<(), StoreError> {
        loop {
            let after = self.inner.last_seq.load(Ordering::Acquire);
            let changes = self.inner.store.changes(after, page).await?;
            let now = self.now();
            for change in &changes {
                self.inner.ended.apply(&change.ending, now);
            }
            if let Some(last) = changes.last() {
                self.inner.last_seq.fetch_max(last.seq, Ordering::AcqRel);
                *lock(&self.inner.last_change) = Some(last.clone());
            }
            if changes.len() < page {
                self.inner.heard_at.store(now, Ordering::Release);
                return Ok(());
            }
        }
    }

    /// How many ended sessions and user cut-offs this instance keeps, and
    /// the bytes its table of ended sessions takes: for capacity planning.
    ///
    /// ```
    /// # #[cfg(feature = "memory")]
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::MemoryStore;
    ///
    /// let registry = SessionRegistry::connect(MemoryStore::new()).await?;
    /// let size = registry.ended_size();
    /// assert_eq!((size.sessions, size.users), (0, 0));
    /// # Ok::<(), axum_latch::registry::RegistryError>(())
    /// # }).unwrap();
    /// ```
    pub fn ended_size(&self) -> EndedSize {
        let (sessions, users) = self.inner.ended.len();
        EndedSize {
            sessions,
            users,
            bytes: self.inner.ended.heap_bytes(),
        }
    }

    /// How long an ending is kept when its session's record is not at hand.
    pub(crate) const LONGEST_LIFETIME: u64 = LONGEST_LIFETIME;
}

/// Why the registry refuses a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It has been ended (the reason, for the log): for good.
    Ended(&'static str),
    /// The registry has not heard from its store for too long: for now.
    Stale,
}

/// What a registry keeps in memory: [`SessionRegistry::ended_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndedSize {
    /// Ended sessions kept (until they could no longer be valid anyway).
    pub sessions: usize,
    /// Users with a cut-off.
    pub users: usize,
    /// Bytes the table of ended sessions takes, about.
    pub bytes: usize,
}
