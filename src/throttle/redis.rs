//! The Redis backend of [`Throttle`](super::Throttle): a hash per key,
//! failures counted by one Lua script, expiry by key TTL.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};

use super::{Key, Keys, Settings};

/// Counts in Redis. Clones share the connection.
#[derive(Clone)]
pub(super) struct RedisThrottle {
    manager: ConnectionManager,
    prefix: String,
}

/// The prefix of every key when none is set (as for `RedisStore`).
const DEFAULT_PREFIX: &str = "latch:";

/// Counts one failure on each key. The Rust twin is `Entry::fail`.
///
/// KEYS: the username's key, then the address's if known. ARGV: now,
/// window, base delay, max delay (milliseconds, at most 2^50 apart from
/// now, so exact in Lua's numbers), then each key's limit. Numbers are
/// written back with `%d`: Redis may turn a Lua number into text in
/// exponent notation.
static FAIL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local base, max = tonumber(ARGV[3]), tonumber(ARGV[4])
local function int(x) return string.format('%d', x) end
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[4 + i])
  local fields = redis.call('HMGET', key, 'failures', 'last_failure', 'blocked_until')
  local failures = tonumber(fields[1]) or 0
  local last = tonumber(fields[2]) or 0
  local blocked = tonumber(fields[3]) or 0
  if now - last >= window then failures = 0 end
  failures = failures + 1
  if failures >= limit then
    local delay = math.min(base * 2 ^ math.min(failures - limit, 62), max)
    blocked = math.max(blocked, now + delay)
  end
  redis.call('HSET', key, 'failures', int(failures), 'last_failure', int(now),
    'blocked_until', int(blocked))
  redis.call('PEXPIRE', key, int(math.max(window, blocked - now, 1)))
end
return #KEYS
",
    )
});

/// A Redis throttle call failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    /// Redis failed or is unreachable.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// A key holds something the throttle did not write.
    #[error("corrupt login throttle key {key:?} in Redis: bad blocked_until {value:?}")]
    Corrupt { key: String, value: String },
}

/// What [`RedisThrottle::send`] sends.
#[derive(Clone, Copy)]
enum Request<'a> {
    Command(&'a redis::Cmd),
    Pipeline(&'a redis::Pipeline),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl RedisThrottle {
    pub(super) fn new(manager: ConnectionManager) -> Self {
        Self {
            manager,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    pub(super) fn set_prefix(&mut self, prefix: String) {
        self.prefix = prefix;
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, key: &Key) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The latest time any of the keys is blocked until (0: none is).
    pub(super) async fn blocked_until(&self, keys: &Keys) -> Result<u64, Error> {
        let names: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("HGET").arg(name).arg("blocked_until");
        }
        let values: Vec<Option<Vec<u8>>> = self.send(Request::Pipeline(&pipe)).await?;
        let mut latest = 0;
        for (name, value) in names.into_iter().zip(values) {
            let Some(value) = value else { continue };
            let until = std::str::from_utf8(&value)
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or_else(|| Error::Corrupt {
                    key: name,
                    value: String::from_utf8_lossy(&value).into_owned(),
                })?;
            latest = latest.max(until);
        }
        Ok(latest)
    }

    /// Counts a failure on each key, atomically.
    pub(super) async fn fail(
        &self,
        keys: &Keys,
        settings: &Settings,
        now: u64,
    ) -> Result<(), Error> {
        let mut script = FAIL.prepare_invoke();
        script
            .arg(now)
            .arg(settings.window)
            .arg(settings.base_delay)
            .arg(settings.max_delay);
        for (key, limit) in keys.with_limits(settings) {
            script.key(self.key(key)).arg(limit);
        }
        let _: i64 = self.send(Request::Script(&script)).await?;
        Ok(())
    }

    /// Forgets the key's failures and block.
    pub(super) async fn reset(&self, key: &Key) -> Result<(), Error> {
        let mut command = redis::cmd("DEL");
        command.arg(self.key(key));
        let _: i64 = self.send(Request::Command(&command)).await?;
        Ok(())
    }

    /// Sends a request, and once more if Redis refused the connection:
    /// then nothing was sent, and the manager has begun a new connection
    /// (as `RedisStore` does).
    async fn send<T: redis::FromRedisValue>(&self, request: Request<'_>) -> Result<T, RedisError> {
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
                result => return result,
            }
        }
    }
}
