//! The admin page, `/admin`: every user, where each is logged in (from the
//! session registry), and a button that ends all of a user's sessions on
//! every instance, remembered ones included.
//!
//! Only admins (`users.is_admin`; susan in the seed) get in, with a fresh
//! login as for the account page. Another logged-in user gets `403`: the
//! site's own page for a browser, latch's JSON for an API client; an
//! anonymous visitor is sent to log in.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_latch::rejection::{Forbidden, LoginRejection};
use axum_latch::{Allowed, Auth, CurrentUser, FreshUser, Permission, SessionData};
use serde::Deserialize;
use sqlx::Row;

use super::activity::{self, Entry};
use super::sessions::{now_secs, SessionRow};
use super::{
    log_rejection, render, save_notice, take_notice, Account, AppError, AppState, Submitted,
};

/// The permission of the admin pages.
pub(super) struct Admin;

impl Permission<Account> for Admin {
    async fn allows(user: &Account) -> bool {
        user.is_admin
    }
}

/// An admin with a fresh login: what the admin pages take.
///
/// The permission is checked first, so that a user who is not an admin
/// gets `403` at once rather than being asked for a password first.
pub(super) struct FreshAdmin(pub(super) Arc<Account>);

impl<S: Send + Sync> FromRequestParts<S> for FreshAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Allowed::<Account, Admin>::from_request_parts(parts, state).await {
            Ok(_) => {}
            Err(LoginRejection::Forbidden(forbidden)) => {
                return Err(forbidden_page(parts, state, forbidden).await)
            }
            Err(other) => return Err(other.into_response()),
        }
        FreshUser::<Account>::from_request_parts(parts, state)
            .await
            .map(|FreshUser(user)| FreshAdmin(user))
            .map_err(IntoResponse::into_response)
    }
}

#[derive(askama::Template)]
#[template(path = "forbidden.html", config = "examples/login/askama.toml")]
struct ForbiddenPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
}

/// The `403` for a user who is not an admin. latch tells whether the
/// request is a browser's navigation (an HTML page) or an API client's
/// (`{"error":"forbidden"}`); a browser gets the site's own page instead
/// of latch's plain one.
async fn forbidden_page<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    forbidden: Forbidden,
) -> Response {
    if forbidden.is_api_client() {
        return forbidden.into_response();
    }
    // Found already, for the permission check: not loaded again.
    let Ok(CurrentUser(user)) = CurrentUser::<Account>::from_request_parts(parts, state).await
    else {
        return forbidden.into_response();
    };
    let page = ForbiddenPage {
        title: "Not for your account",
        username: &user.username,
        is_admin: user.is_admin,
    };
    render(StatusCode::FORBIDDEN, &page).unwrap_or_else(IntoResponse::into_response)
}

/// A user and where they are logged in, as the admin page shows them.
pub(super) struct UserRow {
    pub(super) id: String,
    pub(super) username: String,
    pub(super) is_admin: bool,
    /// The admin looking at the page.
    pub(super) is_you: bool,
    pub(super) sessions: Vec<SessionRow>,
    /// Why the sessions are not listed, when the store cannot be read.
    pub(super) sessions_error: Option<&'static str>,
}

#[derive(askama::Template)]
#[template(path = "admin.html", config = "examples/login/askama.toml")]
struct AdminPage<'a> {
    title: &'a str,
    username: &'a str,
    is_admin: bool,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    users: Vec<UserRow>,
}

/// The most users the page lists.
const MAX_USERS: i64 = 200;

/// `GET /admin`.
pub(super) async fn page(
    State(state): State<AppState>,
    FreshAdmin(admin): FreshAdmin,
    auth: Auth<Account>,
    session: SessionData,
) -> Result<Response, AppError> {
    let notice = take_notice(&session);
    admin_page(
        StatusCode::OK,
        &state,
        &auth,
        &admin,
        notice.as_deref(),
        None,
    )
    .await
}

async fn admin_page(
    status: StatusCode,
    state: &AppState,
    auth: &Auth<Account>,
    admin: &Account,
    notice: Option<&str>,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let rows = sqlx::query(
        "SELECT id, username, is_admin FROM users ORDER BY lower(username), id LIMIT $1",
    )
    .bind(MAX_USERS)
    .fetch_all(&state.db)
    .await?;
    let this_session = auth.session_id().await;
    let now = now_secs();
    let mut users = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let (sessions, sessions_error) = match state.registry.sessions(&id).await {
            Ok(sessions) => {
                let rows = sessions
                    .iter()
                    .map(|session| {
                        let mut row = SessionRow::new(session, now);
                        // The registry marks none: outside a request, no
                        // session is "this browser".
                        row.current = this_session.as_deref() == Some(session.id.as_str());
                        row
                    })
                    .collect();
                (rows, None)
            }
            Err(error) => {
                tracing::error!(%error, user_id = id, "sessions not listed");
                (
                    Vec::new(),
                    Some("Where this user is logged in cannot be shown just now."),
                )
            }
        };
        users.push(UserRow {
            is_you: id == admin.id,
            id,
            username: row.try_get("username")?,
            is_admin: row.try_get::<i64, _>("is_admin")? != 0,
            sessions,
            sessions_error,
        });
    }
    render(
        status,
        &AdminPage {
            title: "Admin",
            username: &admin.username,
            is_admin: admin.is_admin,
            notice,
            error,
            users,
        },
    )
}

/// A `GET` of the form's address: back to the page.
pub(super) async fn to_admin() -> Redirect {
    Redirect::to("/admin")
}

/// The "End all sessions" form's field: the user's id.
#[derive(Deserialize)]
pub(super) struct EndFields {
    user: Option<String>,
}

/// `POST /admin/sessions/end`: ends every session of a user, on every
/// instance, and their remember-me cookies: the registry's app-level
/// `end_all`. Each of their browsers is sent to log in at its next request.
/// The admin's own sessions are ended from the account page instead.
pub(super) async fn end_sessions(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    FreshAdmin(admin): FreshAdmin,
    auth: Auth<Account>,
    session: SessionData,
    form: Submitted<EndFields>,
) -> Result<Response, AppError> {
    let refuse = |error: &'static str| {
        admin_page(
            StatusCode::BAD_REQUEST,
            &state,
            &auth,
            &admin,
            None,
            Some(error),
        )
    };
    let id = match form {
        Ok(Form(fields)) => fields.user.unwrap_or_default(),
        Err(rejection) => {
            log_rejection(&rejection);
            return refuse(super::GARBLED).await;
        }
    };
    if id.is_empty() || id.len() > 200 {
        return refuse("Please choose the user whose sessions to end.").await;
    }
    if id == admin.id {
        return refuse(
            "To log yourself out elsewhere, use \u{201c}Log out everywhere else\u{201d} \
             on your account page.",
        )
        .await;
    }
    let username: Option<String> = sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
        .bind(&id)
        .fetch_optional(&state.db)
        .await?;
    let Some(username) = username else {
        return refuse("There is no such user.").await;
    };
    state.registry.end_all(&id).await?;
    tracing::info!(
        admin = admin.id,
        address = %client.ip(),
        user_id = id,
        "an admin ended every session of a user"
    );
    // On the user's own activity list; the address is the admin's, not
    // theirs, so it is left out.
    Entry::new(&id, activity::ENDED_BY_ADMIN)
        .detail(&admin.username)
        .save(&state.db)
        .await;
    save_notice(
        &session,
        &format!("Every session of {username} is ended: each of their browsers must log in again."),
    );
    Ok(Redirect::to("/admin").into_response())
}
