//! What `Login::cache_users` saves per request when the user loader queries
//! SQLite, as the demo's does: one router call in process per request.
//!
//! ```text
//! cargo bench --all-features --bench user_cache
//! ```
//!
//! Every case answers `GET /`, a `CurrentUser` route, with "Hello, susan!"
//! for a request with a valid session cookie, and is checked to answer so
//! before it is timed. The SQLite cases use the demo's user table and its
//! loader's query (`examples/login/app.rs`, where the loader is private, so
//! it is repeated here unchanged) through an `AnyPool` of 4 connections as
//! in the demo, on a database file in a temporary directory switched to WAL
//! mode (the demo keeps SQLite's default journal). The last case loads the
//! same user from a `HashMap`, for reference.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use axum_latch::{Auth, CurrentUser, Login, Remember, SecretKey, Session, User, UserLoader};
use criterion::{criterion_group, criterion_main, Criterion};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use support::{call, get_request, set_cookies, KEY};

/// The demo's first user: id, username and password.
const SUSAN: (&str, &str, &str) = ("user001", "susan", "hello");

/// The demo's query for latch's user loader.
const USER_BY_ID: &str =
    "SELECT id, username, password_hash, session_version FROM users WHERE id = $1";

/// A user of the demo, as its `users` table stores it.
#[derive(Clone, Debug)]
struct Account {
    id: String,
    username: String,
    /// Not read here: the demo checks logins against it.
    #[allow(dead_code)]
    password_hash: String,
    /// The password hash and the session version, as the demo's `auth_hash`.
    auth: String,
}

impl Account {
    /// A user from a row of the table, as the demo makes it.
    fn new(id: String, username: String, password_hash: String, session_version: i64) -> Self {
        let auth = format!("{password_hash}\n{session_version}");
        Self {
            id,
            username,
            password_hash,
            auth,
        }
    }
}

impl User for Account {
    type Id = String;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn auth_hash(&self) -> &[u8] {
        self.auth.as_bytes()
    }
}

/// The demo's user loader: its query, read as the demo reads it.
async fn user_by_id(db: &AnyPool, id: &str) -> Result<Option<Account>, sqlx::Error> {
    let row = sqlx::query(USER_BY_ID).bind(id).fetch_optional(db).await?;
    row.map(|row| {
        Ok(Account::new(
            row.try_get("id")?,
            row.try_get("username")?,
            row.try_get("password_hash")?,
            row.try_get("session_version")?,
        ))
    })
    .transpose()
}

/// A login layer whose loader queries `db`.
fn sqlite_login(db: &AnyPool) -> Login<Account, impl UserLoader<Account>> {
    let db = db.clone();
    Login::new(move |id: String| {
        let db = db.clone();
        async move { user_by_id(&db, &id).await }
    })
}

/// A login layer whose loader reads a map of the same users.
fn map_login(users: Arc<HashMap<String, Account>>) -> Login<Account, impl UserLoader<Account>> {
    Login::new(move |id: String| std::future::ready(Ok::<_, Infallible>(users.get(&id).cloned())))
}

/// The demo's user database, in WAL mode, in `dir`, with its table and users.
async fn demo_database(dir: &std::path::Path) -> Result<AnyPool, Box<dyn std::error::Error>> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", dir.join("users.db").display());
    let db = AnyPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
        .fetch_one(&db)
        .await?;
    assert_eq!(mode, "wal", "the database is in WAL mode");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS users (
            id TEXT PRIMARY KEY NOT NULL,
            username TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            session_version BIGINT NOT NULL DEFAULT 0
        )",
    )
    .execute(&db)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users (lower(username))")
        .execute(&db)
        .await?;
    for (id, username, password) in [SUSAN, ("user002", "david", "bye")] {
        sqlx::query("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(username)
            .bind(password_auth::generate_hash(password))
            .execute(&db)
            .await?;
    }
    Ok(db)
}

/// The app: `GET /` greets the logged-in user, `GET /login` logs `user` in.
fn demo_app(login: Login<Account, impl UserLoader<Account>>, user: Account) -> Router {
    let session = Session::new(SecretKey::new(KEY).expect("a long enough key")).secure(false);
    Router::new()
        .route(
            "/",
            get(|CurrentUser(user): CurrentUser<Account>| async move {
                format!("Hello, {}!", user.username)
            }),
        )
        .route(
            "/login",
            get(move |auth: Auth<Account>| {
                let user = user.clone();
                async move { auth.login_user(&user, Remember::Off).await.map_err(|_| ()) }
            }),
        )
        .layer(login)
        .layer(session)
}

/// Logs in on `app` and returns the `Cookie` header of the new session,
/// checked to be answered with the greeting.
async fn session_cookie(app: &Router) -> String {
    let request = Request::get("/login")
        .body(Body::empty())
        .expect("a valid request");
    let cookies = set_cookies(&call(app, request).await);
    let cookie = format!("session={}", cookies["session"]);
    let response = call(app, get_request(Some(&cookie))).await;
    assert_eq!(response.status(), StatusCode::OK, "the session is accepted");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .expect("the body can be read");
    assert_eq!(&body[..], b"Hello, susan!");
    cookie
}

/// The three cases, each on an app of its own with a session of its own.
fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = rt
        .block_on(demo_database(dir.path()))
        .expect("the demo's database");
    let susan = rt
        .block_on(user_by_id(&db, SUSAN.0))
        .expect("the query works")
        .expect("susan is in the database");
    let users = Arc::new(HashMap::from([(susan.id.clone(), susan.clone())]));

    let cases = [
        ("sqlite loader", demo_app(sqlite_login(&db), susan.clone())),
        (
            "sqlite loader + cache_users(10_000, 5 s)",
            demo_app(
                sqlite_login(&db).cache_users(10_000, Duration::from_secs(5)),
                susan.clone(),
            ),
        ),
        (
            "in-memory map loader",
            demo_app(map_login(users), susan.clone()),
        ),
    ];
    let mut group = c.benchmark_group("user_cache");
    for (name, app) in cases {
        // A new session for each case: it stays clear of renewal (a minute).
        let cookie = rt.block_on(session_cookie(&app));
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(call(&app, get_request(Some(&cookie))).await) })
        });
    }
    group.finish();
}

criterion_group! {
    name = user_cache;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(user_cache);
