//! One request's login, with its user type erased so that it lives in the
//! request's one state: the login layer's settings, the user once found,
//! the remember-me cookie's fate, and the hand-over by which the login
//! layer's future runs the user loader for the extractors that wait on it.

use http::{HeaderMap, HeaderValue};
use std::any::Any;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Waker};

use crate::cookies::Lookup;

/// The user of a request, once found, with its type erased.
#[derive(Clone)]
pub(crate) enum Found {
    Anonymous,
    User {
        user: Arc<dyn Any + Send + Sync>,
        fresh: bool,
    },
    /// The loader failed; the request cannot be answered for this user.
    Failed,
}

/// What a caller asking for the user does next.
pub(crate) enum Want {
    /// Wait: the login layer's future, polling the caller's own task, finds
    /// the user.
    Wait,
    /// The user was found meanwhile.
    Found(Found),
    /// The caller is not in the driver's task (or there is no driver): it
    /// finds the user itself.
    FindItself,
}

/// Whether a login layer's future is there to find the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// No login layer has seen the request (yet).
    Absent,
    /// The login layer's future runs, and finds the user when asked.
    Running,
    /// The login layer's future has finished (or was dropped): whoever
    /// still asks finds the user by itself.
    Gone,
}

/// One request's login state. Every field starts empty and is filled when
/// first needed, so a request that never asks for its user pays nothing.
pub(crate) struct LoginState {
    /// The login layer's configuration (an `Arc<LoginConfig<U>>`).
    config: OnceLock<Arc<dyn Any + Send + Sync>>,
    /// The request's `User-Agent`, kept by the login layer.
    user_agent: OnceLock<Option<HeaderValue>>,
    found: Mutex<Option<Found>>,
    /// Something waits for the user: the login layer's future should find it.
    wanted: AtomicBool,
    hand_over: Mutex<HandOver>,
    /// The request's remember cookie, looked for when first needed.
    remember_cookie: OnceLock<Lookup>,
    /// The `Set-Cookie` for the remember cookie, if it changes.
    remember_update: Mutex<Option<HeaderValue>>,
    /// The request carried the remember cookie more than once.
    remember_duplicated: AtomicBool,
    /// Counts the logins, logouts and updates the handler made: work that
    /// was finding the user since an earlier count writes nothing.
    changes: Mutex<u64>,
    /// A second login layer saw the request: a wiring mistake.
    second_layer: AtomicBool,
    /// The client's address, for events, when the login layer has a hook.
    client: OnceLock<Option<IpAddr>>,
    /// The login layer has a request loader: keep the headers of a request
    /// without a login in its session for it.
    wants_headers: AtomicBool,
    /// The headers kept for the request loader.
    headers: OnceLock<HeaderMap>,
    /// The request loader found no user for the request's `Authorization`.
    credentials_refused: AtomicBool,
}

/// Who finds the user, and who waits for it.
struct HandOver {
    driver: Driver,
    /// The task of the login layer's future: only it waits for the driver.
    driver_waker: Option<Waker>,
}

impl Default for LoginState {
    fn default() -> Self {
        Self {
            config: OnceLock::new(),
            user_agent: OnceLock::new(),
            found: Mutex::new(None),
            wanted: AtomicBool::new(false),
            hand_over: Mutex::new(HandOver {
                driver: Driver::Absent,
                driver_waker: None,
            }),
            remember_cookie: OnceLock::new(),
            remember_update: Mutex::new(None),
            remember_duplicated: AtomicBool::new(false),
            changes: Mutex::new(0),
            second_layer: AtomicBool::new(false),
            client: OnceLock::new(),
            wants_headers: AtomicBool::new(false),
            headers: OnceLock::new(),
            credentials_refused: AtomicBool::new(false),
        }
    }
}

/// Whether two wakers wake the same task. `Waker::will_wake` also compares
/// the vtables, and a runtime's vtable can exist twice in a program (one
/// per codegen unit), so a waker and its clone may not "will_wake" each
/// other: the data pointer, which names the task, decides as well (but not
/// a null one, as a no-op waker has).
fn same_waker(a: &Waker, b: &Waker) -> bool {
    a.will_wake(b) || (a.data() == b.data() && !a.data().is_null())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LoginState {
    /// Called by the login layer for each request: its configuration, and
    /// that its future will find the user. Returns whether this layer is
    /// the request's login layer (the first one).
    pub fn attach(&self, config: Arc<dyn Any + Send + Sync>) -> bool {
        if self.config.set(config).is_err() {
            self.second_layer.store(true, Ordering::Relaxed);
            return false;
        }
        lock(&self.hand_over).driver = Driver::Running;
        true
    }

    /// Keeps what finding the user from a remember-me cookie, or logging in,
    /// reads of the request: the remember cookie and the `User-Agent`.
    /// Only the first call counts.
    pub fn prime(
        &self,
        remember_cookie: impl FnOnce() -> Lookup,
        user_agent: Option<&HeaderValue>,
    ) {
        self.remember_cookie.get_or_init(remember_cookie);
        self.user_agent.get_or_init(|| user_agent.cloned());
    }

    /// Keeps, for events, the request's `User-Agent` and the client's address.
    pub fn keep_for_events(&self, user_agent: Option<&HeaderValue>, client: Option<IpAddr>) {
        self.user_agent.get_or_init(|| user_agent.cloned());
        self.client.get_or_init(|| client);
    }

    /// The client's address, if the login layer kept one.
    pub fn client(&self) -> Option<IpAddr> {
        self.client.get().copied().flatten()
    }

    /// Asks for the headers of a request without a login in its session,
    /// for the request loader.
    pub fn want_headers(&self) {
        self.wants_headers.store(true, Ordering::Relaxed);
    }

    /// Whether the login layer has a request loader.
    pub fn wants_headers(&self) -> bool {
        self.wants_headers.load(Ordering::Relaxed)
    }

    /// Keeps a copy of the request's headers for the request loader (the
    /// first call counts).
    pub fn keep_headers(&self, headers: &HeaderMap) {
        self.headers.get_or_init(|| headers.clone());
    }

    /// The headers kept for the request loader.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.headers.get()
    }

    /// Records that the request loader found no user for the request's
    /// `Authorization` header.
    pub fn set_credentials_refused(&self) {
        self.credentials_refused.store(true, Ordering::Relaxed);
    }

    /// Whether the request loader found no user for the request's
    /// `Authorization` header.
    pub fn credentials_refused(&self) -> bool {
        self.credentials_refused.load(Ordering::Relaxed)
    }

    /// The login layer's configuration, if a login layer has seen the request.
    pub fn config(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.config.get()
    }

    pub fn user_agent(&self) -> Option<&HeaderValue> {
        self.user_agent.get()?.as_ref()
    }

    /// The user, if found.
    pub fn found(&self) -> Option<Found> {
        lock(&self.found).clone()
    }

    /// Sets the user, after a login or logout.
    pub fn set_found(&self, found: Found) {
        *lock(&self.found) = Some(found);
    }

    /// Sets the user only if nobody has meanwhile: a login or logout made
    /// while the user was being found wins.
    pub fn set_found_if_unset(&self, found: Found) {
        let mut slot = lock(&self.found);
        if slot.is_none() {
            *slot = Some(found);
        }
    }

    /// Asks the login layer's future to find the user. Only a caller in the
    /// driver's own task waits for it (the handler runs inside the login
    /// layer's future, which looks for the request once the handler is
    /// pending). Any other caller (a task the handler spawned, a handler
    /// blocking on the answer, a call after the response) finds the user
    /// itself: waiting on a task that may be the one it blocks could hang.
    pub fn want(&self, cx: &Context<'_>) -> Want {
        let hand_over = lock(&self.hand_over);
        if let Some(found) = self.found() {
            return Want::Found(found);
        }
        let driver_task = hand_over.driver == Driver::Running
            && hand_over
                .driver_waker
                .as_ref()
                .is_some_and(|driver| same_waker(driver, cx.waker()));
        if !driver_task {
            return Want::FindItself;
        }
        self.wanted.store(true, Ordering::Release);
        Want::Wait
    }

    /// For the driver: whether something asked for the user since last time.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }

    /// For the driver, each time it is polled and before it polls the
    /// handler: the task to wake when another task asks for the user.
    pub fn register_driver(&self, cx: &Context<'_>) {
        let mut hand_over = lock(&self.hand_over);
        match &hand_over.driver_waker {
            Some(waker) if same_waker(waker, cx.waker()) => {}
            _ => hand_over.driver_waker = Some(cx.waker().clone()),
        }
    }

    /// For the driver, when its future ends.
    pub fn driver_gone(&self) {
        let mut hand_over = lock(&self.hand_over);
        hand_over.driver = Driver::Gone;
        hand_over.driver_waker = None;
    }

    /// Whether a second login layer saw the request.
    pub fn second_layer(&self) -> bool {
        self.second_layer.load(Ordering::Relaxed)
    }

    /// The count of the handler's logins, logouts and updates so far.
    pub fn changes(&self) -> u64 {
        *lock(&self.changes)
    }

    /// Called before the handler logs in, logs out or updates the user:
    /// work finding the user from before writes nothing from now on.
    pub fn begin_change(&self) {
        *lock(&self.changes) += 1;
    }

    /// Runs `write` (a change to the session or the remember cookie made
    /// while finding the user) only if the handler has made no change since
    /// `seen`; the check and the write are one step.
    pub fn unless_changed<T>(&self, seen: u64, write: impl FnOnce() -> T) -> Option<T> {
        let changes = lock(&self.changes);
        (*changes == seen).then(write)
    }

    /// The request's remember cookie, as [`prime`](Self::prime) found it.
    pub fn remember_lookup(&self) -> &Lookup {
        static MISSING: Lookup = Lookup::Missing;
        self.remember_cookie.get().unwrap_or(&MISSING)
    }

    pub fn remember_update(&self) -> MutexGuard<'_, Option<HeaderValue>> {
        lock(&self.remember_update)
    }

    pub fn take_remember_update(&self) -> Option<HeaderValue> {
        lock(&self.remember_update).take()
    }

    pub fn set_remember_duplicated(&self) {
        self.remember_duplicated.store(true, Ordering::Relaxed);
    }

    pub fn remember_duplicated(&self) -> bool {
        self.remember_duplicated.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Task;
    impl Wake for Task {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_waker_and_its_clone_wake_the_same_task_and_others_do_not() {
        let task = Waker::from(Arc::new(Task));
        let other = Waker::from(Arc::new(Task));
        assert!(same_waker(&task, &task.clone()));
        assert!(!same_waker(&task, &other));
        // No-op wakers name no task: their null data pointer adds nothing
        // to what `will_wake` says.
        let noop = Waker::noop();
        assert_eq!(
            same_waker(noop, &noop.clone()),
            noop.will_wake(&noop.clone())
        );
    }

    #[test]
    fn only_the_driver_s_own_task_waits_for_it() {
        let state = LoginState::default();
        assert!(state.attach(Arc::new(())));
        let other = Waker::from(Arc::new(Task));
        assert!(
            matches!(state.want(&Context::from_waker(&other)), Want::FindItself),
            "before the driver is polled, nobody waits on it"
        );
        let driver = Waker::from(Arc::new(Task));
        state.register_driver(&Context::from_waker(&driver));
        let same = driver.clone();
        assert!(matches!(
            state.want(&Context::from_waker(&same)),
            Want::Wait
        ));
        assert!(state.take_wanted(), "the driver is asked");
        assert!(
            matches!(state.want(&Context::from_waker(&other)), Want::FindItself),
            "another task finds the user itself"
        );
        assert!(!state.take_wanted(), "without asking the driver");
        state.set_found(Found::Anonymous);
        assert!(matches!(
            state.want(&Context::from_waker(&other)),
            Want::Found(_)
        ));
    }

    #[test]
    fn work_from_before_a_change_writes_nothing() {
        let state = LoginState::default();
        let seen = state.changes();
        assert_eq!(state.unless_changed(seen, || "written"), Some("written"));
        state.begin_change();
        assert_eq!(state.unless_changed(seen, || "written"), None);
        assert_eq!(
            state.unless_changed(state.changes(), || "written"),
            Some("written")
        );
    }

    #[test]
    fn a_second_login_layer_is_noticed() {
        let state = LoginState::default();
        assert!(state.attach(Arc::new(1)));
        assert!(!state.second_layer());
        assert!(!state.attach(Arc::new(2)));
        assert!(state.second_layer());
    }
}
