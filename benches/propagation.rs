//! Prints how long a session ended on one instance takes to be refused on
//! another: two instances of a latch app (each its own `Session` and `Login`
//! layers and its own `SessionRegistry`, sharing only the store, through
//! connections of their own), on Redis, PostgreSQL and SQLite. For each of
//! N logins: log in on A, check B lets the cookie in, log out on A, then ask
//! B with the copied cookie every 200 µs until it answers with the login
//! redirect; the time from the logout's response to that answer is one
//! sample.
//!
//! ```text
//! TEST_REDIS_URL=redis://127.0.0.1:6379 \
//! TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo bench --all-features --bench propagation [-- ENDINGS]
//! ```
//!
//! ENDINGS defaults to 1000. A backend whose URL is not set is left out
//! (SQLite always runs, in a temporary file). The targets: p99 under 1 s on
//! Redis and PostgreSQL; on SQLite, within the poll period (1 s).

mod support;

use axum::body::Body;
use axum::Router;
use axum_latch::registry::{SessionRegistry, SessionStore};
use axum_latch::stores::{PostgresStore, RedisStore, SqliteStore};
use axum_latch::Login;
use http::{Method, Request, StatusCode};
use std::time::{Duration, Instant};
use support::{call, latch_app, loader, set_cookies, users};

/// One instance of the app, with its registry over `store`.
async fn instance(store: impl SessionStore) -> Router {
    let registry = SessionRegistry::connect(store)
        .await
        .expect("the store answers");
    let login = Login::new(loader(users())).sessions(registry);
    latch_app(users(), login)
}

fn request(method: Method, uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(http::header::COOKIE, cookie);
    }
    request.body(Body::empty()).expect("a request")
}

/// Logs in on `a`, logs out there, and times until `b` refuses the copy.
async fn one_ending(a: &Router, b: &Router) -> Duration {
    let cookies = set_cookies(&call(a, request(Method::GET, "/login", None)).await);
    let cookie = format!("session={}", cookies["session"]);
    let seen = call(b, request(Method::GET, "/", Some(&cookie))).await;
    assert_eq!(seen.status(), StatusCode::OK, "B lets the login in first");
    let out = call(a, request(Method::POST, "/logout", Some(&cookie))).await;
    assert!(out.status().is_redirection(), "logout: {}", out.status());
    let ended = Instant::now();
    loop {
        let answer = call(b, request(Method::GET, "/", Some(&cookie))).await;
        if answer.status() != StatusCode::OK {
            return ended.elapsed();
        }
        assert!(
            ended.elapsed() < Duration::from_secs(30),
            "B never heard of the ending"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn measure(name: &str, a: Router, b: Router, endings: usize) {
    let mut samples = Vec::with_capacity(endings);
    for _ in 0..endings {
        samples.push(one_ending(&a, &b).await);
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<12} {endings:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        ms(percentile(&samples, 50.0)),
        ms(percentile(&samples, 90.0)),
        ms(percentile(&samples, 99.0)),
        ms(*samples.last().expect("at least one ending")),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test` runs this file too, without `--bench`: a smoke run then.
    let measuring = args.iter().any(|a| a == "--bench");
    let endings: usize = args
        .iter()
        .find(|a| *a != "--bench")
        .map(|n| n.parse().expect("ENDINGS is a number"))
        .unwrap_or(if measuring { 1000 } else { 3 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    rt.block_on(async {
        println!(
            "{:<12} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "store", "endings", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let tag = format!("{:x}", std::process::id());
        if let Ok(url) = std::env::var("TEST_REDIS_URL") {
            let prefix = format!("latch-propagation-{tag}:");
            let open = || async {
                let client = redis::Client::open(url.as_str()).expect("a Redis URL");
                let manager = redis::aio::ConnectionManager::new(client.clone())
                    .await
                    .expect("Redis answers");
                RedisStore::new(manager).prefix(&prefix).feed(client)
            };
            let a = instance(open().await).await;
            let b = instance(open().await).await;
            measure("redis", a, b, endings).await;
            let client = redis::Client::open(url.as_str()).expect("a Redis URL");
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("Redis answers");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut connection)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL")
                    .arg(keys)
                    .query_async(&mut connection)
                    .await;
            }
        }
        if let Ok(url) = std::env::var("TEST_POSTGRES_URL") {
            let schema = format!("latch_propagation_{tag}");
            let admin = sqlx::PgPool::connect(&url)
                .await
                .expect("PostgreSQL answers");
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .expect("a schema");
            let separator = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{separator}options=-c%20search_path%3D{schema}");
            let open = || async {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect(&url)
                    .await
                    .expect("PostgreSQL answers");
                PostgresStore::new(pool)
            };
            let first = open().await;
            first.migrate().await.expect("the tables");
            let a = instance(first).await;
            let b = instance(open().await).await;
            measure("postgres", a, b, endings).await;
            let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("sessions.db").display()
        );
        let open = || async {
            let pool = sqlx::SqlitePool::connect(&url).await.expect("SQLite opens");
            SqliteStore::new(pool)
        };
        let first = open().await;
        first.migrate().await.expect("the tables");
        let a = instance(first).await;
        let b = instance(open().await).await;
        measure(
            "sqlite",
            a,
            b,
            endings.min(100).min(if measuring { 100 } else { 2 }),
        )
        .await;
    });
    println!("\nThe time from the logout's response on instance A until instance B");
    println!("refuses the copied cookie. SQLite has no change feed: instances poll it");
    println!("every second, so its figures are the poll period (100 endings).");
}
