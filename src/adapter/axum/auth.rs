//! The `Auth` extractor: logging users in and out from a handler.

use axum::extract::FromRequestParts;
use axum::response::Redirect;
use http::request::Parts;
use std::sync::Arc;

use crate::adapter::axum::rejection::{LoginRejection, MissingLayer};
use crate::adapter::axum::request::login_context;
use crate::crypto::fingerprint::fingerprint;
use crate::crypto::random;
use crate::error::AuthError;
use crate::events::{Ended, EventKind, LoginMethod};
use crate::login::context::{LoaderFailed, LoginContext, Resolved};
use crate::login::next;
use crate::login::next::login_redirect;
use crate::login::two_step::Pending;
use crate::login::user::User;
use crate::registry::{ActiveSession, Ending, SessionRegistry};
use crate::remember::{Remember, RememberGrant, RememberedDevice};
use crate::throttle::Throttled;

/// Logs users in and out. Needs the [`Session`](crate::Session) and
/// [`Login`](crate::Login) layers; without them it rejects with a `500`
/// that names the missing layer.
///
/// ```
/// use axum::{response::{IntoResponse, Redirect, Response}, Form};
/// use axum_latch::{Auth, Remember, User};
/// # #[derive(Clone)] struct Account { id: u64, hash: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
/// # async fn check_password(_: &str, _: &str) -> Option<Account> { None }
///
/// #[derive(serde::Deserialize)]
/// struct Credentials { username: String, password: String, remember_me: Option<String> }
///
/// async fn login(auth: Auth<Account>, Form(form): Form<Credentials>) -> Response {
///     match check_password(&form.username, &form.password).await {
///         Some(user) => {
///             let remember = Remember::from(form.remember_me.is_some());
///             // 303 See Other to `next`, if it is a path on this site, else to `/`.
///             auth.login_user(&user, remember).await.into_response()
///         }
///         None => Redirect::to("/login").into_response(),
///     }
/// }
///
/// async fn logout(auth: Auth<Account>) -> Redirect {
///     auth.logout_user().await;
///     Redirect::to("/")
/// }
/// ```
pub struct Auth<U: User> {
    context: LoginContext<U>,
    next: Option<String>,
}

impl<U: User> Auth<U> {
    /// Logs `user` in, for this browser session and (with `remember`) beyond.
    ///
    /// Call it once the user's credentials are checked. The session gets a
    /// fresh login; with `remember` on, a `_remember` cookie keeps the user
    /// logged in for that many days after the browser closes (restored logins
    /// are not fresh). Without `remember`, a remember cookie the browser
    /// already had is deleted.
    ///
    /// Returns a `303 See Other` to the request's `next` query parameter if it
    /// is a path on this site, else to the [default redirect](crate::Login::default_redirect).
    ///
    /// # Errors
    ///
    /// [`AuthError::SessionTooLarge`] if the app's session data leaves no
    /// room for the login in the cookie (nothing changes).
    /// [`AuthError::Remember`] if the remember-me store failed: nothing has
    /// changed, and the app may log the user in with [`Remember::Off`]
    /// and tell them they will not be remembered. [`AuthError::UserId`] if
    /// the user's id cannot be written as JSON.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum::response::{IntoResponse, Response};
    /// use axum_latch::{Auth, Remember};
    /// # async fn check_password(_: &str, _: &str) -> Option<Account> { None }
    ///
    /// async fn log_in(auth: Auth<Account>) -> Response {
    ///     match check_password("susan", "hunter2").await {
    ///         // A 303 to the request's safe `next`, or to the default page.
    ///         Some(user) => auth.login_user(&user, Remember::On).await.into_response(),
    ///         None => (axum::http::StatusCode::UNAUTHORIZED, "wrong password").into_response(),
    ///     }
    /// }
    /// ```
    pub async fn login_user(
        &self,
        user: &U,
        remember: impl Into<Remember>,
    ) -> Result<Redirect, AuthError> {
        self.log_in(user, remember.into(), LoginMethod::Password)
            .await
    }

    /// Logs `user` in (see [`login_user`](Self::login_user)), heard as a
    /// login by `method`.
    pub(crate) async fn log_in(
        &self,
        user: &U,
        remember: Remember,
        method: LoginMethod,
    ) -> Result<Redirect, AuthError> {
        let user_id = serde_json::to_value(user.id()).map_err(AuthError::UserId)?;
        let session = self.context.session();
        let keys = &session.site().keys;
        let auth = fingerprint(keys.current(), user.auth_hash());
        if !session.login_fits(&user_id, &auth) {
            return Err(AuthError::SessionTooLarge);
        }
        // A new id for every login, so that no id outlives its login.
        let session_id = random::session_id().ok_or(AuthError::Random)?;
        // The token first: if the store fails, nothing has changed yet and
        // the app can log the user in without remember-me instead.
        let remembered = match remember.days() {
            Some(days) => {
                let grant = RememberGrant {
                    keys,
                    user_id: &user_id,
                    fingerprint: &auth,
                    days,
                    now: session.site().clock.unix_secs(),
                    user_agent: self.context.user_agent(),
                    session_id: Some(&session_id),
                };
                Some((self.context.config().remember.issue(grant).await?, days))
            }
            None => None,
        };
        // From here on, a search for the user begun before writes nothing.
        self.context.begin_change();
        self.spend_pending();
        // The browser's earlier login, if any, ends with its cookie.
        self.end_this_session().await;
        let user_json = user_id.to_string();
        session.set_login(user_id, auth, session_id.clone(), true);
        self.context.set_resolved(Resolved::User {
            user: Arc::new(user.clone()),
            fresh: true,
        });
        self.forget_remembered().await;
        let days = remembered.as_ref().map(|(_, days)| *days);
        if let Some((token, days)) = remembered {
            self.context.set_remember_cookie(&token, days);
        }
        if let Some(registry) = &self.context.config().registry {
            let record = self
                .context
                .session_record(session_id.clone(), user_json, days);
            registry.record(record).await;
        }
        tracing::info!(target: "latch", user_id = ?user.id(), remember_days = ?remember.days(), "user logged in");
        self.context.emit(
            EventKind::LoggedIn(method),
            Some(user.id()),
            Some(session_id),
        );
        let location = next::location(self.next_url());
        Ok(Redirect::to(&location))
    }

    /// Checks the password and asks for a second factor: starts a login
    /// that is **pending** until [`PendingLogin::verify`] accepts a code
    /// (see [`two_step`](crate::two_step)), and returns the `303 See Other`
    /// to the second step's page ([`TwoStep::url`]), keeping the safe `next`.
    ///
    /// A pending login is not a login: every extractor and route layer
    /// treats the browser as anonymous until the second step completes it.
    /// The browser's earlier login, if any, ends now (as for a new login).
    /// `remember` is the choice made on the password form: the completed
    /// login gets it.
    ///
    /// # Errors
    ///
    /// [`AuthError::UserId`] if the user's id cannot be written as JSON,
    /// [`AuthError::SessionTooLarge`] if the session has no room for it,
    /// [`AuthError::Random`] if no id could be made; nothing has changed.
    ///
    /// ```
    /// use axum::response::{IntoResponse, Response};
    /// use axum_latch::{Auth, Remember, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String, totp_secret: Option<String> }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn check_password(_: &str, _: &str) -> Option<Account> { None }
    ///
    /// async fn log_in(auth: Auth<Account>, name: &str, password: &str) -> Response {
    ///     match check_password(name, password).await {
    ///         // Two-step login turned on: the code page next.
    ///         Some(user) if user.totp_secret.is_some() => {
    ///             auth.begin_two_step(&user, Remember::Off).await.into_response()
    ///         }
    ///         Some(user) => auth.login_user(&user, Remember::Off).await.into_response(),
    ///         None => (axum::http::StatusCode::UNAUTHORIZED, "wrong password").into_response(),
    ///     }
    /// }
    /// ```
    ///
    /// [`PendingLogin::verify`]: crate::two_step::PendingLogin::verify
    /// [`TwoStep::url`]: crate::two_step::TwoStep::url
    pub async fn begin_two_step(
        &self,
        user: &U,
        remember: impl Into<Remember>,
    ) -> Result<Redirect, AuthError> {
        let remember = remember.into();
        let user_id = serde_json::to_value(user.id()).map_err(AuthError::UserId)?;
        let session = self.context.session();
        let auth = fingerprint(session.site().keys.current(), user.auth_hash());
        if !session.login_fits(&user_id, &auth) {
            return Err(AuthError::SessionTooLarge);
        }
        let id = random::session_id().ok_or(AuthError::Random)?;
        let pending = Pending {
            user_id,
            fingerprint: auth,
            started_at: session.site().clock.unix_secs(),
            remember_days: remember.days(),
            id,
        };
        let pending = serde_json::to_value(&pending).map_err(AuthError::UserId)?;
        self.context.begin_change();
        self.spend_pending();
        // The browser's earlier login ends, as it would with a new login.
        if let Some(login) = session.login() {
            self.context.forget_cached_user(&login.user_id);
        }
        self.end_this_session().await;
        session.set_pending(pending);
        self.context.set_resolved(Resolved::Anonymous);
        self.forget_remembered().await;
        tracing::info!(target: "latch", user_id = ?user.id(), "password checked: second factor pending");
        let two_step = &self.context.config().two_step;
        Ok(Redirect::to(&login_redirect(
            &two_step.url,
            self.next_url(),
        )))
    }

    /// Logs the user out: the login leaves the session (the app's own session
    /// data stays; see [`SessionData::clear`](crate::SessionData::clear)),
    /// and the remember cookie is revoked and deleted. With
    /// [`Login::cache_users`](crate::Login::cache_users), the user also
    /// leaves this instance's user cache.
    ///
    /// With a [session registry](crate::Login::sessions), the session also
    /// ends on the server: a copy of the cookie taken before the logout is
    /// refused on every instance. If the registry's store is down, the
    /// browser is still logged out, the error is logged, and the ending is
    /// written when the store is back.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum::response::Redirect;
    /// use axum_latch::Auth;
    ///
    /// async fn log_out(auth: Auth<Account>) -> Redirect {
    ///     auth.logout_user().await;
    ///     Redirect::to("/")
    /// }
    /// ```
    pub async fn logout_user(&self) {
        let login = self.context.session().login();
        // Only a login latch accepts is heard as a logout: a dead copy of a
        // cookie (ended, made before a password change) replayed to the
        // logout is nobody's logout. The user is found before the change,
        // as any other request would find it.
        let live = match (&login, &self.context.config().events) {
            (Some(_), Some(_)) => match self.context.resolve().await {
                Resolved::User { user, .. } => Some(user.id()),
                _ => None,
            },
            _ => None,
        };
        self.context.begin_change();
        self.spend_pending();
        if let Some(login) = &login {
            self.context.forget_cached_user(&login.user_id);
        }
        self.end_this_session().await;
        self.context.session().clear_login();
        self.context.set_resolved(Resolved::Anonymous);
        self.forget_remembered().await;
        tracing::info!(target: "latch", "user logged out");
        if let (Some(login), Some(user_id)) = (login, live) {
            let session_id = login.session_id.as_deref().map(str::to_owned);
            self.context
                .emit(EventKind::LoggedOut, Some(user_id), session_id);
        }
    }

    /// Tells the [event hook](crate::Login::on_event) that a login attempt
    /// failed (a wrong password, an unknown user name): a
    /// [`LoginFailed`](EventKind::LoginFailed) event, with the user's id
    /// when the name was a user's. Does nothing else (the
    /// [throttle](crate::throttle) counts failures).
    ///
    /// ```
    /// use axum::{http::StatusCode, response::{IntoResponse, Response}};
    /// use axum_latch::{Auth, Remember, User};
    /// # #[derive(Clone)] struct Account { id: u64, hash: String }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn find(_: &str) -> Option<Account> { None }
    /// # fn password_ok(_: &Account, _: &str) -> bool { false }
    ///
    /// async fn log_in(auth: Auth<Account>, name: &str, password: &str) -> Response {
    ///     let account = find(name).await;
    ///     match account {
    ///         Some(user) if password_ok(&user, password) => {
    ///             auth.login_user(&user, Remember::Off).await.into_response()
    ///         }
    ///         _ => {
    ///             auth.report_failed_login(account.map(|user| user.id));
    ///             (StatusCode::UNAUTHORIZED, "wrong user name or password").into_response()
    ///         }
    ///     }
    /// }
    /// ```
    pub fn report_failed_login(&self, user_id: Option<U::Id>) {
        self.context.emit(EventKind::LoginFailed, user_id, None);
    }

    /// Tells the [event hook](crate::Login::on_event) that the
    /// [throttle](crate::throttle) refused a login attempt: a
    /// [`Throttled`](EventKind::Throttled) event, with the user's id when
    /// the attempt named a user.
    ///
    /// ```
    /// use axum::response::{IntoResponse, Response};
    /// use axum_latch::throttle::Throttle;
    /// use axum_latch::{Auth, User};
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// async fn log_in(auth: Auth<Account>, throttle: Throttle, name: &str, address: std::net::IpAddr) -> Response {
    ///     let attempt = match throttle.attempt(name, None::<u64>, Some(address)).await {
    ///         Ok(attempt) => attempt,
    ///         Err(throttled) => {
    ///             auth.report_throttled(None, &throttled);
    ///             return throttled.into_response();
    ///         }
    ///     };
    ///     // ... check the password, then attempt.succeeded() or attempt.failed()
    /// #   attempt.failed();
    ///     "...".into_response()
    /// }
    /// ```
    pub fn report_throttled(&self, user_id: Option<U::Id>, throttled: &Throttled) {
        let kind = EventKind::Throttled {
            retry_after: throttled.retry_after,
        };
        self.context.emit(kind, user_id, None);
    }

    /// Keeps this session logged in after the user's `auth_hash` changed
    /// (a new password, "log out everywhere"), while every other session and
    /// remember cookie of the user stops working. The remember cookie of this
    /// browser, made for the old `auth_hash`, is revoked and deleted too; the
    /// login keeps its freshness and its start time.
    ///
    /// With [`Login::cache_users`](crate::Login::cache_users), the user
    /// leaves this instance's user cache, so the next request loads the new
    /// `auth_hash`.
    ///
    /// Returns `false`, changing nothing, if this session is not logged in as
    /// `user`.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum_latch::{Auth, FreshUser};
    /// # async fn save_new_password(user: &Account) -> Account { user.clone() }
    ///
    /// async fn change_password(FreshUser(user): FreshUser<Account>, auth: Auth<Account>) -> &'static str {
    ///     let reloaded = save_new_password(&user).await; // a new hash, so a new auth_hash
    ///     // Every other session of the user ends; this one carries on.
    ///     auth.update_user(&reloaded).await;
    ///     "password changed"
    /// }
    /// ```
    pub async fn update_user(&self, user: &U) -> bool {
        let session = self.context.session();
        let same_user = match (session.login(), serde_json::to_value(user.id())) {
            (Some(login), Ok(user_id)) => login.user_id == user_id,
            _ => false,
        };
        if !same_user {
            return false;
        }
        if let Ok(user_id) = serde_json::to_value(user.id()) {
            self.context.forget_cached_user(&user_id);
        }
        let auth = fingerprint(session.site().keys.current(), user.auth_hash());
        self.context.begin_change();
        let fresh = session.set_fingerprint(auth);
        self.context.set_resolved(Resolved::User {
            user: Arc::new(user.clone()),
            fresh,
        });
        self.forget_remembered().await;
        // Every remember token of the user was made for the old auth_hash.
        if let Ok(user_id) = serde_json::to_value(user.id()) {
            if let Err(error) = self.context.config().remember.revoke_user(&user_id).await {
                tracing::error!(target: "latch", %error, "remember tokens not revoked");
            }
        }
        // Logins without a fingerprint (Microdot's) end through the registry.
        if let (Some(registry), Ok(user_id)) = (
            &self.context.config().registry,
            serde_json::to_value(user.id()),
        ) {
            let keep = session
                .login()
                .and_then(|login| login.session_id.as_deref().map(str::to_owned));
            registry
                .cut_off_json(&user_id.to_string(), keep.as_deref())
                .await;
        }
        tracing::info!(target: "latch", user_id = ?user.id(), "session kept after auth_hash change");
        true
    }

    /// The logged-in user's remembered devices: the browsers where "remember
    /// me" still works, the current one marked. Empty for an anonymous
    /// request, and with [`StatelessRemember`](crate::remember::StatelessRemember),
    /// which keeps no list.
    ///
    /// ```
    /// use axum_latch::{Auth, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// async fn devices(auth: Auth<Account>) -> Result<String, axum_latch::AuthError> {
    ///     let mut page = String::new();
    ///     for device in auth.remembered_devices().await? {
    ///         let mark = if device.current { " (this device)" } else { "" };
    ///         page += &format!("{}{mark}\n", device.device);
    ///     }
    ///     Ok(page)
    /// }
    /// ```
    pub async fn remembered_devices(&self) -> Result<Vec<RememberedDevice>, AuthError> {
        let Some(user) = self
            .current_user()
            .await
            .map_err(|_| AuthError::LoaderFailed)?
        else {
            return Ok(Vec::new());
        };
        let user_id = serde_json::to_value(user.id()).map_err(AuthError::UserId)?;
        let keys = &self.context.session().site().keys;
        let devices = self
            .context
            .config()
            .remember
            .devices(
                keys,
                &user_id,
                user.auth_hash(),
                self.context.remember_cookie(),
                self.context.session().site().clock.unix_secs(),
            )
            .await?;
        Ok(devices)
    }

    /// Revokes one of the logged-in user's remembered devices, by its
    /// [`id`](RememberedDevice::id); if it is this browser, its cookie is
    /// deleted too. Returns whether there was such a device; an id of another
    /// user's device, or any id on an anonymous request, revokes nothing.
    ///
    /// What it ends is the device's **remember-me token**: the device can
    /// no longer log in without a password once its current session is
    /// over. A session the device holds right now is not ended: it lasts
    /// until the browser closes, the idle timeout passes (1 day by default)
    /// or the absolute timeout does. To end those sessions at once, change
    /// the user's `auth_hash` (every session of the user ends; see
    /// [`update_user`](Self::update_user) to keep the current one).
    ///
    /// ```
    /// use axum::{extract::Form, response::Redirect};
    /// use axum_latch::{Auth, FreshUser, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Device { id: String }
    ///
    /// async fn forget(
    ///     _: FreshUser<Account>,
    ///     auth: Auth<Account>,
    ///     Form(device): Form<Device>,
    /// ) -> Result<Redirect, axum_latch::AuthError> {
    ///     auth.forget_device(&device.id).await?;
    ///     Ok(Redirect::to("/account"))
    /// }
    /// ```
    pub async fn forget_device(&self, id: &str) -> Result<bool, AuthError> {
        let devices = self.remembered_devices().await?;
        let Some(device) = devices.iter().find(|device| device.id == id) else {
            return Ok(false);
        };
        let Some(user) = self
            .current_user()
            .await
            .map_err(|_| AuthError::LoaderFailed)?
        else {
            return Ok(false);
        };
        let user_id = serde_json::to_value(user.id()).map_err(AuthError::UserId)?;
        let revoked = self
            .context
            .config()
            .remember
            .revoke_device(&user_id, id)
            .await?;
        if device.current {
            self.context.begin_change();
            self.context.delete_remember_cookie();
        }
        tracing::info!(target: "latch", user_id = ?user.id(), device = %device.device, "remembered device revoked");
        Ok(revoked)
    }

    /// The logged-in user, if any (loaded at most once per request).
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum_latch::rejection::LoginRejection;
    /// use axum_latch::Auth;
    ///
    /// async fn greeting(auth: Auth<Account>) -> Result<String, LoginRejection> {
    ///     Ok(match auth.current_user().await? {
    ///         Some(user) => format!("Hello, {}", user.name),
    ///         None => "Hello, stranger".to_owned(),
    ///     })
    /// }
    /// ```
    pub async fn current_user(&self) -> Result<Option<Arc<U>>, LoginRejection> {
        self.context
            .current_user()
            .await
            .map_err(|LoaderFailed| LoginRejection::LoaderFailed)
    }

    /// The id of this browser's login: 128 random bits, as 22 characters
    /// of base64url, made anew by every login (a password login, a
    /// remember-me restore, a Microdot login adopted) and kept while the
    /// login lasts, through renewals and [`update_user`](Self::update_user).
    /// `None` for an anonymous request (the user is found first, as for
    /// [`current_user`](Self::current_user), so a login latch refuses has
    /// no id), and when the user loader fails. After
    /// [`login_user`](Self::login_user) in the same request, the new
    /// login's id.
    ///
    /// It names the login in the app's own records (an audit log, say); it
    /// is not a secret that proves anything, since the signed cookie does
    /// that.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum_latch::{Auth, CurrentUser};
    ///
    /// async fn account(CurrentUser(user): CurrentUser<Account>, auth: Auth<Account>) -> String {
    ///     let id = auth.session_id().await.unwrap_or_default();
    ///     format!("{}, this browser's login is {id}", user.name)
    /// }
    /// ```
    pub async fn session_id(&self) -> Option<String> {
        self.context.current_user().await.ok()??;
        let login = self.context.session().login()?;
        login.session_id.as_deref().map(str::to_owned)
    }

    /// Where a login would redirect to: the safe `next`, or the default.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum::response::Html;
    /// use axum_latch::Auth;
    ///
    /// async fn login_page(auth: Auth<Account>) -> Html<String> {
    ///     // Tell the visitor where they will land.
    ///     Html(format!("<p>After logging in you will go to {}</p>", auth.next_url()))
    /// }
    /// ```
    pub fn next_url(&self) -> &str {
        next::safe_or(
            self.next.as_deref(),
            &self.context.config().default_redirect,
        )
    }

    /// With a registry, ends the session the browser is logged in with, if
    /// any, on the server: until it could no longer be valid anyway (for a
    /// browser with a remember cookie, as long as such a cookie can last).
    async fn end_this_session(&self) {
        let Some(registry) = &self.context.config().registry else {
            return;
        };
        let Some(login) = self.context.session().login() else {
            return;
        };
        let Some(session_id) = login.session_id.as_deref() else {
            return;
        };
        // A copy of a cookie ended before (replayed to a logout, as often as
        // anyone likes) would append its ending to the feed every time.
        if login
            .session_key
            .is_some_and(|key| registry.ended_here(key))
        {
            return;
        }
        let now = self.context.session().site().clock.unix_secs();
        let absolute = self.context.session().config().absolute_timeout.as_secs();
        // What the registry recorded says how long the session (and its
        // remember cookie) could last; without it, a remembered browser's
        // ending is kept as long as any remember cookie can last.
        let until = if self.context.remember_cookie().is_some() {
            now.saturating_add(SessionRegistry::LONGEST_LIFETIME)
        } else {
            let began = login.login_at.filter(|at| at.is_finite() && *at > 0.0);
            (began.map_or(now, |at| at as u64).saturating_add(absolute)).max(now + 1)
        };
        let user_id = login.user_id.to_string();
        let until = registry
            .recorded_until(&user_id, session_id)
            .await
            .unwrap_or(until);
        registry
            .end(Ending::Session {
                session_id: session_id.to_owned(),
                user_id,
                until,
            })
            .await;
    }

    /// The registry, or the error that says there is none.
    fn registry(&self) -> Result<&SessionRegistry, AuthError> {
        self.context
            .config()
            .registry
            .as_ref()
            .ok_or(AuthError::NoRegistry)
    }

    /// The logged-in user's id as JSON text and this session's id, or
    /// `None` for an anonymous request.
    async fn this_login(&self) -> Result<Option<(String, Option<String>)>, AuthError> {
        let user = self
            .current_user()
            .await
            .map_err(|_| AuthError::LoaderFailed)?;
        let Some(user) = user else {
            return Ok(None);
        };
        let user_id = serde_json::to_value(user.id()).map_err(AuthError::UserId)?;
        let session_id = self
            .context
            .session()
            .login()
            .and_then(|login| login.session_id.as_deref().map(str::to_owned));
        Ok(Some((user_id.to_string(), session_id)))
    }

    /// Where the logged-in user is logged in: every browser with a session,
    /// remembered or not, most recently active first, this one marked
    /// [`current`](ActiveSession::current). Empty for an anonymous request.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoRegistry`] without a [session registry](crate::Login::sessions);
    /// [`AuthError::Registry`] if its store failed.
    ///
    /// ```
    /// use axum_latch::{Auth, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// async fn where_logged_in(auth: Auth<Account>) -> Result<String, axum_latch::AuthError> {
    ///     let mut page = String::new();
    ///     for session in auth.sessions().await? {
    ///         let mark = if session.current { " (this browser)" } else { "" };
    ///         page += &format!("{}{mark}, last active at {}\n", session.device, session.last_active_at);
    ///     }
    ///     Ok(page)
    /// }
    /// ```
    pub async fn sessions(&self) -> Result<Vec<ActiveSession>, AuthError> {
        let registry = self.registry()?;
        let Some((user_id, current)) = self.this_login().await? else {
            return Ok(Vec::new());
        };
        Ok(registry.active(&user_id, current.as_deref()).await?)
    }

    /// Ends one of the logged-in user's sessions, by its
    /// [`id`](ActiveSession::id), on every instance, with its remember-me
    /// cookie. Ending this browser's own session logs it out
    /// ([`logout_user`](Self::logout_user)). Returns whether the user had
    /// such a session: an id of another user's session, or any id on an
    /// anonymous request, ends nothing.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoRegistry`] without a registry; [`AuthError::Registry`]
    /// if its store cannot list the user's sessions (nothing has ended).
    ///
    /// ```
    /// use axum::{extract::Form, response::Redirect};
    /// use axum_latch::{Auth, FreshUser, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Ended { id: String }
    ///
    /// async fn end(_: FreshUser<Account>, auth: Auth<Account>, Form(form): Form<Ended>)
    ///     -> Result<Redirect, axum_latch::AuthError>
    /// {
    ///     auth.end_session(&form.id).await?;
    ///     Ok(Redirect::to("/account"))
    /// }
    /// ```
    pub async fn end_session(&self, id: &str) -> Result<bool, AuthError> {
        let registry = self.registry()?;
        let Some((user_id, current)) = self.this_login().await? else {
            return Ok(false);
        };
        if current.as_deref() == Some(id) {
            self.logout_user().await;
            return Ok(true);
        }
        let sessions = registry.active(&user_id, None).await?;
        let Some(session) = sessions.iter().find(|session| session.id == id) else {
            return Ok(false);
        };
        registry.end_listed(&user_id, session).await;
        tracing::info!(target: "latch", user_id = %user_id, device = %session.device, "session ended");
        self.emit_ended(&user_id, current, Ended::Session(session.id.clone()));
        Ok(true)
    }

    /// Ends every session of the logged-in user but this one ("log out
    /// everywhere else"), in one write, with their remember-me cookies.
    /// Returns `false` on an anonymous request, and on a request logged in
    /// by an API token ([`Login::request_loader`](crate::Login::request_loader)),
    /// which has no session of its own to keep.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoRegistry`] without a registry. A store that is down
    /// is not an error: the ending applies here at once and is written when
    /// the store is back.
    ///
    /// ```
    /// use axum_latch::{Auth, FreshUser, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// async fn elsewhere(_: FreshUser<Account>, auth: Auth<Account>) -> Result<&'static str, axum_latch::AuthError> {
    ///     auth.end_other_sessions().await?;
    ///     Ok("Logged out everywhere else")
    /// }
    /// ```
    pub async fn end_other_sessions(&self) -> Result<bool, AuthError> {
        let registry = self.registry()?;
        let Some((user_id, Some(current))) = self.this_login().await? else {
            // Anonymous, or an API client's token login, which has no
            // browser session to keep: "everywhere else" is not asked of it.
            return Ok(false);
        };
        let keep = current.as_str();
        let current = Some(current.clone());
        registry.cut_off_json(&user_id, Some(keep)).await;
        tracing::info!(target: "latch", user_id = %user_id, "other sessions ended");
        self.emit_ended(&user_id, current, Ended::Others);
        Ok(true)
    }

    /// Ends every session of the logged-in user, this one included, with
    /// every remember-me cookie. Returns `false` on an anonymous request.
    ///
    /// # Errors
    ///
    /// [`AuthError::NoRegistry`] without a registry.
    ///
    /// ```
    /// use axum::response::Redirect;
    /// use axum_latch::{Auth, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    ///
    /// async fn everywhere(auth: Auth<Account>) -> Result<Redirect, axum_latch::AuthError> {
    ///     auth.end_all_sessions().await?;
    ///     Ok(Redirect::to("/"))
    /// }
    /// ```
    pub async fn end_all_sessions(&self) -> Result<bool, AuthError> {
        let registry = self.registry()?;
        let Some((user_id, current)) = self.this_login().await? else {
            return Ok(false);
        };
        self.logout_user().await;
        registry.cut_off_json(&user_id, None).await;
        registry.revoke_remembered_json(&user_id).await;
        tracing::info!(target: "latch", user_id = %user_id, "every session ended");
        self.emit_ended(&user_id, current, Ended::All);
        Ok(true)
    }

    /// Spends the browser's pending two-step login, if any, on the server:
    /// once it leaves this browser (a logout, a new login), an older copy
    /// of the cookie cannot complete it either.
    fn spend_pending(&self) {
        let session = self.context.session();
        let Some(pending) = session.pending().as_ref().and_then(Pending::from_claim) else {
            return;
        };
        let config = self.context.config();
        let until = pending.expires_at(&config.two_step);
        let now = session.site().clock.unix_secs();
        config.pending.discard(&pending.id, until, now);
    }

    /// Tells the event hook that the user (`user_id`, as JSON text) ended
    /// sessions from this browser's (`current`).
    fn emit_ended(&self, user_id: &str, current: Option<String>, ended: Ended) {
        let user_id = serde_json::from_str(user_id).ok();
        self.context
            .emit_json(EventKind::SessionsEnded(ended), user_id.as_ref(), current);
    }

    /// Revokes and deletes the browser's remember cookie, if it has one.
    async fn forget_remembered(&self) {
        if let Some(token) = self.context.remember_cookie() {
            let keys = &self.context.session().site().keys;
            if let Err(error) = self.context.config().remember.revoke(keys, token).await {
                tracing::error!(target: "latch", %error, "remember token not revoked");
            }
        }
        self.context.delete_remember_cookie();
    }
}

impl<U: User> Auth<U> {
    /// The handle of a request whose login context is found, with the
    /// `next` of its query.
    pub(crate) fn from_context(context: LoginContext<U>, next: Option<String>) -> Self {
        Self { context, next }
    }
}

impl<S: Send + Sync, U: User> FromRequestParts<S> for Auth<U> {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let context = login_context::<U>(&parts.headers, &parts.uri, &parts.extensions, true)?;
        Ok(Self {
            context,
            next: next::from_query(parts.uri.query()),
        })
    }
}
