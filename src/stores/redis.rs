//! A remember-me store in Redis: one hash per token, a set of selectors per
//! user, expiry by key TTL, and rotations done atomically by Lua scripts.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::Script;

use crate::remember::{RememberStore, Rotation, StoreError, StoredToken};

/// Remember-me tokens in Redis. Clones share the connection.
///
/// Every key starts with a prefix (default `latch:`; see
/// [`prefix`](Self::prefix)):
///
/// - `{prefix}remember:{selector}`: a hash, one per token, with the fields
///   of [`StoredToken`] (`validator_hash` and `previous_hash` as lowercase
///   hex; times as decimal seconds since the Unix epoch, except
///   `rotated_at`, which holds `rotated_at_ms` in milliseconds; `confirmed`
///   as `0` or `1`, absent meaning `0`; `previous_hash` and `rotated_at` are
///   absent until the first rotation). It expires (by `EXPIREAT`) at the
///   token's `expires_at`, renewed on each rotation.
///
///   Hashes written by earlier versions of latch have no `confirmed` and
///   hold seconds in `rotated_at`, which read as a moment in January 1970:
///   long past, so such a token's previous validator is out of the grace
///   window and, unconfirmed, gets a new validator rather than being judged
///   theft. Harmless.
/// - `{prefix}remember:user:{user_id}`: a set of the user's selectors, which
///   lives at least as long as the user's longest-lived token.
///
/// `issue`, `rotate`, `confirm`, `revoke`, `revoke_series` and
/// `revoke_user` are each one Lua script, so they are atomic. The scripts reach keys they derive
/// from the token's fields, so the store needs one Redis server (standalone
/// or a primary, Redis 5 or later), not Redis Cluster.
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
pub struct RedisStore {
    manager: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
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
const MAX_EXPIREAT: u64 = 253_402_300_799;

/// How many keys one `SCAN` call looks at.
const SCAN_COUNT: usize = 500;

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

/// Lua shared by the scripts: `extend(set, at)` makes the user's set live
/// at least until `at` (seconds since the epoch). A set without a TTL has
/// just been made by `SADD`.
const EXTEND: &str = r"
local function extend(set, at)
  local ttl = redis.call('TTL', set)
  if ttl == -2 then return end
  if ttl == -1 or tonumber(redis.call('TIME')[1]) + ttl < at then
    redis.call('EXPIREAT', set, at)
  end
end
";

/// KEYS: token, user set. ARGV: prefix, selector, TTL time, then the
/// hash's fields and values. A token with the same selector is replaced,
/// and leaves its user's set.
static ISSUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EXTEND}{}",
        r"
local old = redis.call('HGET', KEYS[1], 'user_id')
if old then
  redis.call('SREM', ARGV[1] .. 'remember:user:' .. old, ARGV[2])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
extend(KEYS[2], tonumber(ARGV[3]))
return 1
"
    ))
});

/// KEYS: token. ARGV: expected hash, replacement hash, previous hash, now,
/// rotated_at (ms), expires_at, TTL time, prefix, selector, expected
/// `confirmed` (`0` or `1`; a missing field is `0`). The compare-and-swap
/// of `rotate`.
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EXTEND}{}",
        r"
local fields = redis.call('HMGET', KEYS[1], 'validator_hash', 'confirmed')
if fields[1] ~= ARGV[1] or (fields[2] or '0') ~= ARGV[10] then return 0 end
redis.call('HSET', KEYS[1], 'previous_hash', ARGV[3], 'validator_hash', ARGV[2],
  'rotated_at', ARGV[5], 'last_used_at', ARGV[4], 'expires_at', ARGV[6],
  'confirmed', '0')
local user = redis.call('HGET', KEYS[1], 'user_id')
redis.call('EXPIREAT', KEYS[1], ARGV[7])
if user and redis.call('EXISTS', KEYS[1]) == 1 then
  local set = ARGV[8] .. 'remember:user:' .. user
  redis.call('SADD', set, ARGV[9])
  extend(set, tonumber(ARGV[7]))
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

/// KEYS: token. ARGV: prefix, selector.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local user = redis.call('HGET', KEYS[1], 'user_id')
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if user then
  redis.call('SREM', ARGV[1] .. 'remember:user:' .. user, ARGV[2])
end
return 1
",
    )
});

/// KEYS: user set. ARGV: prefix, user id, series. Only a token that names
/// this user is deleted.
static REVOKE_SERIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for _, selector in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. 'remember:' .. selector
  local fields = redis.call('HMGET', key, 'user_id', 'series')
  if fields[1] == ARGV[2] and fields[2] == ARGV[3] then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], selector)
    return 1
  end
end
return 0
",
    )
});

/// KEYS: user set. ARGV: prefix. Returns how many tokens were deleted.
static REVOKE_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local count = 0
for _, selector in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  count = count + redis.call('DEL', ARGV[1] .. 'remember:' .. selector)
end
redis.call('DEL', KEYS[1])
return count
",
    )
});

/// KEYS: user set. ARGV: prefix, then selectors: those whose token is gone
/// leave the set.
static PRUNE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local removed = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. 'remember:' .. ARGV[i]) == 0 then
    removed = removed + redis.call('SREM', KEYS[1], ARGV[i])
  end
end
return removed
",
    )
});

/// KEYS: user set. ARGV: prefix, now (decimal). Deletes the set's tokens
/// with `expires_at <= now` and the selectors whose token is gone. Returns
/// `{deleted, corrupt}`: a token whose `expires_at` is not a decimal
/// number is left alone and counted. Numbers are compared as decimal text,
/// exactly, whatever their size.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local function at_or_before(a, b)
  if #a ~= #b then return #a < #b end
  return a <= b
end
local deleted, corrupt = 0, 0
for _, selector in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. 'remember:' .. selector
  local expires = redis.call('HGET', key, 'expires_at')
  if not expires then
    if redis.call('EXISTS', key) == 0 then
      redis.call('SREM', KEYS[1], selector)
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
      deleted = deleted + 1
    end
  end
end
return {deleted, corrupt}
",
    )
});

impl RedisStore {
    /// A store on this connection, with keys under the prefix `latch:`.
    ///
    /// ```no_run
    /// use axum_latch::stores::RedisStore;
    ///
    /// # async fn run() -> Result<(), redis::RedisError> {
    /// let client = redis::Client::open("redis://127.0.0.1:6379")?;
    /// let store = RedisStore::new(redis::aio::ConnectionManager::new(client).await?);
    /// # Ok(()) }
    /// ```
    pub fn new(manager: ConnectionManager) -> Self {
        Self {
            manager,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    /// Puts every key under `prefix` (default `latch:`), to share a Redis
    /// database with other apps or instances: stores with different
    /// prefixes never see each other's tokens. Include a separator
    /// (`myapp:`).
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

    fn token_key(&self, selector: &str) -> String {
        format!("{}remember:{selector}", self.prefix)
    }

    fn user_key(&self, user_id: &str) -> String {
        format!("{}remember:user:{user_id}", self.prefix)
    }

    /// Sends a request, and once more if Redis refused the connection:
    /// then nothing was sent, and the manager has begun a new connection.
    /// (Its last attempt may have failed just before Redis came back;
    /// without the second try, the first call after that would fail too.)
    async fn send<T: redis::FromRedisValue>(&self, request: Request<'_>) -> Result<T, StoreError> {
        let mut connection = self.manager.clone();
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

    /// Removes the user's selectors whose token is gone.
    async fn prune(&self, user_id: &str, selectors: &[String]) -> Result<(), StoreError> {
        let mut script = PRUNE.key(self.user_key(user_id));
        script.arg(&self.prefix).arg(selectors);
        let _: i64 = self.send(Request::Script(&script)).await?;
        Ok(())
    }
}

impl RememberStore for RedisStore {
    async fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
        let mut script = ISSUE.key(self.token_key(&token.selector));
        script
            .key(self.user_key(&token.user_id))
            .arg(&self.prefix)
            .arg(&token.selector)
            .arg(ttl_at(token.expires_at));
        for (field, value) in encode(token) {
            script.arg(field).arg(value);
        }
        let _: i64 = self.send(Request::Script(&script)).await?;
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<Option<StoredToken>, StoreError> {
        let mut command = redis::cmd("HGETALL");
        command.arg(self.token_key(selector));
        let fields: HashMap<String, Vec<u8>> = self.send(Request::Command(&command)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        decode(selector, &fields).map(Some)
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        let mut script = ROTATE.key(self.token_key(rotation.selector));
        script
            .arg(hex(rotation.expected))
            .arg(hex(rotation.replacement))
            .arg(hex(rotation.previous))
            .arg(rotation.now)
            .arg(rotation.rotated_at_ms)
            .arg(rotation.expires_at)
            .arg(ttl_at(rotation.expires_at))
            .arg(&self.prefix)
            .arg(rotation.selector)
            .arg(if rotation.confirmed { "1" } else { "0" });
        let swapped: i64 = self.send(Request::Script(&script)).await?;
        Ok(swapped == 1)
    }

    async fn confirm(&self, selector: &str, current: &[u8; 32]) -> Result<bool, StoreError> {
        let mut script = CONFIRM.key(self.token_key(selector));
        script.arg(hex(current));
        let confirmed: i64 = self.send(Request::Script(&script)).await?;
        Ok(confirmed == 1)
    }

    async fn revoke(&self, selector: &str) -> Result<bool, StoreError> {
        let mut script = REVOKE.key(self.token_key(selector));
        script.arg(&self.prefix).arg(selector);
        let revoked: i64 = self.send(Request::Script(&script)).await?;
        Ok(revoked == 1)
    }

    async fn revoke_series(&self, user_id: &str, series: &str) -> Result<bool, StoreError> {
        let mut script = REVOKE_SERIES.key(self.user_key(user_id));
        script.arg(&self.prefix).arg(user_id).arg(series);
        let revoked: i64 = self.send(Request::Script(&script)).await?;
        Ok(revoked == 1)
    }

    async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut script = REVOKE_USER.key(self.user_key(user_id));
        script.arg(&self.prefix);
        self.send(Request::Script(&script)).await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<StoredToken>, StoreError> {
        let mut command = redis::cmd("SMEMBERS");
        command.arg(self.user_key(user_id));
        let mut selectors: Vec<String> = self.send(Request::Command(&command)).await?;
        if selectors.is_empty() {
            return Ok(Vec::new());
        }
        // Sorted first, so that ties in last_used_at come out in the
        // memory store's order.
        selectors.sort_unstable();
        let mut pipe = redis::pipe();
        for selector in &selectors {
            pipe.cmd("HGETALL").arg(self.token_key(selector));
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
            self.prune(user_id, &gone).await?;
        }
        tokens.sort_by_key(|token| std::cmp::Reverse(token.last_used_at));
        Ok(tokens)
    }

    async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let pattern = user_set_pattern(&self.prefix);
        let mut cursor: u64 = 0;
        let mut deleted: u64 = 0;
        let mut corrupt: u64 = 0;
        loop {
            let mut command = redis::cmd("SCAN");
            command
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, sets): (u64, Vec<Vec<u8>>) = self.send(Request::Command(&command)).await?;
            for set in sets {
                let mut script = PURGE.key(set);
                script.arg(&self.prefix).arg(now);
                let (gone, bad): (u64, u64) = self.send(Request::Script(&script)).await?;
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

/// What [`RedisStore::send`] sends.
#[derive(Clone, Copy)]
enum Request<'a> {
    Command(&'a redis::Cmd),
    Pipeline(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

/// A stored token that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt remember token in Redis: {what}: bad or missing field {field}")]
struct Corrupt {
    what: String,
    field: &'static str,
}

/// The `SCAN` pattern of every user set under `prefix`, with the prefix's
/// glob characters escaped.
fn user_set_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 16);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("remember:user:*");
    pattern
}

/// When a token's key expires: its `expires_at`, within what Redis takes.
fn ttl_at(expires_at: u64) -> u64 {
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
    fn scan_pattern_escapes_the_prefixs_glob_characters() {
        assert_eq!(
            user_set_pattern(r"a*b?[c]\d:"),
            r"a\*b\?\[c\]\\d:remember:user:*"
        );
        assert_eq!(user_set_pattern("latch:"), "latch:remember:user:*");
    }
}
