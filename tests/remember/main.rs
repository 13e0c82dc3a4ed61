//! Remember-me and the session registry: the store contracts on every
//! backend, what is particular to the SQL and Redis stores, revocable
//! logins, and what happens when the store goes away.

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
mod session_store;
#[cfg(feature = "redis")]
mod session_store_redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_store;
mod store;
