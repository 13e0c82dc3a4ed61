//! Personal access tokens: an API client logs in with
//! `Authorization: Bearer latch_...` instead of a cookie (latch's request
//! loader, [`account_of_request`]), and the account page makes, lists and
//! revokes them.
//!
//! A token is `latch_` and 43 characters of base64url: 256 random bits,
//! with a prefix that says what it is (to a person, and to a scanner
//! looking for leaked secrets). It is shown once, on the page that made
//! it; the `api_tokens` table keeps only its SHA-256, with a name, when it
//! was made, when it was last used, and when it was revoked. A token never
//! counts as a fresh login, so it cannot reach the account page or its
//! forms; and a new password or "log out everywhere" leaves it working,
//! as a token is revoked on its own.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::header::{CACHE_CONTROL, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum_latch::api::bearer_token;
use axum_latch::{Auth, FreshUser};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use super::activity::{self, Entry};
use super::sessions::{now_secs, time_ago};
use super::{
    account_page, back_to_account, garbled_account_form, log_rejection, now_ms, random_id, render,
    Account, AppError, AppState, Submitted, GARBLED,
};

/// What every token starts with.
const PREFIX: &str = "latch_";

/// The random part of a token, in bytes: 256 bits.
const SECRET_BYTES: usize = 32;

/// A token's length: the prefix and the random part in unpadded base64url.
const TOKEN_CHARS: usize = PREFIX.len() + (SECRET_BYTES * 4).div_ceil(3);

/// The longest name a token may have, in characters.
pub(super) const MAX_NAME_CHARS: usize = 64;

/// How many tokens a user may have at once.
const MAX_TOKENS: i64 = 10;

/// A token's "last used" time is written at most this often (ms): a
/// script calling every second does not write every second.
const LAST_USED_EVERY_MS: i64 = 60 * 1000;

/// The `api_tokens` table, made if it is missing; the same SQL on SQLite
/// and PostgreSQL. Times are milliseconds since the Unix epoch.
pub(super) async fn create_table(db: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS api_tokens (
            id TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            last_used_at BIGINT,
            revoked_at BIGINT
        )",
    )
    .execute(db)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_hash ON api_tokens (token_hash)")
        .execute(db)
        .await?;
    sqlx::query("CREATE INDEX IF NOT EXISTS api_tokens_user ON api_tokens (user_id)")
        .execute(db)
        .await?;
    Ok(())
}

/// A new token.
fn new_token() -> Result<String, AppError> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|error| AppError::Random(error.to_string()))?;
    Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(secret)))
}

/// Whether `token` has the shape of the demo's tokens. Anything else is
/// refused before it is hashed or looked up.
fn looks_like_a_token(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The SHA-256 of a token, in hex: what the table keeps. A token has 256
/// random bits, so a fast hash is enough: nobody can guess a token from
/// its hash, as a password could be guessed.
fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// latch's request loader: the user whose token the request's
/// `Authorization: Bearer` header carries.
///
/// Anything that is not a live token of ours (no header, another scheme,
/// garbage, the wrong shape, far too long, unknown, revoked) is `Ok(None)`:
/// latch answers `401` with `WWW-Authenticate: Bearer`. Only a database
/// that cannot be read is an `Err` (a `500`).
///
/// The check is constant-time by construction: the token is hashed, and
/// the database looks up the hash. What it compares is a hash of a secret
/// it never sees, so how long a lookup of a wrong token takes tells an
/// attacker nothing about any real token (there is no byte-by-byte
/// comparison of the token to time), and a copy of the table logs nobody in.
pub(super) async fn account_of_request(
    db: &AnyPool,
    headers: &HeaderMap,
) -> Result<Option<Account>, sqlx::Error> {
    let Some(token) = bearer_token(headers).filter(|token| looks_like_a_token(token)) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT t.id AS token_id, t.last_used_at,
                u.id, u.username, u.password_hash, u.auth_changed_at, u.is_admin, u.two_step
         FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
    )
    .bind(digest(token))
    .fetch_optional(db)
    .await?;
    let Some(row) = row else {
        tracing::debug!("API token refused: unknown or revoked");
        return Ok(None);
    };
    let token_id: String = row.try_get("token_id")?;
    let last_used: Option<i64> = row.try_get("last_used_at")?;
    let now = now_ms();
    if last_used.is_none_or(|at| now - at >= LAST_USED_EVERY_MS) {
        let written = sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(now)
        .bind(&token_id)
        .bind(now - LAST_USED_EVERY_MS)
        .execute(db)
        .await;
        // The token is good; a "last used" time not written is no reason
        // to refuse it.
        if let Err(error) = written {
            tracing::warn!(%error, "API token's last use not recorded");
        }
    }
    let mut account = Account::from_row(&row)?;
    account.token_id = Some(token_id);
    Ok(Some(account))
}

/// One token in the account page's list.
pub(super) struct TokenRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) created: String,
    /// "last used 5 minutes ago", or "never used".
    pub(super) last_used: String,
}

/// The user's tokens that still work, newest first.
pub(super) async fn rows(db: &AnyPool, user_id: &str) -> Result<Vec<TokenRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, created_at, last_used_at FROM api_tokens
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;
    let now = now_secs();
    let ago = |ms: i64| time_ago(now, u64::try_from(ms / 1000).unwrap_or(0));
    rows.iter()
        .map(|row| {
            let last_used: Option<i64> = row.try_get("last_used_at")?;
            Ok(TokenRow {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                created: ago(row.try_get("created_at")?),
                last_used: match last_used {
                    Some(ms) => format!("last used {}", ago(ms)),
                    None => "never used".to_owned(),
                },
            })
        })
        .collect()
}

/// The page that shows a new token, once.
#[derive(askama::Template)]
#[template(path = "token_created.html", config = "examples/login/askama.toml")]
struct TokenCreatedPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
    name: &'a str,
    token: &'a str,
    host: &'a str,
}

/// The "New token" form's field.
#[derive(Deserialize)]
pub(super) struct NewTokenFields {
    name: Option<String>,
}

/// Makes a token and shows it, this once. The page is not stored by the
/// browser (`Cache-Control: no-store`), and the token goes nowhere else:
/// not in a redirect, not in the session.
pub(super) async fn create(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    headers: HeaderMap,
    form: Submitted<NewTokenFields>,
) -> Result<Response, AppError> {
    let (state, auth, user) = (&state, &auth, &user);
    let refuse = |error: String| async move {
        account_page(
            StatusCode::BAD_REQUEST,
            state,
            auth,
            user,
            None,
            Some(&error),
        )
        .await
    };
    let name = match &form {
        Ok(Form(fields)) => fields.name.as_deref().unwrap_or_default().trim(),
        Err(rejection) => {
            log_rejection(rejection);
            return refuse(GARBLED.to_owned()).await;
        }
    };
    if name.is_empty() {
        return refuse("Please give the token a name, such as the script that will use it.".into())
            .await;
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return refuse(format!(
            "A token's name is at most {MAX_NAME_CHARS} characters, on one line."
        ))
        .await;
    }
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(&user.id)
    .fetch_one(&state.db)
    .await?;
    if count >= MAX_TOKENS {
        return refuse(format!(
            "You have {MAX_TOKENS} tokens already: revoke one you no longer use first."
        ))
        .await;
    }
    let token = new_token()?;
    let id = random_id().map_err(|error| AppError::Random(error.to_string()))?;
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(&user.id)
    .bind(name)
    .bind(digest(&token))
    .bind(now_ms())
    .execute(&state.db)
    .await?;
    tracing::info!(user_id = user.id, token_id = id, "API token made");
    Entry::new(&user.id, activity::TOKEN_CREATED)
        .detail(name)
        .in_browser(auth, client.ip())
        .await
        .save(&state.db)
        .await;
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("127.0.0.1:5000");
    let mut response = render(
        StatusCode::OK,
        &TokenCreatedPage {
            title: "Your new API token",
            username: &user.username,
            is_admin: user.is_admin,
            name,
            token: &token,
            host,
        },
    )?;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The "Revoke" form's field: the id of the token (not the token).
#[derive(Deserialize)]
pub(super) struct RevokeFields {
    token: Option<String>,
}

/// Revokes one of the user's tokens: it stops working at once. An id that
/// is not one of the user's live tokens revokes nothing.
pub(super) async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    session: axum_latch::SessionData,
    form: Submitted<RevokeFields>,
) -> Result<Response, AppError> {
    let id = match form {
        Ok(Form(fields)) => fields.token.unwrap_or_default(),
        Err(rejection) => {
            log_rejection(&rejection);
            return garbled_account_form(&state, &auth, &user).await;
        }
    };
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        let error = "That is not a token in the list: please try again.";
        return account_page(
            StatusCode::BAD_REQUEST,
            &state,
            &auth,
            &user,
            None,
            Some(error),
        )
        .await;
    }
    let revoked: Option<String> = sqlx::query_scalar(
        "UPDATE api_tokens SET revoked_at = $1
         WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL
         RETURNING name",
    )
    .bind(now_ms())
    .bind(&id)
    .bind(&user.id)
    .fetch_optional(&state.db)
    .await?;
    let Some(name) = revoked else {
        return Ok(back_to_account(&session, "That token was already revoked."));
    };
    tracing::info!(user_id = user.id, token_id = id, "API token revoked");
    Entry::new(&user.id, activity::TOKEN_REVOKED)
        .detail(&name)
        .in_browser(&auth, client.ip())
        .await
        .save(&state.db)
        .await;
    Ok(back_to_account(
        &session,
        &format!("The token \u{201c}{name}\u{201d} is revoked: it no longer works."),
    ))
}
