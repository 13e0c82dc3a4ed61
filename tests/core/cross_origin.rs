//! The `CrossOriginGuard` layer, driven in-process with
//! `tower::ServiceExt::oneshot`.
//!
//! One table of named cases: each sends a request with hand-made
//! `Sec-Fetch-Site`, `Origin` and `Host` headers to a router whose handlers
//! count their calls, and checks the status and whether the handler ran.

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::routing::{any, post};
use axum::Router;
use axum_latch::cross_origin::OriginError;
use axum_latch::{CrossOriginGuard, SecretKey, Session, SessionData};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The guard of most cases: one trusted origin, one allowed path.
fn guard() -> CrossOriginGuard {
    CrossOriginGuard::new()
        .trust_origin("https://app.example.com")
        .expect("a valid origin")
        .trust_origin("HTTP://LOCALHOST:5173")
        .expect("a valid origin")
        .allow_path("/webhooks/stripe")
        .expect("a path")
}

/// A router whose every route counts the requests that reach it.
fn app(guard: CrossOriginGuard, hits: Arc<AtomicUsize>) -> Router {
    let handler = move || {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            "handled"
        }
    };
    Router::new()
        .route("/login", any(handler.clone()))
        .route("/webhooks/stripe", any(handler.clone()))
        .route("/webhooks/stripe/other", any(handler))
        .layer(guard)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Pass,
    Refuse,
}
use Expect::{Pass, Refuse};

struct Case {
    name: &'static str,
    method: &'static str,
    /// A path, or an absolute URI (as HTTP/2 requests have).
    uri: &'static str,
    headers: &'static [(&'static str, &'static [u8])],
    expect: Expect,
}

const fn case(
    name: &'static str,
    method: &'static str,
    uri: &'static str,
    headers: &'static [(&'static str, &'static [u8])],
    expect: Expect,
) -> Case {
    Case {
        name,
        method,
        uri,
        headers,
        expect,
    }
}

const HOST: (&str, &[u8]) = ("host", b"example.com");
const SAME_ORIGIN: (&str, &[u8]) = ("sec-fetch-site", b"same-origin");
const SAME_SITE: (&str, &[u8]) = ("sec-fetch-site", b"same-site");
const CROSS_SITE: (&str, &[u8]) = ("sec-fetch-site", b"cross-site");
const OWN_ORIGIN: (&str, &[u8]) = ("origin", b"https://example.com");
const EVIL_ORIGIN: (&str, &[u8]) = ("origin", b"https://evil.example");

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Methods: safe ones always pass, unsafe ones are checked.
    case("GET cross-site passes", "GET", "/login", &[HOST, CROSS_SITE, EVIL_ORIGIN], Pass),
    case("HEAD cross-site passes", "HEAD", "/login", &[HOST, CROSS_SITE, EVIL_ORIGIN], Pass),
    case("OPTIONS cross-site passes", "OPTIONS", "/login", &[HOST, CROSS_SITE, EVIL_ORIGIN], Pass),
    case("GET with Origin: null passes", "GET", "/login", &[HOST, ("origin", b"null")], Pass),
    case("GET with bad bytes passes", "GET", "/login", &[HOST, ("sec-fetch-site", b"\xff\xfe")], Pass),
    case("POST cross-site refused", "POST", "/login", &[HOST, CROSS_SITE, EVIL_ORIGIN], Refuse),
    case("PUT cross-site refused", "PUT", "/login", &[HOST, CROSS_SITE, EVIL_ORIGIN], Refuse),
    case("PATCH cross-site refused", "PATCH", "/login", &[HOST, CROSS_SITE, EVIL_ORIGIN], Refuse),
    case("DELETE cross-site refused", "DELETE", "/login", &[HOST, CROSS_SITE, EVIL_ORIGIN], Refuse),
    case("custom method cross-site refused", "PURGE", "/login", &[HOST, CROSS_SITE], Refuse),
    case("POST same-origin passes", "POST", "/login", &[HOST, SAME_ORIGIN, OWN_ORIGIN], Pass),
    case("PUT same-origin passes", "PUT", "/login", &[HOST, SAME_ORIGIN], Pass),
    case("PATCH same-origin passes", "PATCH", "/login", &[HOST, SAME_ORIGIN], Pass),
    case("DELETE same-origin passes", "DELETE", "/login", &[HOST, SAME_ORIGIN], Pass),
    // Sec-Fetch-Site decides when it is there.
    case("Sec-Fetch-Site none passes", "POST", "/login", &[HOST, ("sec-fetch-site", b"none")], Pass),
    case("Sec-Fetch-Site same-site refused", "POST", "/login", &[HOST, SAME_SITE, ("origin", b"https://blog.example.com")], Refuse),
    case("Sec-Fetch-Site cross-site without Origin refused", "POST", "/login", &[HOST, CROSS_SITE], Refuse),
    case("Sec-Fetch-Site garbage refused", "POST", "/login", &[HOST, ("sec-fetch-site", b"whatever")], Refuse),
    case("Sec-Fetch-Site in capitals refused", "POST", "/login", &[HOST, ("sec-fetch-site", b"Same-Origin")], Refuse),
    case("Sec-Fetch-Site empty refused", "POST", "/login", &[HOST, ("sec-fetch-site", b"")], Refuse),
    case("Sec-Fetch-Site repeated refused", "POST", "/login", &[HOST, SAME_ORIGIN, SAME_ORIGIN], Refuse),
    case("Sec-Fetch-Site cross-site beats a matching Origin", "POST", "/login", &[HOST, CROSS_SITE, OWN_ORIGIN], Refuse),
    case("Sec-Fetch-Site same-origin beats a foreign Origin", "POST", "/login", &[HOST, SAME_ORIGIN, EVIL_ORIGIN], Pass),
    // No Sec-Fetch-Site: Origin against Host.
    case("Origin matches Host", "POST", "/login", &[HOST, OWN_ORIGIN], Pass),
    case("Origin http matches Host (scheme not compared)", "POST", "/login", &[HOST, ("origin", b"http://example.com")], Pass),
    case("Origin matches Host in other case", "POST", "/login", &[("host", b"Example.COM"), OWN_ORIGIN], Pass),
    case("Origin https matches Host :443", "POST", "/login", &[("host", b"example.com:443"), OWN_ORIGIN], Pass),
    case("Origin http matches Host :80", "POST", "/login", &[("host", b"example.com:80"), ("origin", b"http://example.com")], Pass),
    case("Origin with port matches Host with port", "POST", "/login", &[("host", b"localhost:8080"), ("origin", b"http://localhost:8080")], Pass),
    case("Origin IPv6 matches Host", "POST", "/login", &[("host", b"[::1]:8080"), ("origin", b"http://[::1]:8080")], Pass),
    case("Origin https refused for Host :80", "POST", "/login", &[("host", b"example.com:80"), OWN_ORIGIN], Refuse),
    case("Origin port refused for Host without port", "POST", "/login", &[HOST, ("origin", b"https://example.com:8443")], Refuse),
    case("Origin without port refused for Host with port", "POST", "/login", &[("host", b"localhost:8080"), ("origin", b"http://localhost")], Refuse),
    case("Origin other port refused", "POST", "/login", &[("host", b"localhost:8080"), ("origin", b"http://localhost:3000")], Refuse),
    case("Origin other host refused", "POST", "/login", &[HOST, EVIL_ORIGIN], Refuse),
    case("Origin subdomain refused", "POST", "/login", &[HOST, ("origin", b"https://www.example.com")], Refuse),
    case("Origin suffix trick refused", "POST", "/login", &[HOST, ("origin", b"https://example.com.evil.example")], Refuse),
    case("Origin userinfo trick refused", "POST", "/login", &[HOST, ("origin", b"https://evil.example@example.com")], Refuse),
    case("Origin with path refused", "POST", "/login", &[HOST, ("origin", b"https://example.com/")], Refuse),
    case("Origin: null refused", "POST", "/login", &[HOST, ("origin", b"null")], Refuse),
    case("Origin empty refused", "POST", "/login", &[HOST, ("origin", b"")], Refuse),
    case("Origin garbage refused", "POST", "/login", &[HOST, ("origin", b"not an origin")], Refuse),
    case("Origin repeated refused", "POST", "/login", &[HOST, OWN_ORIGIN, OWN_ORIGIN], Refuse),
    case("Origin without any Host refused", "POST", "/login", &[OWN_ORIGIN], Refuse),
    case("Origin with garbage Host refused", "POST", "/login", &[("host", b"example.com:http"), OWN_ORIGIN], Refuse),
    // HTTP/2: the URI's authority, not Host.
    case("Origin matches the URI authority", "POST", "https://example.com/login", &[OWN_ORIGIN], Pass),
    case("URI authority beats Host", "POST", "https://example.com/login", &[("host", b"evil.example"), OWN_ORIGIN], Pass),
    case("Origin other than URI authority refused", "POST", "https://example.com/login", &[HOST, EVIL_ORIGIN], Refuse),
    // Trusted origins.
    case("trusted Origin passes cross-site", "POST", "/login", &[HOST, CROSS_SITE, ("origin", b"https://app.example.com")], Pass),
    case("trusted Origin passes same-site", "POST", "/login", &[HOST, SAME_SITE, ("origin", b"https://app.example.com")], Pass),
    case("trusted Origin passes garbage Sec-Fetch-Site", "POST", "/login", &[HOST, ("sec-fetch-site", b"?"), ("origin", b"https://app.example.com")], Pass),
    case("trusted Origin passes without Sec-Fetch-Site", "POST", "/login", &[HOST, ("origin", b"https://app.example.com")], Pass),
    case("trusted Origin with default port passes", "POST", "/login", &[HOST, CROSS_SITE, ("origin", b"https://app.example.com:443")], Pass),
    case("trusted Origin given in capitals passes", "POST", "/login", &[HOST, CROSS_SITE, ("origin", b"http://localhost:5173")], Pass),
    case("trusted host with other scheme refused", "POST", "/login", &[HOST, CROSS_SITE, ("origin", b"http://app.example.com")], Refuse),
    case("trusted host with other port refused", "POST", "/login", &[HOST, CROSS_SITE, ("origin", b"https://app.example.com:8443")], Refuse),
    case("trusted host's subdomain refused", "POST", "/login", &[HOST, CROSS_SITE, ("origin", b"https://x.app.example.com")], Refuse),
    // Allowed paths.
    case("allowed path passes cross-site", "POST", "/webhooks/stripe", &[HOST, CROSS_SITE, EVIL_ORIGIN], Pass),
    case("allowed path passes Origin: null", "POST", "/webhooks/stripe", &[HOST, ("origin", b"null")], Pass),
    case("allowed path with a query passes", "POST", "/webhooks/stripe?id=1", &[HOST, CROSS_SITE], Pass),
    case("allowed path passes bad bytes", "POST", "/webhooks/stripe", &[HOST, ("sec-fetch-site", b"\xff")], Pass),
    case("path under an allowed path refused", "POST", "/webhooks/stripe/other", &[HOST, CROSS_SITE], Refuse),
    case("allowed path with a trailing slash refused", "POST", "/webhooks/stripe/", &[HOST, CROSS_SITE], Refuse),
    // Clients that are not browsers (or very old ones).
    case("no headers (curl) passes", "POST", "/login", &[HOST], Pass),
    case("no headers and no Host passes", "DELETE", "/login", &[], Pass),
    // Bytes that are not text.
    case("Sec-Fetch-Site not UTF-8 refused", "POST", "/login", &[HOST, ("sec-fetch-site", b"\xff\xfe")], Refuse),
    case("Sec-Fetch-Site UTF-8 but not ASCII refused", "POST", "/login", &[HOST, ("sec-fetch-site", "sáme-origin".as_bytes())], Refuse),
    case("Origin not UTF-8 refused", "POST", "/login", &[HOST, ("origin", b"https://\xc3\x28.example")], Refuse),
    case("Host not UTF-8 refused", "POST", "/login", &[("host", b"ex\xffample.com"), OWN_ORIGIN], Refuse),
];

/// Sends one case's request; says what went wrong, if anything.
async fn run(case: &Case) -> Result<(), String> {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = app(guard(), hits.clone());
    let mut request = Request::builder()
        .method(Method::from_bytes(case.method.as_bytes()).expect("a method"))
        .uri(case.uri);
    for (name, value) in case.headers {
        let value = HeaderValue::from_bytes(value).expect("a header value http accepts");
        request = request.header(*name, value);
    }
    let request = request.body(Body::empty()).expect("a request");
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let hits = hits.load(Ordering::SeqCst);
    let (want_status, want_hits) = match case.expect {
        Pass => (StatusCode::OK, 1),
        Refuse => (StatusCode::FORBIDDEN, 0),
    };
    if status != want_status || hits != want_hits {
        return Err(format!(
            "{}: {status} and {hits} handler call(s), expected {want_status} and {want_hits}",
            case.name
        ));
    }
    if case.expect == Refuse {
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        if content_type.as_ref().map(|v| v.as_bytes()) != Some(b"text/plain; charset=utf-8")
            || !body.starts_with(b"Forbidden: cross-site request refused")
        {
            return Err(format!(
                "{}: 403 with {content_type:?} and body {body:?}",
                case.name
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn decision_table() {
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in CASES {
        assert!(names.insert(case.name), "two cases named {:?}", case.name);
        if let Err(failure) = run(case).await {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn an_untrusting_guard_refuses_what_the_table_trusts() {
    let hits = Arc::new(AtomicUsize::new(0));
    let request = Request::post("/webhooks/stripe")
        .header("host", "example.com")
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://app.example.com")
        .body(Body::empty())
        .unwrap();
    let response = app(CrossOriginGuard::new(), hits.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn allowed_paths_are_full_paths_in_nested_routers() {
    for inner_layer in [false, true] {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let mut webhooks = Router::new().route(
            "/stripe",
            post(move || async move {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let guard = CrossOriginGuard::new()
            .allow_path("/webhooks/stripe")
            .expect("a path");
        let app = if inner_layer {
            webhooks = webhooks.layer(guard);
            Router::new().nest("/webhooks", webhooks)
        } else {
            Router::new().nest("/webhooks", webhooks).layer(guard)
        };
        let request = Request::post("/webhooks/stripe")
            .header("host", "example.com")
            .header("sec-fetch-site", "cross-site")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "inner layer: {inner_layer}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn outermost_guard_keeps_refused_requests_from_the_session() {
    let key = SecretKey::new("the key of the cross-origin tests, long enough").unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new()
        .route(
            "/login",
            post(move |session: SessionData| async move {
                counter.fetch_add(1, Ordering::SeqCst);
                session.insert("user", "attacker").unwrap();
            }),
        )
        .layer(Session::new(key))
        .layer(CrossOriginGuard::new());
    let send = |site: &'static str| {
        Request::post("/login")
            .header("host", "example.com")
            .header("sec-fetch-site", site)
            .body(Body::empty())
            .unwrap()
    };

    let refused = app.clone().oneshot(send("cross-site")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.headers().get(SET_COOKIE).is_none());
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let passed = app.oneshot(send("same-origin")).await.unwrap();
    assert_eq!(passed.status(), StatusCode::OK);
    assert!(passed.headers().get(SET_COOKIE).is_some());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn trusted_origins_are_checked_when_configured() {
    let bad = [
        (
            "app.example.com",
            OriginError::Scheme("app.example.com".into()),
        ),
        (
            "https://app.example.com/",
            OriginError::NotOnlyOrigin("https://app.example.com/".into()),
        ),
        (
            "https://app.example.com/x?y#z",
            OriginError::NotOnlyOrigin("https://app.example.com/x?y#z".into()),
        ),
        ("https://:8080", OriginError::Host("https://:8080".into())),
        (
            "https://app.example.com:99999",
            OriginError::Port("https://app.example.com:99999".into()),
        ),
        ("null", OriginError::Scheme("null".into())),
    ];
    for (origin, expected) in bad {
        let error = CrossOriginGuard::new().trust_origin(origin).unwrap_err();
        assert_eq!(error, expected, "{origin}");
        assert!(error.to_string().contains("is not an origin"), "{error}");
    }
    for origin in [
        "https://app.example.com",
        "http://localhost:3000",
        "http://[::1]:8080",
    ] {
        assert!(
            CrossOriginGuard::new().trust_origin(origin).is_ok(),
            "{origin}"
        );
    }
}
