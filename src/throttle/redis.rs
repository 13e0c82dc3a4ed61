//! The Redis backend of [`Throttle`](super::Throttle): a hash per key, an
//! attempt checked and counted by one Lua script and taken back by another,
//! expiry by key TTL.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};

use super::{Key, Keys, Refund, Refunding, Reservation, Settings};

/// Counts in Redis. Clones share the connection.
#[derive(Clone)]
pub(super) struct RedisThrottle {
    manager: ConnectionManager,
    prefix: String,
}

/// The prefix of every key when none is set (as for `RedisStore`).
const DEFAULT_PREFIX: &str = "latch:";

/// Checks and counts one attempt, atomically. The Rust twin is
/// `Counts::attempt` (with `Entry::fail`).
///
/// KEYS: the username's key, the account's or both, then the address's if
/// known. ARGV: now, window, base delay, max delay (milliseconds, at most
/// 2^50 apart from now, so exact in Lua's numbers), then each key's limit.
///
/// Every field of every key is read first; a field that is not a number
/// the script wrote (digits, at most 16) answers `corrupt, key, field,
/// value` and nothing is written. If a key is blocked past now, the answer
/// is `refused, blocked_until` (the latest) and nothing is written.
/// Otherwise a failure is counted on each key and the answer is `reserved`
/// followed by each key's `blocked_until` before and after. Numbers are
/// written back with `%d`: Redis may turn a Lua number into text in
/// exponent notation.
static ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local base, max = tonumber(ARGV[3]), tonumber(ARGV[4])
local function int(x) return string.format('%d', x) end
local names = {'failures', 'last_failure', 'blocked_until'}
local entries = {}
local latest = 0
for i, key in ipairs(KEYS) do
  local fields = redis.call('HMGET', key, names[1], names[2], names[3])
  local entry = {}
  for j, name in ipairs(names) do
    local value = fields[j]
    if value then
      if #value > 16 or not string.match(value, '^%d+$') then
        return {'corrupt', key, name, value}
      end
      entry[j] = tonumber(value)
    else
      entry[j] = 0
    end
  end
  entries[i] = entry
  latest = math.max(latest, entry[3])
end
if latest > now then
  return {'refused', int(latest)}
end
local reply = {'reserved'}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[4 + i])
  local failures, last, blocked = entries[i][1], entries[i][2], entries[i][3]
  local before = blocked
  if now - last >= window then failures = 0 end
  failures = failures + 1
  if failures >= limit then
    local delay = math.min(base * 2 ^ math.min(failures - limit, 62), max)
    blocked = math.max(blocked, now + delay)
  end
  redis.call('HSET', key, 'failures', int(failures), 'last_failure', int(now),
    'blocked_until', int(blocked))
  redis.call('PEXPIRE', key, int(math.max(window, blocked - now, 1)))
  reply[#reply + 1] = int(before)
  reply[#reply + 1] = int(blocked)
end
return reply
",
    )
});

/// Takes an attempt back. The Rust twin is `Counts::refund`.
///
/// KEYS: the keys to delete (the username's and account's, after a right
/// password), then the keys that lose this attempt. ARGV: how many keys to
/// delete, then for each key that loses the attempt its `blocked_until`
/// before the attempt and the one it set. Such a key loses one failure,
/// and gets its `blocked_until` back if it still holds the one the attempt
/// set; a key that is gone stays gone.
static REFUND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local deleted = tonumber(ARGV[1])
for i = 1, deleted do
  redis.call('DEL', KEYS[i])
end
for i = deleted + 1, #KEYS do
  local key = KEYS[i]
  local n = 2 * (i - deleted)
  local fields = redis.call('HMGET', key, 'failures', 'blocked_until')
  local failures = tonumber(fields[1])
  if failures and failures >= 1 then
    redis.call('HSET', key, 'failures', string.format('%d', failures - 1))
  end
  if fields[2] == ARGV[n + 1] then
    redis.call('HSET', key, 'blocked_until', ARGV[n])
  end
end
return 1
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
    #[error("corrupt login throttle key {key:?} in Redis: bad {field} {value:?}")]
    Corrupt {
        key: String,
        field: String,
        value: String,
    },
    /// The attempt script answered something it never does.
    #[error("unexpected answer from the login throttle script in Redis: {0:?}")]
    Reply(Vec<String>),
}

/// What [`RedisThrottle::send`] sends.
#[derive(Clone, Copy)]
enum Request<'a> {
    Command(&'a redis::Cmd),
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

    /// Refuses the attempt if a key is blocked, or else counts a failure on
    /// each key: one script, so both are one atomic step.
    pub(super) async fn attempt(
        &self,
        keys: &Keys,
        settings: &Settings,
        now: u64,
    ) -> Result<Reservation, Error> {
        let mut script = ATTEMPT.prepare_invoke();
        script
            .arg(now)
            .arg(settings.window)
            .arg(settings.base_delay)
            .arg(settings.max_delay);
        for (key, limit) in keys.with_limits(settings) {
            script.key(self.key(key)).arg(limit);
        }
        let reply: Vec<Vec<u8>> = self.send(Request::Script(&script)).await?;
        let reply: Vec<String> = reply
            .iter()
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect();
        let parse = |text: &str| text.parse::<u64>().ok();
        let parts: Vec<&str> = reply.iter().map(String::as_str).collect();
        let keys_sent = keys.iter().count();
        let reservation = match parts.as_slice() {
            ["refused", until] => {
                parse(until).map(|blocked_until| Reservation::Refused { blocked_until })
            }
            // Each key's blocked_until before and after, in order.
            ["reserved", pairs @ ..] if pairs.len() == 2 * keys_sent => pairs
                .chunks(2)
                .map(|pair| {
                    Some(Refund {
                        before: parse(pair[0])?,
                        set: parse(pair[1])?,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .map(|refunds| Reservation::Reserved { refunds }),
            ["corrupt", key, field, value] => {
                return Err(Error::Corrupt {
                    key: (*key).to_owned(),
                    field: (*field).to_owned(),
                    value: (*value).to_owned(),
                })
            }
            _ => None,
        };
        reservation.ok_or(Error::Reply(reply))
    }

    /// Takes an attempt back, in one script: see `Counts::refund`.
    pub(super) async fn refund(
        &self,
        keys: &Keys,
        refunds: &[Refund],
        refunding: Refunding,
    ) -> Result<(), Error> {
        let deleted = match refunding {
            Refunding::Success => keys.own.len(),
            Refunding::NotChecked => 0,
        };
        let mut script = REFUND.prepare_invoke();
        script.arg(deleted);
        for (n, (key, refund)) in keys.iter().zip(refunds).enumerate() {
            script.key(self.key(key));
            if n >= deleted {
                script.arg(refund.before).arg(refund.set);
            }
        }
        let _: i64 = self.send(Request::Script(&script)).await?;
        Ok(())
    }

    /// Forgets the keys' failures and blocks.
    pub(super) async fn reset(&self, keys: &[Key]) -> Result<(), Error> {
        let mut command = redis::cmd("DEL");
        for key in keys {
            command.arg(self.key(key));
        }
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
                Request::Script(script) => script.invoke_async(&mut connection).await,
            };
            match result {
                Err(error) if error.is_connection_refusal() && !retried => retried = true,
                result => return result,
            }
        }
    }
}
