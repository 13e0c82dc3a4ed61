//! The `CrossOriginGuard` layer on an axum router: its service answers a
//! refused request `403 Forbidden` without calling the app.

use axum::extract::OriginalUri;
use axum::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

use crate::cross_origin::{check, CrossOriginGuard, GuardConfig};

/// The body of the `403 Forbidden` answer to a refused request.
const REFUSED_BODY: &str = "Forbidden: cross-site request refused\n";

impl<S> Layer<S> for CrossOriginGuard {
    type Service = CrossOriginGuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CrossOriginGuardService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by the [`CrossOriginGuard`] layer.
#[derive(Clone, Debug)]
pub struct CrossOriginGuardService<S> {
    inner: S,
    config: Arc<GuardConfig>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for CrossOriginGuardService<S>
where
    S: Service<Request<ReqBody>>,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CrossOriginGuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Inside a nested router, the URI has lost its prefix: use the original.
        let path = request
            .extensions()
            .get::<OriginalUri>()
            .map(|original| original.0.path())
            .unwrap_or_else(|| request.uri().path());
        let verdict = if self.config.allowed_paths.contains(path) {
            Ok(())
        } else {
            check(
                &self.config.trusted,
                request.method(),
                request.uri().authority().map(|a| a.as_str()),
                request.headers(),
            )
        };
        let state = match verdict {
            Ok(()) => State::Inner {
                future: self.inner.call(request),
            },
            Err(refusal) => {
                tracing::debug!(
                    target: "latch",
                    method = %request.method(),
                    path,
                    reason = %refusal,
                    "cross-site request refused"
                );
                State::Refused {
                    response: Some(refused()),
                }
            }
        };
        CrossOriginGuardFuture { state }
    }
}

/// The answer to a refused request.
fn refused() -> Response {
    (StatusCode::FORBIDDEN, REFUSED_BODY).into_response()
}

pin_project! {
    /// The response future of [`CrossOriginGuardService`].
    pub struct CrossOriginGuardFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response> },
    }
}

impl<F, R, E> Future for CrossOriginGuardFuture<F>
where
    F: Future<Output = Result<R, E>>,
    R: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx).map_ok(IntoResponse::into_response),
            StateProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(refused)))
            }
        }
    }
}
