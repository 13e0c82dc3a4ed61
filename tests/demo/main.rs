//! The demo (`examples/login`): over HTTP, as two instances sharing a
//! store, and in headless Chromium.

#[path = "../support/mod.rs"]
mod support;

mod activity;
mod admin;
mod browser;
mod instances;
mod sessions;
mod site;
mod tokens;
mod two_step;
