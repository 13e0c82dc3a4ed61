//! The stores latch ships, one per cargo feature: `memory`, `sqlite`,
//! `postgres` and `redis`. Each keeps revocable remember-me tokens
//! ([`RememberStore`](crate::remember::RememberStore)) and a session
//! registry's records and change feed
//! ([`SessionStore`](crate::registry::SessionStore)).

#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "memory")]
mod memory_sessions;
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use memory::MemoryStore;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_column;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_sessions;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sql::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sql::SqliteStore;

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_sessions;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisStore;
