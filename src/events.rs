//! Events for an audit trail: what happened to a user's logins, handed to
//! the app's hook in the background, never on the request's way.
//!
//! Give the [`Login`](crate::Login) layer a hook with
//! [`Login::on_event`](crate::Login::on_event); latch calls it with a
//! [`LoginEvent`] for each of these:
//!
//! | [`EventKind`] | When |
//! |---|---|
//! | [`LoggedIn`](EventKind::LoggedIn) | a password login ([`Auth::login_user`](crate::Auth::login_user)), a login restored from a remember-me cookie, or a Microdot login adopted ([`LoginMethod`]) |
//! | [`LoggedOut`](EventKind::LoggedOut) | [`Auth::logout_user`](crate::Auth::logout_user) in a logged-in browser |
//! | [`SessionsEnded`](EventKind::SessionsEnded) | the user ended one of their other sessions, every other one, or all ([`Auth::end_session`](crate::Auth::end_session) and its kin) |
//! | [`RememberRotated`](EventKind::RememberRotated) | a revocable remember-me token was used and replaced |
//! | [`RememberTheft`](EventKind::RememberTheft) | a copied remember-me cookie was presented: every remembered login of the user was revoked |
//! | [`Throttled`](EventKind::Throttled) | a login was refused by the throttle (the app reports it: [`Auth::report_throttled`](crate::Auth::report_throttled)) |
//! | [`FreshLoginRequired`](EventKind::FreshLoginRequired) | a logged-in user was sent to type their password again |
//! | [`LoginFailed`](EventKind::LoginFailed) | a wrong password or unknown user (the app reports it: [`Auth::report_failed_login`](crate::Auth::report_failed_login)) |
//!
//! Each event carries the user's id (when known), the time, a summary of
//! the device (`Firefox on Linux`), the client's address when the app
//! provides it, and the session's id: never a token, a cookie or a
//! password.
//!
//! The hook runs on a background task, one event after the other, in the
//! order latch saw them. It cannot slow down, block or fail a request: the
//! request only puts the event in a queue of 1,024; while the queue is full
//! (a hook much slower than the site's logins), further events are dropped
//! and counted in a `warn` log. The last quarter of the queue is kept for
//! the events an anonymous client cannot cause at will: a flood of failed
//! logins, throttled logins or fresh logins asked for gives way there, so
//! it cannot push out the login that follows it. A hook that panics loses
//! that event only. The task needs a Tokio runtime, which axum apps have.
//!
//! The queue bounds the number of events, not their size: report failed
//! logins with the id of the user the name belongs to (or `None`), not
//! with the name a client typed.
//!
//! The client's address is the one in a [`ClientAddress`] extension that
//! the app puts in the request: the connection's peer (from axum's
//! `ConnectInfo`), or what a reverse proxy it trusts says.
//!
//! ```
//! use axum_latch::events::{EventKind, LoginEvent};
//! use axum_latch::{Login, User};
//! # #[derive(Clone)] struct Account { id: u64 }
//! # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
//! # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
//!
//! let login = Login::new(load).on_event(|event: LoginEvent<u64>| async move {
//!     // INSERT INTO activity (user_id, what, at, device, address) VALUES (...)
//!     if let EventKind::RememberTheft = event.kind {
//!         eprintln!("user {:?}: a copied remember-me cookie was used", event.user_id);
//!     }
//! });
//! ```

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// How many events wait for the hook before new ones are dropped.
const QUEUE: usize = 1024;

/// Room in the queue kept for the events an anonymous client cannot cause
/// at will (logins, logouts, thefts...).
const RESERVED: usize = QUEUE / 4;

/// Something that happened to a user's logins, for an audit trail.
///
/// It never holds a token, a cookie or a password.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoginEvent<Id> {
    /// What happened.
    pub kind: EventKind,
    /// Whose login it was, when known: a failed login for an unknown user
    /// name, or a stolen token whose user id is not of the app's type, has
    /// none.
    pub user_id: Option<Id>,
    /// When it happened, by latch's [clock](crate::clock::Clock).
    pub at: SystemTime,
    /// A summary of the request's `User-Agent` (`Firefox on Linux`;
    /// `Unknown device` without one).
    pub device: Option<String>,
    /// The client's address, when the app provides it (see the
    /// [module](self)).
    pub client: Option<IpAddr>,
    /// The id of the browser's login the event is about, when it has one
    /// (the new one for [`LoggedIn`](EventKind::LoggedIn), the ended one
    /// for [`LoggedOut`](EventKind::LoggedOut)). It names a session in the
    /// [registry](crate::registry); it is not a secret.
    pub session_id: Option<String>,
}

/// What a [`LoginEvent`] says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The user logged in.
    LoggedIn(LoginMethod),
    /// The user logged out in this browser.
    LoggedOut,
    /// The user ended sessions of theirs from this browser.
    SessionsEnded(Ended),
    /// A remember-me token was used and replaced by a new one.
    RememberRotated,
    /// A copied remember-me cookie was presented; every remembered login of
    /// the user has been revoked.
    RememberTheft,
    /// The throttle refused a login attempt, reported by the app.
    Throttled {
        /// How long the throttle asked the client to wait.
        retry_after: Duration,
    },
    /// A page needed a fresh login, and the user's was not: a
    /// [`FreshUser`](crate::FreshUser) or [`Login::fresh`](crate::Login::fresh)
    /// refused the request (heard even when the handler takes the
    /// rejection and answers itself).
    FreshLoginRequired,
    /// A login attempt failed (wrong password, unknown user), reported by
    /// the app.
    LoginFailed,
}

/// How a user logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LoginMethod {
    /// With a password (or whatever the app checked before
    /// [`Auth::login_user`](crate::Auth::login_user)).
    Password,
    /// Restored from a remember-me cookie.
    Remembered,
    /// A Microdot login adopted in [interop mode](crate::Session::microdot_compat).
    Adopted,
    /// A [two-step login](crate::two_step), completed with the second
    /// factor the app names (`"totp"`, `"recovery_code"`...).
    SecondFactor(&'static str),
}

/// Which sessions an [`EventKind::SessionsEnded`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ended {
    /// One other session, by its id.
    Session(String),
    /// Every session of the user but this browser's.
    Others,
    /// Every session of the user, this browser's included.
    All,
}

impl EventKind {
    /// Whether anyone, logged in or not, can cause this event as often as
    /// they like: reported failed and throttled logins, and fresh logins
    /// asked for. These give way first when the hook is behind.
    fn anyone_can_cause(&self) -> bool {
        matches!(
            self,
            EventKind::LoginFailed | EventKind::Throttled { .. } | EventKind::FreshLoginRequired
        )
    }

    /// A short name for storing or showing the event: `logged_in`,
    /// `logged_in_remembered`, `logged_in_adopted`, `logged_in_two_step`,
    /// `logged_out`,
    /// `sessions_ended`, `remember_rotated`, `remember_theft`,
    /// `throttled`, `fresh_login_required` or `login_failed`.
    ///
    /// ```
    /// use axum_latch::events::{EventKind, LoginMethod};
    ///
    /// assert_eq!(EventKind::LoggedIn(LoginMethod::Password).name(), "logged_in");
    /// assert_eq!(EventKind::LoginFailed.name(), "login_failed");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::LoggedIn(LoginMethod::Password) => "logged_in",
            EventKind::LoggedIn(LoginMethod::Remembered) => "logged_in_remembered",
            EventKind::LoggedIn(LoginMethod::Adopted) => "logged_in_adopted",
            EventKind::LoggedIn(LoginMethod::SecondFactor(_)) => "logged_in_two_step",
            EventKind::LoggedOut => "logged_out",
            EventKind::SessionsEnded(_) => "sessions_ended",
            EventKind::RememberRotated => "remember_rotated",
            EventKind::RememberTheft => "remember_theft",
            EventKind::Throttled { .. } => "throttled",
            EventKind::FreshLoginRequired => "fresh_login_required",
            EventKind::LoginFailed => "login_failed",
        }
    }
}

/// The client's address, for events: put it in the request's extensions
/// with a middleware outside the login layer. The connection's peer is in
/// axum's `ConnectInfo` (serve the app with
/// `into_make_service_with_connect_info::<SocketAddr>()`); behind a reverse
/// proxy, take the address the proxy gives, and only from a proxy you trust.
///
/// ```
/// use axum::extract::{ConnectInfo, Request};
/// use axum::middleware::{self, Next};
/// use axum::response::Response;
/// use axum::Router;
/// use axum_latch::events::ClientAddress;
/// use std::net::SocketAddr;
///
/// async fn client_address(mut request: Request, next: Next) -> Response {
///     let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
///     if let Some(address) = peer {
///         request.extensions_mut().insert(ClientAddress(address));
///     }
///     next.run(request).await
/// }
///
/// let app: Router = Router::new()
///     // ... routes, then .layer(login).layer(session), then:
///     .layer(middleware::from_fn(client_address));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

/// The app's hook for [`LoginEvent`]s: any
/// `Fn(LoginEvent<Id>) -> impl Future<Output = ()>`, given to
/// [`Login::on_event`](crate::Login::on_event).
pub trait EventHook<Id>: Send + Sync + 'static {
    /// Handles one event.
    fn handle(&self, event: LoginEvent<Id>) -> BoxFuture<'static, ()>;
}

impl<Id, F, Fut> EventHook<Id> for F
where
    F: Fn(LoginEvent<Id>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(&self, event: LoginEvent<Id>) -> BoxFuture<'static, ()> {
        Box::pin(self(event))
    }
}

/// Where the login layer sends its events: a queue to a task that calls
/// the hook, started with the first event.
pub(crate) struct Events<Id> {
    hook: Arc<dyn EventHook<Id>>,
    queue: Mutex<Option<mpsc::Sender<LoginEvent<Id>>>>,
    dropped: AtomicU64,
}

impl<Id: Send + 'static> Events<Id> {
    pub fn new(hook: impl EventHook<Id>) -> Self {
        Self {
            hook: Arc::new(hook),
            queue: Mutex::new(None),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `event` for the hook, never waiting.
    pub fn send(&self, event: LoginEvent<Id>) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let event = match queue.as_ref() {
            None => event,
            Some(sender) if sender.capacity() <= RESERVED && event.kind.anyone_can_cause() => {
                // Failed logins and the like can be sent by the thousand by
                // anyone: past three quarters of the queue they give way,
                // so that a flood of them cannot push out the login that
                // follows it.
                self.drop_one();
                return;
            }
            Some(sender) => match sender.try_send(event) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.drop_one();
                    return;
                }
                // The task ended with its runtime (a test's, say): start anew.
                Err(mpsc::error::TrySendError::Closed(event)) => event,
            },
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(target: "latch", "login event dropped: no Tokio runtime to run the event hook on");
            return;
        };
        let (sender, mut receiver) = mpsc::channel(QUEUE);
        let hook = self.hook.clone();
        runtime.spawn(async move {
            while let Some(event) = receiver.recv().await {
                // The hook is called inside the caught future: a closure
                // that panics before it returns its future loses its
                // event only, not the task and the events queued behind.
                let handled = AssertUnwindSafe(async { hook.handle(event).await });
                if handled.catch_unwind().await.is_err() {
                    tracing::error!(target: "latch", "the login event hook panicked: that event is lost");
                }
            }
        });
        // A new channel has room.
        let _ = sender.try_send(event);
        *queue = Some(sender);
    }
}

impl<Id> Events<Id> {
    /// Counts an event dropped for want of room, and says so in the log
    /// at the 1st, 2nd, 4th, 8th... drop, not once for each.
    fn drop_one(&self) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped.is_power_of_two() {
            tracing::warn!(target: "latch", dropped, "login events dropped: the event hook is behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> LoginEvent<u64> {
        LoginEvent {
            kind,
            user_id: Some(1),
            at: SystemTime::UNIX_EPOCH,
            device: None,
            client: None,
            session_id: None,
        }
    }

    #[tokio::test]
    async fn events_reach_the_hook_in_order_and_a_panic_loses_one_only() {
        let (seen, mut heard) = mpsc::unbounded_channel();
        let events = Events::new(move |event: LoginEvent<u64>| {
            let seen = seen.clone();
            async move {
                if event.kind == EventKind::LoggedOut {
                    panic!("the app's hook fails");
                }
                seen.send(event.kind).unwrap();
            }
        });
        events.send(event(EventKind::LoginFailed));
        events.send(event(EventKind::LoggedOut));
        events.send(event(EventKind::RememberRotated));
        assert_eq!(heard.recv().await, Some(EventKind::LoginFailed));
        assert_eq!(heard.recv().await, Some(EventKind::RememberRotated));
    }

    #[tokio::test]
    async fn a_slow_hook_never_holds_up_the_sender() {
        let (release, wait) = tokio::sync::watch::channel(false);
        let events = Events::new(move |_: LoginEvent<u64>| {
            let mut wait = wait.clone();
            async move {
                let _ = wait.wait_for(|go| *go).await;
            }
        });
        for _ in 0..QUEUE * 3 {
            events.send(event(EventKind::LoginFailed));
        }
        assert!(events.dropped.load(Ordering::Relaxed) >= (QUEUE as u64) * 2 - 1);
        release.send(true).unwrap();
    }

    #[test]
    fn without_a_runtime_an_event_is_dropped_not_a_panic() {
        let events = Events::new(|_: LoginEvent<u64>| async {});
        events.send(event(EventKind::LoginFailed));
        assert!(events.queue.lock().unwrap().is_none());
    }

    #[test]
    fn every_kind_has_a_name() {
        let kinds = [
            EventKind::LoggedIn(LoginMethod::Password),
            EventKind::LoggedIn(LoginMethod::Remembered),
            EventKind::LoggedIn(LoginMethod::Adopted),
            EventKind::LoggedIn(LoginMethod::SecondFactor("totp")),
            EventKind::LoggedOut,
            EventKind::SessionsEnded(Ended::All),
            EventKind::RememberRotated,
            EventKind::RememberTheft,
            EventKind::Throttled {
                retry_after: Duration::ZERO,
            },
            EventKind::FreshLoginRequired,
            EventKind::LoginFailed,
        ];
        let names: std::collections::HashSet<_> = kinds.iter().map(EventKind::name).collect();
        assert_eq!(names.len(), kinds.len());
    }
}
