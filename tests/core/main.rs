//! latch's core: sessions, logins, cross-origin checks, key rotation, the
//! login throttle and the user cache.

#[path = "../support/mod.rs"]
mod support;

mod cross_origin;
mod key_rotation;
mod login;
mod registry;
mod session;
mod throttle;
mod user_cache;
