//! The app's loader of API clients' users: a user found from a request's
//! headers when it has no login in a cookie (see [`api`](crate::api)).

use futures_util::future::BoxFuture;
use http::HeaderMap;
use std::future::Future;

use crate::boxed_error::BoxError;
use crate::login::user::User;

/// Finds the user of an API client's request from its headers: any
/// `Fn(HeaderMap) -> impl Future<Output = Result<Option<U>, E>>`, given to
/// [`Login::request_loader`](crate::Login::request_loader).
///
/// `Ok(None)` is "no user": the request is anonymous (a `401` where a login
/// is needed). `Err` is a failure to look (a database that is down): a `500`.
pub trait RequestLoader<U: User>: Send + Sync + 'static {
    /// The user the headers name, if any.
    fn load(&self, headers: HeaderMap) -> BoxFuture<'static, Result<Option<U>, BoxError>>;
}

impl<U, F, Fut, E> RequestLoader<U> for F
where
    U: User,
    F: Fn(HeaderMap) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<U>, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn load(&self, headers: HeaderMap) -> BoxFuture<'static, Result<Option<U>, BoxError>> {
        let future = self(headers);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}
