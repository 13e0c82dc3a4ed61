//! How long the remember-me stores take to issue a token, to consume and
//! rotate one, and to confirm a rotated one, through `RevocableRemember`,
//! per backend.
//!
//! ```text
//! TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//! TEST_REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo bench --all-features --bench remember_store
//! ```
//!
//! Memory and SQLite (a file in a temporary directory, WAL) always run;
//! PostgreSQL and Redis run when `TEST_POSTGRES_URL` / `TEST_REDIS_URL` are
//! set, each in a schema or key prefix of its own that is removed at the end.
//! Every benchmark runs one operation at a time on a current-thread Tokio
//! runtime: these are latencies, not throughput.

use axum_latch::remember::{
    Consumed, RememberGrant, RememberStore, RememberTokens, RevocableRemember,
};
use axum_latch::stores::{MemoryStore, PostgresStore, RedisStore, SqliteStore};
use axum_latch::{KeyRing, SecretKey};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::hint::black_box;
use std::str::FromStr as _;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Runtime;

/// Issued tokens are deleted (untimed) after every batch of this many, so
/// that the stores stay small however many iterations criterion asks for.
const ISSUE_BATCH: u64 = 500;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");

    bench_store(c, &rt, "memory", MemoryStore::new());

    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = rt.block_on(async {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("remember.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("open SQLite");
        let store = SqliteStore::new(pool.clone());
        store.migrate().await.expect("SqliteStore::migrate");
        (pool, store)
    });
    bench_store(c, &rt, "sqlite", sqlite.1);
    rt.block_on(sqlite.0.close());
    drop(dir);

    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => postgres(c, &rt, &url),
        _ => eprintln!("note: TEST_POSTGRES_URL is not set; skipping PostgreSQL"),
    }
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => redis(c, &rt, &url),
        _ => eprintln!("note: TEST_REDIS_URL is not set; skipping Redis"),
    }
}

fn postgres(c: &mut Criterion, rt: &Runtime, url: &str) {
    let options = PgConnectOptions::from_str(url).expect("TEST_POSTGRES_URL");
    let schema = format!("latch_bench_{}", random_hex());
    let (admin, pool, store) = rt.block_on(async {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("CREATE SCHEMA");
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.options([("search_path", schema.as_str())]))
            .await
            .expect("connect to PostgreSQL");
        let store = PostgresStore::new(pool.clone());
        store.migrate().await.expect("PostgresStore::migrate");
        (admin, pool, store)
    });
    bench_store(c, rt, "postgres", store);
    rt.block_on(async {
        pool.close().await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .expect("DROP SCHEMA");
        admin.close().await;
    });
}

fn redis(c: &mut Criterion, rt: &Runtime, url: &str) {
    let prefix = format!("latch_bench_{}:", random_hex());
    let mut manager = rt.block_on(async {
        let client = redis::Client::open(url).expect("TEST_REDIS_URL");
        redis::aio::ConnectionManager::new(client)
            .await
            .unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"))
    });
    bench_store(
        c,
        rt,
        "redis",
        RedisStore::new(manager.clone()).prefix(&prefix),
    );
    rt.block_on(async {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut manager)
                .await
                .expect("SCAN");
            for key in keys {
                let _: i64 = redis::cmd("DEL")
                    .arg(key)
                    .query_async(&mut manager)
                    .await
                    .expect("DEL");
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    });
}

/// `issue`; `consume` of the token the previous iteration returned (so
/// every iteration is a real rotation: find, compare, rotate); and
/// `confirm` of the current token (one conditional write).
fn bench_store<S: RememberStore>(c: &mut Criterion, rt: &Runtime, backend: &str, store: S) {
    let tokens = RevocableRemember::new(store);
    let keys = KeyRing::new(SecretKey::new([7u8; 32]).expect("a 32-byte key"));
    let user = json!("bench-user");
    let user_text = user.to_string();
    let mut group = c.benchmark_group(backend);

    {
        let (tokens, keys, user, user_text) = (&tokens, &keys, &user, &user_text);
        group.bench_function("issue", |b| {
            b.to_async(rt).iter_custom(|iters| async move {
                let mut timed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let batch = (iters - done).min(ISSUE_BATCH);
                    let start = Instant::now();
                    for _ in 0..batch {
                        black_box(issue(tokens, keys, user).await);
                    }
                    timed += start.elapsed();
                    done += batch;
                    tokens
                        .store()
                        .revoke_user(user_text)
                        .await
                        .expect("revoke_user");
                }
                timed
            })
        });
    }

    let current = Mutex::new(rt.block_on(issue(&tokens, &keys, &user)));
    {
        let (tokens, current) = (&tokens, &current);
        group.bench_function("consume_rotate", |b| {
            b.to_async(rt).iter(move || async move {
                let token = current.lock().unwrap().clone();
                *current.lock().unwrap() = rotate(tokens, &token).await.0;
            })
        });
    }

    // The current token and its tag, from one more (untimed) rotation.
    let (token, confirmation) = rt.block_on(rotate(&tokens, &current.into_inner().unwrap()));
    {
        let (tokens, token, confirmation) = (&tokens, &token, &confirmation);
        group.bench_function("confirm", |b| {
            b.to_async(rt).iter(move || async move {
                let confirmed = tokens.confirm(token, confirmation).await;
                assert!(confirmed.expect("confirm"), "the current token confirms");
            })
        });
    }
    group.finish();
    rt.block_on(tokens.store().revoke_user(&user_text))
        .expect("revoke_user");
}

/// Consumes the current token, which must rotate: the new token and its
/// confirmation tag.
async fn rotate<S: RememberStore>(tokens: &RevocableRemember<S>, token: &str) -> (String, String) {
    let consumed = tokens.consume(token, SystemTime::now()).await;
    let confirmation = consumed.as_ref().ok().and_then(Consumed::confirmation);
    match (consumed, confirmation) {
        (Ok(Consumed::Rotated { token, .. }), Some(confirmation)) => (token, confirmation),
        (other, _) => panic!("consume of the current token gave {other:?}"),
    }
}

async fn issue<S: RememberStore>(
    tokens: &RevocableRemember<S>,
    keys: &KeyRing,
    user: &Value,
) -> String {
    tokens
        .issue(RememberGrant {
            keys,
            user_id: user,
            fingerprint: "AAAAAAAAAAAAAAAAAAAAAA",
            days: 30,
            now: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_secs(),
            user_agent: Some(FIREFOX),
            session_id: None,
        })
        .await
        .expect("issue")
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = remember_store;
    config = config();
    targets = benches
}
criterion_main!(remember_store);
