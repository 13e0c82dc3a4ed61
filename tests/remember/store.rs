//! The contract every [`RememberStore`] keeps, written once and run
//! unchanged against each backend: memory, SQLite, PostgreSQL, Redis and
//! Redis Cluster.
//!
//! The tests are generic async functions over the store; `contract_tests!`
//! stamps out one `#[tokio::test]` per function in a module per backend,
//! each behind its cargo feature. Memory and SQLite always run; PostgreSQL
//! and Redis run on the kit's servers (`TEST_POSTGRES_URL`/`TEST_REDIS_URL`,
//! or servers the kit starts; with neither, a test says `SKIPPED`).
//!
//! Every test gets a store of its own: a new memory store, a new SQLite file,
//! a new PostgreSQL schema (`latch_test_<hex>`, dropped at the end) or a new
//! Redis key prefix (its keys deleted at the end), so the tests run in
//! parallel and counts are exact.
//!
//! Times are relative to `jwt::now()`, and always in the future of
//! the real clock for tokens that must stay stored (Redis drops keys by TTL).
//! They are explicit: `consume` is given a `SystemTime` made from them
//! ([`at`], [`at_ms`]), and no test sleeps to move past a grace window.

#![cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]

use crate::support::trace;
use crate::support::{backend, jwt};

use axum_latch::remember::{
    Consumed, Redeemed, RememberGrant, RememberStore, RememberTokens, RememberedDevice,
    RevocableRemember, Rotation, StoredToken, DEFAULT_GRACE,
};
use axum_latch::{KeyRing, SecretKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

/// Everything a backend holds for one test, as bytes (keys, rows, values),
/// to check that no secret is kept anywhere, not only in the fields `find`
/// returns. `None` for the memory store, whose tokens are all it holds.
type RawDump = Arc<dyn Fn() -> BoxFuture<'static, Vec<u8>> + Send + Sync>;

/// The store a test runs against.
struct Subject<S> {
    store: S,
    raw: Option<RawDump>,
}

/// A store of its own for one test, and what tidies up after it.
struct Fixture<S> {
    subject: Subject<S>,
    cleanup: BoxFuture<'static, ()>,
}

/// Runs one contract test on a backend's fixture (`None`: skipped), then
/// cleans up, whether the test passed or panicked.
async fn run<S, F, Fut>(fixture: Option<Fixture<S>>, test: F)
where
    S: RememberStore + Clone,
    F: FnOnce(Subject<S>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(Fixture { subject, cleanup }) = fixture else {
        return;
    };
    backend::run_then_clean(test(subject), cleanup).await;
}

/// Appends a table (or key) and its rows (or values) to a [`RawDump`]'s
/// bytes, a line each.
#[allow(dead_code)]
fn dump_entry(out: &mut Vec<u8>, name: &str, rows: Vec<impl AsRef<[u8]>>) {
    out.extend_from_slice(name.as_bytes());
    for row in rows {
        out.push(b'\n');
        out.extend_from_slice(row.as_ref());
    }
    out.push(b'\n');
}

/// A test per contract function, on the backend that `$open` (an async fn
/// returning `Option<Fixture<_>>`) makes.
macro_rules! contract_tests {
    ($open:path) => {
        crate::support::stamp_tests!($open, 4;
            current_thread:
                store_round_trips_every_field,
                store_round_trips_confirmed_and_rotated_at_ms,
                store_rotate_swaps_only_from_the_expected_hash,
                store_rotate_writes_previous_as_given_and_resets_confirmed,
                store_confirm_confirms_only_the_current_hash,
                store_rotate_swaps_only_a_token_still_as_read,
                store_revoke_deletes_one_token,
                store_revoke_series_only_for_its_owner,
                store_revoke_user_deletes_only_that_users_tokens,
                store_list_is_most_recently_used_first,
                store_purge_expired_deletes_only_expired_tokens,
                store_tokens_live_until_their_latest_expiry,
                issue_stores_the_grant_and_never_the_validator,
                consume_rotates_the_validator_and_keeps_the_selector,
                replaced_validator_within_grace_is_grace_without_rotation,
                confirmed_replaced_validator_after_grace_is_theft_and_revokes_the_users_tokens,
                older_validator_is_theft_even_within_grace,
                confirm_takes_the_tag_of_the_cookies_current_validator,
                dropped_response_then_the_old_validator_minutes_later_is_not_theft,
                copy_used_after_the_owners_confirmation_is_theft,
                copy_used_after_the_owners_next_rotation_is_theft,
                grace_of_500_ms_lets_the_previous_in_at_300_ms_not_at_700_ms_once_confirmed,
                unknown_and_malformed_tokens_are_rejected,
                expired_token_is_rejected_and_deleted,
                redeem_returns_the_user_and_the_replacement,
                revoke_and_revoke_user_through_remember_tokens,
                devices_lists_working_tokens_and_revoke_device_removes_one;
            multi_thread:
                concurrent_consumes_rotate_exactly_once,
                concurrent_consumes_of_an_unconfirmed_previous_past_grace_rotate_once,
                concurrent_store_rotations_swap_exactly_once,
                concurrent_issues_all_land;
        );
    };
}

#[cfg(feature = "memory")]
mod memory {
    use super::{Fixture, Subject};
    use axum_latch::stores::MemoryStore;

    async fn open() -> Option<Fixture<MemoryStore>> {
        Some(Fixture {
            subject: Subject {
                store: MemoryStore::new(),
                raw: None,
            },
            cleanup: Box::pin(async {}),
        })
    }

    contract_tests!(open);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::{backend, Fixture, RawDump, Subject};
    use axum_latch::stores::SqliteStore;
    use sqlx::SqlitePool;
    use std::sync::Arc;

    /// A new database file in a temporary directory, in WAL mode, behind a
    /// pool of several connections (so concurrent tests really overlap).
    async fn open() -> Option<Fixture<SqliteStore>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pool = backend::sqlite_file(dir.path(), 4).await;
        let store = SqliteStore::new(pool.clone());
        store.migrate().await.expect("SqliteStore::migrate");
        let raw: RawDump = {
            let pool = pool.clone();
            Arc::new(move || {
                let pool = pool.clone();
                Box::pin(async move { dump(&pool).await })
            })
        };
        Some(Fixture {
            subject: Subject {
                store,
                raw: Some(raw),
            },
            cleanup: Box::pin(async move {
                pool.close().await;
                drop(dir);
            }),
        })
    }

    /// Every row of every table, each column `quote()`d (blobs as `X'hex'`).
    async fn dump(pool: &SqlitePool) -> Vec<u8> {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(pool)
                .await
                .expect("list the tables");
        let mut out = Vec::new();
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
                .bind(&table)
                .fetch_all(pool)
                .await
                .expect("list the columns");
            let row = columns
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || '|' || ");
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {row} FROM \"{table}\""))
                .fetch_all(pool)
                .await
                .expect("read a table");
            super::dump_entry(&mut out, &table, rows);
        }
        out
    }

    contract_tests!(open);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::{backend, Fixture, RawDump, Subject};
    use axum_latch::stores::PostgresStore;
    use sqlx::PgPool;
    use std::sync::Arc;

    /// A pool whose connections use a new schema of their own.
    async fn open() -> Option<Fixture<PostgresStore>> {
        let url = backend::postgres_url()?;
        let schema = backend::PgSchema::create(&url, 10).await;
        let pool = schema.pool.clone();
        let store = PostgresStore::new(pool.clone());
        let migrated = store.migrate().await;
        let raw: RawDump = Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move { dump(&pool).await })
        });
        let cleanup = Box::pin(schema.drop_schema());
        if let Err(error) = migrated {
            cleanup.await;
            panic!("PostgresStore::migrate: {error}");
        }
        Some(Fixture {
            subject: Subject {
                store,
                raw: Some(raw),
            },
            cleanup,
        })
    }

    /// Every row of every table of the test's schema, as row text (`bytea`
    /// as `\x` hex).
    async fn dump(pool: &PgPool) -> Vec<u8> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema()",
        )
        .fetch_all(pool)
        .await
        .expect("list the tables");
        let mut out = Vec::new();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                    .fetch_all(pool)
                    .await
                    .expect("read a table");
            super::dump_entry(&mut out, &table, rows);
        }
        out
    }

    contract_tests!(open);
}

#[cfg(feature = "redis")]
mod redis_store {
    use super::{backend, Fixture, RawDump, Subject};
    use axum_latch::stores::RedisStore;
    use redis::aio::ConnectionLike;
    use std::sync::Arc;

    /// A store whose keys all start with a new random prefix.
    async fn open() -> Option<Fixture<RedisStore>> {
        let url = backend::redis_url()?;
        let manager = backend::redis_manager(&url).await;
        let prefix = format!("latch_test_{}:", backend::random_hex());
        let store = RedisStore::new(manager.clone()).prefix(&prefix);
        let raw: RawDump = {
            let manager = manager.clone();
            let prefix = prefix.clone();
            Arc::new(move || {
                let mut manager = manager.clone();
                let prefix = prefix.clone();
                Box::pin(async move {
                    let keys = backend::redis_keys(&mut manager, &format!("{prefix}*")).await;
                    dump(&mut manager, keys).await
                })
            })
        };
        let mut admin = manager;
        Some(Fixture {
            subject: Subject {
                store,
                raw: Some(raw),
            },
            cleanup: Box::pin(async move {
                backend::redis_delete(&mut admin, &format!("{prefix}*")).await;
            }),
        })
    }

    /// Every one of `keys` and everything in it.
    pub(super) async fn dump(connection: &mut impl ConnectionLike, keys: Vec<String>) -> Vec<u8> {
        let mut out = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(connection)
                .await
                .expect("TYPE");
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET")
                    .arg(&key)
                    .query_async(connection)
                    .await
                    .expect("GET")],
                "hash" => redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(connection)
                    .await
                    .expect("HGETALL"),
                "set" => redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(connection)
                    .await
                    .expect("SMEMBERS"),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(connection)
                    .await
                    .expect("ZRANGE"),
                "list" => redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(connection)
                    .await
                    .expect("LRANGE"),
                _ => Vec::new(),
            };
            super::dump_entry(&mut out, &key, values);
        }
        out
    }

    contract_tests!(open);
}

/// The contract on a Redis Cluster (the kit's, or `TEST_REDIS_CLUSTER_URLS`)
/// through the `redis` crate's cluster connection: every script must keep
/// to the keys of one hash slot, and the raw dump reads every master.
#[cfg(feature = "redis")]
mod redis_cluster {
    use super::{backend, Fixture, RawDump, Subject};
    use axum_latch::stores::RedisStore;
    use redis::cluster_async::ClusterConnection;
    use std::sync::Arc;

    /// A store on the cluster whose keys all start with a new random prefix.
    async fn open() -> Option<Fixture<RedisStore<ClusterConnection>>> {
        let cluster = backend::redis_cluster().await?;
        let prefix = format!("latch_test_{}:", backend::random_hex());
        let pattern = format!("{prefix}*");
        let store = RedisStore::new(cluster.connection.clone()).prefix(&prefix);
        let raw: RawDump = {
            let cluster = cluster.clone();
            let pattern = pattern.clone();
            Arc::new(move || {
                let cluster = cluster.clone();
                let pattern = pattern.clone();
                Box::pin(async move {
                    let keys = cluster.keys(&pattern).await;
                    let mut connection = cluster.connection.clone();
                    super::redis_store::dump(&mut connection, keys).await
                })
            })
        };
        Some(Fixture {
            subject: Subject {
                store,
                raw: Some(raw),
            },
            cleanup: Box::pin(async move { cluster.delete(&pattern).await }),
        })
    }

    contract_tests!(open);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const DAY: u64 = 24 * 60 * 60;
const GRACE: u64 = DEFAULT_GRACE.as_secs();
const MINUTE: u64 = 60;
const SUSAN: &str = r#""user001""#;
const DAVID: &str = r#""user002""#;
const CAROL: &str = r#""user003""#;
const SUSAN_HASH: &[u8] = b"$argon2id$v=19$susan's password";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
                              (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const KEY: [u8; 32] = [7u8; 32];

fn keys() -> KeyRing {
    KeyRing::new(SecretKey::new(KEY).unwrap())
}

/// latch's fingerprint of an `auth_hash` (the `_auth` claim): the first 16
/// bytes of HMAC-SHA256(key, "latch auth_hash fingerprint\0" || auth_hash),
/// base64url. If this drifted from latch's, the devices test would list none.
fn fingerprint(auth_hash: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).unwrap();
    mac.update(b"latch auth_hash fingerprint\0");
    mac.update(auth_hash);
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A time `secs` seconds after the Unix epoch.
fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A time `ms` milliseconds after the Unix epoch.
fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The confirmation tag of a cookie, computed here: base64url (no padding)
/// of the first 16 bytes of the SHA-256 of its validator.
fn tag_of(cookie: &str) -> String {
    URL_SAFE_NO_PAD.encode(&sha256(&split(cookie).2)[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

fn random_part() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// A token as a store keeps it, for the store-level tests.
fn token_of(user_id: &str, now: u64) -> StoredToken {
    StoredToken {
        selector: random_part(),
        validator_hash: sha256(&random_bytes()),
        previous_hash: None,
        rotated_at_ms: None,
        confirmed: false,
        user_id: user_id.to_owned(),
        fingerprint: fingerprint(SUSAN_HASH),
        series: random_part(),
        days: 30,
        created_at: now,
        last_used_at: now,
        expires_at: now + 30 * DAY,
        device: "Firefox on Linux".to_owned(),
    }
}

/// A cookie value's selector, validator (base64url) and validator bytes.
fn split(cookie: &str) -> (&str, &str, Vec<u8>) {
    let (selector, validator) = cookie
        .split_once('.')
        .unwrap_or_else(|| panic!("not selector.validator: {cookie:?}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(validator)
        .unwrap_or_else(|e| panic!("validator is not base64url ({e}): {cookie:?}"));
    (selector, validator, bytes)
}

/// Issues a token through `RememberTokens::issue`.
async fn issue<S: RememberStore>(
    tokens: &RevocableRemember<S>,
    user_id: &Value,
    auth_hash: &[u8],
    days: u32,
    now: u64,
    user_agent: Option<&str>,
) -> String {
    let keys = keys();
    let fingerprint = fingerprint(auth_hash);
    tokens
        .issue(RememberGrant {
            keys: &keys,
            user_id,
            fingerprint: &fingerprint,
            days,
            now,
            user_agent,
            session_id: None,
        })
        .await
        .expect("RememberTokens::issue")
}

async fn find<S: RememberStore>(store: &S, selector: &str) -> Option<StoredToken> {
    store.find(selector).await.expect("RememberStore::find")
}

async fn find_cookie<S: RememberStore>(store: &S, cookie: &str) -> StoredToken {
    let (selector, _, _) = split(cookie);
    find(store, selector)
        .await
        .unwrap_or_else(|| panic!("no stored token for selector {selector}"))
}

async fn list<S: RememberStore>(store: &S, user_id: &str) -> Vec<StoredToken> {
    store.list(user_id).await.expect("RememberStore::list")
}

/// Consumes a cookie at `now` (seconds since the Unix epoch).
async fn consume<S: RememberStore>(
    tokens: &RevocableRemember<S>,
    cookie: &str,
    now: u64,
) -> Consumed {
    consume_at(tokens, cookie, at(now)).await
}

async fn consume_at<S: RememberStore>(
    tokens: &RevocableRemember<S>,
    cookie: &str,
    now: SystemTime,
) -> Consumed {
    tokens
        .consume(cookie, now)
        .await
        .expect("RevocableRemember::consume")
}

/// Consumes a token that must rotate; returns the new cookie value.
async fn rotate_cookie<S: RememberStore>(
    tokens: &RevocableRemember<S>,
    cookie: &str,
    now: u64,
) -> String {
    match consume(tokens, cookie, now).await {
        Consumed::Rotated { token, .. } => token,
        other => panic!("expected Rotated, got {other:?}"),
    }
}

/// What the login layer does on the browser's next request after a
/// rotation: confirms that the browser holds `cookie`.
async fn confirm_cookie<S: RememberStore>(tokens: &RevocableRemember<S>, cookie: &str) {
    assert!(
        tokens
            .confirm(cookie, &tag_of(cookie))
            .await
            .expect("RevocableRemember::confirm"),
        "the current cookie confirms"
    );
}

fn selectors(tokens: &[StoredToken]) -> Vec<&str> {
    tokens.iter().map(|t| t.selector.as_str()).collect()
}

/// `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if any stored field, or anything the backend holds, contains the
/// validator of `cookie` in any usual encoding.
async fn assert_validator_not_stored<S: RememberStore>(subject: &Subject<S>, cookie: &str) {
    let (selector, validator, bytes) = split(cookie);
    let encodings: Vec<Vec<u8>> = vec![
        validator.as_bytes().to_vec(),
        bytes.clone(),
        hex(&bytes).into_bytes(),
        hex(&bytes).to_uppercase().into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(&bytes)
            .trim_end_matches('=')
            .as_bytes()
            .to_vec(),
    ];
    let stored = find(&subject.store, selector)
        .await
        .unwrap_or_else(|| panic!("no stored token for selector {selector}"));
    let mut fields: Vec<Vec<u8>> = vec![
        stored.selector.clone().into_bytes(),
        stored.validator_hash.to_vec(),
        stored.user_id.clone().into_bytes(),
        stored.fingerprint.clone().into_bytes(),
        stored.series.clone().into_bytes(),
        stored.device.clone().into_bytes(),
        format!("{stored:?}").into_bytes(),
    ];
    fields.extend(stored.previous_hash.map(|h| h.to_vec()));
    for field in &fields {
        for encoding in &encodings {
            assert!(
                !contains(field, encoding),
                "a stored field holds the validator {validator}: {stored:?}"
            );
        }
    }
    if let Some(raw) = &subject.raw {
        let dump = raw().await;
        assert!(
            contains(&dump, selector.as_bytes()),
            "the backend's raw contents should show the selector {selector}: {}",
            String::from_utf8_lossy(&dump)
        );
        for encoding in &encodings {
            assert!(
                !contains(&dump, encoding),
                "the backend holds the validator {validator}: {}",
                String::from_utf8_lossy(&dump)
            );
        }
    }
}

fn capture_events() -> (trace::Captured, trace::CaptureGuard) {
    trace::capture()
}

// ---------------------------------------------------------------------------
// The store, directly
// ---------------------------------------------------------------------------

/// `issue` then `find` gives back every field as it was, for fresh and
/// rotated tokens, string and number user ids, and edge-case hash bytes.
async fn store_round_trips_every_field<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let fresh = token_of(SUSAN, now);
    let mut edge = [0u8; 32];
    edge[1] = 0xff;
    edge[31] = 0x80;
    let rotated = StoredToken {
        selector: random_part(),
        validator_hash: edge,
        previous_hash: Some([0xff; 32]),
        rotated_at_ms: Some((now + 7) * 1000 + 123),
        confirmed: true,
        user_id: "42".to_owned(),
        fingerprint: fingerprint(b"another hash"),
        series: random_part(),
        days: 3650,
        created_at: now - 3 * DAY,
        last_used_at: now + 7,
        expires_at: now + 3650 * DAY,
        device: "Safari on iPhone".to_owned(),
    };
    // The extremes: the largest times and `days`, the epoch, non-ASCII text.
    let extreme = StoredToken {
        selector: random_part(),
        validator_hash: [0xfe; 32],
        previous_hash: Some([0; 32]),
        rotated_at_ms: Some((now + 1) * 1000 + 999),
        confirmed: true,
        user_id: "43".to_owned(),
        fingerprint: "AAECAwQFBgcICQoLDA0ODw".to_owned(),
        series: random_part(),
        days: u32::MAX,
        created_at: 0,
        last_used_at: now + 1,
        expires_at: i64::MAX as u64,
        device: "Safari on iPhone — ünïcode ✓".to_owned(),
    };
    for token in [&fresh, &rotated, &extreme] {
        t.store.insert(token).await.expect("issue");
    }
    assert_eq!(find(&t.store, &fresh.selector).await.as_ref(), Some(&fresh));
    assert_eq!(
        find(&t.store, &rotated.selector).await.as_ref(),
        Some(&rotated)
    );
    assert_eq!(
        find(&t.store, &extreme.selector).await.as_ref(),
        Some(&extreme)
    );
    assert_eq!(find(&t.store, &random_part()).await, None);
    assert_eq!(list(&t.store, SUSAN).await, vec![fresh.clone()]);
    assert_eq!(list(&t.store, "42").await, vec![rotated.clone()]);
    assert_eq!(list(&t.store, "43").await, vec![extreme.clone()]);

    // Issuing a selector again replaces its token, user and all: it leaves
    // the old user's list for the new one's.
    let again = StoredToken {
        user_id: "44".to_owned(),
        validator_hash: [7; 32],
        previous_hash: None,
        rotated_at_ms: None,
        confirmed: false,
        ..extreme.clone()
    };
    t.store.insert(&again).await.expect("issue again");
    assert_eq!(find(&t.store, &extreme.selector).await, Some(again.clone()));
    assert_eq!(list(&t.store, "43").await, vec![]);
    assert_eq!(list(&t.store, "44").await, vec![again]);
}

/// `rotate` swaps only from the expected hash, moves it to `previous_hash`
/// and updates the times, leaving every other field alone.
async fn store_rotate_swaps_only_from_the_expected_hash<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let original = token_of(SUSAN, now);
    t.store.insert(&original).await.unwrap();
    let replacement = sha256(b"the next validator");
    let wrong = sha256(b"not the current validator");

    let swapped = t
        .store
        .rotate(&Rotation {
            selector: &original.selector,
            expected: &wrong,
            confirmed: false,
            previous: &wrong,
            replacement: &replacement,
            now: now + 10,
            rotated_at_ms: (now + 10) * 1000,
            expires_at: now + 40 * DAY,
        })
        .await
        .unwrap();
    assert!(!swapped, "a wrong expected hash must not swap");
    assert_eq!(
        find(&t.store, &original.selector).await,
        Some(original.clone())
    );

    let swapped = t
        .store
        .rotate(&Rotation {
            selector: &original.selector,
            expected: &original.validator_hash,
            confirmed: false,
            previous: &original.validator_hash,
            replacement: &replacement,
            now: now + 10,
            rotated_at_ms: (now + 10) * 1000 + 1,
            expires_at: now + 40 * DAY,
        })
        .await
        .unwrap();
    assert!(swapped, "the expected hash swaps");
    let expected = StoredToken {
        validator_hash: replacement,
        previous_hash: Some(original.validator_hash),
        rotated_at_ms: Some((now + 10) * 1000 + 1),
        last_used_at: now + 10,
        expires_at: now + 40 * DAY,
        ..original.clone()
    };
    assert_eq!(
        find(&t.store, &original.selector).await,
        Some(expected.clone())
    );

    // The old hash no longer swaps; nor does an unknown selector.
    let again = t
        .store
        .rotate(&Rotation {
            selector: &original.selector,
            expected: &original.validator_hash,
            confirmed: false,
            previous: &original.validator_hash,
            replacement: &sha256(b"yet another"),
            now: now + 20,
            rotated_at_ms: (now + 20) * 1000,
            expires_at: now + 50 * DAY,
        })
        .await
        .unwrap();
    assert!(!again, "the replaced hash must not swap again");
    assert_eq!(find(&t.store, &original.selector).await, Some(expected));
    let unknown = random_part();
    let swapped = t
        .store
        .rotate(&Rotation {
            selector: &unknown,
            expected: &original.validator_hash,
            confirmed: false,
            previous: &original.validator_hash,
            replacement: &replacement,
            now,
            rotated_at_ms: now * 1000,
            expires_at: now + DAY,
        })
        .await
        .unwrap();
    assert!(!swapped, "an unknown selector does not swap");
    assert_eq!(
        find(&t.store, &unknown).await,
        None,
        "rotate creates nothing"
    );
}

/// `confirmed` and a `rotated_at_ms` with milliseconds survive `issue` and
/// `find` (and `list`) exactly, both ways.
async fn store_round_trips_confirmed_and_rotated_at_ms<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let confirmed = StoredToken {
        previous_hash: Some(sha256(b"previous")),
        rotated_at_ms: Some(now * 1000 + 999),
        confirmed: true,
        ..token_of(SUSAN, now)
    };
    let unconfirmed = StoredToken {
        previous_hash: Some(sha256(b"previous")),
        rotated_at_ms: Some(now * 1000 + 1),
        confirmed: false,
        ..token_of(DAVID, now)
    };
    for token in [&confirmed, &unconfirmed] {
        t.store.insert(token).await.unwrap();
    }
    assert_eq!(
        find(&t.store, &confirmed.selector).await.as_ref(),
        Some(&confirmed)
    );
    assert_eq!(
        find(&t.store, &unconfirmed.selector).await.as_ref(),
        Some(&unconfirmed)
    );
    assert_eq!(list(&t.store, SUSAN).await, vec![confirmed.clone()]);
    assert_eq!(list(&t.store, DAVID).await, vec![unconfirmed]);

    // Issuing the selector again replaces `confirmed` too.
    let reissued = StoredToken {
        confirmed: false,
        rotated_at_ms: None,
        ..confirmed.clone()
    };
    t.store.insert(&reissued).await.unwrap();
    assert_eq!(find(&t.store, &confirmed.selector).await, Some(reissued));
}

/// `rotate` writes `previous` as given, whether it is the hash swapped out
/// (an ordinary rotation) or the previous hash kept (a lost response), and
/// resets `confirmed`.
async fn store_rotate_writes_previous_as_given_and_resets_confirmed<S: RememberStore + Clone>(
    t: Subject<S>,
) {
    let now = jwt::now();
    let original = token_of(SUSAN, now);
    t.store.insert(&original).await.unwrap();
    let first = sha256(b"first replacement");
    let second = sha256(b"second replacement");

    // Ordinary: the current hash becomes the previous one.
    assert!(t
        .store
        .confirm(&original.selector, &original.validator_hash)
        .await
        .unwrap());
    assert!(t
        .store
        .rotate(&Rotation {
            selector: &original.selector,
            expected: &original.validator_hash,
            confirmed: true,
            previous: &original.validator_hash,
            replacement: &first,
            now: now + 10,
            rotated_at_ms: (now + 10) * 1000 + 10,
            expires_at: now + 31 * DAY,
        })
        .await
        .unwrap());
    let ordinary = find(&t.store, &original.selector).await.unwrap();
    assert_eq!(
        ordinary,
        StoredToken {
            validator_hash: first,
            previous_hash: Some(original.validator_hash),
            rotated_at_ms: Some((now + 10) * 1000 + 10),
            confirmed: false,
            last_used_at: now + 10,
            expires_at: now + 31 * DAY,
            ..original.clone()
        },
        "an ordinary rotation, from a confirmed token"
    );

    // Keeping the previous hash: `first` is dropped, never becoming previous.
    assert!(t.store.confirm(&original.selector, &first).await.unwrap());
    assert!(t
        .store
        .rotate(&Rotation {
            selector: &original.selector,
            expected: &first,
            confirmed: true,
            previous: &original.validator_hash,
            replacement: &second,
            now: now + 300,
            rotated_at_ms: (now + 300) * 1000 + 300,
            expires_at: now + 32 * DAY,
        })
        .await
        .unwrap());
    assert_eq!(
        find(&t.store, &original.selector).await,
        Some(StoredToken {
            validator_hash: second,
            previous_hash: Some(original.validator_hash),
            rotated_at_ms: Some((now + 300) * 1000 + 300),
            confirmed: false,
            last_used_at: now + 300,
            expires_at: now + 32 * DAY,
            ..original.clone()
        }),
        "the previous hash kept as given"
    );
}

/// `confirm` sets `confirmed` only when the hash given is the token's
/// current one, and says whether it did; it changes nothing else and
/// creates nothing.
/// `rotate` swaps only a token still as the caller read it: the same
/// current hash *and* the same `confirmed`. Otherwise a rotation meant for
/// a browser that never saw the current validator (a lost response) could
/// land just after that browser's confirmation and discard the validator
/// it holds.
async fn store_rotate_swaps_only_a_token_still_as_read<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let token = token_of(SUSAN, now);
    t.store.insert(&token).await.unwrap();
    let replacement = sha256(b"the replacement");
    let rotation = |confirmed| Rotation {
        selector: &token.selector,
        expected: &token.validator_hash,
        confirmed,
        previous: &token.validator_hash,
        replacement: &replacement,
        now: now + 1,
        rotated_at_ms: (now + 1) * 1000,
        expires_at: now + 31 * DAY,
    };
    assert!(
        !t.store.rotate(&rotation(true)).await.unwrap(),
        "read as confirmed, but it is not"
    );
    assert!(t
        .store
        .confirm(&token.selector, &token.validator_hash)
        .await
        .unwrap());
    assert!(
        !t.store.rotate(&rotation(false)).await.unwrap(),
        "read as unconfirmed, confirmed since"
    );
    assert_eq!(
        find(&t.store, &token.selector)
            .await
            .map(|t| t.validator_hash),
        Some(token.validator_hash),
        "nothing swapped"
    );
    assert!(t.store.rotate(&rotation(true)).await.unwrap());
    let rotated = find(&t.store, &token.selector).await.unwrap();
    assert_eq!(rotated.validator_hash, replacement);
    assert!(!rotated.confirmed, "a rotation resets it");
}

async fn store_confirm_confirms_only_the_current_hash<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let original = StoredToken {
        previous_hash: Some(sha256(b"the previous validator")),
        rotated_at_ms: Some(now * 1000),
        ..token_of(SUSAN, now)
    };
    let other = token_of(SUSAN, now);
    t.store.insert(&original).await.unwrap();
    t.store.insert(&other).await.unwrap();

    for wrong in [
        sha256(b"not the current validator"),
        original.previous_hash.unwrap(),
        other.validator_hash,
    ] {
        assert!(
            !t.store.confirm(&original.selector, &wrong).await.unwrap(),
            "another hash does not confirm"
        );
    }
    assert_eq!(
        find(&t.store, &original.selector).await.as_ref(),
        Some(&original)
    );
    let unknown = random_part();
    assert!(!t
        .store
        .confirm(&unknown, &original.validator_hash)
        .await
        .unwrap());
    assert_eq!(
        find(&t.store, &unknown).await,
        None,
        "confirm creates nothing"
    );

    assert!(t
        .store
        .confirm(&original.selector, &original.validator_hash)
        .await
        .unwrap());
    let confirmed = StoredToken {
        confirmed: true,
        ..original.clone()
    };
    assert_eq!(
        find(&t.store, &original.selector).await.as_ref(),
        Some(&confirmed)
    );
    assert_eq!(
        find(&t.store, &other.selector).await.as_ref(),
        Some(&other),
        "the user's other token is untouched"
    );
    assert!(
        t.store
            .confirm(&original.selector, &original.validator_hash)
            .await
            .unwrap(),
        "confirming again still matches"
    );
    assert_eq!(find(&t.store, &original.selector).await, Some(confirmed));

    // After a rotation the old hash no longer confirms; the new one does.
    let replacement = sha256(b"next");
    assert!(t
        .store
        .rotate(&Rotation {
            selector: &original.selector,
            expected: &original.validator_hash,
            confirmed: true,
            previous: &original.validator_hash,
            replacement: &replacement,
            now: now + 1,
            rotated_at_ms: (now + 1) * 1000,
            expires_at: now + 31 * DAY,
        })
        .await
        .unwrap());
    assert!(!t
        .store
        .confirm(&original.selector, &original.validator_hash)
        .await
        .unwrap());
    assert!(!find(&t.store, &original.selector).await.unwrap().confirmed);
    assert!(t
        .store
        .confirm(&original.selector, &replacement)
        .await
        .unwrap());
    assert!(find(&t.store, &original.selector).await.unwrap().confirmed);
}

async fn store_revoke_deletes_one_token<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let a = token_of(SUSAN, now);
    let b = token_of(SUSAN, now + 1);
    t.store.insert(&a).await.unwrap();
    t.store.insert(&b).await.unwrap();
    assert!(t.store.revoke(&a.selector).await.unwrap(), "there was one");
    assert_eq!(find(&t.store, &a.selector).await, None);
    assert_eq!(find(&t.store, &b.selector).await, Some(b.clone()));
    assert_eq!(list(&t.store, SUSAN).await, vec![b]);
    assert!(!t.store.revoke(&a.selector).await.unwrap(), "already gone");
    assert!(!t.store.revoke(&random_part()).await.unwrap(), "never was");
}

async fn store_revoke_series_only_for_its_owner<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let susan = token_of(SUSAN, now);
    let susan_other = token_of(SUSAN, now + 1);
    let david = token_of(DAVID, now);
    for token in [&susan, &susan_other, &david] {
        t.store.insert(token).await.unwrap();
    }
    assert!(
        !t.store.revoke_series(DAVID, &susan.series).await.unwrap(),
        "another user's series is left alone"
    );
    assert_eq!(find(&t.store, &susan.selector).await, Some(susan.clone()));
    assert!(
        !t.store.revoke_series(SUSAN, &random_part()).await.unwrap(),
        "an unknown series"
    );
    assert!(t.store.revoke_series(SUSAN, &susan.series).await.unwrap());
    assert_eq!(find(&t.store, &susan.selector).await, None);
    assert_eq!(list(&t.store, SUSAN).await, vec![susan_other]);
    assert_eq!(list(&t.store, DAVID).await, vec![david]);
    assert!(
        !t.store.revoke_series(SUSAN, &susan.series).await.unwrap(),
        "already gone"
    );
}

/// `revoke_user` deletes that user's tokens only, even when user ids hold
/// characters that are special in glob patterns, `LIKE` or key names.
async fn store_revoke_user_deletes_only_that_users_tokens<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let users = [
        r#""user*""#,
        r#""user1""#,
        r#""user?""#,
        r#""user%""#,
        r#""user_""#,
        r#""user[1]""#,
        r#""user:1""#,
        r#""user\\""#,
        "1",
        "11",
    ];
    let mut issued = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let tokens = [
            token_of(user, now + i as u64),
            token_of(user, now + 100 + i as u64),
        ];
        for token in &tokens {
            t.store.insert(token).await.unwrap();
        }
        issued.push(tokens);
    }
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            t.store.revoke_user(user).await.unwrap(),
            2,
            "revoke_user({user}) deletes both of its tokens"
        );
        assert!(list(&t.store, user).await.is_empty(), "{user}");
        for token in &issued[i] {
            assert_eq!(find(&t.store, &token.selector).await, None, "{user}");
        }
        // Every later user is untouched.
        for (later, tokens) in users.iter().zip(&issued).skip(i + 1) {
            let mut expected = tokens.to_vec();
            expected.reverse();
            assert_eq!(
                list(&t.store, later).await,
                expected,
                "revoke_user({user}) must not touch {later}"
            );
        }
        assert_eq!(t.store.revoke_user(user).await.unwrap(), 0, "{user} again");
    }
    assert_eq!(
        t.store.revoke_user(DAVID).await.unwrap(),
        0,
        "a user with none"
    );
}

/// `list` gives the user's tokens (every field), most recently used first,
/// ties by selector.
async fn store_list_is_most_recently_used_first<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let mut a = token_of(SUSAN, now);
    a.last_used_at = now + 10;
    let mut b = token_of(SUSAN, now);
    b.last_used_at = now + 30;
    b.device = "Chrome on Windows".to_owned();
    let mut c = token_of(SUSAN, now);
    c.last_used_at = now + 20;
    let david = token_of(DAVID, now + 50);
    for token in [&a, &b, &c, &david] {
        t.store.insert(token).await.unwrap();
    }
    assert_eq!(
        list(&t.store, SUSAN).await,
        vec![b.clone(), c.clone(), a.clone()]
    );
    assert_eq!(list(&t.store, DAVID).await, vec![david]);
    assert!(list(&t.store, r#""nobody""#).await.is_empty());

    // Using the least recent one moves it first.
    let replacement = sha256(b"next");
    assert!(t
        .store
        .rotate(&Rotation {
            selector: &a.selector,
            expected: &a.validator_hash,
            confirmed: false,
            previous: &a.validator_hash,
            replacement: &replacement,
            now: now + 40,
            rotated_at_ms: (now + 40) * 1000,
            expires_at: now + 31 * DAY,
        })
        .await
        .unwrap());
    let listed = list(&t.store, SUSAN).await;
    assert_eq!(
        selectors(&listed),
        vec![
            a.selector.as_str(),
            b.selector.as_str(),
            c.selector.as_str()
        ]
    );
    assert_eq!(listed[0].last_used_at, now + 40);

    // Ties in last_used_at go by selector, in byte order (`B` before `b`).
    let tied = |selector: &str, last_used_at: u64| StoredToken {
        selector: selector.to_owned(),
        last_used_at,
        ..token_of(CAROL, now)
    };
    for token in [
        tied("sel-b", now + 10),
        tied("sel-a", now + 30),
        tied("sel-c", now + 10),
        tied("sel-B", now + 10),
    ] {
        t.store.insert(&token).await.unwrap();
    }
    assert_eq!(
        selectors(&list(&t.store, CAROL).await),
        ["sel-a", "sel-B", "sel-b", "sel-c"]
    );
}

/// `purge_expired` deletes the tokens expiring at or before `now`, of every
/// user, and returns how many.
async fn store_purge_expired_deletes_only_expired_tokens<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let expiring = |user: &str, at: u64| StoredToken {
        expires_at: at,
        ..token_of(user, now)
    };
    let early = expiring(SUSAN, now + 100);
    let david = expiring(DAVID, now + 150);
    let boundary = expiring(SUSAN, now + 200);
    let later = expiring(SUSAN, now + 201);
    let david_later = expiring(DAVID, now + 10 * DAY);
    for token in [&early, &david, &boundary, &later, &david_later] {
        t.store.insert(token).await.unwrap();
    }
    assert_eq!(
        t.store.purge_expired(now + 50).await.unwrap(),
        0,
        "none yet"
    );
    assert_eq!(t.store.purge_expired(now + 200).await.unwrap(), 3);
    for gone in [&early, &david, &boundary] {
        assert_eq!(find(&t.store, &gone.selector).await, None);
    }
    assert_eq!(list(&t.store, SUSAN).await, vec![later.clone()]);
    assert_eq!(list(&t.store, DAVID).await, vec![david_later.clone()]);
    assert_eq!(t.store.purge_expired(now + 200).await.unwrap(), 0, "again");
    assert_eq!(find(&t.store, &later.selector).await, Some(later));
}

/// A token stays stored until its latest `expires_at`, on the real clock:
/// a rotation extends it, and a user's short-lived token does not cut the
/// life of the user's other tokens (Redis expires keys by TTL).
async fn store_tokens_live_until_their_latest_expiry<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let short = |user: &str| StoredToken {
        expires_at: now + 2,
        ..token_of(user, now)
    };
    // Issued to expire in two seconds, then rotated to live a day.
    let rotated = short(SUSAN);
    t.store.insert(&rotated).await.unwrap();
    let replacement = sha256(b"next");
    assert!(t
        .store
        .rotate(&Rotation {
            selector: &rotated.selector,
            expected: &rotated.validator_hash,
            confirmed: false,
            previous: &rotated.validator_hash,
            replacement: &replacement,
            now,
            rotated_at_ms: now * 1000,
            expires_at: now + DAY,
        })
        .await
        .unwrap());
    let rotated = find(&t.store, &rotated.selector).await.unwrap();
    assert_eq!(rotated.expires_at, now + DAY);
    // A long-lived token, then a short-lived one, of the same user.
    let long = token_of(DAVID, now);
    t.store.insert(&long).await.unwrap();
    let brief = short(DAVID);
    t.store.insert(&brief).await.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    assert_eq!(
        find(&t.store, &rotated.selector).await,
        Some(rotated.clone())
    );
    assert_eq!(list(&t.store, SUSAN).await, vec![rotated]);
    assert_eq!(find(&t.store, &long.selector).await, Some(long.clone()));
    // The expired one may or may not still be stored; the long one is listed.
    let davids = list(&t.store, DAVID).await;
    assert!(davids.contains(&long), "{davids:?}");
    assert!(
        davids.iter().all(|t| *t == long || *t == brief),
        "{davids:?}"
    );
}

/// 100 tokens of one user issued at once are all stored and listed.
async fn concurrent_issues_all_land<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let issued: Vec<StoredToken> = (0..100).map(|i| token_of(SUSAN, now + i)).collect();
    let tasks: Vec<_> = issued
        .iter()
        .cloned()
        .map(|token| {
            let store = t.store.clone();
            tokio::spawn(async move { store.insert(&token).await })
        })
        .collect();
    for task in tasks {
        task.await
            .expect("an issue task panicked")
            .expect("a concurrent issue failed");
    }
    let mut expected = issued;
    expected.reverse();
    assert_eq!(list(&t.store, SUSAN).await, expected);
    assert_eq!(t.store.revoke_user(SUSAN).await.unwrap(), 100);
}

/// Of 100 concurrent rotations from the same hash, exactly one swaps, and
/// its replacement is what is stored.
async fn concurrent_store_rotations_swap_exactly_once<S: RememberStore + Clone>(t: Subject<S>) {
    let now = jwt::now();
    let original = token_of(SUSAN, now);
    t.store.insert(&original).await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100u32)
        .map(|i| {
            let store = t.store.clone();
            let selector = original.selector.clone();
            let expected = original.validator_hash;
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let replacement = sha256(&i.to_be_bytes());
                barrier.wait().await;
                let swapped = store
                    .rotate(&Rotation {
                        selector: &selector,
                        expected: &expected,
                        confirmed: false,
                        previous: &expected,
                        replacement: &replacement,
                        now: now + 1,
                        rotated_at_ms: (now + 1) * 1000,
                        expires_at: now + 31 * DAY,
                    })
                    .await;
                (replacement, swapped)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (replacement, swapped) = task.await.expect("a rotation task panicked");
        if swapped.expect("rotate failed") {
            winners.push(replacement);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation swaps");
    let stored = find(&t.store, &original.selector).await.unwrap();
    assert_eq!(stored.validator_hash, winners[0]);
    assert_eq!(stored.previous_hash, Some(original.validator_hash));
    assert_eq!(stored.rotated_at_ms, Some((now + 1) * 1000));
    assert!(!stored.confirmed);
}

// ---------------------------------------------------------------------------
// Through RevocableRemember
// ---------------------------------------------------------------------------

/// `issue` stores the grant, the selector of the cookie and only the SHA-256
/// of its validator: neither the validator nor its rotated successor is
/// held anywhere.
async fn issue_stores_the_grant_and_never_the_validator<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let cookie = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        30,
        now,
        Some(FIREFOX),
    )
    .await;
    assert_eq!(cookie.len(), 45, "{cookie}");
    let (selector, validator, bytes) = split(&cookie);
    assert_eq!((selector.len(), validator.len(), bytes.len()), (22, 22, 16));
    let stored = find_cookie(&t.store, &cookie).await;
    assert_eq!(stored.selector, selector);
    assert_eq!(
        stored.validator_hash,
        sha256(&bytes),
        "SHA-256 of the validator"
    );
    assert_eq!(stored.previous_hash, None);
    assert_eq!(stored.rotated_at_ms, None);
    assert!(!stored.confirmed);
    assert_eq!(stored.user_id, SUSAN);
    assert_eq!(stored.fingerprint, fingerprint(SUSAN_HASH));
    assert_eq!(stored.series.len(), 22);
    assert_ne!(stored.series, selector);
    assert_eq!(stored.days, 30);
    assert_eq!(stored.created_at, now);
    assert_eq!(stored.last_used_at, now);
    assert_eq!(stored.expires_at, now + 30 * DAY);
    assert_eq!(stored.device, "Firefox on Linux");
    assert_validator_not_stored(&t, &cookie).await;

    // After a rotation: the new hash, the old one as previous, neither
    // validator in the store.
    let next = rotate_cookie(&tokens, &cookie, now + 1).await;
    let (_, _, next_bytes) = split(&next);
    let rotated = find_cookie(&t.store, &next).await;
    assert_eq!(rotated.validator_hash, sha256(&next_bytes));
    assert_eq!(rotated.previous_hash, Some(sha256(&bytes)));
    assert_validator_not_stored(&t, &next).await;
    assert_validator_not_stored(&t, &cookie).await;

    // A second token of the same user gets its own selector and series.
    let other = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        30,
        now,
        Some(IPHONE),
    )
    .await;
    let other_stored = find_cookie(&t.store, &other).await;
    assert_ne!(other_stored.selector, stored.selector);
    assert_ne!(other_stored.series, stored.series);
    assert_eq!(list(&t.store, SUSAN).await.len(), 2);
}

/// `consume` of the current validator rotates it: same selector, a new
/// validator, the times moved on.
async fn consume_rotates_the_validator_and_keeps_the_selector<S: RememberStore + Clone>(
    t: Subject<S>,
) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let cookie = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        30,
        now,
        Some(FIREFOX),
    )
    .await;
    let before = find_cookie(&t.store, &cookie).await;

    let Consumed::Rotated {
        token: next,
        stored,
    } = consume(&tokens, &cookie, now + 60).await
    else {
        panic!("the current validator rotates");
    };
    assert_eq!(*stored, before, "Rotated carries the token as it was");
    let (selector, validator, _) = split(&cookie);
    let (next_selector, next_validator, next_bytes) = split(&next);
    assert_eq!(next.len(), 45);
    assert_eq!(next_selector, selector, "the selector stays");
    assert_ne!(next_validator, validator, "the validator changes");
    let after = find_cookie(&t.store, &next).await;
    assert_eq!(
        after,
        StoredToken {
            validator_hash: sha256(&next_bytes),
            previous_hash: Some(before.validator_hash),
            rotated_at_ms: Some((now + 60) * 1000),
            confirmed: false,
            last_used_at: now + 60,
            expires_at: now + 60 + 30 * DAY,
            ..before.clone()
        }
    );

    // The new one rotates in turn, again and again.
    let third = rotate_cookie(&tokens, &next, now + 120).await;
    assert_eq!(split(&third).0, selector);
    assert_ne!(third, next);
    let fourth = rotate_cookie(&tokens, &third, now + 180).await;
    assert_eq!(find_cookie(&t.store, &fourth).await.last_used_at, now + 180);
    assert_eq!(list(&t.store, SUSAN).await.len(), 1, "still one token");
}

/// The validator just replaced works within the grace window: `Grace`, no
/// new token, nothing rotated; the current one still works after.
async fn replaced_validator_within_grace_is_grace_without_rotation<S: RememberStore + Clone>(
    t: Subject<S>,
) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let cookie = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        30,
        now,
        Some(FIREFOX),
    )
    .await;
    let next = rotate_cookie(&tokens, &cookie, now + 10).await;
    let after_rotation = find_cookie(&t.store, &next).await;
    for at in [now + 10, now + 11, now + 10 + GRACE] {
        match consume(&tokens, &cookie, at).await {
            Consumed::Grace(stored) => assert_eq!(*stored, after_rotation),
            other => panic!("the replaced validator at +{}s: {other:?}", at - now - 10),
        }
        assert_eq!(
            find_cookie(&t.store, &next).await,
            after_rotation,
            "Grace changes nothing"
        );
    }
    let last = rotate_cookie(&tokens, &next, now + 10 + GRACE).await;
    assert_eq!(split(&last).0, split(&cookie).0);
    assert_eq!(list(&t.store, SUSAN).await.len(), 1);
}

/// The replaced validator after the grace window, once the browser has
/// confirmed the new one, is theft: every token of that user is revoked,
/// other users' are not, and a `warn` event names the user and the series
/// without the token.
async fn confirmed_replaced_validator_after_grace_is_theft_and_revokes_the_users_tokens<
    S: RememberStore + Clone,
>(
    t: Subject<S>,
) {
    let (captured, _guard) = capture_events();
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let susan = json!("user001");
    let cookie = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(FIREFOX)).await;
    let phone = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(IPHONE)).await;
    let david = issue(&tokens, &json!("user002"), b"david", 30, now, Some(FIREFOX)).await;
    let david_before = find_cookie(&t.store, &david).await;
    let next = rotate_cookie(&tokens, &cookie, now + 10).await;
    confirm_cookie(&tokens, &next).await;
    let after_rotation = find_cookie(&t.store, &next).await;
    assert!(after_rotation.confirmed);

    match consume(&tokens, &cookie, now + 10 + GRACE + 1).await {
        Consumed::Theft(stored) => assert_eq!(*stored, after_rotation),
        other => panic!("the replaced validator after the grace window: {other:?}"),
    }
    assert!(
        list(&t.store, SUSAN).await.is_empty(),
        "all of Susan's tokens revoked"
    );
    assert_eq!(find(&t.store, split(&cookie).0).await, None);
    assert_eq!(find(&t.store, split(&phone).0).await, None);
    assert_eq!(
        find_cookie(&t.store, &david).await,
        david_before,
        "David's untouched"
    );
    // Neither the thief's nor the owner's cookies work any more.
    for gone in [&next, &phone, &cookie] {
        assert!(
            matches!(
                consume(&tokens, gone, now + 20).await,
                Consumed::Rejected(_)
            ),
            "{gone} after the theft"
        );
    }
    // David's still does.
    rotate_cookie(&tokens, &david, now + 20).await;

    let events = captured.events();
    let warning = trace::one_latch_warning(&events, "user001");
    let series = warning
        .field("series")
        .unwrap_or_else(|| panic!("the warning names the series: {warning:#?}"));
    assert!(series.contains(&after_rotation.series), "{series}");
    for event in &events {
        let text = event.text();
        for secret in [
            cookie.as_str(),
            next.as_str(),
            split(&cookie).0,
            split(&cookie).1,
            split(&next).1,
        ] {
            assert!(!text.contains(secret), "an event leaks {secret}: {text}");
        }
    }
}

/// Only the validator replaced most recently has a grace window: an older
/// one is theft at once.
async fn older_validator_is_theft_even_within_grace<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let first = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        30,
        now,
        Some(FIREFOX),
    )
    .await;
    let second = rotate_cookie(&tokens, &first, now + 1).await;
    let third = rotate_cookie(&tokens, &second, now + 1).await;
    assert!(matches!(
        consume(&tokens, &second, now + 1).await,
        Consumed::Grace(_)
    ));
    assert!(
        matches!(consume(&tokens, &first, now + 1).await, Consumed::Theft(_)),
        "a validator two rotations old"
    );
    assert!(list(&t.store, SUSAN).await.is_empty());
    assert!(matches!(
        consume(&tokens, &third, now + 1).await,
        Consumed::Rejected(_)
    ));
}

/// Unknown selectors and malformed tokens are `Rejected`, and leave the
/// store as it was.
async fn unknown_and_malformed_tokens_are_rejected<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let cookie = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        30,
        now,
        Some(FIREFOX),
    )
    .await;
    let stored = find_cookie(&t.store, &cookie).await;
    let (selector, validator, _) = split(&cookie);
    let unknown = format!("{}.{validator}", random_part());
    let malformed = [
        String::new(),
        "garbage".to_owned(),
        selector.to_owned(),
        format!("{selector}."),
        format!("{selector}.{validator}="),
        format!("{selector}.{validator}.{validator}"),
        format!("{selector}:{validator}"),
        format!("{}.{validator}", &selector[..21]),
        format!("{selector}.{}", "!".repeat(22)),
        format!("{selector}.{}", &validator[..21]),
        format!("{selector}.{}", "é".repeat(11)),
        cookie.to_uppercase(),
    ];
    let keys = keys();
    for bad in std::iter::once(&unknown).chain(&malformed) {
        if *bad == cookie {
            continue;
        }
        assert!(
            matches!(consume(&tokens, bad, now + 1).await, Consumed::Rejected(_)),
            "{bad:?}"
        );
        assert_eq!(
            tokens
                .redeem(&keys, bad, at(now + 1), None)
                .await
                .expect("redeem"),
            None,
            "{bad:?}"
        );
        assert_eq!(
            find(&t.store, selector).await.as_ref(),
            Some(&stored),
            "{bad:?}"
        );
    }
    assert_eq!(list(&t.store, SUSAN).await, vec![stored]);
    rotate_cookie(&tokens, &cookie, now + 2).await;
}

/// A token at or past its expiry is `Rejected` and deleted; the user's
/// other tokens stay.
async fn expired_token_is_rejected_and_deleted<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = RevocableRemember::new(t.store.clone());
    let keys = keys();
    let now = jwt::now();
    let susan = json!("user001");
    let short = issue(&tokens, &susan, SUSAN_HASH, 1, now, Some(FIREFOX)).await;
    let short2 = issue(&tokens, &susan, SUSAN_HASH, 1, now, Some(FIREFOX)).await;
    let long = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(IPHONE)).await;
    assert!(
        matches!(
            consume(&tokens, &short, now + DAY).await,
            Consumed::Rejected(_)
        ),
        "at its expires_at"
    );
    assert_eq!(find(&t.store, split(&short).0).await, None, "deleted");
    assert_eq!(
        tokens
            .redeem(&keys, &short2, at(now + DAY + 1), None)
            .await
            .unwrap(),
        None,
        "past its expires_at"
    );
    assert_eq!(find(&t.store, split(&short2).0).await, None, "deleted");
    assert_eq!(
        selectors(&list(&t.store, SUSAN).await),
        vec![split(&long).0]
    );
    rotate_cookie(&tokens, &long, now + DAY).await;
}

/// `redeem` gives the user id (JSON), the fingerprint, the days, the
/// replacement cookie and its confirmation tag; within the grace window no
/// replacement, and the tag of the current cookie; after it, once the
/// replacement is confirmed, nothing.
async fn redeem_returns_the_user_and_the_replacement<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = RevocableRemember::new(t.store.clone());
    let keys = keys();
    let now = jwt::now();
    let cookie = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        14,
        now,
        Some(FIREFOX),
    )
    .await;
    let redeemed = tokens
        .redeem(&keys, &cookie, at(now + 5), Some(FIREFOX))
        .await
        .unwrap()
        .expect("a good token redeems");
    let replacement = redeemed.replacement.clone().expect("a new cookie");
    assert_eq!(split(&replacement).0, split(&cookie).0);
    assert_ne!(replacement, cookie);
    assert_eq!(
        redeemed,
        Redeemed {
            user_id: json!("user001"),
            fingerprint: Some(fingerprint(SUSAN_HASH)),
            issued_at: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(now)),
            days: 14,
            replacement: Some(replacement.clone()),
            confirmation: Some(tag_of(&replacement)),
            // The series, which names the browser, is its session id.
            session_id: Some(find_cookie(&t.store, &replacement).await.series),
        }
    );
    assert_eq!(
        find_cookie(&t.store, &replacement).await.expires_at,
        now + 5 + 14 * DAY
    );

    let grace = tokens
        .redeem(&keys, &cookie, at(now + 5 + GRACE), None)
        .await
        .unwrap()
        .expect("the replaced token within the grace window");
    assert_eq!(grace.user_id, json!("user001"));
    assert_eq!(grace.replacement, None, "no new cookie in the grace window");
    assert_eq!(
        grace.confirmation,
        Some(tag_of(&replacement)),
        "the tag of the current cookie, which the rotating request set"
    );

    let numeric = issue(&tokens, &json!(42), SUSAN_HASH, 7, now, None).await;
    let redeemed = tokens
        .redeem(&keys, &numeric, at(now), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(redeemed.user_id, json!(42));
    assert_eq!(redeemed.days, 7);

    let confirmation = grace.confirmation.clone().expect("a tag");
    assert!(
        RememberTokens::confirm(&tokens, &replacement, &confirmation)
            .await
            .unwrap(),
        "the browser's next request confirms the replacement"
    );
    assert_eq!(
        tokens
            .redeem(&keys, &cookie, at(now + 5 + GRACE + 1), None)
            .await
            .unwrap(),
        None,
        "theft redeems nothing"
    );
    assert!(list(&t.store, SUSAN).await.is_empty());
    assert_eq!(
        list(&t.store, "42").await.len(),
        1,
        "another user's token stays"
    );
}

/// `RememberTokens::revoke` deletes the token of a cookie (a malformed one
/// is ignored) and `revoke_user` every token of the user.
async fn revoke_and_revoke_user_through_remember_tokens<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = RevocableRemember::new(t.store.clone());
    let keys = keys();
    let now = jwt::now();
    let susan = json!("user001");
    let a = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(FIREFOX)).await;
    let b = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(IPHONE)).await;
    let c = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(CHROME_WINDOWS)).await;
    let david = issue(&tokens, &json!("user002"), b"d", 30, now, Some(FIREFOX)).await;

    RememberTokens::revoke(&tokens, &keys, "not a token")
        .await
        .unwrap();
    assert_eq!(list(&t.store, SUSAN).await.len(), 3);
    RememberTokens::revoke(&tokens, &keys, &a).await.unwrap();
    assert_eq!(find(&t.store, split(&a).0).await, None);
    assert!(matches!(
        consume(&tokens, &a, now + 1).await,
        Consumed::Rejected(_)
    ));
    assert_eq!(list(&t.store, SUSAN).await.len(), 2);

    RememberTokens::revoke_user(&tokens, &susan).await.unwrap();
    assert!(list(&t.store, SUSAN).await.is_empty());
    for gone in [&b, &c] {
        assert!(matches!(
            consume(&tokens, gone, now + 1).await,
            Consumed::Rejected(_)
        ));
    }
    rotate_cookie(&tokens, &david, now + 1).await;
}

/// `devices` lists the user's unexpired tokens made for this `auth_hash`,
/// most recently used first, marking the current one; `revoke_device`
/// removes one, of its owner only.
async fn devices_lists_working_tokens_and_revoke_device_removes_one<S: RememberStore + Clone>(
    t: Subject<S>,
) {
    let tokens = RevocableRemember::new(t.store.clone());
    let keys = keys();
    let now = jwt::now();
    let susan = json!("user001");
    let david = json!("user002");
    let laptop = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(FIREFOX)).await;
    let phone = issue(&tokens, &susan, SUSAN_HASH, 30, now + 10, Some(IPHONE)).await;
    let old_password = issue(
        &tokens,
        &susan,
        b"the old hash",
        30,
        now + 20,
        Some(CHROME_WINDOWS),
    )
    .await;
    let short = issue(
        &tokens,
        &susan,
        SUSAN_HASH,
        1,
        now + 5,
        Some(CHROME_WINDOWS),
    )
    .await;
    let davids = issue(&tokens, &david, b"david", 30, now, Some(FIREFOX)).await;
    let laptop = rotate_cookie(&tokens, &laptop, now + 50).await;
    let query_at = now + DAY + 100;

    let device = |stored: &StoredToken, current: bool| RememberedDevice {
        id: stored.series.clone(),
        device: stored.device.clone(),
        created_at: stored.created_at,
        last_used_at: stored.last_used_at,
        expires_at: stored.expires_at,
        current,
    };
    let laptop_stored = find_cookie(&t.store, &laptop).await;
    let phone_stored = find_cookie(&t.store, &phone).await;
    assert_eq!(laptop_stored.device, "Firefox on Linux");
    assert_eq!(phone_stored.device, "Safari on iPhone");

    let devices = tokens
        .devices(&keys, &susan, SUSAN_HASH, Some(laptop.as_str()), query_at)
        .await
        .unwrap();
    assert_eq!(
        devices,
        vec![device(&laptop_stored, true), device(&phone_stored, false)],
        "not the old password's, not the expired one, not David's"
    );
    assert_eq!(devices[0].created_at, now);
    assert_eq!(devices[0].last_used_at, now + 50);
    let devices = tokens
        .devices(&keys, &susan, SUSAN_HASH, Some(phone.as_str()), query_at)
        .await
        .unwrap();
    assert_eq!(
        devices.iter().map(|d| d.current).collect::<Vec<_>>(),
        vec![false, true]
    );
    let devices = tokens
        .devices(&keys, &susan, SUSAN_HASH, None, query_at)
        .await
        .unwrap();
    assert!(devices.iter().all(|d| !d.current));
    let old = tokens
        .devices(&keys, &susan, b"the old hash", None, now + 30)
        .await
        .unwrap();
    assert_eq!(
        old.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        vec![find_cookie(&t.store, &old_password).await.series.as_str()],
        "listed for the hash it was made for"
    );
    let short_series = find_cookie(&t.store, &short).await.series;
    let before_expiry = tokens
        .devices(&keys, &susan, SUSAN_HASH, None, now + 60)
        .await
        .unwrap();
    assert!(
        before_expiry.iter().any(|d| d.id == short_series),
        "the short one is listed while it works"
    );

    // Revoking a device: never another user's.
    assert!(!tokens
        .revoke_device(&david, &phone_stored.series)
        .await
        .unwrap());
    assert!(find(&t.store, split(&phone).0).await.is_some());
    assert!(tokens
        .revoke_device(&susan, &phone_stored.series)
        .await
        .unwrap());
    assert_eq!(find(&t.store, split(&phone).0).await, None);
    assert!(matches!(
        consume(&tokens, &phone, now + 60).await,
        Consumed::Rejected(_)
    ));
    assert!(!tokens
        .revoke_device(&susan, &phone_stored.series)
        .await
        .unwrap());
    let devices = tokens
        .devices(&keys, &susan, SUSAN_HASH, Some(laptop.as_str()), query_at)
        .await
        .unwrap();
    assert_eq!(devices, vec![device(&laptop_stored, true)]);
    let davids_devices = tokens
        .devices(&keys, &david, b"david", Some(davids.as_str()), now + 60)
        .await
        .unwrap();
    assert_eq!(davids_devices.len(), 1);
    assert!(davids_devices[0].current);
}

/// 100 concurrent consumes of one token: exactly one rotates, the others
/// get the grace window, none is theft; the new token then works and the
/// user has exactly one token.
async fn concurrent_consumes_rotate_exactly_once<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = Arc::new(RevocableRemember::new(t.store.clone()));
    let now = jwt::now();
    let cookie = issue(
        &tokens,
        &json!("user001"),
        SUSAN_HASH,
        30,
        now,
        Some(FIREFOX),
    )
    .await;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let tokens = tokens.clone();
            let cookie = cookie.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.consume(&cookie, at(now + 1)).await
            })
        })
        .collect();
    let mut rotated = Vec::new();
    let mut grace = 0;
    for task in tasks {
        match task.await.expect("a consume task panicked") {
            Ok(Consumed::Rotated { token, .. }) => rotated.push(token),
            Ok(Consumed::Grace(_)) => grace += 1,
            Ok(other) => panic!("a concurrent consume gave {other:?}"),
            Err(error) => panic!("a concurrent consume failed: {error}"),
        }
    }
    assert_eq!(rotated.len(), 1, "exactly one Rotated");
    assert_eq!(grace, 99, "all others Grace");
    let next = rotate_cookie(&tokens, &rotated[0], now + 2).await;
    assert_eq!(split(&next).0, split(&cookie).0);
    let listed = list(&t.store, SUSAN).await;
    assert_eq!(
        listed.len(),
        1,
        "exactly one token for the user: {listed:?}"
    );
    assert_eq!(
        listed[0].validator_hash,
        sha256(&split(&next).2),
        "the last rotation's validator"
    );
}

/// `confirm` takes the cookie and the tag of its validator
/// ([`Consumed::confirmation`], [`Redeemed::confirmation`]): base64url of
/// the first 16 bytes of the SHA-256 of the current validator. Another tag,
/// a malformed cookie, or a cookie rotated away since, confirms nothing.
async fn confirm_takes_the_tag_of_the_cookies_current_validator<S: RememberStore + Clone>(
    t: Subject<S>,
) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let cookie = issue(&tokens, &json!("user001"), SUSAN_HASH, 30, now, None).await;
    let rotated = consume(&tokens, &cookie, now + 10).await;
    let Consumed::Rotated { token: next, .. } = &rotated else {
        panic!("the current validator rotates: {rotated:?}");
    };
    let next = next.clone();
    let tag = rotated.confirmation().expect("Rotated has a tag");
    assert_eq!(tag, tag_of(&next), "the tag of the new validator");
    assert_eq!(tag.len(), 22);
    let grace = consume(&tokens, &cookie, now + 11).await;
    assert!(matches!(grace, Consumed::Grace(_)), "{grace:?}");
    assert_eq!(
        grace.confirmation(),
        Some(tag.clone()),
        "Grace: the current one"
    );
    assert_eq!(Consumed::Rejected("x").confirmation(), None);

    let (selector, _, _) = split(&next);
    let malformed = format!("{selector}.");
    for (what, token, confirmation) in [
        ("another tag", next.as_str(), tag_of(&cookie)),
        ("an empty tag", next.as_str(), String::new()),
        ("the tag with padding", next.as_str(), format!("{tag}==")),
        (
            "the old cookie with its own tag",
            cookie.as_str(),
            tag_of(&cookie),
        ),
        (
            "the old cookie with the new tag",
            cookie.as_str(),
            tag.clone(),
        ),
        ("a malformed cookie", malformed.as_str(), tag.clone()),
    ] {
        assert!(
            !tokens.confirm(token, &confirmation).await.unwrap(),
            "{what} confirms nothing"
        );
        assert!(
            !RememberTokens::confirm(&tokens, token, &confirmation)
                .await
                .unwrap(),
            "{what}, through RememberTokens"
        );
        assert!(!find_cookie(&t.store, &next).await.confirmed, "{what}");
    }
    assert!(RememberTokens::confirm(&tokens, &next, &tag).await.unwrap());
    assert!(find_cookie(&t.store, &next).await.confirmed);

    // Rotated away since: its tag no longer confirms anything.
    let third = rotate_cookie(&tokens, &next, now + 20).await;
    assert!(!tokens.confirm(&next, &tag).await.unwrap());
    assert!(!find_cookie(&t.store, &third).await.confirmed);
}

/// Attack review: a rotated cookie's response never reaches the browser
/// (it disconnected), and minutes later the browser presents the validator
/// it still holds. That is not theft: it gets another new validator, the
/// one it never saw is dropped, the one it holds stays the previous one,
/// and nothing is revoked. The next cookie works as usual.
async fn dropped_response_then_the_old_validator_minutes_later_is_not_theft<
    S: RememberStore + Clone,
>(
    t: Subject<S>,
) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let susan = json!("user001");
    let cookie = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(FIREFOX)).await;
    let phone = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(IPHONE)).await;
    let held = sha256(&split(&cookie).2);

    // The response carrying `lost` is dropped on the way.
    let lost = rotate_cookie(&tokens, &cookie, now + 10).await;
    let later = now + 10 + 5 * MINUTE;
    let before = find_cookie(&t.store, &lost).await;
    let Consumed::Rotated {
        token: next,
        stored,
    } = consume(&tokens, &cookie, later).await
    else {
        panic!("the held validator after a lost response rotates again");
    };
    assert_eq!(*stored, before, "Rotated carries the token as it was");
    let after = find_cookie(&t.store, &next).await;
    assert_eq!(
        after,
        StoredToken {
            validator_hash: sha256(&split(&next).2),
            previous_hash: Some(held),
            rotated_at_ms: Some(later * 1000),
            confirmed: false,
            last_used_at: later,
            expires_at: later + 30 * DAY,
            ..before
        },
        "the previous hash is still the one the browser held"
    );
    assert_eq!(list(&t.store, SUSAN).await.len(), 2, "nothing revoked");

    // The next cookie works, and rotates as usual.
    let third = rotate_cookie(&tokens, &next, later + 1).await;
    assert_eq!(
        find_cookie(&t.store, &third).await.previous_hash,
        Some(sha256(&split(&next).2))
    );
    rotate_cookie(&tokens, &phone, later + 1).await;
    assert_eq!(
        list(&t.store, SUSAN).await.len(),
        2,
        "still nothing revoked"
    );

    // The validator that never reached the browser was dropped: whoever
    // shows it has a copy.
    assert!(
        matches!(consume(&tokens, &lost, later + 2).await, Consumed::Theft(_)),
        "the dropped validator"
    );
    assert!(list(&t.store, SUSAN).await.is_empty());
}

/// Attack review: a copy of the cookie, used after the owner's browser got
/// the rotated cookie and confirmed it, is theft.
async fn copy_used_after_the_owners_confirmation_is_theft<S: RememberStore + Clone>(t: Subject<S>) {
    let tokens = RevocableRemember::new(t.store.clone());
    let keys = keys();
    let now = jwt::now();
    let susan = json!("user001");
    let copy = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(FIREFOX)).await;
    let phone = issue(&tokens, &susan, SUSAN_HASH, 30, now, Some(IPHONE)).await;
    let owners = rotate_cookie(&tokens, &copy, now + 10).await;
    confirm_cookie(&tokens, &owners).await;

    assert_eq!(
        tokens
            .redeem(&keys, &copy, at(now + 10 + MINUTE), None)
            .await
            .unwrap(),
        None,
        "the copy redeems nothing"
    );
    assert!(
        list(&t.store, SUSAN).await.is_empty(),
        "all of Susan's revoked"
    );
    for gone in [&owners, &phone, &copy] {
        assert!(matches!(
            consume(&tokens, gone, now + 10 + MINUTE).await,
            Consumed::Rejected(_)
        ));
    }
}

/// Attack review: a copy of the cookie, used after the owner's browser has
/// used the rotated cookie in turn (so it must have received it), is theft,
/// confirmed or not, within a grace window or not.
async fn copy_used_after_the_owners_next_rotation_is_theft<S: RememberStore + Clone>(
    t: Subject<S>,
) {
    let tokens = RevocableRemember::new(t.store.clone());
    let now = jwt::now();
    let copy = issue(&tokens, &json!("user001"), SUSAN_HASH, 30, now, None).await;
    let second = rotate_cookie(&tokens, &copy, now + 10).await;
    let third = rotate_cookie(&tokens, &second, now + 20).await;
    assert!(!find_cookie(&t.store, &third).await.confirmed);
    match consume(&tokens, &copy, now + 20).await {
        Consumed::Theft(stored) => assert_eq!(stored.validator_hash, sha256(&split(&third).2)),
        other => panic!("the copy after the owner's next rotation: {other:?}"),
    }
    assert!(list(&t.store, SUSAN).await.is_empty());
    assert!(matches!(
        consume(&tokens, &third, now + 21).await,
        Consumed::Rejected(_)
    ));
}

/// The grace window keeps milliseconds: with 500 ms, the previous validator
/// (its successor confirmed) is let in at +300 ms and at +500 ms, and is
/// theft at +700 ms. (Whole seconds would have made the window zero.)
async fn grace_of_500_ms_lets_the_previous_in_at_300_ms_not_at_700_ms_once_confirmed<
    S: RememberStore + Clone,
>(
    t: Subject<S>,
) {
    let tokens = RevocableRemember::new(t.store.clone()).grace(Duration::from_millis(500));
    let now = jwt::now();
    let cookie = issue(&tokens, &json!("user001"), SUSAN_HASH, 30, now, None).await;
    let rotated_ms = (now + 10) * 1000 + 250;
    let Consumed::Rotated { token: next, .. } =
        consume_at(&tokens, &cookie, at_ms(rotated_ms)).await
    else {
        panic!("the current validator rotates");
    };
    confirm_cookie(&tokens, &next).await;
    assert_eq!(
        find_cookie(&t.store, &next).await.rotated_at_ms,
        Some(rotated_ms)
    );
    for offset in [300, 500] {
        assert!(
            matches!(
                consume_at(&tokens, &cookie, at_ms(rotated_ms + offset)).await,
                Consumed::Grace(_)
            ),
            "+{offset} ms"
        );
    }
    assert!(
        matches!(
            consume_at(&tokens, &cookie, at_ms(rotated_ms + 700)).await,
            Consumed::Theft(_)
        ),
        "+700 ms"
    );
    assert!(list(&t.store, SUSAN).await.is_empty());
}

/// 100 concurrent requests with the previous validator, past the grace
/// window and unconfirmed (a restarting browser whose last response was
/// lost): exactly one rotates again, the other 99 get the grace window of
/// that rotation; none is theft, and the new cookie works.
async fn concurrent_consumes_of_an_unconfirmed_previous_past_grace_rotate_once<
    S: RememberStore + Clone,
>(
    t: Subject<S>,
) {
    let tokens = Arc::new(RevocableRemember::new(t.store.clone()));
    let now = jwt::now();
    let cookie = issue(&tokens, &json!("user001"), SUSAN_HASH, 30, now, None).await;
    rotate_cookie(&tokens, &cookie, now + 1).await;
    let later = now + 1 + 10 * MINUTE;
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let tokens = tokens.clone();
            let cookie = cookie.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.consume(&cookie, at(later)).await
            })
        })
        .collect();
    let mut rotated = Vec::new();
    let mut grace = 0;
    for task in tasks {
        match task.await.expect("a consume task panicked") {
            Ok(Consumed::Rotated { token, .. }) => rotated.push(token),
            Ok(Consumed::Grace(_)) => grace += 1,
            Ok(other) => panic!("a concurrent consume gave {other:?}"),
            Err(error) => panic!("a concurrent consume failed: {error}"),
        }
    }
    assert_eq!(rotated.len(), 1, "exactly one Rotated");
    assert_eq!(grace, 99, "all others Grace");
    let stored = find_cookie(&t.store, &rotated[0]).await;
    assert_eq!(stored.validator_hash, sha256(&split(&rotated[0]).2));
    assert_eq!(
        stored.previous_hash,
        Some(sha256(&split(&cookie).2)),
        "still the validator the browser holds"
    );
    rotate_cookie(&tokens, &rotated[0], later + 1).await;
    assert_eq!(list(&t.store, SUSAN).await.len(), 1);
}
