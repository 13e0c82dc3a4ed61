//! The test kit every suite includes (`#[path = "../support/mod.rs"] mod
//! support;` in each `tests/<suite>/main.rs`):
//!
//! - [`client`]: an in-process browser (a cookie jar over a `Router`);
//! - [`backend`]: PostgreSQL and Redis for the tests, from `TEST_POSTGRES_URL`
//!   and `TEST_REDIS_URL` or started by the kit, and visible skips;
//! - [`trace`]: latch's `tracing` events, captured per test;
//! - [`outage`]: a TCP proxy that takes a store away and gives it back;
//! - [`jwt`] and [`attack`]: hand-made tokens and the attacker's app;
//! - [`demo`]: the demo over real HTTP (with every store feature).
//!
//! Each suite uses part of it.

#![allow(dead_code, unused_imports)]

pub mod attack;
pub mod backend;
pub mod client;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub mod demo;
pub mod jwt;
pub mod outage;
pub mod trace;

pub use client::*;
