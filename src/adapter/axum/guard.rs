//! Route layers that let only logged-in (or freshly logged-in, or
//! permitted) users through: `Login::required()`, `Login::fresh()` and
//! `Login::require(...)`.

use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::Request;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

use crate::adapter::axum::rejection::{ApiRoutes, Forbidden, LoginRejection, LoginRequired};
use crate::adapter::axum::request::login_context;
use crate::login::context::{LoginContext, Refusal, Resolved};
use crate::login::user::User;
use crate::login::Login;

/// A route layer that refuses requests without a login (or without a fresh
/// one), made by [`Login::required`](crate::Login::required) and
/// [`Login::fresh`](crate::Login::fresh). Add it with `Router::route_layer`.
pub struct RequireLogin<U> {
    login_url: Arc<str>,
    fresh: bool,
    api: bool,
    check: Option<Check<U>>,
    user: PhantomData<fn() -> U>,
}

/// A permission check on the logged-in user, as a route layer keeps it.
enum Check<U> {
    Sync(Arc<dyn Fn(&U) -> bool + Send + Sync>),
    Async(Arc<dyn Fn(Arc<U>) -> BoxFuture<'static, bool> + Send + Sync>),
}

impl<U> Clone for Check<U> {
    fn clone(&self) -> Self {
        match self {
            Check::Sync(check) => Check::Sync(check.clone()),
            Check::Async(check) => Check::Async(check.clone()),
        }
    }
}

impl<U> RequireLogin<U> {
    pub(crate) fn new(login_url: &str, fresh: bool) -> Self {
        Self {
            login_url: Arc::from(login_url),
            fresh,
            api: false,
            check: None,
            user: PhantomData,
        }
    }

    fn checking(mut self, check: Check<U>) -> Self {
        self.check = Some(check);
        self
    }

    /// Makes the routes behind this layer an API: every request without a
    /// login gets `401` with a JSON body, never a redirect to the login
    /// page, whatever it says of itself (a browser navigating to
    /// `/api/me` included). The extractors of these routes
    /// ([`FreshUser`](crate::FreshUser) too) answer the same way.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use axum_latch::{CurrentUser, Login, User};
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    ///
    /// let login = Login::new(load);
    /// let api: Router = Router::new()
    ///     .route("/me", get(|CurrentUser(user): CurrentUser<Account>| async move { user.id.to_string() }))
    ///     .route_layer(login.required().api());
    /// let app: Router = Router::new().nest("/api", api);
    /// ```
    pub fn api(mut self) -> Self {
        self.api = true;
        self
    }
}

impl<U> Clone for RequireLogin<U> {
    fn clone(&self) -> Self {
        Self {
            login_url: self.login_url.clone(),
            fresh: self.fresh,
            api: self.api,
            check: self.check.clone(),
            user: PhantomData,
        }
    }
}

impl<U> std::fmt::Debug for RequireLogin<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireLogin")
            .field("login_url", &self.login_url)
            .field("fresh", &self.fresh)
            .field("api", &self.api)
            .field("check", &self.check.is_some())
            .finish()
    }
}

impl<S, U> Layer<S> for RequireLogin<U> {
    type Service = RequireLoginService<S, U>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireLoginService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequireLogin`].
pub struct RequireLoginService<S, U> {
    inner: S,
    layer: RequireLogin<U>,
}

impl<S: Clone, U> Clone for RequireLoginService<S, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, U, B> Service<Request<B>> for RequireLoginService<S, U>
where
    S: Service<Request<B>, Error = Infallible> + Clone,
    S::Response: IntoResponse,
    U: User,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RequireLoginFuture<S, U, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if self.layer.api {
            request.extensions_mut().insert(ApiRoutes);
        }
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let step = match login_context::<U>(
            request.headers(),
            request.uri(),
            request.extensions(),
            false,
        ) {
            Ok(context) => Step::Checking {
                context,
                own: None,
                request: Some(request),
                inner: Some(inner),
                login_url: self.layer.login_url.clone(),
                fresh: self.layer.fresh,
                check: self.layer.check.clone(),
            },
            Err(missing) => Step::Answered {
                response: Some(missing.into_response()),
            },
        };
        RequireLoginFuture { step }
    }
}

pin_project! {
    /// The response future of [`RequireLoginService`]: finds the user,
    /// then calls the route or answers for it.
    pub struct RequireLoginFuture<S: Service<Request<B>>, U: User, B> {
        #[pin]
        step: Step<S, U, B>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<S: Service<Request<B>>, U: User, B> {
        /// Waiting for the user.
        Checking {
            context: LoginContext<U>,
            own: Option<BoxFuture<'static, Resolved<U>>>,
            request: Option<Request<B>>,
            inner: Option<S>,
            login_url: Arc<str>,
            fresh: bool,
            check: Option<Check<U>>,
        },
        /// Logged in: waiting for an async permission check.
        Permitting {
            check: BoxFuture<'static, bool>,
            request: Option<Request<B>>,
            inner: Option<S>,
        },
        /// Let through: the route answers.
        Calling { #[pin] future: S::Future },
        /// Refused, or the router lacks a layer.
        Answered { response: Option<Response> },
    }
}

impl<S, U, B> Future for RequireLoginFuture<S, U, B>
where
    S: Service<Request<B>, Error = Infallible>,
    S::Response: IntoResponse,
    U: User,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut step = self.project().step;
        loop {
            let next = match step.as_mut().project() {
                StepProj::Checking {
                    context,
                    own,
                    request,
                    inner,
                    login_url,
                    fresh,
                    check,
                } => {
                    let resolved = std::task::ready!(context.poll_resolve(cx, own));
                    let (Some(request), Some(mut inner)) = (request.take(), inner.take()) else {
                        unreachable!("a check is finished once");
                    };
                    match LoginContext::required(resolved, *fresh) {
                        Ok(user) => match check.take() {
                            None => Step::Calling {
                                future: inner.call(request),
                            },
                            Some(Check::Sync(check)) => {
                                if check(&user) {
                                    Step::Calling {
                                        future: inner.call(request),
                                    }
                                } else {
                                    forbidden::<S, U, B>(&user, &request)
                                }
                            }
                            Some(Check::Async(check)) => Step::Permitting {
                                check: check(user),
                                request: Some(request),
                                inner: Some(inner),
                            },
                        },
                        Err(Refusal::LoaderFailed) => Step::Answered {
                            response: Some(LoginRejection::LoaderFailed.into_response()),
                        },
                        Err(refusal) => {
                            if refusal == Refusal::NotFresh {
                                context.emit_fresh_login_required();
                            }
                            let rejection = LoginRequired::new(
                                request.method(),
                                request.uri(),
                                request.headers(),
                                request.extensions(),
                                login_url,
                                refusal == Refusal::NotFresh,
                            )
                            .with_challenge(context.challenge());
                            Step::Answered {
                                response: Some(rejection.into_response()),
                            }
                        }
                    }
                }
                StepProj::Permitting {
                    check,
                    request,
                    inner,
                } => {
                    let allowed = std::task::ready!(check.as_mut().poll(cx));
                    let (Some(request), Some(mut inner)) = (request.take(), inner.take()) else {
                        unreachable!("a check is finished once");
                    };
                    if allowed {
                        Step::Calling {
                            future: inner.call(request),
                        }
                    } else {
                        tracing::debug!(target: "latch", "request refused: the user lacks the permission");
                        Step::Answered {
                            response: Some(
                                Forbidden::new(request.headers(), request.extensions())
                                    .into_response(),
                            ),
                        }
                    }
                }
                StepProj::Calling { future } => {
                    let response = match std::task::ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    return Poll::Ready(Ok(response.into_response()));
                }
                StepProj::Answered { response } => {
                    let response = response.take().expect("a response is taken once");
                    return Poll::Ready(Ok(response));
                }
            };
            step.set(next);
        }
    }
}

/// The answer to a logged-in user a permission check refused.
fn forbidden<S: Service<Request<B>>, U: User, B>(user: &U, request: &Request<B>) -> Step<S, U, B> {
    tracing::debug!(target: "latch", user_id = ?user.id(), "request refused: the user lacks the permission");
    Step::Answered {
        response: Some(Forbidden::new(request.headers(), request.extensions()).into_response()),
    }
}

impl<U: User, L> Login<U, L> {
    /// A route layer that lets only logged-in users through, for a group of
    /// routes. Others get what [`LoginRequired`](crate::rejection::LoginRequired) says.
    ///
    /// ```
    /// # use axum::{routing::get, Router};
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account;
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { 1 } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// let login = Login::new(load);
    /// let app: Router = Router::new()
    ///     .route("/settings", get(|| async { "settings" }))
    ///     .route("/billing", get(|| async { "billing" }))
    ///     .route_layer(login.required())
    ///     .route("/login", get(|| async { "the form" }))
    ///     .layer(login)
    ///     .layer(Session::new(SecretKey::generate()?));
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn required(&self) -> RequireLogin<U> {
        RequireLogin::new(&self.config.login_url, false)
    }

    /// A route layer that lets only users with a fresh login through: one
    /// made with a password in this browser session, not restored from a
    /// remember-me cookie. Others are sent to log in again.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// # async fn load(id: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// use axum::{routing::get, Router};
    /// use axum_latch::Login;
    ///
    /// let login = Login::new(load);
    /// let sensitive: Router = Router::new()
    ///     .route("/billing", get(|| async { "billing" }))
    ///     .route_layer(login.fresh());
    /// ```
    pub fn fresh(&self) -> RequireLogin<U> {
        RequireLogin::new(&self.config.login_url, true)
    }

    /// A route layer that lets through only logged-in users for whom
    /// `allows` is true: `login.require(|user| user.is_admin)`. A logged-in
    /// user it refuses gets `403 Forbidden` (an HTML page for a browser's
    /// navigation, JSON for an API client; see
    /// [`Forbidden`](crate::rejection::Forbidden)), never a redirect to the
    /// login page; an anonymous request is refused as by
    /// [`required`](Self::required). For a check that must wait (a
    /// database), use [`require_async`](Self::require_async); for a handler,
    /// the [`Allowed`](crate::Allowed) extractor.
    ///
    /// ```
    /// # use axum::{routing::get, Router};
    /// # use axum_latch::{Login, SecretKey, Session, User};
    /// # #[derive(Clone)] struct Account { id: u64, is_admin: bool }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// let login = Login::new(load);
    /// let app: Router = Router::new()
    ///     .route("/admin", get(|| async { "the admin page" }))
    ///     .route_layer(login.require(|user: &Account| user.is_admin))
    ///     .layer(login)
    ///     .layer(Session::new(SecretKey::generate()?));
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn require<F>(&self, allows: F) -> RequireLogin<U>
    where
        F: Fn(&U) -> bool + Send + Sync + 'static,
    {
        self.required().checking(Check::Sync(Arc::new(allows)))
    }

    /// [`require`](Self::require) with a check that waits: `allows` gets
    /// the user and returns a future of the answer.
    ///
    /// ```
    /// # use axum::{routing::get, Router};
    /// # use axum_latch::{Login, User};
    /// # use std::sync::Arc;
    /// # #[derive(Clone)] struct Account { id: u64 }
    /// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
    /// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
    /// # async fn has_role(_: u64, _: &str) -> bool { false }
    /// let login = Login::new(load);
    /// let billing: Router = Router::new()
    ///     .route("/billing", get(|| async { "billing" }))
    ///     .route_layer(login.require_async(|user: Arc<Account>| async move {
    ///         has_role(user.id, "billing").await
    ///     }));
    /// ```
    pub fn require_async<F, Fut>(&self, allows: F) -> RequireLogin<U>
    where
        F: Fn(Arc<U>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check = move |user: Arc<U>| -> BoxFuture<'static, bool> { Box::pin(allows(user)) };
        self.required().checking(Check::Async(Arc::new(check)))
    }
}
