//! The errors of logging in and out.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::rejection::MissingLayer;
use crate::remember::RememberError;

/// Why [`Auth::login_user`](crate::Auth::login_user) or
/// [`Auth::logout_user`](crate::Auth::logout_user) failed.
///
/// As a response it is `500 Internal Server Error`, and the error is logged;
/// an app that wants to do better (say, log the user in without "remember
/// me" when the remember store is down) matches on it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The user's id cannot be stored as JSON.
    #[error("the user id cannot be stored in the session: {0}")]
    UserId(#[source] serde_json::Error),
    /// The remember-me token could not be made. The user *is* logged in,
    /// for this browser session only.
    #[error(transparent)]
    Remember(#[from] RememberError),
    /// The router lacks a latch layer.
    #[error(transparent)]
    MissingLayer(#[from] MissingLayer),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        if let AuthError::MissingLayer(missing) = self {
            return missing.into_response();
        }
        tracing::error!(target: "latch", error = %self, "login or logout failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
    }
}
