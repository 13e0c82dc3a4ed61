//! What is particular to `RedisStore`: the key layout, TTLs, prefixes and
//! corrupt data. The behaviour every store shares is in `store.rs`.
//!
//! Only the crate's public API, plus raw Redis commands on the same server
//! where a test looks at or corrupts the keys. The tests run on the test
//! kit's Redis (`TEST_REDIS_URL`, unreachable: they fail; else a
//! `redis-server` the kit starts; else they say `SKIPPED`). Each uses keys
//! under a random base prefix, deleted at the end (and the one test that
//! needs the default prefix deletes the keys it made under it).

#![cfg(feature = "redis")]

use crate::support::backend;
use backend::redis_cmd as cmd;

use axum_latch::remember::{RememberStore, Rotation, StoredToken};
use axum_latch::stores::RedisStore;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const DAY: u64 = 24 * 60 * 60;

/// The latest time the store sets a key's TTL to, 9999-12-31T23:59:59Z
/// (Redis refuses times whose milliseconds overflow); a token's own
/// `expires_at` may be later, and is kept exactly.
const MAX_EXPIREAT: u64 = 253_402_300_799;

/// Stores under prefixes that all start with one random base.
struct Fixture {
    connection: ConnectionManager,
    base: String,
    /// Keys outside the base that the test made, deleted at the end too.
    outside: Mutex<Vec<String>>,
    /// Members the test added to sorted sets outside the base (key,
    /// member), removed at the end.
    members: Mutex<Vec<(String, String)>>,
}

impl Fixture {
    /// A store whose prefix is the base and `suffix`.
    fn store(&self, suffix: &str) -> RedisStore {
        RedisStore::new(self.connection.clone()).prefix(format!("{}{suffix}", self.base))
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Deletes `key` at the end of the test, pass or fail.
    fn delete_at_end(&self, key: &str) {
        self.outside.lock().unwrap().push(key.to_owned());
    }

    /// Removes `member` from the sorted set `key` at the end of the test.
    fn remove_at_end(&self, key: &str, member: &str) {
        self.members
            .lock()
            .unwrap()
            .push((key.to_owned(), member.to_owned()));
    }
}

/// Runs `test` against the test kit's Redis (`TEST_REDIS_URL`, or a server
/// it starts; none: reported as skipped), then deletes every key under the
/// fixture's base, and those the test asked for, whether it passed or not.
async fn run(test: impl AsyncFnOnce(&Fixture)) {
    let Some(url) = backend::redis_url() else {
        return;
    };
    let fixture = Fixture {
        connection: backend::redis_manager(&url).await,
        base: format!("latch_test_{}", backend::random_hex()),
        outside: Mutex::new(Vec::new()),
        members: Mutex::new(Vec::new()),
    };
    let mut connection = fixture.connection();
    let pattern = format!("{}*", fixture.base);
    let cleanup = async {
        backend::redis_delete(&mut connection, &pattern).await;
        let outside: Vec<String> = std::mem::take(&mut *fixture.outside.lock().unwrap());
        for key in outside {
            let _: i64 = cmd(&mut connection, "DEL", &[&key]).await;
        }
        let members: Vec<(String, String)> = std::mem::take(&mut *fixture.members.lock().unwrap());
        for (key, member) in members {
            let _: i64 = cmd(&mut connection, "ZREM", &[&key, &member]).await;
        }
    };
    backend::run_then_clean(test(&fixture), cleanup).await;
}

async fn keys(connection: &mut ConnectionManager, pattern: &str) -> Vec<String> {
    backend::redis_keys(connection, pattern).await
}

/// The hash tag of a user's keys: the first 32 hex digits of the SHA-256
/// of the user's id (JSON text).
fn digest(user_id: &str) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(user_id.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys of a user's token and selector set, and of a token's selector,
/// under `prefix`.
fn token_key(prefix: &str, user_id: &str, selector: &str) -> String {
    format!(
        "{prefix}remember:{{u:{}}}:token:{selector}",
        digest(user_id)
    )
}

fn tokens_key(prefix: &str, user_id: &str) -> String {
    format!("{prefix}remember:{{u:{}}}:tokens", digest(user_id))
}

fn selector_key(prefix: &str, selector: &str) -> String {
    format!("{prefix}remember:selector:{selector}")
}

/// The part of a key that Redis Cluster hashes to pick its slot: what is
/// between the first `{` and the next `}`, if not empty; else the key.
fn hashed_part(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}')
                .filter(|close| *close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Lowercase hex, as the store keeps hashes.
fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_part() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random_hash() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

/// A token of `user` (a JSON string id), issued now, expiring in `life`.
fn token(user: &str, life: u64) -> StoredToken {
    let now = unix_now();
    StoredToken {
        selector: random_part(),
        validator_hash: random_hash(),
        previous_hash: None,
        rotated_at_ms: None,
        confirmed: false,
        user_id: format!("\"{user}\""),
        fingerprint: "fp".to_owned(),
        series: random_part(),
        days: 30,
        created_at: now,
        last_used_at: now,
        expires_at: now + life,
        device: "Firefox on Linux".to_owned(),
    }
}

#[tokio::test]
async fn key_layout_is_a_hash_per_token_and_a_set_per_user() {
    run(async |f| {
        let store = f.store(":");
        let prefix = format!("{}:", f.base);
        assert_eq!(
            format!("{store:?}"),
            format!("RedisStore {{ prefix: {prefix:?}, .. }}"),
            "Debug shows the prefix, not the connection"
        );
        let mut connection = f.connection();

        // Without `prefix`, keys go under `latch:`: a token of a user of
        // the test's own, made and revoked there.
        let default = RedisStore::new(f.connection());
        assert_eq!(
            format!("{default:?}"),
            r#"RedisStore { prefix: "latch:", .. }"#
        );
        let user = format!("{}_default", f.base);
        let own = token(&user, 30 * DAY);
        let own_token_key = token_key("latch:", &own.user_id, &own.selector);
        let own_user_key = tokens_key("latch:", &own.user_id);
        let own_selector_key = selector_key("latch:", &own.selector);
        f.delete_at_end(&own_token_key);
        f.delete_at_end(&own_user_key);
        f.delete_at_end(&own_selector_key);
        f.remove_at_end("latch:remember:users", &digest(&own.user_id));
        default.insert(&own).await.unwrap();
        let kind: String = cmd(&mut connection, "TYPE", &[&own_token_key]).await;
        assert_eq!(kind, "hash");
        let members: Vec<String> = cmd(&mut connection, "SMEMBERS", &[&own_user_key]).await;
        assert_eq!(members, vec![own.selector.clone()]);
        assert_eq!(default.revoke_user(&own.user_id).await.unwrap(), 1);
        let left: i64 = cmd(
            &mut connection,
            "EXISTS",
            &[&own_token_key, &own_user_key, &own_selector_key],
        )
        .await;
        assert_eq!(left, 0);

        let issued = token("susan", 30 * DAY);
        store.insert(&issued).await.unwrap();

        let token_key = token_key(&prefix, "\"susan\"", &issued.selector);
        let user_key = tokens_key(&prefix, "\"susan\"");
        let selector_key = selector_key(&prefix, &issued.selector);
        let users_key = format!("{prefix}remember:users");
        assert!(
            token_key.contains(&format!("{{u:{}}}", digest("\"susan\""))),
            "a user's keys share a hash tag: {token_key}"
        );
        assert_eq!(
            keys(&mut connection, &format!("{prefix}*")).await,
            {
                let mut all = vec![
                    token_key.clone(),
                    user_key.clone(),
                    selector_key.clone(),
                    users_key.clone(),
                ];
                all.sort();
                all
            },
            "a hash, a set, the selector's key and the users index"
        );
        let kind: String = cmd(&mut connection, "TYPE", &[&token_key]).await;
        assert_eq!(kind, "hash");
        let kind: String = cmd(&mut connection, "TYPE", &[&user_key]).await;
        assert_eq!(kind, "set");
        let members: Vec<String> = cmd(&mut connection, "SMEMBERS", &[&user_key]).await;
        assert_eq!(members, vec![issued.selector.clone()]);
        let owner: String = cmd(&mut connection, "GET", &[&selector_key]).await;
        assert_eq!(owner, digest("\"susan\""));
        let users: Vec<String> = cmd(&mut connection, "ZRANGE", &[&users_key, "0", "-1"]).await;
        assert_eq!(users, vec![digest("\"susan\"")]);

        let fields: HashMap<String, String> = cmd(&mut connection, "HGETALL", &[&token_key]).await;
        let expected: HashMap<String, String> = [
            ("selector", issued.selector.clone()),
            ("validator_hash", hex(&issued.validator_hash)),
            ("user_id", "\"susan\"".to_owned()),
            ("fingerprint", "fp".to_owned()),
            ("series", issued.series.clone()),
            ("days", "30".to_owned()),
            ("created_at", issued.created_at.to_string()),
            ("last_used_at", issued.last_used_at.to_string()),
            ("expires_at", issued.expires_at.to_string()),
            ("device", "Firefox on Linux".to_owned()),
            ("confirmed", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        assert_eq!(fields, expected, "no previous_hash or rotated_at yet");

        assert!(store
            .confirm(&issued.selector, &issued.validator_hash)
            .await
            .unwrap());
        let confirmed: String = cmd(&mut connection, "HGET", &[&token_key, "confirmed"]).await;
        assert_eq!(confirmed, "1");

        let replacement = random_hash();
        let previous = random_hash();
        let now = issued.created_at + 5;
        let now_ms = now * 1000 + 250;
        assert!(store
            .rotate(&Rotation {
                selector: &issued.selector,
                expected: &issued.validator_hash,
                confirmed: true,
                previous: &previous,
                replacement: &replacement,
                now,
                rotated_at_ms: now_ms,
                expires_at: now + 30 * DAY,
            })
            .await
            .unwrap());
        let fields: HashMap<String, String> = cmd(&mut connection, "HGETALL", &[&token_key]).await;
        assert_eq!(fields["validator_hash"], hex(&replacement));
        assert_eq!(fields["previous_hash"], hex(&previous));
        assert_eq!(fields["rotated_at"], now_ms.to_string());
        assert_eq!(fields["last_used_at"], now.to_string());
        assert_eq!(fields["expires_at"], (now + 30 * DAY).to_string());
        assert_eq!(fields["created_at"], issued.created_at.to_string());
        assert_eq!(fields["confirmed"], "0", "a rotation resets it");
        assert_eq!(fields.len(), 13);

        // confirm, rotate and revoke of a missing token create nothing.
        assert!(!store
            .confirm("no-such-selector", &replacement)
            .await
            .unwrap());
        assert!(!store
            .rotate(&Rotation {
                selector: "no-such-selector",
                expected: &replacement,
                confirmed: false,
                previous: &replacement,
                replacement: &previous,
                now,
                rotated_at_ms: now_ms,
                expires_at: now + DAY,
            })
            .await
            .unwrap());
        assert!(!store.revoke("no-such-selector").await.unwrap());
        assert!(
            keys(&mut connection, &format!("{prefix}*no-such-selector*"))
                .await
                .is_empty()
        );

        // A revoked user leaves nothing behind but the users index, which
        // keeps a user for a minute after their last token was issued (an
        // issue may be under way), and a purge drops then.
        assert_eq!(store.revoke_user("\"susan\"").await.unwrap(), 1);
        assert_eq!(
            keys(&mut connection, &format!("{prefix}*")).await,
            vec![users_key.clone()]
        );
        assert_eq!(store.purge_expired(now).await.unwrap(), 0);
        assert_eq!(
            keys(&mut connection, &format!("{prefix}*")).await,
            vec![users_key.clone()],
            "too soon to forget the user"
        );
        let an_hour_ago = (unix_now() - 3600).to_string();
        let _: i64 = cmd(
            &mut connection,
            "ZADD",
            &[&users_key, &an_hour_ago, &digest("\"susan\"")],
        )
        .await;
        assert_eq!(store.purge_expired(now).await.unwrap(), 0);
        assert!(keys(&mut connection, &format!("{prefix}*"))
            .await
            .is_empty());
    })
    .await;
}

/// A token of one user issued again, with its selector, to another (which
/// latch never does: selectors are random) leaves the first user's keys.
#[tokio::test]
async fn a_selector_issued_to_another_user_leaves_the_first() {
    run(async |f| {
        let store = f.store(":");
        let first = token("susan", 30 * DAY);
        store.insert(&first).await.unwrap();
        let second = StoredToken {
            user_id: "\"david\"".to_owned(),
            ..token("david", 30 * DAY)
        };
        let second = StoredToken {
            selector: first.selector.clone(),
            ..second
        };
        store.insert(&second).await.unwrap();
        assert_eq!(
            store.find(&first.selector).await.unwrap(),
            Some(second.clone())
        );
        assert_eq!(store.list("\"susan\"").await.unwrap(), vec![]);
        assert_eq!(store.list("\"david\"").await.unwrap(), vec![second]);
        assert_eq!(store.revoke_user("\"susan\"").await.unwrap(), 0);
    })
    .await;
}

/// The user's keys share one hash tag whatever the id holds, braces
/// included: a Redis Cluster hashes only what is between the first `{` and
/// the next `}`.
#[tokio::test]
async fn user_ids_with_braces_keep_their_keys_in_one_slot() {
    run(async |f| {
        let store = f.store(":");
        let prefix = format!("{}:", f.base);
        let braced = StoredToken {
            user_id: r#"{"org":"{x}","id":"}{"}"#.to_owned(),
            ..token("ignored", 30 * DAY)
        };
        store.insert(&braced).await.unwrap();
        let token = token_key(&prefix, &braced.user_id, &braced.selector);
        let tokens = tokens_key(&prefix, &braced.user_id);
        assert_eq!(hashed_part(&token), hashed_part(&tokens));
        assert_eq!(
            hashed_part(&token),
            format!("u:{}", digest(&braced.user_id))
        );
        assert_eq!(
            store.list(&braced.user_id).await.unwrap(),
            vec![braced.clone()]
        );
        assert_eq!(store.revoke_user(&braced.user_id).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn ttl_follows_expires_at_and_the_user_set_outlives_its_tokens() {
    run(async |f| {
        let store = f.store(":");
        let prefix = format!("{}:", f.base);
        let mut connection = f.connection();
        let user_key = tokens_key(&prefix, "\"susan\"");
        let expire_time = |key: String| {
            let mut connection = f.connection();
            async move { cmd::<i64>(&mut connection, "EXPIRETIME", &[&key]).await }
        };
        let token_key = |t: &StoredToken| token_key(&prefix, &t.user_id, &t.selector);
        let selector_key = |t: &StoredToken| selector_key(&prefix, &t.selector);

        let ten = token("susan", 10 * DAY);
        let twenty = token("susan", 20 * DAY);
        let five = token("susan", 5 * DAY);
        for t in [&ten, &twenty, &five] {
            store.insert(t).await.unwrap();
            assert_eq!(expire_time(token_key(t)).await, t.expires_at as i64);
            assert_eq!(expire_time(selector_key(t)).await, t.expires_at as i64);
        }
        assert_eq!(
            expire_time(user_key.clone()).await,
            twenty.expires_at as i64,
            "a shorter-lived token does not shorten the set"
        );

        // A rotation renews the token's TTL, and the set's with it.
        let now = five.created_at + 1;
        let replacement = random_hash();
        let rotation = Rotation {
            selector: &five.selector,
            expected: &five.validator_hash,
            confirmed: false,
            previous: &five.validator_hash,
            replacement: &replacement,
            now,
            rotated_at_ms: now * 1000,
            expires_at: now + 30 * DAY,
        };
        assert!(store.rotate(&rotation).await.unwrap());
        assert_eq!(expire_time(token_key(&five)).await, (now + 30 * DAY) as i64);
        assert_eq!(expire_time(user_key.clone()).await, (now + 30 * DAY) as i64);
        assert_eq!(
            expire_time(selector_key(&five)).await,
            (now + 30 * DAY) as i64
        );

        // A failed swap changes the TTL of neither the token nor the set.
        // (The selector's key is made to live as long as the rotation
        // asked before the swap is tried: it may outlive the token, and
        // then leads nowhere.)
        let stale = Rotation {
            expires_at: now + 90 * DAY,
            ..rotation
        };
        assert!(!store.rotate(&stale).await.unwrap());
        assert_eq!(expire_time(token_key(&five)).await, (now + 30 * DAY) as i64);
        assert_eq!(expire_time(user_key.clone()).await, (now + 30 * DAY) as i64);
        assert_eq!(
            expire_time(selector_key(&five)).await,
            (now + 90 * DAY) as i64
        );

        // An expiry past what Redis takes: the TTL is capped, the field exact.
        let forever = StoredToken {
            expires_at: u64::MAX,
            ..token("susan", 0)
        };
        store.insert(&forever).await.unwrap();
        assert_eq!(expire_time(token_key(&forever)).await, MAX_EXPIREAT as i64);
        assert_eq!(expire_time(user_key.clone()).await, MAX_EXPIREAT as i64);
        assert_eq!(
            expire_time(selector_key(&forever)).await,
            MAX_EXPIREAT as i64
        );
        assert_eq!(
            store.find(&forever.selector).await.unwrap(),
            Some(forever.clone())
        );
        assert_eq!(
            store.purge_expired(u64::MAX - 1).await.unwrap(),
            3,
            "all but the one expiring at u64::MAX, compared exactly"
        );
        assert_eq!(store.list("\"susan\"").await.unwrap(), vec![forever]);

        // A token issued already expired is dropped by Redis at once.
        let past = StoredToken {
            expires_at: 1,
            ..token("david", 0)
        };
        store.insert(&past).await.unwrap();
        assert_eq!(store.find(&past.selector).await.unwrap(), None);
        assert_eq!(store.list("\"david\"").await.unwrap(), vec![]);
        let left: i64 = cmd(
            &mut connection,
            "EXISTS",
            &[&tokens_key(&prefix, "\"david\""), &selector_key(&past)],
        )
        .await;
        assert_eq!(left, 0, "nor is its user set, nor its selector's key");
    })
    .await;
}

#[tokio::test]
async fn prefixes_isolate_stores_even_with_glob_characters() {
    run(async |f| {
        // Unescaped, `[a]*:` as a SCAN pattern would match `a:`'s keys.
        let globby = f.store("[a]*:");
        let plain = f.store("a:");
        let a = token("susan", 30 * DAY);
        let b = token("susan", 30 * DAY);
        globby.insert(&a).await.unwrap();
        plain.insert(&b).await.unwrap();

        assert_eq!(plain.find(&a.selector).await.unwrap(), None);
        assert_eq!(globby.find(&b.selector).await.unwrap(), None);
        assert_eq!(globby.list("\"susan\"").await.unwrap(), vec![a.clone()]);
        assert_eq!(plain.list("\"susan\"").await.unwrap(), vec![b.clone()]);
        assert!(!plain.revoke(&a.selector).await.unwrap());
        assert!(!plain.revoke_series("\"susan\"", &a.series).await.unwrap());
        assert_eq!(globby.purge_expired(u64::MAX).await.unwrap(), 1);
        assert_eq!(plain.find(&b.selector).await.unwrap(), Some(b.clone()));

        let c = token("susan", 30 * DAY);
        globby.insert(&c).await.unwrap();
        assert_eq!(plain.revoke_user("\"susan\"").await.unwrap(), 1);
        assert_eq!(globby.list("\"susan\"").await.unwrap(), vec![c]);
    })
    .await;
}

#[tokio::test]
async fn corrupt_hashes_are_errors_not_panics() {
    run(async |f| {
        let store = f.store(":");
        let prefix = format!("{}:", f.base);
        let mut connection = f.connection();
        let good = token("susan", 30 * DAY);
        let key = token_key(&prefix, &good.user_id, &good.selector);
        let valid = hex(&good.validator_hash);

        let corruptions: Vec<(&str, Option<Vec<u8>>)> = vec![
            ("validator_hash", Some(b"zz".to_vec())),
            ("validator_hash", Some(valid.to_uppercase().into_bytes())),
            ("validator_hash", Some(valid.as_bytes()[..63].to_vec())),
            ("validator_hash", None),
            ("previous_hash", Some(b"".to_vec())),
            ("rotated_at", Some(b"soon".to_vec())),
            ("confirmed", Some(b"yes".to_vec())),
            ("confirmed", Some(b"2".to_vec())),
            ("confirmed", Some(b"".to_vec())),
            ("days", Some(b"abc".to_vec())),
            ("days", Some(b"-1".to_vec())),
            ("days", Some(b"4294967296".to_vec())),
            ("expires_at", Some(b"+5".to_vec())),
            ("expires_at", Some(b" 5".to_vec())),
            ("expires_at", Some(b"18446744073709551616".to_vec())),
            ("created_at", None),
            ("last_used_at", Some(b"1.5".to_vec())),
            ("user_id", None),
            ("device", Some(vec![0xff, 0xfe])),
            ("selector", Some(b"another".to_vec())),
        ];
        for (field, value) in corruptions {
            store.insert(&good).await.unwrap();
            match &value {
                Some(value) => {
                    let _: i64 = redis::cmd("HSET")
                        .arg(&key)
                        .arg(field)
                        .arg(value)
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                }
                None => {
                    let _: i64 = cmd(&mut connection, "HDEL", &[&key, field]).await;
                }
            }
            let what = format!("{field} = {value:?}");
            let error = store
                .find(&good.selector)
                .await
                .expect_err(&format!("find with {what}"));
            assert!(
                error.to_string().contains(field),
                "{what}: the error names the field: {error}"
            );
            if field != "user_id" {
                store
                    .list("\"susan\"")
                    .await
                    .expect_err(&format!("list with {what}"));
            }
        }

        // A key of another type.
        let _: () = cmd(&mut connection, "SET", &[&key, "not a hash"]).await;
        store.find(&good.selector).await.expect_err("a string key");
        store.list("\"susan\"").await.expect_err("a string key");
        store
            .insert(&good)
            .await
            .expect_err("not overwritten by issue");
        let _: i64 = cmd(&mut connection, "DEL", &[&key]).await;

        // purge_expired purges what it can and then reports the bad one.
        store.insert(&good).await.unwrap();
        let expiring = token("susan", DAY);
        store.insert(&expiring).await.unwrap();
        let _: i64 = cmd(&mut connection, "HSET", &[&key, "expires_at", "never"]).await;
        let error = store
            .purge_expired(expiring.expires_at)
            .await
            .expect_err("purge with a bad expires_at");
        assert!(error.to_string().contains("expires_at"), "{error}");
        assert_eq!(store.find(&expiring.selector).await.unwrap(), None);
        let exists: i64 = cmd(&mut connection, "EXISTS", &[&key]).await;
        assert_eq!(
            exists, 1,
            "the corrupt token is left for someone to look at"
        );
    })
    .await;
}

/// A hash written before `confirmed` existed (and with `rotated_at` in
/// seconds) reads as unconfirmed, and can be confirmed.
#[tokio::test]
async fn a_hash_without_confirmed_reads_as_unconfirmed() {
    run(async |f| {
        let store = f.store(":");
        let mut connection = f.connection();
        let old = StoredToken {
            previous_hash: Some(random_hash()),
            rotated_at_ms: Some(unix_now()),
            ..token("susan", 30 * DAY)
        };
        store.insert(&old).await.unwrap();
        let key = token_key(&format!("{}:", f.base), &old.user_id, &old.selector);
        let _: i64 = cmd(&mut connection, "HDEL", &[&key, "confirmed"]).await;
        assert_eq!(store.find(&old.selector).await.unwrap(), Some(old.clone()));
        assert_eq!(store.list("\"susan\"").await.unwrap(), vec![old.clone()]);
        assert!(!store.confirm(&old.selector, &random_hash()).await.unwrap());
        let exists: i64 = cmd(&mut connection, "HEXISTS", &[&key, "confirmed"]).await;
        assert_eq!(exists, 0, "a failed confirm writes nothing");
        assert!(store
            .confirm(&old.selector, &old.validator_hash)
            .await
            .unwrap());
        let confirmed = store.find(&old.selector).await.unwrap().unwrap();
        assert_eq!(
            confirmed,
            StoredToken {
                confirmed: true,
                ..old
            }
        );
    })
    .await;
}

#[tokio::test]
async fn list_and_purge_drop_selectors_whose_key_is_gone() {
    run(async |f| {
        let store = f.store(":");
        let prefix = format!("{}:", f.base);
        let mut connection = f.connection();
        let user_key = tokens_key(&prefix, "\"susan\"");
        let users_key = format!("{prefix}remember:users");
        let kept = token("susan", 30 * DAY);
        let gone = token("susan", 30 * DAY);
        store.insert(&kept).await.unwrap();
        store.insert(&gone).await.unwrap();

        // As when Redis expires a token's key by its TTL.
        let _: i64 = cmd(
            &mut connection,
            "DEL",
            &[&token_key(&prefix, &gone.user_id, &gone.selector)],
        )
        .await;
        assert_eq!(store.list("\"susan\"").await.unwrap(), vec![kept.clone()]);
        let members: Vec<String> = cmd(&mut connection, "SMEMBERS", &[&user_key]).await;
        assert_eq!(members, vec![kept.selector.clone()]);
        let left: i64 = cmd(
            &mut connection,
            "EXISTS",
            &[&selector_key(&prefix, &gone.selector)],
        )
        .await;
        assert_eq!(left, 0, "nor is the selector's key kept");

        let _: i64 = cmd(
            &mut connection,
            "DEL",
            &[&token_key(&prefix, &kept.user_id, &kept.selector)],
        )
        .await;
        // The user's last token was issued an hour ago: the users index
        // may forget them once they have none.
        let an_hour_ago = (unix_now() - 3600).to_string();
        let _: i64 = cmd(
            &mut connection,
            "ZADD",
            &[&users_key, &an_hour_ago, &digest("\"susan\"")],
        )
        .await;
        assert_eq!(
            store.purge_expired(kept.created_at).await.unwrap(),
            0,
            "a dangling selector is not a purged token"
        );
        assert!(
            keys(&mut connection, &format!("{prefix}*"))
                .await
                .is_empty(),
            "the emptied set is gone, with the selector's key and the user's place in the index"
        );
    })
    .await;
}
