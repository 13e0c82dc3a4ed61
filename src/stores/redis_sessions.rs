//! The session registry's records and change feed in Redis, for
//! [`RedisStore`]. The key layout, and what happens when a process dies in
//! the middle of an ending, are described on [`RedisStore`].
//!
//! Each script touches the keys of one hash slot: a user's (records and
//! index, tagged `{u:<digest>}`) or the feed's (tagged `{feed}`). What
//! spans two slots is two steps, ordered so that a step left undone is
//! harmless or done later.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt as _;
use redis::aio::ConnectionLike;
use redis::Script;

use super::redis::{
    checked_digest, ttl_at, user_digest, Corrupt, RedisStore, Request, AT_OR_BEFORE, EXTEND,
};
use crate::registry::{Change, Ending, SessionRecord, SessionStore, Wake};
use crate::remember::StoreError;

/// How long (seconds) a record's key outlives its `expires_at` (or now,
/// when that is later): clocks a little apart must not drop a record, or
/// an ended session's mark, early. `purge` deletes records at `expires_at`.
const SLACK: u64 = 60 * 60;

/// How many entries one step of `purge` (or of applying pending endings)
/// reads.
const BATCH: usize = 500;

/// How often the change feed's subscription pings Redis.
const PING_EVERY: Duration = Duration::from_secs(15);

/// How long the change feed waits for Redis to connect, subscribe or
/// answer a ping.
const FEED_TIMEOUT: Duration = Duration::from_secs(5);

// Field names of a record's hash.
const SESSION_ID: &str = "session_id";
const USER_ID: &str = "user_id";
const DEVICE: &str = "device";
const CREATED_AT: &str = "created_at";
const LAST_ACTIVE_AT: &str = "last_active_at";
const EXPIRES_AT: &str = "expires_at";
const REMEMBERED: &str = "remembered";
const ENDED: &str = "ended";

/// Lua shared by the scripts: `keep_until(at)` is when a record's key
/// expires, for a record valid until `at`: `SLACK` after `at`, or after now
/// if `at` has passed on Redis's clock.
static KEEP_UNTIL: LazyLock<String> = LazyLock::new(|| {
    format!(
        r"
local function keep_until(at)
  local now = tonumber(redis.call('TIME')[1])
  if at < now then at = now end
  return at + {SLACK}
end
"
    )
});

/// KEYS: record, user index. ARGV: score (`expires_at`, capped), session
/// id, user id, device, created_at, last_active_at, expires_at, remembered.
/// Records or refreshes a session, keeping its first `created_at`; an ended
/// one is left as it is. Returns when the record's key expires, or 0.
static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EXTEND}{}{}",
        *KEEP_UNTIL,
        r"
if redis.call('HGET', KEYS[1], 'ended') == '1' then return 0 end
local created = redis.call('HGET', KEYS[1], 'created_at') or ARGV[5]
redis.call('HSET', KEYS[1], 'session_id', ARGV[2], 'user_id', ARGV[3], 'device', ARGV[4],
  'created_at', created, 'last_active_at', ARGV[6], 'expires_at', ARGV[7],
  'remembered', ARGV[8], 'ended', '0')
local at = keep_until(tonumber(ARGV[1]))
redis.call('EXPIREAT', KEYS[1], at)
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
extend(KEYS[2], at)
return at
"
    ))
});

/// KEYS: record. ARGV: time. Moves `last_active_at` forward to the time,
/// if the session is recorded and not ended.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{AT_OR_BEFORE}{}",
        r"
local fields = redis.call('HMGET', KEYS[1], 'ended', 'last_active_at')
if fields[1] ~= '0' then return 0 end
if fields[2] and at_or_before(ARGV[1], fields[2]) then return 0 end
redis.call('HSET', KEYS[1], 'last_active_at', ARGV[1])
return 1
"
    ))
});

/// KEYS: user index. ARGV: record key base, lowest score. The hashes of the
/// indexed records whose score is at least the lowest; members whose record
/// is gone (expired by its TTL) leave the index.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf')) do
  local fields = redis.call('HGETALL', ARGV[1] .. id)
  if #fields == 0 then
    redis.call('ZREM', KEYS[1], id)
  else
    out[#out + 1] = fields
  end
end
return out
",
    )
});

/// KEYS: record, user index. ARGV: score (`until`, capped), session id,
/// user id. Marks the session ended (a record not there yet is made, marked,
/// so that it cannot be recorded later), and takes it out of the index.
static END_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{EXTEND}{}{}",
        *KEEP_UNTIL,
        r"
local at = keep_until(tonumber(ARGV[1]))
redis.call('ZREM', KEYS[2], ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'ended', '1')
  extend(KEYS[1], at)
else
  redis.call('HSET', KEYS[1], 'session_id', ARGV[2], 'user_id', ARGV[3], 'ended', '1')
  redis.call('EXPIREAT', KEYS[1], at)
end
return 1
"
    ))
});

/// KEYS: user index. ARGV: record key base, not_before, user id, `1` if
/// there is a session to keep (else `0`), that session's id. Marks ended
/// the user's sessions created at or before `not_before`, but the one to
/// keep, and takes them out of the index. Returns how many.
static END_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{AT_OR_BEFORE}{}",
        r"
local count = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not (ARGV[4] == '1' and id == ARGV[5]) then
    local key = ARGV[1] .. id
    local fields = redis.call('HMGET', key, 'created_at', 'user_id')
    if fields[1] and fields[2] == ARGV[3] and at_or_before(fields[1], ARGV[2]) then
      redis.call('HSET', key, 'ended', '1')
      redis.call('ZREM', KEYS[1], id)
      count = count + 1
    end
  end
end
return count
"
    ))
});

/// KEYS: seq, log, until, pending. ARGV: the ending as JSON, its `until`
/// (capped), the channel. Numbers the ending, logs it, notes it as not yet
/// applied to the user's records, and publishes its number.
static FEED_END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], seq, seq .. ' ' .. ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], seq)
redis.call('ZADD', KEYS[4], seq, seq)
redis.call('PUBLISH', ARGV[3], seq)
return seq
",
    )
});

/// KEYS: pending, log. ARGV: how many. The log entries of the first pending
/// endings; a pending ending no longer logged (purged) is dropped.
static PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
for _, seq in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  local entry = redis.call('ZRANGEBYSCORE', KEYS[2], seq, seq)
  if #entry == 0 then
    redis.call('ZREM', KEYS[1], seq)
  else
    out[#out + 1] = entry[1]
  end
end
return out
",
    )
});

/// KEYS: log, until. ARGV: now (capped), how many. Deletes up to that many
/// endings whose `until` is at or before now. Returns `{deleted, read}`.
static PURGE_FEED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seqs = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local deleted = 0
for _, seq in ipairs(seqs) do
  deleted = deleted + redis.call('ZREMRANGEBYSCORE', KEYS[1], seq, seq)
  redis.call('ZREM', KEYS[2], seq)
end
return {deleted, #seqs}
",
    )
});

/// KEYS: user index. ARGV: record key base, now (decimal), then session
/// ids. Deletes the records whose `expires_at` is at or before now. Returns
/// `{deleted, settled, alive}`: how many it deleted; the ids deleted or
/// already gone (to leave the expiry index); and, in turn, the id and
/// `expires_at` of each record that is still valid (saved again since),
/// which is scored again. Numbers are compared as decimal text, exactly.
static PURGE_RECORDS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{AT_OR_BEFORE}{}",
        r"
local deleted, settled, alive = 0, {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = ARGV[1] .. id
  local expires = redis.call('HGET', key, 'expires_at')
  if expires and not string.match(expires, '^%d+$') then
    alive[#alive + 1] = id
    alive[#alive + 1] = expires
  elseif expires and not at_or_before((string.gsub(expires, '^0+(%d)', '%1')), ARGV[2]) then
    alive[#alive + 1] = id
    alive[#alive + 1] = expires
  else
    if expires then
      redis.call('DEL', key)
      deleted = deleted + 1
    end
    redis.call('ZREM', KEYS[1], id)
    settled[#settled + 1] = id
  end
end
return {deleted, settled, alive}
"
    ))
});

/// KEYS: expiry index. ARGV: now (capped), how many settled members, those
/// members, then pairs of member and new score. A settled member leaves
/// the index unless saved again meanwhile (scored past now); a member
/// still valid gets its record's score, if that is later.
static RESCORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now, settled = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, 2 + settled do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
for i = 3 + settled, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if not score or tonumber(score) < tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  end
end
return 1
",
    )
});

/// The change feed's subscription failed.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("the Redis change feed's connection closed")]
    Closed,
    #[error("Redis did not answer the change feed's {0} within {FEED_TIMEOUT:?}")]
    Timeout(&'static str),
}

/// Runs a step of the feed's subscription, within [`FEED_TIMEOUT`].
async fn in_time<T>(
    what: &'static str,
    step: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(FEED_TIMEOUT, step).await {
        Ok(result) => result.map_err(StoreError::new),
        Err(_) => Err(StoreError::new(FeedError::Timeout(what))),
    }
}

impl<C> RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn record_base(&self, digest: &str) -> String {
        format!("{}sessions:{{u:{digest}}}:record:", self.prefix)
    }

    fn record_key(&self, digest: &str, session_id: &str) -> String {
        format!("{}{session_id}", self.record_base(digest))
    }

    fn index_key(&self, digest: &str) -> String {
        format!("{}sessions:{{u:{digest}}}:index", self.prefix)
    }

    fn owner_key(&self, session_id: &str) -> String {
        format!("{}sessions:id:{session_id}", self.prefix)
    }

    fn feed_key(&self, name: &str) -> String {
        format!("{}sessions:{{feed}}:{name}", self.prefix)
    }

    /// The pub/sub channel on which each ending's sequence number is
    /// published.
    fn channel(&self) -> String {
        format!("{}sessions:changes", self.prefix)
    }

    /// Marks the records an ending ends (the second step of `end`).
    async fn apply(&self, ending: &Ending) -> Result<(), StoreError> {
        let digest = user_digest(ending.user_id());
        match ending {
            Ending::Session {
                session_id,
                user_id,
                until,
            } => {
                let mut script = END_SESSION.key(self.record_key(&digest, session_id));
                script
                    .key(self.index_key(&digest))
                    .arg(ttl_at(*until))
                    .arg(session_id)
                    .arg(user_id);
                let _: i64 = self.send(Request::Script(&script)).await?;
            }
            Ending::User {
                user_id,
                not_before,
                except,
                ..
            } => {
                let mut script = END_USER.key(self.index_key(&digest));
                script
                    .arg(self.record_base(&digest))
                    .arg(not_before)
                    .arg(user_id)
                    .arg(if except.is_some() { "1" } else { "0" })
                    .arg(except.as_deref().unwrap_or(""));
                let _: i64 = self.send(Request::Script(&script)).await?;
            }
        }
        Ok(())
    }

    /// Notes that an ending has been applied to its user's records.
    async fn applied(&self, seq: u64) -> Result<(), StoreError> {
        let mut command = redis::cmd("ZREM");
        command.arg(self.feed_key("pending")).arg(seq);
        let _: i64 = self.send(Request::Command(&command)).await?;
        Ok(())
    }

    /// Applies endings logged but not yet applied to their user's records
    /// (their `end` died between its two steps, or is under way): up to
    /// `batches` batches. Returns whether any is left.
    async fn apply_pending(&self, batches: usize) -> Result<bool, StoreError> {
        for _ in 0..batches {
            let mut script = PENDING.key(self.feed_key("pending"));
            script.key(self.feed_key("log")).arg(BATCH);
            let entries: Vec<String> = self.send(Request::Script(&script)).await?;
            for entry in &entries {
                let change = parse_entry(entry)?;
                self.apply(&change.ending).await?;
                self.applied(change.seq).await?;
            }
            if entries.len() < BATCH {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes the records in the expiry index whose `expires_at` is at or
    /// before `now`; returns how many.
    async fn purge_records(&self, now: u64) -> Result<u64, StoreError> {
        let expiry = self.feed_key("expiry");
        let mut deleted = 0;
        loop {
            let mut command = redis::cmd("ZRANGEBYSCORE");
            command
                .arg(&expiry)
                .arg("-inf")
                .arg(ttl_at(now))
                .arg("LIMIT")
                .arg(0)
                .arg(BATCH);
            let members: Vec<String> = self.send(Request::Command(&command)).await?;
            let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for member in &members {
                let (digest, session_id) = member
                    .split_once(' ')
                    .ok_or_else(|| corrupt(&expiry, "member"))?;
                let digest = checked_digest(digest.to_owned(), &expiry)?;
                by_user
                    .entry(digest)
                    .or_default()
                    .push(session_id.to_owned());
            }
            let mut settled = Vec::new();
            let mut alive = Vec::new();
            for (digest, ids) in by_user {
                let mut script = PURGE_RECORDS.key(self.index_key(&digest));
                script.arg(self.record_base(&digest)).arg(now).arg(&ids);
                let (gone, done, valid): (u64, Vec<String>, Vec<String>) =
                    self.send(Request::Script(&script)).await?;
                deleted += gone;
                self.forget_owners(&done).await;
                settled.extend(done.iter().map(|id| format!("{digest} {id}")));
                for pair in valid.chunks_exact(2) {
                    let score = pair[1].parse().map_or(super::redis::MAX_EXPIREAT, ttl_at);
                    alive.push((format!("{digest} {}", pair[0]), score));
                }
            }
            let mut script = RESCORE.key(&expiry);
            script.arg(ttl_at(now)).arg(settled.len()).arg(&settled);
            for (member, score) in &alive {
                script.arg(member).arg(score);
            }
            let _: i64 = self.send(Request::Script(&script)).await?;
            // Stop at the last batch, or if nothing was settled (every
            // member read is still valid: scored again, past now).
            if members.len() < BATCH || settled.is_empty() {
                return Ok(deleted);
            }
        }
    }

    /// Deletes the keys that name the user of sessions. A key left behind
    /// leads to no record and expires, so failures are only logged.
    async fn forget_owners(&self, session_ids: &[String]) {
        let deletions = session_ids.iter().map(|id| async move {
            let mut command = redis::cmd("DEL");
            command.arg(self.owner_key(id));
            self.send::<i64>(Request::Command(&command)).await
        });
        for result in futures_util::future::join_all(deletions).await {
            if let Err(error) = result {
                tracing::debug!(target: "latch", %error, "a session's owner key not deleted; it expires");
            }
        }
    }

    /// Follows the change feed on `client` until the subscription fails.
    async fn follow_feed(&self, client: &redis::Client, wake: Wake) -> Result<(), StoreError> {
        let pubsub = in_time("connection", client.get_async_pubsub()).await?;
        let (mut sink, mut stream) = pubsub.split();
        in_time("subscription", sink.subscribe(self.channel())).await?;
        // An ending recorded before the subscription took is read now.
        wake();
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings.tick().await;
        loop {
            let message = stream.next();
            let tick = std::pin::pin!(pings.tick());
            match select(message, tick).await {
                Either::Left((Some(_), _)) => wake(),
                Either::Left((None, _)) => return Err(StoreError::new(FeedError::Closed)),
                Either::Right(_) => {
                    let _: redis::Value = in_time("ping", sink.ping()).await?;
                }
            }
        }
    }
}

impl<C> SessionStore for RedisStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn save(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let digest = user_digest(&record.user_id);
        let score = ttl_at(record.expires_at);
        let mut script = SAVE.key(self.record_key(&digest, &record.session_id));
        script
            .key(self.index_key(&digest))
            .arg(score)
            .arg(&record.session_id)
            .arg(&record.user_id)
            .arg(&record.device)
            .arg(record.created_at)
            .arg(record.last_active_at)
            .arg(record.expires_at)
            .arg(if record.remembered { "1" } else { "0" });
        let kept_until: u64 = self.send(Request::Script(&script)).await?;
        if kept_until == 0 {
            return Ok(());
        }
        // The record first: the key that names its user (for `touch`) and
        // its place in the expiry index (for `purge`) only help find it.
        let owner = self.owner_key(&record.session_id);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&owner)
            .arg(&digest)
            .ignore()
            .cmd("EXPIREAT")
            .arg(&owner)
            .arg(kept_until)
            .ignore();
        let mut expiry = redis::cmd("ZADD");
        expiry
            .arg(self.feed_key("expiry"))
            .arg(score)
            .arg(format!("{digest} {}", record.session_id));
        let ((), _): ((), i64) = futures_util::future::try_join(
            self.send(Request::Pipeline(&pipe)),
            self.send(Request::Command(&expiry)),
        )
        .await?;
        Ok(())
    }

    async fn touch(&self, session_id: &str, at: u64) -> Result<(), StoreError> {
        let owner = self.owner_key(session_id);
        let mut command = redis::cmd("GET");
        command.arg(&owner);
        let digest: Option<String> = self.send(Request::Command(&command)).await?;
        let Some(digest) = digest else {
            return Ok(());
        };
        let digest = checked_digest(digest, &owner)?;
        let mut script = TOUCH.key(self.record_key(&digest, session_id));
        script.arg(at);
        let _: i64 = self.send(Request::Script(&script)).await?;
        Ok(())
    }

    async fn list(&self, user_id: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        // An ending in the feed but not yet on the records (its `end` died,
        // or is under way) is applied first: a session whose ending is in
        // the feed is never listed.
        self.apply_pending(1).await?;
        let digest = user_digest(user_id);
        let mut script = LIST.key(self.index_key(&digest));
        script.arg(self.record_base(&digest)).arg(ttl_at(now));
        let hashes: Vec<HashMap<String, Vec<u8>>> = self.send(Request::Script(&script)).await?;
        let mut records = Vec::with_capacity(hashes.len());
        for fields in &hashes {
            let (record, ended) = decode(fields)?;
            if !ended && record.user_id == user_id && record.expires_at > now {
                records.push(record);
            }
        }
        records.sort_by(|a, b| {
            b.last_active_at
                .cmp(&a.last_active_at)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        Ok(records)
    }

    async fn end(&self, ending: &Ending) -> Result<u64, StoreError> {
        let json = serde_json::to_string(ending).map_err(StoreError::new)?;
        let mut script = FEED_END.key(self.feed_key("seq"));
        script
            .key(self.feed_key("log"))
            .key(self.feed_key("until"))
            .key(self.feed_key("pending"))
            .arg(json)
            .arg(ttl_at(ending.until()))
            .arg(self.channel());
        let seq: u64 = self.send(Request::Script(&script)).await?;
        // The ending is in the feed: every instance refuses its sessions.
        // If marking the records fails, `list` and `purge` apply it later.
        let marked = match self.apply(ending).await {
            Ok(()) => self.applied(seq).await,
            Err(error) => Err(error),
        };
        if let Err(error) = marked {
            tracing::warn!(target: "latch", %error, seq, "session ending recorded, its records not yet marked; they will be");
        }
        Ok(seq)
    }

    async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut command = redis::cmd("ZRANGEBYSCORE");
        command
            .arg(self.feed_key("log"))
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let entries: Vec<String> = self.send(Request::Command(&command)).await?;
        entries.iter().map(|entry| parse_entry(entry)).collect()
    }

    async fn listen(&self, wake: Wake) -> Result<(), StoreError> {
        match &self.feed {
            Some(client) => self.follow_feed(client, wake).await,
            None => std::future::pending().await,
        }
    }

    fn pushes_changes(&self) -> bool {
        self.feed.is_some()
    }

    async fn purge(&self, now: u64) -> Result<u64, StoreError> {
        while self.apply_pending(1).await? {}
        let mut deleted = 0;
        loop {
            let mut script = PURGE_FEED.key(self.feed_key("log"));
            script
                .key(self.feed_key("until"))
                .arg(ttl_at(now))
                .arg(BATCH);
            let (gone, read): (u64, usize) = self.send(Request::Script(&script)).await?;
            deleted += gone;
            if read < BATCH {
                break;
            }
        }
        Ok(deleted + self.purge_records(now).await?)
    }
}

/// A change from its log entry, `{seq} {json}`.
fn parse_entry(entry: &str) -> Result<Change, StoreError> {
    let bad = || {
        StoreError::new(Corrupt {
            what: format!("session change feed entry {entry:?}"),
            field: "entry",
        })
    };
    let (seq, json) = entry.split_once(' ').ok_or_else(bad)?;
    let seq = seq.parse().map_err(|_| bad())?;
    let ending: Ending = serde_json::from_str(json).map_err(|_| bad())?;
    Ok(Change { seq, ending })
}

fn corrupt(key: &str, field: &'static str) -> StoreError {
    StoreError::new(Corrupt {
        what: format!("key {key:?}"),
        field,
    })
}

/// A record from its hash, and whether it is ended; any field missing or
/// malformed is an error.
fn decode(fields: &HashMap<String, Vec<u8>>) -> Result<(SessionRecord, bool), StoreError> {
    let id = fields
        .get(SESSION_ID)
        .and_then(|id| String::from_utf8(id.clone()).ok());
    let what = format!("session record {:?}", id.as_deref().unwrap_or("?"));
    let bad = |field| {
        StoreError::new(Corrupt {
            what: what.clone(),
            field,
        })
    };
    let text = |field: &'static str| {
        fields
            .get(field)
            .and_then(|bytes| String::from_utf8(bytes.clone()).ok())
            .ok_or_else(|| bad(field))
    };
    let number = |field: &'static str| {
        fields
            .get(field)
            .filter(|bytes| !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit))
            .and_then(|bytes| std::str::from_utf8(bytes).ok()?.parse::<u64>().ok())
            .ok_or_else(|| bad(field))
    };
    let flag = |field: &'static str| match fields.get(field).map(Vec::as_slice) {
        Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        _ => Err(bad(field)),
    };
    let record = SessionRecord {
        session_id: text(SESSION_ID)?,
        user_id: text(USER_ID)?,
        device: text(DEVICE)?,
        created_at: number(CREATED_AT)?,
        last_active_at: number(LAST_ACTIVE_AT)?,
        expires_at: number(EXPIRES_AT)?,
        remembered: flag(REMEMBERED)?,
    };
    Ok((record, flag(ENDED)?))
}

/// The encodings, which need no server; the store itself is tested against
/// Redis in `tests/remember/session_store_redis.rs`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_round_trip_and_bad_ones_are_errors() {
        let endings = [
            Ending::Session {
                session_id: "abc".into(),
                user_id: r#""susan""#.into(),
                until: u64::MAX,
            },
            Ending::User {
                user_id: "{\"id\": \"{7}\"}".into(),
                not_before: 10,
                except: Some("keep".into()),
                until: 20,
            },
            Ending::User {
                user_id: "42".into(),
                not_before: 0,
                except: None,
                until: 1,
            },
        ];
        for (seq, ending) in endings.into_iter().enumerate() {
            let json = serde_json::to_string(&ending).unwrap();
            let change = parse_entry(&format!("{seq} {json}")).unwrap();
            assert_eq!(
                change,
                Change {
                    seq: seq as u64,
                    ending
                }
            );
        }
        for bad in [
            "",
            "7",
            "x {}",
            "7 {}",
            "7 {\"kind\":\"session\"}",
            "-1 null",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn records_decode_strictly() {
        let mut fields: HashMap<String, Vec<u8>> = [
            (SESSION_ID, "s1"),
            (USER_ID, "7"),
            (DEVICE, "Firefox on Linux"),
            (CREATED_AT, "10"),
            (LAST_ACTIVE_AT, "20"),
            (EXPIRES_AT, "30"),
            (REMEMBERED, "1"),
            (ENDED, "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
        .collect();
        let (record, ended) = decode(&fields).unwrap();
        assert!(!ended && record.remembered && record.expires_at == 30);
        fields.insert(CREATED_AT.into(), b"+1".to_vec());
        let error = decode(&fields).unwrap_err().to_string();
        assert!(
            error.contains("created_at") && error.contains("s1"),
            "{error}"
        );
        fields.insert(CREATED_AT.into(), b"1".to_vec());
        fields.remove(ENDED);
        assert!(decode(&fields).is_err());
    }
}
