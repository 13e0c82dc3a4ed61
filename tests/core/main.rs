//! latch's core: sessions, logins, cross-origin checks, key rotation, the
//! login throttle, the user cache, events, API tokens, permissions, and
//! the `testing` feature's logins, and two-step login.

#[path = "../support/mod.rs"]
mod support;

mod api_tokens;
mod cross_origin;
mod events;
mod key_rotation;
mod login;
mod permissions;
mod registry;
mod session;
mod testing;
mod throttle;
mod two_step;
mod user_cache;
