//! The session registry's records and change feed in SQLite and PostgreSQL,
//! for [`SqliteStore`] and [`PostgresStore`]: two tables that `migrate` creates.
//!
//! - `latch_sessions`: one row per session (`session_id` is the key), with
//!   `user_id`, `device`, `created_at`, `last_active_at`, `expires_at`,
//!   `remembered`, and `ended`, set once the session has been ended (the row
//!   stays, so that a late `save` cannot record it again, until it expires).
//! - `latch_session_endings`: the change feed, one row per ending, numbered
//!   by `seq` (never reused, even once purged), with `kind` (`session` or
//!   `user`), `user_id`, `session_id` (of a `session` ending),
//!   `not_before` and `except_session_id` (of a `user` ending) and `until`.
//!
//! Times are seconds since the Unix epoch in 64-bit signed columns; a time
//! past `i64::MAX` is written as `i64::MAX` (the end of time, as far as a
//! session is concerned).

#[cfg(feature = "postgres")]
use crate::stores::PostgresStore;
#[cfg(feature = "sqlite")]
use crate::stores::SqliteStore;
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::registry::{Change, Ending, SessionRecord, SessionStore};
use crate::remember::StoreError;
use crate::stores::sql_column::column;

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// The registry's tables and indexes, in the order `migrate` creates them.
/// The databases differ in their names for 64-bit integers and booleans,
/// in how session ids compare (byte order, so that ties in `list` break as
/// in `MemoryStore`), and in how `seq` is numbered.
#[rustfmt::skip]
macro_rules! session_schema {
    (integer = $integer:literal, boolean = $boolean:literal, key = $key:literal, seq = $seq:literal) => {
        [
            concat!(
                "CREATE TABLE IF NOT EXISTS latch_sessions (",
                    "session_id ",     $key,     " NOT NULL PRIMARY KEY, ",
                    "user_id TEXT NOT NULL, ",
                    "device TEXT NOT NULL, ",
                    "created_at ",     $integer, " NOT NULL, ",
                    "last_active_at ", $integer, " NOT NULL, ",
                    "expires_at ",     $integer, " NOT NULL, ",
                    "remembered ",     $boolean, " NOT NULL, ",
                    "ended ",          $boolean, " NOT NULL",
                ")"
            ),
            "CREATE INDEX IF NOT EXISTS latch_sessions_user_id ON latch_sessions (user_id)",
            "CREATE INDEX IF NOT EXISTS latch_sessions_expires_at ON latch_sessions (expires_at)",
            concat!(
                "CREATE TABLE IF NOT EXISTS latch_session_endings (",
                    "seq ",            $seq,     ", ",
                    "kind TEXT NOT NULL, ",
                    "user_id TEXT NOT NULL, ",
                    "session_id TEXT, ",
                    "not_before ",     $integer, ", ",
                    "except_session_id TEXT, ",
                    "until ",          $integer, " NOT NULL",
                ")"
            ),
            "CREATE INDEX IF NOT EXISTS latch_session_endings_until \
             ON latch_session_endings (until)",
        ]
    };
}

/// SQLite's `AUTOINCREMENT` never hands out a rowid again, even once every
/// row is deleted: `seq` only grows.
#[cfg(feature = "sqlite")]
pub(super) const SQLITE_SESSION_SCHEMA: [&str; 5] = session_schema!(
    integer = "INTEGER",
    boolean = "INTEGER",
    key = "TEXT",
    seq = "INTEGER PRIMARY KEY AUTOINCREMENT"
);

#[cfg(feature = "postgres")]
pub(super) const POSTGRES_SESSION_SCHEMA: [&str; 5] = session_schema!(
    integer = "BIGINT",
    boolean = "BOOLEAN",
    key = "TEXT COLLATE \"C\"",
    seq = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
);

// ---------------------------------------------------------------------------
// SQL, shared by both databases
// ---------------------------------------------------------------------------

/// A new record, or the new state of a recorded one: all but `created_at`,
/// and nothing once it has ended.
const SAVE: &str = "INSERT INTO latch_sessions \
     (session_id, user_id, device, created_at, last_active_at, expires_at, remembered, ended) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE) \
     ON CONFLICT (session_id) DO UPDATE SET \
     user_id = excluded.user_id, device = excluded.device, \
     last_active_at = excluded.last_active_at, expires_at = excluded.expires_at, \
     remembered = excluded.remembered \
     WHERE latch_sessions.ended = FALSE";

const TOUCH: &str = "UPDATE latch_sessions SET last_active_at = $2 \
     WHERE session_id = $1 AND ended = FALSE AND last_active_at < $2";

/// Most recently active first; ties by session id, as `MemoryStore` orders them.
const LIST: &str = "SELECT session_id, user_id, device, created_at, last_active_at, \
     expires_at, remembered FROM latch_sessions \
     WHERE user_id = $1 AND ended = FALSE AND expires_at > $2 \
     ORDER BY last_active_at DESC, session_id";

/// Marks the session ended; a session never recorded (its login's `save`
/// failed) gets an ended row, kept until the ending's `until`, so that no
/// later `save` records it.
const END_SESSION: &str = "INSERT INTO latch_sessions \
     (session_id, user_id, device, created_at, last_active_at, expires_at, remembered, ended) \
     VALUES ($1, $2, '', 0, 0, $3, FALSE, TRUE) \
     ON CONFLICT (session_id) DO UPDATE SET ended = TRUE";

const END_USER: &str = "UPDATE latch_sessions SET ended = TRUE \
     WHERE user_id = $1 AND created_at <= $2 AND ended = FALSE \
     AND ($3 IS NULL OR session_id <> $3)";

const APPEND: &str = "INSERT INTO latch_session_endings \
     (kind, user_id, session_id, not_before, except_session_id, until) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq";

const CHANGES: &str = "SELECT seq, kind, user_id, session_id, not_before, except_session_id, \
     until FROM latch_session_endings WHERE seq > $1 ORDER BY seq LIMIT $2";

const PURGE_SESSIONS: &str = "DELETE FROM latch_sessions WHERE expires_at <= $1";

const PURGE_ENDINGS: &str = "DELETE FROM latch_session_endings WHERE until <= $1";

/// `kind` of an [`Ending::Session`].
const KIND_SESSION: &str = "session";

/// `kind` of an [`Ending::User`].
const KIND_USER: &str = "user";

// ---------------------------------------------------------------------------
// Rows and values
// ---------------------------------------------------------------------------

/// A time for a 64-bit signed column: one past `i64::MAX` is `i64::MAX`.
fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A time (or seq) read back; a negative one is an error, not a panic.
fn from_db(value: i64, table: &str, name: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| {
        StoreError::new(format!(
            "{table}.{name} holds {value}, which is out of range"
        ))
    })
}

/// A row of `LIST` as a record.
fn decode_record<'r, R>(row: &'r R) -> Result<SessionRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let time = |name: &'static str| from_db(column(row, name)?, "latch_sessions", name);
    Ok(SessionRecord {
        session_id: column(row, "session_id")?,
        user_id: column(row, "user_id")?,
        device: column(row, "device")?,
        created_at: time("created_at")?,
        last_active_at: time("last_active_at")?,
        expires_at: time("expires_at")?,
        remembered: column(row, "remembered")?,
    })
}

/// A row of `CHANGES` as a change. An unknown `kind`, or a column its kind
/// needs left empty, is an error.
fn decode_change<'r, R>(row: &'r R) -> Result<Change, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    const TABLE: &str = "latch_session_endings";
    let seq = from_db(column(row, "seq")?, TABLE, "seq")?;
    let kind: String = column(row, "kind")?;
    let user_id: String = column(row, "user_id")?;
    let until = from_db(column(row, "until")?, TABLE, "until")?;
    let missing = |name: &str| {
        StoreError::new(format!(
            "{TABLE}.{name} is empty in the {kind} ending numbered {seq}"
        ))
    };
    let ending = match kind.as_str() {
        KIND_SESSION => Ending::Session {
            session_id: column::<_, Option<String>>(row, "session_id")?
                .ok_or_else(|| missing("session_id"))?,
            user_id,
            until,
        },
        KIND_USER => Ending::User {
            not_before: column::<_, Option<i64>>(row, "not_before")?
                .ok_or_else(|| missing("not_before"))
                .and_then(|at| from_db(at, TABLE, "not_before"))?,
            except: column(row, "except_session_id")?,
            user_id,
            until,
        },
        _ => {
            return Err(StoreError::new(format!(
                "{TABLE}.kind holds {kind:?} in the ending numbered {seq}: neither \
                 {KIND_SESSION:?} nor {KIND_USER:?}"
            )))
        }
    };
    Ok(Change { seq, ending })
}

/// Runs the updates of `ending` and appends it to the feed, in `tx` (a
/// transaction that holds the feed's write lock); returns its seq.
macro_rules! record_ending {
    ($tx:expr, $ending:expr) => {{
        let tx = $tx;
        let ending: &Ending = $ending;
        match ending {
            Ending::Session {
                session_id,
                user_id,
                until,
            } => {
                sqlx::query(END_SESSION)
                    .bind(session_id)
                    .bind(user_id)
                    .bind(to_db(*until))
                    .execute(&mut *tx)
                    .await
            }
            Ending::User {
                user_id,
                not_before,
                except,
                ..
            } => {
                sqlx::query(END_USER)
                    .bind(user_id)
                    .bind(to_db(*not_before))
                    .bind(except.as_deref())
                    .execute(&mut *tx)
                    .await
            }
        }
        .map_err(StoreError::new)?;
        let (kind, session_id, not_before, except) = match ending {
            Ending::Session { session_id, .. } => {
                (KIND_SESSION, Some(session_id.as_str()), None, None)
            }
            Ending::User {
                not_before, except, ..
            } => (KIND_USER, None, Some(to_db(*not_before)), except.as_deref()),
        };
        let seq: i64 = sqlx::query_scalar(APPEND)
            .bind(kind)
            .bind(ending.user_id())
            .bind(session_id)
            .bind(not_before)
            .bind(except)
            .bind(to_db(ending.until()))
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        from_db(seq, "latch_session_endings", "seq")?
    }};
}

/// The [`SessionStore`] methods that read or write one statement at a time,
/// the same on both databases.
macro_rules! shared_methods {
    () => {
        async fn save(&self, record: &SessionRecord) -> Result<(), StoreError> {
            sqlx::query(SAVE)
                .bind(&record.session_id)
                .bind(&record.user_id)
                .bind(&record.device)
                .bind(to_db(record.created_at))
                .bind(to_db(record.last_active_at))
                .bind(to_db(record.expires_at))
                .bind(record.remembered)
                .execute(&self.pool)
                .await
                .map_err(StoreError::new)?;
            Ok(())
        }

        async fn touch(&self, session_id: &str, at: u64) -> Result<(), StoreError> {
            sqlx::query(TOUCH)
                .bind(session_id)
                .bind(to_db(at))
                .execute(&self.pool)
                .await
                .map_err(StoreError::new)?;
            Ok(())
        }

        async fn list(&self, user_id: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
            let rows = sqlx::query(LIST)
                .bind(user_id)
                .bind(to_db(now))
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::new)?;
            rows.iter().map(|row| decode_record(row)).collect()
        }

        async fn changes(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(CHANGES)
                .bind(to_db(after))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::new)?;
            rows.iter().map(|row| decode_change(row)).collect()
        }

        async fn purge(&self, now: u64) -> Result<u64, StoreError> {
            // Stored times are at most i64::MAX, so clamping `now` deletes
            // exactly what is past at `now`.
            let mut deleted = 0;
            for statement in [PURGE_SESSIONS, PURGE_ENDINGS] {
                let done = sqlx::query(statement)
                    .bind(to_db(now))
                    .execute(&self.pool)
                    .await
                    .map_err(StoreError::new)?;
                deleted += done.rows_affected();
            }
            Ok(deleted)
        }
    };
}

// ---------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------

/// SQLite has no change feed to listen to: the registry polls `changes`.
#[cfg(feature = "sqlite")]
impl SessionStore for SqliteStore {
    shared_methods!();

    async fn end(&self, ending: &Ending) -> Result<u64, StoreError> {
        // `BEGIN IMMEDIATE` takes the database's write lock at once: one
        // ending at a time, so seqs commit in order (and a transaction that
        // would read before writing cannot find its snapshot stale).
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::new)?;
        let seq = record_ending!(&mut *tx, ending);
        tx.commit().await.map_err(StoreError::new)?;
        Ok(seq)
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/// The channel `end` notifies and `listen` listens to. Channels are
/// database-wide: the payload, the oid of the `latch_session_endings` table
/// that the connection's `search_path` finds, tells stores in different
/// schemas apart.
#[cfg(feature = "postgres")]
macro_rules! channel {
    () => {
        "latch_sessions"
    };
}

/// Serialises the appends to the feed across connections, until commit, so
/// that a seq is only ever visible after every smaller one: PostgreSQL hands
/// out identity values at once, but transactions commit in any order.
#[cfg(feature = "postgres")]
const FEED_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('latch_session_endings'))";

/// The payload of this store's notifications.
#[cfg(feature = "postgres")]
const FEED_TAG: &str = "SELECT 'latch_session_endings'::regclass::oid::text";

#[cfg(feature = "postgres")]
const NOTIFY: &str = concat!(
    "SELECT pg_notify('",
    channel!(),
    "', 'latch_session_endings'::regclass::oid::text)"
);

/// PostgreSQL's `LISTEN`/`NOTIFY` carries the change feed: `end` notifies
/// the channel `latch_sessions` as it commits, and `listen` holds a
/// connection of the pool that listens to it.
#[cfg(feature = "postgres")]
impl SessionStore for PostgresStore {
    shared_methods!();

    async fn end(&self, ending: &Ending) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::new)?;
        sqlx::query(FEED_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        let seq = record_ending!(&mut *tx, ending);
        // Delivered as the transaction commits: once the ending is visible.
        sqlx::query(NOTIFY)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::new)?;
        tx.commit().await.map_err(StoreError::new)?;
        Ok(seq)
    }

    async fn listen(&self, wake: crate::registry::Wake) -> Result<(), StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(StoreError::new)?;
        // A lost connection ends this call (the registry catches up, then
        // listens again), rather than reconnecting here.
        listener.eager_reconnect(false);
        let tag: String = sqlx::query_scalar(FEED_TAG)
            .fetch_one(&mut listener)
            .await
            .map_err(StoreError::new)?;
        listener.listen(channel!()).await.map_err(StoreError::new)?;
        // Endings made before the `LISTEN` took effect were not heard.
        wake();
        loop {
            match listener.try_recv().await.map_err(StoreError::new)? {
                Some(notification) if notification.payload() == tag => wake(),
                // Another schema's store.
                Some(_) => {}
                None => {
                    return Err(StoreError::new(concat!(
                        "the connection listening to ",
                        channel!(),
                        " was lost"
                    )))
                }
            }
        }
    }

    fn pushes_changes(&self) -> bool {
        true
    }
}
