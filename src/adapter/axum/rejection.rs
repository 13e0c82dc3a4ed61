//! What latch answers when a request cannot go on: no login, no fresh login,
//! a user a permission check refuses, a layer missing from the router, or a
//! user loader that failed.

use axum::extract::OriginalUri;
use axum::response::{IntoResponse, Response};
use http::header::{ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri};

use crate::error::AuthError;
use crate::login::next::login_redirect;
use crate::throttle::Throttled;

/// The router lacks a layer that an extractor or route layer needs.
///
/// This is a mistake in the app's wiring, not in the request: the answer is
/// `500 Internal Server Error` with the message below, also logged at `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MissingLayer {
    /// No [`Session`](crate::Session) layer.
    #[error(
        "latch: this route needs the `Session` layer, and the router has none. \
         Add it as the outermost layer, after the `Login` layer in code: \
         `router.layer(login).layer(Session::new(key))`"
    )]
    Session,
    /// No [`Login`](crate::Login) layer for this user type.
    #[error(
        "latch: this route needs a `Login` layer for its user type, and the router has none. \
         Add it inside the `Session` layer: `router.layer(Login::new(loader)).layer(Session::new(key))`. \
         Route layers such as `login.required()` go on with `route_layer`, before both"
    )]
    Login,
    /// Two [`Login`](crate::Login) layers on the way to one route (one
    /// inside the other). latch serves a request with one login layer; the
    /// route is refused rather than served by the one the app did not mean.
    #[error(
        "latch: this route is behind two `Login` layers, one inside the other. \
         Keep one `Login` layer per router; for routes that need more than a login \
         (an admin page, say), check the user in the handler or an extractor of your own"
    )]
    TwoLogins,
}

impl IntoResponse for MissingLayer {
    fn into_response(self) -> Response {
        tracing::error!(target: "latch", "{self}");
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// A request that needs a login (or a fresh login) and has none.
///
/// Only a browser **navigating** to a page is redirected to the login page,
/// with `next` set to the path and query it asked for: `302 Found` for
/// `GET` and `HEAD`, `303 See Other` for other methods. A navigation is a
/// request with `Sec-Fetch-Mode: navigate`, which every current browser
/// sends for a page load and a form post; a browser too old to send
/// `Sec-Fetch-Mode` counts as navigating when its `Accept` names
/// `text/html`.
///
/// Everything else — `fetch()` and axios (`Sec-Fetch-Mode: cors`, `Accept:
/// */*`), reqwest and curl (no `Sec-Fetch-Mode`, `Accept: */*` or none),
/// `X-Requested-With: XMLHttpRequest` — gets `401 Unauthorized` with a small
/// JSON body: `{"error":"login_required","login_url":"/login?next=..."}`, or
/// `"fresh_login_required"` when a login exists but is not fresh.
///
/// A group of routes that is an API whatever the request says (an `/api`
/// router) answers `401` to every request, navigations included, behind
/// [`RequireLogin::api`](crate::service::RequireLogin::api):
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_latch::{CurrentUser, Login, User};
/// # #[derive(Clone)] struct Account { id: u64, name: String }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
/// # async fn load(_: u64) -> Result<Option<Account>, std::convert::Infallible> { Ok(None) }
///
/// async fn me(CurrentUser(user): CurrentUser<Account>) -> String {
///     format!("{{\"name\":{:?}}}", user.name)
/// }
///
/// let login = Login::new(load);
/// let api: Router = Router::new()
///     .route("/me", get(me))
///     .route_layer(login.required().api()); // 401, never a redirect
/// ```
///
/// With a [request loader](crate::Login::request_loader), the `401`
/// carries `WWW-Authenticate: Bearer` (or the
/// [challenge](crate::Login::challenge) set), with `error="invalid_token"`
/// when the request's `Authorization` header named no user.
#[derive(Debug, Clone)]
pub struct LoginRequired {
    location: String,
    redirect: StatusCode,
    api: bool,
    fresh: bool,
    challenge: Option<HeaderValue>,
}

impl LoginRequired {
    pub(crate) fn new(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &Extensions,
        login_url: &str,
        fresh: bool,
    ) -> Self {
        // Inside a nested router, the URI has lost its prefix: use the original.
        let uri = extensions
            .get::<OriginalUri>()
            .map(|original| &original.0)
            .unwrap_or(uri);
        let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        Self {
            location: login_redirect(login_url, path_and_query),
            redirect: if method == Method::GET || method == Method::HEAD {
                StatusCode::FOUND
            } else {
                StatusCode::SEE_OTHER
            },
            api: is_api(headers, extensions),
            fresh,
            challenge: None,
        }
    }

    pub(crate) fn from_parts(parts: &Parts, login_url: &str, fresh: bool) -> Self {
        Self::new(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &parts.extensions,
            login_url,
            fresh,
        )
    }

    /// Back to the login page, with `next` set to `next` (a path on this
    /// site) rather than to the request's own path: for a second step
    /// whose pending login is gone.
    pub(crate) fn back_to_login(parts: &Parts, login_url: &str, next: &str) -> Self {
        let mut required = Self::from_parts(parts, login_url, false);
        required.location = login_redirect(login_url, next);
        required
    }

    /// Adds the `WWW-Authenticate` header of the `401` (not of a redirect).
    pub(crate) fn with_challenge(mut self, challenge: Option<HeaderValue>) -> Self {
        self.challenge = challenge;
        self
    }

    /// Where a browser is sent: the login page with `next`.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum::response::{IntoResponse, Response};
    /// use axum_latch::rejection::LoginRejection;
    /// use axum_latch::CurrentUser;
    ///
    /// async fn page(user: Result<CurrentUser<Account>, LoginRejection>) -> Response {
    ///     match user {
    ///         Ok(CurrentUser(user)) => format!("Hello, {}", user.name).into_response(),
    ///         Err(LoginRejection::LoginRequired(required)) => {
    ///             format!("Please log in at {}", required.location()).into_response()
    ///         }
    ///         Err(other) => other.into_response(),
    ///     }
    /// }
    /// ```
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the request had a login that was not fresh enough.
    ///
    /// ```
    /// # #[derive(Clone)] struct Account { id: u64, name: String, hash: String }
    /// # impl axum_latch::User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { self.hash.as_bytes() } }
    /// use axum::response::{IntoResponse, Response};
    /// use axum_latch::rejection::LoginRejection;
    /// use axum_latch::FreshUser;
    ///
    /// async fn settings(user: Result<FreshUser<Account>, LoginRejection>) -> Response {
    ///     match user {
    ///         Ok(FreshUser(user)) => format!("Settings of {}", user.name).into_response(),
    ///         Err(LoginRejection::LoginRequired(required)) if required.needs_fresh_login() => {
    ///             "Please type your password again".into_response()
    ///         }
    ///         Err(other) => other.into_response(),
    ///     }
    /// }
    /// ```
    pub fn needs_fresh_login(&self) -> bool {
        self.fresh
    }
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        if self.api {
            let error = if self.fresh {
                "fresh_login_required"
            } else {
                "login_required"
            };
            let body = serde_json::json!({ "error": error, "login_url": self.location });
            let mut response = (
                StatusCode::UNAUTHORIZED,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body.to_string(),
            )
                .into_response();
            if let Some(challenge) = self.challenge {
                response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
            }
            return response;
        }
        match HeaderValue::try_from(self.location) {
            Ok(location) => (self.redirect, [(LOCATION, location)]).into_response(),
            // Cannot happen: the login URL is checked at start-up and `next`
            // is percent-encoded. Still, never panic on a request.
            Err(_) => StatusCode::UNAUTHORIZED.into_response(),
        }
    }
}

/// A logged-in user who may not use this route: `403 Forbidden`, never a
/// redirect to the login page (which would loop, the user being logged in
/// already). A browser navigating to a page gets a short HTML page; an API
/// client (see [`LoginRequired`] for which requests are navigations) gets
/// `{"error":"forbidden"}`.
///
/// Made by the permission checks: [`Login::require`](crate::Login::require),
/// [`Login::require_async`](crate::Login::require_async) and the
/// [`Allowed`](crate::Allowed) extractor.
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use axum_latch::rejection::LoginRejection;
/// use axum_latch::{Allowed, Permission, User};
/// # #[derive(Clone)] struct Account { id: u64, is_admin: bool }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
/// # struct Admin;
/// # impl Permission<Account> for Admin { async fn allows(user: &Account) -> bool { user.is_admin } }
///
/// async fn admin(user: Result<Allowed<Account, Admin>, LoginRejection>) -> Response {
///     match user {
///         Ok(Allowed(user, ..)) => format!("admin {}", user.id).into_response(),
///         Err(LoginRejection::Forbidden(_)) => "Ask an admin for access".into_response(),
///         Err(other) => other.into_response(),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Forbidden {
    api: bool,
}

impl Forbidden {
    pub(crate) fn new(headers: &HeaderMap, extensions: &Extensions) -> Self {
        Self {
            api: is_api(headers, extensions),
        }
    }

    /// Whether the refused request came from an API client (JSON is its
    /// answer) rather than a browser navigating to a page (HTML): for an
    /// app that answers browsers with a page of its own.
    ///
    /// ```
    /// use axum::response::{Html, IntoResponse, Response};
    /// use axum_latch::rejection::Forbidden;
    ///
    /// fn answer(forbidden: Forbidden) -> Response {
    ///     if forbidden.is_api_client() {
    ///         forbidden.into_response() // {"error":"forbidden"}
    ///     } else {
    ///         (http::StatusCode::FORBIDDEN, Html("<h1>Not for your account</h1>")).into_response()
    ///     }
    /// }
    /// ```
    pub fn is_api_client(&self) -> bool {
        self.api
    }
}

/// The page a browser gets for a route its user may not use.
const FORBIDDEN_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Forbidden</title></head>\n<body><h1>Forbidden</h1><p>You are logged in, but this page is not open to your account.</p></body></html>\n";

impl IntoResponse for Forbidden {
    fn into_response(self) -> Response {
        if self.api {
            return (
                StatusCode::FORBIDDEN,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                r#"{"error":"forbidden"}"#,
            )
                .into_response();
        }
        (
            StatusCode::FORBIDDEN,
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            FORBIDDEN_PAGE,
        )
            .into_response()
    }
}

/// Whether a refusal answers as to an API client: inside an API group, or
/// a request that is not a browser's navigation.
fn is_api(headers: &HeaderMap, extensions: &Extensions) -> bool {
    extensions.get::<ApiRoutes>().is_some() || !is_navigation(headers)
}

/// Marks a request to a group of routes that always answers as an API,
/// put in the request by [`RequireLogin::api`](crate::service::RequireLogin::api).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApiRoutes;

/// Whether the request is a browser navigating to a page (see
/// [`LoginRequired`]), rather than a script or an API client.
fn is_navigation(headers: &HeaderMap) -> bool {
    let xhr = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    if xhr {
        return false;
    }
    if let Some(mode) = headers.get("sec-fetch-mode") {
        // `nested-navigate` was an early name for a frame's navigation.
        return mode.as_bytes().eq_ignore_ascii_case(b"navigate")
            || mode.as_bytes().eq_ignore_ascii_case(b"nested-navigate");
    }
    // A browser without Fetch Metadata: its page loads ask for HTML.
    headers.get_all(ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|media| {
                let media = media.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("text/html")
            })
        })
    })
}

/// Why an extractor of a user refused the request.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginRejection {
    /// No login, or not a fresh one: a redirect or a `401`.
    LoginRequired(LoginRequired),
    /// The router lacks a latch layer: a `500` that says which.
    MissingLayer(MissingLayer),
    /// The user loader failed: a `500` (the error is logged).
    LoaderFailed,
    /// Logged in, but a permission check refused the user: a `403`.
    Forbidden(Forbidden),
}

impl IntoResponse for LoginRejection {
    fn into_response(self) -> Response {
        match self {
            LoginRejection::LoginRequired(rejection) => rejection.into_response(),
            LoginRejection::MissingLayer(missing) => missing.into_response(),
            LoginRejection::Forbidden(forbidden) => forbidden.into_response(),
            LoginRejection::LoaderFailed => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
            }
        }
    }
}

impl From<MissingLayer> for LoginRejection {
    fn from(missing: MissingLayer) -> Self {
        LoginRejection::MissingLayer(missing)
    }
}

impl IntoResponse for AuthError {
    /// `500 Internal Server Error`; the error is logged.
    fn into_response(self) -> Response {
        tracing::error!(target: "latch", error = %self, "login or logout failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
    }
}

impl IntoResponse for Throttled {
    /// `429 Too Many Requests`, with `Retry-After` in whole seconds and a
    /// short plain-text body.
    fn into_response(self) -> Response {
        let secs = self.retry_after_secs();
        (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (RETRY_AFTER, HeaderValue::from(secs)),
                (
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                ),
            ],
            format!("Too many failed logins. Try again in {secs} seconds.\n"),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use std::time::Duration;

    const SECOND: Duration = Duration::from_secs(1);

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_navigations_are_redirected() {
        let navigations: &[&[(&str, &str)]] = &[
            // A page load and a form post in a current browser.
            &[
                ("sec-fetch-mode", "navigate"),
                ("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
            ],
            &[("sec-fetch-mode", "navigate"), ("accept", "*/*")],
            &[("sec-fetch-mode", "NAVIGATE")],
            &[("sec-fetch-mode", "nested-navigate")],
            // A browser without Fetch Metadata loading a page.
            &[("accept", "text/html,application/xhtml+xml;q=0.9")],
            &[("accept", "application/json"), ("accept", "text/html")],
        ];
        let api_clients: &[&[(&str, &str)]] = &[
            // fetch() and axios: Accept */*, Sec-Fetch-Mode cors.
            &[("sec-fetch-mode", "cors"), ("accept", "*/*")],
            &[
                ("sec-fetch-mode", "cors"),
                ("accept", "application/json, text/plain, */*"),
            ],
            // fetch() asking for HTML is still not a navigation.
            &[("sec-fetch-mode", "cors"), ("accept", "text/html")],
            &[("sec-fetch-mode", "no-cors")],
            &[("sec-fetch-mode", "same-origin"), ("accept", "text/html")],
            // curl, reqwest, scripts.
            &[("accept", "*/*")],
            &[],
            &[("accept", "application/json")],
            &[("accept", "text/htmlx")],
            &[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest"),
            ],
            &[
                ("sec-fetch-mode", "navigate"),
                ("x-requested-with", "xmlhttprequest"),
            ],
        ];
        for pairs in navigations {
            assert!(is_navigation(&headers(pairs)), "a navigation: {pairs:?}");
        }
        for pairs in api_clients {
            assert!(!is_navigation(&headers(pairs)), "an API client: {pairs:?}");
        }
    }

    #[test]
    fn an_api_group_answers_401_even_to_a_navigation() {
        let uri: Uri = "/api/me".parse().unwrap();
        let navigation = headers(&[("sec-fetch-mode", "navigate"), ("accept", "text/html")]);
        let mut extensions = Extensions::new();
        let page = LoginRequired::new(
            &Method::GET,
            &uri,
            &navigation,
            &extensions,
            "/login",
            false,
        );
        assert!(
            !page.api,
            "outside an API group, a navigation is redirected"
        );
        extensions.insert(ApiRoutes);
        let api = LoginRequired::new(
            &Method::GET,
            &uri,
            &navigation,
            &extensions,
            "/login",
            false,
        );
        assert!(api.api, "inside one, it gets a 401");
        assert_eq!(api.into_response().status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn redirect_status_depends_on_the_method() {
        let uri: Uri = "/a?b=c".parse().unwrap();
        let get = LoginRequired::new(
            &Method::GET,
            &uri,
            &HeaderMap::new(),
            &Extensions::new(),
            "/login",
            false,
        );
        assert_eq!(get.redirect, StatusCode::FOUND);
        assert_eq!(get.location(), "/login?next=/a%3Fb%3Dc");
        let post = LoginRequired::new(
            &Method::POST,
            &uri,
            &HeaderMap::new(),
            &Extensions::new(),
            "/login",
            false,
        );
        assert_eq!(post.redirect, StatusCode::SEE_OTHER);
    }

    #[tokio::test]
    async fn throttled_is_a_429_with_retry_after_in_whole_seconds() {
        for (retry_after, header) in [
            (Duration::ZERO, "1"),
            (Duration::from_millis(1), "1"),
            (SECOND, "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::from_secs(900), "900"),
            (Duration::MAX, &u64::MAX.to_string()),
        ] {
            let response = Throttled { retry_after }.into_response();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(response.headers()[RETRY_AFTER], header, "{retry_after:?}");
            assert_eq!(
                response.headers()[CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(
                body,
                format!("Too many failed logins. Try again in {header} seconds.\n")
            );
        }
        assert_eq!(
            Throttled {
                retry_after: Duration::from_millis(2500)
            }
            .to_string(),
            "too many failed logins: try again in 3 seconds"
        );
    }
}
