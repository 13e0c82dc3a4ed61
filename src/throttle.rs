//! Throttling of failed logins: counts per username and per client address,
//! with a delay that doubles past a limit, in memory or on Redis.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

#[cfg(feature = "redis")]
mod redis;

/// Slows down password guessing: counts failed logins per username and per
/// client address, and once a count passes its limit, refuses logins for a
/// delay that doubles with each further failure.
///
/// Call [`check`](Self::check) before checking a password (and answer with
/// the [`Throttled`] it returns, without checking the password), then
/// [`failed`](Self::failed) after a wrong password or an unknown username,
/// or [`succeeded`](Self::succeeded) after a right one:
///
/// ```
/// use axum::{
///     extract::{ConnectInfo, Form, State},
///     http::StatusCode,
///     response::{IntoResponse, Response},
///     routing::post,
///     Router,
/// };
/// use latch::{Throttle, Throttled};
/// use std::net::SocketAddr;
///
/// #[derive(serde::Deserialize)]
/// struct Credentials {
///     username: String,
///     password: String,
/// }
///
/// # fn password_ok(_: &str, _: &str) -> bool { false }
/// async fn login(
///     State(throttle): State<Throttle>,
///     ConnectInfo(client): ConnectInfo<SocketAddr>,
///     Form(form): Form<Credentials>,
/// ) -> Result<Response, Throttled> {
///     let address = Some(client.ip());
///     // 429 Too Many Requests, with Retry-After, while throttled.
///     throttle.check(&form.username, address).await?;
///     if password_ok(&form.username, &form.password) {
///         throttle.succeeded(&form.username, address).await;
///         // auth.login_user(&user, remember).await ...
///         Ok("Welcome!".into_response())
///     } else {
///         throttle.failed(&form.username, address).await;
///         Ok((StatusCode::UNAUTHORIZED, "Wrong username or password.").into_response())
///     }
/// }
///
/// let throttle = Throttle::in_memory().username_limit(5).address_limit(20);
/// let app: Router = Router::new()
///     .route("/login", post(login))
///     .with_state(throttle);
/// // Serve it with `app.into_make_service_with_connect_info::<SocketAddr>()`
/// // so that `ConnectInfo` has the client's address.
/// ```
///
/// # Counting
///
/// Two counts are kept, each under a key of its own:
///
/// - one per **username**, trimmed and lowercased (so `" Susan"` and
///   `"susan"` count together; past 256 bytes it is cut short). Guessing the
///   password of one account from many addresses is slowed by this count.
///   Count failures for usernames that do not exist too, or the throttle
///   tells which ones do.
/// - one per **client address**: an IPv4 address, or the /64 network of an
///   IPv6 address (one host usually has a whole /64). An IPv4 address mapped
///   into IPv6 (`::ffff:192.0.2.1`, as a dual-stack socket reports it) counts
///   as the IPv4 address. One address trying many accounts (password
///   spraying) is slowed by this count. Pass `None` when the address is
///   unknown: only the username is counted.
///
/// A key's first `limit` failures cost nothing. Each failure from the
/// limit on blocks the key for `base_delay * 2^(failures - limit)`, capped
/// at `max_delay`: with the defaults, the 5th failure for a username blocks
/// it for 1 s, the 6th for 2 s, the 7th for 4 s, and so on up to 15 minutes.
/// A key's failures are forgotten once `window` has passed since its last
/// failure (a block that outlasts the window is still served). `succeeded`
/// resets the username's count, not the address's: otherwise an attacker
/// with one account of their own could reset their address between
/// guesses.
///
/// # Defaults
///
/// | setting | default | |
/// |---|---|---|
/// | [`username_limit`](Self::username_limit) | 5 | failures before one username is slowed |
/// | [`address_limit`](Self::address_limit) | 20 | failures before one address is slowed |
/// | [`base_delay`](Self::base_delay) | 1 s | the first block |
/// | [`max_delay`](Self::max_delay) | 15 min | the longest block |
/// | [`window`](Self::window) | 1 h | how long failures are remembered |
///
/// The username limit is low because a real user mistypes a password a few
/// times, not dozens; the address limit is higher because many users can
/// share an address (an office, a mobile carrier's NAT). The cap matters
/// because anyone can fail logins with any username: it bounds how long an
/// attacker can lock a victim out of their account, the victim can log in
/// at most 15 minutes after the attacker stops, and other users are never
/// affected (unless they share the attacker's address). Within the cap, the
/// doubling lets an attacker try only a few passwords an hour per account.
///
/// # Behind a proxy
///
/// Pass the address of the client, not of a reverse proxy in front of the
/// app: every request through the proxy would share one count, and 20
/// failures anywhere would slow logins for everyone. Take the address from
/// the header your proxy sets (and only from a proxy you trust), or pass
/// `None`.
///
/// # Backends
///
/// [`Throttle::in_memory`] keeps the counts in the process, for an app that
/// runs as one process; [`Throttle::redis`] (cargo feature `redis`) keeps
/// them in Redis, shared by every instance of the app that uses the same
/// [prefix](Self::prefix). Clones of a throttle share its counts; the
/// settings are each clone's own.
///
/// When Redis fails, the throttle **fails open**: `check` logs an `error`
/// event (target `latch`) and lets the login go on, and `failed` and
/// `succeeded` log the error and return. A store outage should not lock
/// every user out of the app nor turn logins into 500s; passwords are still
/// checked, only not throttled, for as long as the outage lasts.
#[derive(Clone)]
pub struct Throttle {
    settings: Settings,
    backend: Backend,
}

/// The limits and delays, with times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    username_limit: u32,
    address_limit: u32,
    base_delay: u64,
    max_delay: u64,
    window: u64,
    max_entries: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            username_limit: 5,
            address_limit: 20,
            base_delay: 1_000,
            max_delay: 15 * 60 * 1_000,
            window: 60 * 60 * 1_000,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<Counts>>),
    #[cfg(feature = "redis")]
    Redis(self::redis::RedisThrottle),
}

/// What a backend fails with: only Redis can.
#[cfg(feature = "redis")]
type BackendError = self::redis::Error;
#[cfg(not(feature = "redis"))]
type BackendError = std::convert::Infallible;

/// How many keys the in-memory throttle keeps when none is set.
const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// The longest username key, in bytes; longer names are cut short.
const MAX_USERNAME_LEN: usize = 256;

/// The longest time a setting takes, in milliseconds (about 35,000
/// years): times stay exact in Redis's Lua numbers, and sums cannot
/// overflow.
const MAX_MILLIS: u64 = 1 << 50;

impl Throttle {
    /// A throttle that keeps its counts in this process's memory.
    ///
    /// Counts are lost on restart and not shared between processes. The
    /// number of keys is capped (see [`max_entries`](Self::max_entries)),
    /// so a flood of failed logins cannot make it grow without bound.
    ///
    /// ```
    /// use latch::Throttle;
    /// use std::time::Duration;
    ///
    /// let throttle = Throttle::in_memory()
    ///     .username_limit(3)
    ///     .max_delay(Duration::from_secs(5 * 60));
    /// ```
    pub fn in_memory() -> Self {
        Self {
            settings: Settings::default(),
            backend: Backend::Memory(Arc::default()),
        }
    }

    /// A throttle that keeps its counts in Redis (cargo feature `redis`), so
    /// that every instance of the app shares them; keys start with `latch:`
    /// unless set with [`prefix`](Self::prefix).
    ///
    /// Each key is a hash with the fields `failures`, `last_failure` and
    /// `blocked_until` (milliseconds since the Unix epoch, by the app's
    /// clock), updated by one Lua script per failed login, so concurrent
    /// failures from many instances all count. A key expires (by `PEXPIRE`)
    /// once its failures are forgotten and its block is over:
    ///
    /// - `{prefix}throttle:user:{username}`, the username trimmed and
    ///   lowercased;
    /// - `{prefix}throttle:addr:{address}`: `192.0.2.1`, or an IPv6 /64
    ///   such as `2001:db8:1:2::/64`.
    ///
    /// A failed login updates both of its keys in one script, so this needs
    /// one Redis server (standalone or a primary), not Redis Cluster.
    /// Give it a [`ConnectionManager`](::redis::aio::ConnectionManager)
    /// that fails fast, as for
    /// [`RedisStore`](crate::stores::RedisStore#connecting): while Redis is
    /// down, every login waits for the manager before it goes on
    /// unthrottled. A call whose connection is refused is tried once more.
    ///
    /// ```no_run
    /// use latch::Throttle;
    /// use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    /// use std::time::Duration;
    ///
    /// # async fn run() -> Result<(), redis::RedisError> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let config = ConnectionManagerConfig::new()
    ///     .set_connection_timeout(Some(Duration::from_millis(500)))
    ///     .set_response_timeout(Some(Duration::from_millis(500)))
    ///     .set_number_of_retries(1)
    ///     .set_max_delay(Duration::from_millis(200));
    /// let manager = ConnectionManager::new_with_config(client, config).await?;
    /// let throttle = Throttle::redis(manager).prefix("myapp:");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(manager: ::redis::aio::ConnectionManager) -> Self {
        Self {
            settings: Settings::default(),
            backend: Backend::Redis(self::redis::RedisThrottle::new(manager)),
        }
    }

    /// Puts the Redis keys under `prefix` (default `latch:`; include a
    /// separator, as in `myapp:`). Throttles with the same prefix on the
    /// same Redis share their counts; with different prefixes they never
    /// see each other's. An in-memory throttle ignores the prefix: it
    /// shares counts only with its clones.
    ///
    /// ```no_run
    /// # async fn run(manager: redis::aio::ConnectionManager) {
    /// let throttle = latch::Throttle::redis(manager).prefix("myapp:");
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        match &mut self.backend {
            Backend::Memory(_) => drop(prefix.into()),
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.set_prefix(prefix.into()),
        }
        self
    }

    /// How many failures one username may have before its logins are
    /// delayed (default 5). With a limit of 0, every failure delays.
    ///
    /// ```
    /// let throttle = latch::Throttle::in_memory().username_limit(10);
    /// ```
    pub fn username_limit(mut self, failures: u32) -> Self {
        self.settings.username_limit = failures;
        self
    }

    /// How many failures one client address (or IPv6 /64) may have before
    /// its logins are delayed (default 20), whatever the usernames tried.
    ///
    /// ```
    /// let throttle = latch::Throttle::in_memory().address_limit(50);
    /// ```
    pub fn address_limit(mut self, failures: u32) -> Self {
        self.settings.address_limit = failures;
        self
    }

    /// The block after the failure that reaches a limit (default 1 second);
    /// each further failure doubles it. Millisecond precision.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let throttle = latch::Throttle::in_memory().base_delay(Duration::from_secs(2));
    /// ```
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.settings.base_delay = millis(delay);
        self
    }

    /// The longest block (default 15 minutes): the doubling stops here.
    /// This is also the longest an attacker can keep a victim locked out
    /// of their account after the attack stops.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let throttle = latch::Throttle::in_memory().max_delay(Duration::from_secs(5 * 60));
    /// ```
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.settings.max_delay = millis(delay);
        self
    }

    /// How long failures are remembered (default 1 hour): a key's count
    /// starts again from zero once this long has passed since its last
    /// failure.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let throttle = latch::Throttle::in_memory().window(Duration::from_secs(24 * 60 * 60));
    /// ```
    pub fn window(mut self, window: Duration) -> Self {
        self.settings.window = millis(window);
        self
    }

    /// The most keys (usernames and addresses) the in-memory throttle keeps
    /// (default 100,000, a few tens of megabytes at most; at least 2).
    /// Keys whose failures are forgotten are dropped first; if that is not
    /// enough, a quarter of the keys are dropped, those not blocked and
    /// with the oldest last failure first. The Redis throttle ignores this:
    /// its keys expire by TTL.
    ///
    /// ```
    /// let throttle = latch::Throttle::in_memory().max_entries(10_000);
    /// ```
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.settings.max_entries = entries.max(2);
        self
    }

    /// Whether a login for `username` from `address` may go ahead now.
    /// Call it before checking the password; on `Err`, answer with the
    /// [`Throttled`] (a `429` response) and do not check the password.
    ///
    /// If the store fails, this logs the error and returns `Ok`: see
    /// [Backends](Self#backends).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = latch::Throttle::in_memory().username_limit(1);
    /// let address = "192.0.2.1".parse().ok();
    /// assert!(throttle.check("susan", address).await.is_ok());
    /// throttle.failed("susan", address).await;
    /// let throttled = throttle.check("susan", address).await.unwrap_err();
    /// assert_eq!(throttled.retry_after_secs(), 1);
    /// # });
    /// ```
    pub async fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), Throttled> {
        self.check_at(username, address, SystemTime::now()).await
    }

    /// Counts a failed login for `username` from `address`: a wrong
    /// password, or a username that does not exist.
    ///
    /// If the store fails, this logs the error: the failure is not counted.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = latch::Throttle::in_memory();
    /// throttle.failed("susan", "2001:db8::1".parse().ok()).await;
    /// # });
    /// ```
    pub async fn failed(&self, username: &str, address: Option<IpAddr>) {
        self.failed_at(username, address, SystemTime::now()).await;
    }

    /// Resets the count of `username` after a successful login. The
    /// address's count is kept (so `address` is not used; it is taken for
    /// symmetry with the other methods).
    ///
    /// If the store fails, this logs the error.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = latch::Throttle::in_memory().username_limit(2);
    /// throttle.failed("susan", None).await;
    /// throttle.succeeded("susan", None).await;
    /// throttle.failed("susan", None).await;
    /// assert!(throttle.check("susan", None).await.is_ok(), "one failure since the login");
    /// # });
    /// ```
    pub async fn succeeded(&self, username: &str, address: Option<IpAddr>) {
        self.succeeded_at(username, address, SystemTime::now())
            .await;
    }

    /// [`check`](Self::check) at the time `now`, for tests.
    #[doc(hidden)]
    pub async fn check_at(
        &self,
        username: &str,
        address: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<(), Throttled> {
        let keys = Keys::new(username, address);
        let now = epoch_millis(now);
        let blocked_until: Result<u64, BackendError> = match &self.backend {
            Backend::Memory(counts) => Ok(lock(counts).blocked_until(&keys)),
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.blocked_until(&keys).await,
        };
        match blocked_until {
            Ok(until) if until > now => {
                let retry_after = Duration::from_millis(until - now);
                tracing::debug!(target: "latch", ?retry_after, "login throttled");
                Err(Throttled { retry_after })
            }
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::error!(
                    target: "latch", %error,
                    "login throttle not checked: letting the login through"
                );
                Ok(())
            }
        }
    }

    /// [`failed`](Self::failed) at the time `now`, for tests.
    #[doc(hidden)]
    pub async fn failed_at(&self, username: &str, address: Option<IpAddr>, now: SystemTime) {
        let keys = Keys::new(username, address);
        let now = epoch_millis(now);
        let result: Result<(), BackendError> = match &self.backend {
            Backend::Memory(counts) => {
                lock(counts).fail(&keys, &self.settings, now);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.fail(&keys, &self.settings, now).await,
        };
        if let Err(error) = result {
            tracing::error!(target: "latch", %error, "failed login not counted");
        }
    }

    /// [`succeeded`](Self::succeeded) at the time `now`, for tests.
    #[doc(hidden)]
    pub async fn succeeded_at(&self, username: &str, address: Option<IpAddr>, now: SystemTime) {
        let _ = (address, now);
        let keys = Keys::new(username, None);
        let result: Result<(), BackendError> = match &self.backend {
            Backend::Memory(counts) => {
                lock(counts).entries.remove(&keys.username);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.reset(&keys.username).await,
        };
        if let Err(error) = result {
            tracing::error!(target: "latch", %error, "login throttle not reset after a login");
        }
    }
}

impl Default for Throttle {
    /// [`Throttle::in_memory`] with the default settings.
    fn default() -> Self {
        Self::in_memory()
    }
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.backend {
            Backend::Memory(_) => "memory".to_owned(),
            #[cfg(feature = "redis")]
            Backend::Redis(store) => format!("redis, prefix {:?}", store.prefix()),
        };
        let Settings {
            username_limit,
            address_limit,
            base_delay,
            max_delay,
            window,
            max_entries,
        } = self.settings;
        let mut debug = f.debug_struct("Throttle");
        debug
            .field("backend", &backend)
            .field("username_limit", &username_limit)
            .field("address_limit", &address_limit)
            .field("base_delay", &Duration::from_millis(base_delay))
            .field("max_delay", &Duration::from_millis(max_delay))
            .field("window", &Duration::from_millis(window));
        if matches!(self.backend, Backend::Memory(_)) {
            debug.field("max_entries", &max_entries);
        }
        debug.finish()
    }
}

/// A login refused by [`Throttle::check`]: too many failed logins for the
/// username or from the address.
///
/// As a response it is `429 Too Many Requests` with `Retry-After` in whole
/// seconds (rounded up, at least 1) and a short plain-text body. To show
/// your own page instead, use [`retry_after_secs`](Self::retry_after_secs).
///
/// ```
/// use axum::response::IntoResponse;
/// use latch::Throttled;
/// use std::time::Duration;
///
/// let response = Throttled { retry_after: Duration::from_millis(1500) }.into_response();
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins: try again in {} seconds", self.retry_after_secs())]
pub struct Throttled {
    /// How long until a login may be tried again.
    pub retry_after: Duration,
}

impl Throttled {
    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up and at
    /// least 1: the value of the `Retry-After` header.
    ///
    /// ```
    /// use latch::Throttled;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Throttled { retry_after: Duration::ZERO }.retry_after_secs(), 1);
    /// assert_eq!(Throttled { retry_after: Duration::from_millis(60_001) }.retry_after_secs(), 61);
    /// ```
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let rounded = if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        rounded.max(1)
    }
}

impl IntoResponse for Throttled {
    fn into_response(self) -> Response {
        let secs = self.retry_after_secs();
        (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (RETRY_AFTER, HeaderValue::from(secs)),
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
            ],
            format!("Too many failed logins. Try again in {secs} seconds.\n"),
        )
            .into_response()
    }
}

// ---------------------------------------------------------------------------
// Keys and delays, shared by the backends
// ---------------------------------------------------------------------------

/// What a failure is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A normalised username.
    Username(String),
    /// An IPv4 address, or an IPv6 address with its last 64 bits zeroed.
    Address(IpAddr),
}

impl std::fmt::Display for Key {
    /// The key's name in Redis, after the prefix: `throttle:user:susan`,
    /// `throttle:addr:192.0.2.1`, `throttle:addr:2001:db8::/64`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Username(name) => write!(f, "throttle:user:{name}"),
            Key::Address(IpAddr::V4(ip)) => write!(f, "throttle:addr:{ip}"),
            Key::Address(IpAddr::V6(ip)) => write!(f, "throttle:addr:{ip}/64"),
        }
    }
}

/// The keys of one login attempt, with their limits looked up by kind.
#[derive(Debug)]
struct Keys {
    username: Key,
    address: Option<Key>,
}

impl Keys {
    fn new(username: &str, address: Option<IpAddr>) -> Self {
        Self {
            username: Key::Username(normalise_username(username)),
            address: address.map(|ip| Key::Address(network(ip))),
        }
    }

    /// Each key with its limit.
    fn with_limits(&self, settings: &Settings) -> impl Iterator<Item = (&Key, u32)> {
        std::iter::once((&self.username, settings.username_limit)).chain(
            self.address
                .as_ref()
                .map(|key| (key, settings.address_limit)),
        )
    }

    fn iter(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.username).chain(self.address.as_ref())
    }
}

/// Trimmed, lowercased and at most [`MAX_USERNAME_LEN`] bytes.
fn normalise_username(username: &str) -> String {
    let mut name = username.trim().to_lowercase();
    if name.len() > MAX_USERNAME_LEN {
        let mut end = MAX_USERNAME_LEN;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// The address counts are kept for: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
fn network(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(ip) => IpAddr::V4(ip),
        IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(u128::from(ip) & !u128::from(u64::MAX))),
    }
}

/// The block after a key's `failures`-th failure, if it has reached `limit`.
fn delay(settings: &Settings, failures: u64, limit: u32) -> Option<u64> {
    let beyond = failures.checked_sub(u64::from(limit))?;
    let factor = u32::try_from(beyond)
        .ok()
        .and_then(|beyond| 1u64.checked_shl(beyond));
    let delay = match factor {
        Some(factor) => settings.base_delay.saturating_mul(factor),
        // 2^beyond overflows: only a zero base stays below the cap.
        None if settings.base_delay == 0 => 0,
        None => settings.max_delay,
    };
    Some(delay.min(settings.max_delay))
}

/// A duration in milliseconds, at most [`MAX_MILLIS`].
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .min(MAX_MILLIS)
}

/// Milliseconds since the Unix epoch (0 before it).
fn epoch_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The in-memory backend
// ---------------------------------------------------------------------------

/// The in-memory counts.
#[derive(Debug, Default)]
struct Counts {
    entries: HashMap<Key, Entry>,
    /// When to next drop the entries whose failures are forgotten.
    next_sweep: u64,
}

/// One key's failures. Times in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    failures: u64,
    last_failure: u64,
    blocked_until: u64,
}

impl Entry {
    /// Whether the entry no longer matters at `now`: its failures are
    /// forgotten and its block is over.
    fn is_stale(&self, now: u64, window: u64) -> bool {
        now >= self.last_failure.saturating_add(window) && now >= self.blocked_until
    }

    /// Counts a failure at `now` (what the Redis script does, too).
    fn fail(&mut self, settings: &Settings, limit: u32, now: u64) {
        if now.saturating_sub(self.last_failure) >= settings.window {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.last_failure = now;
        if let Some(delay) = delay(settings, self.failures, limit) {
            self.blocked_until = self.blocked_until.max(now.saturating_add(delay));
        }
    }
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    // Every change is complete before anything can panic, so a poisoned
    // lock still guards consistent counts.
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Counts {
    /// The latest time any of the keys is blocked until (0: none is).
    fn blocked_until(&self, keys: &Keys) -> u64 {
        keys.iter()
            .filter_map(|key| self.entries.get(key))
            .map(|entry| entry.blocked_until)
            .max()
            .unwrap_or(0)
    }

    fn fail(&mut self, keys: &Keys, settings: &Settings, now: u64) {
        if now >= self.next_sweep {
            self.sweep(now, settings.window);
            self.next_sweep = now.saturating_add(settings.window.max(1));
        }
        let new = keys
            .iter()
            .filter(|key| !self.entries.contains_key(*key))
            .count();
        if self.entries.len() + new > settings.max_entries {
            self.make_room(new, settings, now);
        }
        for (key, limit) in keys.with_limits(settings) {
            self.entries
                .entry(key.clone())
                .or_default()
                .fail(settings, limit, now);
        }
    }

    /// Drops the entries that no longer matter.
    fn sweep(&mut self, now: u64, window: u64) {
        self.entries.retain(|_, entry| !entry.is_stale(now, window));
    }

    /// Drops entries until `new` more fit, and a quarter of the room is
    /// free: the stale ones, then those not blocked and then the blocked
    /// ones, each by oldest last failure. Dropping a quarter at a time
    /// keeps the cost per failure constant on average under a flood.
    fn make_room(&mut self, new: usize, settings: &Settings, now: u64) {
        self.sweep(now, settings.window);
        let max = settings.max_entries;
        let target = (max - max / 4).min(max.saturating_sub(new));
        if self.entries.len() <= target {
            return;
        }
        let excess = self.entries.len() - target;
        let order = |entry: &Entry| (entry.blocked_until > now, entry.last_failure);
        let mut orders: Vec<(bool, u64)> = self.entries.values().map(order).collect();
        let (_, &mut cutoff, _) = orders.select_nth_unstable(excess - 1);
        // Ties with the cutoff go too: a few more than needed, at worst.
        self.entries.retain(|_, entry| order(entry) > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    /// A throttle and a clock that tests move by hand.
    struct Clock {
        throttle: Throttle,
        now: SystemTime,
    }

    impl Clock {
        fn new(throttle: Throttle) -> Self {
            Self {
                throttle,
                now: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            }
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
        }

        async fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), Throttled> {
            self.throttle.check_at(username, address, self.now).await
        }

        /// How long the login is blocked for (zero: it is not).
        async fn blocked(&self, username: &str, address: Option<IpAddr>) -> Duration {
            match self.check(username, address).await {
                Ok(()) => Duration::ZERO,
                Err(throttled) => throttled.retry_after,
            }
        }

        async fn fail(&self, username: &str, address: Option<IpAddr>) {
            self.throttle.failed_at(username, address, self.now).await;
        }

        async fn fail_times(&self, n: u32, username: &str, address: Option<IpAddr>) {
            for _ in 0..n {
                self.fail(username, address).await;
            }
        }

        async fn succeed(&self, username: &str, address: Option<IpAddr>) {
            self.throttle
                .succeeded_at(username, address, self.now)
                .await;
        }

        fn len(&self) -> usize {
            match &self.throttle.backend {
                Backend::Memory(counts) => lock(counts).entries.len(),
                #[cfg(feature = "redis")]
                Backend::Redis(_) => unreachable!(),
            }
        }
    }

    #[test]
    fn defaults_are_documented_ones() {
        let settings = Throttle::in_memory().settings;
        assert_eq!(settings.username_limit, 5);
        assert_eq!(settings.address_limit, 20);
        assert_eq!(settings.base_delay, 1_000);
        assert_eq!(settings.max_delay, 15 * 60 * 1_000);
        assert_eq!(settings.window, 60 * 60 * 1_000);
        assert_eq!(settings.max_entries, 100_000);
        assert_eq!(
            format!("{:?}", Throttle::default()),
            "Throttle { backend: \"memory\", username_limit: 5, address_limit: 20, \
             base_delay: 1s, max_delay: 900s, window: 3600s, max_entries: 100000 }"
        );
    }

    #[tokio::test]
    async fn the_username_limit_is_free_and_then_the_delay_doubles_up_to_the_cap() {
        let mut clock = Clock::new(
            Throttle::in_memory()
                .username_limit(3)
                .max_delay(Duration::from_secs(10)),
        );
        for _ in 0..2 {
            clock.fail("susan", None).await;
            assert_eq!(clock.blocked("susan", None).await, Duration::ZERO);
        }
        // The 3rd failure reaches the limit: 1 s, then 2, 4, 8, capped at 10.
        for expected in [1, 2, 4, 8, 10, 10, 10] {
            clock.fail("susan", None).await;
            assert_eq!(clock.blocked("susan", None).await, expected * SECOND);
            clock.advance(SECOND / 2);
            assert_eq!(
                clock.blocked("susan", None).await,
                expected * SECOND - SECOND / 2,
                "the block counts down"
            );
            clock.advance(expected * SECOND - SECOND / 2);
            assert_eq!(clock.blocked("susan", None).await, Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn the_default_delays() {
        let mut clock = Clock::new(Throttle::in_memory());
        clock.fail_times(4, "susan", None).await;
        assert_eq!(clock.blocked("susan", None).await, Duration::ZERO);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for n in 0..14 {
            clock.fail("susan", None).await;
            got.push(clock.blocked("susan", None).await);
            expected.push((SECOND * (1 << n)).min(Duration::from_secs(15 * 60)));
            clock.advance(got[n as usize]);
        }
        assert_eq!(got, expected, "1 s, 2 s, ... 512 s, then 15 minutes");
    }

    #[tokio::test]
    async fn no_overflow_after_very_many_failures() {
        let clock = Clock::new(
            Throttle::in_memory()
                .username_limit(0)
                .max_delay(Duration::MAX),
        );
        clock.fail_times(200, "susan", None).await;
        assert_eq!(
            clock.blocked("susan", None).await,
            Duration::from_millis(MAX_MILLIS)
        );
        let zero = Clock::new(Throttle::in_memory().base_delay(Duration::ZERO));
        zero.fail_times(200, "susan", None).await;
        assert_eq!(zero.blocked("susan", None).await, Duration::ZERO);
    }

    #[test]
    fn delays() {
        let settings = Settings {
            base_delay: 3,
            max_delay: 100,
            ..Settings::default()
        };
        assert_eq!(delay(&settings, 4, 5), None);
        assert_eq!(delay(&settings, 5, 5), Some(3));
        assert_eq!(delay(&settings, 6, 5), Some(6));
        assert_eq!(delay(&settings, 10, 5), Some(96));
        assert_eq!(delay(&settings, 11, 5), Some(100));
        assert_eq!(delay(&settings, 5 + 63, 5), Some(100));
        assert_eq!(delay(&settings, 5 + 64, 5), Some(100));
        assert_eq!(delay(&settings, u64::MAX, 0), Some(100));
        assert_eq!(delay(&settings, 1, 0), Some(6), "limit 0: 2^1");
    }

    #[tokio::test]
    async fn other_usernames_are_unaffected() {
        let clock = Clock::new(Throttle::in_memory().username_limit(2));
        clock.fail_times(10, "susan", ip("192.0.2.1")).await;
        assert!(clock.check("susan", ip("192.0.2.99")).await.is_err());
        assert!(clock.check("david", None).await.is_ok());
        assert!(clock.check("david", ip("192.0.2.2")).await.is_ok());
    }

    #[tokio::test]
    async fn usernames_are_trimmed_and_lowercased() {
        let clock = Clock::new(Throttle::in_memory().username_limit(3));
        clock.fail(" Susan ", None).await;
        clock.fail("SUSAN", None).await;
        clock.fail("susan\n", None).await;
        assert!(clock.check("susan", None).await.is_err());
        assert!(clock.check("\tSuSaN", None).await.is_err());
        assert!(clock.check("susan2", None).await.is_ok());
        assert_eq!(clock.len(), 1);
    }

    #[test]
    fn long_usernames_are_cut_at_a_character_boundary() {
        let name = "é".repeat(200); // 400 bytes
        let normal = normalise_username(&name);
        assert_eq!(normal.len(), 256);
        assert_eq!(normal, "é".repeat(128));
        let odd = format!("x{name}");
        assert_eq!(normalise_username(&odd).len(), 255);
        assert_eq!(normalise_username(&"A".repeat(10_000)), "a".repeat(256));
    }

    #[tokio::test]
    async fn the_address_limit_covers_every_username_from_the_address() {
        let clock = Clock::new(Throttle::in_memory().address_limit(5));
        for n in 0..5 {
            let name = format!("user{n}");
            assert!(clock.check(&name, ip("192.0.2.1")).await.is_ok());
            clock.fail(&name, ip("192.0.2.1")).await;
        }
        let throttled = clock.check("someone", ip("192.0.2.1")).await.unwrap_err();
        assert_eq!(throttled.retry_after, SECOND);
        assert!(clock.check("someone", ip("192.0.2.2")).await.is_ok());
        assert!(clock.check("someone", None).await.is_ok());
        assert!(clock.check("user0", None).await.is_ok(), "one failure each");
    }

    #[tokio::test]
    async fn the_longer_block_wins() {
        let clock = Clock::new(Throttle::in_memory().username_limit(1).address_limit(1));
        clock.fail_times(3, "susan", None).await; // 4 s
        clock.fail("david", ip("192.0.2.1")).await; // 1 s each
        assert_eq!(clock.blocked("susan", ip("192.0.2.1")).await, 4 * SECOND);
        assert_eq!(clock.blocked("david", ip("192.0.2.1")).await, SECOND);
        assert_eq!(clock.blocked("carol", ip("192.0.2.1")).await, SECOND);
    }

    #[tokio::test]
    async fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let clock = Clock::new(Throttle::in_memory().address_limit(3));
        clock.fail("a", ip("2001:db8:1:2::1")).await;
        clock
            .fail("b", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .await;
        clock.fail("c", ip("2001:db8:1:2:abcd::")).await;
        assert!(clock.check("d", ip("2001:db8:1:2::9")).await.is_err());
        assert!(clock.check("d", ip("2001:db8:1:3::1")).await.is_ok());
        assert!(clock.check("d", ip("2001:db8:1::1")).await.is_ok());

        clock.fail("a", ip("::ffff:192.0.2.1")).await;
        clock.fail("b", ip("192.0.2.1")).await;
        clock.fail("c", ip("::ffff:192.0.2.1")).await;
        assert!(clock.check("d", ip("192.0.2.1")).await.is_err());
        assert!(
            clock.check("d", ip("::ffff:192.0.2.2")).await.is_ok(),
            "mapped IPv4 addresses are not one /64"
        );

        assert_eq!(
            network("2001:db8::1:2:3:4".parse().unwrap()).to_string(),
            "2001:db8::"
        );
        assert_eq!(
            Key::Address(network("2001:db8:0:5:1:2:3:4".parse().unwrap())).to_string(),
            "throttle:addr:2001:db8:0:5::/64"
        );
        assert_eq!(
            Key::Address(network("::ffff:10.0.0.1".parse().unwrap())).to_string(),
            "throttle:addr:10.0.0.1"
        );
        assert_eq!(
            Key::Username("susan".into()).to_string(),
            "throttle:user:susan"
        );
    }

    #[tokio::test]
    async fn success_resets_the_username_but_not_the_address() {
        let clock = Clock::new(Throttle::in_memory().username_limit(3).address_limit(5));
        let address = ip("192.0.2.1");
        clock.fail_times(2, "susan", address).await;
        clock.succeed("Susan", address).await;
        clock.fail_times(2, "susan", address).await;
        assert!(clock.check("susan", None).await.is_ok(), "2 failures since");
        clock.fail("susan", address).await;
        assert!(
            clock.check("susan", None).await.is_err(),
            "3 failures since"
        );
        // The address has 5 failures: a good login does not reset it.
        clock.succeed("susan", address).await;
        assert!(clock.check("susan", None).await.is_ok());
        assert_eq!(clock.blocked("mallory", address).await, SECOND);
    }

    #[tokio::test]
    async fn failures_are_forgotten_a_window_after_the_last_one() {
        let mut clock = Clock::new(
            Throttle::in_memory()
                .username_limit(3)
                .window(Duration::from_secs(600)),
        );
        clock.fail_times(2, "susan", None).await;
        clock.advance(Duration::from_secs(599));
        clock.fail("susan", None).await;
        assert!(
            clock.check("susan", None).await.is_err(),
            "within the window"
        );
        clock.advance(Duration::from_secs(599));
        clock.fail("susan", None).await;
        assert_eq!(
            clock.blocked("susan", None).await,
            2 * SECOND,
            "the window runs from the last failure"
        );
        clock.advance(Duration::from_secs(600));
        clock.fail_times(2, "susan", None).await;
        assert!(
            clock.check("susan", None).await.is_ok(),
            "counted from zero"
        );
    }

    #[tokio::test]
    async fn a_block_longer_than_the_window_is_served() {
        let mut clock = Clock::new(
            Throttle::in_memory()
                .username_limit(1)
                .base_delay(Duration::from_secs(100))
                .window(Duration::from_secs(10)),
        );
        clock.fail("susan", None).await;
        clock.advance(Duration::from_secs(50));
        assert_eq!(clock.blocked("susan", None).await, Duration::from_secs(50));
        clock.fail("susan", None).await; // counted from zero: 1 failure, 100 s
        clock.advance(Duration::from_secs(60));
        assert_eq!(clock.blocked("susan", None).await, Duration::from_secs(40));
    }

    #[tokio::test]
    async fn stale_entries_are_swept() {
        let mut clock = Clock::new(Throttle::in_memory().window(Duration::from_secs(60)));
        for n in 0..100 {
            clock
                .fail(&format!("user{n}"), ip(&format!("192.0.2.{n}")))
                .await;
        }
        assert_eq!(clock.len(), 200);
        clock.advance(Duration::from_secs(60));
        clock.fail("susan", None).await;
        assert_eq!(clock.len(), 1, "only the new failure is left");
    }

    #[tokio::test]
    async fn the_number_of_entries_is_capped() {
        let mut clock = Clock::new(
            Throttle::in_memory()
                .max_entries(100)
                .username_limit(1)
                .base_delay(Duration::from_secs(60)),
        );
        // A blocked username is kept while entries not blocked are dropped.
        clock.fail("victim", None).await;
        for n in 0..1_000u32 {
            clock.advance(Duration::from_millis(1));
            let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            clock
                .throttle
                .clone()
                .username_limit(100)
                .failed_at(&format!("spray{n}"), Some(address), clock.now)
                .await;
            assert!(clock.len() <= 100, "{} entries", clock.len());
        }
        assert!(clock.len() >= 75, "{} entries", clock.len());
        assert!(clock.check("victim", None).await.is_err(), "still blocked");
        assert!(clock.check("spray999", None).await.is_ok());
        let last = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 999));
        let counts = match &clock.throttle.backend {
            Backend::Memory(counts) => counts.clone(),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => unreachable!(),
        };
        assert!(
            lock(&counts).entries.contains_key(&Key::Address(last)),
            "the newest entries are kept"
        );
        assert!(!lock(&counts)
            .entries
            .contains_key(&Key::Username("spray0".into())));

        let tiny = Clock::new(Throttle::in_memory().max_entries(0));
        tiny.fail("a", ip("192.0.2.1")).await;
        tiny.fail("b", ip("192.0.2.2")).await;
        assert_eq!(tiny.len(), 2, "at least 2: one login's keys");
        assert!(tiny.check("b", None).await.is_ok());
    }

    #[tokio::test]
    async fn clones_share_counts() {
        let clock = Clock::new(Throttle::in_memory().username_limit(2));
        let other = Clock::new(clock.throttle.clone());
        clock.fail("susan", None).await;
        other.fail("susan", None).await;
        assert!(clock.check("susan", None).await.is_err());
        let separate = Clock::new(Throttle::in_memory().username_limit(2));
        separate.fail("susan", None).await;
        assert!(separate.check("susan", None).await.is_ok());
    }

    #[tokio::test]
    async fn throttled_is_a_429_with_retry_after_in_whole_seconds() {
        for (retry_after, header) in [
            (Duration::ZERO, "1"),
            (Duration::from_millis(1), "1"),
            (SECOND, "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::from_secs(900), "900"),
            (Duration::MAX, &u64::MAX.to_string()),
        ] {
            let response = Throttled { retry_after }.into_response();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()[RETRY_AFTER], header, "{retry_after:?}");
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                body,
                format!("Too many failed logins. Try again in {header} seconds.\n")
            );
        }
        assert_eq!(
            Throttled {
                retry_after: Duration::from_millis(2500)
            }
            .to_string(),
            "too many failed logins: try again in 3 seconds"
        );
    }

    #[test]
    fn throttle_and_its_futures_are_send_and_sync() {
        fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let throttle = Throttle::in_memory();
        send_sync(&throttle);
        send(throttle.check("a", None));
        send(throttle.failed("a", None));
        send(throttle.succeeded("a", None));
    }
}
