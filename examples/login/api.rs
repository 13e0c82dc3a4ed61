//! The demo's JSON API: `GET /api/me`, the logged-in user, for a browser's
//! cookie login and for an API client's token alike.
//!
//! The group always answers as an API (`login.required().api()`): a request
//! without a login gets `401` and JSON, never the login page, with
//! `WWW-Authenticate: Bearer` (and `error="invalid_token"` when the token
//! it sent was refused).

use axum::http::header::CACHE_CONTROL;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use axum_latch::{CurrentUser, Login};
use serde_json::json;

use super::{Account, AppState};

/// The routes under `/api`.
pub(super) fn routes<L>(login: &Login<Account, L>) -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route_layer(login.required().api())
        .fallback(unknown)
}

/// `{"id", "username", "is_admin", "via"}`: `via` is `"token"` for a
/// token login, `"session"` for a cookie login.
async fn me(CurrentUser(user): CurrentUser<Account>) -> Response {
    let via = if user.token_id.is_some() {
        "token"
    } else {
        "session"
    };
    let body = json!({
        "id": user.id,
        "username": user.username,
        "is_admin": user.is_admin,
        "via": via,
    });
    // Whose data it is depends on the cookie or the token: no cache keeps it.
    ([(CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// Any other path under `/api`: a `404` in JSON, as an API client expects.
async fn unknown() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found" }))).into_response()
}
