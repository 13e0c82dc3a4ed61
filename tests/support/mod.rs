//! The test kit every suite includes (`#[path = "../support/mod.rs"] mod
//! support;` in each `tests/<suite>/main.rs`):
//!
//! - [`client`]: an in-process browser (a cookie jar over a `Router`);
//! - [`backend`]: PostgreSQL, Redis and a Redis Cluster for the tests, from
//!   `TEST_POSTGRES_URL`, `TEST_REDIS_URL` and `TEST_REDIS_CLUSTER_URLS` or
//!   started by the kit, and visible skips;
//! - [`trace`]: latch's `tracing` events, captured per test;
//! - [`outage`]: a TCP proxy that takes a store away and gives it back;
//! - [`fixtures`]: the users most suites log in;
//! - [`jwt`] and [`attack`]: hand-made tokens and the attacker's app;
//! - [`demo`]: the demo over real HTTP (with every store feature).
//!
//! Each suite uses part of it.

#![allow(dead_code, unused_imports, unused_macros)]

pub mod attack;
pub mod backend;
pub mod client;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub mod demo;
pub mod fixtures;
pub mod jwt;
pub mod outage;
pub mod trace;

pub use client::*;

/// One `#[tokio::test]` per test function, on the backend that `$open` (an
/// async fn giving `Option<Fixture>`; `None`: skipped) makes: each calls
/// `super::run($open().await, super::<function>)`, the `multi_thread` ones
/// on a runtime of `$threads` workers. Used inside a module per backend.
macro_rules! stamp_tests {
    ($open:path, $threads:tt;
        current_thread: $($current:ident),* ;
        multi_thread: $($multi:ident),* ;
    ) => {
        $(
            #[tokio::test]
            async fn $current() {
                super::run($open().await, super::$current).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = $threads)]
            async fn $multi() {
                super::run($open().await, super::$multi).await;
            }
        )*
    };
}
pub(crate) use stamp_tests;
