//! latch's core: sessions, logins, cross-origin checks, key rotation, the
//! login throttle, the user cache, and the `testing` feature's logins.

#[path = "../support/mod.rs"]
mod support;

mod cross_origin;
mod key_rotation;
mod login;
mod registry;
mod session;
mod testing;
mod throttle;
mod user_cache;
