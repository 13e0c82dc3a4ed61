//! `RedisStore` as a session registry's store: the shared contract
//! (`session_store.rs`, in [`contract`]), then what is particular to Redis:
//! the key layout and TTLs, the marked records endings leave, purge's
//! indexes, the pub/sub feed (with `RedisStore::feed`) going away, an
//! ending left half done by a process that died, prefixes, and registries
//! hearing each other by pub/sub rather than by their periodic check.
//!
//! The tests run on the test kit's Redis (`TEST_REDIS_URL`, unreachable:
//! they fail; else a `redis-server` the kit starts; else they say
//! `SKIPPED`). Each uses keys under a prefix of its own, deleted at the end,
//! pass or fail. Times are relative to the real clock, in its future where
//! a record must stay stored (Redis drops keys by TTL). Every wait is
//! bounded.

#![cfg(feature = "redis")]

use crate::support::backend;
use backend::redis_cmd as cmd;

use axum_latch::registry::{Change, Ending, SessionRecord, SessionRegistry, SessionStore, Wake};
use axum_latch::stores::RedisStore;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOUR: u64 = 60 * 60;
const DAY: u64 = 24 * HOUR;

/// How long a record's key outlives its `expires_at` (the store's slack
/// for clocks a little apart).
const SLACK: u64 = HOUR;

/// The longest any test waits for something to happen.
const WAIT: Duration = Duration::from_secs(5);

const SUSAN: &str = r#""susan""#;
const DAVID: &str = r#""david""#;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A session id as latch makes them: 16 random bytes, base64url.
fn session_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A record of `user`, created at `created`, last active at `last`,
/// expiring at `expires`.
fn record(user: &str, created: u64, last: u64, expires: u64) -> SessionRecord {
    SessionRecord {
        session_id: session_id(),
        user_id: user.to_owned(),
        device: "Firefox on Linux".to_owned(),
        created_at: created,
        last_active_at: last,
        expires_at: expires,
        remembered: false,
    }
}

/// The first 32 hex digits of the SHA-256 of a user's id: the hash tag of
/// the user's keys.
fn digest(user_id: &str) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(user_id.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn record_key(prefix: &str, user_id: &str, session_id: &str) -> String {
    format!(
        "{prefix}sessions:{{u:{}}}:record:{session_id}",
        digest(user_id)
    )
}

fn index_key(prefix: &str, user_id: &str) -> String {
    format!("{prefix}sessions:{{u:{}}}:index", digest(user_id))
}

fn feed_key(prefix: &str, name: &str) -> String {
    format!("{prefix}sessions:{{feed}}:{name}")
}

/// Runs `test` with a connection, a Redis client (for pub/sub) and a new
/// key prefix, then deletes the prefix's keys.
async fn run(test: impl AsyncFnOnce(ConnectionManager, redis::Client, String)) {
    backend::with_redis_prefix(async |url, manager, prefix| {
        let client = redis::Client::open(url.as_str()).expect("a Redis URL");
        test(manager, client, prefix).await;
    })
    .await;
}

/// The shared [`SessionStore`] contract (`session_store.rs`) on the kit's
/// Redis: each test under a prefix of its own, deleted at the end, through
/// two connection managers (two app instances), each with the feed (a
/// pub/sub client), so that `listen` and the registries' listeners run.
mod contract {
    use super::backend;
    use crate::session_store::{Fixture, Subject};
    use axum_latch::stores::RedisStore;

    async fn open() -> Option<Fixture<RedisStore>> {
        let url = backend::redis_url()?;
        let client = redis::Client::open(url.as_str()).expect("a Redis URL");
        let prefix = format!("latch_test_{}:", backend::random_hex());
        let handle = async || {
            RedisStore::new(backend::redis_manager(&url).await)
                .prefix(&prefix)
                .feed(client.clone())
        };
        let subject = Subject {
            store: handle().await,
            other: handle().await,
        };
        let mut admin = backend::redis_manager(&url).await;
        let pattern = format!("{prefix}*");
        Some(Fixture {
            subject,
            cleanup: Box::pin(async move {
                backend::redis_delete(&mut admin, &pattern).await;
            }),
        })
    }

    crate::session_store::session_contract_tests!(open);
}

async fn list(store: &RedisStore, user: &str, now: u64) -> Vec<SessionRecord> {
    store.list(user, now).await.expect("list")
}

/// A wake that counts into a channel.
fn counting_wake() -> (Wake, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let wake: Wake = Arc::new(move || {
        let _ = sender.send(());
    });
    (wake, receiver)
}

/// Waits (at most [`WAIT`]) for a wake.
async fn woken(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<()>, what: &str) {
    tokio::time::timeout(WAIT, receiver.recv())
        .await
        .unwrap_or_else(|_| panic!("no wake within {WAIT:?}: {what}"))
        .expect("the listener is still running");
}

/// Waits (at most [`WAIT`]) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The record's hash, the user's index, the key that names the session's
/// user and the expiry index, as `RedisStore`'s documentation lays them
/// out; a save that makes the session live longer extends the key's TTL.
#[tokio::test]
async fn save_writes_the_documented_key_layout_and_a_longer_save_extends_the_ttl() {
    run(async |manager, _, prefix| {
        let store = RedisStore::new(manager.clone()).prefix(&prefix);
        let mut connection = manager;
        let now = unix_now();
        let first = SessionRecord {
            remembered: true,
            ..record(SUSAN, now - 10, now - 5, now + DAY)
        };
        store.save(&first).await.unwrap();

        // The key layout: a hash in the user's slot, the user's index, the
        // key that names the session's user, and the expiry index.
        let key = record_key(&prefix, SUSAN, &first.session_id);
        let fields: HashMap<String, String> = cmd(&mut connection, "HGETALL", &[&key]).await;
        let expected: HashMap<String, String> = [
            ("session_id", first.session_id.clone()),
            ("user_id", SUSAN.to_owned()),
            ("device", "Firefox on Linux".to_owned()),
            ("created_at", (now - 10).to_string()),
            ("last_active_at", (now - 5).to_string()),
            ("expires_at", (now + DAY).to_string()),
            ("remembered", "1".to_owned()),
            ("ended", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(fields, expected);
        let expire_time: i64 = cmd(&mut connection, "EXPIRETIME", &[&key]).await;
        assert_eq!(expire_time, (now + DAY + SLACK) as i64);
        let score: String = cmd(
            &mut connection,
            "ZSCORE",
            &[&index_key(&prefix, SUSAN), &first.session_id],
        )
        .await;
        assert_eq!(score, (now + DAY).to_string());
        let owner: String = cmd(
            &mut connection,
            "GET",
            &[&format!("{prefix}sessions:id:{}", first.session_id)],
        )
        .await;
        assert_eq!(owner, digest(SUSAN));
        let member = format!("{} {}", digest(SUSAN), first.session_id);
        let score: String = cmd(
            &mut connection,
            "ZSCORE",
            &[&feed_key(&prefix, "expiry"), &member],
        )
        .await;
        assert_eq!(score, (now + DAY).to_string());

        // Saved again (a restore from its remember-me cookie), for longer.
        let again = SessionRecord {
            expires_at: now + 2 * DAY,
            ..first.clone()
        };
        store.save(&again).await.unwrap();
        let expire_time: i64 = cmd(&mut connection, "EXPIRETIME", &[&key]).await;
        assert_eq!(expire_time, (now + 2 * DAY + SLACK) as i64);
    })
    .await;
}

/// A touch of a session never recorded (an id with braces included)
/// makes no key, and one of an ended session leaves its record as it was.
#[tokio::test]
async fn touching_an_unknown_or_ended_session_writes_nothing() {
    run(async |manager, _, prefix| {
        let store = RedisStore::new(manager.clone()).prefix(&prefix);
        let mut connection = manager;
        let now = unix_now();
        let session = record(SUSAN, now - 100, now - 10, now + DAY);
        store.save(&session).await.unwrap();

        // Unknown: nothing is written.
        let before = backend::redis_keys(&mut connection, &format!("{prefix}*")).await;
        store.touch("no-such-session", now).await.unwrap();
        store.touch("{odd}:id", now).await.unwrap();
        assert_eq!(
            backend::redis_keys(&mut connection, &format!("{prefix}*")).await,
            before
        );

        // Ended: left as it was.
        store
            .end(&Ending::Session {
                session_id: session.session_id.clone(),
                user_id: SUSAN.to_owned(),
                until: now + DAY,
            })
            .await
            .unwrap();
        store.touch(&session.session_id, now).await.unwrap();
        let last: String = cmd(
            &mut connection,
            "HGET",
            &[
                &record_key(&prefix, SUSAN, &session.session_id),
                "last_active_at",
            ],
        )
        .await;
        assert_eq!(last, (now - 10).to_string());
    })
    .await;
}

/// An ending leaves the session's record in Redis, marked, for as long as
/// the ending: a late save neither revives it nor extends its TTL, and a
/// session ended before it was recorded gets such a record too.
#[tokio::test]
async fn an_ending_leaves_a_marked_record_that_late_saves_neither_revive_nor_extend() {
    run(async |manager, _, prefix| {
        let store = RedisStore::new(manager.clone()).prefix(&prefix);
        let mut connection = manager;
        let now = unix_now();
        let session = record(SUSAN, now - 100, now - 50, now + DAY);
        store.save(&session).await.unwrap();
        let ending = Ending::Session {
            session_id: session.session_id.clone(),
            user_id: SUSAN.to_owned(),
            until: now + DAY,
        };
        store.end(&ending).await.unwrap();

        // A late save (a request that began before the ending) does not
        // bring it back, nor does one that extends it.
        store.save(&session).await.unwrap();
        let extended = SessionRecord {
            expires_at: now + 30 * DAY,
            ..session.clone()
        };
        store.save(&extended).await.unwrap();
        assert_eq!(list(&store, SUSAN, now).await, vec![]);
        let key = record_key(&prefix, SUSAN, &session.session_id);
        let ended: String = cmd(&mut connection, "HGET", &[&key, "ended"]).await;
        assert_eq!(ended, "1", "the record stays, marked");
        let expire_time: i64 = cmd(&mut connection, "EXPIRETIME", &[&key]).await;
        assert_eq!(expire_time, (now + DAY + SLACK) as i64);

        // Ended before it was ever recorded (its save failed, or is late):
        // its save is refused too, until the ending's `until`.
        let unrecorded = record(SUSAN, now, now, now + DAY);
        store
            .end(&Ending::Session {
                session_id: unrecorded.session_id.clone(),
                user_id: SUSAN.to_owned(),
                until: now + 2 * DAY,
            })
            .await
            .unwrap();
        store.save(&unrecorded).await.unwrap();
        assert_eq!(list(&store, SUSAN, now).await, vec![]);
        let key = record_key(&prefix, SUSAN, &unrecorded.session_id);
        let expire_time: i64 = cmd(&mut connection, "EXPIRETIME", &[&key]).await;
        assert_eq!(expire_time, (now + 2 * DAY + SLACK) as i64);

        // A user's ending marks the records it ends the same way.
        let cut = record(DAVID, now - 20, now - 20, now + DAY);
        store.save(&cut).await.unwrap();
        store
            .end(&Ending::User {
                user_id: DAVID.to_owned(),
                not_before: now - 10,
                except: None,
                until: now + DAY,
            })
            .await
            .unwrap();
        store.save(&cut).await.unwrap();
        assert_eq!(list(&store, DAVID, now).await, vec![]);
        let key = record_key(&prefix, DAVID, &cut.session_id);
        let ended: String = cmd(&mut connection, "HGET", &[&key, "ended"]).await;
        assert_eq!(ended, "1", "marked by the user's ending");
    })
    .await;
}

#[tokio::test]
async fn listen_returns_the_error_when_its_connection_drops() {
    run(async |manager, client, prefix| {
        // Without a feed, listen never returns: the registry polls.
        let polled = RedisStore::new(manager.clone()).prefix(&prefix);
        assert!(!polled.pushes_changes());
        let (wake, _woke) = counting_wake();
        let never = tokio::time::timeout(Duration::from_millis(300), polled.listen(wake)).await;
        assert!(never.is_err(), "listen without a feed returned: {never:?}");

        // With a feed through a proxy that goes away.
        let info = client.get_connection_info();
        let redis::ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
            panic!("the test Redis is on TCP");
        };
        let mut proxy = crate::support::outage::Proxy::start((host, port), 0).await;
        let through = redis::Client::open(format!("redis://127.0.0.1:{}", proxy.port)).unwrap();
        let store = RedisStore::new(manager).prefix(&prefix).feed(through);
        let (wake, mut woke) = counting_wake();
        let listener = tokio::spawn(async move { store.listen(wake).await });
        woken(&mut woke, "subscribed").await;
        proxy.stop().await;
        let result = tokio::time::timeout(WAIT, listener)
            .await
            .expect("listen returns once its connection is gone")
            .unwrap();
        assert!(result.is_err(), "{result:?}");

        // Redis unreachable: listen fails at once, it does not hang.
        let (wake, _woke) = counting_wake();
        let gone = redis::Client::open(format!("redis://127.0.0.1:{}", proxy.port)).unwrap();
        let store = RedisStore::new(ConnectionManager::new(client).await.unwrap())
            .prefix(&prefix)
            .feed(gone);
        let result = tokio::time::timeout(WAIT + WAIT, store.listen(wake))
            .await
            .expect("listen fails within its timeout");
        assert!(result.is_err());
    })
    .await;
}

/// Beyond the contract's counts: purge deletes the owner keys of what it
/// deletes, and a record saved again to live longer keeps its record and
/// is scored again in the expiry index, from its record.
#[tokio::test]
async fn purge_deletes_owner_keys_and_rescores_records_saved_again() {
    run(async |manager, _, prefix| {
        let store = RedisStore::new(manager.clone()).prefix(&prefix);
        let mut connection = manager;
        let now = unix_now();
        let early = record(SUSAN, now, now, now + 100);
        let boundary = record(DAVID, now, now, now + 200);
        let later = record(SUSAN, now, now, now + 201);
        let ended = record(SUSAN, now, now, now + 150);
        let extended = record(DAVID, now, now, now + 50);
        for r in [&early, &boundary, &later, &ended, &extended] {
            store.save(r).await.unwrap();
        }
        // Saved again, to live longer: its old place in the expiry index
        // must not get it purged.
        let extended = SessionRecord {
            expires_at: now + DAY,
            ..extended
        };
        store.save(&extended).await.unwrap();
        let _: i64 = cmd(
            &mut connection,
            "ZADD",
            &[
                &feed_key(&prefix, "expiry"),
                &(now + 50).to_string(),
                &format!("{} {}", digest(DAVID), extended.session_id),
            ],
        )
        .await;
        let ended_seq = store
            .end(&Ending::Session {
                session_id: ended.session_id.clone(),
                user_id: SUSAN.to_owned(),
                until: now + 150,
            })
            .await
            .unwrap();
        let kept = store
            .end(&Ending::User {
                user_id: DAVID.to_owned(),
                not_before: now - DAY,
                except: None,
                until: now + 300,
            })
            .await
            .unwrap();
        assert!(kept > ended_seq);

        assert_eq!(store.purge(now + 99).await.unwrap(), 0, "nothing yet");
        // early, boundary and ended (records), and the first ending.
        assert_eq!(store.purge(now + 200).await.unwrap(), 4);
        assert_eq!(list(&store, SUSAN, now).await, vec![later.clone()]);
        assert_eq!(list(&store, DAVID, now).await, vec![extended.clone()]);
        assert_eq!(
            store
                .changes(0, 10)
                .await
                .unwrap()
                .iter()
                .map(|c| c.seq)
                .collect::<Vec<_>>(),
            vec![kept]
        );
        assert_eq!(store.purge(now + 200).await.unwrap(), 0, "again");
        for gone in [&early, &boundary, &ended] {
            let key = record_key(&prefix, &gone.user_id, &gone.session_id);
            let owner = format!("{prefix}sessions:id:{}", gone.session_id);
            let left: i64 = cmd(&mut connection, "EXISTS", &[&key, &owner]).await;
            assert_eq!(left, 0, "{key}");
        }
        let expiry: Vec<String> = cmd(
            &mut connection,
            "ZRANGE",
            &[&feed_key(&prefix, "expiry"), "0", "-1", "WITHSCORES"],
        )
        .await;
        let expected = vec![
            format!("{} {}", digest(SUSAN), later.session_id),
            (now + 201).to_string(),
            format!("{} {}", digest(DAVID), extended.session_id),
            (now + DAY).to_string(),
        ];
        assert_eq!(expiry, expected, "scored again from its record");

        assert_eq!(store.purge(u64::MAX).await.unwrap(), 3);
        assert_eq!(store.changes(0, 10).await.unwrap(), vec![]);
    })
    .await;
}

/// Times far from the real clock, as a test with a clock of its own uses:
/// list and purge follow the caller's `now`, and a record's key lives for
/// the slack (an hour) past the real clock.
#[tokio::test]
async fn list_and_purge_follow_the_callers_clock() {
    run(async |manager, _, prefix| {
        let store = RedisStore::new(manager).prefix(&prefix);
        let old = record(SUSAN, 1_000, 1_500, 2_000);
        store.save(&old).await.unwrap();
        assert_eq!(list(&store, SUSAN, 1_999).await, vec![old.clone()]);
        assert_eq!(list(&store, SUSAN, 2_000).await, vec![]);
        store.touch(&old.session_id, 1_600).await.unwrap();
        assert_eq!(list(&store, SUSAN, 1_600).await[0].last_active_at, 1_600);
        assert_eq!(store.purge(1_999).await.unwrap(), 0);
        assert_eq!(store.purge(2_000).await.unwrap(), 1);
        assert_eq!(list(&store, SUSAN, 1_000).await, vec![]);
    })
    .await;
}

/// A process that dies between the two steps of `end` leaves the ending in
/// the feed (every instance refuses the session) and the record unmarked:
/// `list` applies it before it lists, and `purge` too.
#[tokio::test]
async fn an_ending_in_the_feed_but_not_on_the_records_is_applied_by_list() {
    run(async |manager, _, prefix| {
        let store = RedisStore::new(manager.clone()).prefix(&prefix);
        let mut connection = manager;
        let now = unix_now();
        let session = record(SUSAN, now - 10, now - 10, now + DAY);
        let other = record(SUSAN, now - 10, now - 10, now + DAY);
        store.save(&session).await.unwrap();
        store.save(&other).await.unwrap();

        // The first step alone, as the feed's script does it.
        let seq: i64 = cmd(&mut connection, "INCR", &[&feed_key(&prefix, "seq")]).await;
        let entry = format!(
            r#"{seq} {{"kind":"session","session_id":"{}","user_id":"\"susan\"","until":{}}}"#,
            session.session_id,
            now + DAY
        );
        let seq = seq.to_string();
        let _: i64 = cmd(
            &mut connection,
            "ZADD",
            &[&feed_key(&prefix, "log"), &seq, &entry],
        )
        .await;
        let until = (now + DAY).to_string();
        let _: i64 = cmd(
            &mut connection,
            "ZADD",
            &[&feed_key(&prefix, "until"), &until, &seq],
        )
        .await;
        let _: i64 = cmd(
            &mut connection,
            "ZADD",
            &[&feed_key(&prefix, "pending"), &seq, &seq],
        )
        .await;

        let changes = store.changes(0, 10).await.unwrap();
        assert_eq!(
            changes,
            vec![Change {
                seq: seq.parse().unwrap(),
                ending: Ending::Session {
                    session_id: session.session_id.clone(),
                    user_id: SUSAN.to_owned(),
                    until: now + DAY,
                },
            }]
        );
        assert_eq!(list(&store, SUSAN, now).await, vec![other.clone()]);
        let pending: i64 = cmd(&mut connection, "ZCARD", &[&feed_key(&prefix, "pending")]).await;
        assert_eq!(pending, 0);
        store.save(&session).await.unwrap();
        assert_eq!(list(&store, SUSAN, now).await, vec![other.clone()]);

        // An ending fully recorded leaves nothing pending.
        store
            .end(&Ending::Session {
                session_id: other.session_id.clone(),
                user_id: SUSAN.to_owned(),
                until: now + DAY,
            })
            .await
            .unwrap();
        let pending: i64 = cmd(&mut connection, "ZCARD", &[&feed_key(&prefix, "pending")]).await;
        assert_eq!(pending, 0);
    })
    .await;
}

#[tokio::test]
async fn prefixes_isolate_records_feeds_and_channels() {
    run(async |manager, client, prefix| {
        let a = RedisStore::new(manager.clone())
            .prefix(format!("{prefix}a:"))
            .feed(client.clone());
        let b = RedisStore::new(manager.clone()).prefix(format!("{prefix}[a]*:"));
        let now = unix_now();
        let session = record(SUSAN, now, now, now + DAY);
        a.save(&session).await.unwrap();
        assert_eq!(list(&b, SUSAN, now).await, vec![]);
        b.touch(&session.session_id, now + 5).await.unwrap();
        assert_eq!(list(&a, SUSAN, now).await, vec![session.clone()]);

        let (wake, mut woke) = counting_wake();
        let listener = {
            let a = a.clone();
            tokio::spawn(async move { a.listen(wake).await })
        };
        woken(&mut woke, "subscribed").await;
        let ending = Ending::User {
            user_id: SUSAN.to_owned(),
            not_before: now,
            except: None,
            until: now + DAY,
        };
        assert_eq!(b.end(&ending).await.unwrap(), 1);
        assert_eq!(list(&a, SUSAN, now).await, vec![session.clone()]);
        assert_eq!(a.changes(0, 10).await.unwrap(), vec![]);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), woke.recv())
                .await
                .is_err(),
            "another prefix's ending wakes no one here"
        );
        assert_eq!(a.end(&ending).await.unwrap(), 1, "a feed of its own");
        woken(&mut woke, "its own ending").await;
        assert_eq!(list(&a, SUSAN, now).await, vec![]);
        assert_eq!(b.purge(u64::MAX).await.unwrap(), 1);
        assert_eq!(a.changes(0, 10).await.unwrap().len(), 1);
        listener.abort();

        let mut connection = manager;
        let a_keys = backend::redis_keys(&mut connection, &format!("{prefix}a:*")).await;
        assert!(a_keys
            .iter()
            .all(|key| key.starts_with(&format!("{prefix}a:"))));
        assert!(!a_keys.is_empty());
    })
    .await;
}

/// Two instances of an app, each with a registry over the same Redis and
/// prefix, with the feed and the default settings: an ending on one is
/// heard by the other within a second or two (by pub/sub), well before its
/// five-second check of the store.
#[tokio::test]
async fn registries_hear_each_others_endings_by_pubsub_before_their_periodic_check() {
    run(async |manager, client, prefix| {
        let store = |manager: ConnectionManager| {
            RedisStore::new(manager)
                .prefix(&prefix)
                .feed(client.clone())
        };
        let other = ConnectionManager::new(client.clone()).await.unwrap();
        let one = SessionRegistry::builder(store(manager.clone()))
            .connect()
            .await
            .unwrap();
        let two = SessionRegistry::builder(store(other))
            .connect()
            .await
            .unwrap();
        let heard = Duration::from_secs(2);

        // A session of user 7, recorded as the login layer records it.
        let now = unix_now();
        let session = record("7", now - 10, now - 10, now + DAY);
        store(manager.clone()).save(&session).await.unwrap();
        let listed = two.sessions(&7).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, session.session_id);

        let started = Instant::now();
        assert!(one.end_session(&7, &session.session_id).await.unwrap());
        eventually("the other instance hears of the ended session", || {
            two.ended_size().sessions == 1
        })
        .await;
        assert!(started.elapsed() < heard, "{:?}", started.elapsed());
        assert!(two.sessions(&7).await.unwrap().is_empty());

        let started = Instant::now();
        two.end_all(&8).await.unwrap();
        eventually("the first instance hears of the user's ending", || {
            one.ended_size().users == 1
        })
        .await;
        assert!(started.elapsed() < heard, "{:?}", started.elapsed());
    })
    .await;
}
