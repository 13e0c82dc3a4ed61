//! The cross-origin guard: refuses cross-site requests with unsafe methods,
//! in the manner of Go's `net/http.CrossOriginProtection`.

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, HeaderName, Method};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// The `Sec-Fetch-Site` request header (the `http` crate has no constant).
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// How much of a header value a log line shows.
const SHOWN_LEN: usize = 100;

/// A layer that refuses cross-site requests with unsafe methods: a guard
/// against cross-site request forgery (CSRF) that needs no token.
///
/// # Why
///
/// `SameSite=Lax` cookies (latch's default) keep the session cookie off
/// cross-site `POST`s, which protects what a logged-in user can do. They do
/// not protect the login form itself: it needs no cookie. A page on another
/// site can hold a form that posts the *attacker's* user name and password
/// to your `/login` and submit it as the victim opens the page (a top-level
/// cross-site `POST`, which browsers allow). The victim is now logged into
/// the attacker's account, and whatever they type or upload next lands
/// there, where the attacker can read it: *login CSRF*. Nor does `SameSite`
/// help against a sibling subdomain (user content, a forgotten staging
/// host): to the browser it is the same *site*.
///
/// Browsers say where a request comes from in headers that pages cannot
/// forge: `Sec-Fetch-Site` (every current browser) and `Origin` (older ones
/// too). This layer reads them.
///
/// # What it refuses
///
/// `GET`, `HEAD` and `OPTIONS` always pass: they must not change anything.
/// Every other method, custom ones included, is refused with `403 Forbidden`
/// (a short `text/plain` body; the reason is logged at `debug`, target
/// `latch`) when:
///
/// - `Sec-Fetch-Site` is there and is anything but `same-origin` or `none`
///   (`none`: the user typed the address or used a bookmark). So
///   `same-site` and `cross-site` are refused, and so is any other value;
/// - there is no `Sec-Fetch-Site` and `Origin` is there but does not name
///   this host: its host and port must equal those of the request's host,
///   taken from the URI's authority (HTTP/2's `:authority`, or an HTTP/1.1
///   absolute-form target) or else from the `Host` header. The scheme is
///   not compared (behind a TLS-terminating proxy the server cannot know
///   it), but a missing port means the scheme's default: `Origin:
///   https://example.com` matches `Host: example.com` and `Host:
///   example.com:443`, not `Host: example.com:8080`. Host names are
///   compared without regard to case. `Origin: null` is refused.
///
/// A header that is not text, is repeated, is empty or is not of the form
/// its standard gives counts as cross-site: `403`, never an error. A
/// request with neither header passes: it comes from a program, not a
/// browser (curl, a server, a mobile app), or from a browser too old to
/// send either, and carries no victim's cookies for a page to abuse.
///
/// Two ways through for requests that should pass:
///
/// - [`trust_origin`](Self::trust_origin): a request whose `Origin` is
///   a trusted origin passes, whatever `Sec-Fetch-Site` says (a front end
///   on another host, a proxy that rewrites `Host`);
/// - [`allow_path`](Self::allow_path): every request to that exact path
///   passes (a webhook that takes cross-site `POST`s).
///
/// # Where it goes
///
/// Outermost: axum runs the layer added *last* first, so add it after
/// [`Session`](crate::Session). A refused request then never reaches the
/// session, the user loader or the handler.
///
/// ```
/// use axum::{body::Body, http::{Request, StatusCode}, routing::{get, post}, Router};
/// use axum_latch::{CrossOriginGuard, SecretKey, Session};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let key = SecretKey::new("an example key, at least thirty-two bytes")?;
/// let app: Router = Router::new()
///     .route("/login", get(|| async { "the form" }).post(|| async { "logged in" }))
///     .route("/webhooks/stripe", post(|| async { "thanks" }))
///     // .layer(Login::new(load_user)) goes here
///     .layer(Session::new(key))
///     .layer(
///         CrossOriginGuard::new()
///             .trust_origin("https://app.example.com")?
///             .allow_path("/webhooks/stripe")?,
///     );
///
/// // A form on another site posts to the login page: refused.
/// let forged = Request::post("/login")
///     .header("host", "example.com")
///     .header("sec-fetch-site", "cross-site")
///     .header("origin", "https://evil.example")
///     .body(Body::empty())?;
/// let response = app.clone().oneshot(forged).await?;
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
///
/// // The site's own form: through.
/// let own = Request::post("/login")
///     .header("host", "example.com")
///     .header("sec-fetch-site", "same-origin")
///     .header("origin", "https://example.com")
///     .body(Body::empty())?;
/// let response = app.oneshot(own).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct CrossOriginGuard {
    pub(crate) config: Arc<GuardConfig>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct GuardConfig {
    pub(crate) trusted: HashSet<Origin>,
    pub(crate) allowed_paths: HashSet<String>,
}

impl CrossOriginGuard {
    /// A guard with no trusted origins and no allowed paths.
    ///
    /// ```
    /// use axum::{routing::post, Router};
    /// use axum_latch::CrossOriginGuard;
    ///
    /// let app: Router = Router::new()
    ///     .route("/login", post(|| async { "logged in" }))
    ///     .layer(CrossOriginGuard::new());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn edit(mut self, f: impl FnOnce(&mut GuardConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Lets requests from `origin` through, even cross-site ones.
    ///
    /// `origin` is `scheme://host[:port]`, as browsers send it in `Origin`:
    /// no path (not even a trailing `/`), query, fragment or user name.
    /// The scheme and host are compared without regard to case, and the
    /// scheme's default port may be written or left out (`https://a.example`
    /// is `https://a.example:443`). Other schemes and ports do not match:
    /// trust `http://…` and `https://…` apart if both are needed.
    ///
    /// ```
    /// use axum_latch::CrossOriginGuard;
    ///
    /// let guard = CrossOriginGuard::new()
    ///     .trust_origin("https://app.example.com")?
    ///     .trust_origin("http://localhost:5173")?;
    ///
    /// // Not an origin: it has a path.
    /// assert!(CrossOriginGuard::new().trust_origin("https://app.example.com/").is_err());
    /// # Ok::<(), axum_latch::cross_origin::OriginError>(())
    /// ```
    pub fn trust_origin(self, origin: &str) -> Result<Self, OriginError> {
        let origin = Origin::parse(origin)?;
        Ok(self.edit(|c| {
            c.trusted.insert(origin);
        }))
    }

    /// Lets every request to `path` through, cross-site or not: for an
    /// endpoint that must take cross-site `POST`s, such as a payment
    /// provider's webhook. It should not rely on cookies.
    ///
    /// The match is exact, on the path as the request sends it (before
    /// percent-decoding, without the query); inside a nested router, on the
    /// full path. `/hooks` does not allow `/hooks/` nor `/hooks/a`.
    ///
    /// Fails with [`OriginError::Path`] if `path` does not start with `/`:
    /// it could never match.
    ///
    /// ```
    /// use axum_latch::CrossOriginGuard;
    ///
    /// let guard = CrossOriginGuard::new().allow_path("/webhooks/stripe")?;
    /// assert!(CrossOriginGuard::new().allow_path("webhooks/stripe").is_err());
    /// # Ok::<(), axum_latch::cross_origin::OriginError>(())
    /// ```
    pub fn allow_path(self, path: &str) -> Result<Self, OriginError> {
        if !path.starts_with('/') {
            return Err(OriginError::Path(path.to_owned()));
        }
        Ok(self.edit(|c| {
            c.allowed_paths.insert(path.to_owned());
        }))
    }
}

/// Decides whether a request may go on, or why not.
pub(crate) fn check<'a>(
    trusted: &HashSet<Origin>,
    method: &Method,
    authority: Option<&'a str>,
    headers: &'a HeaderMap,
) -> Result<(), CrossSite<'a>> {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return Ok(());
    }
    let origin = single_header(headers, &ORIGIN);
    let is_trusted = || match origin {
        Header::Text(origin) => Origin::parse(origin).is_ok_and(|o| trusted.contains(&o)),
        Header::Absent | Header::Unreadable => false,
    };
    match single_header(headers, &SEC_FETCH_SITE) {
        Header::Text("same-origin" | "none") => Ok(()),
        _ if is_trusted() => Ok(()),
        Header::Text(site) => Err(CrossSite::FetchSite(site)),
        Header::Unreadable => Err(CrossSite::FetchSiteUnreadable),
        // An older browser, or no browser: fall back on `Origin`.
        Header::Absent => match origin {
            Header::Absent => Ok(()),
            Header::Unreadable => Err(CrossSite::OriginUnreadable),
            Header::Text("null") => Err(CrossSite::NullOrigin),
            Header::Text(text) => {
                let Ok(parsed) = Origin::parse(text) else {
                    return Err(CrossSite::NotAnOrigin(text));
                };
                // HTTP/2's `:authority` (and an absolute-form target) comes
                // before `Host`, as RFC 9112 and RFC 9113 want.
                let host = match authority {
                    Some(authority) => Header::Text(authority),
                    None => single_header(headers, &HOST),
                };
                match host {
                    Header::Text(host) if parsed.is_host(host) => Ok(()),
                    Header::Text(host) => Err(CrossSite::OtherHost { origin: text, host }),
                    Header::Absent | Header::Unreadable => Err(CrossSite::NoHost(text)),
                }
            }
        },
    }
}

/// A request header that should appear at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header<'a> {
    Absent,
    Text(&'a str),
    /// Repeated, or not visible ASCII.
    Unreadable,
}

fn single_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Header<'a> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Header::Absent,
        (Some(value), None) => value.to_str().map_or(Header::Unreadable, Header::Text),
        (Some(_), Some(_)) => Header::Unreadable,
    }
}

/// Why a request was refused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrossSite<'a> {
    FetchSite(&'a str),
    FetchSiteUnreadable,
    OriginUnreadable,
    NullOrigin,
    NotAnOrigin(&'a str),
    OtherHost { origin: &'a str, host: &'a str },
    NoHost(&'a str),
}

impl fmt::Display for CrossSite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FetchSite(site) => write!(f, "Sec-Fetch-Site is {:?}", shown(site)),
            Self::FetchSiteUnreadable => f.write_str("Sec-Fetch-Site is repeated or not text"),
            Self::OriginUnreadable => f.write_str("Origin is repeated or not text"),
            Self::NullOrigin => f.write_str("Origin is null"),
            Self::NotAnOrigin(origin) => write!(f, "Origin {:?} is not an origin", shown(origin)),
            Self::OtherHost { origin, host } => write!(
                f,
                "Origin {:?} is not the request's host {:?}",
                shown(origin),
                shown(host)
            ),
            Self::NoHost(origin) => write!(
                f,
                "Origin {:?} and no readable Host to compare it with",
                shown(origin)
            ),
        }
    }
}

/// At most [`SHOWN_LEN`] characters of a header value.
fn shown(value: &str) -> &str {
    // Header values that are text are ASCII: any index is a char boundary.
    value.get(..SHOWN_LEN).unwrap_or(value)
}

/// A trusted origin given to [`CrossOriginGuard::trust_origin`] is not
/// of the form `scheme://host[:port]`.
///
/// ```
/// use axum_latch::CrossOriginGuard;
/// use axum_latch::cross_origin::OriginError;
///
/// let error = CrossOriginGuard::new().trust_origin("app.example.com").unwrap_err();
/// assert_eq!(error, OriginError::Scheme("app.example.com".into()));
/// println!("{error}"); // says what is wrong, and how an origin looks
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// No scheme, or one with characters a scheme cannot have.
    #[error(
        "{0:?} is not an origin: it must start with a scheme and `://`; \
         write it as `scheme://host[:port]`, such as `https://app.example.com`"
    )]
    Scheme(String),
    /// No host, or one that is neither a host name nor an IP address.
    #[error(
        "{0:?} is not an origin: its host must be a host name (ASCII letters, digits, `-`, \
         `_` and `.`; punycode for international names), an IPv4 address or a bracketed \
         IPv6 address, such as `https://app.example.com` or `http://[::1]:8080`"
    )]
    Host(String),
    /// A port that is not a number from 1 to 65535.
    #[error(
        "{0:?} is not an origin: its port must be a number from 1 to 65535, \
         such as `http://localhost:8080`"
    )]
    Port(String),
    /// A path (even a lone `/`), query, fragment or user name.
    #[error(
        "{0:?} is not an origin: an origin has no path (not even a trailing `/`), query, \
         fragment or user name; write it as `scheme://host[:port]`, such as \
         `https://app.example.com`"
    )]
    NotOnlyOrigin(String),
    /// An allowed path that does not start with `/`.
    #[error("{0:?} cannot be an allowed path: a path starts with `/`, such as `/webhooks/stripe`")]
    Path(String),
}

/// An origin, `scheme://host[:port]`, in one spelling: scheme and host in
/// lower case, no port when it is the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn parse(text: &str) -> Result<Self, OriginError> {
        let (scheme, rest) = text
            .split_once("://")
            .filter(|(scheme, _)| is_scheme(scheme))
            .ok_or_else(|| OriginError::Scheme(text.to_owned()))?;
        if rest.contains(['/', '?', '#', '@']) {
            return Err(OriginError::NotOnlyOrigin(text.to_owned()));
        }
        let (host, port) = split_host_port(rest).map_err(|part| match part {
            Part::Host => OriginError::Host(text.to_owned()),
            Part::Port => OriginError::Port(text.to_owned()),
        })?;
        if !is_host(host) {
            return Err(OriginError::Host(text.to_owned()));
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = port.filter(|&port| Some(port) != default_port(&scheme));
        Ok(Self {
            host: host.to_ascii_lowercase(),
            scheme,
            port,
        })
    }

    /// Whether a request's host (`host[:port]`, from `Host` or the URI)
    /// names this origin's host and port.
    fn is_host(&self, authority: &str) -> bool {
        let Ok((host, port)) = split_host_port(authority) else {
            return false;
        };
        host.eq_ignore_ascii_case(&self.host)
            && match port {
                // No port: the default one of the scheme the request came
                // with, whatever it was; the origin's must be a default too.
                None => self.port.is_none(),
                Some(port) => Some(port) == self.port.or_else(|| default_port(&self.scheme)),
            }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme(scheme: &str) -> bool {
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// A host name, an IPv4 address, or an IPv6 address in brackets.
fn is_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => {
            ipv6.contains(':')
                && ipv6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }
    }
}

/// The part of a `host[:port]` that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Host,
    Port,
}

/// Splits `host[:port]` (the host perhaps a bracketed IPv6 address).
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), Part> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or(Part::Host)? + 1;
        let (host, rest) = authority.split_at(end);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':').ok_or(Part::Host)?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(Part::Host);
    }
    let port = match port {
        None => None,
        Some(port) => Some(parse_port(port).ok_or(Part::Port)?),
    };
    Ok((host, port))
}

/// 1 to 5 ASCII digits, 1 to 65535.
fn parse_port(port: &str) -> Option<u16> {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| port.parse().ok())
        .flatten()
        .filter(|&port| port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn origin(text: &str) -> Origin {
        Origin::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    #[test]
    fn origins_parse_into_one_spelling() {
        let cases = [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://app.example.com:80", "http://app.example.com"),
            ("https://app.example.com:80", "https://app.example.com:80"),
            ("http://app.example.com:443", "http://app.example.com:443"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://[2001:DB8::1]", "https://[2001:db8::1]"),
            (
                "http://xn--bcher-kva.example",
                "http://xn--bcher-kva.example",
            ),
            ("http://my_dev_box:3000", "http://my_dev_box:3000"),
            ("chrome-extension://abcdef", "chrome-extension://abcdef"),
            ("app+x.y-z://host:1", "app+x.y-z://host:1"),
            ("https://example.com:00443", "https://example.com"),
        ];
        for (text, expected) in cases {
            assert_eq!(origin(text).to_string(), expected, "{text}");
        }
        assert_eq!(
            origin("https://example.com:443"),
            origin("HTTPS://EXAMPLE.com")
        );
        assert_ne!(origin("https://example.com"), origin("http://example.com"));
        assert_ne!(
            origin("https://example.com"),
            origin("https://example.com:8443")
        );
    }

    #[test]
    fn non_origins_are_refused_with_the_reason() {
        use OriginError::*;
        type Variant = fn(String) -> OriginError;
        let cases: [(&str, Variant); 28] = [
            ("", Scheme),
            ("null", Scheme),
            ("app.example.com", Scheme),
            ("//app.example.com", Scheme),
            ("://app.example.com", Scheme),
            ("1http://app.example.com", Scheme),
            (" https://app.example.com", Scheme),
            ("ht tp://app.example.com", Scheme),
            ("https:app.example.com", Scheme),
            ("https://", Host),
            ("https://:443", Host),
            ("https://app.example.com ", Host),
            ("https://app example.com", Host),
            ("https://bücher.example", Host),
            ("https://[::1", Host),
            ("https://[::1]x", Host),
            ("https://[]", Host),
            ("https://[example.com]", Host),
            ("https://::1", Host),
            ("https://app.example.com:1:2", Port),
            ("https://app.example.com:", Port),
            ("https://app.example.com:0", Port),
            ("https://app.example.com:65536", Port),
            ("https://app.example.com:+80", Port),
            ("https://app.example.com/", NotOnlyOrigin),
            ("https://app.example.com/login", NotOnlyOrigin),
            ("https://app.example.com?x=1", NotOnlyOrigin),
            ("https://user@app.example.com", NotOnlyOrigin),
        ];
        for (text, variant) in cases {
            assert_eq!(
                Origin::parse(text),
                Err(variant(text.to_owned())),
                "{text:?}"
            );
        }
        assert_eq!(
            Origin::parse("https://app.example.com#top"),
            Err(NotOnlyOrigin("https://app.example.com#top".into()))
        );
    }

    #[test]
    fn errors_say_what_an_origin_looks_like() {
        let guard = CrossOriginGuard::new();
        let error = guard
            .clone()
            .trust_origin("https://app.example.com/")
            .unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("\"https://app.example.com/\" is not an origin"));
        assert!(message.contains("trailing `/`"), "{message}");
        assert!(message.contains("scheme://host[:port]"), "{message}");
        let message = guard.trust_origin("example.com").unwrap_err().to_string();
        assert!(message.contains("`https://app.example.com`"), "{message}");
    }

    #[test]
    fn trust_origin_keeps_the_normalized_origin() {
        let guard = CrossOriginGuard::new()
            .trust_origin("HTTPS://App.Example.com:443")
            .unwrap()
            .trust_origin("http://localhost:5173")
            .unwrap();
        let expected: HashSet<Origin> = [
            origin("https://app.example.com"),
            origin("http://localhost:5173"),
        ]
        .into();
        assert_eq!(guard.config.trusted, expected);
    }

    #[test]
    fn allow_path_wants_a_path() {
        let error = CrossOriginGuard::new()
            .allow_path("webhooks/stripe")
            .unwrap_err();
        assert_eq!(error, OriginError::Path("webhooks/stripe".into()));
        assert!(error.to_string().contains("starts with `/`"), "{error}");
    }

    #[test]
    fn hosts_match_origins_by_host_and_port() {
        let cases = [
            ("https://example.com", "example.com", true),
            ("https://example.com", "EXAMPLE.COM", true),
            ("https://example.com", "example.com:443", true),
            ("https://example.com", "example.com:80", false),
            ("https://example.com", "example.com:8443", false),
            ("http://example.com", "example.com", true),
            ("http://example.com", "example.com:80", true),
            ("http://example.com", "example.com:443", false),
            ("http://example.com:8080", "example.com:8080", true),
            ("http://example.com:8080", "example.com", false),
            ("https://example.com:80", "example.com:80", true),
            ("https://example.com:80", "example.com", false),
            ("https://example.com", "www.example.com", false),
            ("https://example.com", "example.com.", false),
            ("https://example.com", "example.com:", false),
            ("https://example.com", "example.com:x", false),
            ("https://example.com", "", false),
            ("http://[::1]:8080", "[::1]:8080", true),
            ("http://[::1]:8080", "[::1]", false),
            ("http://[::1]", "[::1]", true),
            ("app://thing", "thing", true),
            ("app://thing", "thing:80", false),
        ];
        for (origin_text, host, expected) in cases {
            assert_eq!(
                origin(origin_text).is_host(host),
                expected,
                "Origin {origin_text} vs Host {host}"
            );
        }
    }

    #[test]
    fn headers_are_read_once_and_as_text() {
        let mut headers = HeaderMap::new();
        assert_eq!(single_header(&headers, &ORIGIN), Header::Absent);
        headers.insert(ORIGIN, HeaderValue::from_static("https://a.example"));
        assert_eq!(
            single_header(&headers, &ORIGIN),
            Header::Text("https://a.example")
        );
        headers.append(ORIGIN, HeaderValue::from_static("https://a.example"));
        assert_eq!(single_header(&headers, &ORIGIN), Header::Unreadable);
        headers.insert(ORIGIN, HeaderValue::from_bytes(b"https://\xff").unwrap());
        assert_eq!(single_header(&headers, &ORIGIN), Header::Unreadable);
    }

    #[test]
    fn check_gives_the_reason() {
        let trusted: HashSet<Origin> = [origin("https://app.example.com")].into();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, HeaderValue::from_static(value));
            }
            map
        };
        let post = Method::POST;
        let h = headers(&[("sec-fetch-site", "same-site")]);
        assert_eq!(
            check(&trusted, &post, None, &h),
            Err(CrossSite::FetchSite("same-site"))
        );
        let h = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://app.example.com"),
        ]);
        assert_eq!(check(&trusted, &post, None, &h), Ok(()));
        let h = headers(&[("origin", "null"), ("host", "example.com")]);
        assert_eq!(check(&trusted, &post, None, &h), Err(CrossSite::NullOrigin));
        let h = headers(&[("origin", "https://evil.example"), ("host", "example.com")]);
        assert_eq!(
            check(&trusted, &post, None, &h),
            Err(CrossSite::OtherHost {
                origin: "https://evil.example",
                host: "example.com"
            })
        );
        // The URI's authority (HTTP/2) comes before `Host`.
        let h = headers(&[("origin", "https://example.com"), ("host", "other.example")]);
        assert_eq!(check(&trusted, &post, Some("example.com"), &h), Ok(()));
        let h = headers(&[("origin", "https://example.com")]);
        assert_eq!(
            check(&trusted, &post, None, &h),
            Err(CrossSite::NoHost("https://example.com"))
        );
        assert_eq!(check(&trusted, &Method::GET, None, &h), Ok(()));
        assert_eq!(
            check(&trusted, &post, None, &headers(&[("origin", "evil")])),
            Err(CrossSite::NotAnOrigin("evil"))
        );
        assert_eq!(check(&trusted, &post, None, &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn log_lines_show_a_bounded_value() {
        let long = "x".repeat(1000);
        let line = CrossSite::FetchSite(&long).to_string();
        assert!(line.len() < 150, "{line}");
        assert_eq!(
            CrossSite::FetchSite("cross-site").to_string(),
            "Sec-Fetch-Site is \"cross-site\""
        );
    }
}
