//! The account page's "Recent activity": what happened to the user's
//! logins (what, when, which device, from which address), the way a
//! security log does it.
//!
//! latch's event hook ([`Login::on_event`](axum_latch::Login::on_event))
//! hands every login, logout, failed login, ... to [`Recorder`], which
//! writes it to the `activity` table of the user database, under the user
//! it names. The demo adds a few entries of its own: a new password, API
//! tokens made and revoked, an admin ending the user's sessions, two-step
//! login turned on or off, and a recovery code used.
//!
//! Nothing secret goes in: no token, cookie or password; a session id
//! names a login without proving anything.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum_latch::events::{Ended, EventKind, LoginEvent, LoginMethod};
use axum_latch::Auth;
use sqlx::{AnyPool, Row};

use super::sessions::{now_secs, time_ago};
use super::{random_id, Account};

/// The demo's own kinds of entry, beside latch's event names.
pub(super) const PASSWORD_CHANGED: &str = "password_changed";
pub(super) const TOKEN_CREATED: &str = "token_created";
pub(super) const TOKEN_REVOKED: &str = "token_revoked";
pub(super) const ENDED_BY_ADMIN: &str = "ended_by_admin";
pub(super) const TWO_STEP_ENABLED: &str = "two_step_enabled";
pub(super) const TWO_STEP_DISABLED: &str = "two_step_disabled";
pub(super) const RECOVERY_CODE_USED: &str = "recovery_code_used";

/// latch's name for a login completed with a second factor; its detail
/// says which.
const LOGGED_IN_TWO_STEP: &str = "logged_in_two_step";

/// The detail of a failed login that was a wrong code, not a password.
const WRONG_CODE: &str = "code";

/// The most users with wrong codes not yet heard from latch: past it, the
/// list is cleared (a few failed logins then say "password" for a code).
const MAX_CODE_FAILURES: usize = 10_000;

/// latch's name for a throttled login, whose repeats are merged.
const THROTTLED: &str = "throttled";

/// How many entries the account page shows.
const SHOWN: i64 = 20;

/// How long entries are kept: 90 days, in microseconds.
const KEPT_US: i64 = 90 * 24 * 60 * 60 * 1_000_000;

/// Throttled logins within this long of the last one (from the same
/// address) add to its count rather than making a new entry: a script
/// hammering the login form makes one line, not thousands.
const MERGE_THROTTLED_US: i64 = 15 * 60 * 1_000_000;

/// The `activity` table, made if it is missing; the same SQL on SQLite and
/// PostgreSQL. `at_us` is microseconds since the Unix epoch; `repeats`
/// counts merged throttled logins.
pub(super) async fn create_table(db: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS activity (
            id TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            detail TEXT,
            at_us BIGINT NOT NULL,
            device TEXT,
            client TEXT,
            session_id TEXT,
            repeats BIGINT NOT NULL DEFAULT 1
        )",
    )
    .execute(db)
    .await?;
    sqlx::query("CREATE INDEX IF NOT EXISTS activity_user_at ON activity (user_id, at_us)")
        .execute(db)
        .await?;
    Ok(())
}

/// One entry to write.
pub(super) struct Entry {
    user_id: String,
    kind: String,
    detail: Option<String>,
    at_us: i64,
    device: Option<String>,
    client: Option<String>,
    session_id: Option<String>,
}

impl Entry {
    /// An entry of the demo's own, at this moment, with no device yet.
    pub(super) fn new(user_id: &str, kind: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            kind: kind.to_owned(),
            detail: None,
            at_us: micros(SystemTime::now()),
            device: None,
            client: None,
            session_id: None,
        }
    }

    /// What the entry is about: a token's name, an admin's username.
    pub(super) fn detail(mut self, detail: &str) -> Self {
        self.detail = Some(detail.to_owned());
        self
    }

    /// Done from this browser at `client`: its device and login, as the
    /// session registry lists them.
    pub(super) async fn in_browser(mut self, auth: &Auth<Account>, client: IpAddr) -> Self {
        self.client = Some(client.to_canonical().to_string());
        self.session_id = auth.session_id().await;
        if let Ok(sessions) = auth.sessions().await {
            self.device = sessions
                .into_iter()
                .find(|session| session.current)
                .map(|session| session.device);
        }
        self
    }

    /// Writes the entry. A failure is logged, and fails nothing else: the
    /// activity list is a record, not what the action depends on.
    pub(super) async fn save(self, db: &AnyPool) {
        if let Err(error) = self.insert(db).await {
            tracing::error!(%error, kind = self.kind, "activity not recorded");
        }
    }

    async fn insert(&self, db: &AnyPool) -> Result<(), sqlx::Error> {
        if self.kind == THROTTLED {
            let merged = sqlx::query(
                "UPDATE activity SET repeats = repeats + 1, at_us = $1
                 WHERE id = (SELECT id FROM activity WHERE user_id = $2
                             ORDER BY at_us DESC, id DESC LIMIT 1)
                   AND kind = $3 AND COALESCE(client, '') = $4 AND at_us > $5",
            )
            .bind(self.at_us)
            .bind(&self.user_id)
            .bind(&self.kind)
            .bind(self.client.as_deref().unwrap_or(""))
            .bind(self.at_us - MERGE_THROTTLED_US)
            .execute(db)
            .await?;
            if merged.rows_affected() > 0 {
                return Ok(());
            }
        }
        let id = random_id().map_err(|error| sqlx::Error::Protocol(error.to_string()))?;
        sqlx::query(
            "INSERT INTO activity (id, user_id, kind, detail, at_us, device, client, session_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(&self.user_id)
        .bind(&self.kind)
        .bind(self.detail.as_deref())
        .bind(self.at_us)
        .bind(self.device.as_deref())
        .bind(self.client.as_deref())
        .bind(self.session_id.as_deref())
        .execute(db)
        .await?;
        sqlx::query("DELETE FROM activity WHERE user_id = $1 AND at_us < $2")
            .bind(&self.user_id)
            .bind(self.at_us - KEPT_US)
            .execute(db)
            .await?;
        Ok(())
    }
}

/// Writes latch's events to the `activity` table: the demo's event hook.
/// Clones share one clock.
#[derive(Clone)]
pub(super) struct Recorder {
    db: AnyPool,
    /// The time of the last entry written, so that entries keep the order
    /// latch saw the events in even within one microsecond (a remember-me
    /// login and its token's rotation come from one request).
    last_us: Arc<AtomicI64>,
    /// How many of each user's next failed logins are wrong codes: latch
    /// reports a wrong code as a failed login, as it does a wrong password.
    code_failures: Arc<Mutex<HashMap<String, u32>>>,
}

impl Recorder {
    pub(super) fn new(db: AnyPool) -> Self {
        Self {
            db,
            last_us: Arc::new(AtomicI64::new(0)),
            code_failures: Arc::default(),
        }
    }

    /// Says that the user's next failed login is a wrong code: call it
    /// before latch reports it (from the check `PendingLogin::verify`
    /// runs, say), and the activity list says "Wrong two-step code".
    pub(super) fn expect_code_failure(&self, user_id: &str) {
        let mut failures = self.failures();
        if failures.len() >= MAX_CODE_FAILURES {
            failures.clear();
        }
        *failures.entry(user_id.to_owned()).or_default() += 1;
    }

    /// Whether a failed login of the user is one said to be a wrong code.
    fn take_code_failure(&self, user_id: &str) -> bool {
        let mut failures = self.failures();
        let Some(count) = failures.get_mut(user_id) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            failures.remove(user_id);
        }
        true
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.code_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one event, under its user. An event without one (a failed
    /// login for a username nobody has) is on nobody's page: it is left
    /// to the log.
    pub(super) async fn record_event(&self, event: LoginEvent<String>) {
        let Some(user_id) = event.user_id else {
            return;
        };
        let detail = match &event.kind {
            EventKind::SessionsEnded(Ended::Session(_)) => Some("session"),
            EventKind::SessionsEnded(Ended::Others) => Some("others"),
            EventKind::SessionsEnded(Ended::All) => Some("all"),
            // Every browser login of the demo has a session id: a login
            // without one is an API token's.
            EventKind::FreshLoginRequired if event.session_id.is_none() => Some("token"),
            // Which second factor: "totp" or "recovery_code".
            EventKind::LoggedIn(LoginMethod::SecondFactor(factor)) => Some(*factor),
            EventKind::LoginFailed if self.take_code_failure(&user_id) => Some(WRONG_CODE),
            _ => None,
        };
        let at_us = micros(event.at);
        let previous = self
            .last_us
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(at_us.max(last + 1))
            })
            .unwrap_or_default();
        let entry = Entry {
            user_id,
            kind: event.kind.name().to_owned(),
            detail: detail.map(str::to_owned),
            at_us: at_us.max(previous + 1),
            device: event.device,
            client: event.client.map(|ip| ip.to_canonical().to_string()),
            session_id: event.session_id,
        };
        entry.save(&self.db).await;
    }
}

/// Microseconds since the Unix epoch.
fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
    })
}

/// One line of "Recent activity", as the account page shows it.
pub(super) struct ActivityRow {
    /// The stored kind, for the page's `data-kind`.
    pub(super) kind: String,
    /// What happened, in words.
    pub(super) what: String,
    /// "5 minutes ago".
    pub(super) when: String,
    /// The time in UTC, as RFC 3339 and as a person reads it.
    pub(super) at: String,
    pub(super) at_text: String,
    pub(super) device: Option<String>,
    pub(super) client: Option<String>,
    /// Whether it happened in the login of the browser looking.
    pub(super) this_browser: bool,
    /// Whether it is worth a second look (a wrong password, say).
    pub(super) alert: bool,
}

/// The user's last [`SHOWN`] entries, newest first.
pub(super) async fn rows(
    db: &AnyPool,
    user_id: &str,
    this_session: Option<&str>,
) -> Result<Vec<ActivityRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, detail, at_us, device, client, session_id, repeats FROM activity
         WHERE user_id = $1 ORDER BY at_us DESC, id DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(SHOWN)
    .fetch_all(db)
    .await?;
    let now = now_secs();
    rows.iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let detail: Option<String> = row.try_get("detail")?;
            let at_us: i64 = row.try_get("at_us")?;
            let session_id: Option<String> = row.try_get("session_id")?;
            let (what, alert) = describe(&kind, detail.as_deref(), row.try_get("repeats")?);
            let secs = at_us.div_euclid(1_000_000);
            let (at, at_text) = utc(secs);
            Ok(ActivityRow {
                kind,
                what,
                when: time_ago(now, u64::try_from(secs).unwrap_or(0)),
                at,
                at_text,
                device: row.try_get("device")?,
                client: row.try_get("client")?,
                this_browser: session_id.is_some() && session_id.as_deref() == this_session,
                alert,
            })
        })
        .collect()
}

/// An entry in words, and whether it deserves a second look.
fn describe(kind: &str, detail: Option<&str>, repeats: i64) -> (String, bool) {
    let detail = detail.unwrap_or_default();
    let (what, alert) = match kind {
        "logged_in" => ("Logged in with the password".to_owned(), false),
        "logged_in_remembered" => ("Logged in by \u{201c}remember me\u{201d}".to_owned(), false),
        "logged_in_adopted" => ("Logged in from the Microdot app".to_owned(), false),
        "logged_out" => ("Logged out".to_owned(), false),
        "sessions_ended" => match detail {
            "session" => ("Logged out another browser".to_owned(), false),
            "others" => ("Logged out everywhere else".to_owned(), false),
            _ => ("Logged out everywhere".to_owned(), false),
        },
        "remember_rotated" => (
            "\u{201c}Remember me\u{201d} cookie renewed".to_owned(),
            false,
        ),
        "remember_theft" => (
            "A copied \u{201c}remember me\u{201d} cookie was used: every browser was logged out"
                .to_owned(),
            true,
        ),
        THROTTLED => ("Login refused: too many wrong passwords".to_owned(), true),
        "fresh_login_required" if detail == "token" => (
            "An API token was refused a page that needs the password".to_owned(),
            true,
        ),
        "fresh_login_required" => ("Asked for the password again".to_owned(), false),
        LOGGED_IN_TWO_STEP => match detail {
            "totp" => (
                "Logged in with the password and an authenticator code".to_owned(),
                false,
            ),
            "recovery_code" => (
                "Logged in with the password and a recovery code".to_owned(),
                false,
            ),
            other => (format!("Logged in with the password and {other}"), false),
        },
        "login_failed" if detail == WRONG_CODE => ("Wrong two-step code".to_owned(), true),
        "login_failed" => ("Wrong password".to_owned(), true),
        PASSWORD_CHANGED => ("Password changed".to_owned(), false),
        TOKEN_CREATED => (format!("API token \u{201c}{detail}\u{201d} created"), false),
        TOKEN_REVOKED => (format!("API token \u{201c}{detail}\u{201d} revoked"), false),
        TWO_STEP_ENABLED => ("Two-step login turned on".to_owned(), false),
        TWO_STEP_DISABLED => ("Two-step login turned off".to_owned(), true),
        RECOVERY_CODE_USED => match detail {
            "1" => ("Recovery code used: 1 left".to_owned(), true),
            left => (format!("Recovery code used: {left} left"), true),
        },
        ENDED_BY_ADMIN => (
            format!("Logged out everywhere by an admin ({detail})"),
            true,
        ),
        other => (other.replace('_', " "), false),
    };
    if repeats > 1 {
        (format!("{what} ({repeats} times)"), alert)
    } else {
        (what, alert)
    }
}

/// A time in UTC: RFC 3339 (`2026-12-03T12:00:43Z`) and as a person reads
/// it (`2026-12-03 12:00 UTC`).
fn utc(secs: i64) -> (String, String) {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return (String::new(), String::new());
    };
    let (year, month, day) = (at.year(), u8::from(at.month()), at.day());
    let (hour, minute, second) = (at.hour(), at.minute(), at.second());
    (
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
        format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC"),
    )
}
