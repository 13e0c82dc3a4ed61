//! Remember-me: the store contract on every backend, what is particular to
//! the SQL and Redis stores, revocable logins, and what happens when the
//! store goes away; and the Redis store as a session registry's store.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "redis")]
mod faults;
#[cfg(feature = "redis")]
mod redis_cluster;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "memory")]
mod revocable_login;
#[cfg(feature = "redis")]
mod session_store_redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_store;
mod store;
