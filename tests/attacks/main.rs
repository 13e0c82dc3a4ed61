//! Attacks on latch's cookies: tampered, forged, expired and replayed
//! tokens, and open redirects through `next`; on API token logins, login
//! events and permission checks; and on two-step logins. Each refused case
//! also pins the check that refused it, through latch's `debug` events.

#[path = "../support/mod.rs"]
mod support;

mod cookies;
mod expired_sessions;
mod forged_tokens;
mod open_redirect;
#[cfg(feature = "memory")]
mod registry;
mod remember_replay;
#[cfg(feature = "memory")]
mod tokens_and_events;
#[cfg(feature = "memory")]
mod two_step;
