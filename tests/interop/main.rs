//! Interop with Microdot: its session and login tokens, compat mode, and
//! the demo beside a real Microdot app (`tests/microdot/app.py`).

#[path = "../support/mod.rs"]
mod support;

mod compat;
mod login;
#[cfg(all(feature = "sqlite", feature = "postgres", feature = "redis"))]
mod microdot_app;
mod session;
