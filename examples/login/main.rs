//! latch's demo: Microdot's login example as an axum app, and a little more.
//!
//! ```sh
//! cargo run --all-features --example login    # then open http://127.0.0.1:5000
//! ```
//!
//! Users `susan` (password `hello`, an admin) and `david` (password `bye`).
//!
//! Environment:
//! - `PORT`: the port on 127.0.0.1 (default 5000).
//! - `SECRET_KEY`: signs the cookies, at least 32 bytes (`openssl rand -base64 48`).
//!   Without it a random key is made, and every login ends when the demo stops.
//! - `DATABASE_URL`: the user database, SQLite (default `sqlite://latch-demo.db`,
//!   created on first run) or PostgreSQL (`postgres://user@host/db`). The users
//!   table is made and seeded with the two users if needed; remember-me tokens
//!   and the records of who is logged in where are kept there too.
//! - `REDIS_URL`: keeps the remember-me tokens and the session records on
//!   Redis instead (`redis://127.0.0.1:6379`). Instances that share
//!   `SECRET_KEY`, the database and that store share logins, and a browser
//!   logged out on one is logged out on all (at once on Redis and
//!   PostgreSQL, within a second on SQLite).
//! - `MICRODOT_COMPAT=1`: Microdot interop mode. A Microdot app with the same
//!   `SECRET_KEY` and user ids shares logins with the demo, both ways;
//!   remember-me cookies are then Microdot's stateless tokens (no device
//!   list, no revocation). It needs `MICRODOT_COMPAT_UNTIL`, the date
//!   (`YYYY-MM-DD`, UTC) from which Microdot's own tokens are refused: the
//!   end of the move from Microdot.
//! - `RUST_LOG`: what to log (default `info,latch=debug`).
//!
//! Pages: `/` (logged in), `/login`, `/fresh` (a fresh login only), and
//! `/account` (a fresh login only): change the password, see where you're
//! logged in and log any of those browsers out, or log out everywhere
//! else; make and revoke API tokens; turn two-step login on or off; and
//! see the recent activity of your logins (logins, logouts, wrong
//! passwords, ...). The header's "Log out" button posts to `/logout`.
//!
//! Two-step login: once it is on (the account page shows a QR code for an
//! authenticator app, and ten single-use recovery codes), the password page
//! leads to `/login/two-step`, which asks for the app's 6-digit code (TOTP,
//! RFC 6238) or a recovery code before the login is made.
//!
//! `GET /api/me` answers JSON about the logged-in user, for a cookie login
//! or for an API token (`curl -H "Authorization: Bearer latch_..."`).
//!
//! `/admin` (admins only, with a fresh login) lists every user and where
//! each is logged in, and ends all of a user's sessions.

mod app;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,latch=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// `MICRODOT_COMPAT_UNTIL`: the first day (UTC) on which Microdot's own
/// tokens are refused.
fn microdot_compat_until() -> Result<std::time::SystemTime, String> {
    let example = "MICRODOT_COMPAT_UNTIL=2027-06-30";
    let value = std::env::var("MICRODOT_COMPAT_UNTIL").map_err(|_| {
        format!(
            "MICRODOT_COMPAT=1 needs MICRODOT_COMPAT_UNTIL, the date from which Microdot's \
             own cookies are refused (the end of the move from Microdot), such as {example}"
        )
    })?;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(value.trim(), &format).map_err(|error| {
        format!("MICRODOT_COMPAT_UNTIL must be a date such as {example}, not {value:?}: {error}")
    })?;
    Ok(date.midnight().assume_utc().into())
}

async fn run() -> Result<(), String> {
    let port = match std::env::var("PORT") {
        Ok(port) => port
            .parse::<u16>()
            .map_err(|_| format!("PORT must be a port number such as 5000, not {port:?}"))?,
        Err(_) => 5000,
    };
    let secret = std::env::var("SECRET_KEY").ok();
    let (secret_key, source) =
        app::secret_key_from(secret.as_deref()).map_err(|error| format!("SECRET_KEY: {error}"))?;
    if source == app::KeySource::Generated {
        tracing::warn!(
            "SECRET_KEY is not set: using a random key, so every login ends when the demo stops. \
             Set SECRET_KEY (at least 32 bytes, e.g. from `openssl rand -base64 48`) to keep them"
        );
    }
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| app::DEFAULT_DATABASE_URL.to_owned());
    let redis_url = std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let microdot_compat = match std::env::var("MICRODOT_COMPAT").as_deref() {
        Ok("1") => Some(microdot_compat_until()?),
        Ok("0") | Ok("") | Err(_) => None,
        Ok(other) => return Err(format!("MICRODOT_COMPAT must be 1 or 0, not {other:?}")),
    };
    let config = app::Config {
        secret_key,
        database_url: database_url.clone(),
        redis_url: redis_url.clone(),
        redis_prefix: app::DEFAULT_REDIS_PREFIX.to_owned(),
        remember_grace: axum_latch::remember::DEFAULT_GRACE,
        microdot_compat,
    };
    let router = app::build(config)
        .await
        .map_err(|error| error.to_string())?;

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            format!("cannot listen on {address}: {error} (set PORT to use another port)")
        })?;
    tracing::info!("user database: {database_url}");
    match &redis_url {
        Some(url) => tracing::info!("remember-me tokens and sessions: on Redis at {url}"),
        None => tracing::info!("remember-me tokens and sessions: in the user database"),
    }
    tracing::info!(
        "cookies are sent without the Secure attribute, because this demo serves plain HTTP \
         on localhost (Session::secure(false)); behind HTTPS, keep Secure on"
    );
    tracing::info!(
        "listening on http://{address} (log in as susan/hello or david/bye; Ctrl-C stops)"
    );
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping");
    })
    .await
    .map_err(|error| format!("the server stopped: {error}"))
}
