//! Where the demo keeps what lives beyond one request, besides the users:
//! the remember-me tokens and the session registry's records, both in one
//! store: on Redis with `REDIS_URL`, else in the user database (SQLite or
//! PostgreSQL).

use std::time::Duration;

use axum_latch::registry::{SessionRegistry, SessionStore};
use axum_latch::remember::{RememberStore, RevocableRemember, Theft};
use axum_latch::stores::{PostgresStore, RedisStore, SqliteStore};
use axum_latch::{Login, UserLoader};

use super::{Account, BoxError, Config};

/// How often expired remember-me tokens are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);

/// How often a browser's "last active" time is written: the account page
/// shows it to the minute.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Keeps remember-me tokens and the session registry's records on Redis
/// with `redis_url`, else in the user database. In Microdot interop mode,
/// remember-me cookies are Microdot's stateless tokens, so only the
/// registry uses the store.
///
/// The registry reads every ending still in force before the demo serves:
/// if the store cannot be reached, the demo does not start. It is returned
/// too, for the admin page.
pub(super) async fn with_stores<L: UserLoader<Account>>(
    login: Login<Account, L>,
    config: &Config,
) -> Result<(Login<Account, L>, SessionRegistry), BoxError> {
    if let Some(url) = &config.redis_url {
        // Pub/sub needs a connection of its own: other instances' endings
        // are heard through it at once.
        let client = redis_client(url)?;
        let store = RedisStore::new(connect_redis(url).await?)
            .prefix(&config.redis_prefix)
            .feed(client);
        return keep_in(login, store, config).await;
    }
    let url = &config.database_url;
    if url.starts_with("sqlite:") {
        let store = SqliteStore::new(sqlx::SqlitePool::connect(url).await?);
        store.migrate().await?;
        keep_in(login, store, config).await
    } else {
        let store = PostgresStore::new(sqlx::PgPool::connect(url).await?);
        store.migrate().await?;
        keep_in(login, store, config).await
    }
}

/// Puts the remember-me tokens (unless in Microdot interop mode) and the
/// session registry in `store`.
async fn keep_in<S, L>(
    login: Login<Account, L>,
    store: S,
    config: &Config,
) -> Result<(Login<Account, L>, SessionRegistry), BoxError>
where
    S: RememberStore + SessionStore + Clone,
    L: UserLoader<Account>,
{
    let registry = SessionRegistry::builder(store.clone())
        .touch_every(TOUCH_EVERY)
        .connect()
        .await
        .map_err(|error| format!("cannot read the ended sessions: {error}"))?;
    let login = match config.microdot_compat {
        Some(_) => login,
        None => login.remember_tokens(revocable(store, config.remember_grace, &registry)),
    };
    // After `remember_tokens`: ending a session revokes its remember-me token.
    Ok((login.sessions(registry.clone()), registry))
}

/// Remember-me tokens that are rotated, listed and revoked. When a copied
/// remember cookie is detected, every session of the user ends, on every
/// instance: whoever used the copy first may already hold a session made
/// from it. The user then logs in again with the password.
fn revocable<S: RememberStore + Clone>(
    store: S,
    grace: Duration,
    registry: &SessionRegistry,
) -> RevocableRemember<S> {
    let registry = registry.clone();
    let tokens = RevocableRemember::new(store)
        .grace(grace)
        .on_theft(move |theft: Theft| {
            let registry = registry.clone();
            async move {
                match registry.end_all(&theft.user_id).await {
                    Ok(()) => tracing::warn!(user_id = %theft.user_id, device = theft.device, "copied remember cookie: user logged out everywhere"),
                    Err(error) => tracing::error!(%error, user_id = %theft.user_id, "copied remember cookie: sessions not ended"),
                }
            }
        });
    tokens.spawn_purge(PURGE_EVERY);
    tokens
}

fn redis_client(url: &str) -> Result<redis::Client, BoxError> {
    redis::Client::open(url).map_err(|error| format!("REDIS_URL {url:?}: {error}").into())
}

/// A Redis connection that fails fast when Redis is down, so that
/// requests do not wait on it.
pub(super) async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager, BoxError> {
    let settings = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1);
    let manager = redis::aio::ConnectionManager::new_with_config(redis_client(url)?, settings)
        .await
        .map_err(|error| format!("cannot reach Redis at {url:?}: {error}"))?;
    Ok(manager)
}
