//! The `Session` layer on an axum router: its service puts the request's
//! one state in the request's extensions, and its future writes the session
//! cookie on the response.

use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

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
        // Nothing is read of the request here: the extractors read the
        // cookies when they first need them.
        let state = Arc::new(RequestState {
            session: SessionState::new(self.config.clone()),
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
