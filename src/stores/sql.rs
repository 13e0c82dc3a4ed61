//! The SQLite and PostgreSQL stores, through `sqlx`: remember-me tokens in
//! the table `latch_remember_tokens` (here), and a session registry's
//! records and change feed in `latch_sessions` and `latch_session_endings`
//! (in `sql_sessions.rs`). Each store's `migrate` creates all three.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::remember::{RememberStore, Rotation, StoreError, StoredToken};
use crate::stores::sql_column::column;
#[cfg(feature = "postgres")]
use crate::stores::sql_sessions::POSTGRES_SESSION_SCHEMA;
#[cfg(feature = "sqlite")]
use crate::stores::sql_sessions::SQLITE_SESSION_SCHEMA;

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
            pub(super) pool: $pool,
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
    /// Remember-me tokens in SQLite, in the table `latch_remember_tokens`,
    /// and a [session registry](crate::registry)'s records and change feed
    /// ([`SessionStore`](crate::registry::SessionStore)), in
    /// `latch_sessions` and `latch_session_endings`. SQLite has no way to
    /// push changes, so registries poll it for endings made elsewhere
    /// ([`poll_every`](crate::registry::RegistryBuilder::poll_every)).
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
    /// keeps every token ever issued that was not revoked. A session
    /// registry purges its own tables.
    ///
    /// # Tables
    ///
    /// `migrate` creates them; they are latch's to change, not the app's.
    ///
    /// - `latch_remember_tokens`: one row per remember-me token.
    /// - `latch_sessions`: one row per logged-in browser, keyed by
    ///   `session_id`: `user_id` (JSON text), `device`, `created_at`,
    ///   `last_active_at`, `expires_at`, `remembered`, and `ended`, set when
    ///   the session is ended (the row stays until it expires, so that it is
    ///   not recorded again).
    /// - `latch_session_endings`: the change feed, one row per ending, in
    ///   the order of `seq` (never reused): `kind` (`session` or `user`),
    ///   `user_id`, `session_id`, `not_before`, `except_session_id`, and
    ///   `until`, after which the row may be deleted.
    ///
    /// Times are seconds since the Unix epoch (milliseconds for
    /// `latch_remember_tokens.rotated_at`), in 64-bit integer columns.
    SqliteStore(sqlx::SqlitePool)
}

#[cfg(feature = "sqlite")]
impl SqliteStore {
    /// Creates the `latch_remember_tokens`, `latch_sessions` and
    /// `latch_session_endings` tables and their indexes unless they exist,
    /// and adds the columns that a table made by an earlier version of latch
    /// lacks (`confirmed`). It is idempotent, so the app can call
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
        for statement in SQLITE_SCHEMA
            .create
            .into_iter()
            .chain(SQLITE_SESSION_SCHEMA)
        {
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
    /// of the connection's `search_path` (usually `public`), and a [session
    /// registry](crate::registry)'s records and change feed
    /// ([`SessionStore`](crate::registry::SessionStore)), in
    /// `latch_sessions` and `latch_session_endings` of the same schema.
    /// Registries hear of endings made elsewhere at once, through `LISTEN`
    /// on the channel `latch_sessions` (each registry holds one connection
    /// of the pool for it); the payload, the oid of the schema's
    /// `latch_session_endings`, keeps stores in different schemas of one
    /// database apart.
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
    /// keeps every token ever issued that was not revoked. A session
    /// registry purges its own tables.
    ///
    /// # Tables
    ///
    /// `migrate` creates them; they are latch's to change, not the app's.
    ///
    /// - `latch_remember_tokens`: one row per remember-me token.
    /// - `latch_sessions`: one row per logged-in browser, keyed by
    ///   `session_id`: `user_id` (JSON text), `device`, `created_at`,
    ///   `last_active_at`, `expires_at`, `remembered`, and `ended`, set when
    ///   the session is ended (the row stays until it expires, so that it is
    ///   not recorded again).
    /// - `latch_session_endings`: the change feed, one row per ending, in
    ///   the order of `seq` (never reused): `kind` (`session` or `user`),
    ///   `user_id`, `session_id`, `not_before`, `except_session_id`, and
    ///   `until`, after which the row may be deleted.
    ///
    /// Times are seconds since the Unix epoch (milliseconds for
    /// `latch_remember_tokens.rotated_at`), in 64-bit integer columns.
    PostgresStore(sqlx::PgPool)
}

#[cfg(feature = "postgres")]
impl PostgresStore {
    /// Creates the `latch_remember_tokens`, `latch_sessions` and
    /// `latch_session_endings` tables and their indexes unless they exist,
    /// and adds the columns that a table made by an earlier version of latch
    /// lacks (`confirmed`), in one transaction. It is idempotent
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
            .chain([upgrade.as_str()])
            .chain(POSTGRES_SESSION_SCHEMA);
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

// The tests are in tests/remember/: store.rs and session_store.rs for the
// contracts every store keeps, sql_store.rs for what is particular to SQL
// (migrations, times out of range, corrupted rows).
