//! latch's core: sessions, logins, cross-origin checks, key rotation, the
//! login throttle, the user cache, events, API tokens and permissions.

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
mod throttle;
mod user_cache;
