//! Remember-me stores in SQLite and PostgreSQL, through `sqlx`: one table,
//! `latch_remember_tokens`, that each store's `migrate` creates.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::remember::{RememberStore, Rotation, StoreError, StoredToken};

// ---------------------------------------------------------------------------
// SQL, shared by both databases (SQLite takes `$1`-style placeholders too)
// ---------------------------------------------------------------------------

/// The schema, in the order `migrate` runs it. The databases differ only in
/// their names for bytes, 64-bit integers and booleans, and in how the
/// selector compares (byte order, so that ties in `list` break as in
/// `MemoryStore`).
///
/// `rotated_at` holds milliseconds since the Unix epoch (`rotated_at_ms`).
/// Rows written before it did hold seconds, which read as a moment in
/// January 1970: long past, so such a token's previous validator is out of
/// the grace window and, unconfirmed (`confirmed` is added as false), gets
/// a new validator when presented rather than being judged theft. Harmless.
///
/// `confirmed` comes last, where `migrate` adds it to a table made before
/// it existed, so that new and upgraded tables have the same columns.
struct Schema {
    /// The table and its indexes.
    create: [&'static str; 3],
    /// The definition of the `confirmed` column, for `ALTER TABLE`.
    confirmed: &'static str,
}

#[rustfmt::skip]
macro_rules! schema {
    (bytes = $bytes:literal, integer = $integer:literal, boolean = $boolean:literal, key = $key:literal) => {
        Schema { create: [
            concat!(
                "CREATE TABLE IF NOT EXISTS latch_remember_tokens (",
                    "selector ",       $key,     " NOT NULL PRIMARY KEY, ",
                    "validator_hash ", $bytes,   " NOT NULL, ",
                    "previous_hash ",  $bytes,   ", ",
                    "rotated_at ",     $integer, ", ",
                    "user_id TEXT NOT NULL, ",
                    "fingerprint TEXT NOT NULL, ",
                    "series TEXT NOT NULL UNIQUE, ",
                    "days ",           $integer, " NOT NULL, ",
                    "created_at ",     $integer, " NOT NULL, ",
                    "last_used_at ",   $integer, " NOT NULL, ",
                    "expires_at ",     $integer, " NOT NULL, ",
                    "device TEXT NOT NULL, ",
                    "confirmed ",      $boolean,
                ")"
            ),
            "CREATE INDEX IF NOT EXISTS latch_remember_tokens_user_id \
             ON latch_remember_tokens (user_id)",
            "CREATE INDEX IF NOT EXISTS latch_remember_tokens_expires_at \
             ON latch_remember_tokens (expires_at)",
        ], confirmed: concat!("confirmed ", $boolean) }
    };
}

#[cfg(feature = "sqlite")]
const SQLITE_SCHEMA: Schema = schema!(
    bytes = "BLOB",
    integer = "INTEGER",
    boolean = "INTEGER NOT NULL DEFAULT 0",
    key = "TEXT"
);

#[cfg(feature = "postgres")]
const POSTGRES_SCHEMA: Schema = schema!(
    bytes = "BYTEA",
    integer = "BIGINT",
    boolean = "BOOLEAN NOT NULL DEFAULT FALSE",
    key = "TEXT COLLATE \"C\""
);

/// Every column, in the order `decode` reads and `ISSUE` binds them.
macro_rules! columns {
    () => {
        "selector, validator_hash, previous_hash, rotated_at, user_id, fingerprint, \
         series, days, created_at, last_used_at, expires_at, device, confirmed"
    };
}

/// A new token, or a replacement of the token with the same selector (as
/// `MemoryStore::issue` does). A series that another token has is an error.
const ISSUE: &str = concat!(
    "INSERT INTO latch_remember_tokens (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (selector) DO UPDATE SET \
     validator_hash = excluded.validator_hash, previous_hash = excluded.previous_hash, \
     rotated_at = excluded.rotated_at, user_id = excluded.user_id, \
     fingerprint = excluded.fingerprint, series = excluded.series, days = excluded.days, \
     created_at = excluded.created_at, last_used_at = excluded.last_used_at, \
     expires_at = excluded.expires_at, device = excluded.device, \
     confirmed = excluded.confirmed"
);

const FIND: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM latch_remember_tokens WHERE selector = $1"
);

/// The compare-and-swap, in one statement: of concurrent rotations from the
/// same hash, the first to update the row changes `validator_hash`, and the
/// others then no longer match the `WHERE`. (`FALSE` and `TRUE` are 0 and 1
/// in SQLite.)
const ROTATE: &str = "UPDATE latch_remember_tokens \
     SET previous_hash = $3, validator_hash = $4, rotated_at = $5, \
     last_used_at = $6, expires_at = $7, confirmed = FALSE \
     WHERE selector = $1 AND validator_hash = $2 AND confirmed = $8";

/// Confirms the current validator, in one statement, only if it still is.
const CONFIRM: &str = "UPDATE latch_remember_tokens SET confirmed = TRUE \
     WHERE selector = $1 AND validator_hash = $2";

const REVOKE: &str = "DELETE FROM latch_remember_tokens WHERE selector = $1";

const REVOKE_SERIES: &str = "DELETE FROM latch_remember_tokens WHERE user_id = $1 AND series = $2";

const REVOKE_USER: &str = "DELETE FROM latch_remember_tokens WHERE user_id = $1";

/// Most recently used first; ties by selector, as `MemoryStore` orders them.
const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM latch_remember_tokens WHERE user_id = $1 ORDER BY last_used_at DESC, selector"
);

const PURGE_EXPIRED: &str = "DELETE FROM latch_remember_tokens WHERE expires_at <= $1";

// ---------------------------------------------------------------------------
// Rows and values
// ---------------------------------------------------------------------------

/// A row of `FIND` or `LIST` as a token. A value out of range (a hash that
/// is not 32 bytes, a negative time) is an error.
fn decode<'r, R>(row: &'r R) -> Result<StoredToken, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r [u8]: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let hash = |name: &'static str| to_hash(column(row, name)?, name);
    let time = |name: &'static str| from_db(column(row, name)?, name);
    Ok(StoredToken {
        selector: column(row, "selector")?,
        validator_hash: hash("validator_hash")?,
        previous_hash: column::<_, Option<&[u8]>>(row, "previous_hash")?
            .map(|bytes| to_hash(bytes, "previous_hash"))
            .transpose()?,
        rotated_at_ms: column::<_, Option<i64>>(row, "rotated_at")?
            .map(|at| from_db(at, "rotated_at"))
            .transpose()?,
        confirmed: column(row, "confirmed")?,
        user_id: column(row, "user_id")?,
        fingerprint: column(row, "fingerprint")?,
        series: column(row, "series")?,
        days: from_db(column(row, "days")?, "days")?,
        created_at: time("created_at")?,
        last_used_at: time("last_used_at")?,
        expires_at: time("expires_at")?,
        device: column(row, "device")?,
    })
}

fn column<'r, R, T>(row: &'r R, name: &'static str) -> Result<T, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(name).map_err(StoreError::new)
}

fn to_hash(bytes: &[u8], name: &str) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::new(format!(
            "latch_remember_tokens.{name} holds {} bytes, not 32",
            bytes.len()
        ))
    })
}

fn from_db<T: TryFrom<i64>>(value: i64, name: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| {
        StoreError::new(format!(
            "latch_remember_tokens.{name} holds {value}, which is out of range"
        ))
    })
}

/// A time for a 64-bit signed column. Real times are far below `i64::MAX`;
/// one above it is refused rather than wrapped or clamped.
fn to_db(value: u64, name: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::new(format!(
            "{name} {value} does not fit in latch_remember_tokens (at most i64::MAX)"
        ))
    })
}

// ---------------------------------------------------------------------------
// The stores
// ---------------------------------------------------------------------------

/// The store type over a `sqlx` pool, its `new` and its [`RememberStore`]
/// impl; `migrate` is written for each database.
macro_rules! sql_store {
    ($(#[$doc:meta])* $name:ident($pool:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: $pool,
        }

        impl $name {
            /// A store on `pool`; clones share it. Call
            /// [`migrate`](Self::migrate) once at start-up, before the
            /// store is used.
            pub fn new(pool: $pool) -> Self {
                Self { pool }
            }
        }

        impl RememberStore for $name {
            async fn insert(&self, token: &StoredToken) -> Result<(), StoreError> {
                sqlx::query(ISSUE)
                    .bind(&token.selector)
                    .bind(&token.validator_hash[..])
                    .bind(token.previous_hash.as_ref().map(|hash| &hash[..]))
                    .bind(token.rotated_at_ms.map(|at| to_db(at, "rotated_at_ms")).transpose()?)
                    .bind(&token.user_id)
                    .bind(&token.fingerprint)
                    .bind(&token.series)
                    .bind(i64::from(token.days))
                    .bind(to_db(token.created_at, "created_at")?)
                    .bind(to_db(token.last_used_at, "last_used_at")?)
                    .bind(to_db(token.expires_at, "expires_at")?)
                    .bind(&token.device)
                    .bind(token.confirmed)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                Ok(())
            }

            async fn find(&self, selector: &str) -> Result<Option<StoredToken>, StoreError> {
                let row = sqlx::query(FIND)
                    .bind(selector)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                row.as_ref().map(|row| decode(row)).transpose()
            }

            async fn rotate(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
                let done = sqlx::query(ROTATE)
                    .bind(rotation.selector)
                    .bind(&rotation.expected[..])
                    .bind(&rotation.previous[..])
                    .bind(&rotation.replacement[..])
                    .bind(to_db(rotation.rotated_at_ms, "rotated_at_ms")?)
                    .bind(to_db(rotation.now, "now")?)
                    .bind(to_db(rotation.expires_at, "expires_at")?)
                    .bind(rotation.confirmed)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                Ok(done.rows_affected() == 1)
            }

            async fn confirm(&self, selector: &str, current: &[u8; 32]) -> Result<bool, StoreError> {
                let done = sqlx::query(CONFIRM)
                    .bind(selector)
                    .bind(&current[..])
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke(&self, selector: &str) -> Result<bool, StoreError> {
                let done = sqlx::query(REVOKE)
                    .bind(selector)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_series(&self, user_id: &str, series: &str) -> Result<bool, StoreError> {
                let done = sqlx::query(REVOKE_SERIES)
                    .bind(user_id)
                    .bind(series)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_user(&self, user_id: &str) -> Result<u64, StoreError> {
                let done = sqlx::query(REVOKE_USER)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                Ok(done.rows_affected())
            }

            async fn list(&self, user_id: &str) -> Result<Vec<StoredToken>, StoreError> {
                let rows = sqlx::query(LIST)
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                rows.iter().map(|row| decode(row)).collect()
            }

            async fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
                // Every stored time is at most i64::MAX, so clamping `now`
                // deletes exactly the tokens expired at `now`.
                let now = i64::try_from(now).unwrap_or(i64::MAX);
                let done = sqlx::query(PURGE_EXPIRED)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                Ok(done.rows_affected())
            }
        }
    };
}

#[cfg(feature = "sqlite")]
sql_store! {
    /// Remember-me tokens in SQLite, in the table `latch_remember_tokens`.
    ///
    /// ```no_run
    /// use axum_latch::{stores::SqliteStore, Login, User};
    /// use axum_latch::remember::RevocableRemember;
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load_user(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::SqlitePool::connect("sqlite://app.db?mode=rwc").await?;
    /// let store = SqliteStore::new(pool);
    /// store.migrate().await?;
    /// let tokens = RevocableRemember::new(store);
    /// // Deletes expired tokens every hour (they are refused at once anyway).
    /// tokens.spawn_purge(std::time::Duration::from_secs(60 * 60));
    /// let login = Login::new(load_user).remember_tokens(tokens);
    /// # Ok(()) }
    /// ```
    ///
    /// Expired tokens are refused as soon as they expire, but their rows stay
    /// in the table until [`RevocableRemember::spawn_purge`](crate::remember::RevocableRemember::spawn_purge)
    /// (or a call of `purge_expired`) deletes them: without it, the table
    /// keeps every token ever issued that was not revoked.
    SqliteStore(sqlx::SqlitePool)
}

#[cfg(feature = "sqlite")]
impl SqliteStore {
    /// Creates the `latch_remember_tokens` table and its indexes unless they
    /// exist, and adds the columns that a table made by an earlier version
    /// of latch lacks (`confirmed`). It is idempotent, so the app can call
    /// it on every start, from several processes at once. It does not use
    /// sqlx's migrator, whose `_sqlx_migrations` table belongs to the app's
    /// own migrations.
    ///
    /// ```no_run
    /// use axum_latch::stores::SqliteStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = SqliteStore::new(sqlx::SqlitePool::connect("sqlite://app.db?mode=rwc").await?);
    /// store.migrate().await?; // on every start: it is idempotent
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // Each statement commits on its own, and SQLite runs writes one at
        // a time: a process starting alongside sees the other's table.
        for statement in SQLITE_SCHEMA.create {
            sqlx::query(statement)
                .persistent(false)
                .execute(&self.pool)
                .await
                .map_err(StoreError::new)?;
        }
        // SQLite has no `ADD COLUMN IF NOT EXISTS`: look first. Another
        // process may add the column between the look and the `ALTER`,
        // which then fails; a second look tells that from a real failure.
        if !self.has_column("confirmed").await? {
            let alter = format!(
                "ALTER TABLE latch_remember_tokens ADD COLUMN {}",
                SQLITE_SCHEMA.confirmed
            );
            let added = sqlx::query(&alter)
                .persistent(false)
                .execute(&self.pool)
                .await;
            if let Err(error) = added {
                if !self.has_column("confirmed").await? {
                    return Err(StoreError::new(error));
                }
            }
        }
        Ok(())
    }

    async fn has_column(&self, name: &str) -> Result<bool, StoreError> {
        let found: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('latch_remember_tokens') WHERE name = $1",
        )
        .bind(name)
        .persistent(false)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::new)?;
        Ok(found > 0)
    }
}

#[cfg(feature = "postgres")]
sql_store! {
    /// Remember-me tokens in PostgreSQL, in the table `latch_remember_tokens`
    /// of the connection's `search_path` (usually `public`).
    ///
    /// ```no_run
    /// use axum_latch::{stores::PostgresStore, Login, User};
    /// use axum_latch::remember::RevocableRemember;
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load_user(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = sqlx::PgPool::connect("postgres://app@localhost/app").await?;
    /// let store = PostgresStore::new(pool);
    /// store.migrate().await?;
    /// let tokens = RevocableRemember::new(store);
    /// // Deletes expired tokens every hour (they are refused at once anyway).
    /// tokens.spawn_purge(std::time::Duration::from_secs(60 * 60));
    /// let login = Login::new(load_user).remember_tokens(tokens);
    /// # Ok(()) }
    /// ```
    ///
    /// Expired tokens are refused as soon as they expire, but their rows stay
    /// in the table until [`RevocableRemember::spawn_purge`](crate::remember::RevocableRemember::spawn_purge)
    /// (or a call of `purge_expired`) deletes them: without it, the table
    /// keeps every token ever issued that was not revoked.
    PostgresStore(sqlx::PgPool)
}

#[cfg(feature = "postgres")]
impl PostgresStore {
    /// Creates the `latch_remember_tokens` table and its indexes unless they
    /// exist, and adds the columns that a table made by an earlier version
    /// of latch lacks (`confirmed`), in one transaction. It is idempotent
    /// (`IF NOT EXISTS`), so the app can call it on every start, from
    /// several instances at once. It does not use sqlx's migrator, whose
    /// `_sqlx_migrations` table belongs to the app's own migrations.
    ///
    /// ```no_run
    /// use axum_latch::stores::PostgresStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PostgresStore::new(sqlx::PgPool::connect("postgres://app@localhost/app").await?);
    /// store.migrate().await?; // on every start: it is idempotent
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::new)?;
        // Two concurrent `CREATE TABLE IF NOT EXISTS` can both find no table
        // and one then fails on a catalog constraint: take turns. And no
        // "already exists, skipping" notice in the logs on every start.
        let setup = [
            "SELECT pg_advisory_xact_lock(hashtext('latch_remember_tokens'))",
            "SET LOCAL client_min_messages = warning",
        ];
        let upgrade = format!(
            "ALTER TABLE latch_remember_tokens ADD COLUMN IF NOT EXISTS {}",
            POSTGRES_SCHEMA.confirmed
        );
        let statements = setup
            .into_iter()
            .chain(POSTGRES_SCHEMA.create)
            .chain([upgrade.as_str()]);
        for statement in statements {
            sqlx::query(statement)
                .persistent(false)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::new)?;
        }
        tx.commit().await.map_err(StoreError::new)
    }
}

// ---------------------------------------------------------------------------
// Tests: SQL matters and a round trip; tests/remember/store.rs has the
// contract every store keeps.
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::BoxFuture;
    use std::future::Future;
    use std::sync::Arc;

    /// The test kit's backend runner, shared with the integration tests.
    #[allow(dead_code)]
    mod backend {
        include!("../../tests/support/backend.rs");
    }

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

    fn selectors(tokens: &[StoredToken]) -> Vec<&str> {
        tokens.iter().map(|t| t.selector.as_str()).collect()
    }

    /// The tests, once per database; `open` and `open_concurrent` (a pool
    /// of several connections) make a fixture of a new, migrated database.
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
            async fn every_field_round_trips_and_issue_replaces_a_selector() {
                run(open().await, |store, _| async move {
                    let full = StoredToken {
                        selector: "sel-full".to_owned(),
                        validator_hash: [0xfe; 32],
                        previous_hash: Some([0; 32]),
                        rotated_at_ms: Some((NOW + 1) * 1000 + 999),
                        confirmed: true,
                        user_id: "42".to_owned(),
                        fingerprint: "AAECAwQFBgcICQoLDA0ODw".to_owned(),
                        series: "series-full".to_owned(),
                        days: u32::MAX,
                        created_at: 0,
                        last_used_at: NOW + 1,
                        expires_at: i64::MAX as u64,
                        device: "Safari on iPhone — ünïcode ✓".to_owned(),
                    };
                    let bare = token(r#""user001""#, "sel-bare", NOW);
                    store.insert(&full).await.unwrap();
                    store.insert(&bare).await.unwrap();
                    assert_eq!(store.find("sel-full").await.unwrap(), Some(full.clone()));
                    assert_eq!(store.find("sel-bare").await.unwrap(), Some(bare.clone()));
                    assert_eq!(store.find("sel-none").await.unwrap(), None);
                    assert_eq!(store.list("42").await.unwrap(), vec![full.clone()]);

                    // Issuing a selector again replaces its token, as in memory.
                    let again = StoredToken {
                        user_id: "43".to_owned(),
                        validator_hash: [7; 32],
                        previous_hash: None,
                        rotated_at_ms: None,
                        confirmed: false,
                        ..full.clone()
                    };
                    store.insert(&again).await.unwrap();
                    assert_eq!(store.find("sel-full").await.unwrap(), Some(again.clone()));
                    assert_eq!(store.list("42").await.unwrap(), vec![]);
                    assert_eq!(store.list("43").await.unwrap(), vec![again]);
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

            #[tokio::test]
            async fn rotate_is_a_compare_and_swap() {
                run(open().await, |store, _| async move {
                    let stored = token(r#""user001""#, "sel-a", NOW);
                    store.insert(&stored).await.unwrap();
                    // Read as confirmed: it is, once `confirm` below has run.
                    let rotation = |selector, expected| Rotation {
                        selector,
                        expected,
                        confirmed: true,
                        previous: expected,
                        replacement: &[2; 32],
                        now: NOW + 60,
                        rotated_at_ms: (NOW + 60) * 1000 + 5,
                        expires_at: NOW + 60 + DAY,
                    };
                    assert!(!store.rotate(&rotation("sel-a", &[9; 32])).await.unwrap());
                    assert!(!store.rotate(&rotation("sel-x", &[1; 32])).await.unwrap());
                    assert_eq!(store.find("sel-a").await.unwrap().as_ref(), Some(&stored));

                    assert!(store.confirm("sel-a", &[1; 32]).await.unwrap());
                    assert!(store.rotate(&rotation("sel-a", &[1; 32])).await.unwrap());
                    let rotated = StoredToken {
                        validator_hash: [2; 32],
                        previous_hash: Some([1; 32]),
                        rotated_at_ms: Some((NOW + 60) * 1000 + 5),
                        confirmed: false,
                        last_used_at: NOW + 60,
                        expires_at: NOW + 60 + DAY,
                        ..stored
                    };
                    assert_eq!(store.find("sel-a").await.unwrap(), Some(rotated.clone()));
                    // The old hash no longer swaps.
                    assert!(!store.rotate(&rotation("sel-a", &[1; 32])).await.unwrap());
                    assert_eq!(store.find("sel-a").await.unwrap(), Some(rotated));
                })
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_rotations_swap_exactly_once() {
                run(open_concurrent().await, |store, _| async move {
                    let stored = token(r#""user001""#, "sel-a", NOW);
                    store.insert(&stored).await.unwrap();
                    let barrier = Arc::new(tokio::sync::Barrier::new(100));
                    // Replacements 2..102: none is the expected validator,
                    // so a swap always takes the row out of the others' reach.
                    let tasks: Vec<_> = (2..102u8)
                        .map(|i| {
                            let store = store.clone();
                            let barrier = barrier.clone();
                            tokio::spawn(async move {
                                barrier.wait().await;
                                let rotation = Rotation {
                                    selector: "sel-a",
                                    expected: &[1; 32],
                                    confirmed: false,
                                    previous: &[1; 32],
                                    replacement: &[i; 32],
                                    now: NOW + 1,
                                    rotated_at_ms: (NOW + 1) * 1000,
                                    expires_at: NOW + DAY,
                                };
                                (i, store.rotate(&rotation).await)
                            })
                        })
                        .collect();
                    let mut swapped = Vec::new();
                    for task in tasks {
                        let (i, result) = task.await.unwrap();
                        if result.expect("a concurrent rotation failed") {
                            swapped.push(i);
                        }
                    }
                    assert_eq!(swapped.len(), 1, "exactly one swap: {swapped:?}");
                    let after = store.find("sel-a").await.unwrap().unwrap();
                    assert_eq!(after.validator_hash, [swapped[0]; 32]);
                    assert_eq!(after.previous_hash, Some([1; 32]));
                })
                .await;
            }

            #[tokio::test]
            async fn list_orders_and_deletes_match_only_their_rows() {
                run(open().await, |store, _| async move {
                    let susan = r#""user001""#;
                    let david = r#""user002""#;
                    // Ties in last_used_at go by selector, in byte order.
                    for stored in [
                        token(susan, "sel-b", NOW + 10),
                        token(susan, "sel-a", NOW + 30),
                        token(susan, "sel-c", NOW + 10),
                        token(susan, "sel-B", NOW + 10),
                        token(david, "sel-d", NOW + 20),
                    ] {
                        store.insert(&stored).await.unwrap();
                    }
                    let listed = store.list(susan).await.unwrap();
                    assert_eq!(selectors(&listed), ["sel-a", "sel-B", "sel-b", "sel-c"]);
                    assert_eq!(store.list("nobody").await.unwrap(), vec![]);

                    assert!(store.revoke("sel-c").await.unwrap());
                    assert!(!store.revoke("sel-c").await.unwrap());
                    assert!(!store.revoke_series(david, "series-sel-b").await.unwrap());
                    assert!(!store.revoke_series(susan, "series-sel-d").await.unwrap());
                    assert!(store.revoke_series(susan, "series-sel-b").await.unwrap());
                    assert!(!store.revoke_series(susan, "series-sel-b").await.unwrap());
                    assert_eq!(selectors(&store.list(susan).await.unwrap()), ["sel-a", "sel-B"]);

                    // Expiry: NOW + 10 + 30 days for sel-B, + 30 for sel-a.
                    let expiry_b = NOW + 10 + 30 * DAY;
                    assert_eq!(store.purge_expired(expiry_b - 1).await.unwrap(), 0);
                    assert_eq!(store.purge_expired(expiry_b).await.unwrap(), 1);
                    assert_eq!(store.find("sel-B").await.unwrap(), None);
                    assert_eq!(selectors(&store.list(susan).await.unwrap()), ["sel-a"]);

                    assert_eq!(store.revoke_user(susan).await.unwrap(), 1);
                    assert_eq!(store.revoke_user(susan).await.unwrap(), 0);
                    assert_eq!(selectors(&store.list(david).await.unwrap()), ["sel-d"]);
                })
                .await;
            }

            /// A table made before `confirmed` existed, holding a token
            /// rotated back then (`rotated_at` in seconds): instances that
            /// start at once all migrate it, the column is added as false,
            /// and the token's previous validator gets a new one instead of
            /// counting as theft.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn migrate_upgrades_a_table_made_before_confirmed() {
                run(open_concurrent().await, |store, pool| async move {
                    use crate::remember::revocable::{Consumed, RevocableRemember};
                    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
                    use base64::Engine as _;
                    use sha2::{Digest, Sha256};

                    sqlx::query("DROP TABLE latch_remember_tokens")
                        .execute(&pool)
                        .await
                        .unwrap();
                    let schema = schema();
                    let old_table = schema.create[0].replace(&format!(", {}", schema.confirmed), "");
                    assert!(!old_table.contains("confirmed"), "{old_table}");
                    for statement in [old_table.as_str(), schema.create[1], schema.create[2]] {
                        sqlx::query(statement).execute(&pool).await.unwrap();
                    }
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
                        task.await.unwrap().expect("a concurrent migrate of an old table");
                    }
                    store.migrate().await.expect("migrate once more");
                    let found = store.find(&selector).await.unwrap().expect("the old token");
                    assert!(!found.confirmed, "added as false");
                    assert_eq!(found.rotated_at_ms, Some(NOW), "seconds, read as milliseconds");
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
                    sqlx::query("DROP TABLE latch_remember_tokens")
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
                        task.await.unwrap().expect("a concurrent migrate");
                    }
                    let stored = token(r#""user001""#, "sel-a", NOW);
                    store.insert(&stored).await.unwrap();
                    assert_eq!(store.find("sel-a").await.unwrap(), Some(stored));
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
        };
    }

    #[cfg(feature = "sqlite")]
    mod sqlite {
        use super::*;
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

        fn schema() -> &'static Schema {
            &SQLITE_SCHEMA
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
        use sqlx::PgPool;

        /// A new schema `latch_test_<hex>` on the test kit's PostgreSQL
        /// (`TEST_POSTGRES_URL`, or a cluster it starts), dropped at the
        /// end; `None` (reported as skipped) when there is none.
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

        fn schema() -> &'static Schema {
            &POSTGRES_SCHEMA
        }

        sql_tests!();
    }
}
