//! The account page's "Where you're logged in": every browser with a session
//! of the user, remembered or not, from latch's session registry, and the
//! form that logs one of them out, on every instance at once.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_latch::registry::ActiveSession;
use axum_latch::{Auth, FreshUser, SessionData};
use serde::Deserialize;

use super::{account_page, back_to_account, log_rejection, Account, AppError, AppState, Submitted};

/// The longest session id the form takes: latch's are 22 characters.
const MAX_ID_CHARS: usize = 64;

/// One browser where the user is logged in, as the account page shows it.
pub(super) struct SessionRow {
    pub(super) id: String,
    pub(super) device: String,
    pub(super) created: String,
    pub(super) last_active: String,
    pub(super) remembered: bool,
    pub(super) current: bool,
}

impl SessionRow {
    pub(super) fn new(session: &ActiveSession, now: u64) -> Self {
        Self {
            id: session.id.clone(),
            device: session.device.clone(),
            created: time_ago(now, session.created_at),
            last_active: time_ago(now, session.last_active_at),
            remembered: session.remembered,
            current: session.current,
        }
    }
}

/// The rows of the list, most recently active first; or, when the store
/// cannot be read, none and the message the page shows instead (the rest of
/// the page still works).
pub(super) async fn rows(auth: &Auth<Account>) -> (Vec<SessionRow>, Option<&'static str>) {
    let sessions = match auth.sessions().await {
        Ok(sessions) => sessions,
        Err(error) => {
            tracing::error!(%error, "sessions not listed");
            let message = "The list of browsers where you're logged in cannot be shown just now.";
            return (Vec::new(), Some(message));
        }
    };
    let now = now_secs();
    let rows = sessions
        .iter()
        .map(|session| SessionRow::new(session, now))
        .collect();
    (rows, None)
}

/// Now, in seconds since the Unix epoch.
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// "just now", "5 minutes ago", "3 days ago".
pub(super) fn time_ago(now: u64, then: u64) -> String {
    let seconds = now.saturating_sub(then);
    let (count, unit) = match seconds {
        0..60 => return "just now".to_owned(),
        60..3600 => (seconds / 60, "minute"),
        3600..86400 => (seconds / 3600, "hour"),
        _ => (seconds / 86400, "day"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural} ago")
}

/// The "Log out" form's field: the id of the session to end.
#[derive(Deserialize)]
pub(super) struct EndFields {
    session: Option<String>,
}

/// Whether `id` could be a session id: short, and base64url.
fn looks_like_an_id(id: &str) -> bool {
    id.len() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Logs one browser out: the form on each row of the list. Ending this
/// browser's own session logs it out here too. An id that is not one of the
/// user's sessions (ended already, or another user's) ends nothing.
pub(super) async fn end_session(
    State(state): State<AppState>,
    FreshUser(user): FreshUser<Account>,
    auth: Auth<Account>,
    session: SessionData,
    form: Submitted<EndFields>,
) -> Result<Response, AppError> {
    let bad_form = |error: &'static str| {
        account_page(
            StatusCode::BAD_REQUEST,
            &state,
            &auth,
            &user,
            None,
            Some(error),
        )
    };
    let id = match form {
        Ok(Form(fields)) => fields.session.unwrap_or_default(),
        Err(rejection) => {
            log_rejection(&rejection);
            return bad_form(super::GARBLED).await;
        }
    };
    if id.is_empty() {
        return bad_form("Please choose the browser to log out.").await;
    }
    if !looks_like_an_id(&id) {
        return bad_form("That is not a browser in the list: please try again.").await;
    }
    let own = auth.session_id().await.as_deref() == Some(id.as_str());
    match auth.end_session(&id).await {
        Ok(true) if own => {
            tracing::info!(user_id = user.id, "logged out from the account page");
            Ok(Redirect::to("/").into_response())
        }
        Ok(true) => {
            tracing::info!(user_id = user.id, "another browser logged out");
            Ok(back_to_account(&session, "That browser is logged out."))
        }
        Ok(false) => Ok(back_to_account(
            &session,
            "That browser was already logged out.",
        )),
        Err(error) => {
            tracing::error!(%error, "session not ended");
            let error = "That browser could not be logged out just now: please try again.";
            account_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &state,
                &auth,
                &user,
                None,
                Some(error),
            )
            .await
        }
    }
}
