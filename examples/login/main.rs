//! latch's demo: Microdot's login example as an axum app, and a little more.
//!
//! ```sh
//! cargo run --example login            # then open http://127.0.0.1:5000
//! ```
//!
//! Users `susan` (password `hello`) and `david` (password `bye`).
//!
//! Environment:
//! - `PORT`: the port on 127.0.0.1 (default 5000).
//! - `SECRET_KEY`: signs the cookies, at least 32 bytes (`openssl rand -base64 48`).
//!   Without it a random key is made, and every login ends when the demo stops.
//! - `DATABASE_URL`: the SQLite user database (default `sqlite://latch-demo.db`),
//!   created with the two users on first run.
//! - `RUST_LOG`: what to log (default `info,latch=debug`).

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
    let config = app::Config {
        secret_key,
        database_url: database_url.clone(),
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
    tracing::info!(
        "cookies are sent without the Secure attribute, because this demo serves plain HTTP \
         on localhost (Session::secure(false)); behind HTTPS, keep Secure on"
    );
    tracing::info!(
        "listening on http://{address} (log in as susan/hello or david/bye; Ctrl-C stops)"
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stopping");
        })
        .await
        .map_err(|error| format!("the server stopped: {error}"))
}
