//! The `Login` layer on an axum router: its service attaches the login to
//! the request's state, and its future finds the user when something asks
//! (running the loader's own future, unboxed) and writes the remember-me
//! cookie on the response.

use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

use crate::adapter::axum::rejection::MissingLayer;
use crate::adapter::axum::request::request_state;
use crate::cookies;
use crate::events::ClientAddress;
use crate::login::context::{LoginContext, PendingLoad, Step};
use crate::login::request::RequestState;
use crate::login::{Login, LoginConfig, User, UserLoader};

impl<S, U: User, L: UserLoader<U>> Layer<S> for Login<U, L> {
    type Service = LoginService<S, U, L>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginService {
            inner,
            loader: self.loader.clone(),
            config: self.config.clone(),
        }
    }
}

/// The service made by the [`Login`] layer.
pub struct LoginService<S, U: User, L> {
    inner: S,
    loader: Arc<L>,
    config: Arc<LoginConfig<U>>,
}

impl<S: Clone, U: User, L> Clone for LoginService<S, U, L> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            loader: self.loader.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: std::fmt::Debug, U: User, L> std::fmt::Debug for LoginService<S, U, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, U, L, ReqBody, ResBody> Service<Request<ReqBody>> for LoginService<S, U, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    U: User,
    L: UserLoader<U>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = LoginFuture<S::Future, U, L>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let driver = match request_state(request.extensions()) {
            Ok(state) => {
                let config: Arc<dyn std::any::Any + Send + Sync> = self.config.clone();
                let attached = state.login.attach(config);
                if !attached {
                    // An outer login layer already serves this request: a
                    // wiring mistake, which the route's extractors refuse.
                    tracing::error!(target: "latch", "{}", MissingLayer::TwoLogins);
                } else {
                    if self.config.events.is_some() {
                        state.login.keep_for_events(
                            request.headers().get(http::header::USER_AGENT),
                            client_address(request.extensions()),
                        );
                    }
                    if self.config.request_loader.is_some() {
                        state.login.want_headers();
                    }
                }
                attached.then(|| Driver::new(state.clone(), self))
            }
            Err(missing) => {
                tracing::error!(target: "latch", "{missing}");
                None
            }
        };
        LoginFuture {
            inner: self.inner.call(request),
            work: None,
            driver,
        }
    }
}

/// The client's address for events, if the app gave it ([`ClientAddress`]).
fn client_address(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<ClientAddress>()
        .map(|ClientAddress(address)| *address)
}

/// What the login layer's future keeps to find the request's user.
struct Driver<U: User, L> {
    /// The request's login, made once for the whole request.
    context: LoginContext<U>,
    loader: Arc<L>,
}

impl<U: User, L> Driver<U, L> {
    fn new<S>(state: Arc<RequestState>, service: &LoginService<S, U, L>) -> Self {
        Self {
            context: LoginContext::from_parts(state, service.config.clone()),
            loader: service.loader.clone(),
        }
    }
}

impl<U: User, L> Drop for Driver<U, L> {
    fn drop(&mut self) {
        self.context.state().driver_gone();
    }
}

pin_project! {
    /// The login layer's work on one request's user.
    #[project = WorkProj]
    enum Work<F, U: User> {
        Load { #[pin] future: F, pending: Option<PendingLoad> },
        Slow { future: futures_util::future::BoxFuture<'static, crate::login::context::Resolved<U>> },
    }
}

pin_project! {
    /// The response future of [`LoginService`].
    pub struct LoginFuture<F, U: User, L: UserLoader<U>> {
        #[pin]
        inner: F,
        #[pin]
        work: Option<Work<L::Future, U>>,
        driver: Option<Driver<U, L>>,
    }
}

impl<F, U, L, ResBody, E> Future for LoginFuture<F, U, L>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    U: User,
    L: UserLoader<U>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(driver) = this.driver.as_ref() {
            driver.context.state().register_driver(cx);
        }
        loop {
            if let Poll::Ready(output) = this.inner.as_mut().poll(cx) {
                let mut response = output?;
                if let Some(driver) = this.driver.take() {
                    write_remember_cookie(&driver.context, &mut response);
                }
                return Poll::Ready(Ok(response));
            }
            let Some(driver) = this.driver.as_ref() else {
                return Poll::Pending;
            };
            let login = driver.context.state();
            if this.work.is_none() {
                // Only once the handler waits for the user: a request that
                // never asks never loads it.
                if !login.take_wanted() {
                    // Another task that asks wakes this one (registered above).
                    return Poll::Pending;
                }
                if login.found().is_some() {
                    continue;
                }
                let step = driver.context.start();
                if !take_step(step, driver, this.work.as_mut()) {
                    continue;
                }
            }
            let context = &driver.context;
            let step = match this.work.as_mut().as_pin_mut().map(Work::project) {
                Some(WorkProj::Load { future, pending }) => {
                    let loaded = std::task::ready!(future.poll(cx));
                    let pending = pending.take().expect("a load is finished once");
                    context.finish_load(pending, loaded.map_err(Into::into))
                }
                Some(WorkProj::Slow { future }) => {
                    Step::Done(std::task::ready!(future.as_mut().poll(cx)))
                }
                None => continue,
            };
            this.work.set(None);
            take_step(step, driver, this.work.as_mut());
        }
    }
}

/// Takes the next step of finding the user: stores a result, or starts the
/// work it needs. Returns whether there is work to poll.
fn take_step<U: User, L: UserLoader<U>>(
    step: Step<U>,
    driver: &Driver<U, L>,
    mut work: Pin<&mut Option<Work<L::Future, U>>>,
) -> bool {
    match step {
        Step::Done(resolved) => {
            driver.context.store(&resolved);
            false
        }
        Step::Load(id, pending) => {
            work.set(Some(Work::Load {
                future: driver.loader.load_user(id),
                pending: Some(pending),
            }));
            true
        }
        Step::Slow(future) => {
            work.set(Some(Work::Slow { future }));
            true
        }
    }
}

/// Deletes duplicated remember cookies and writes the remember cookie's
/// change, if any.
fn write_remember_cookie<U: User, B>(context: &LoginContext<U>, response: &mut Response<B>) {
    if context.remember_duplicated() {
        let name = &context.session().site().remember_cookie;
        context
            .session()
            .delete_strays(response.headers_mut(), name);
    }
    if let Some(cookie) = context.take_remember_cookie() {
        cookies::append(response.headers_mut(), cookie);
    }
}

#[cfg(test)]
mod tests {
    //! The hand-over between the layer's future, which runs the loader, and
    //! whoever waits for the user: the handler's own task, another task,
    //! or a task still asking after the response has gone.

    use axum::routing::get;
    use axum::Router;
    use http::header::{COOKIE, SET_COOKIE};
    use http::{Request, StatusCode};
    use http_body_util::BodyExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tower::ServiceExt as _;

    use crate::adapter::axum::{Auth, CurrentUser};
    use crate::crypto::SecretKey;
    use crate::login::{Login, User};
    use crate::remember::Remember;
    use crate::session::Session;

    #[derive(Clone, Debug, PartialEq)]
    struct Account(u64);

    impl User for Account {
        type Id = u64;
        fn id(&self) -> u64 {
            self.0
        }
        fn auth_hash(&self) -> &[u8] {
            b"hash"
        }
    }

    /// A router whose loader yields to the runtime before answering (as a
    /// database would), counting its calls.
    fn app(loads: Arc<AtomicUsize>, routes: Router) -> Router {
        let login = Login::new(move |id: u64| {
            let loads = loads.clone();
            async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Ok::<_, std::convert::Infallible>(Some(Account(id)))
            }
        });
        routes
            .route(
                "/login",
                get(|auth: Auth<Account>| async move {
                    auth.login_user(&Account(7), Remember::Off).await.unwrap()
                }),
            )
            .layer(login)
            .layer(Session::new(SecretKey::new("k".repeat(32)).unwrap()).secure(false))
    }

    async fn session_cookie(app: &Router) -> String {
        let response = app
            .clone()
            .oneshot(
                Request::get("/login")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    async fn get_body(app: &Router, cookie: &str) -> (StatusCode, String) {
        let request = Request::get("/")
            .header(COOKIE, cookie)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_layer_runs_a_pending_loader_once_for_every_extractor() {
        let loads = Arc::new(AtomicUsize::new(0));
        let routes = Router::new().route(
            "/",
            get(
                |CurrentUser(a): CurrentUser<Account>, auth: Auth<Account>| async move {
                    let b = auth.current_user().await.unwrap().unwrap();
                    assert!(Arc::ptr_eq(&a, &b), "one user for the request");
                    format!("user {}", a.0)
                },
            ),
        );
        let app = app(loads.clone(), routes);
        let cookie = session_cookie(&app).await;
        assert_eq!(
            get_body(&app, &cookie).await,
            (StatusCode::OK, "user 7".into())
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1, "loaded once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_task_waiting_for_the_user_is_served() {
        let loads = Arc::new(AtomicUsize::new(0));
        let routes = Router::new().route(
            "/",
            get(|auth: Auth<Account>| async move {
                // The handler waits on a task of its own, which asks.
                let user = tokio::spawn(async move { auth.current_user().await })
                    .await
                    .unwrap()
                    .unwrap()
                    .expect("logged in");
                format!("user {}", user.0)
            }),
        );
        let app = app(loads.clone(), routes);
        let cookie = session_cookie(&app).await;
        // Many times: the spawned task may ask before, while or after the
        // layer's future waits, on either thread.
        for round in 1..=200 {
            let answer =
                tokio::time::timeout(std::time::Duration::from_secs(5), get_body(&app, &cookie))
                    .await
                    .expect("the spawned task is not left waiting");
            assert_eq!(answer, (StatusCode::OK, "user 7".into()));
            assert_eq!(loads.load(Ordering::SeqCst), round, "one load per request");
        }
    }

    /// The route guard waits for the user like an extractor does, with a
    /// loader that is not ready at once, and lets the route run only then.
    #[tokio::test]
    async fn the_route_guard_waits_for_a_pending_loader() {
        let loads = Arc::new(AtomicUsize::new(0));
        let routes = Router::new().route(
            "/",
            get(
                |CurrentUser(user): CurrentUser<Account>| async move { format!("user {}", user.0) },
            ),
        );
        let login = Login::new(|id: u64| async move {
            tokio::task::yield_now().await;
            Ok::<_, std::convert::Infallible>(Some(Account(id)))
        });
        let guarded = routes.route_layer(login.required());
        let app = app(loads.clone(), guarded);
        let cookie = session_cookie(&app).await;
        assert_eq!(
            get_body(&app, &cookie).await,
            (StatusCode::OK, "user 7".into())
        );
        let anonymous = app
            .clone()
            .oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "no login, no route"
        );
    }

    #[tokio::test]
    async fn asking_after_the_response_finds_the_user_alone() {
        let loads = Arc::new(AtomicUsize::new(0));
        let (sender, receiver) = tokio::sync::oneshot::channel::<Auth<Account>>();
        let sender = Arc::new(std::sync::Mutex::new(Some(sender)));
        let routes = Router::new().route(
            "/",
            get(move |auth: Auth<Account>| {
                let sender = sender.clone();
                async move {
                    // Kept past the response, asked only afterwards.
                    let _ = sender.lock().unwrap().take().unwrap().send(auth);
                    "sent"
                }
            }),
        );
        let app = app(loads.clone(), routes);
        let cookie = session_cookie(&app).await;
        assert_eq!(
            get_body(&app, &cookie).await,
            (StatusCode::OK, "sent".into())
        );
        let auth = receiver.await.unwrap();
        let user = auth.current_user().await.unwrap().expect("still logged in");
        assert_eq!(*user, Account(7));
        assert_eq!(loads.load(Ordering::SeqCst), 1, "found by the late caller");
    }

    /// All the `Set-Cookie` values of a response.
    fn set_cookies(response: &http::Response<axum::body::Body>) -> Vec<String> {
        response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    /// A logout while another task is restoring the login from the remember
    /// cookie: the restore, finishing after it, writes nothing, so the
    /// browser is logged out (its remember cookie deleted, no login in its
    /// session), as the handler was told.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_logout_while_the_user_is_being_found_stands() {
        let started = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::new(tokio::sync::Notify::new());
        let login = {
            let (started, gate) = (started.clone(), gate.clone());
            Login::new(move |id: u64| {
                let (started, gate) = (started.clone(), gate.clone());
                async move {
                    started.notify_one();
                    gate.notified().await;
                    Ok::<_, std::convert::Infallible>(Some(Account(id)))
                }
            })
        };
        let gate_in_handler = gate.clone();
        let app = Router::new()
            .route(
                "/login",
                get(|auth: Auth<Account>| async move {
                    auth.login_user(&Account(7), Remember::On).await.unwrap()
                }),
            )
            .route(
                "/logout",
                get(move |auth: Auth<Account>, other: Auth<Account>| {
                    let (started, gate) = (started.clone(), gate_in_handler.clone());
                    async move {
                        // The handler asks for the user (so the login
                        // layer's future restores the login, held inside
                        // the loader) and, meanwhile, logs out.
                        let (seen, ()) = tokio::join!(other.current_user(), async {
                            started.notified().await;
                            auth.logout_user().await;
                            gate.notify_one();
                            // Still running while the restore finishes.
                            for _ in 0..10 {
                                tokio::task::yield_now().await;
                            }
                        });
                        let seen = seen.unwrap();
                        format!("logged out; the handler saw {:?}", seen.map(|u| u.0))
                    }
                }),
            )
            .layer(login)
            .layer(Session::new(SecretKey::new("k".repeat(32)).unwrap()).secure(false));

        let response = app
            .clone()
            .oneshot(
                Request::get("/login")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let remember = set_cookies(&response)
            .into_iter()
            .find(|c| c.starts_with("_remember="))
            .expect("a remember cookie");
        let remember = remember.split(';').next().unwrap().to_owned();

        // The browser restarts: only its remember cookie.
        let request = Request::get("/logout")
            .header(COOKIE, &remember)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            app.clone().oneshot(request),
        )
        .await
        .expect("no hang")
        .unwrap();
        let cookies = set_cookies(&response);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            String::from_utf8_lossy(&body).starts_with("logged out"),
            "{body:?}"
        );
        let deleted = cookies
            .iter()
            .any(|c| c.starts_with("_remember=;") && c.contains("Max-Age=0"));
        assert!(deleted, "the remember cookie is deleted: {cookies:?}");
        assert!(
            !cookies
                .iter()
                .any(|c| c.starts_with("_remember=") && !c.starts_with("_remember=;")),
            "and not set again: {cookies:?}"
        );
        for cookie in cookies.iter().filter(|c| c.starts_with("session=")) {
            let value = cookie.split(';').next().unwrap();
            assert!(!logged_in(value), "no login in the session: {cookie}");
        }
    }

    /// Whether a session cookie value holds a login, read from its payload.
    fn logged_in(cookie: &str) -> bool {
        use base64::Engine as _;
        let token = cookie.trim_start_matches("session=");
        let payload = token.split('.').nth(1).unwrap_or("");
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap_or_default();
        String::from_utf8_lossy(&json).contains("_user_id")
    }

    /// A route behind two login layers is refused (a wiring mistake), not
    /// served by the outer one the app did not mean for it.
    #[tokio::test]
    async fn a_route_behind_two_login_layers_is_refused() {
        let inner = Login::new(|id: u64| async move {
            // Only user 1 may see the admin pages.
            Ok::<_, std::convert::Infallible>((id == 1).then_some(Account(id)))
        });
        let admin = Router::new()
            .route(
                "/admin",
                get(|CurrentUser(user): CurrentUser<Account>| async move {
                    format!("admin {}", user.0)
                }),
            )
            .layer(inner);
        let loads = Arc::new(AtomicUsize::new(0));
        let routes =
            Router::new()
                .route(
                    "/",
                    get(|CurrentUser(user): CurrentUser<Account>| async move {
                        format!("user {}", user.0)
                    }),
                )
                .merge(admin);
        let app = app(loads, routes);
        let cookie = session_cookie(&app).await; // user 7
        assert_eq!(
            get_body(&app, &cookie).await,
            (StatusCode::OK, "user 7".into())
        );
        let request = Request::get("/admin")
            .header(COOKIE, &cookie)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            String::from_utf8_lossy(&body).contains("two `Login` layers"),
            "{body:?}"
        );
    }

    /// A handler that blocks on the user (sync code reaching async) gets it:
    /// it finds the user itself rather than wait for the task it blocks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_blocking_on_the_user_gets_it() {
        let loads = Arc::new(AtomicUsize::new(0));
        let routes = Router::new().route(
            "/",
            get(|auth: Auth<Account>| async move {
                let user = tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(auth.current_user())
                });
                format!("user {}", user.unwrap().unwrap().0)
            }),
        );
        let app = app(loads.clone(), routes);
        let cookie = session_cookie(&app).await;
        // As a server runs it: the request in a task of its own.
        let request = tokio::spawn(async move { get_body(&app, &cookie).await });
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), request)
            .await
            .expect("no hang")
            .unwrap();
        assert_eq!(answer, (StatusCode::OK, "user 7".into()));
    }
}
