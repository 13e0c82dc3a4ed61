//! What is particular to the SQL stores, on SQLite and PostgreSQL: `migrate`
//! (again, concurrently, and upgrading a table made before `confirmed`),
//! times that do not fit in the table, rows corrupted by hand, and
//! PostgreSQL's `LISTEN` for the session registry. The behaviour every store
//! shares is in `store.rs` and `session_store.rs`.
//!
//! Only the crate's public API, plus raw SQL on the store's own pool where a
//! test looks at or corrupts the tables `latch_remember_tokens`,
//! `latch_sessions` and `latch_session_endings` (or their shape,
//! through `sqlite_master`/`pragma_table_info` and
//! `information_schema`/`pg_indexes`). PostgreSQL runs on the kit's server
//! (`TEST_POSTGRES_URL`, or a cluster it starts; with neither, `SKIPPED`), in
//! a schema of each test's own.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

use crate::support::backend;

use axum_latch::registry::{Change, Ending, SessionRecord};
use axum_latch::remember::{Consumed, RememberStore, RevocableRemember, Rotation, StoredToken};
use futures_util::future::BoxFuture;
use std::future::Future;

const DAY: u64 = 24 * 60 * 60;
const NOW: u64 = 1_750_000_000;

/// A migrated store, its pool (for raw SQL), and what tidies up after.
struct Fixture<S, P> {
    store: S,
    pool: P,
    cleanup: BoxFuture<'static, ()>,
}

/// Runs `test` on the fixture (`None`: skipped), then cleans up, whether
/// the test passed or panicked.
async fn run<S, P, F, Fut>(fixture: Option<Fixture<S, P>>, test: F)
where
    F: FnOnce(S, P) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(Fixture {
        store,
        pool,
        cleanup,
    }) = fixture
    else {
        return;
    };
    backend::run_then_clean(test(store, pool), cleanup).await;
}

/// A session of `user_id` that began at `NOW`, valid for a day.
fn session(user_id: &str, session_id: &str) -> SessionRecord {
    SessionRecord {
        session_id: session_id.to_owned(),
        user_id: user_id.to_owned(),
        device: "Firefox on Linux".to_owned(),
        created_at: NOW,
        last_active_at: NOW,
        expires_at: NOW + DAY,
        remembered: true,
    }
}

fn token(user_id: &str, selector: &str, last_used_at: u64) -> StoredToken {
    StoredToken {
        selector: selector.to_owned(),
        validator_hash: [1; 32],
        previous_hash: None,
        rotated_at_ms: None,
        confirmed: false,
        user_id: user_id.to_owned(),
        fingerprint: "fp".to_owned(),
        series: format!("series-{selector}"),
        days: 30,
        created_at: NOW,
        last_used_at,
        expires_at: last_used_at + 30 * DAY,
        device: "Firefox on Linux".to_owned(),
    }
}

/// The tests, once per database. Each backend module gives `open` and
/// `open_concurrent` (a pool of several connections), each a fixture of a
/// new, migrated database; `OLD_SCHEMA`, the table and indexes as latch made
/// them before `confirmed` existed; and `shape`, the table's columns and
/// indexes as the database describes them.
macro_rules! sql_tests {
    () => {
        #[tokio::test]
        async fn migrate_again_keeps_the_table_and_its_tokens() {
            run(open().await, |store, _| async move {
                let stored = token(r#""user001""#, "sel-a", NOW);
                store.insert(&stored).await.unwrap();
                store.migrate().await.expect("a second migrate");
                store.migrate().await.expect("a third migrate");
                assert_eq!(store.find("sel-a").await.unwrap(), Some(stored));
            })
            .await;
        }

        #[tokio::test]
        async fn times_beyond_i64_are_refused_not_wrapped() {
            run(open().await, |store, _| async move {
                let mut huge = token(r#""user001""#, "sel-huge", NOW);
                huge.expires_at = u64::MAX;
                assert!(store.insert(&huge).await.is_err());
                huge.expires_at = NOW;
                huge.rotated_at_ms = Some(i64::MAX as u64 + 1);
                assert!(store.insert(&huge).await.is_err());
                assert_eq!(store.find("sel-huge").await.unwrap(), None);

                let stored = token(r#""user001""#, "sel-a", NOW);
                store.insert(&stored).await.unwrap();
                let rotation = Rotation {
                    selector: "sel-a",
                    expected: &stored.validator_hash,
                    confirmed: false,
                    previous: &stored.validator_hash,
                    replacement: &[2; 32],
                    now: u64::MAX,
                    rotated_at_ms: NOW * 1000,
                    expires_at: NOW,
                };
                assert!(store.rotate(&rotation).await.is_err());
                let at_max = Rotation {
                    now: NOW,
                    rotated_at_ms: u64::MAX,
                    ..rotation
                };
                assert!(store.rotate(&at_max).await.is_err());
                assert_eq!(store.find("sel-a").await.unwrap(), Some(stored));

                // `now` past i64::MAX purges everything, as it should.
                assert_eq!(store.purge_expired(u64::MAX).await.unwrap(), 1);
            })
            .await;
        }

        /// A table made before `confirmed` existed, holding a token
        /// rotated back then (`rotated_at` in seconds): instances that
        /// start at once all migrate it, the column is added as false (the
        /// table then has the shape of a new one), and the token's previous
        /// validator gets a new one instead of counting as theft.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn migrate_upgrades_a_table_made_before_confirmed() {
            run(open_concurrent().await, |store, pool| async move {
                use base64::engine::general_purpose::URL_SAFE_NO_PAD;
                use base64::Engine as _;
                use sha2::{Digest, Sha256};

                let (new_columns, new_indexes) = shape(&pool).await;
                assert_eq!(
                    new_columns.last().map(|c| c.split(' ').next()),
                    Some(Some("confirmed")),
                    "confirmed is the last column: {new_columns:?}"
                );
                sqlx::query("DROP TABLE latch_remember_tokens")
                    .execute(&pool)
                    .await
                    .unwrap();
                for statement in OLD_SCHEMA {
                    sqlx::query(statement).execute(&pool).await.unwrap();
                }
                let (old_columns, old_indexes) = shape(&pool).await;
                assert_eq!(
                    old_columns,
                    new_columns[..new_columns.len() - 1],
                    "the old table is today's without confirmed"
                );
                assert_eq!(old_indexes, new_indexes);

                let selector = URL_SAFE_NO_PAD.encode([3u8; 16]);
                let (old, current) = ([4u8; 16], [5u8; 16]);
                let hash = |validator: [u8; 16]| -> Vec<u8> { Sha256::digest(validator).to_vec() };
                sqlx::query(
                    "INSERT INTO latch_remember_tokens (selector, validator_hash, \
                     previous_hash, rotated_at, user_id, fingerprint, series, days, \
                     created_at, last_used_at, expires_at, device) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&selector)
                .bind(hash(current))
                .bind(hash(old))
                .bind(NOW as i64)
                .bind(r#""user001""#)
                .bind("fp")
                .bind("series-old")
                .bind(30i64)
                .bind(NOW as i64)
                .bind(NOW as i64)
                .bind((NOW + 30 * DAY) as i64)
                .bind("Firefox on Linux")
                .execute(&pool)
                .await
                .unwrap();

                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let store = store.clone();
                        tokio::spawn(async move { store.migrate().await })
                    })
                    .collect();
                for task in tasks {
                    task.await
                        .unwrap()
                        .expect("a concurrent migrate of an old table");
                }
                store.migrate().await.expect("migrate once more");
                assert_eq!(
                    shape(&pool).await,
                    (new_columns, new_indexes),
                    "an upgraded table has the columns and indexes of a new one"
                );
                let found = store
                    .find(&selector)
                    .await
                    .unwrap()
                    .expect("the old token");
                assert!(!found.confirmed, "added as false");
                assert_eq!(
                    found.rotated_at_ms,
                    Some(NOW),
                    "seconds, read as milliseconds"
                );
                assert_eq!(found.previous_hash.map(|h| h.to_vec()), Some(hash(old)));

                // The old previous validator: long past the grace window
                // and unconfirmed, so a lost response, not theft.
                let tokens = RevocableRemember::new(store.clone());
                let cookie = format!("{selector}.{}", URL_SAFE_NO_PAD.encode(old));
                let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(NOW + 60);
                let consumed = tokens.consume(&cookie, now).await.unwrap();
                let Consumed::Rotated { token, .. } = consumed else {
                    panic!("the old previous validator after the upgrade: {consumed:?}");
                };
                let after = store.find(&selector).await.unwrap().unwrap();
                assert_eq!(after.previous_hash.map(|h| h.to_vec()), Some(hash(old)));
                assert_eq!(after.rotated_at_ms, Some((NOW + 60) * 1000));
                let confirmation = tokens
                    .consume(&token, now)
                    .await
                    .unwrap()
                    .confirmation()
                    .expect("the new cookie works");
                assert_eq!(confirmation.len(), 22);
                assert_eq!(store.list(r#""user001""#).await.unwrap().len(), 1);
            })
            .await;
        }

        /// Instances starting at once all migrate.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_migrations_all_succeed() {
            run(open_concurrent().await, |store, pool| async move {
                for table in ["latch_remember_tokens", "latch_sessions", "latch_session_endings"] {
                    sqlx::query(&format!("DROP TABLE {table}"))
                        .execute(&pool)
                        .await
                        .unwrap();
                }
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let store = store.clone();
                        tokio::spawn(async move { store.migrate().await })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap().expect("a concurrent migrate");
                }
                let stored = token(r#""user001""#, "sel-a", NOW);
                store.insert(&stored).await.unwrap();
                assert_eq!(store.find("sel-a").await.unwrap(), Some(stored));
                use axum_latch::registry::SessionStore;
                let recorded = session(r#""user001""#, "session-a");
                store.save(&recorded).await.unwrap();
                assert_eq!(
                    SessionStore::list(&store, r#""user001""#, NOW).await.unwrap(),
                    vec![recorded]
                );
            })
            .await;
        }

        #[tokio::test]
        async fn corrupted_rows_are_errors_not_panics() {
            run(open().await, |store, pool| async move {
                let susan = r#""user001""#;
                store.insert(&token(susan, "sel-a", NOW)).await.unwrap();
                store.insert(&token(susan, "sel-b", NOW)).await.unwrap();
                let set_bytes = |column: &str, bytes: Option<Vec<u8>>| {
                    let sql = format!(
                        "UPDATE latch_remember_tokens SET {column} = $1 WHERE selector = 'sel-a'"
                    );
                    let pool = pool.clone();
                    async move { sqlx::query(&sql).bind(bytes).execute(&pool).await.unwrap() }
                };
                let set_integer = |column: &str, value: i64| {
                    let sql = format!(
                        "UPDATE latch_remember_tokens SET {column} = $1 WHERE selector = 'sel-a'"
                    );
                    let pool = pool.clone();
                    async move { sqlx::query(&sql).bind(value).execute(&pool).await.unwrap() }
                };
                let assert_corrupt = |what: &'static str| {
                    let store = store.clone();
                    async move {
                        assert!(store.find("sel-a").await.is_err(), "find with {what}");
                        assert!(store.list(susan).await.is_err(), "list with {what}");
                        assert!(store.find("sel-b").await.unwrap().is_some());
                    }
                };

                set_bytes("validator_hash", Some(vec![1; 31])).await;
                assert_corrupt("a 31-byte validator_hash").await;
                set_bytes("validator_hash", Some(vec![])).await;
                assert_corrupt("an empty validator_hash").await;
                set_bytes("validator_hash", Some(vec![1; 32])).await;
                set_bytes("previous_hash", Some(vec![1; 33])).await;
                assert_corrupt("a 33-byte previous_hash").await;
                set_bytes("previous_hash", None).await;
                assert!(store.find("sel-a").await.unwrap().is_some());

                set_integer("created_at", -1).await;
                assert_corrupt("a negative created_at").await;
                set_integer("created_at", 0).await;
                set_integer("rotated_at", -5).await;
                assert_corrupt("a negative rotated_at").await;
                set_integer("rotated_at", 0).await;
                set_integer("days", i64::from(u32::MAX) + 1).await;
                assert_corrupt("days past u32::MAX").await;

                // What needs no decoding still works on a corrupted row.
                assert!(store.revoke("sel-a").await.unwrap());
                assert_eq!(store.list(susan).await.unwrap().len(), 1);
            })
            .await;
        }

        /// `migrate` again leaves the registry's tables as they are: the
        /// records, the feed, and its numbering.
        #[tokio::test]
        async fn migrate_again_keeps_the_registrys_records_and_feed() {
            run(open().await, |store, _| async move {
                use axum_latch::registry::SessionStore;
                let susan = r#""user001""#;
                let kept = session(susan, "session-a");
                let ended = session(susan, "session-b");
                store.save(&kept).await.unwrap();
                store.save(&ended).await.unwrap();
                let ending = Ending::Session {
                    session_id: ended.session_id.clone(),
                    user_id: susan.to_owned(),
                    until: NOW + DAY,
                };
                let seq = store.end(&ending).await.unwrap();
                store.migrate().await.expect("a second migrate");
                store.migrate().await.expect("a third migrate");
                assert_eq!(
                    SessionStore::list(&store, susan, NOW).await.unwrap(),
                    vec![kept]
                );
                assert_eq!(
                    store.changes(0, 10).await.unwrap(),
                    vec![Change { seq, ending: ending.clone() }]
                );
                store.save(&ended).await.unwrap();
                assert_eq!(SessionStore::list(&store, susan, NOW).await.unwrap().len(), 1);
                assert!(store.end(&ending).await.unwrap() > seq);
            })
            .await;
        }

        /// Rows of the registry's tables corrupted by hand (a negative
        /// time, an unknown kind of ending, a column its kind needs left
        /// empty) make `list` and `changes` fail, not panic; `purge` and
        /// the other rows still work.
        #[tokio::test]
        async fn corrupted_registry_rows_are_errors_not_panics() {
            run(open().await, |store, pool| async move {
                use axum_latch::registry::SessionStore;
                let susan = r#""user001""#;
                store.save(&session(susan, "session-a")).await.unwrap();
                store.save(&session(r#""user002""#, "session-b")).await.unwrap();
                let execute = |sql: &'static str| {
                    let pool = pool.clone();
                    async move { sqlx::query(sql).execute(&pool).await.unwrap() }
                };
                execute("UPDATE latch_sessions SET created_at = -1 WHERE session_id = 'session-a'")
                    .await;
                assert!(SessionStore::list(&store, susan, NOW).await.is_err());
                assert_eq!(
                    SessionStore::list(&store, r#""user002""#, NOW).await.unwrap().len(),
                    1
                );
                execute("UPDATE latch_sessions SET created_at = 1, expires_at = -7 \
                         WHERE session_id = 'session-a'")
                    .await;
                assert!(
                    SessionStore::list(&store, susan, NOW).await.unwrap().is_empty(),
                    "expired long ago"
                );

                let first = store
                    .end(&Ending::User {
                        user_id: susan.to_owned(),
                        not_before: NOW,
                        except: None,
                        until: NOW + DAY,
                    })
                    .await
                    .unwrap();
                // Each corruption on its own, from the row as `end` wrote it.
                let good = format!(
                    "UPDATE latch_session_endings SET kind = 'user', not_before = {NOW}, \
                     session_id = NULL, until = {}",
                    NOW + DAY
                );
                for (corruption, what) in [
                    ("kind = 'everyone'", "an unknown kind"),
                    ("not_before = NULL", "no not_before"),
                    ("not_before = -3", "a negative not_before"),
                    ("kind = 'session'", "no session_id"),
                    ("until = -1", "a negative until"),
                ] {
                    sqlx::query(&good).execute(&pool).await.unwrap();
                    assert_eq!(store.changes(0, 10).await.unwrap().len(), 1);
                    sqlx::query(&format!("UPDATE latch_session_endings SET {corruption}"))
                        .execute(&pool)
                        .await
                        .unwrap();
                    assert!(store.changes(0, 10).await.is_err(), "changes with {what}");
                    assert!(store.changes(first, 10).await.unwrap().is_empty());
                }
                // The purge deletes both corrupted rows (their times are
                // past), and the feed works again.
                assert_eq!(store.purge(NOW).await.unwrap(), 2);
                assert!(store.changes(0, 10).await.unwrap().is_empty());
                let next = store
                    .end(&Ending::Session {
                        session_id: "session-b".to_owned(),
                        user_id: r#""user002""#.to_owned(),
                        until: NOW + DAY,
                    })
                    .await
                    .unwrap();
                assert!(next > first);
                assert_eq!(store.changes(0, 10).await.unwrap().len(), 1);
            })
            .await;
        }
    };
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use axum_latch::stores::SqliteStore;
    use sqlx::sqlite::SqlitePoolOptions;
    use sqlx::SqlitePool;

    /// An in-memory database. Every connection to `sqlite::memory:` is a
    /// database of its own, so the pool has one connection, kept open.
    async fn open() -> Option<Fixture<SqliteStore, SqlitePool>> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .expect("an in-memory SQLite database");
        Some(migrated(pool, None).await)
    }

    /// A database file in WAL mode behind four connections, so that
    /// concurrent statements really overlap.
    async fn open_concurrent() -> Option<Fixture<SqliteStore, SqlitePool>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pool = backend::sqlite_file(dir.path(), 4).await;
        Some(migrated(pool, Some(dir)).await)
    }

    async fn migrated(
        pool: SqlitePool,
        dir: Option<tempfile::TempDir>,
    ) -> Fixture<SqliteStore, SqlitePool> {
        let store = SqliteStore::new(pool.clone());
        store.migrate().await.expect("SqliteStore::migrate");
        let cleanup = {
            let pool = pool.clone();
            Box::pin(async move {
                pool.close().await;
                drop(dir);
            })
        };
        Fixture {
            store,
            pool,
            cleanup,
        }
    }

    /// The table and indexes as latch made them before `confirmed`.
    const OLD_SCHEMA: [&str; 3] = [
        "CREATE TABLE latch_remember_tokens (\
         selector TEXT NOT NULL PRIMARY KEY, validator_hash BLOB NOT NULL, \
         previous_hash BLOB, rotated_at INTEGER, user_id TEXT NOT NULL, \
         fingerprint TEXT NOT NULL, series TEXT NOT NULL UNIQUE, days INTEGER NOT NULL, \
         created_at INTEGER NOT NULL, last_used_at INTEGER NOT NULL, \
         expires_at INTEGER NOT NULL, device TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS latch_remember_tokens_user_id \
         ON latch_remember_tokens (user_id)",
        "CREATE INDEX IF NOT EXISTS latch_remember_tokens_expires_at \
         ON latch_remember_tokens (expires_at)",
    ];

    /// The table's columns (name, type, not null, default, key), in order,
    /// and its indexes (name, columns, unique), by name.
    async fn shape(pool: &SqlitePool) -> (Vec<String>, Vec<String>) {
        let columns = sqlx::query_scalar(
            "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || \
             coalesce(dflt_value, '-') || ' ' || pk \
             FROM pragma_table_info('latch_remember_tokens') ORDER BY cid",
        )
        .fetch_all(pool)
        .await
        .expect("the table's columns");
        let indexes = sqlx::query_scalar(
            "SELECT m.name || ' (' || \
             (SELECT group_concat(name, ',') FROM pragma_index_info(m.name)) || ') ' || \
             l.\"unique\" \
             FROM sqlite_master m JOIN pragma_index_list('latch_remember_tokens') l \
             ON l.name = m.name \
             WHERE m.type = 'index' AND m.tbl_name = 'latch_remember_tokens' ORDER BY m.name",
        )
        .fetch_all(pool)
        .await
        .expect("the table's indexes");
        (columns, indexes)
    }

    sql_tests!();

    /// `confirmed` holds 0 or 1; text there is an error, not a panic.
    #[tokio::test]
    async fn a_confirmed_that_is_not_an_integer_is_an_error() {
        run(open().await, |store, pool| async move {
            store
                .insert(&token(r#""user001""#, "sel-a", NOW))
                .await
                .unwrap();
            sqlx::query("UPDATE latch_remember_tokens SET confirmed = 'yes'")
                .execute(&pool)
                .await
                .unwrap();
            assert!(store.find("sel-a").await.is_err());
            assert!(store.list(r#""user001""#).await.is_err());
            assert!(store.revoke("sel-a").await.unwrap());
        })
        .await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use axum_latch::stores::PostgresStore;
    use sqlx::PgPool;

    /// A new schema `latch_test_<hex>` on the test kit's PostgreSQL
    /// (`TEST_POSTGRES_URL`, or a cluster it starts), dropped at the end;
    /// `None` (reported as skipped) when there is none.
    async fn open_with(connections: u32) -> Option<Fixture<PostgresStore, PgPool>> {
        let url = backend::postgres_url()?;
        let schema = backend::PgSchema::create(&url, connections).await;
        let pool = schema.pool.clone();
        let store = PostgresStore::new(pool.clone());
        let migrated = store.migrate().await;
        let cleanup: BoxFuture<'static, ()> = Box::pin(schema.drop_schema());
        if let Err(error) = migrated {
            cleanup.await;
            panic!("PostgresStore::migrate: {error}");
        }
        Some(Fixture {
            store,
            pool,
            cleanup,
        })
    }

    async fn open() -> Option<Fixture<PostgresStore, PgPool>> {
        open_with(2).await
    }

    async fn open_concurrent() -> Option<Fixture<PostgresStore, PgPool>> {
        open_with(10).await
    }

    /// The table and indexes as latch made them before `confirmed`.
    const OLD_SCHEMA: [&str; 3] = [
        "CREATE TABLE latch_remember_tokens (\
         selector TEXT COLLATE \"C\" NOT NULL PRIMARY KEY, validator_hash BYTEA NOT NULL, \
         previous_hash BYTEA, rotated_at BIGINT, user_id TEXT NOT NULL, \
         fingerprint TEXT NOT NULL, series TEXT NOT NULL UNIQUE, days BIGINT NOT NULL, \
         created_at BIGINT NOT NULL, last_used_at BIGINT NOT NULL, \
         expires_at BIGINT NOT NULL, device TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS latch_remember_tokens_user_id \
         ON latch_remember_tokens (user_id)",
        "CREATE INDEX IF NOT EXISTS latch_remember_tokens_expires_at \
         ON latch_remember_tokens (expires_at)",
    ];

    /// The table's columns (name, type, nullable, default, collation), in
    /// order, and its indexes (name and definition), by name, in the
    /// test's own schema.
    async fn shape(pool: &PgPool) -> (Vec<String>, Vec<String>) {
        let columns = sqlx::query_scalar(
            "SELECT column_name::text || ' ' || data_type::text || ' ' || \
             is_nullable::text || ' ' || coalesce(column_default::text, '-') || ' ' || \
             coalesce(collation_name::text, '-') \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'latch_remember_tokens' \
             ORDER BY ordinal_position",
        )
        .fetch_all(pool)
        .await
        .expect("the table's columns");
        let indexes = sqlx::query_scalar(
            "SELECT indexname::text || ' ' || indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = 'latch_remember_tokens' \
             ORDER BY indexname",
        )
        .fetch_all(pool)
        .await
        .expect("the table's indexes");
        (columns, indexes)
    }

    sql_tests!();

    /// A listener counting its wakes, on `store`, and the count.
    fn spawn_listener(
        store: &PostgresStore,
    ) -> (
        tokio::task::JoinHandle<Result<(), axum_latch::remember::StoreError>>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let wakes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let wake: axum_latch::registry::Wake = {
            let wakes = wakes.clone();
            std::sync::Arc::new(move || {
                wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        };
        use axum_latch::registry::SessionStore;
        let store = store.clone();
        (tokio::spawn(async move { store.listen(wake).await }), wakes)
    }

    /// Waits, up to 10 s, until `wakes` reaches `count`.
    async fn wait_for_wakes(wakes: &std::sync::atomic::AtomicUsize, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wakes.load(std::sync::atomic::Ordering::SeqCst) < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{count} wakes within 10 s, not {}",
                wakes.load(std::sync::atomic::Ordering::SeqCst)
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn an_ending() -> Ending {
        Ending::User {
            user_id: r#""user001""#.to_owned(),
            not_before: NOW,
            except: None,
            until: NOW + DAY,
        }
    }

    /// `LISTEN` channels are database-wide: a store in another schema of
    /// the same database notifies the same channel, but its endings do not
    /// wake this store's listener; this store's own do.
    #[tokio::test]
    async fn listen_wakes_only_for_endings_in_its_own_schema() {
        run(open().await, |store, _| async move {
            use axum_latch::registry::SessionStore;
            let url = backend::postgres_url().expect("the fixture had one");
            let elsewhere = backend::PgSchema::create(&url, 2).await;
            let neighbour = PostgresStore::new(elsewhere.pool.clone());
            let test = async {
                neighbour.migrate().await.unwrap();
                let (listener, wakes) = spawn_listener(&store);
                // Once listening, it wakes once for what it may have missed.
                wait_for_wakes(&wakes, 1).await;
                for _ in 0..3 {
                    neighbour.end(&an_ending()).await.unwrap();
                }
                store.end(&an_ending()).await.unwrap();
                // Notifications arrive in commit order: the neighbour's
                // came before this one.
                wait_for_wakes(&wakes, 2).await;
                assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 2);
                assert!(!listener.is_finished());
                listener.abort();
            };
            backend::run_then_clean(test, elsewhere.drop_schema()).await;
        })
        .await;
    }

    /// When its connection fails, `listen` returns the error (the registry
    /// then catches up and listens again) rather than hanging.
    #[tokio::test]
    async fn listen_returns_an_error_when_its_connection_fails() {
        run(open().await, |_, pool| async move {
            use sqlx::postgres::PgPoolOptions;
            let options = (*pool.connect_options()).clone();
            let upstream = (options.get_host().to_owned(), options.get_port());
            let mut proxy = crate::support::outage::Proxy::start(upstream, 0).await;
            let through = PgPoolOptions::new()
                .max_connections(2)
                .connect_with(options.host("127.0.0.1").port(proxy.port))
                .await
                .expect("a pool through the proxy");
            let store = PostgresStore::new(through.clone());
            let (listener, wakes) = spawn_listener(&store);
            wait_for_wakes(&wakes, 1).await;
            proxy.stop().await;
            let ended = tokio::time::timeout(std::time::Duration::from_secs(10), listener)
                .await
                .expect("listen returns within 10 s of the outage")
                .expect("the listener did not panic");
            assert!(ended.is_err(), "listen returns an error: {ended:?}");
            through.close().await;
        })
        .await;
    }
}
