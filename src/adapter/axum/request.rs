//! Finding latch's one per-request state in a request's extensions (or
//! which layer should have put it there), and reading the request into it
//! while an extractor has the request.

use axum::extract::OriginalUri;
use http::{Extensions, HeaderMap, Uri};
use std::sync::Arc;

use crate::adapter::axum::rejection::MissingLayer;
use crate::login::context::LoginContext;
use crate::login::request::RequestState;
use crate::login::user::User;
use crate::session::state::RequestView;

/// The request's state, put there by the session layer.
pub(crate) fn request_state(extensions: &Extensions) -> Result<&Arc<RequestState>, MissingLayer> {
    extensions
        .get::<Arc<RequestState>>()
        .ok_or(MissingLayer::Session)
}

/// What latch reads of a request. Inside a nested router the URI has lost
/// its prefix: the original one says which paths the browser's cookies
/// could have.
fn view<'a>(headers: &'a HeaderMap, uri: &'a Uri, extensions: &'a Extensions) -> RequestView<'a> {
    let uri = extensions
        .get::<OriginalUri>()
        .map_or(uri, |original| &original.0);
    RequestView {
        headers,
        path: uri.path_and_query(),
        uri_host: uri.host(),
    }
}

/// The request's state, with its session read from the request.
pub(crate) fn session_state(
    headers: &HeaderMap,
    uri: &Uri,
    extensions: &Extensions,
) -> Result<Arc<RequestState>, MissingLayer> {
    let state = request_state(extensions)?;
    state.session.prime(&view(headers, uri, extensions));
    Ok(state.clone())
}

/// The request's login, as a `Login<U, _>` layer set it up, with what
/// finding the user needs read from the request (and, with `remember`,
/// what `Auth` needs: the remember cookie and the `User-Agent`).
pub(crate) fn login_context<U: User>(
    headers: &HeaderMap,
    uri: &Uri,
    extensions: &Extensions,
    remember: bool,
) -> Result<LoginContext<U>, MissingLayer> {
    let state = request_state(extensions)?;
    if state.login.second_layer() {
        return Err(MissingLayer::TwoLogins);
    }
    state.prime(&view(headers, uri, extensions), remember);
    LoginContext::new(state.clone()).ok_or(MissingLayer::Login)
}
