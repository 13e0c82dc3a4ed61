//! The demo app: a user database (SQLite or PostgreSQL), argon2 password
//! hashes, revocable remember-me, a session registry, and the pages of
//! Microdot's login example, plus an account page that lists where the user
//! is logged in, their recent activity and their API tokens, two-step login
//! (an authenticator app's code or a recovery code after the password), a
//! JSON API (`/api/me`) for a cookie login or a token alike, and an admin
//! page.
//!
//! `main.rs` reads the environment and serves [`build`]'s router;
//! `tests/demo/site.rs` builds the same router and drives it over real HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use axum_latch::events::{ClientAddress, LoginEvent};
use axum_latch::next::is_safe_next;
use axum_latch::registry::SessionRegistry;
use axum_latch::throttle::Throttle;
use axum_latch::two_step::TwoStep;
use axum_latch::{
    Auth, AuthError, CrossOriginGuard, CurrentUser, FreshUser, KeyError, Login, Remember,
    SecretKey, Session, SessionData, User,
};
use serde::Deserialize;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::MigrateDatabase;
use sqlx::AnyPool;
use sqlx::Row;

#[path = "activity.rs"]
mod activity;
#[path = "admin.rs"]
mod admin;
#[path = "api.rs"]
mod api;
#[path = "hashing.rs"]
pub mod hashing;
#[path = "sessions.rs"]
mod sessions;
#[path = "store.rs"]
mod store;
#[path = "tokens.rs"]
mod tokens;
#[path = "two_step.rs"]
mod two_step;

use hashing::{Busy, Hasher};

/// Any error of setting the app up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the user database lives when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://latch-demo.db";

/// The fewest characters a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The longest password (in bytes) the app hashes: beyond it the form is refused.
const MAX_PASSWORD_BYTES: usize = 1024;

/// The users the database starts with: id, username, password.
pub const SEED_USERS: [(&str, &str, &str); 2] =
    [("user001", "susan", "hello"), ("user002", "david", "bye")];

/// The ids of the seed users who are admins: susan.
pub const SEED_ADMINS: [&str; 1] = ["user001"];

/// The prefix of the demo's keys in Redis.
pub const DEFAULT_REDIS_PREFIX: &str = "latch-demo:";

/// What the app needs to start.
#[derive(Debug)]
pub struct Config {
    /// Signs the session and remember-me cookies.
    pub secret_key: SecretKey,
    /// A `sqlite:` URL (the file is created if it is missing) or a
    /// `postgres:` URL. The users table is created and seeded if needed, and
    /// the remember-me tokens and the records of who is logged in where live
    /// there too unless `redis_url` is set.
    pub database_url: String,
    /// A `redis:` URL: the remember-me tokens and the session records live
    /// there instead, and instances hear of ended sessions through pub/sub.
    pub redis_url: Option<String>,
    /// The prefix of the demo's keys in Redis.
    pub redis_prefix: String,
    /// How long a rotated remember-me cookie keeps working, for the parallel
    /// requests of a browser that just restarted.
    pub remember_grace: Duration,
    /// Microdot interop mode until this time: logins are shared with a
    /// Microdot app that has the same secret key, both ways. Remember-me
    /// cookies are then Microdot's stateless tokens, which cannot be listed
    /// or revoked. After it, Microdot's own tokens are refused.
    pub microdot_compat: Option<SystemTime>,
}

/// Where the secret key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The `SECRET_KEY` environment variable.
    Environment,
    /// Made at random for this run: sessions end when the process does.
    Generated,
}

/// The secret key from the value of `SECRET_KEY`, or a random one without it.
/// A key shorter than 32 bytes is refused with latch's explanation.
pub fn secret_key_from(value: Option<&str>) -> Result<(SecretKey, KeySource), KeyError> {
    match value {
        Some(value) => Ok((SecretKey::new(value)?, KeySource::Environment)),
        None => Ok((SecretKey::generate()?, KeySource::Generated)),
    }
}

/// Opens (creating and seeding, if needed) the database and builds the app.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// login throttle counts failures per client address.
pub async fn build(config: Config) -> Result<Router, BoxError> {
    // Passwords are hashed on a thread per core, never more at once.
    let hasher = Hasher::per_core();
    let db = open_database(&config.database_url, &hasher).await?;

    // Logins of unknown usernames check the password against this hash, so
    // that they take as long as logins of real users.
    let dummy_hash = hasher.hash("not anyone's password".to_owned()).await?;
    let throttle = match &config.redis_url {
        Some(url) => Throttle::redis(store::connect_redis(url).await?).prefix(&config.redis_prefix),
        None => Throttle::in_memory(),
    };
    let recorder = activity::Recorder::new(db.clone());
    let login = Login::new({
        let db = db.clone();
        move |id: String| {
            let db = db.clone();
            async move { user_by_id(&db, &id).await }
        }
    })
    // API clients log in with a personal access token (see tokens.rs).
    .request_loader({
        let db = db.clone();
        move |headers: axum::http::HeaderMap| {
            let db = db.clone();
            async move { tokens::account_of_request(&db, &headers).await }
        }
    })
    // Every login, logout, failed login, ... goes to the activity table.
    .on_event({
        let recorder = recorder.clone();
        move |event: LoginEvent<String>| {
            let recorder = recorder.clone();
            async move { recorder.record_event(event).await }
        }
    })
    // Users with two-step login on type a code after the password (see
    // two_step.rs). Wrong codes count under the user in the password
    // form's throttle: starting over from the password gives no new tries.
    .two_step(
        TwoStep::new()
            .url("/login/two-step")?
            .throttle(throttle.clone()),
    );
    let (login, registry) = store::with_stores(login, &config).await?;
    let state = AppState {
        db,
        throttle,
        hasher,
        dummy_hash: dummy_hash.into(),
        registry,
        recorder,
    };
    let session = Session::new(config.secret_key).secure(false);
    let session = match config.microdot_compat {
        Some(until) => session.microdot_compat(until),
        None => session,
    };
    let router = Router::new()
        .route("/", get(index))
        .route("/login", get(login_page).post(login_submit))
        .route(
            "/login/two-step",
            get(two_step::code_page).post(two_step::code_submit),
        )
        .route("/fresh", get(fresh))
        .route("/logout", get(to_home).post(logout))
        .route("/account", get(account))
        .route("/account/password", get(to_account).post(change_password))
        .route(
            "/account/logout-everywhere",
            get(to_account).post(logout_everywhere),
        )
        .route(
            "/account/sessions/end",
            get(to_account).post(sessions::end_session),
        )
        .route("/account/tokens", get(to_account).post(tokens::create))
        .route(
            "/account/tokens/revoke",
            get(to_account).post(tokens::revoke),
        )
        .route(
            "/account/two-step",
            get(two_step::enrol_page).post(two_step::start),
        )
        .route(
            "/account/two-step/enable",
            get(to_two_step).post(two_step::enable),
        )
        .route(
            "/account/two-step/disable",
            get(to_account).post(two_step::disable),
        )
        .route("/admin", get(admin::page))
        .route(
            "/admin/sessions/end",
            get(admin::to_admin).post(admin::end_sessions),
        )
        .nest("/api", api::routes(&login))
        .fallback(not_found)
        .with_state(state)
        .layer(login)
        // This demo serves plain HTTP on localhost, so its cookies go
        // without `Secure`. Behind HTTPS, leave `secure` at its default.
        .layer(session)
        // Cross-site POSTs (login CSRF, forged logouts) are refused before
        // anything else runs.
        .layer(CrossOriginGuard::new())
        // Outside the login layer: the address its events record.
        .layer(middleware::from_fn(client_address));
    Ok(router)
}

/// Puts the connection's peer address in the request for latch's events
/// (the activity list shows it). The demo is served directly, not behind
/// a proxy; behind one, take the address the proxy gives, from a proxy
/// you trust only.
async fn client_address(mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    if let Some(address) = peer {
        request.extensions_mut().insert(ClientAddress(address));
    }
    next.run(request).await
}

#[derive(Clone)]
struct AppState {
    db: AnyPool,
    /// Failed logins, per username, account and address.
    throttle: Throttle,
    /// The password hashing threads.
    hasher: Hasher,
    dummy_hash: Arc<str>,
    /// Where every user is logged in: the admin page lists and ends them.
    registry: SessionRegistry,
    /// Writes the activity list; told which failed logins were codes.
    recorder: activity::Recorder,
}

// ---------------------------------------------------------------- users

/// A user of the demo, as stored in the `users` table.
#[derive(Clone, Debug)]
pub struct Account {
    id: String,
    username: String,
    /// The password hash, which is also latch's `auth_hash`: a new
    /// password ends every other login of the user.
    password_hash: String,
    /// When the password last changed, if it has since this column was
    /// added: what ends copies of Microdot's cookies in interop mode.
    auth_changed_at: Option<SystemTime>,
    /// Whether the user may use the admin page.
    is_admin: bool,
    /// Whether the user has two-step login on: a code after the password.
    two_step: bool,
    /// The id of the API token this request logged in with, if it did
    /// (a token login lasts for its request only).
    token_id: Option<String>,
}

impl Account {
    /// The user of a `users` row; `row` has its columns under their names.
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        let auth_changed_at = row
            .try_get::<Option<i64>, _>("auth_changed_at")?
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        Ok(Self {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            auth_changed_at,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            two_step: row.try_get::<i64, _>("two_step")? != 0,
            token_id: None,
        })
    }
}

impl User for Account {
    type Id = String;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }

    fn auth_hash_changed_at(&self) -> Option<SystemTime> {
        self.auth_changed_at
    }
}

/// Now, in milliseconds since the Unix epoch: the `auth_changed_at` of a
/// change made now, rounded up so that it is never before the change.
fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis() + 1).unwrap_or(i64::MAX)
}

/// 128 random bits as 22 characters of base64url: the ids of tokens and
/// activity entries.
fn random_id() -> Result<String, getrandom::Error> {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

async fn open_database(url: &str, hasher: &Hasher) -> Result<AnyPool, BoxError> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    if !sqlite && !url.starts_with("postgres:") && !url.starts_with("postgresql:") {
        return Err(format!(
            "DATABASE_URL must be a SQLite URL such as {DEFAULT_DATABASE_URL:?} \
             or a PostgreSQL URL such as \"postgres://user@localhost/db\", not {url:?}"
        )
        .into());
    }
    if sqlite && !sqlx::Sqlite::database_exists(url).await.unwrap_or(false) {
        sqlx::Sqlite::create_database(url)
            .await
            .map_err(|error| format!("cannot create the database {url:?}: {error}"))?;
    }
    let db = AnyPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .map_err(|error| format!("cannot open the database {url:?}: {error}"))?;
    // The same SQL for SQLite and PostgreSQL.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY NOT NULL,
            username TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            auth_changed_at BIGINT,
            is_admin BIGINT NOT NULL DEFAULT 0,
            two_step BIGINT NOT NULL DEFAULT 0,
            totp_secret TEXT,
            totp_last_step BIGINT,
            totp_pending_secret TEXT
        )",
    )
    .execute(&db)
    .await?;
    // A database made before the column was added gets it.
    if sqlx::query("SELECT auth_changed_at FROM users LIMIT 1")
        .fetch_optional(&db)
        .await
        .is_err()
    {
        sqlx::query("ALTER TABLE users ADD COLUMN auth_changed_at BIGINT")
            .execute(&db)
            .await?;
    }
    // Likewise `is_admin` (0 or 1: a BIGINT reads the same from SQLite and
    // PostgreSQL); the seed admins get it when the column is added, and
    // keep whatever it says afterwards.
    if sqlx::query("SELECT is_admin FROM users LIMIT 1")
        .fetch_optional(&db)
        .await
        .is_err()
    {
        sqlx::query("ALTER TABLE users ADD COLUMN is_admin BIGINT NOT NULL DEFAULT 0")
            .execute(&db)
            .await?;
        for id in SEED_ADMINS {
            sqlx::query("UPDATE users SET is_admin = 1 WHERE id = $1")
                .bind(id)
                .execute(&db)
                .await?;
        }
    }
    // And two-step login's columns and table.
    two_step::migrate(&db).await?;
    sqlx::query("CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users (lower(username))")
        .execute(&db)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&db)
        .await?;
    if count == 0 {
        for (id, username, password) in SEED_USERS {
            let hash = hasher.hash(password.to_owned()).await?;
            sqlx::query(
                "INSERT INTO users (id, username, password_hash, is_admin) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(username)
            .bind(hash)
            .bind(i64::from(SEED_ADMINS.contains(&id)))
            .execute(&db)
            .await?;
        }
        tracing::info!(
            "new user database {url}: users susan (password hello, an admin) \
             and david (password bye)"
        );
    }
    activity::create_table(&db).await?;
    tokens::create_table(&db).await?;
    Ok(db)
}

/// The user with this id: latch's user loader.
async fn user_by_id(db: &AnyPool, id: &str) -> Result<Option<Account>, sqlx::Error> {
    find_user(
        db,
        "SELECT id, username, password_hash, auth_changed_at, is_admin, two_step
         FROM users WHERE id = $1",
        id,
    )
    .await
}

/// The user with this username (compared without regard to case).
async fn user_by_username(db: &AnyPool, username: &str) -> Result<Option<Account>, sqlx::Error> {
    let sql = "SELECT id, username, password_hash, auth_changed_at, is_admin, two_step
               FROM users WHERE lower(username) = lower($1)";
    find_user(db, sql, username).await
}

async fn find_user(
    db: &AnyPool,
    sql: &'static str,
    value: &str,
) -> Result<Option<Account>, sqlx::Error> {
    let row = sqlx::query(sql).bind(value).fetch_optional(db).await?;
    row.as_ref().map(Account::from_row).transpose()
}

// ---------------------------------------------------------------- forms

/// A submitted form, read with axum's `Form`. Its fields are optional so
/// that a missing one gets the page's own message; a body that is not a
/// form, or that sends a field twice (which value was meant cannot be
/// told), is refused by `Form` and answered with the form again and a `400`,
/// never a server error.
type Submitted<T> = Result<Form<T>, FormRejection>;

/// The login form's fields.
#[derive(Deserialize)]
struct LoginFields {
    username: Option<String>,
    password: Option<String>,
    remember_me: Option<String>,
}

/// The change-password form's fields.
#[derive(Deserialize)]
struct PasswordFields {
    current_password: Option<String>,
    new_password: Option<String>,
}

/// What is wrong with a submitted form field.
enum FormProblem {
    /// A field is missing or empty.
    Missing,
    /// A field is longer than anything a person types.
    TooLong,
}

/// A field's value: it must be there, not empty, and of a length a person types.
fn field(value: &Option<String>) -> Result<&str, FormProblem> {
    match value.as_deref() {
        None | Some("") => Err(FormProblem::Missing),
        Some(value) if value.len() > MAX_PASSWORD_BYTES => Err(FormProblem::TooLong),
        Some(value) => Ok(value),
    }
}

/// Why a form was refused, for the log.
fn log_rejection(rejection: &FormRejection) {
    tracing::debug!(%rejection, "form refused");
}

/// `next` from a query string: only if it comes once and is a path on this
/// site (latch applies the same rule when it redirects).
fn safe_next(query: Option<&str>) -> Option<String> {
    let mut nexts = form_urlencoded::parse(query?.as_bytes()).filter(|(name, _)| name == "next");
    match (nexts.next(), nexts.next()) {
        (Some((_, next)), None) if is_safe_next(&next) => Some(next.into_owned()),
        _ => None,
    }
}

/// The login form's action: `/login`, keeping a safe `next`.
fn login_action(next: Option<&str>) -> String {
    match next {
        Some(next) => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish();
            format!("/login?{query}")
        }
        None => "/login".to_owned(),
    }
}

// ---------------------------------------------------------------- pages

#[derive(Template)]
#[template(path = "login.html", config = "examples/login/askama.toml")]
struct LoginPage<'a> {
    title: &'a str,
    action: String,
    username: &'a str,
    remember_me: bool,
    error: Option<&'a str>,
    /// Someone is logged in, but not freshly: ask them to confirm.
    confirm: bool,
}

#[derive(Template)]
#[template(path = "index.html", config = "examples/login/askama.toml")]
struct IndexPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
    notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "fresh.html", config = "examples/login/askama.toml")]
struct FreshPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
}

#[derive(Template)]
#[template(path = "account.html", config = "examples/login/askama.toml")]
struct AccountPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    min_password_chars: usize,
    sessions: Vec<sessions::SessionRow>,
    sessions_error: Option<&'a str>,
    tokens: Vec<tokens::TokenRow>,
    max_token_name_chars: usize,
    activity: Vec<activity::ActivityRow>,
    /// Whether two-step login is on, and how many recovery codes are left
    /// of how many.
    two_step: bool,
    recovery_codes_left: i64,
    recovery_codes: usize,
}

#[derive(Template)]
#[template(path = "not_found.html", config = "examples/login/askama.toml")]
struct NotFoundPage<'a> {
    title: &'a str,
}

/// Renders a page, with a status.
fn render(status: StatusCode, page: &impl Template) -> Result<Response, AppError> {
    Ok((status, Html(page.render()?)).into_response())
}

/// A failure of the server's own (database, template, worker thread): a
/// `500`, logged. Nothing a client sends leads here.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("login: {0}")]
    Auth(#[from] AuthError),
    #[error("session registry: {0}")]
    Registry(#[from] axum_latch::registry::RegistryError),
    #[error("no random bytes: {0}")]
    Random(String),
    #[error("two-step login: {0}")]
    TwoStep(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let AppError::Busy(_) = self {
            // Not a failure: too many logins at once.
            tracing::warn!("password hashing busy: a login was asked to come back");
            let body = "<!doctype html><title>Busy</title>\
                        <h1>Too many logins at once</h1><p>Please try again in a few seconds.</p>";
            let retry = [(axum::http::header::RETRY_AFTER, "5")];
            return (StatusCode::SERVICE_UNAVAILABLE, retry, Html(body)).into_response();
        }
        tracing::error!(error = %self, "request failed");
        let body = "<!doctype html><title>Server error</title>\
                    <h1>Something went wrong on our side</h1><p>Please try again in a moment.</p>";
        (StatusCode::INTERNAL_SERVER_ERROR, Html(body)).into_response()
    }
}

// ---------------------------------------------------------------- handlers

async fn index(
    CurrentUser(user): CurrentUser<Account>,
    session: SessionData,
) -> Result<Response, AppError> {
    let notice = take_notice(&session);
    render(
        StatusCode::OK,
        &IndexPage {
            title: "Home",
            username: &user.username,
            is_admin: user.is_admin,
            notice: notice.as_deref(),
        },
    )
}

async fn fresh(FreshUser(user): FreshUser<Account>) -> Result<Response, AppError> {
    render(
        StatusCode::OK,
        &FreshPage {
            title: "Fresh login",
            username: &user.username,
            is_admin: user.is_admin,
        },
    )
}

async fn login_page(
    user: Option<CurrentUser<Account>>,
    session: SessionData,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let user = user.map(|CurrentUser(user)| user);
    let message = take_login_message(&session);
    let next = safe_next(query.as_deref());
    // Someone logged in who lands here was most likely sent back for a page
    // that needs a fresh login, from a login that "remember me" restored:
    // ask them to confirm, with their username and "remember me" filled in.
    let username = user.as_ref().map_or("", |user| user.username.as_str());
    render(
        StatusCode::OK,
        &LoginPage {
            title: if user.is_some() {
                "Confirm it's you"
            } else {
                "Log in"
            },
            action: login_action(next.as_deref()),
            username,
            remember_me: user.is_some(),
            error: message.as_deref(),
            confirm: user.is_some(),
        },
    )
}

/// The login form's answer: `303` to `next` on success; the form again with
/// a message otherwise, `200` for a wrong username or password and `400` for
/// a form that is missing or repeats a field.
async fn login_submit(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    auth: Auth<Account>,
    session: SessionData,
    RawQuery(query): RawQuery,
    form: Submitted<LoginFields>,
) -> Result<Response, AppError> {
    let action = login_action(safe_next(query.as_deref()).as_deref());
    let show_form = |status, error: &str, username: &str, remember_me| {
        render(
            status,
            &LoginPage {
                title: "Log in",
                action: action.clone(),
                username,
                remember_me,
                error: Some(error),
                confirm: false,
            },
        )
    };
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            log_rejection(&rejection);
            return show_form(StatusCode::BAD_REQUEST, GARBLED, "", false);
        }
    };
    let remember_me = form
        .remember_me
        .as_deref()
        .is_some_and(|value| !value.is_empty());
    let typed_username = form.username.as_deref().unwrap_or("");
    let typed_username = if typed_username.len() > 200 {
        ""
    } else {
        typed_username
    };
    let (username, password) = match (field(&form.username), field(&form.password)) {
        (Ok(username), Ok(password)) => (username.trim(), password),
        (Err(FormProblem::Missing), _) | (_, Err(FormProblem::Missing)) => {
            return show_form(
                StatusCode::BAD_REQUEST,
                "Please enter both your username and your password.",
                typed_username,
                remember_me,
            )
        }
        _ => {
            return show_form(
                StatusCode::BAD_REQUEST,
                GARBLED,
                typed_username,
                remember_me,
            )
        }
    };
    let address = Some(client.ip());
    let user = user_by_username(&state.db, username).await?;
    // Counted under the username as typed and the account it names, before
    // the password is checked: a burst gets no more checks than the limit.
    let account = user.as_ref().map(|user| &user.id);
    let attempt = match state.throttle.attempt(username, account, address).await {
        Ok(attempt) => attempt,
        Err(throttled) => {
            tracing::info!(username, address = %client.ip(), "login throttled");
            // Recorded under the account the username names, if any: its
            // owner sees on the account page that someone tried.
            auth.report_throttled(user.as_ref().map(|user| user.id.clone()), &throttled);
            let minutes = throttled.retry_after_secs().div_ceil(60);
            let plural = if minutes == 1 { "" } else { "s" };
            let message = format!(
                "Too many failed logins. Please wait {minutes} minute{plural} before trying again."
            );
            let mut response = show_form(
                StatusCode::TOO_MANY_REQUESTS,
                &message,
                typed_username,
                remember_me,
            )?;
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                throttled.retry_after_secs().into(),
            );
            return Ok(response);
        }
    };
    let hash = user
        .as_ref()
        .map_or(&*state.dummy_hash, |user| user.password_hash.as_str());
    // A turn on a hashing thread; a burst that finds them all busy waits,
    // or is told to come back (503): its password was not checked, so its
    // attempt is taken back.
    let turn = match state.hasher.turn().await {
        Ok(turn) => turn,
        Err(busy) => {
            attempt.not_checked().await;
            return Err(busy.into());
        }
    };
    let matches = turn.verify(password.to_owned(), hash.to_owned()).await?;
    match user {
        Some(user) if matches && user.two_step => {
            // The password is right; the code is next. latch counts the
            // codes under the user apart from the passwords, so this reset
            // of the password count gives no new tries at the code.
            attempt.succeeded().await;
            tracing::info!(user_id = user.id, "password right: code next");
            Ok(auth
                .begin_two_step(&user, Remember::from(remember_me))
                .await?
                .into_response())
        }
        Some(user) if matches => {
            attempt.succeeded().await;
            log_in(&auth, &session, &user, remember_me).await
        }
        user => {
            attempt.failed();
            let user_id = user.map(|user| user.id);
            tracing::info!(user_id, "failed login");
            auth.report_failed_login(user_id);
            show_form(
                StatusCode::OK,
                "That username and password do not match. Please try again.",
                typed_username,
                remember_me,
            )
        }
    }
}

/// Logs the user in. If "remember me" cannot be saved (its store is down),
/// the user is logged in for this browser session only, and told so.
async fn log_in(
    auth: &Auth<Account>,
    session: &SessionData,
    user: &Account,
    remember_me: bool,
) -> Result<Response, AppError> {
    match auth.login_user(user, Remember::from(remember_me)).await {
        Ok(redirect) => Ok(redirect.into_response()),
        Err(AuthError::Remember(error)) => {
            tracing::error!(%error, user_id = user.id, "remember me not saved; logging in without it");
            let redirect = auth.login_user(user, Remember::Off).await?;
            save_notice(
                session,
                "You are logged in, but this browser could not be remembered just now: \
                 you will need to log in again after closing it.",
            );
            Ok(redirect.into_response())
        }
        Err(error) => Err(error.into()),
    }
}

async fn logout(auth: Auth<Account>) -> Redirect {
    auth.logout_user().await;
    Redirect::to("/")
}

async fn to_home() -> Redirect {
    Redirect::to("/")
}

async fn to_account() -> Redirect {
    Redirect::to("/account")
}

async fn to_two_step() -> Redirect {
    Redirect::to("/account/two-step")
}

/// The session key of the account page's one-time notice.
const NOTICE: &str = "notice";

async fn account(
    State(state): State<AppState>,
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    session: SessionData,
) -> Result<Response, AppError> {
    let notice = take_notice(&session);
    account_page(
        StatusCode::OK,
        &state,
        &auth,
        &user,
        notice.as_deref(),
        None,
    )
    .await
}

async fn account_page(
    status: StatusCode,
    state: &AppState,
    auth: &Auth<Account>,
    user: &Account,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let (sessions, sessions_error) = sessions::rows(auth).await;
    let tokens = tokens::rows(&state.db, &user.id).await?;
    let this_session = auth.session_id().await;
    let activity = activity::rows(&state.db, &user.id, this_session.as_deref()).await?;
    let recovery_codes_left = match user.two_step {
        true => two_step::codes_left(&state.db, &user.id).await?,
        false => 0,
    };
    render(
        status,
        &AccountPage {
            title: "Your account",
            username: &user.username,
            is_admin: user.is_admin,
            notice,
            error,
            min_password_chars: MIN_PASSWORD_CHARS,
            sessions,
            sessions_error,
            tokens,
            max_token_name_chars: tokens::MAX_NAME_CHARS,
            activity,
            two_step: user.two_step,
            recovery_codes_left,
            recovery_codes: two_step::RECOVERY_CODES,
        },
    )
}

/// The session key of the login page's one-time message.
const LOGIN_MESSAGE: &str = "login_message";

/// Saves a message for the login page to show once: why the browser was
/// sent back to it.
fn save_login_message(session: &SessionData, message: &str) {
    save_once(session, LOGIN_MESSAGE, message);
}

/// Takes the message saved for the login page, if any.
fn take_login_message(session: &SessionData) -> Option<String> {
    take_once(session, LOGIN_MESSAGE)
}

/// Saves a message for the next page to show once.
fn save_notice(session: &SessionData, notice: &str) {
    save_once(session, NOTICE, notice);
}

/// Takes the message saved for this page, if any.
fn take_notice(session: &SessionData) -> Option<String> {
    take_once(session, NOTICE)
}

/// Keeps `message` in the session under `key` until a page takes it.
fn save_once(session: &SessionData, key: &str, message: &str) {
    if let Err(error) = session.insert(key, message) {
        tracing::error!(%error, key, "one-time message not saved");
    }
}

/// Takes the message kept under `key`, if any: it shows once.
fn take_once(session: &SessionData, key: &str) -> Option<String> {
    let message: Option<String> = session.get(key);
    if message.is_some() {
        session.remove(key);
    }
    message
}

/// What a form whose body could not be read says.
pub(super) const GARBLED: &str = "The form came in garbled: please try again.";

/// The account page again, `400`, for a form of it that could not be read.
async fn garbled_account_form(
    state: &AppState,
    auth: &Auth<Account>,
    user: &Account,
) -> Result<Response, AppError> {
    account_page(
        StatusCode::BAD_REQUEST,
        state,
        auth,
        user,
        None,
        Some(GARBLED),
    )
    .await
}

/// Saves a message for the account page to show once, and goes there.
fn back_to_account(session: &SessionData, notice: &str) -> Response {
    save_notice(session, notice);
    Redirect::to("/account").into_response()
}

async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    session: SessionData,
    form: Submitted<PasswordFields>,
) -> Result<Response, AppError> {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            log_rejection(&rejection);
            return garbled_account_form(&state, &auth, &user).await;
        }
    };
    let (current, new) = match (field(&form.current_password), field(&form.new_password)) {
        (Ok(current), Ok(new)) => (current, new),
        (Err(FormProblem::Missing), _) | (_, Err(FormProblem::Missing)) => {
            let error = "Please enter your current password and a new one.";
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
        _ => {
            return garbled_account_form(&state, &auth, &user).await;
        }
    };
    // The current password is a password check too: throttled under the
    // account, with the login form's count.
    let attempt = match state
        .throttle
        .attempt_account(&user.id, Some(client.ip()))
        .await
    {
        Ok(attempt) => attempt,
        Err(throttled) => {
            auth.report_throttled(Some(user.id.clone()), &throttled);
            let error = "Too many wrong passwords. Please wait a few minutes and try again.";
            let mut response = account_page(
                StatusCode::TOO_MANY_REQUESTS,
                &state,
                &auth,
                &user,
                None,
                Some(error),
            )
            .await?;
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                throttled.retry_after_secs().into(),
            );
            return Ok(response);
        }
    };
    let turn = match state.hasher.turn().await {
        Ok(turn) => turn,
        Err(busy) => {
            attempt.not_checked().await;
            return Err(busy.into());
        }
    };
    let matches = turn
        .verify(current.to_owned(), user.password_hash.clone())
        .await?;
    if !matches {
        attempt.failed();
        // A wrong password, as at the login form: the activity list shows it.
        auth.report_failed_login(Some(user.id.clone()));
        let error = "Your current password is not right, so the password was not changed.";
        return account_page(StatusCode::OK, &state, &auth, &user, None, Some(error)).await;
    }
    attempt.succeeded().await;
    if new.chars().count() < MIN_PASSWORD_CHARS {
        let error = format!("Your new password needs at least {MIN_PASSWORD_CHARS} characters.");
        return account_page(StatusCode::OK, &state, &auth, &user, None, Some(&error)).await;
    }
    let hash = state.hasher.hash(new.to_owned()).await?;
    sqlx::query("UPDATE users SET password_hash = $1, auth_changed_at = $3 WHERE id = $2")
        .bind(hash)
        .bind(&user.id)
        .bind(now_ms())
        .execute(&state.db)
        .await?;
    stay_logged_in(&state, &auth, &user).await?;
    tracing::info!(user_id = user.id, "password changed");
    activity::Entry::new(&user.id, activity::PASSWORD_CHANGED)
        .in_browser(&auth, client.ip())
        .await
        .save(&state.db)
        .await;
    Ok(back_to_account(
        &session,
        "Your password is changed. Every other browser that was logged in as you is logged out.",
    ))
}

/// Ends every other session of the user, on every instance, with their
/// remember-me cookies; this browser stays logged in (and remembered).
async fn logout_everywhere(
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    session: SessionData,
) -> Result<Response, AppError> {
    auth.end_other_sessions().await?;
    tracing::info!(user_id = user.id, "logged out everywhere else");
    Ok(back_to_account(
        &session,
        "Every other browser and device that was logged in as you is logged out. This one stays in.",
    ))
}

/// After the user's `auth_hash` changed: keeps this browser logged in,
/// while every other session and remember-me cookie of the user stops working.
async fn stay_logged_in(
    state: &AppState,
    auth: &Auth<Account>,
    user: &Account,
) -> Result<(), AppError> {
    match user_by_id(&state.db, &user.id).await? {
        Some(updated) => {
            if !auth.update_user(&updated).await {
                tracing::warn!(user_id = user.id, "this session was not updated");
            }
        }
        None => auth.logout_user().await,
    }
    Ok(())
}

async fn not_found() -> Result<Response, AppError> {
    render(StatusCode::NOT_FOUND, &NotFoundPage { title: "Not found" })
}
