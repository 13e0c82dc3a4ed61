//! Remember-me: the store contract on every backend, revocable logins, and
//! what happens when the store goes away.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "redis")]
mod faults;
#[cfg(feature = "memory")]
mod revocable_login;
mod store;
