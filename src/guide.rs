//! Guides for moving an app to latch from another login library: from
//! [Microdot](from_microdot), [Flask-Login](from_flask_login) and
//! [axum-login](from_axum_login): what each call becomes, and what behaves
//! differently after the move.

#[doc = include_str!("../docs/guide/from-microdot.md")]
pub mod from_microdot {}

#[doc = include_str!("../docs/guide/from-flask-login.md")]
pub mod from_flask_login {}

#[doc = include_str!("../docs/guide/from-axum-login.md")]
pub mod from_axum_login {}
