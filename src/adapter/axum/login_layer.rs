//! The `Login` layer on an axum router: its service puts the request's
//! login context in the request's extensions, and its future writes the
//! remember-me cookie on the response.

use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

use crate::adapter::axum::MissingLayer;
use crate::cookies;
use crate::login::context::LoginContext;
use crate::login::{Login, LoginConfig, User, UserLoader};
use crate::session::state::SessionHandle;

impl<S, U: User, L: UserLoader<U>> Layer<S> for Login<U, L> {
    type Service = LoginService<S, U>;

    fn layer(&self, inner: S) -> Self::Service {
        LoginService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by the [`Login`] layer.
pub struct LoginService<S, U: User> {
    inner: S,
    config: Arc<LoginConfig<U>>,
}

impl<S: Clone, U: User> Clone for LoginService<S, U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S, U, ReqBody, ResBody> Service<Request<ReqBody>> for LoginService<S, U>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    U: User,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = LoginFuture<S::Future, U>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let context = match request.extensions().get::<SessionHandle>() {
            Some(session) => {
                let context =
                    LoginContext::new(self.config.clone(), session.clone(), request.headers());
                request.extensions_mut().insert(context.clone());
                Some(context)
            }
            None => {
                tracing::error!(target: "latch", "{}", MissingLayer::Session);
                None
            }
        };
        LoginFuture {
            inner: self.inner.call(request),
            context,
        }
    }
}

pin_project! {
    /// The response future of [`LoginService`].
    pub struct LoginFuture<F, U: User> {
        #[pin]
        inner: F,
        context: Option<LoginContext<U>>,
    }
}

impl<F, U, ResBody, E> Future for LoginFuture<F, U>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    U: User,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(context) = this.context.take() {
            if context.remember_duplicated() {
                let name = &context.session().config().remember_cookie;
                context
                    .session()
                    .delete_strays(response.headers_mut(), name);
            }
            if let Some(cookie) = context.take_remember_cookie() {
                cookies::append(response.headers_mut(), cookie);
            }
        }
        Poll::Ready(Ok(response))
    }
}
