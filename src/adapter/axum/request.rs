//! Finding latch's one per-request state in a request's extensions, or
//! which layer should have put it there.

use http::Extensions;
use std::sync::Arc;

use crate::adapter::axum::rejection::MissingLayer;
use crate::login::context::LoginContext;
use crate::login::request::RequestState;
use crate::login::user::User;

/// The request's state, put there by the session layer.
pub(crate) fn request_state(extensions: &Extensions) -> Result<&Arc<RequestState>, MissingLayer> {
    extensions
        .get::<Arc<RequestState>>()
        .ok_or(MissingLayer::Session)
}

/// The request's login, as a `Login<U, _>` layer set it up.
pub(crate) fn login_context<U: User>(
    extensions: &Extensions,
) -> Result<LoginContext<U>, MissingLayer> {
    let state = request_state(extensions)?;
    LoginContext::new(state.clone()).ok_or(MissingLayer::Login)
}
