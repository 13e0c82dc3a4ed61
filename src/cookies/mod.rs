//! Reading latch's cookies from a request and writing them on a response,
//! always with the same attributes, so a deletion matches what was set.

use cookie::{Cookie, SameSite};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use std::time::Duration;

/// A cookie setting that cannot be used, found when configuring latch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A cookie name that is empty or has characters a cookie name cannot have.
    #[error("{0:?} cannot be a cookie name: use letters, digits, `-`, `_` or `.`")]
    CookieName(String),
    /// A cookie path that does not start with `/` or has `;`, spaces or control characters.
    #[error("{0:?} cannot be a cookie path: it must start with `/` and have no `;`, spaces or control characters")]
    CookiePath(String),
    /// A cookie domain with characters a host name cannot have.
    #[error("{0:?} cannot be a cookie domain: use a plain host name such as `example.com`")]
    CookieDomain(String),
    /// The `__Host-` cookie prefix asked for with settings it forbids.
    #[error("the __Host- cookie prefix needs Secure, Path=/ and no Domain, but {0}")]
    HostPrefix(&'static str),
    /// A URL latch redirects to that is not a path on this site.
    #[error("{0:?} cannot be a redirect target here: use a path on this site, such as `/login`")]
    LocalUrl(String),
    /// A value for a response header that a header cannot carry (a line
    /// break or another control character).
    #[error("{0:?} cannot be a header value: it has a line break or another control character")]
    Header(String),
}

/// The attributes latch gives both of its cookies.
#[derive(Debug, Clone)]
pub(crate) struct CookieAttributes {
    pub secure: bool,
    pub same_site: SameSite,
    pub path: String,
    pub domain: Option<String>,
}

impl Default for CookieAttributes {
    fn default() -> Self {
        Self {
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
        }
    }
}

/// What a request's `Cookie` headers hold under one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup<T = String> {
    /// No cookie of that name.
    Missing,
    /// Exactly one cookie of that name, with this value.
    Found(T),
    /// More than one cookie of that name: which one is ours cannot be told.
    Duplicate,
    /// A `Cookie` header that is not text.
    Unreadable,
}

/// Finds the cookie called `name` in every `Cookie` header of a request.
#[cfg(any(test, fuzzing))]
pub(crate) fn find(headers: &HeaderMap, name: &str) -> Lookup {
    find_in(headers.get_all(COOKIE).iter(), name).map(str::to_owned)
}

/// Finds the cookie called `name` in every `Cookie` header of a request,
/// its value borrowed from the header.
pub(crate) fn find_borrowed<'a>(headers: &'a HeaderMap, name: &str) -> Lookup<&'a str> {
    find_in(headers.get_all(COOKIE).iter(), name)
}

impl<'a> Lookup<&'a str> {
    pub(crate) fn map<T>(self, f: impl FnOnce(&'a str) -> T) -> Lookup<T> {
        match self {
            Lookup::Missing => Lookup::Missing,
            Lookup::Found(value) => Lookup::Found(f(value)),
            Lookup::Duplicate => Lookup::Duplicate,
            Lookup::Unreadable => Lookup::Unreadable,
        }
    }
}

/// `;`-separated `name=value` pairs, both sides trimmed, pairs without `=`
/// or with an empty name skipped (as browsers send them, RFC 6265 §5.4).
fn find_in<'a>(headers: impl Iterator<Item = &'a HeaderValue>, name: &str) -> Lookup<&'a str> {
    let mut found = Lookup::Missing;
    for header in headers {
        let Ok(text) = header.to_str() else {
            return Lookup::Unreadable;
        };
        for pair in text.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if key.trim() != name || name.is_empty() {
                continue;
            }
            if found != Lookup::Missing {
                return Lookup::Duplicate;
            }
            found = Lookup::Found(value.trim());
        }
    }
    found
}

impl CookieAttributes {
    /// A `Set-Cookie` value that stores `value`, for `max_age` or (without
    /// one) until the browser closes.
    pub fn set(&self, name: &str, value: &str, max_age: Option<Duration>) -> HeaderValue {
        let mut cookie = self.base(name, value);
        if let Some(age) = max_age {
            cookie.set_max_age(cookie::time::Duration::seconds(age.as_secs() as i64));
        }
        to_header(&cookie)
    }

    /// A `Set-Cookie` value that deletes the cookie, with the attributes it was set with.
    pub fn delete(&self, name: &str) -> HeaderValue {
        let mut cookie = self.base(name, "");
        cookie.make_removal();
        to_header(&cookie)
    }

    /// A `Set-Cookie` value that deletes a cookie at `path`, host-only or
    /// for `domain`: one that was not set by latch, with the other
    /// attributes latch gives its own.
    pub fn delete_at(&self, name: &str, domain: Option<&str>, path: &str) -> HeaderValue {
        let mut cookie = self.base(name, "");
        cookie.set_path(path);
        match domain {
            Some(domain) => cookie.set_domain(domain),
            None => cookie.unset_domain(),
        }
        cookie.make_removal();
        to_header(&cookie)
    }

    fn base<'a>(&'a self, name: &'a str, value: &'a str) -> Cookie<'a> {
        let mut cookie = Cookie::new(name, value);
        cookie.set_path(self.path.as_str());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.as_str());
        }
        cookie.set_http_only(true);
        cookie.set_secure(self.secure);
        cookie.set_same_site(self.same_site);
        cookie
    }
}

/// The most paths [`paths_sent_to`] gives: a deep path's deepest ones are
/// left out rather than answering with dozens of headers.
const MAX_STRAY_PATHS: usize = 16;

/// The paths a cookie may have been set for and still be sent with a
/// request to `request_path` (RFC 6265 section 5.1.4), shallowest first:
/// for `/a/b`, `/`, `/a`, `/a/` and `/a/b`. Paths a cookie attribute cannot
/// hold (`;`, controls) are left out.
pub(crate) fn paths_sent_to(request_path: &str) -> impl Iterator<Item = &str> {
    let ends = request_path
        .match_indices('/')
        .flat_map(|(i, _)| [i, i + 1])
        .chain(std::iter::once(request_path.len()));
    let mut last = 0;
    ends.filter_map(move |end| {
        let path = &request_path[..end];
        let new = end > last && path.starts_with('/');
        last = last.max(end);
        (new && check_path(path).is_ok()).then_some(path)
    })
    .take(MAX_STRAY_PATHS)
}

/// The most `Set-Cookie` headers latch adds to delete a duplicated cookie.
pub(crate) const MAX_STRAY_DELETIONS: usize = 32;

/// The host a request was sent to, from its `Host` header or URI: without
/// a port, lowercased, and only if it can name a cookie domain (an IP
/// address cannot have parent domains, so it gives none).
pub(crate) fn request_host(host: &HeaderValue) -> Option<String> {
    let host = host.to_str().ok()?;
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let named = host.parse::<std::net::Ipv4Addr>().is_err() && check_domain(&host).is_ok();
    named.then_some(host)
}

/// The domains a cookie sent to `host` may have been set for with a
/// `Domain` attribute: `host` itself, then its parent domains from the
/// shortest up (at most four; a single label such as `com` is none, since
/// browsers refuse it): for `app.example.com`, `app.example.com` and
/// `example.com`.
pub(crate) fn domains_of(host: &str) -> impl Iterator<Item = &str> {
    let parents: Vec<&str> = host
        .match_indices('.')
        .map(|(i, _)| &host[i + 1..])
        .filter(|parent| parent.contains('.'))
        .collect();
    std::iter::once(host)
        .filter(|host| host.contains('.'))
        .chain(parents.into_iter().rev().take(4))
}

/// Appends a `Set-Cookie` header.
pub(crate) fn append(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(SET_COOKIE, value);
}

fn to_header(cookie: &Cookie<'_>) -> HeaderValue {
    // Names, paths and domains are checked when latch is configured, and
    // values are base64url tokens, so the cookie is always a valid header.
    HeaderValue::try_from(cookie.to_string()).expect("latch cookies are valid header values")
}

/// Checks a cookie name: an RFC 6265 token.
pub(crate) fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b));
    ok.then_some(())
        .ok_or_else(|| ConfigError::CookieName(name.to_owned()))
}

/// Checks a cookie path.
pub(crate) fn check_path(path: &str) -> Result<(), ConfigError> {
    let ok = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
    ok.then_some(())
        .ok_or_else(|| ConfigError::CookiePath(path.to_owned()))
}

/// Checks a cookie domain.
pub(crate) fn check_domain(domain: &str) -> Result<(), ConfigError> {
    let ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then_some(())
        .ok_or_else(|| ConfigError::CookieDomain(domain.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn finds_a_cookie_among_others_and_across_headers() {
        let h = headers(&[b"a=1; session=xyz", b"b=2"]);
        assert_eq!(find(&h, "session"), Lookup::Found("xyz".into()));
        assert_eq!(find(&h, "b"), Lookup::Found("2".into()));
        assert_eq!(find(&h, "_remember"), Lookup::Missing);
    }

    #[test]
    fn duplicated_cookie_is_reported() {
        assert_eq!(
            find(&headers(&[b"session=a; session=b"]), "session"),
            Lookup::Duplicate
        );
        assert_eq!(
            find(&headers(&[b"session=a", b"session=b"]), "session"),
            Lookup::Duplicate
        );
    }

    #[test]
    fn non_utf8_header_is_unreadable() {
        assert_eq!(
            find(&headers(&[b"session=\xff\xfe"]), "session"),
            Lookup::Unreadable
        );
    }

    #[test]
    fn garbage_is_ignored() {
        let h = headers(&[b";;; =; ==; session"]);
        assert_eq!(find(&h, "session"), Lookup::Missing);
    }

    #[test]
    fn set_and_delete_carry_the_same_attributes() {
        let attrs = CookieAttributes {
            domain: Some("example.com".into()),
            path: "/app".into(),
            ..Default::default()
        };
        let set = attrs.set("session", "tok", None);
        let set = set.to_str().unwrap();
        for part in [
            "session=tok",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/app",
            "Domain=example.com",
        ] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
        assert!(!set.contains("Max-Age"), "{set}");
        let del = attrs.delete("session");
        let del = del.to_str().unwrap();
        for part in [
            "session=",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/app",
            "Domain=example.com",
            "Max-Age=0",
        ] {
            assert!(del.contains(part), "{del} lacks {part}");
        }
    }

    #[test]
    fn remember_cookie_has_a_max_age() {
        let set = CookieAttributes::default().set(
            "_remember",
            "t",
            Some(Duration::from_secs(86400 * 30)),
        );
        assert!(set.to_str().unwrap().contains("Max-Age=2592000"));
    }

    #[test]
    fn the_paths_a_cookie_can_come_from() {
        fn paths(path: &str) -> Vec<&str> {
            paths_sent_to(path).collect()
        }
        assert_eq!(paths("/"), ["/"]);
        assert_eq!(paths("/a"), ["/", "/a"]);
        assert_eq!(paths("/a/"), ["/", "/a", "/a/"]);
        assert_eq!(paths("/a/b"), ["/", "/a", "/a/", "/a/b"]);
        assert_eq!(paths("//x"), ["/", "//", "//x"]);
        assert_eq!(paths("/a;b/c"), ["/"], "no path with `;`");
        assert_eq!(paths(&"/x".repeat(100)).len(), MAX_STRAY_PATHS);
        assert_eq!(paths(""), Vec::<&str>::new());
    }

    #[test]
    fn the_domains_a_cookie_can_come_from() {
        fn domains(host: &str) -> Vec<String> {
            let host = request_host(&HeaderValue::from_str(host).unwrap());
            host.iter()
                .flat_map(|h| domains_of(h))
                .map(str::to_owned)
                .collect()
        }
        assert_eq!(
            domains("app.example.com"),
            ["app.example.com", "example.com"]
        );
        assert_eq!(
            domains("App.Example.com:8080"),
            ["app.example.com", "example.com"]
        );
        assert_eq!(domains("example.com."), ["example.com"]);
        assert_eq!(
            domains("a.b.c.d.e.f.example"),
            [
                "a.b.c.d.e.f.example",
                "f.example",
                "e.f.example",
                "d.e.f.example",
                "c.d.e.f.example"
            ]
        );
        assert_eq!(domains("localhost"), Vec::<String>::new());
        assert_eq!(domains("192.0.2.1:80"), Vec::<String>::new());
        assert_eq!(domains("[2001:db8::1]:443"), Vec::<String>::new());
        assert_eq!(domains("bad host;x"), Vec::<String>::new());
    }

    #[test]
    fn config_checks() {
        assert!(check_name("session").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("a;b").is_err());
        assert!(check_path("/").is_ok());
        assert!(check_path("/child").is_ok());
        assert!(check_path("child").is_err());
        assert!(check_path("/a;b").is_err());
        assert!(check_path("/a b").is_err());
        assert!(check_domain("example.com").is_ok());
        assert!(check_domain("exa mple.com").is_err());
        assert!(check_domain("").is_err());
    }
}
