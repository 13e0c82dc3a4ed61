//! A tiny browser for tests: it drives an axum `Router` in process with
//! `tower::ServiceExt::oneshot`, keeps the cookies the app sets (by name,
//! domain and path, as RFC 6265 does, honouring deletions by `Max-Age=0`
//! or a past `Expires`), and sends them back in a `Cookie` header, as
//! Microdot's `TestClient` does.

use axum::body::Body;
use axum::Router;
use cookie::Cookie;
use http::header::{ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, VARY};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A secret key long enough for latch (Microdot's tests use `secret` and
/// `top-secret!`, which latch refuses as too short).
pub const KEY: &str = "latch integration tests: a secret key of well over 32 bytes";

/// The key as latch takes it.
pub fn key() -> axum_latch::SecretKey {
    axum_latch::SecretKey::new(KEY).expect("the test key is long enough")
}

/// A cookie the client keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCookie {
    pub name: String,
    pub value: String,
    /// The `Domain` it was set for; `None`: host-only.
    pub domain: Option<String>,
    pub path: String,
}

/// One browser: an app and a cookie jar.
#[derive(Clone)]
pub struct Client {
    app: Router,
    /// The host it sends in `Host`, if any.
    host: Option<String>,
    cookies: Vec<StoredCookie>,
}

/// A response, with its body read as text.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            host: None,
            cookies: Vec::new(),
        }
    }

    /// A browser that reaches the app as `host` (sent in `Host`): cookies
    /// with a `Domain` are kept only for `host` or a parent of it, and sent
    /// only if they match it.
    pub fn on_host(app: Router, host: &str) -> Self {
        Self {
            host: Some(host.to_owned()),
            ..Self::new(app)
        }
    }

    /// Another browser on the same app, with no cookies.
    pub fn another_browser(&self) -> Self {
        Self {
            cookies: Vec::new(),
            ..self.clone()
        }
    }

    /// Whether a cookie for `domain` (`None`: host-only) goes to this host.
    fn domain_matches(&self, domain: Option<&str>) -> bool {
        match (domain, &self.host) {
            (Some(domain), Some(host)) => host == domain || host.ends_with(&format!(".{domain}")),
            _ => true,
        }
    }

    pub async fn get(&mut self, uri: &str) -> TestResponse {
        self.request(Method::GET, uri, &[], Body::empty()).await
    }

    pub async fn post(&mut self, uri: &str) -> TestResponse {
        self.request(Method::POST, uri, &[], Body::empty()).await
    }

    /// A `GET` with the given `Accept` header.
    pub async fn get_accepting(&mut self, uri: &str, accept: &str) -> TestResponse {
        self.request(
            Method::GET,
            uri,
            &[(ACCEPT.as_str(), accept)],
            Body::empty(),
        )
        .await
    }

    /// A `POST` of an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&mut self, uri: &str, form: &str) -> TestResponse {
        self.request(
            Method::POST,
            uri,
            &[(CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded")],
            Body::from(form.to_owned()),
        )
        .await
    }

    /// Sends a request with the jar's cookies, and keeps the cookies of the response.
    pub async fn request(
        &mut self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        // A browser navigating, unless the test says what the request is.
        let says = |header: &str| {
            headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(header))
        };
        if !says("sec-fetch-mode") && !says("accept") && !says("x-requested-with") {
            builder = builder
                .header("sec-fetch-mode", "navigate")
                .header(ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8");
        }
        let path = uri.split(['?', '#']).next().unwrap_or("/").to_owned();
        if let Some(host) = &self.host {
            builder = builder.header(http::header::HOST, host.as_str());
        }
        if let Some(cookie) = self.cookie_header_for(&path) {
            builder = builder.header(COOKIE, cookie);
        }
        let request = builder.body(body).expect("a valid test request");
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("an axum router never fails");
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .expect("the response body can be read")
            .to_bytes();
        let response = TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        self.store(&path, &response.headers);
        response
    }

    fn store(&mut self, request_path: &str, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().expect("Set-Cookie is text");
            let cookie = Cookie::parse(text.to_owned()).expect("Set-Cookie parses");
            let path = cookie
                .path()
                .map(str::to_owned)
                .unwrap_or_else(|| default_path(request_path));
            let name = cookie.name().to_owned();
            let domain = cookie
                .domain()
                .map(|domain| domain.trim_start_matches('.').to_ascii_lowercase());
            if !self.domain_matches(domain.as_deref()) {
                continue; // a host sets cookies for itself or a parent only
            }
            self.cookies
                .retain(|c| !(c.name == name && c.path == path && c.domain == domain));
            let removed = cookie
                .max_age()
                .is_some_and(|age| age.is_zero() || age.is_negative())
                || cookie
                    .expires_datetime()
                    .is_some_and(|at| at <= cookie::time::OffsetDateTime::now_utc());
            if !removed {
                self.cookies.push(StoredCookie {
                    name,
                    value: cookie.value().to_owned(),
                    domain,
                    path,
                });
            }
        }
    }

    /// The `Cookie` header this browser sends to `path`, if any.
    pub fn cookie_header_for(&self, path: &str) -> Option<String> {
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .filter(|c| path_matches(&c.path, path) && self.domain_matches(c.domain.as_deref()))
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// The value of a kept cookie, whatever its path.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value.clone())
    }

    pub fn has_cookie(&self, name: &str) -> bool {
        self.cookie(name).is_some()
    }

    /// Forgets a cookie, as `del client.cookies[name]` does in Microdot's tests.
    pub fn remove_cookie(&mut self, name: &str) {
        self.cookies.retain(|c| c.name != name);
    }

    /// Puts a cookie in the jar, for `Path=/`.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.remove_cookie(name);
        self.cookies.push(StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            domain: None,
            path: "/".to_owned(),
        });
    }

    /// Puts a cookie in the jar for `path`, as a page elsewhere on the site
    /// (or a sibling subdomain) could plant it; a cookie of that name at
    /// another path stays.
    pub fn plant_cookie(&mut self, name: &str, value: &str, path: &str) {
        self.plant(name, value, None, path);
    }

    /// Puts a cookie in the jar for `domain` and `path`, as a page on a
    /// sibling subdomain can (`document.cookie = "...; Domain=example.com"`).
    pub fn plant_cookie_for_domain(&mut self, name: &str, value: &str, domain: &str, path: &str) {
        self.plant(name, value, Some(domain), path);
    }

    fn plant(&mut self, name: &str, value: &str, domain: Option<&str>, path: &str) {
        let domain = domain.map(str::to_owned);
        self.cookies
            .retain(|c| !(c.name == name && c.path == path && c.domain == domain));
        self.cookies.push(StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            domain,
            path: path.to_owned(),
        });
    }

    pub fn cookies(&self) -> &[StoredCookie] {
        &self.cookies
    }
}

/// RFC 6265 section 5.1.4.
fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}

/// RFC 6265 section 5.1.4: the directory of the request path.
fn default_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(i) => request_path[..i].to_owned(),
    }
}

impl TestResponse {
    /// A header's value as UTF-8 (a `Location` may carry a path with
    /// non-ASCII characters, which `HeaderValue::to_str` refuses).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| std::str::from_utf8(v.as_bytes()).expect("header is UTF-8"))
    }

    pub fn location(&self) -> Option<&str> {
        self.header(LOCATION.as_str())
    }

    /// Every `Set-Cookie` header, as text.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("Set-Cookie is text").to_owned())
            .collect()
    }

    /// The `Set-Cookie` for `name`, parsed; panics if there are several.
    pub fn set_cookie(&self, name: &str) -> Option<Cookie<'static>> {
        let mut found: Vec<Cookie<'static>> = self
            .set_cookies()
            .into_iter()
            .map(|text| Cookie::parse(text).expect("Set-Cookie parses"))
            .filter(|c| c.name() == name)
            .collect();
        assert!(
            found.len() <= 1,
            "more than one Set-Cookie for {name}: {:?}",
            self.set_cookies()
        );
        found.pop()
    }

    /// Whether `Vary` names `Cookie`.
    pub fn varies_on_cookie(&self) -> bool {
        self.headers.get_all(VARY).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("cookie"))
        })
    }

    /// The body, parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Whether a `Set-Cookie` deletes its cookie.
pub fn is_removal(cookie: &Cookie<'_>) -> bool {
    cookie.value().is_empty() && cookie.max_age().is_some_and(|age| age.is_zero())
}
