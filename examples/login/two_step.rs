//! Two-step login: after the password, a code from an authenticator app
//! (TOTP, RFC 6238) or one of ten single-use recovery codes.
//!
//! The account page turns it on: `POST /account/two-step` makes a secret,
//! `GET /account/two-step` shows it as a QR code and as text, and
//! `POST /account/two-step/enable` turns two-step login on once the app's
//! first code is right, showing the recovery codes this once. Turning it
//! off (`POST /account/two-step/disable`) needs a code too. All of these
//! need a fresh login.
//!
//! At login, the password form hands a user with two-step login on to
//! latch's [`Auth::begin_two_step`]; the code page
//! (`/login/two-step`, latch's [`PendingLogin`]) checks the code and
//! completes the login, which then follows `next`.
//!
//! What is kept, in the user database:
//!
//! - `users.two_step` (0 or 1), `users.totp_secret` (base32, while on) and
//!   `users.totp_last_step`: the last time step whose code was accepted. A
//!   code is accepted only for a later step, written with a conditional
//!   `UPDATE`, so a code works once, even for two requests at the same
//!   moment.
//! - `users.totp_pending_secret`: the secret being set up, until its
//!   first code is right. It is kept here rather than in the session: the
//!   session cookie is signed, not encrypted, so the secret would travel
//!   in every request and sit in any copy of the cookie; here it is as
//!   well kept as the secret in use.
//! - `recovery_codes`: a SHA-256 hash per code, never the code. A code is
//!   marked used with a conditional `UPDATE`, so it works once.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::extract::{ConnectInfo, Form, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_latch::throttle::Throttled;
use axum_latch::two_step::{PendingLogin, Verified};
use axum_latch::{Auth, FreshUser, SessionData};
use qrcode::render::svg;
use qrcode::QrCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use totp_rs::{Algorithm, Builder, Secret, Totp};

use super::activity::{self, Entry};
use super::{
    account_page, back_to_account, log_rejection, now_ms, render, safe_next, save_login_message,
    save_notice, Account, AppError, AppState, Submitted,
};

/// The name authenticator apps show beside the user's name.
const ISSUER: &str = "latch demo";

/// RFC 6238's recommended settings, which every authenticator app reads:
/// HMAC-SHA-1, 6 digits, a new code every 30 seconds, and the codes of one
/// step before and after the server's accepted too, for clocks that drift.
const DIGITS: u8 = 6;
const STEP_SECS: u64 = 30;
const SKEW_STEPS: u16 = 1;

/// The secret's length: 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;

/// How many recovery codes a user gets.
pub(super) const RECOVERY_CODES: usize = 10;

/// The letters of recovery codes: a to z without i, l and o, which are
/// easily mistaken for other characters.
const RECOVERY_ALPHABET: &[u8; 23] = b"abcdefghjkmnpqrstuvwxyz";

/// Letters per recovery code: 12 of 23 make 54 random bits, shown in
/// groups of four (`abcd-efgh-jkmn`).
const RECOVERY_LETTERS: usize = 12;

/// The longest code field looked at, in bytes: anything longer is not a
/// code, and is refused before any other work.
const MAX_CODE_BYTES: usize = 64;

/// Adds two-step login's columns to `users` where they are missing (a
/// database made before them), the way `is_admin` is added, and makes the
/// `recovery_codes` table; the same SQL on SQLite and PostgreSQL. Times
/// are milliseconds since the Unix epoch.
pub(super) async fn migrate(db: &AnyPool) -> Result<(), sqlx::Error> {
    for (column, definition) in [
        ("two_step", "BIGINT NOT NULL DEFAULT 0"),
        ("totp_secret", "TEXT"),
        ("totp_last_step", "BIGINT"),
        ("totp_pending_secret", "TEXT"),
    ] {
        let probe = format!("SELECT {column} FROM users LIMIT 1");
        if sqlx::query(&probe).fetch_optional(db).await.is_err() {
            let add = format!("ALTER TABLE users ADD COLUMN {column} {definition}");
            sqlx::query(&add).execute(db).await?;
        }
    }
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS recovery_codes (
            user_id TEXT NOT NULL,
            code_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            used_at BIGINT,
            PRIMARY KEY (user_id, code_hash)
        )",
    )
    .execute(db)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------- codes

/// A new secret, in base32. The bytes come from the operating system's
/// generator (`getrandom`, which latch uses for its own ids), so totp-rs
/// needs no random number generator of its own.
fn new_secret() -> Result<String, AppError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|error| AppError::Random(error.to_string()))?;
    Ok(Secret::new_stack(bytes).to_base32())
}

/// The TOTP of a base32 secret, for the user `account` (the name the app
/// shows; it may not contain a colon). `None` for a secret that is not
/// base32 or is too short.
fn authenticator(secret: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECS)
        .with_skew(SKEW_STEPS)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', " "))
        .build()
        .ok()
}

/// Now, in seconds since the Unix epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The time step whose code `code` is, within one step of now, if any.
/// totp-rs compares codes in constant time.
fn step_of(totp: &Totp, code: &str) -> Option<i64> {
    totp.check(code, now_secs())
        .and_then(|step| i64::try_from(step).ok())
}

/// The `otpauth://` URL as an SVG QR code, to go inside the page.
fn qr_svg(url: &str) -> Option<String> {
    let code = QrCode::new(url.as_bytes()).ok()?;
    let svg = code
        .render::<svg::Color>()
        .min_dimensions(232, 232)
        .quiet_zone(true)
        .build();
    // The renderer writes a standalone file: the page needs the element
    // only, without the XML declaration.
    let start = svg.find("<svg ")?;
    Some(svg[start..].replacen(
        "<svg ",
        "<svg class=\"qr\" role=\"img\" aria-label=\"QR code of your two-step login key\" ",
        1,
    ))
}

/// A secret as people copy it: groups of four.
fn grouped(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a code field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Code {
    /// Six digits, the spaces taken out.
    Totp(String),
    /// A recovery code's 12 letters, lower case, without the dashes.
    Recovery(String),
}

/// Why a code field holds no code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotACode {
    Empty,
    /// Too long, or of neither shape.
    Malformed,
}

/// Reads a code field: an authenticator code (6 digits) or a recovery code
/// (12 of its letters), with any spaces and dashes, in any case. Anything
/// else is refused before any other work; it is never checked, so it
/// costs no try.
pub(super) fn parse_code(typed: &str) -> Result<Code, NotACode> {
    if typed.len() > MAX_CODE_BYTES {
        return Err(NotACode::Malformed);
    }
    let compact: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if compact.is_empty() {
        return Err(NotACode::Empty);
    }
    if compact.bytes().all(|b| b.is_ascii_digit()) {
        return match compact.len() == usize::from(DIGITS) {
            true => Ok(Code::Totp(compact)),
            false => Err(NotACode::Malformed),
        };
    }
    let letters = compact.to_ascii_lowercase();
    if letters.len() == RECOVERY_LETTERS && letters.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))
    {
        Ok(Code::Recovery(letters))
    } else {
        Err(NotACode::Malformed)
    }
}

/// A new recovery code, as shown: `abcd-efgh-jkmn`.
fn new_recovery_code() -> Result<String, AppError> {
    // Bytes below 253 (11 times the alphabet) map evenly onto it; the
    // others are drawn again.
    let limit = RECOVERY_ALPHABET.len() * (256 / RECOVERY_ALPHABET.len());
    let mut letters = Vec::with_capacity(RECOVERY_LETTERS);
    let mut pool = [0u8; 32];
    while letters.len() < RECOVERY_LETTERS {
        getrandom::fill(&mut pool).map_err(|error| AppError::Random(error.to_string()))?;
        for &byte in &pool {
            if usize::from(byte) < limit && letters.len() < RECOVERY_LETTERS {
                letters.push(RECOVERY_ALPHABET[usize::from(byte) % RECOVERY_ALPHABET.len()]);
            }
        }
    }
    let groups: Vec<&str> = letters
        .chunks(4)
        .map(|group| std::str::from_utf8(group).unwrap_or_default())
        .collect();
    Ok(groups.join("-"))
}

/// What the `recovery_codes` table keeps of a code: the SHA-256, in hex,
/// of the user's id and the code's letters. The code has 54 random bits,
/// so a fast hash is enough (as for API tokens); the user's id makes each
/// user's codes a search of their own for whoever has a copy of the table.
pub(super) fn recovery_hash(user_id: &str, letters: &str) -> String {
    Sha256::digest(format!("{user_id}:{letters}").as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A user's two-step settings, as stored.
struct Settings {
    on: bool,
    secret: Option<String>,
    pending_secret: Option<String>,
}

async fn settings(db: &AnyPool, user_id: &str) -> Result<Option<Settings>, sqlx::Error> {
    let row =
        sqlx::query("SELECT two_step, totp_secret, totp_pending_secret FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    row.map(|row| {
        Ok(Settings {
            on: row.try_get::<i64, _>("two_step")? != 0,
            secret: row.try_get("totp_secret")?,
            pending_secret: row.try_get("totp_pending_secret")?,
        })
    })
    .transpose()
}

/// Checks a code of a user with two-step login on, and uses it up if it is
/// right: the name of the factor that accepted it (`totp`,
/// `recovery_code`), or `None`.
///
/// An authenticator code is accepted only for a time step later than the
/// last one accepted, and the step is written in the same statement that
/// checks it: of two requests with one code, one wins. A recovery code is
/// looked up by its hash and marked used in one statement too.
pub(super) async fn use_code(
    db: &AnyPool,
    user_id: &str,
    code: &Code,
) -> Result<Option<&'static str>, sqlx::Error> {
    match code {
        Code::Totp(digits) => {
            let Some(Settings {
                on: true,
                secret: Some(secret),
                ..
            }) = settings(db, user_id).await?
            else {
                return Ok(None);
            };
            let Some(step) =
                authenticator(&secret, user_id).and_then(|totp| step_of(&totp, digits))
            else {
                return Ok(None);
            };
            let accepted = sqlx::query(
                "UPDATE users SET totp_last_step = $1
                 WHERE id = $2 AND two_step = 1 AND totp_secret = $3
                   AND (totp_last_step IS NULL OR totp_last_step < $4)",
            )
            .bind(step)
            .bind(user_id)
            .bind(&secret)
            .bind(step)
            .execute(db)
            .await?;
            Ok((accepted.rows_affected() == 1).then_some("totp"))
        }
        Code::Recovery(letters) => {
            let used = sqlx::query(
                "UPDATE recovery_codes SET used_at = $1
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(now_ms())
            .bind(user_id)
            .bind(recovery_hash(user_id, letters))
            .execute(db)
            .await?;
            Ok((used.rows_affected() == 1).then_some("recovery_code"))
        }
    }
}

/// How many of the user's recovery codes are left.
pub(super) async fn codes_left(db: &AnyPool, user_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
        .bind(user_id)
        .fetch_one(db)
        .await
}

/// A code field.
#[derive(Deserialize)]
pub(super) struct CodeFields {
    code: Option<String>,
}

/// The code field of a form, or why there is none to check.
fn typed_code(form: &Submitted<CodeFields>) -> Result<Code, &'static str> {
    let typed = match form {
        Ok(Form(fields)) => fields.code.as_deref().unwrap_or_default(),
        Err(rejection) => {
            log_rejection(rejection);
            return Err(super::GARBLED);
        }
    };
    parse_code(typed).map_err(|problem| match problem {
        NotACode::Empty => {
            "Please type the 6-digit code from your authenticator app, or a recovery code."
        }
        NotACode::Malformed => {
            "That is not a code: type the 6 digits your authenticator app shows, \
             or a recovery code such as abcd-efgh-jkmn."
        }
    })
}

// ---------------------------------------------------------------- login

/// The second step's page.
#[derive(Template)]
#[template(path = "two_step.html", config = "examples/login/askama.toml")]
struct CodePage<'a> {
    title: &'a str,
    username: &'a str,
    /// The form posts back here, keeping `next`.
    action: String,
    /// The login page, keeping `next`.
    start_over: String,
    attempts_left: u32,
    minutes_left: u64,
    error: Option<&'a str>,
}

/// `/login/two-step` with `next`, if it is safe.
fn with_next(path: &str, query: Option<&str>) -> String {
    match safe_next(query) {
        Some(next) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", &next)
                .finish();
            format!("{path}?{query}")
        }
        None => path.to_owned(),
    }
}

fn code_form(
    status: StatusCode,
    pending: &PendingLogin<Account>,
    query: Option<&str>,
    error: Option<&str>,
    attempts_left: u32,
) -> Result<Response, AppError> {
    let left = pending
        .expires_at()
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .as_secs();
    let mut response = render(
        status,
        &CodePage {
            title: "Enter your code",
            username: &pending.user().username,
            action: with_next("/login/two-step", query),
            start_over: with_next("/login", query),
            attempts_left,
            minutes_left: left.div_ceil(60).max(1),
            error,
        },
    )?;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /login/two-step`: the code form, for a browser whose password was
/// right. Without a pending login, latch sends it to the login page.
pub(super) async fn code_page(
    pending: PendingLogin<Account>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let left = pending.attempts_left();
    code_form(StatusCode::OK, &pending, query.as_deref(), None, left)
}

/// `POST /login/two-step`: a right code completes the login (`303` to
/// `next`); a wrong one shows the form again with the tries left (`200`),
/// and the last wrong one sends the browser back to the login page. What
/// is not a code at all is refused (`400`) without costing a try.
pub(super) async fn code_submit(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    pending: PendingLogin<Account>,
    auth: Auth<Account>,
    session: SessionData,
    RawQuery(query): RawQuery,
    form: Submitted<CodeFields>,
) -> Result<Response, AppError> {
    let query = query.as_deref();
    let code = match typed_code(&form) {
        Ok(code) => code,
        Err(message) => {
            let left = pending.attempts_left();
            return code_form(
                StatusCode::BAD_REQUEST,
                &pending,
                query,
                Some(message),
                left,
            );
        }
    };
    // What the check saw, for after `verify`: the factor that accepted the
    // code, or a database failure (a wrong code for latch, then a 500).
    let outcome: Mutex<Result<Option<&'static str>, sqlx::Error>> = Mutex::new(Ok(None));
    let (db, recorder) = (&state.db, &state.recorder);
    let verified = pending
        .verify(|user: std::sync::Arc<Account>| {
            let (code, outcome) = (&code, &outcome);
            async move {
                let result = use_code(db, &user.id, code).await;
                let factor = result.as_ref().ok().copied().flatten();
                if factor.is_none() {
                    // latch now reports a failed login: the activity list
                    // says it was a code, not a password.
                    recorder.expect_code_failure(&user.id);
                }
                *outcome.lock().unwrap_or_else(|e| e.into_inner()) = result;
                factor
            }
        })
        .await;
    let outcome = outcome.into_inner().unwrap_or_else(|e| e.into_inner());
    let factor = outcome?;
    let user_id = pending.user().id.clone();
    match verified? {
        Verified::LoggedIn(redirect) => {
            tracing::info!(user_id, factor, "second step passed");
            if factor == Some("recovery_code") {
                let left = codes_left(db, &user_id).await?;
                Entry::new(&user_id, activity::RECOVERY_CODE_USED)
                    .detail(&left.to_string())
                    .in_browser(&auth, client.ip())
                    .await
                    .save(db)
                    .await;
                let plural = if left == 1 { "" } else { "s" };
                save_notice(
                    &session,
                    &format!(
                        "You logged in with a recovery code, which now no longer works: \
                         {left} recovery code{plural} left."
                    ),
                );
            }
            Ok(redirect.into_response())
        }
        Verified::Wrong { attempts_left } => {
            let message = "That code is not right. Check that the app shows the code for \
                           the latch demo and you, and try again; a recovery code works once.";
            code_form(
                StatusCode::OK,
                &pending,
                query,
                Some(message),
                attempts_left,
            )
        }
        Verified::Discarded(back) => {
            let message = match factor {
                None => "Too many wrong codes: please log in again.",
                Some(_) => "That login was finished already: please log in again.",
            };
            save_login_message(&session, message);
            Ok(back.into_response())
        }
        Verified::Throttled(throttled) => throttled_form(&pending, query, &throttled),
        // A newer outcome this demo does not know: start over.
        _ => Ok(Redirect::to(&with_next("/login", query)).into_response()),
    }
}

/// The form again, `429` with `Retry-After`: too many wrong codes lately.
fn throttled_form(
    pending: &PendingLogin<Account>,
    query: Option<&str>,
    throttled: &Throttled,
) -> Result<Response, AppError> {
    let minutes = throttled.retry_after_secs().div_ceil(60);
    let plural = if minutes == 1 { "" } else { "s" };
    let message =
        format!("Too many wrong codes. Please wait {minutes} minute{plural} before trying again.");
    let left = pending.attempts_left();
    let mut response = code_form(
        StatusCode::TOO_MANY_REQUESTS,
        pending,
        query,
        Some(&message),
        left,
    )?;
    response
        .headers_mut()
        .insert(RETRY_AFTER, throttled.retry_after_secs().into());
    Ok(response)
}

// ---------------------------------------------------------------- turning it on

/// The page that sets two-step login up.
#[derive(Template)]
#[template(path = "two_step_enrol.html", config = "examples/login/askama.toml")]
struct EnrolPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
    /// The QR code, an SVG element made here (no text of anyone's in it).
    qr: &'a str,
    /// The secret in groups of four, and the URL the QR code holds.
    secret: &'a str,
    error: Option<&'a str>,
}

/// The page that shows the recovery codes, once.
#[derive(Template)]
#[template(path = "recovery_codes.html", config = "examples/login/askama.toml")]
struct RecoveryCodesPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
    codes: &'a [String],
}

/// `POST /account/two-step`: makes a new secret for the user to set up
/// (replacing one set up but never confirmed), then shows it.
pub(super) async fn start(
    State(state): State<AppState>,
    FreshUser(user): FreshUser<Account>,
    session: SessionData,
) -> Result<Response, AppError> {
    if user.two_step {
        return Ok(back_to_account(&session, "Two-step login is on already."));
    }
    let secret = new_secret()?;
    sqlx::query("UPDATE users SET totp_pending_secret = $1 WHERE id = $2 AND two_step = 0")
        .bind(&secret)
        .bind(&user.id)
        .execute(&state.db)
        .await?;
    Ok(Redirect::to("/account/two-step").into_response())
}

/// `GET /account/two-step`: the secret being set up, as a QR code and as
/// text, and the form for the app's first code. Without one (or with
/// two-step login on already), the account page.
pub(super) async fn enrol_page(
    State(state): State<AppState>,
    FreshUser(user): FreshUser<Account>,
) -> Result<Response, AppError> {
    match settings(&state.db, &user.id).await? {
        Some(Settings {
            on: false,
            pending_secret: Some(secret),
            ..
        }) => enrol_form(StatusCode::OK, &user, &secret, None),
        _ => Ok(Redirect::to("/account").into_response()),
    }
}

fn enrol_form(
    status: StatusCode,
    user: &Account,
    secret: &str,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let broken = || AppError::TwoStep("the secret being set up is not base32".to_owned());
    let totp = authenticator(secret, &user.username).ok_or_else(broken)?;
    let url = totp
        .to_url()
        .map_err(|error| AppError::TwoStep(error.to_string()))?;
    let qr = qr_svg(&url).ok_or_else(|| AppError::TwoStep("no QR code".to_owned()))?;
    let mut response = render(
        status,
        &EnrolPage {
            title: "Turn on two-step login",
            username: &user.username,
            is_admin: user.is_admin,
            qr: &qr,
            secret: &grouped(secret),
            error,
        },
    )?;
    // The secret is on this page: no cache keeps it.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /account/two-step/enable`: with the app's code for the secret
/// being set up, turns two-step login on and shows the recovery codes,
/// this once. A wrong code changes nothing.
pub(super) async fn enable(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    session: SessionData,
    form: Submitted<CodeFields>,
) -> Result<Response, AppError> {
    let secret = match settings(&state.db, &user.id).await? {
        Some(Settings { on: true, .. }) => {
            return Ok(back_to_account(&session, "Two-step login is on already."))
        }
        Some(Settings {
            pending_secret: Some(secret),
            ..
        }) => secret,
        _ => {
            return Ok(back_to_account(
                &session,
                "Two-step login is not being set up: start again below.",
            ))
        }
    };
    let digits = match typed_code(&form) {
        Ok(Code::Totp(digits)) => digits,
        Ok(Code::Recovery(_)) | Err(_) => {
            let error = "Please type the 6-digit code your authenticator app shows.";
            return enrol_form(StatusCode::BAD_REQUEST, &user, &secret, Some(error));
        }
    };
    let Some(step) = authenticator(&secret, &user.username).and_then(|t| step_of(&t, &digits))
    else {
        let error = "That code is not right, so two-step login is still off. Check that the \
                     app added the key below and that this device's clock is right, then \
                     type the code it shows now.";
        return enrol_form(StatusCode::OK, &user, &secret, Some(error));
    };
    let codes = (0..RECOVERY_CODES)
        .map(|_| new_recovery_code())
        .collect::<Result<Vec<_>, _>>()?;
    let mut tx = state.db.begin().await?;
    // The code's step counts as used: it cannot log in too.
    let turned_on = sqlx::query(
        "UPDATE users SET two_step = 1, totp_secret = $1, totp_last_step = $2,
                          totp_pending_secret = NULL
         WHERE id = $3 AND two_step = 0 AND totp_pending_secret = $4",
    )
    .bind(&secret)
    .bind(step)
    .bind(&user.id)
    .bind(&secret)
    .execute(&mut *tx)
    .await?;
    if turned_on.rows_affected() != 1 {
        // Set up again, or turned on, from another browser meanwhile.
        return Ok(back_to_account(
            &session,
            "Two-step login was changed from another browser meanwhile: see below.",
        ));
    }
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    let now = now_ms();
    for code in &codes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at) VALUES ($1, $2, $3)",
        )
        .bind(&user.id)
        .bind(recovery_hash(&user.id, &code.replace('-', "")))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(user_id = user.id, "two-step login turned on");
    Entry::new(&user.id, activity::TWO_STEP_ENABLED)
        .in_browser(&auth, client.ip())
        .await
        .save(&state.db)
        .await;
    let mut response = render(
        StatusCode::OK,
        &RecoveryCodesPage {
            title: "Two-step login is on",
            username: &user.username,
            is_admin: user.is_admin,
            codes: &codes,
        },
    )?;
    // The codes are shown once: no cache keeps them.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /account/two-step/disable`: with a right code (from the app, or a
/// recovery code), turns two-step login off: the secret and the recovery
/// codes are deleted. Wrong codes count in the throttle, as wrong
/// passwords do.
pub(super) async fn disable(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    session: SessionData,
    form: Submitted<CodeFields>,
) -> Result<Response, AppError> {
    if !user.two_step {
        return Ok(back_to_account(&session, "Two-step login is off already."));
    }
    let (state, auth, user) = (&state, &auth, &user);
    let refuse = |status: StatusCode, error: String| async move {
        account_page(status, state, auth, user, None, Some(&error)).await
    };
    let code = match typed_code(&form) {
        Ok(code) => code,
        Err(message) => {
            let error = format!("Two-step login is still on. {message}");
            return refuse(StatusCode::BAD_REQUEST, error).await;
        }
    };
    let attempt = match state
        .throttle
        .attempt_account(&user.id, Some(client.ip()))
        .await
    {
        Ok(attempt) => attempt,
        Err(throttled) => {
            auth.report_throttled(Some(user.id.clone()), &throttled);
            let error = "Too many wrong codes. Please wait a few minutes and try again.";
            let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, error.to_owned()).await?;
            response
                .headers_mut()
                .insert(RETRY_AFTER, throttled.retry_after_secs().into());
            return Ok(response);
        }
    };
    if use_code(&state.db, &user.id, &code).await?.is_none() {
        attempt.failed();
        state.recorder.expect_code_failure(&user.id);
        auth.report_failed_login(Some(user.id.clone()));
        let error = "That code is not right, so two-step login is still on.";
        return refuse(StatusCode::OK, error.to_owned()).await;
    }
    attempt.succeeded().await;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "UPDATE users SET two_step = 0, totp_secret = NULL, totp_last_step = NULL,
                          totp_pending_secret = NULL
         WHERE id = $1",
    )
    .bind(&user.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(&user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = user.id, "two-step login turned off");
    Entry::new(&user.id, activity::TWO_STEP_DISABLED)
        .in_browser(auth, client.ip())
        .await
        .save(&state.db)
        .await;
    Ok(back_to_account(
        &session,
        "Two-step login is off: your password alone logs you in again, and your \
         recovery codes no longer work.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_with_spaces_and_dashes_and_anything_else_is_refused() {
        assert_eq!(parse_code("123456"), Ok(Code::Totp("123456".into())));
        assert_eq!(parse_code(" 123 456 "), Ok(Code::Totp("123456".into())));
        assert_eq!(
            parse_code("ABCD-efgh-JKMN"),
            Ok(Code::Recovery("abcdefghjkmn".into()))
        );
        assert_eq!(
            parse_code("abcd efgh jkmn"),
            Ok(Code::Recovery("abcdefghjkmn".into()))
        );
        assert_eq!(parse_code(""), Err(NotACode::Empty));
        assert_eq!(parse_code(" - "), Err(NotACode::Empty));
        for bad in [
            "12345",
            "1234567",
            "12345a",
            "abcdef",
            "abcd-efgh-ijkl",
            "\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}",
            "abcd-efgh-jkmn-pqrs",
        ] {
            assert_eq!(parse_code(bad), Err(NotACode::Malformed), "{bad}");
        }
        assert_eq!(parse_code(&"1".repeat(100_000)), Err(NotACode::Malformed));
    }

    #[test]
    fn recovery_codes_have_the_shape_they_are_read_in() {
        let code = new_recovery_code().unwrap();
        assert_eq!(code.len(), 14, "{code}");
        assert!(
            matches!(parse_code(&code), Ok(Code::Recovery(letters)) if letters == code.replace('-', ""))
        );
        assert_ne!(code, new_recovery_code().unwrap());
    }
}
