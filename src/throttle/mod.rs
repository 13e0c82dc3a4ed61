//! Throttling of failed logins: counts per username (or account) and per
//! client address, with a delay that doubles past a limit, in memory or on
//! Redis.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock::Clock;

use unicode_normalization::UnicodeNormalization as _;

#[cfg(feature = "redis")]
mod redis;

/// Slows down password guessing: counts failed logins per username (or
/// account) and per client address, and once a count reaches its limit,
/// refuses logins for a delay that doubles with each further failure.
///
/// Look the username up, then reserve the attempt with
/// [`attempt`](Self::attempt), before checking the password. On `Err`,
/// answer with the [`Throttled`] (a `429`) and do not check the password.
/// On `Ok`, the [`LoginAttempt`] is already counted as a failure: check the
/// password, then call [`succeeded`](LoginAttempt::succeeded) if it was
/// right (which takes the failure back) or [`failed`](LoginAttempt::failed)
/// if not:
///
/// ```
/// use axum::{
///     extract::{ConnectInfo, Form, State},
///     http::StatusCode,
///     response::{IntoResponse, Response},
///     routing::post,
///     Router,
/// };
/// use axum_latch::throttle::{Throttle, Throttled};
/// use std::net::SocketAddr;
///
/// #[derive(serde::Deserialize)]
/// struct Credentials {
///     username: String,
///     password: String,
/// }
///
/// struct Account {
///     id: i64,
///     password_hash: String,
/// }
///
/// # async fn find_account(_: &str) -> Option<Account> { None }
/// # fn password_ok(_: &str, _: &str) -> bool { false }
/// async fn login(
///     State(throttle): State<Throttle>,
///     ConnectInfo(client): ConnectInfo<SocketAddr>,
///     Form(form): Form<Credentials>,
/// ) -> Result<Response, Throttled> {
///     let address = Some(client.ip());
///     // Look the user up first, by the app's own rule...
///     let account = find_account(&form.username).await;
///     // ...then reserve the attempt, under the username as typed and the
///     // account it names: 429 Too Many Requests, with Retry-After, while
///     // throttled.
///     let id = account.as_ref().map(|account| account.id);
///     let attempt = throttle.attempt(&form.username, id, address).await?;
///     // Only then check the password (slow, by design).
///     match account {
///         Some(account) if password_ok(&form.password, &account.password_hash) => {
///             attempt.succeeded().await;
///             // auth.login_user(&user, remember).await ...
///             Ok("Welcome!".into_response())
///         }
///         _ => {
///             attempt.failed();
///             Ok((StatusCode::UNAUTHORIZED, "Wrong username or password.").into_response())
///         }
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
/// Counting the failure before the password is checked, in the same step
/// as the check of the block, is what makes the limit hold under
/// concurrent logins: of a burst of simultaneous guesses for one account,
/// however slow the password hash, no more than the limit get to the
/// password check, and the rest are answered `429` at once. An attempt
/// that is dropped without a word (the handler returned early with an
/// error, panicked, or the client went away and its future was cancelled)
/// stays counted as a failure.
///
/// # Counting
///
/// Each attempt is counted under these keys:
///
/// - the **username** as typed, normalised (see [`attempt`](Self::attempt)),
///   and the **account** it names, by its id in the app, when there is one.
///   Guessing the password of one account from many addresses is slowed
///   by these counts, whose limit is
///   [`username_limit`](Self::username_limit). The account's count holds
///   however the username is spelled; the username's makes an unknown
///   username answer exactly as a known one would, so the throttle does not
///   tell which usernames exist.
/// - the **client address**: an IPv4 address, or the /64 network of an
///   IPv6 address (one host usually has a whole /64). An IPv4 address mapped
///   into IPv6 (`::ffff:192.0.2.1`, as a dual-stack socket reports it) counts
///   as the IPv4 address. One address trying many accounts (password
///   spraying) is slowed by this count, whose limit is
///   [`address_limit`](Self::address_limit). Pass `None` when the address
///   is unknown: only the username and account are counted.
///
/// An attempt is refused if any of its keys is blocked; a refused attempt
/// counts nothing. Otherwise it counts one failure on each key, and a key's
/// `n`-th failure with `n >= limit` blocks it for
/// `base_delay * 2^(n - limit)`, capped at `max_delay`. So, for a key with
/// no failures and a limit of at least 1:
///
/// - its first `limit` attempts go through to the password check;
/// - the `limit`-th of them, as it starts, blocks the key for
///   `base_delay`, and every attempt on the key is refused until the block
///   ends;
/// - the first attempt after that block goes through and blocks the key
///   for `2 * base_delay`, the next one for `4 * base_delay`, and so on up
///   to `max_delay`.
///
/// With the defaults, a username's first 5 attempts go through, the 5th
/// blocks it for 1 s, the 6th (once that second is over) for 2 s, the 7th
/// for 4 s, and so on up to 15 minutes. With a limit of 0, the first
/// attempt goes through and blocks for `2 * base_delay`.
///
/// A right password undoes its attempt: [`LoginAttempt::succeeded`] resets
/// the username's and the account's counts (and so lifts their blocks), and on the
/// address takes back this one failure and the block it set, if any. A
/// right password on the `limit`-th attempt therefore leaves no block
/// behind. The address's other failures stay counted: otherwise an attacker
/// with an account of their own could reset their address between guesses.
///
/// A key's failures are forgotten once `window` has passed since its last
/// failure (a block that outlasts the window is still served).
///
/// # Defaults
///
/// | setting | default | |
/// |---|---|---|
/// | [`username_limit`](Self::username_limit) | 5 | attempts for one account or username before it is slowed |
/// | [`address_limit`](Self::address_limit) | 20 | attempts from one address before it is slowed |
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
/// them in Redis, and [`Throttle::redis_cluster`] in Redis Cluster, shared
/// by every instance of the app that uses the same [prefix](Self::prefix).
/// Clones of a throttle share its counts; the settings are each clone's
/// own.
///
/// When Redis fails, the throttle **fails open**: `attempt` logs an `error`
/// event (target `latch`) and returns a [`LoginAttempt`] that reserved
/// nothing, so the login goes on; its `failed` does nothing, and its
/// `succeeded` only tries to reset the username's and account's counts
/// (logging an `error` if that fails too). A store outage should not lock
/// every user out of the app nor turn logins into 500s; passwords are still
/// checked, only not throttled, for as long as the outage lasts.
#[derive(Clone)]
pub struct Throttle {
    settings: Settings,
    backend: Backend,
    clock: Clock,
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
    /// use axum_latch::throttle::Throttle;
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
            clock: Clock::system(),
        }
    }

    /// A throttle that keeps its counts in Redis (cargo feature `redis`), so
    /// that every instance of the app shares them; keys start with `latch:`
    /// unless set with [`prefix`](Self::prefix).
    ///
    /// Each key is a hash with the fields `failures`, `last_failure` and
    /// `blocked_until` (milliseconds since the Unix epoch, by the app's
    /// clock). An attempt runs one Lua script that reads all of its keys,
    /// refuses if any is blocked, and otherwise counts a failure on
    /// each, so concurrent attempts from many instances are counted one by
    /// one; [`LoginAttempt::succeeded`] runs another script that deletes
    /// the username's and account's keys and takes the attempt back from the
    /// address's (its `failures` down by one, and its `blocked_until` set
    /// back if this attempt set it; `last_failure` stays). A key expires
    /// (by `PEXPIRE`) once its failures are forgotten and its block is
    /// over:
    ///
    /// - `{prefix}throttle:user:{username}`, the username normalised as
    ///   described on [`attempt`](Self::attempt);
    /// - `{prefix}throttle:account:{id}`, the id given to
    ///   [`attempt_account`](Self::attempt_account), as it displays;
    /// - `{prefix}throttle:addr:{address}`: `192.0.2.1`, or an IPv6 /64
    ///   such as `2001:db8:1:2::/64`.
    ///
    /// The scripts touch all the keys of an attempt at once, so this needs
    /// one Redis server (standalone or a primary). For Redis Cluster, use
    /// [`redis_cluster`](Self::redis_cluster); or give this a cluster
    /// connection and a [prefix](Self::prefix) with a hash tag, such as
    /// `{myapp}:`, which keeps every throttle key in one slot (so on one
    /// master) and the attempt in one script. Without either, a cluster
    /// refuses a script over keys of several slots (`CROSSSLOT`), and the
    /// throttle fails open.
    ///
    /// Give it a [`ConnectionManager`](::redis::aio::ConnectionManager)
    /// that fails fast, as for
    /// [`RedisStore`](crate::stores::RedisStore#connecting): while Redis is
    /// down, every login waits for the manager before it goes on
    /// unthrottled. A call whose connection is refused is tried once more.
    /// Any other connection of the `redis` crate that can be cloned for
    /// each call (a
    /// [`MultiplexedConnection`](::redis::aio::MultiplexedConnection),
    /// say) works too.
    ///
    /// ```no_run
    /// use axum_latch::throttle::Throttle;
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
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis<C>(connection: C) -> Self
    where
        C: ::redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self::on_redis(connection, self::redis::Layout::Server)
    }

    /// A throttle that keeps its counts in Redis Cluster (cargo feature
    /// `redis`), shared by every instance of the app: as
    /// [`Throttle::redis`], with the same keys, fields and expiry, but with
    /// one script per key, so that the keys of an attempt may live in
    /// different slots, on different masters.
    ///
    /// An attempt first reads each key's `blocked_until`; if one is
    /// blocked, it is refused and nothing is written. Otherwise each key
    /// runs the attempt script on its own, concurrently: each key checks
    /// and counts atomically, so however many attempts arrive at once, no
    /// key lets more through than its limit. If a key turns out blocked
    /// (another attempt blocked it since the read), the attempt is refused
    /// and taken back from the keys that counted it, as
    /// [`LoginAttempt::not_checked`] takes an attempt back.
    ///
    /// What this gives up against one script over every key: until that
    /// refund, other attempts see the count, so a login racing a refused
    /// attempt may be refused as well, and the keys it was taken back from
    /// keep the `last_failure` and TTL it set. A right
    /// password resets or refunds each key with its own call. To keep
    /// every attempt in one script on a cluster instead, give
    /// [`Throttle::redis`] a prefix with a hash tag: all throttle keys then
    /// share one slot, and one master serves them all.
    ///
    /// Give it a [`ClusterConnection`](::redis::cluster_async::ClusterConnection)
    /// (which finds each key's master and follows the cluster's
    /// redirections), or any connection of the `redis` crate that routes
    /// each command by its key.
    ///
    /// ```no_run
    /// use axum_latch::throttle::Throttle;
    /// use redis::cluster::ClusterClient;
    /// use std::time::Duration;
    ///
    /// # async fn run() -> Result<(), redis::RedisError> {
    /// let client = ClusterClient::builder([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])
    /// .connection_timeout(Duration::from_millis(500))
    /// .response_timeout(Duration::from_millis(500))
    /// .build()?;
    /// let connection = client.get_async_connection().await?;
    /// let throttle = Throttle::redis_cluster(connection).prefix("myapp:");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_cluster<C>(connection: C) -> Self
    where
        C: ::redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self::on_redis(connection, self::redis::Layout::Cluster)
    }

    #[cfg(feature = "redis")]
    fn on_redis<C>(connection: C, layout: self::redis::Layout) -> Self
    where
        C: ::redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self {
            settings: Settings::default(),
            backend: Backend::Redis(self::redis::RedisThrottle::new(connection, layout)),
            clock: Clock::system(),
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
    /// let throttle = axum_latch::throttle::Throttle::redis(manager).prefix("myapp:");
    /// # }
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        match &mut self.backend {
            Backend::Memory(_) => drop(prefix.into()),
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.set_prefix(prefix.into()),
        }
        self
    }

    /// How many attempts one account or username gets before it is
    /// blocked (default 5): the attempt that makes this many failures
    /// blocks it for [`base_delay`](Self::base_delay). With a limit of 0,
    /// every failure blocks.
    ///
    /// ```
    /// let throttle = axum_latch::throttle::Throttle::in_memory().username_limit(10);
    /// ```
    pub fn username_limit(mut self, failures: u32) -> Self {
        self.settings.username_limit = failures;
        self
    }

    /// How many attempts one client address (or IPv6 /64) gets before it
    /// is blocked (default 20), whatever the usernames tried.
    ///
    /// ```
    /// let throttle = axum_latch::throttle::Throttle::in_memory().address_limit(50);
    /// ```
    pub fn address_limit(mut self, failures: u32) -> Self {
        self.settings.address_limit = failures;
        self
    }

    /// The block set by the failure that reaches a limit (default 1
    /// second); each further failure doubles it. Millisecond precision.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let throttle = axum_latch::throttle::Throttle::in_memory().base_delay(Duration::from_secs(2));
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
    /// let throttle = axum_latch::throttle::Throttle::in_memory().max_delay(Duration::from_secs(5 * 60));
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
    /// let throttle = axum_latch::throttle::Throttle::in_memory().window(Duration::from_secs(24 * 60 * 60));
    /// ```
    pub fn window(mut self, window: Duration) -> Self {
        self.settings.window = millis(window);
        self
    }

    /// The most keys (usernames, accounts and addresses) the in-memory
    /// throttle keeps (default 100,000, a few tens of megabytes at most;
    /// at least 2). Keys whose failures are forgotten are dropped first.
    /// If that is not enough, about a quarter of the keys are dropped, the
    /// least telling first: among keys not blocked, address keys and keys
    /// with a single failure go before username and account keys with
    /// several, fewer failures before more, and the oldest last failure
    /// first; blocked keys go last. The keys of the attempt being counted
    /// are kept. So a flood of junk usernames or addresses, one failure
    /// each, does not wipe out the count of an account under attack. The
    /// Redis throttle ignores this: its keys expire by TTL.
    ///
    /// ```
    /// let throttle = axum_latch::throttle::Throttle::in_memory().max_entries(10_000);
    /// ```
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.settings.max_entries = entries.max(2);
        self
    }

    /// Where the throttle reads the time (default the system's): a test
    /// can hand it a [`Clock::manual`] and move it past a block instead of
    /// waiting. On Redis the times are the app's too (kept in the keys), so
    /// instances sharing counts should share a clock; keys still expire by
    /// Redis's own clock.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use axum_latch::clock::Clock;
    /// use axum_latch::throttle::Throttle;
    /// use std::time::{Duration, SystemTime};
    ///
    /// let clock = Clock::manual(SystemTime::now());
    /// let throttle = Throttle::in_memory().username_limit(1).clock(clock.clone());
    /// throttle.attempt("susan", Some(7), None).await.unwrap().failed();
    /// assert!(throttle.attempt("susan", Some(7), None).await.is_err());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(throttle.attempt("susan", Some(7), None).await.is_ok());
    /// # });
    /// ```
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Reserves one login attempt for `username` (and the account it names,
    /// if any) from `address`, or refuses it with [`Throttled`] (answer
    /// with it: a `429`) if any of them is blocked. Call it once the
    /// username has been looked up, before checking the password, and check
    /// the password only on `Ok`.
    ///
    /// The reserved attempt is counted as a failure at once, in the same
    /// step as the check (under a lock in memory, in one script on Redis,
    /// key by key on Redis Cluster: see [`redis_cluster`](Self::redis_cluster)):
    /// call [`LoginAttempt::succeeded`] if the password is right, to take
    /// it back. See [Counting](Self#counting) for how many attempts go
    /// through before a block.
    ///
    /// `account` is the app's id of the account the username names (any
    /// `Display`: an `i64`, a `String`, a UUID...), or `None` when it names
    /// none. With it, every spelling that the app's own lookup takes to that
    /// account (another case, fullwidth letters, another Unicode
    /// normalisation, an e-mail address for a username) shares one count,
    /// whatever rule the lookup follows, so an attacker gets no more
    /// guesses by spelling a username differently. The id is used as it
    /// displays, not normalised, under the key `throttle:account:{id}`.
    ///
    /// The username is counted normalised, under `throttle:user:{name}`:
    /// trimmed of white space, put in Unicode normalisation form NFKC,
    /// lowercased (by `str::to_lowercase`), and cut to its first 256 bytes
    /// (at a character boundary). So `" Susan "`, `"SUSAN"` and the
    /// fullwidth `"ｓｕｓａｎ"` are one username, and so are two names that
    /// differ only after their 256th byte. Usernames that name no account
    /// are counted this way too, with the same limits and delays, and a
    /// known username is counted under its name as well as its account:
    /// blocking one spelling then refuses every spelling that normalises
    /// alike, whether or not it names an account, and the answers do not
    /// tell which usernames exist.
    ///
    /// If the store fails, this logs the error and returns an attempt that
    /// reserved nothing: see [Backends](Self#backends).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = axum_latch::throttle::Throttle::in_memory().username_limit(2);
    /// let address = "192.0.2.1".parse().ok();
    /// // Two attempts go through; the second blocks the username for 1 s.
    /// throttle.attempt("susan", Some(42), address).await.unwrap().failed();
    /// throttle.attempt("SUSAN", Some(42), address).await.unwrap().failed();
    /// let throttled = throttle.attempt(" Susan", Some(42), address).await.unwrap_err();
    /// assert_eq!(throttled.retry_after_secs(), 1);
    /// // The same for a username that names no account.
    /// let no_account: Option<i64> = None;
    /// throttle.attempt("nobody", no_account, address).await.unwrap().failed();
    /// # });
    /// ```
    pub async fn attempt(
        &self,
        username: &str,
        account: Option<impl Display>,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt, Throttled> {
        let keys = Keys::login(username, account, address);
        self.reserve(keys, self.clock.now()).await
    }

    /// Reserves one attempt at a password (or code) of the account the app
    /// knows as `account_id`, from `address`, where no username was typed:
    /// the "current password" of a change-password form, say. It shares
    /// the account's count with [`attempt`](Self::attempt), so failures on
    /// either slow both, with the same limit.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = axum_latch::throttle::Throttle::in_memory().username_limit(1);
    /// throttle.attempt_account(42, None).await.unwrap().failed();
    /// assert!(throttle.attempt_account(42, None).await.is_err());
    /// assert!(throttle.attempt("susan", Some(42), None).await.is_err(), "one count");
    /// assert!(throttle.attempt_account("user-43", None).await.is_ok());
    /// # });
    /// ```
    pub async fn attempt_account(
        &self,
        account_id: impl Display,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt, Throttled> {
        let keys = Keys::account(account_id, address);
        self.reserve(keys, self.clock.now()).await
    }

    async fn reserve(&self, keys: Keys, now: SystemTime) -> Result<LoginAttempt, Throttled> {
        let now = epoch_millis(now);
        let reservation: Result<Reservation, BackendError> = match &self.backend {
            Backend::Memory(counts) => Ok(lock(counts).attempt(&keys, &self.settings, now)),
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.attempt(&keys, &self.settings, now).await,
        };
        let held = match reservation {
            Ok(Reservation::Refused { blocked_until }) => {
                let retry_after = Duration::from_millis(blocked_until.saturating_sub(now));
                tracing::debug!(target: "latch", ?retry_after, "login throttled");
                return Err(Throttled { retry_after });
            }
            Ok(Reservation::Reserved { refunds }) => Held::Reserved { refunds },
            Err(error) => {
                tracing::error!(
                    target: "latch", %error,
                    "login throttle not checked: letting the login through"
                );
                Held::Nothing
            }
        };
        Ok(LoginAttempt {
            backend: self.backend.clone(),
            keys,
            held,
        })
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
            .field("backend", &self.backend.describe())
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

impl Backend {
    /// The backend, for `Debug`.
    fn describe(&self) -> String {
        match self {
            Backend::Memory(_) => "memory".to_owned(),
            #[cfg(feature = "redis")]
            Backend::Redis(store) => match store.layout() {
                self::redis::Layout::Server => format!("redis, prefix {:?}", store.prefix()),
                self::redis::Layout::Cluster => {
                    format!("redis cluster, prefix {:?}", store.prefix())
                }
            },
        }
    }
}

/// A login attempt reserved by [`Throttle::attempt`] or
/// [`Throttle::attempt_account`], and already counted as a failure. Check
/// the password, then say how it went: [`succeeded`](Self::succeeded) or
/// [`failed`](Self::failed).
///
/// Dropping it without either leaves the failure counted, as `failed`
/// does: a handler that returns early on an error, panics, or whose future
/// is cancelled because the client went away still counts its attempt, and
/// needs no clean-up for that.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// # fn password_ok(_: &str) -> bool { true }
/// let throttle = axum_latch::throttle::Throttle::in_memory();
/// let attempt = throttle.attempt_account(7, "192.0.2.1".parse().ok()).await?;
/// if password_ok("hunter2") {
///     attempt.succeeded().await;
/// } else {
///     attempt.failed();
/// }
/// # Ok::<(), axum_latch::throttle::Throttled>(())
/// # }).unwrap();
/// ```
#[must_use = "check the password, then call `succeeded().await` or `failed()`; \
              a dropped attempt counts as a failed login"]
pub struct LoginAttempt {
    backend: Backend,
    keys: Keys,
    held: Held,
}

/// What a [`LoginAttempt`] holds in the store.
#[derive(Debug, Clone)]
enum Held {
    /// A failure counted on each key; to take it back, each key's refund
    /// (in the order of [`Keys::iter`]).
    Reserved { refunds: Vec<Refund> },
    /// Nothing: the store failed, and the attempt went through unthrottled.
    Nothing,
}

impl LoginAttempt {
    /// The password was right: resets the counts of the username and the
    /// account (lifting their blocks, if any), and takes this attempt back from the
    /// address: its count goes down by one, and a block this attempt set
    /// is lifted (the address's earlier failures stay counted).
    ///
    /// If the store fails, this logs an `error` event (target `latch`).
    /// After an attempt that reserved nothing (the store was failing when
    /// it was made), this only tries to reset the username's and account's
    /// counts.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = axum_latch::throttle::Throttle::in_memory().username_limit(2);
    /// let susan = Some(42);
    /// throttle.attempt("susan", susan, None).await.unwrap().failed();
    /// // The second attempt would block "susan": the right password resets it.
    /// throttle.attempt("susan", susan, None).await.unwrap().succeeded().await;
    /// throttle.attempt("susan", susan, None).await.unwrap().failed();
    /// assert!(throttle.attempt("susan", susan, None).await.is_ok(), "one failure since the login");
    /// # });
    /// ```
    pub async fn succeeded(self) {
        let Self {
            backend,
            keys,
            held,
        } = self;
        let result: Result<(), BackendError> = match (&backend, held) {
            (Backend::Memory(counts), Held::Reserved { refunds }) => {
                lock(counts).refund(&keys, &refunds, Refunding::Success);
                Ok(())
            }
            (Backend::Memory(counts), Held::Nothing) => {
                let mut counts = lock(counts);
                for key in &keys.own {
                    counts.entries.remove(key);
                }
                Ok(())
            }
            #[cfg(feature = "redis")]
            (Backend::Redis(store), Held::Reserved { refunds }) => {
                store.refund(&keys, &refunds, Refunding::Success).await
            }
            #[cfg(feature = "redis")]
            (Backend::Redis(store), Held::Nothing) => store.reset(&keys.own).await,
        };
        if let Err(error) = result {
            tracing::error!(target: "latch", %error, "login throttle not reset after a login");
        }
    }

    /// The password was not checked after all: the server could not (its
    /// password hashing was too busy, say) and answered so. The attempt is
    /// taken back from every key, as if it had not been made: each count
    /// goes down by one and a block this attempt set is lifted; the keys'
    /// other failures stay counted, and nothing is reset.
    ///
    /// Call it only when the password was truly not checked: an attempt
    /// taken back tells the client nothing about the password, and so
    /// costs an attacker nothing either.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = axum_latch::throttle::Throttle::in_memory().username_limit(1);
    /// let attempt = throttle.attempt("susan", Some(42), None).await.unwrap();
    /// // ... every password hashing thread is busy: answer 503 instead.
    /// attempt.not_checked().await;
    /// assert!(throttle.attempt("susan", Some(42), None).await.is_ok());
    /// # });
    /// ```
    pub async fn not_checked(self) {
        let Self {
            backend,
            keys,
            held,
        } = self;
        let Held::Reserved { refunds } = held else {
            return;
        };
        let result: Result<(), BackendError> = match &backend {
            Backend::Memory(counts) => {
                lock(counts).refund(&keys, &refunds, Refunding::NotChecked);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Backend::Redis(store) => store.refund(&keys, &refunds, Refunding::NotChecked).await,
        };
        if let Err(error) = result {
            tracing::error!(target: "latch", %error, "login attempt not taken back");
        }
    }

    /// The password was wrong, or the username names no account: the
    /// failure this attempt reserved stays counted. This is what dropping
    /// the attempt does too; calling it says so.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = axum_latch::throttle::Throttle::in_memory().username_limit(1);
    /// throttle.attempt("susan", Some(42), None).await.unwrap().failed();
    /// assert!(throttle.attempt("susan", Some(42), None).await.is_err());
    /// # });
    /// ```
    pub fn failed(self) {}
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt")
            .field("backend", &self.backend.describe())
            .field(
                "keys",
                &self.keys.own.iter().map(Key::to_string).collect::<Vec<_>>(),
            )
            .field("reserved", &matches!(self.held, Held::Reserved { .. }))
            .finish()
    }
}

/// A login refused by [`Throttle::attempt`] or
/// [`Throttle::attempt_account`]: too many failed logins for the account or
/// username, or from the address.
///
/// As a response it is `429 Too Many Requests` with `Retry-After` in whole
/// seconds (rounded up, at least 1) and a short plain-text body. To show
/// your own page instead, use [`retry_after_secs`](Self::retry_after_secs).
///
/// ```
/// use axum::response::IntoResponse;
/// use axum_latch::throttle::Throttled;
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
    /// use axum_latch::throttle::Throttled;
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

// ---------------------------------------------------------------------------
// Keys and delays, shared by the backends
// ---------------------------------------------------------------------------

/// What a failure is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A normalised username.
    Username(String),
    /// The app's id of an account, as it displays.
    Account(String),
    /// An IPv4 address, or an IPv6 address with its last 64 bits zeroed.
    Address(IpAddr),
}

impl std::fmt::Display for Key {
    /// The key's name in Redis, after the prefix: `throttle:user:susan`,
    /// `throttle:account:42`, `throttle:addr:192.0.2.1`,
    /// `throttle:addr:2001:db8::/64`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Username(name) => write!(f, "throttle:user:{name}"),
            Key::Account(id) => write!(f, "throttle:account:{id}"),
            Key::Address(IpAddr::V4(ip)) => write!(f, "throttle:addr:{ip}"),
            Key::Address(IpAddr::V6(ip)) => write!(f, "throttle:addr:{ip}/64"),
        }
    }
}

/// The keys of one login attempt, with their limits looked up by kind.
#[derive(Debug)]
struct Keys {
    /// The username's key, the account's, or both (in that order): what a
    /// right password resets. Never empty.
    own: Vec<Key>,
    address: Option<Key>,
}

impl Keys {
    fn login(username: &str, account_id: Option<impl Display>, address: Option<IpAddr>) -> Self {
        let mut own = vec![Key::Username(normalise_username(username))];
        own.extend(account_id.map(|id| Key::Account(id.to_string())));
        Self::new(own, address)
    }

    fn account(account_id: impl Display, address: Option<IpAddr>) -> Self {
        Self::new(vec![Key::Account(account_id.to_string())], address)
    }

    fn new(own: Vec<Key>, address: Option<IpAddr>) -> Self {
        Self {
            own,
            address: address.map(|ip| Key::Address(network(ip))),
        }
    }

    /// Each key with its limit: the username's and account's first, then
    /// the address's.
    fn with_limits(&self, settings: &Settings) -> impl Iterator<Item = (&Key, u32)> {
        let username_limit = settings.username_limit;
        self.own.iter().map(move |key| (key, username_limit)).chain(
            self.address
                .as_ref()
                .map(|key| (key, settings.address_limit)),
        )
    }

    fn iter(&self) -> impl Iterator<Item = &Key> {
        self.own.iter().chain(self.address.as_ref())
    }

    fn contains(&self, key: &Key) -> bool {
        self.iter().any(|own| own == key)
    }
}

/// What an attempt did in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reservation {
    /// A key is blocked until then (milliseconds since the Unix epoch, the
    /// latest of the keys'); nothing was counted.
    Refused { blocked_until: u64 },
    /// A failure was counted on each key; `refunds` (one per key, in the
    /// order of [`Keys::iter`]) is how to take it back.
    Reserved { refunds: Vec<Refund> },
}

/// Why an attempt is taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refunding {
    /// The password was right: the username's and account's counts start
    /// again, the address's loses this attempt.
    Success,
    /// The password was not checked: every key loses this attempt.
    NotChecked,
}

/// A key's `blocked_until` before an attempt was counted, and after: a
/// refund sets it back to `before` if it is still `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refund {
    before: u64,
    set: u64,
}

/// Trimmed, in NFKC, lowercased, and at most [`MAX_USERNAME_LEN`] bytes
/// (cut at a character boundary).
fn normalise_username(username: &str) -> String {
    // Only the start can matter: cut a long name before the (costly)
    // normalisation, leaving room for what NFKC and lowercasing shorten.
    let username = cut(username.trim(), 4 * MAX_USERNAME_LEN);
    let nfkc: String = username.nfkc().collect();
    let mut name = nfkc.to_lowercase();
    name.truncate(cut(&name, MAX_USERNAME_LEN).len());
    name
}

/// The longest start of `text` of at most `max` bytes that ends at a
/// character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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

/// Where an entry stands in the order of eviction, lowest first (after the
/// stale entries, which go before any): entries not blocked before blocked
/// ones; among them, address keys and keys with a single failure before
/// username and account keys with several; fewer failures before more;
/// then the oldest last failure first.
fn eviction_rank(key: &Key, entry: &Entry, now: u64) -> (bool, bool, u64, u64) {
    let blocked = entry.blocked_until > now;
    let telling = !matches!(key, Key::Address(_)) && entry.failures > 1;
    (blocked, telling, entry.failures, entry.last_failure)
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

    /// Refuses the attempt if a key is blocked at `now`, or else counts a
    /// failure on each key (what the Redis script `ATTEMPT` does, too).
    fn attempt(&mut self, keys: &Keys, settings: &Settings, now: u64) -> Reservation {
        let blocked_until = self.blocked_until(keys);
        if blocked_until > now {
            return Reservation::Refused { blocked_until };
        }
        if now >= self.next_sweep {
            self.sweep(now, settings.window);
            self.next_sweep = now.saturating_add(settings.window.max(1));
        }
        let new = keys
            .iter()
            .filter(|key| !self.entries.contains_key(*key))
            .count();
        if self.entries.len() + new > settings.max_entries {
            self.make_room(keys, new, settings, now);
        }
        let mut refunds = Vec::new();
        for (key, limit) in keys.with_limits(settings) {
            let entry = self.entries.entry(key.clone()).or_default();
            let before = entry.blocked_until;
            entry.fail(settings, limit, now);
            refunds.push(Refund {
                before,
                set: entry.blocked_until,
            });
        }
        Reservation::Reserved { refunds }
    }

    /// Takes an attempt back (what the Redis script `REFUND` does, too).
    /// After a right password, resets the username's and account's keys;
    /// the other keys (all of them, for an attempt not checked) lose one
    /// failure and get their block back if the attempt set it.
    fn refund(&mut self, keys: &Keys, refunds: &[Refund], refunding: Refunding) {
        for (n, (key, refund)) in keys.iter().zip(refunds).enumerate() {
            if refunding == Refunding::Success && n < keys.own.len() {
                self.entries.remove(key);
            } else if let Some(entry) = self.entries.get_mut(key) {
                entry.failures = entry.failures.saturating_sub(1);
                if entry.blocked_until == refund.set {
                    entry.blocked_until = refund.before;
                }
            }
        }
    }

    /// Drops the entries that no longer matter.
    fn sweep(&mut self, now: u64, window: u64) {
        self.entries.retain(|_, entry| !entry.is_stale(now, window));
    }

    /// Drops entries until `new` more fit, and a quarter of the room is
    /// free: the stale ones, then by [`eviction_rank`]; never the keys of
    /// the attempt being counted. Dropping a quarter at a time keeps the
    /// cost per failure constant on average under a flood.
    fn make_room(&mut self, keys: &Keys, new: usize, settings: &Settings, now: u64) {
        self.sweep(now, settings.window);
        let max = settings.max_entries;
        let target = (max - max / 4).min(max.saturating_sub(new));
        if self.entries.len() <= target {
            return;
        }
        let mut ranks: Vec<_> = self
            .entries
            .iter()
            .filter(|(key, _)| !keys.contains(key))
            .map(|(key, entry)| eviction_rank(key, entry, now))
            .collect();
        // The attempt's own keys are at most `target` (max >= 2).
        let excess = (self.entries.len() - target).min(ranks.len());
        if excess == 0 {
            return;
        }
        let (_, &mut cutoff, _) = ranks.select_nth_unstable(excess - 1);
        // Ties with the cutoff go too: a few more than needed, at worst.
        self.entries
            .retain(|key, entry| keys.contains(key) || eviction_rank(key, entry, now) > cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const NO_ACCOUNT: Option<u64> = None;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn v4(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)))
    }

    /// A throttle on a clock that tests move by hand.
    struct Clock {
        throttle: Throttle,
        time: crate::clock::Clock,
    }

    impl Clock {
        fn new(throttle: Throttle) -> Self {
            let time = crate::clock::Clock::manual(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
            Self {
                throttle: throttle.clock(time.clone()),
                time,
            }
        }

        fn advance(&mut self, by: Duration) {
            self.time.advance(by);
        }

        fn now(&self) -> SystemTime {
            self.time.now()
        }

        fn counts(&self) -> Arc<Mutex<Counts>> {
            match &self.throttle.backend {
                Backend::Memory(counts) => counts.clone(),
                #[cfg(feature = "redis")]
                Backend::Redis(_) => unreachable!(),
            }
        }

        async fn attempt(
            &self,
            username: &str,
            address: Option<IpAddr>,
        ) -> Result<LoginAttempt, Throttled> {
            self.throttle.attempt(username, NO_ACCOUNT, address).await
        }

        /// How long a login is blocked for (zero: it is not), without
        /// counting anything.
        fn blocked(&self, username: &str, address: Option<IpAddr>) -> Duration {
            let until =
                lock(&self.counts()).blocked_until(&Keys::login(username, NO_ACCOUNT, address));
            Duration::from_millis(until.saturating_sub(epoch_millis(self.now())))
        }

        /// A wrong password: an attempt that must go through.
        async fn fail(&self, username: &str, address: Option<IpAddr>) {
            self.attempt(username, address)
                .await
                .unwrap_or_else(|e| panic!("{username:?} {address:?}: {e}"))
                .failed();
        }

        async fn fail_times(&self, n: u32, username: &str, address: Option<IpAddr>) {
            for _ in 0..n {
                self.fail(username, address).await;
            }
        }

        fn entry(&self, key: &Key) -> Option<Entry> {
            lock(&self.counts()).entries.get(key).copied()
        }

        fn len(&self) -> usize {
            lock(&self.counts()).entries.len()
        }
    }

    fn user(name: &str) -> Key {
        Key::Username(name.into())
    }

    fn addr(text: &str) -> Key {
        Key::Address(network(text.parse().unwrap()))
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
            assert_eq!(clock.blocked("susan", None), Duration::ZERO);
        }
        // The 3rd attempt reaches the limit: 1 s, then 2, 4, 8, capped at 10.
        for expected in [1, 2, 4, 8, 10, 10, 10] {
            clock.fail("susan", None).await;
            assert_eq!(clock.blocked("susan", None), expected * SECOND);
            let refused = clock.attempt("susan", None).await.unwrap_err();
            assert_eq!(refused.retry_after, expected * SECOND);
            clock.advance(SECOND / 2);
            assert_eq!(
                clock.blocked("susan", None),
                expected * SECOND - SECOND / 2,
                "the block counts down"
            );
            clock.advance(expected * SECOND - SECOND / 2);
            assert_eq!(clock.blocked("susan", None), Duration::ZERO);
        }
    }

    #[tokio::test]
    async fn the_default_delays() {
        let mut clock = Clock::new(Throttle::in_memory());
        clock.fail_times(4, "susan", None).await;
        assert_eq!(clock.blocked("susan", None), Duration::ZERO);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for n in 0..14 {
            clock.fail("susan", None).await;
            got.push(clock.blocked("susan", None));
            expected.push((SECOND * (1 << n)).min(Duration::from_secs(15 * 60)));
            clock.advance(got[n as usize]);
        }
        assert_eq!(got, expected, "1 s, 2 s, ... 512 s, then 15 minutes");
    }

    #[tokio::test]
    async fn no_overflow_after_very_many_failures() {
        let settings = Settings {
            max_delay: MAX_MILLIS,
            ..Settings::default()
        };
        let mut entry = Entry::default();
        for _ in 0..200 {
            entry.fail(&settings, 0, 1_000);
        }
        assert_eq!(entry.failures, 200);
        assert_eq!(entry.blocked_until, 1_000 + MAX_MILLIS);
        entry.failures = u64::MAX;
        entry.fail(&settings, 0, 2_000);
        assert_eq!(entry.failures, u64::MAX);

        let clock = Clock::new(
            Throttle::in_memory()
                .username_limit(0)
                .max_delay(Duration::MAX),
        );
        let susan = Entry {
            failures: 199,
            last_failure: epoch_millis(clock.now()),
            blocked_until: 0,
        };
        lock(&clock.counts()).entries.insert(user("susan"), susan);
        clock.fail("susan", None).await;
        assert_eq!(
            clock.blocked("susan", None),
            Duration::from_millis(MAX_MILLIS)
        );
        let zero = Clock::new(Throttle::in_memory().base_delay(Duration::ZERO));
        zero.fail_times(200, "susan", None).await;
        assert_eq!(zero.blocked("susan", None), Duration::ZERO);
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
    async fn a_refused_attempt_counts_nothing() {
        let clock = Clock::new(Throttle::in_memory().username_limit(2));
        clock.fail_times(2, "susan", ip("192.0.2.1")).await;
        let before = (clock.entry(&user("susan")), clock.entry(&addr("192.0.2.1")));
        for _ in 0..10 {
            let refused = clock.attempt("susan", ip("192.0.2.1")).await.unwrap_err();
            assert_eq!(refused.retry_after, SECOND);
        }
        let after = (clock.entry(&user("susan")), clock.entry(&addr("192.0.2.1")));
        assert_eq!(before, after);
        assert_eq!(after.1.unwrap().failures, 2);
    }

    #[tokio::test]
    async fn other_usernames_are_unaffected() {
        let clock = Clock::new(Throttle::in_memory().username_limit(2));
        clock.fail_times(2, "susan", ip("192.0.2.1")).await;
        assert!(clock.attempt("susan", ip("192.0.2.99")).await.is_err());
        assert!(clock.attempt("david", None).await.is_ok());
        assert!(clock.attempt("carol", ip("192.0.2.2")).await.is_ok());
    }

    #[tokio::test]
    async fn usernames_are_trimmed_normalised_and_lowercased() {
        let clock = Clock::new(Throttle::in_memory().username_limit(4));
        clock.fail(" Susan ", None).await;
        clock.fail("SUSAN", None).await;
        clock.fail("ｓｕｓａｎ", None).await;
        clock.fail("susan\n", None).await;
        assert!(clock.attempt("susan", None).await.is_err());
        assert!(clock.attempt("\tＳｕＳaN", None).await.is_err());
        assert!(clock.attempt("susan2", None).await.is_ok());
        assert_eq!(clock.len(), 2);
    }

    #[test]
    fn the_normalisation() {
        for (name, normal) in [
            (" Susan ", "susan"),
            ("ｓｕｓａｎ", "susan"),
            ("ＳＵＳＡＮ", "susan"),
            ("\u{3000}susan\u{3000}", "susan"),
            ("Jo\u{308}rg", "jörg"),
            ("JÖRG", "jörg"),
            ("ﬁona", "fiona"),
            ("Ⅸ", "ix"),
            ("ΟΔΥΣΣΕΥΣ", "οδυσσευς"),
            ("", ""),
        ] {
            assert_eq!(normalise_username(name), normal, "{name:?}");
        }
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
        // The cut is made after the normalisation: decomposed input that
        // composes is cut at the same place as composed input.
        let decomposed = "e\u{301}".repeat(200); // 600 bytes before NFKC
        assert_eq!(normalise_username(&decomposed), "é".repeat(128));
        // A name megabytes long is cut before it is normalised (NFKC of
        // U+FDFA is 18 characters): only its start is ever read.
        let huge = "\u{FDFA}".repeat(700_000);
        assert_eq!(cut(&huge, 4 * MAX_USERNAME_LEN).len(), 1023);
        assert_eq!(normalise_username(&huge).len(), MAX_USERNAME_LEN);
    }

    #[tokio::test]
    async fn the_address_limit_covers_every_username_from_the_address() {
        let clock = Clock::new(Throttle::in_memory().address_limit(5));
        for n in 0..5 {
            clock.fail(&format!("user{n}"), ip("192.0.2.1")).await;
        }
        let throttled = clock.attempt("someone", ip("192.0.2.1")).await.unwrap_err();
        assert_eq!(throttled.retry_after, SECOND);
        assert!(clock.attempt("someone", ip("192.0.2.2")).await.is_ok());
        assert!(clock.attempt("someone", None).await.is_ok());
        assert!(
            clock.attempt("user0", None).await.is_ok(),
            "one failure each"
        );
    }

    #[tokio::test]
    async fn the_longer_block_wins() {
        let mut clock = Clock::new(Throttle::in_memory().username_limit(1).address_limit(1));
        for delay in [1, 2] {
            clock.fail("susan", None).await;
            clock.advance(delay * SECOND);
        }
        clock.fail("susan", None).await; // 4 s
        clock.fail("david", ip("192.0.2.1")).await; // 1 s each
        assert_eq!(clock.blocked("susan", ip("192.0.2.1")), 4 * SECOND);
        assert_eq!(clock.blocked("david", ip("192.0.2.1")), SECOND);
        assert_eq!(clock.blocked("carol", ip("192.0.2.1")), SECOND);
        let refused = clock.attempt("susan", ip("192.0.2.1")).await.unwrap_err();
        assert_eq!(refused.retry_after, 4 * SECOND);
    }

    #[tokio::test]
    async fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let clock = Clock::new(Throttle::in_memory().address_limit(3));
        clock.fail("a", ip("2001:db8:1:2::1")).await;
        clock
            .fail("b", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .await;
        clock.fail("c", ip("2001:db8:1:2:abcd::")).await;
        assert!(clock.attempt("d", ip("2001:db8:1:2::9")).await.is_err());
        assert!(clock.attempt("d", ip("2001:db8:1:3::1")).await.is_ok());
        assert!(clock.attempt("e", ip("2001:db8:1::1")).await.is_ok());

        clock.fail("a", ip("::ffff:192.0.2.1")).await;
        clock.fail("b", ip("192.0.2.1")).await;
        clock.fail("c", ip("::ffff:192.0.2.1")).await;
        assert!(clock.attempt("d", ip("192.0.2.1")).await.is_err());
        assert!(
            clock.attempt("d", ip("::ffff:192.0.2.2")).await.is_ok(),
            "mapped IPv4 addresses are not one /64"
        );

        assert_eq!(
            network("2001:db8::1:2:3:4".parse().unwrap()).to_string(),
            "2001:db8::"
        );
        assert_eq!(
            addr("2001:db8:0:5:1:2:3:4").to_string(),
            "throttle:addr:2001:db8:0:5::/64"
        );
        assert_eq!(
            addr("::ffff:10.0.0.1").to_string(),
            "throttle:addr:10.0.0.1"
        );
        assert_eq!(user("susan").to_string(), "throttle:user:susan");
        assert_eq!(
            Keys::account(42, None).own[0].to_string(),
            "throttle:account:42"
        );
        assert_eq!(
            Keys::account(" Odd:Id ", None).own[0].to_string(),
            "throttle:account: Odd:Id ",
            "account ids are not normalised"
        );
    }

    #[tokio::test]
    async fn success_resets_the_username_and_refunds_the_address() {
        let clock = Clock::new(Throttle::in_memory().username_limit(3).address_limit(3));
        let address = ip("192.0.2.1");
        clock.fail_times(2, "susan", address).await;
        // The 3rd attempt reaches both limits; the right password undoes it.
        let attempt = clock.attempt("Susan", address).await.unwrap();
        assert_eq!(clock.blocked("susan", None), SECOND);
        assert_eq!(clock.blocked("mallory", address), SECOND);
        attempt.succeeded().await;
        assert_eq!(clock.entry(&user("susan")), None, "reset");
        let entry = clock.entry(&addr("192.0.2.1")).unwrap();
        assert_eq!(
            (entry.failures, entry.blocked_until),
            (2, 0),
            "the address keeps its 2 failures, not the block"
        );
        // The next failure from the address is its 3rd.
        clock.fail("mallory", address).await;
        assert_eq!(clock.blocked("carol", address), SECOND);
        assert_eq!(clock.blocked("susan", None), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_refund_leaves_a_block_it_did_not_set() {
        let mut clock = Clock::new(Throttle::in_memory().address_limit(2));
        let address = ip("192.0.2.1");
        let first = clock.attempt("a", address).await.unwrap();
        clock.fail("b", address).await; // the 2nd: blocks 1 s
        clock.advance(SECOND);
        clock.fail("c", address).await; // the 3rd: blocks 2 s
        first.succeeded().await;
        let entry = clock.entry(&addr("192.0.2.1")).unwrap();
        assert_eq!(entry.failures, 2);
        assert_eq!(clock.blocked("d", address), 2 * SECOND);
    }

    #[tokio::test]
    async fn dropped_attempts_count_as_failures() {
        let clock = Clock::new(Throttle::in_memory().username_limit(3));
        drop(clock.attempt("susan", None).await.unwrap());
        let _ = clock.attempt("susan", None).await.unwrap();
        clock.attempt("susan", None).await.unwrap().failed();
        assert_eq!(clock.entry(&user("susan")).unwrap().failures, 3);
        assert!(clock.attempt("susan", None).await.is_err());
    }

    #[tokio::test]
    async fn accounts_count_apart_from_usernames() {
        let clock = Clock::new(Throttle::in_memory().username_limit(1));
        let attempt = |id: &'static str| clock.throttle.attempt_account(id, None);
        attempt("susan").await.unwrap().failed();
        assert!(attempt("susan").await.is_err());
        assert!(attempt("Susan").await.is_ok());
        assert!(clock.attempt("susan", None).await.is_ok());
        assert!(clock.entry(&Key::Account("susan".into())).is_some());
        assert!(clock.entry(&user("susan")).is_some());
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
        assert_eq!(clock.blocked("susan", None), SECOND, "within the window");
        clock.advance(Duration::from_secs(599));
        clock.fail("susan", None).await;
        assert_eq!(
            clock.blocked("susan", None),
            2 * SECOND,
            "the window runs from the last failure"
        );
        clock.advance(Duration::from_secs(600));
        clock.fail_times(2, "susan", None).await;
        assert_eq!(
            clock.blocked("susan", None),
            Duration::ZERO,
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
        assert_eq!(clock.blocked("susan", None), Duration::from_secs(50));
        assert!(clock.attempt("susan", None).await.is_err());
        clock.advance(Duration::from_secs(50));
        clock.fail("susan", None).await; // counted from zero: 1 failure, 100 s
        clock.advance(Duration::from_secs(60));
        assert_eq!(clock.blocked("susan", None), Duration::from_secs(40));
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

    #[test]
    fn the_order_of_eviction() {
        let now = 1_000_000;
        let entry = |failures, last_failure, blocked_until| Entry {
            failures,
            last_failure,
            blocked_until,
        };
        // Lowest first.
        let ranked = [
            (user("refunded"), entry(0, now - 1, 0)),
            (addr("192.0.2.1"), entry(1, now - 9, 0)),
            (user("one old"), entry(1, now - 8, 0)),
            (addr("192.0.2.2"), entry(1, now - 1, 0)),
            (Key::Account("one new".into()), entry(1, now, now - 1)),
            (addr("192.0.2.3"), entry(19, now - 1, now)),
            (user("two"), entry(2, now - 1, 0)),
            (Key::Account("three old".into()), entry(3, now - 5, 0)),
            (user("three new"), entry(3, now - 2, 0)),
            (user("four"), entry(4, now - 9, 0)),
            (addr("192.0.2.4"), entry(1, now - 9, now + 1)),
            (user("blocked"), entry(5, now - 9, now + 1)),
        ];
        let ranks: Vec<_> = ranked
            .iter()
            .map(|(key, entry)| eviction_rank(key, entry, now))
            .collect();
        let mut sorted = ranks.clone();
        sorted.sort();
        assert_eq!(ranks, sorted);
        let mut unique = sorted.clone();
        unique.dedup();
        assert_eq!(unique.len(), sorted.len());
    }

    #[tokio::test]
    async fn a_flood_of_junk_does_not_reset_a_targeted_account() {
        let max = 100;
        let mut clock = Clock::new(Throttle::in_memory().max_entries(max));
        // The attacker's 4 guesses so far: one more blocks.
        clock.fail_times(4, "victim", ip("198.51.100.1")).await;
        for n in 0..4 {
            clock
                .throttle
                .attempt_account(7, ip("198.51.100.2"))
                .await
                .unwrap_or_else(|e| panic!("account 7, attempt {n}: {e}"))
                .failed();
        }
        // Then 10 times as many junk usernames as there is room for, each
        // from an address of its own.
        for n in 0..10 * max as u32 {
            clock.advance(Duration::from_millis(1));
            clock.fail(&format!("junk{n}"), v4(n)).await;
            assert!(clock.len() <= max, "{} entries", clock.len());
        }
        assert!(clock.len() >= max / 2, "{} entries", clock.len());
        assert_eq!(clock.entry(&user("victim")).unwrap().failures, 4);
        assert_eq!(clock.entry(&Key::Account("7".into())).unwrap().failures, 4);
        clock.fail("victim", None).await;
        let refused = clock.attempt("victim", None).await.unwrap_err();
        assert_eq!(refused.retry_after, SECOND, "the 5th failure blocked");
        let account = clock.throttle.attempt_account(7, None).await;
        account.unwrap().failed();
        assert!(clock.throttle.attempt_account(7, None).await.is_err());
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
        let spray = clock.throttle.clone().username_limit(100);
        for n in 0..1_000u32 {
            clock.advance(Duration::from_millis(1));
            spray
                .attempt(&format!("spray{n}"), NO_ACCOUNT, v4(n))
                .await
                .unwrap()
                .failed();
            assert!(clock.len() <= 100, "{} entries", clock.len());
        }
        assert!(clock.len() >= 75, "{} entries", clock.len());
        assert!(
            clock.attempt("victim", None).await.is_err(),
            "still blocked"
        );
        assert!(
            clock.entry(&Key::Address(v4(999).unwrap())).is_some(),
            "the newest entries are kept"
        );
        assert!(clock.entry(&user("spray0")).is_none());

        let tiny = Clock::new(Throttle::in_memory().max_entries(0));
        tiny.fail("a", ip("192.0.2.1")).await;
        tiny.fail("b", ip("192.0.2.2")).await;
        assert_eq!(tiny.len(), 2, "at least 2: one login's keys");
        assert_eq!(tiny.entry(&user("b")).unwrap().failures, 1);
        tiny.fail("b", ip("192.0.2.3")).await;
        assert_eq!(tiny.len(), 2);
        assert_eq!(
            tiny.entry(&user("b")).unwrap().failures,
            2,
            "the attempt's own keys are kept"
        );
    }

    #[tokio::test]
    async fn clones_share_counts() {
        let clock = Clock::new(Throttle::in_memory().username_limit(2));
        let other = Clock::new(clock.throttle.clone());
        clock.fail("susan", None).await;
        other.fail("susan", None).await;
        assert!(clock.attempt("susan", None).await.is_err());
        let separate = Clock::new(Throttle::in_memory().username_limit(2));
        separate.fail("susan", None).await;
        assert!(separate.attempt("susan", None).await.is_ok());
    }

    #[tokio::test]
    async fn login_attempt_debug() {
        let throttle = Throttle::in_memory();
        let attempt = throttle.attempt("Susan", Some(7), None).await.unwrap();
        assert_eq!(
            format!("{attempt:?}"),
            "LoginAttempt { backend: \"memory\", \
             keys: [\"throttle:user:susan\", \"throttle:account:7\"], reserved: true }"
        );
        attempt.failed();
    }

    #[test]
    fn throttle_attempts_and_their_futures_are_send_and_sync() {
        fn send_sync<T: Send + Sync + 'static>(_: &T) {}
        fn send<T: Send>(_: T) {}
        let throttle = Throttle::in_memory();
        send_sync(&throttle);
        send(throttle.attempt("a", NO_ACCOUNT, None));
        send(throttle.attempt_account(1, None));
        send(throttle.attempt_account(String::from("a"), None));
        let attempt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(throttle.attempt("a", NO_ACCOUNT, None))
            .unwrap();
        send_sync(&attempt);
        send(attempt.succeeded());
    }
}
