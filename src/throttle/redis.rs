//! The Redis backend of [`Throttle`](super::Throttle): a hash per key, an
//! attempt checked and counted by one Lua script and taken back by another,
//! expiry by key TTL.
//!
//! # One server, or a cluster
//!
//! The limit must hold under concurrent logins, so the check of an
//! attempt's keys and the failure it counts on them are one atomic step.
//! A Lua script is atomic, but on Redis Cluster a script may only touch
//! keys of one hash slot, and an attempt's keys cannot share a slot: the
//! username's key is shared with attempts from every address, and the
//! address's with attempts at every username, so no tag chosen per attempt
//! puts them together. Hence two layouts, one per constructor:
//!
//! - [`Layout::Server`] (`Throttle::redis`): one script checks and counts
//!   all of an attempt's keys at once, and one script takes it back. A
//!   refused attempt writes nothing. This needs every key on one node: a
//!   single server, or a cluster with a hash tag in the prefix (`{app}:`),
//!   which puts every throttle key in one slot, served by one master.
//! - [`Layout::Cluster`] (`Throttle::redis_cluster`): the same scripts, run
//!   on one key each (so one slot each, wherever the key lives). An attempt
//!   first reads each key's `blocked_until` and is refused, with nothing
//!   written, if one is blocked. Otherwise it runs the attempt script on
//!   each key, concurrently; each run checks and counts its key atomically,
//!   so no key lets more attempts through than its limit, however many
//!   arrive at once. If a key refuses (it became blocked since the read),
//!   the attempt is taken back from the keys that counted it, as an
//!   attempt not checked is. The trade-off: between the count and its
//!   refund, other attempts see it, so a login racing a refused one may be
//!   refused too; and a refund leaves the key's `last_failure` and TTL as
//!   the count set them. Refused attempts that do not race a new block
//!   write nothing, as on one server. Keeping a slot per attempt instead
//!   (a tag per attempt) would split each key's count over many slots,
//!   and a limit per key could no longer hold.

use std::sync::{Arc, LazyLock};

use futures_util::future::join_all;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Script, Value};

use super::{Key, Keys, Refund, Refunding, Reservation, Settings};

/// Counts in Redis. Clones share the connection.
#[derive(Clone)]
pub(super) struct RedisThrottle {
    connection: Arc<dyn Connection>,
    layout: Layout,
    prefix: String,
}

/// How an attempt's keys are counted: see the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// One script per attempt, over all of its keys: one Redis server.
    Server,
    /// One script per key: Redis Cluster, whose keys live on many nodes.
    Cluster,
}

/// A connection of redis's, of any type, that the throttle clones for
/// each call (as `ConnectionManager` and `ClusterConnection` are meant to
/// be).
trait Connection: ConnectionLike + Send + Sync {
    fn clone_boxed(&self) -> Box<dyn Connection>;
}

impl<C> Connection for C
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn clone_boxed(&self) -> Box<dyn Connection> {
        Box::new(self.clone())
    }
}

/// One call's own clone of the connection.
struct Call(Box<dyn Connection>);

impl ConnectionLike for Call {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
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
    Redis(RedisError),
    /// Redis Cluster refused a script over keys of several slots.
    #[error("{0} (on Redis Cluster, use `Throttle::redis_cluster`, or a prefix with a hash tag)")]
    CrossSlot(RedisError),
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

impl From<RedisError> for Error {
    fn from(error: RedisError) -> Self {
        match error.kind() {
            redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot) => Error::CrossSlot(error),
            _ => Error::Redis(error),
        }
    }
}

/// What [`RedisThrottle::send`] sends.
#[derive(Clone, Copy)]
enum Request<'a> {
    Command(&'a redis::Cmd),
    Script(&'a redis::ScriptInvocation<'a>),
}

impl RedisThrottle {
    pub(super) fn new<C>(connection: C, layout: Layout) -> Self
    where
        C: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self {
            connection: Arc::new(connection),
            layout,
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }

    pub(super) fn set_prefix(&mut self, prefix: String) {
        self.prefix = prefix;
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn layout(&self) -> Layout {
        self.layout
    }

    fn key(&self, key: &Key) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Refuses the attempt if a key is blocked, or else counts a failure on
    /// each key: one script on one server, so both are one atomic step; on
    /// a cluster, a read, then one script per key (see the module's
    /// documentation).
    pub(super) async fn attempt(
        &self,
        keys: &Keys,
        settings: &Settings,
        now: u64,
    ) -> Result<Reservation, Error> {
        let with_limits: Vec<(&Key, u32)> = keys.with_limits(settings).collect();
        match self.layout {
            Layout::Server => self.run_attempt(&with_limits, settings, now).await,
            Layout::Cluster => {
                self.attempt_per_key(keys, &with_limits, settings, now)
                    .await
            }
        }
    }

    /// [`attempt`](Self::attempt) on a cluster.
    async fn attempt_per_key(
        &self,
        keys: &Keys,
        with_limits: &[(&Key, u32)],
        settings: &Settings,
        now: u64,
    ) -> Result<Reservation, Error> {
        // A key blocked already refuses the attempt, which writes nothing.
        // A field that is not a number is left for the script to report.
        let reads = join_all(keys.iter().map(|key| async move {
            let mut command = redis::cmd("HGET");
            command.arg(self.key(key)).arg("blocked_until");
            let until: Option<String> = self.send(Request::Command(&command)).await?;
            Ok::<_, Error>(until.and_then(|until| until.parse::<u64>().ok()))
        }))
        .await;
        let mut latest = 0;
        for until in reads {
            latest = latest.max(until?.unwrap_or(0));
        }
        if latest > now {
            return Ok(Reservation::Refused {
                blocked_until: latest,
            });
        }

        let answers = join_all(with_limits.iter().map(|&key| async move {
            self.run_attempt(std::slice::from_ref(&key), settings, now)
                .await
        }))
        .await;
        let mut refunds = Vec::with_capacity(answers.len());
        let mut counted = Vec::new();
        let mut refused: Option<u64> = None;
        let mut failed: Option<Error> = None;
        for (&(key, _), answer) in with_limits.iter().zip(answers) {
            match answer {
                // One refund: the script answers one per key.
                Ok(Reservation::Reserved { refunds: one }) => {
                    for refund in one {
                        refunds.push(refund);
                        counted.push((key, refund));
                    }
                }
                Ok(Reservation::Refused { blocked_until }) => {
                    refused = Some(refused.unwrap_or(0).max(blocked_until));
                }
                // A corrupt key answers as it would on one server: first.
                Err(error @ Error::Corrupt { .. }) => failed = Some(error),
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        if refused.is_none() && failed.is_none() {
            return Ok(Reservation::Reserved { refunds });
        }
        // Not all keys counted it: the attempt is taken back from those
        // that did, as one not checked.
        let taken_back = join_all(
            counted
                .iter()
                .map(|&(key, refund)| async move { self.run_refund(&[key], &[refund], 0).await }),
        )
        .await;
        if let Some(error) = taken_back.into_iter().find_map(Result::err) {
            tracing::error!(
                target: "latch", %error,
                "login throttle: an attempt refused on Redis Cluster stays counted on a key"
            );
        }
        match (failed, refused) {
            (Some(error @ Error::Corrupt { .. }), _) => Err(error),
            (_, Some(blocked_until)) => Ok(Reservation::Refused { blocked_until }),
            (Some(error), None) => Err(error),
            (None, None) => unreachable!("handled above"),
        }
    }

    /// Runs [`ATTEMPT`] on `keys`, each with its limit.
    async fn run_attempt(
        &self,
        keys: &[(&Key, u32)],
        settings: &Settings,
        now: u64,
    ) -> Result<Reservation, Error> {
        let mut script = ATTEMPT.prepare_invoke();
        script
            .arg(now)
            .arg(settings.window)
            .arg(settings.base_delay)
            .arg(settings.max_delay);
        for &(key, limit) in keys {
            script.key(self.key(key)).arg(limit);
        }
        let reply: Vec<Vec<u8>> = self.send(Request::Script(&script)).await?;
        let reply: Vec<String> = reply
            .iter()
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect();
        let parse = |text: &str| text.parse::<u64>().ok();
        let parts: Vec<&str> = reply.iter().map(String::as_str).collect();
        let reservation = match parts.as_slice() {
            ["refused", until] => {
                parse(until).map(|blocked_until| Reservation::Refused { blocked_until })
            }
            // Each key's blocked_until before and after, in order.
            ["reserved", pairs @ ..] if pairs.len() == 2 * keys.len() => pairs
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

    /// Takes an attempt back: see `Counts::refund`. One script on one
    /// server; one per key on a cluster.
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
        let keys: Vec<&Key> = keys.iter().collect();
        match self.layout {
            Layout::Server => self.run_refund(&keys, refunds, deleted).await,
            Layout::Cluster => {
                let results = join_all(keys.iter().zip(refunds).enumerate().map(
                    |(n, (&key, &refund))| async move {
                        if n < deleted {
                            self.delete(&[key]).await
                        } else {
                            self.run_refund(&[key], &[refund], 0).await
                        }
                    },
                ))
                .await;
                results.into_iter().collect()
            }
        }
    }

    /// Runs [`REFUND`] on `keys`: the first `deleted` are deleted, the
    /// others lose the attempt that `refunds` (one per key) describe.
    async fn run_refund(
        &self,
        keys: &[&Key],
        refunds: &[Refund],
        deleted: usize,
    ) -> Result<(), Error> {
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

    /// Forgets the keys' failures and blocks: one `DEL` on one server, one
    /// per key on a cluster (whose `DEL` takes keys of one slot).
    pub(super) async fn reset(&self, keys: &[Key]) -> Result<(), Error> {
        let keys: Vec<&Key> = keys.iter().collect();
        match self.layout {
            Layout::Server => self.delete(&keys).await,
            Layout::Cluster => join_all(
                keys.iter()
                    .map(|&key| async move { self.delete(&[key]).await }),
            )
            .await
            .into_iter()
            .collect(),
        }
    }

    async fn delete(&self, keys: &[&Key]) -> Result<(), Error> {
        let mut command = redis::cmd("DEL");
        for key in keys {
            command.arg(self.key(key));
        }
        let _: i64 = self.send(Request::Command(&command)).await?;
        Ok(())
    }

    /// Sends a request, and once more if Redis refused the connection:
    /// then nothing was sent, and a `ConnectionManager` has begun a new
    /// connection (as `RedisStore` does).
    async fn send<T: redis::FromRedisValue>(&self, request: Request<'_>) -> Result<T, RedisError> {
        let mut connection = Call(self.connection.clone_boxed());
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
