//! The `Session` layer on an axum router: its service puts the request's
//! session in the request's extensions, and its future writes the session
//! cookie on the response.

use axum::extract::OriginalUri;
use http::header::HOST;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

use crate::cookies::CookieHeaders;
use crate::login::request::RequestState;
use crate::session::state::SessionState;
use crate::session::{Session, SessionConfig};

impl<S> Layer<S> for Session {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by the [`Session`] layer.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<SessionConfig>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = SessionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let cookies = CookieHeaders::new(request.headers());
        // Inside a nested router the URI has lost its prefix: the original
        // one says which paths the browser's cookies could have.
        let uri = request
            .extensions()
            .get::<OriginalUri>()
            .map_or(request.uri(), |original| &original.0);
        let path = uri.path_and_query().cloned();
        let host = match uri.host() {
            Some(host) => HeaderValue::from_str(host).ok(),
            None => request.headers().get(HOST).cloned(),
        };
        let state = Arc::new(RequestState {
            session: SessionState::new(self.config.clone(), cookies, path, host),
            login: Default::default(),
        });
        request.extensions_mut().insert(state.clone());
        SessionFuture {
            inner: self.inner.call(request),
            state: Some(state),
        }
    }
}

pin_project! {
    /// The response future of [`SessionService`].
    pub struct SessionFuture<F> {
        #[pin]
        inner: F,
        state: Option<Arc<RequestState>>,
    }
}

impl<F, ResBody, E> Future for SessionFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(state) = this.state.take() {
            state.session.write_to(response.headers_mut());
        }
        Poll::Ready(Ok(response))
    }
}
