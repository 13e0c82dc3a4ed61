//! The `next` URL: where a login sends the user back to, and the rule that
//! keeps it on this site.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC};

/// What `login_user` percent-encodes in the `Location` it sends: controls,
/// non-ASCII, and the ASCII characters a URI may not hold (`%` is kept, so
/// what was encoded stays encoded once).
const LOCATION_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'^')
    .add(b'\\');

/// The longest `next` latch follows, in bytes.
pub const MAX_NEXT_LEN: usize = 2048;

/// Everything but unreserved characters and `/` is encoded, so that a path
/// and query travel as one query value, encoded exactly once.
const NEXT_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Tells whether `next` is a path on this site that a login may redirect to.
///
/// It must start with exactly one `/` (so not `//host` nor `/\host`, which
/// browsers read as another site), hold no backslash, whitespace or control
/// character anywhere (browsers drop tabs and newlines, turning `/\t/host`
/// into `//host`), and be at most [`MAX_NEXT_LEN`] bytes long. A scheme such
/// as `javascript:` cannot pass, since the first character must be `/`.
///
/// ```
/// use axum_latch::next::is_safe_next;
///
/// assert!(is_safe_next("/account?tab=devices"));
/// assert!(!is_safe_next("//evil.example/"));
/// assert!(!is_safe_next("https://evil.example/"));
/// assert!(!is_safe_next("/\\evil.example"));
/// ```
pub fn is_safe_next(next: &str) -> bool {
    let mut chars = next.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/'))
        && next.len() <= MAX_NEXT_LEN
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
}

/// `next` if it is safe, else `fallback`.
pub(crate) fn safe_or<'a>(next: Option<&'a str>, fallback: &'a str) -> &'a str {
    match next {
        Some(next) if is_safe_next(next) => next,
        _ => fallback,
    }
}

/// The login page's URL with `next` set to `path_and_query`, encoded once.
pub(crate) fn login_redirect(login_url: &str, path_and_query: &str) -> String {
    let separator = if login_url.contains('?') { '&' } else { '?' };
    format!(
        "{login_url}{separator}next={}",
        utf8_percent_encode(path_and_query, NEXT_VALUE)
    )
}

/// The first `next` parameter of a query string, decoded. A query with
/// several `next` parameters has none that can be trusted.
pub(crate) fn from_query(query: Option<&str>) -> Option<String> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query?.as_bytes()) {
        if name == "next" {
            if found.is_some() {
                return None;
            }
            found = Some(value.into_owned());
        }
    }
    found
}

/// The `Location` a login sends for a safe `next`: `next` arrives decoded,
/// and a `Location` must be a valid URI reference, so what is not ASCII or
/// may not appear in one is percent-encoded.
pub(crate) fn location(next: &str) -> String {
    utf8_percent_encode(next, LOCATION_ENCODE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_site_paths_pass() {
        for ok in [
            "/",
            "/a",
            "/a/b?c=d&e=f",
            "/%2F%2Fevil.example",
            "/?next=//x",
            "/caf\u{e9}",
        ] {
            assert!(is_safe_next(ok), "{ok:?}");
        }
    }

    #[test]
    fn other_sites_and_odd_characters_fail() {
        for bad in [
            "",
            "a",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "http://evil.example",
            "javascript:alert(1)",
            " /a",
            "/\t/evil.example",
            "/a\nb",
            "/a\rb",
            "/a\0b",
            "/a b",
            "/a\u{a0}b",
            "/a\u{2028}b",
        ] {
            assert!(!is_safe_next(bad), "{bad:?}");
        }
        assert!(!is_safe_next(&format!("/{}", "a".repeat(MAX_NEXT_LEN))));
    }

    #[test]
    fn fallback_is_used_for_unsafe_or_missing_next() {
        assert_eq!(safe_or(Some("/ok"), "/"), "/ok");
        assert_eq!(safe_or(Some("//evil"), "/"), "/");
        assert_eq!(safe_or(None, "/home"), "/home");
    }

    #[test]
    fn login_redirect_encodes_path_and_query_once() {
        assert_eq!(
            login_redirect("/login", "/?foo=bar"),
            "/login?next=/%3Ffoo%3Dbar"
        );
        assert_eq!(login_redirect("/login", "/a%20b"), "/login?next=/a%2520b");
        assert_eq!(login_redirect("/login?x=1", "/f"), "/login?x=1&next=/f");
    }

    #[test]
    fn next_round_trips_through_the_query() {
        let url = login_redirect("/login", "/search?q=a b&x=%2F");
        let query = url.split_once('?').unwrap().1;
        assert_eq!(
            from_query(Some(query)).as_deref(),
            Some("/search?q=a b&x=%2F")
        );
    }

    #[test]
    fn repeated_next_is_not_trusted() {
        assert_eq!(from_query(Some("next=/a&next=/b")), None);
        assert_eq!(from_query(Some("x=1")), None);
        assert_eq!(from_query(None), None);
        assert_eq!(from_query(Some("next=%2Fa")).as_deref(), Some("/a"));
    }
}
