//! The second step of a two-step login: the `PendingLogin` extractor, which
//! gives the code page its pending user, and completes the login once the
//! app accepts a code.

use axum::extract::FromRequestParts;
use axum::response::Redirect;
use http::request::Parts;
use serde::Deserialize as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::adapter::axum::auth::Auth;
use crate::adapter::axum::rejection::{LoginRejection, LoginRequired};
use crate::adapter::axum::request::login_context;
use crate::crypto::{fingerprint, random};
use crate::error::AuthError;
use crate::events::{EventKind, LoginMethod};
use crate::login::context::LoginContext;
use crate::login::next;
use crate::login::two_step::{Pending, Reserved};
use crate::login::user::User;
use crate::registry::{Ending, SessionKey};
use crate::remember::Remember;
use crate::throttle::{LoginAttempt, Throttled};

/// A login whose password was checked and whose second factor is pending,
/// for the second step's page: made by
/// [`Auth::begin_two_step`](crate::Auth::begin_two_step).
///
/// A request without a pending login (none, expired, out of tries,
/// completed already, or for a user whose password has changed since) is
/// refused: the browser goes back to the login page with the `next` it was
/// going to, and the pending state leaves the session. An API client gets a
/// `401`.
///
/// The page's form posts back to its own URL (the query keeps `next`), and
/// the handler calls [`verify`](Self::verify) with the app's check of the
/// code:
///
/// ```
/// use axum::extract::Form;
/// use axum::response::{Html, IntoResponse, Response};
/// use axum_latch::two_step::{PendingLogin, Verified};
/// use axum_latch::User;
/// use std::sync::Arc;
/// # #[derive(Clone)] struct Account { id: u64, hash: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
/// # async fn totp_matches(_: &Account, _: &str) -> bool { false }
///
/// #[derive(serde::Deserialize)]
/// struct Code { code: String }
///
/// async fn second_step(pending: PendingLogin<Account>, Form(form): Form<Code>) -> Response {
///     let checked = pending
///         .verify(|user: Arc<Account>| async move {
///             // Which factor was used, for the events; None: a wrong code.
///             totp_matches(&user, &form.code).await.then_some("totp")
///         })
///         .await;
///     match checked {
///         Ok(Verified::LoggedIn(redirect)) => redirect.into_response(),
///         Ok(Verified::Wrong { attempts_left }) => {
///             Html(format!("Wrong code: {attempts_left} tries left")).into_response()
///         }
///         Ok(Verified::Discarded(back)) => back.into_response(), // the login page
///         Ok(Verified::Throttled(throttled)) => throttled.into_response(),
///         Ok(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
///         Err(error) => error.into_response(),
///     }
/// }
/// ```
pub struct PendingLogin<U: User> {
    context: LoginContext<U>,
    user: Arc<U>,
    pending: Pending,
    next: Option<String>,
    wrong: u32,
    /// Where the browser goes if the pending login ends here.
    back: LoginRequired,
}

/// What [`PendingLogin::verify`] made of a code.
#[derive(Debug)]
#[non_exhaustive]
pub enum Verified {
    /// The code was right: the user is logged in (fresh, with the
    /// remember-me choice of the password form), and this is the
    /// `303 See Other` to the safe `next`.
    LoggedIn(Redirect),
    /// The code was wrong; the pending login allows this many more.
    Wrong {
        /// How many more codes may be tried.
        attempts_left: u32,
    },
    /// The code was wrong and it was the last try, or the pending login was
    /// completed meanwhile (a copy of the cookie): it is gone, and this
    /// sends the browser back to the login page, keeping `next`.
    Discarded(LoginRequired),
    /// The throttle refuses codes for this user for now (see
    /// [`TwoStep::throttle`](crate::two_step::TwoStep::throttle)); the code
    /// was not checked.
    Throttled(Throttled),
}

impl<U: User> std::fmt::Debug for PendingLogin<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("user_id", &self.user.id())
            .field("attempts_left", &self.attempts_left())
            .finish_non_exhaustive()
    }
}

impl<U: User> PendingLogin<U> {
    /// The user whose password was checked.
    ///
    /// ```
    /// # use axum_latch::{two_step::PendingLogin, User};
    /// # #[derive(Clone)] struct Account { id: u64, name: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// async fn code_page(pending: PendingLogin<Account>) -> String {
    ///     format!("{}, type the code of your authenticator app", pending.user().name)
    /// }
    /// ```
    pub fn user(&self) -> &Arc<U> {
        &self.user
    }

    /// How many codes may still be tried.
    ///
    /// ```
    /// # use axum_latch::{two_step::PendingLogin, User};
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// async fn code_page(pending: PendingLogin<Account>) -> String {
    ///     format!("{} tries left", pending.attempts_left())
    /// }
    /// ```
    pub fn attempts_left(&self) -> u32 {
        self.context
            .config()
            .two_step
            .max_attempts
            .saturating_sub(self.wrong)
    }

    /// When the pending login ends, and the browser must type its password
    /// again.
    ///
    /// ```
    /// # use axum_latch::{two_step::PendingLogin, User};
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// async fn code_page(pending: PendingLogin<Account>) -> String {
    ///     let left = pending.expires_at().duration_since(std::time::SystemTime::now());
    ///     format!("{} seconds left", left.unwrap_or_default().as_secs())
    /// }
    /// ```
    pub fn expires_at(&self) -> SystemTime {
        let at = self.pending.expires_at(&self.context.config().two_step);
        UNIX_EPOCH
            .checked_add(Duration::from_secs(at))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)))
    }

    /// Checks a code with `check`, which returns the name of the factor
    /// that accepted it (`Some("totp")`, `Some("recovery_code")`) or
    /// `None` for a wrong code, and completes the login if it is right.
    ///
    /// The code counts against the pending login's tries before `check`
    /// runs, and, with a [throttle](crate::two_step::TwoStep::throttle)
    /// (on by default), under the user too: however many copies of the
    /// cookie send codes at once, no more are checked than allowed. A right code
    /// completes the pending login once: a copy of the cookie, or the same
    /// cookie replayed, finds it gone. A wrong code counts against the
    /// pending login's tries (in this instance's memory, not in the
    /// cookie, which could be replayed) and is heard as a failed login.
    ///
    /// # Errors
    ///
    /// What [`Auth::login_user`](crate::Auth::login_user) may return when
    /// the code was right but the login could not be made (the session is
    /// too large, say); the pending login is spent then. A remember-me
    /// store that fails is not one of them: the login is made without
    /// remember-me (and the error logged).
    pub async fn verify<F, Fut>(&self, check: F) -> Result<Verified, AuthError>
    where
        F: FnOnce(Arc<U>) -> Fut,
        Fut: Future<Output = Option<&'static str>>,
    {
        let two_step = &self.context.config().two_step;
        let attempt: Option<LoginAttempt> = match &two_step.throttle {
            Some(throttle) => match throttle.attempt_account(self.throttle_key(), None).await {
                Ok(attempt) => Some(attempt),
                Err(throttled) => {
                    let kind = EventKind::Throttled {
                        retry_after: throttled.retry_after,
                    };
                    self.context.emit(kind, Some(self.user.id()), None);
                    return Ok(Verified::Throttled(throttled));
                }
            },
            None => None,
        };
        let now = self.context.session().site().clock.unix_secs();
        let until = self.pending.expires_at(two_step);
        let ledger = &self.context.config().pending;
        // Counted as wrong before it is checked: a burst of copies, or a
        // request cut off during the check, gets no more checks than the
        // tries allowed.
        let left = match ledger.reserve(&self.pending.id, two_step.max_attempts, until, now) {
            Reserved::Left(left) => left,
            Reserved::Refused => {
                if let Some(attempt) = attempt {
                    attempt.not_checked().await;
                }
                self.discard();
                return Ok(Verified::Discarded(self.back_to_login()));
            }
        };
        let Some(factor) = check(self.user.clone()).await else {
            if let Some(attempt) = attempt {
                attempt.failed();
            }
            self.context
                .emit(EventKind::LoginFailed, Some(self.user.id()), None);
            if left > 0 {
                return Ok(Verified::Wrong {
                    attempts_left: left,
                });
            }
            tracing::info!(target: "latch", user_id = ?self.user.id(), "pending login discarded: too many wrong codes");
            ledger.discard(&self.pending.id, until, now);
            self.discard();
            return Ok(Verified::Discarded(self.back_to_login()));
        };
        if !ledger.finish(&self.pending.id, until, now) {
            // Completed (or discarded) meanwhile by a copy of this cookie.
            self.discard();
            return Ok(Verified::Discarded(self.back_to_login()));
        }
        if let Some(attempt) = attempt {
            attempt.succeeded().await;
        }
        if let Some(registry) = &self.context.config().registry {
            // Other instances hear that this pending login is spent.
            registry
                .end(Ending::Session {
                    session_id: self.pending.id.clone(),
                    user_id: self.pending.user_id.to_string(),
                    until: until.max(now + 1),
                })
                .await;
        }
        let remember = self
            .pending
            .remember_days
            .map_or(Remember::Off, Remember::Days);
        let auth = Auth::from_context(self.context.clone(), self.next.clone());
        let method = LoginMethod::SecondFactor(factor);
        let redirect = match auth.log_in(&self.user, remember, method).await {
            Err(AuthError::Remember(error)) => {
                // The pending login is spent: rather than lose the login,
                // it is made without remember-me (nothing changed when the
                // remember-me store failed).
                tracing::error!(target: "latch", %error, "remember-me store failed: two-step login completed without remember-me");
                auth.log_in(&self.user, Remember::Off, method).await?
            }
            other => other?,
        };
        Ok(Verified::LoggedIn(redirect))
    }

    /// The key the throttle counts this user's codes under: apart from
    /// the account's passwords, so that the right password, which resets
    /// the account's count, does not give new tries at the code.
    fn throttle_key(&self) -> String {
        format!("two-step:{}", self.pending.user_id)
    }

    /// Removes the pending login from the session.
    fn discard(&self) {
        self.context.begin_change();
        self.context.session().clear_pending();
    }

    /// Back to the login page, keeping `next`.
    fn back_to_login(&self) -> LoginRequired {
        self.back.clone()
    }
}

impl<S: Send + Sync, U: User> FromRequestParts<S> for PendingLogin<U> {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let context = login_context::<U>(&parts.headers, &parts.uri, &parts.extensions, true)?;
        let next = next::from_query(parts.uri.query());
        let config = context.config();
        let target = next::safe_or(next.as_deref(), &config.default_redirect);
        let back = LoginRequired::back_to_login(parts, &config.login_url, target);
        let refuse = |why: &'static str| {
            tracing::debug!(target: "latch", why, "second step refused: no pending login");
            context.begin_change();
            context.session().clear_pending();
            LoginRejection::LoginRequired(back.clone())
        };
        let Some(claim) = context.session().pending() else {
            return Err(refuse("none in the session"));
        };
        let Some(pending) = Pending::from_claim(&claim) else {
            return Err(refuse("not of latch's shape"));
        };
        let now = context.session().site().clock.unix_secs();
        if now > pending.expires_at(&config.two_step) {
            return Err(refuse("expired"));
        }
        let Some(wrong) = config.pending.wrong_so_far(&pending.id) else {
            return Err(refuse("completed or out of tries"));
        };
        if let (Some(registry), Some(key)) = (&config.registry, random::session_key(&pending.id)) {
            if registry.ended_here(SessionKey(key)) {
                return Err(refuse("completed on another instance"));
            }
        }
        let Ok(id) = U::Id::deserialize(&pending.user_id) else {
            return Err(refuse("a user id of another type"));
        };
        let user = match config.loader.load(id).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(refuse("no such user")),
            Err(error) => {
                tracing::error!(target: "latch", %error, "user loader failed");
                return Err(LoginRejection::LoaderFailed);
            }
        };
        let keys = &context.session().site().keys;
        if fingerprint::matching_key(keys, user.auth_hash(), &pending.fingerprint).is_none() {
            return Err(refuse("the user's auth_hash changed"));
        }
        Ok(Self {
            context,
            user: Arc::new(user),
            pending,
            next,
            wrong,
            back,
        })
    }
}
