//! A remember-me store in Redis: one hash per token, a set of selectors per
//! user, expiry by key TTL, and rotations done atomically by Lua scripts.
//! Every script touches the keys of one user, which share a hash slot, so
//! the store works on Redis Cluster too.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::Script;
use sha2::{Digest, Sha256};

use crate::remember::{RememberStore, Rotation, StoreError, StoredToken};

/// Remember-me tokens and a session registry's records in Redis. Clones
/// share the connection.
///
/// # Keys
///
/// Every key starts with a prefix (default `latch:`; see
/// [`prefix`](Self::prefix)). A user's keys carry the hash tag
/// `{u:<digest>}`, where `<digest>` is the first 32 lowercase hex digits of
/// the SHA-256 of the user's id (as JSON text): whatever the id holds,
/// braces included, all of a user's keys share one hash slot, and each
/// script of the store touches the keys of one slot. Keep braces out of the
/// prefix: one would change which part of each key is hashed.
///
/// - `{prefix}remember:{u:<digest>}:token:{selector}`: a hash, one per
///   token, with the fields of [`StoredToken`] (`validator_hash` and
///   `previous_hash` as lowercase hex; times as decimal seconds since the
///   Unix epoch, except `rotated_at`, which holds `rotated_at_ms` in
///   milliseconds; `confirmed` as `0` or `1`, absent meaning `0`;
///   `previous_hash` and `rotated_at` are absent until the first rotation).
///   It expires (by `EXPIREAT`) at the token's `expires_at`, renewed on each
///   rotation.
/// - `{prefix}remember:{u:<digest>}:tokens`: a set of the user's selectors,
///   which lives at least as long as the user's longest-lived token.
/// - `{prefix}remember:selector:{selector}`: the digest of the token's user,
///   so that a token can be found from its selector alone. It lives at least
///   as long as the token.
/// - `{prefix}remember:users`: a sorted set of the digests of users with
///   tokens (scored by when each last got one), which
///   [`purge_expired`](RememberStore::purge_expired) walks.
///
/// `issue`, `rotate`, `confirm`, `revoke`, `revoke_series` and
/// `revoke_user` each change a user's tokens in one Lua script, so they are
/// atomic. An issue writes the selector's key and the users index first,
/// then the token; a lookup by selector reads the selector's key, then the
/// token: two round trips. A selector's key left behind (a process that
/// died mid-issue, a revoked token) leads nowhere, and expires.
///
/// The store needs Redis 5 or later: one server (standalone or a primary),
/// or a Redis Cluster, through any async connection: a
/// [`ConnectionManager`] (the default type), or the `redis` crate's
/// `cluster_async::ClusterConnection` (its `cluster-async` feature). The
/// session registry's change feed also needs a [`redis::Client`] for
/// pub/sub: see [`feed`](Self::feed).
///
/// # Session registry
///
/// As a [`SessionStore`](crate::registry::SessionStore), the store keeps
/// under the same prefix:
///
/// - `{prefix}sessions:{u:<digest>}:record:{session_id}`: a hash per
///   session (the fields of
///   [`SessionRecord`](crate::registry::SessionRecord), times in decimal
///   seconds, `remembered` and `ended` as `0` or `1`). An ended session's
///   hash stays, marked, so that a late `save` cannot record it again (a
///   session ended before it was recorded gets one too). It expires an
///   hour after its `expires_at` (or after the `until` of an
///   [`Ending::Session`](crate::registry::Ending::Session) of it, if
///   later), or an hour from now if that is later, so that clocks a little
///   apart do not drop a record early;
///   [`purge`](crate::registry::SessionStore::purge) deletes it at
///   `expires_at`.
/// - `{prefix}sessions:{u:<digest>}:index`: a sorted set of the user's
///   sessions not ended, scored by `expires_at`.
/// - `{prefix}sessions:id:{session_id}`: the digest of the session's user,
///   for [`touch`](crate::registry::SessionStore::touch), which is given the
///   session's id alone.
/// - `{prefix}sessions:{feed}:seq`, `…:log`, `…:until`, `…:pending` and
///   `…:expiry`: the change feed, in one hash slot. `seq` counts the
///   endings (never delete it, nor let Redis evict it: use a `noeviction`
///   or `volatile-*` eviction policy); `log` holds each ending, as
///   `{seq} {json}`, scored by its sequence number; `until` the sequence
///   numbers by when each ending may be forgotten; `pending` the endings
///   not yet applied to their user's records (see below); `expiry` every
///   record, as `{digest} {session_id}`, by `expires_at`, for `purge`.
///
/// An ending is written to the feed first (one script: the next sequence
/// number, the log, and a `PUBLISH` of the sequence number on the channel
/// `{prefix}sessions:changes`), then to the user's records (a second
/// script), and its number leaves `pending`. If the process dies between
/// the two, every instance still refuses the sessions (it follows the
/// feed), and the records are marked later: `list` and `purge` first apply
/// every ending still in `pending` (again, for an `end` under way: marking
/// twice is harmless), so a session whose ending is in the feed is never
/// listed.
///
/// # Connecting
///
/// Give it a [`ConnectionManager`] that fails fast: short timeouts and one
/// reconnection retry, as below. With the client's defaults, each command
/// sent while Redis is down waits for a reconnection that retries six times
/// with growing delays (about ten seconds with redis 1.8), and so does every
/// request that checks a remember cookie or logs in with remember-me. With
/// the settings below a store call fails within about a second (a few
/// hundred milliseconds when the connection is refused): the request is
/// then anonymous, or a login with remember-me gets an
/// [`AuthError::Remember`](crate::AuthError::Remember) it can fall back
/// from; an `error` event is logged, and sessions keep working.
///
/// When Redis refuses the connection, the store tries once more (nothing was
/// sent), so that the first call after Redis comes back does not fail on
/// the manager's last failed reconnection.
///
/// ```no_run
/// use axum_latch::{stores::RedisStore, Login};
/// use axum_latch::remember::RevocableRemember;
/// use redis::aio::{ConnectionManager, ConnectionManagerConfig};
/// use std::time::Duration;
/// # #[derive(Clone)] struct Account;
/// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
/// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
///
/// # async fn run() -> Result<(), redis::RedisError> {
/// let client = redis::Client::open("redis://127.0.0.1:6379")?;
/// // Fail fast when Redis is down: no request should wait for long.
/// let config = ConnectionManagerConfig::new()
///     .set_connection_timeout(Some(Duration::from_millis(500)))
///     .set_response_timeout(Some(Duration::from_millis(500)))
///     .set_number_of_retries(1)
///     .set_max_delay(Duration::from_millis(200));
/// let manager = ConnectionManager::new_with_config(client, config).await?;
///
/// let tokens = RevocableRemember::new(RedisStore::new(manager).prefix("myapp:"));
/// // Token keys expire in Redis on their own; this trims the per-user indexes.
/// tokens.spawn_purge(Duration::from_secs(60 * 60));
/// let login = Login::new(load).remember_tokens(tokens);
/// # Ok(()) }
/// ```
///
/// Each token's key expires in Redis at the token's expiry, so expired
/// tokens need no purge; each user's index of selectors keeps stale entries
/// until [`RevocableRemember::spawn_purge`](crate::remember::RevocableRemember::spawn_purge)
/// trims it (listing the user's devices skips them meanwhile).
#[derive(Clone)]
pub struct RedisStore<C = ConnectionManager> {
    pub(super) connection: C,
    pub(super) prefix: String,
    /// Where the session registry's change feed is heard (pub/sub).
    pub(super) feed: Option<redis::Client>,
}

impl<C> std::fmt::Debug for RedisStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The prefix of every key when none is set.
const DEFAULT_PREFIX: &str = "latch:";

/// The latest time a key's TTL is set to (9999-12-31T23:59:59Z): Redis
/// refuses times whose milliseconds overflow, and Lua numbers lose
/// precision past 2^53. The token's own `expires_at` is kept exactly.
pub(super) const MAX_EXPIREAT: u64 = 253_402_300_799;

/// How many users one `ZSCAN` call of the users index looks at.
const SCAN_COUNT: usize = 500;

/// How long (seconds) a user stays in the users index after their last
/// token was issued, even with no tokens left: an issue in flight has
/// written the index but not yet the token, and must not be forgotten.
const FORGET_USER_AFTER: u64 = 60;

// Field names of a token's hash.
const SELECTOR: &str = "selector";
const VALIDATOR_HASH: &str = "validator_hash";
const PREVIOUS_HASH: &str = "previous_hash";
const ROTATED_AT: &str = "rotated_at";
const USER_ID: &str = "user_id";
const FINGERPRINT: &str = "fingerprint";
const SERIES: &str = "series";
const DAYS: &str = "days";
const CREATED_AT: &str = "created_at";
const LAST_USED_AT: &str = "last_used_at";
const EXPIRES_AT: &str = "expires_at";
const DEVICE: &str = "device";
const CONFIRMED: &str = "confirmed";

/// Lua shared by the scripts: `extend(key, at)` makes the key live at least
/// until `at` (seconds since the epoch). A key without a TTL has just been
/// made by the script.
pub(super) const EXTEND: &str = r"
local function extend(key, at)
  local ttl = redis.call('TTL', key)
  if ttl == -2 then return end
  if ttl == -1 or tonumber(redis.call('TIME')[1]) + ttl < at then
    redis.call('EXPIREAT', key, at)
  end
end
";

/// Lua shared by the scripts: `at_or_before(a, b)` compares two decimal
/// numbers as text, exactly, whatever their size (no leading zeros).
pub(super) const AT_OR_BEFORE: &str = r"
local function at_or_before(a, b)
  if #a ~= #b then return #a < #b end
  return a <= b
end
";

/// KEYS: token, user set. ARGV: selector, TTL time, then the hash's fields
/// and values. A token of the same user with the same selector is replaced;
/// a key of another type there is an error (`HLEN`), not overwritten.
static ISSUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EXTEND}{}",
        r"
redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIREAT', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
extend(KEYS[2], tonumber(ARGV[2]))
return 1
"
    ))
});

/// KEYS: a selector's key. ARGV: the user's digest, TTL time. Points the
/// selector at the user; returns the digest it named before, if any.
static POINT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return old
",
    )
});

/// KEYS: a selector's key. ARGV: TTL time. Returns the digest it names, if
/// any, having made it live at least until the TTL time.
static FOLLOW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EXTEND}{}",
        r"
local digest = redis.call('GET', KEYS[1])
if digest then extend(KEYS[1], tonumber(ARGV[1])) end
return digest
"
    ))
});

/// KEYS: the users index. ARGV: digest. Notes that the user has just been
/// given a token (by Redis's clock).
static NOTE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZADD', KEYS[1], redis.call('TIME')[1], ARGV[1])
return 1
",
    )
});

/// KEYS: the users index. ARGV: digest, seconds. Forgets the user unless
/// they were given a token within the last `seconds`.
static FORGET_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at and tonumber(at) + tonumber(ARGV[2]) <= tonumber(redis.call('TIME')[1]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
",
    )
});

/// KEYS: token, user set. ARGV: expected hash, replacement hash, previous
/// hash, now, rotated_at (ms), expires_at, TTL time, selector, expected
/// `confirmed` (`0` or `1`; a missing field is `0`). The compare-and-swap
/// of `rotate`.
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EXTEND}{}",
        r"
local fields = redis.call('HMGET', KEYS[1], 'validator_hash', 'confirmed')
if fields[1] ~= ARGV[1] or (fields[2] or '0') ~= ARGV[9] then return 0 end
redis.call('HSET', KEYS[1], 'previous_hash', ARGV[3], 'validator_hash', ARGV[2],
  'rotated_at', ARGV[5], 'last_used_at', ARGV[4], 'expires_at', ARGV[6],
  'confirmed', '0')
redis.call('EXPIREAT', KEYS[1], ARGV[7])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[8])
  extend(KEYS[2], tonumber(ARGV[7]))
end
return 1
"
    ))
});

/// KEYS: token. ARGV: current hash. Sets `confirmed` if the token's
/// validator hash is still the current one; a missing key is left missing.
static CONFIRM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'validator_hash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'confirmed', '1')
return 1
",
    )
});

/// KEYS: token, user set. ARGV: selector.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
",
    )
});

/// KEYS: user set. ARGV: token key base, user id, series. Only a token that
/// names this user is deleted. Returns its selector.
static REVOKE_SERIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for _, selector in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. selector
  local fields = redis.call('HMGET', key, 'user_id', 'series')
  if fields[1] == ARGV[2] and fields[2] == ARGV[3] then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], selector)
    return selector
  end
end
return false
",
    )
});

/// KEYS: user set. ARGV: token key base. Returns how many tokens were
/// deleted, then every selector the set held.
static REVOKE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local selectors = redis.call('SMEMBERS', KEYS[1])
local count = 0
for _, selector in ipairs(selectors) do
  count = count + redis.call('DEL', ARGV[1] .. selector)
end
redis.call('DEL', KEYS[1])
table.insert(selectors, 1, count)
return selectors
",
    )
});

/// KEYS: user set. ARGV: token key base, then selectors: those whose token
/// is gone leave the set. Returns them.
static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. ARGV[i]) == 0 then
    redis.call('SREM', KEYS[1], ARGV[i])
    removed[#removed + 1] = ARGV[i]
  end
end
return removed
",
    )
});

/// KEYS: user set. ARGV: token key base, now (decimal). Deletes the set's
/// tokens with `expires_at <= now` and the selectors whose token is gone.
/// Returns `{corrupt, left, deleted, selectors…}`: how many tokens have an
/// `expires_at` that is not a decimal number (left alone), how many
/// selectors the set still holds, how many tokens were deleted, and the
/// selectors that left the set (deleted, or already gone). Numbers are
/// compared as decimal text, exactly, whatever their size.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{AT_OR_BEFORE}{}",
        r"
local removed, deleted, corrupt = {}, 0, 0
for _, selector in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. selector
  local expires = redis.call('HGET', key, 'expires_at')
  if not expires then
    if redis.call('EXISTS', key) == 0 then
      redis.call('SREM', KEYS[1], selector)
      removed[#removed + 1] = selector
    else
      corrupt = corrupt + 1
    end
  elseif not string.match(expires, '^%d+$') then
    corrupt = corrupt + 1
  else
    local digits = (string.gsub(expires, '^0+(%d)', '%1'))
    if at_or_before(digits, ARGV[2]) then
      redis.call('DEL', key)
      redis.call('SREM', KEYS[1], selector)
      removed[#removed + 1] = selector
      deleted = deleted + 1
    end
  end
end
local out = {corrupt, redis.call('SCARD', KEYS[1]), deleted}
for _, selector in ipairs(removed) do out[#out + 1] = selector end
return out
"
    ))
});

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A store on this connection, with keys under the prefix `latch:`: a
    /// [`ConnectionManager`], or a connection to a Redis Cluster (the
    /// `redis` crate's `cluster_async::ClusterConnection`, with its
    /// `cluster-async` feature).
    ///
    /// ```no_run
    /// use axum_latch::stores::RedisStore;
    ///
    /// # async fn run() -> Result<(), redis::RedisError> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let store = RedisStore::new(redis::aio::ConnectionManager::new(client).await?);
    /// # Ok(()) }
    /// ```
    pub fn new(connection: C) -> Self {
        Self {
            connection,
            prefix: DEFAULT_PREFIX.to_owned(),
            feed: None,
        }
    }

    /// Puts every key under `prefix` (default `latch:`), to share a Redis
    /// database with other apps or instances: stores with different
    /// prefixes never see each other's tokens, sessions or change feeds.
    /// Include a separator (`myapp:`), and no braces (see
    /// [Keys](Self#keys)).
    ///
    /// ```no_run
    /// use axum_latch::stores::RedisStore;
    ///
    /// # async fn run(manager: redis::aio::ConnectionManager) {
    /// // Two apps on one Redis, each with its own keys.
    /// let store = RedisStore::new(manager).prefix("shop:");
    /// # }
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn token_base(&self, digest: &str) -> String {
        format!("{}remember:{{u:{digest}}}:token:", self.prefix)
    }

    fn token_key(&self, digest: &str, selector: &str) -> String {
        format!("{}{selector}", self.token_base(digest))
    }

    fn tokens_key(&self, digest: &str) -> String {
        format!("{}remember:{{u:{digest}}}:tokens", self.prefix)
    }

    fn selector_key(&self, selector: &str) -> String {
        format!("{}remember:selector:{selector}", self.prefix)
    }

    fn users_key(&self) -> String {
        format!("{}remember:users", self.prefix)
    }

    /// Sends a request, and once more if Redis refused the connection:
    /// then nothing was sent, and the manager has begun a new connection.
    /// (Its last attempt may have failed just before Redis came back;
    /// without the second try, the first call after that would fail too.)
    pub(super) async fn send<T: redis::FromRedisValue>(
        &self,
        request: Request<'_>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        let mut retried = false;
        loop {
            let result = match request {
                Request::Command(command) => command.query_async(&mut connection).await,
                Request::Pipeline(pipe) => pipe.query_async(&mut connection).await,
                Request::Script(script) => script.invoke_async(&mut connection).await,
            };
            match result {
                Err(error) if error.is_connection_refusal() && !retried => retried = true,
                result => return result.map_err(StoreError::new),
            }
        }
    }

    /// The digest of the user of the token with this selector, if its key
    /// is there; with `ttl`, the key is made to live at least until then.
    async fn owner(&self, selector: &str, ttl: Option<u64>) -> Result<Option<String>, StoreError> {
        let key = self.selector_key(selector);
        let digest: Option<String> = match ttl {
            None => {
                let mut command = redis::cmd("GET");
                command.arg(&key);
                self.send(Request::Command(&command)).await?
            }
            Some(at) => {
                let mut script = FOLLOW.key(&key);
                script.arg(at);
                self.send(Request::Script(&script)).await?
            }
        };
        digest
            .map(|digest| checked_digest(digest, &key))
            .transpose()
    }

    /// Deletes selectors' keys, one command each (each is in a slot of its
    /// own). A key left behind leads nowhere and expires, so failures are
    /// only logged.
    async fn forget_selectors(&self, selectors: &[String]) {
        let deletions = selectors.iter().map(|selector| async move {
            let mut command = redis::cmd("DEL");
            command.arg(self.selector_key(selector));
            self.send::<i64>(Request::Command(&command)).await
        });
        for result in futures_util::future::join_all(deletions).await {
            if let Err(error) = result {
                tracing::debug!(target: "latch", %error, "a remember token's selector key not deleted; it expires");
            }
        }
    }

    /// Removes the user's selectors whose token is gone, and their keys.
    async fn prune(&self, digest: &str, selectors: &[String]) -> Result<(), StoreError> {
        let mut script = PRUNE.key(self.tokens_key(digest));
        script.arg(self.token_base(digest)).arg(selectors);
        let removed: Vec<String> = self.send(Request::Script(&script)).await?;
        self.forget_selectors(&removed).await;
        Ok(())
    }

    /// Purges one user's expired tokens; returns how many were deleted and
    /// how many are corrupt.
    async fn purge_user(&self, digest: &str, now: u64) -> Result<(u64, u64), StoreError> {
        let mut script = PURGE.key(self.tokens_key(digest));
        script.arg(self.token_base(digest)).arg(now);
        let reply: Vec<redis::Value> = self.send(Request::Script(&script)).await?;
        let number = |value: Option<&redis::Value>| match value {
            Some(redis::Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let (Some(corrupt), Some(left), Some(deleted)) = (
            number(reply.first()),
            number(reply.get(1)),
            number(reply.get(2)),
        ) else {
            return Err(StoreError::new(Corrupt {
                what: "an unexpected reply to the purge script".to_owned(),
                field: EXPIRES_AT,
            }));
        };
        let removed: Vec<String> = reply[3..]
            .iter()
            .filter_map(|value| redis::from_redis_value_ref(value).ok())
            .collect();
        self.forget_selectors(&removed).await;
        if left == 0 {
            let mut script = FORGET_USER.key(self.users_key());
            script.arg(digest).arg(FORGET_USER_AFTER);
            let _: i64 = self.send(Request::Script(&script)).await?;
        }
        Ok((deleted, corrupt))
    }
}

impl<C> RedisStore<C> {
    /// Hears the session registry's change feed on its own connection, made
    /// from `client`: then [`pushes_changes`](crate::registry::SessionStore::pushes_changes)
    /// is `true`, and every instance hears an ending as soon as it is
    /// recorded. Without it, the registry reads the feed every second.
    ///
    /// Pub/sub needs a connection of its own, which a
    /// [`ConnectionManager`] cannot lend: give the client of the same Redis
    /// (on Redis Cluster, a client of any one node: a message published on
    /// one node reaches subscribers on every node). The subscription pings
    /// Redis every 15 seconds, and gives up (the registry subscribes again)
    /// when a ping goes unanswered for 5.
    ///
    /// ```no_run
    /// use axum_latch::registry::SessionRegistry;
    /// use axum_latch::stores::RedisStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let manager = redis::aio::ConnectionManager::new(client.clone()).await?;
    /// let store = RedisStore::new(manager).prefix("myapp:").feed(client);
    /// let registry = SessionRegistry::connect(store).await?;
    /// # Ok(()) }
    /// ```
    pub fn feed(mut self, client: redis::Client) -> Self {
        self.feed = Some(client);
        self
    }
}

impl<C> RememberStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
        let digest = user_digest(&token.user_id);
        let ttl = ttl_at(token.expires_at);
        // The selector's key and the users index first: a token is never
        // stored where a lookup or a purge cannot reach it.
        let mut note = NOTE_USER.key(self.users_key());
        note.arg(&digest);
        let mut point = POINT.key(self.selector_key(&token.selector));
        point.arg(&digest).arg(ttl);
        let (_, previous): (i64, Option<String>) = futures_util::future::try_join(
            self.send(Request::Script(&note)),
            self.send(Request::Script(&point)),
        )
        .await?;
        if let Some(previous) = previous.filter(|previous| *previous != digest) {
            // The selector named a token of another user: it goes.
            let mut revoke = REVOKE.key(self.token_key(&previous, &token.selector));
            revoke.key(self.tokens_key(&previous)).arg(&token.selector);
            let _: i64 = self.send(Request::Script(&revoke)).await?;
        }
        let mut script = ISSUE.key(self.token_key(&digest, &token.selector));
        script
            .key(self.tokens_key(&digest))
            .arg(&token.selector)
            .arg(ttl);
        for (field, value) in encode(token) {
            script.arg(field).arg(value);
        }
        let _: i64 = self.send(Request::Script(&script)).await?;
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<Option<StoredToken>, StoreError> {
        let Some(digest) = self.owner(selector, None).await? else {
            return Ok(None);
        };
        let mut command = redis::cmd("HGETALL");
        command.arg(self.token_key(&digest, selector));
        let fields: HashMap<String, Vec<u8>> = self.send(Request::Command(&command)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        decode(selector, &fields).map(Some)
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        let ttl = ttl_at(rotation.expires_at);
        let Some(digest) = self.owner(rotation.selector, Some(ttl)).await? else {
            return Ok(false);
        };
        let mut script = ROTATE.key(self.token_key(&digest, rotation.selector));
        script
            .key(self.tokens_key(&digest))
            .arg(hex(rotation.expected))
            .arg(hex(rotation.replacement))
            .arg(hex(rotation.previous))
            .arg(rotation.now)
            .arg(rotation.rotated_at_ms)
            .arg(rotation.expires_at)
            .arg(ttl)
            .arg(rotation.selector)
            .arg(if rotation.confirmed { "1" } else { "0" });
        let swapped: i64 = self.send(Request::Script(&script)).await?;
        Ok(swapped == 1)
    }

    async fn confirm(&self, selector: &str, current: &[u8; 32]) -> Result<bool, StoreError> {
        let Some(digest) = self.owner(selector, None).await? else {
            return Ok(false);
        };
        let mut script = CONFIRM.key(self.token_key(&digest, selector));
        script.arg(hex(current));
        let confirmed: i64 = self.send(Request::Script(&script)).await?;
        Ok(confirmed == 1)
    }

    async fn revoke(&self, selector: &str) -> Result<bool, StoreError> {
        let Some(digest) = self.owner(selector, None).await? else {
            return Ok(false);
        };
        let mut script = REVOKE.key(self.token_key(&digest, selector));
        script.key(self.tokens_key(&digest)).arg(selector);
        let revoked: i64 = self.send(Request::Script(&script)).await?;
        self.forget_selectors(&[selector.to_owned()]).await;
        Ok(revoked == 1)
    }

    async fn revoke_series(&self, user_id: &str, series: &str) -> Result<bool, StoreError> {
        let digest = user_digest(user_id);
        let mut script = REVOKE_SERIES.key(self.tokens_key(&digest));
        script
            .arg(self.token_base(&digest))
            .arg(user_id)
            .arg(series);
        let revoked: Option<String> = self.send(Request::Script(&script)).await?;
        match revoked {
            Some(selector) => {
                self.forget_selectors(&[selector]).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let digest = user_digest(user_id);
        let mut script = REVOKE_USER.key(self.tokens_key(&digest));
        script.arg(self.token_base(&digest));
        let (count, selectors): (u64, Vec<String>) = {
            let reply: Vec<redis::Value> = self.send(Request::Script(&script)).await?;
            let mut values = reply.into_iter();
            let count = values
                .next()
                .and_then(|value| redis::from_redis_value::<u64>(value).ok())
                .unwrap_or(0);
            let selectors = values
                .filter_map(|value| redis::from_redis_value(value).ok())
                .collect();
            (count, selectors)
        };
        self.forget_selectors(&selectors).await;
        Ok(count)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<StoredToken>, StoreError> {
        let digest = user_digest(user_id);
        let mut command = redis::cmd("SMEMBERS");
        command.arg(self.tokens_key(&digest));
        let mut selectors: Vec<String> = self.send(Request::Command(&command)).await?;
        if selectors.is_empty() {
            return Ok(Vec::new());
        }
        // Sorted first, so that ties in last_used_at come out in the
        // memory store's order.
        selectors.sort_unstable();
        let mut pipe = redis::pipe();
        for selector in &selectors {
            pipe.cmd("HGETALL").arg(self.token_key(&digest, selector));
        }
        let hashes: Vec<HashMap<String, Vec<u8>>> = self.send(Request::Pipeline(&pipe)).await?;
        let mut tokens = Vec::with_capacity(selectors.len());
        let mut gone = Vec::new();
        for (selector, fields) in selectors.into_iter().zip(hashes) {
            if fields.is_empty() {
                gone.push(selector);
                continue;
            }
            let token = decode(&selector, &fields)?;
            if token.user_id == user_id {
                tokens.push(token);
            }
        }
        if !gone.is_empty() {
            self.prune(&digest, &gone).await?;
        }
        tokens.sort_by_key(|token| std::cmp::Reverse(token.last_used_at));
        Ok(tokens)
    }

    async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let users = self.users_key();
        let mut cursor: u64 = 0;
        let mut deleted: u64 = 0;
        let mut corrupt: u64 = 0;
        loop {
            let mut command = redis::cmd("ZSCAN");
            command.arg(&users).arg(cursor).arg("COUNT").arg(SCAN_COUNT);
            let (next, entries): (u64, Vec<String>) = self.send(Request::Command(&command)).await?;
            // Members and scores, in turn.
            for digest in entries.iter().step_by(2) {
                let (gone, bad) = self.purge_user(digest, now).await?;
                deleted += gone;
                corrupt += bad;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if corrupt > 0 {
            return Err(StoreError::new(Corrupt {
                what: format!(
                    "{corrupt} token(s) under prefix {:?}, left in place",
                    self.prefix
                ),
                field: EXPIRES_AT,
            }));
        }
        Ok(deleted)
    }
}

/// The first 32 lowercase hex digits of the SHA-256 of a user's id (JSON
/// text): the hash tag of the user's keys.
pub(super) fn user_digest(user_id: &str) -> String {
    let hash: [u8; 32] = Sha256::digest(user_id.as_bytes()).into();
    let mut digest = hex(&hash);
    digest.truncate(32);
    digest
}

/// A digest read back from Redis, checked: it becomes part of key names.
pub(super) fn checked_digest(digest: String, key: &str) -> Result<String, StoreError> {
    if digest.len() == 32
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(digest)
    } else {
        Err(StoreError::new(Corrupt {
            what: format!("key {key:?}"),
            field: "user digest",
        }))
    }
}

/// What [`RedisStore::send`] sends.
#[derive(Clone, Copy)]
pub(super) enum Request<'a> {
    Command(&'a redis::Cmd),
    Pipeline(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

/// A stored token that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt remember token in Redis: {what}: bad or missing field {field}")]
pub(super) struct Corrupt {
    pub(super) what: String,
    pub(super) field: &'static str,
}

/// When a token's key expires: its `expires_at`, within what Redis takes.
pub(super) fn ttl_at(expires_at: u64) -> u64 {
    expires_at.min(MAX_EXPIREAT)
}

/// The hash fields of a token.
fn encode(token: &StoredToken) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        (SELECTOR, token.selector.clone()),
        (VALIDATOR_HASH, hex(&token.validator_hash)),
        (USER_ID, token.user_id.clone()),
        (FINGERPRINT, token.fingerprint.clone()),
        (SERIES, token.series.clone()),
        (DAYS, token.days.to_string()),
        (CREATED_AT, token.created_at.to_string()),
        (LAST_USED_AT, token.last_used_at.to_string()),
        (EXPIRES_AT, token.expires_at.to_string()),
        (DEVICE, token.device.clone()),
        (CONFIRMED, u8::from(token.confirmed).to_string()),
    ];
    if let Some(previous) = &token.previous_hash {
        fields.push((PREVIOUS_HASH, hex(previous)));
    }
    if let Some(at) = token.rotated_at_ms {
        fields.push((ROTATED_AT, at.to_string()));
    }
    fields
}

/// A token from its hash; any field missing or malformed is an error.
fn decode(selector: &str, fields: &HashMap<String, Vec<u8>>) -> Result<StoredToken, StoreError> {
    let reader = Reader { selector, fields };
    let stored_selector = reader.text(SELECTOR)?;
    if stored_selector != selector {
        return Err(reader.corrupt(SELECTOR));
    }
    Ok(StoredToken {
        selector: stored_selector,
        validator_hash: reader.hash(VALIDATOR_HASH)?,
        previous_hash: reader.optional(PREVIOUS_HASH, Reader::hash)?,
        rotated_at_ms: reader.optional(ROTATED_AT, Reader::number)?,
        confirmed: reader.optional(CONFIRMED, Reader::flag)?.unwrap_or(false),
        user_id: reader.text(USER_ID)?,
        fingerprint: reader.text(FINGERPRINT)?,
        series: reader.text(SERIES)?,
        days: reader.number(DAYS)?,
        created_at: reader.number(CREATED_AT)?,
        last_used_at: reader.number(LAST_USED_AT)?,
        expires_at: reader.number(EXPIRES_AT)?,
        device: reader.text(DEVICE)?,
    })
}

struct Reader<'a> {
    selector: &'a str,
    fields: &'a HashMap<String, Vec<u8>>,
}

impl Reader<'_> {
    fn corrupt(&self, field: &'static str) -> StoreError {
        StoreError::new(Corrupt {
            what: format!("selector {:?}", self.selector),
            field,
        })
    }

    fn optional<T>(
        &self,
        field: &'static str,
        read: impl Fn(&Self, &'static str) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        if self.fields.contains_key(field) {
            read(self, field).map(Some)
        } else {
            Ok(None)
        }
    }

    fn text(&self, field: &'static str) -> Result<String, StoreError> {
        let bytes = self.fields.get(field).ok_or_else(|| self.corrupt(field))?;
        String::from_utf8(bytes.clone()).map_err(|_| self.corrupt(field))
    }

    /// A decimal number: digits only, no sign or spaces.
    fn number<T: std::str::FromStr>(&self, field: &'static str) -> Result<T, StoreError> {
        let bytes = self.fields.get(field).ok_or_else(|| self.corrupt(field))?;
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(self.corrupt(field));
        }
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| self.corrupt(field))
    }

    /// `0` or `1`.
    fn flag(&self, field: &'static str) -> Result<bool, StoreError> {
        match self.fields.get(field).map(Vec::as_slice) {
            Some(b"0") => Ok(false),
            Some(b"1") => Ok(true),
            _ => Err(self.corrupt(field)),
        }
    }

    /// 64 lowercase hex digits.
    fn hash(&self, field: &'static str) -> Result<[u8; 32], StoreError> {
        let bytes = self.fields.get(field).ok_or_else(|| self.corrupt(field))?;
        unhex(bytes).ok_or_else(|| self.corrupt(field))
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(64);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The encodings, which need no server. What is particular to Redis with a
/// server (the key layout, TTLs, prefixes and corrupt data) is tested in
/// `tests/remember/redis_store.rs`, and the behaviour every store shares in
/// `tests/remember/store.rs`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_lowercase_hex_and_decoding_is_strict() {
        let mut hash = [0u8; 32];
        hash[0] = 0xab;
        hash[31] = 0x0f;
        let text = hex(&hash);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00") && text.ends_with("000f"));
        assert_eq!(unhex(text.as_bytes()), Some(hash));
        assert_eq!(unhex(text.to_uppercase().as_bytes()), None);
        assert_eq!(unhex(&text.as_bytes()[..63]), None);
        assert_eq!(unhex(format!("{text}0").as_bytes()), None);
        assert_eq!(unhex(text.replace("ab", "g0").as_bytes()), None);
        assert_eq!(unhex("é".repeat(32).as_bytes()), None);
    }

    #[test]
    fn user_digests_are_32_hex_digits_whatever_the_id_holds() {
        let digest = user_digest(r#"{"team":"{a}","id":7}"#);
        assert_eq!(digest.len(), 32);
        assert!(digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(digest, user_digest(r#"{"team":"{a}","id":7}"#));
        assert_ne!(digest, user_digest(r#"{"team":"{a}","id":8}"#));
        // SHA-256("42") begins 73475cb40a568e8da8a045ced110137e.
        assert_eq!(user_digest("42"), "73475cb40a568e8da8a045ced110137e");
        assert!(checked_digest(digest.clone(), "k").is_ok());
        assert!(checked_digest(digest.to_uppercase(), "k").is_err());
        assert!(checked_digest("}{".repeat(16), "k").is_err());
    }
}
