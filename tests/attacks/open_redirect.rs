//! Attack: an open redirect through `next`. A login link such as
//! `/login?next=//evil.example` must not send the user, once logged in, to
//! another site (or to a `javascript:` URL). latch follows `next` only if it
//! is a path on this site; anything else goes to the default redirect (`/`).
//!
//! Each hostile value is sent as the login request's `next` (encoded once in
//! the query, as a browser would), and the `Location` of the login's `303`
//! must be the default. Then properties: whatever string `next` is, the
//! `Location` is a same-origin path. Sources for the values include Django's
//! tests of `url_has_allowed_host_and_scheme` and the WHATWG URL parser's
//! quirks (tabs and newlines dropped, `\` read as `/`, leading C0 controls
//! and spaces stripped).

use crate::support;

use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::Router;
use proptest::prelude::*;
use support::attack::*;

/// `next` values that must never be followed after a login, each named for
/// the trick it plays.
const HOSTILE_NEXT: &[(&str, &str)] = &[
    // Protocol-relative: another host, this scheme.
    ("protocol-relative", "//evil.example"),
    (
        "protocol-relative with path and query",
        "//evil.example/path?x=1",
    ),
    ("three slashes", "///evil.example"),
    ("four slashes", "////evil.example"),
    // Backslashes: browsers read `\` as `/` in http(s) URLs.
    ("slash backslash", "/\\evil.example"),
    ("slash backslash slash", "/\\/evil.example"),
    ("two backslashes", "\\\\evil.example"),
    ("three backslashes", "\\\\\\evil.example"),
    ("backslash slash", "\\/evil.example"),
    ("backslash two slashes", "\\//evil.example"),
    // Absolute URLs and schemes.
    ("absolute https", "https://evil.example/"),
    ("absolute https, upper case", "HTTPS://evil.example"),
    ("absolute ftp", "ftp://evil.example"),
    ("scheme without slashes", "http:evil.example"),
    ("scheme with three slashes", "http:///evil.example"),
    ("scheme with backslashes", "http:\\\\evil.example"),
    ("scheme, slash backslash slash", "http:/\\/evil.example"),
    (
        "backslash before userinfo",
        "http://app.example\\@evil.example",
    ),
    ("broken IPv6 host", "http://[2001:db8::1/"),
    ("scheme and a port number only", "http:999999999"),
    ("javascript", "javascript:alert(1)"),
    ("javascript, mixed case", "JaVaScRiPt:alert(1)"),
    ("javascript after a newline", "\njavascript:alert(1)"),
    ("javascript with a tab inside", "java\tscript:alert(1)"),
    ("data URL", "data:text/html,<script>alert(1)</script>"),
    ("vbscript", "vbscript:msgbox(1)"),
    // Userinfo: everything before `@` is a user name, after it the host.
    ("userinfo", "//user@evil.example"),
    ("userinfo with a password", "//user:pass@evil.example"),
    ("userinfo after a backslash", "/\\user@evil.example"),
    // Characters browsers drop or strip, which join two slashes.
    ("tab between slashes", "/\t/evil.example"),
    ("newline between slashes", "/\n/evil.example"),
    ("CR LF between slashes", "/\r\n/evil.example"),
    ("CR between slashes", "/\r/evil.example"),
    ("NUL between slashes", "/\0/evil.example"),
    ("form feed between slashes", "/\x0c/evil.example"),
    ("leading tab", "\t//evil.example"),
    ("leading space", " //evil.example"),
    ("leading backspace", "\x08//evil.example"),
    ("leading space before a path", " /account"),
    ("trailing space", "/account "),
    // Header injection.
    ("CR LF and a header", "/\r\nSet-Cookie: x=1"),
    ("CR LF and a Location", "/\r\nLocation: //evil.example"),
    ("NUL at the end", "/account\0"),
    // Unicode spaces and lookalikes.
    ("line separator between slashes", "/\u{2028}/evil.example"),
    ("no-break space between slashes", "/\u{a0}/evil.example"),
    (
        "ideographic space between slashes",
        "/\u{3000}/evil.example",
    ),
    ("next line (C1) between slashes", "/\u{85}/evil.example"),
    ("fullwidth solidus twice", "\u{ff0f}\u{ff0f}evil.example"),
    ("byte order mark first", "\u{feff}//evil.example"),
    ("a space inside a path", "/a b"),
    // Not a path from the root.
    (
        "percent-encoded slashes, no leading slash",
        "%2F%2Fevil.example",
    ),
    ("a bare host", "evil.example"),
    ("a relative path", "account"),
    ("a dot path", "./account"),
    ("empty", ""),
];

/// The `Location` of a login (as alice) with `query` as its query string.
async fn login_location(app: &Router, query: &str) -> String {
    let response = send(app, "POST", &format!("/login/1?{query}"), &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "?{query}");
    let location = response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("?{query}: a Location"));
    std::str::from_utf8(location.as_bytes())
        .expect("a UTF-8 Location")
        .to_owned()
}

/// `next=…`, encoded once.
fn next_query(next: &str) -> String {
    format!(
        "next={}",
        form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    )
}

/// Why `location` is not a path on this site, as a browser would resolve
/// it; `None` if it is one.
fn off_site(location: &str) -> Option<&'static str> {
    if !location.starts_with('/') {
        return Some("does not start with /");
    }
    if location.starts_with("//") || location.starts_with("/\\") {
        return Some("starts with // or /\\");
    }
    if location
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Some("holds a control character, whitespace or a backslash");
    }
    // What a WHATWG URL parser does before it looks: strip C0 controls and
    // spaces at the ends, drop tabs and newlines, read `\` as `/`.
    let browser: String = location
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    if !browser.starts_with('/') || browser.starts_with("//") {
        return Some("a browser reads another host");
    }
    None
}

/// Why `location` is not a same-origin URI reference (RFC 3986, as the
/// `http` crate parses it); `None` if it is one.
fn not_a_same_origin_uri(location: &str) -> Option<&'static str> {
    off_site(location).or(match location.parse::<http::Uri>() {
        Err(_) => Some("is not a URI"),
        Ok(uri) if uri.scheme().is_some() || uri.authority().is_some() => {
            Some("has a scheme or an authority")
        }
        Ok(_) => None,
    })
}

#[tokio::test]
async fn hostile_next_values_go_to_the_default() {
    let app = app();
    let long = format!("/{}", "a".repeat(axum_latch::next::MAX_NEXT_LEN));
    let long_off_site = format!(
        "//evil.example/{}",
        "a".repeat(axum_latch::next::MAX_NEXT_LEN)
    );
    let cases = HOSTILE_NEXT.iter().copied().chain([
        ("longer than MAX_NEXT_LEN", long.as_str()),
        ("long and protocol-relative", long_off_site.as_str()),
    ]);
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, next) in cases {
        count += 1;
        let location = login_location(&app, &next_query(next)).await;
        if location != "/" {
            failures.push(format!("{name} ({next:?}): Location {location:?}"));
        }
        if axum_latch::next::is_safe_next(next) {
            failures.push(format!("{name} ({next:?}): is_safe_next says yes"));
        }
    }
    assert!(count >= 40, "at least 40 hostile values: {count}");
    assert!(
        failures.is_empty(),
        "hostile next values were followed:\n{}",
        failures.join("\n")
    );
}

/// As an attacker would write them in a link: the server decodes the
/// query once.
#[tokio::test]
async fn raw_hostile_next_in_the_query_goes_to_the_default() {
    let app = app();
    for (name, query) in [
        ("protocol-relative", "next=//evil.example"),
        ("percent-encoded slashes", "next=%2F%2Fevil.example"),
        ("percent-encoded backslash", "next=/%5Cevil.example"),
        ("percent-encoded tab", "next=%2F%09%2Fevil.example"),
        ("scheme, encoded slashes", "next=https:%2F%2Fevil.example"),
        ("plus as a space", "next=/+/evil.example"),
        ("double-encoded slashes", "next=%252F%252Fevil.example"),
        (
            "encoded CR LF and a header",
            "next=/%0D%0ALocation:%20//evil.example",
        ),
        ("encoded NUL", "next=/%00/evil.example"),
        (
            "fullwidth solidus twice",
            "next=%EF%BC%8F%EF%BC%8Fevil.example",
        ),
    ] {
        assert_eq!(login_location(&app, query).await, "/", "{name}: ?{query}");
    }
}

/// Controls: paths on this site are followed, even when they hold text
/// that looks like another host.
#[tokio::test]
async fn safe_next_values_are_followed() {
    let app = app();
    for next in [
        "/account",
        "/a/b?c=d&e=f",
        "/?next=//evil.example",
        // Percent-encoded slashes stay a path on this site.
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/%09/evil.example",
        "/caf%C3%A9",
        // A path segment with an `@` or a dot: no host in a path.
        "/@evil.example",
        "/.evil.example",
        "/evil.example",
    ] {
        let location = login_location(&app, &next_query(next)).await;
        assert_eq!(location, next, "next={next:?} is followed");
        assert_eq!(not_a_same_origin_uri(&location), None, "{location}");
    }
}

/// Paths on this site that hold characters a URI may not (RFC 3986): they
/// are followed, percent-encoded, so that the `Location` is still a URI
/// that every client reads the same way.
#[tokio::test]
async fn a_followed_next_with_characters_a_uri_may_not_hold_is_encoded() {
    let app = app();
    let mut failures = Vec::new();
    for next in ["/<script>", "/a\"b", "/a`b", "/a?q=<x>", "/{a}|^b"] {
        let location = login_location(&app, &next_query(next)).await;
        let decoded = percent_encoding::percent_decode_str(&location).decode_utf8_lossy();
        if decoded != next {
            failures.push(format!("{next:?}: not followed, Location {location:?}"));
        } else if let Some(why) = not_a_same_origin_uri(&location) {
            failures.push(format!("{next:?}: Location {location:?} {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn repeated_next_goes_to_the_default() {
    let app = app();
    for query in [
        "next=/a&next=/b",
        "next=/a&next=//evil.example",
        "next=//evil.example&next=/a",
        "next=/a&x=1&next=/a",
    ] {
        assert_eq!(
            login_location(&app, query).await,
            "/",
            "?{query}: several next, none trusted"
        );
    }
}

/// Pieces of hostile `next` values, to put together.
fn hostile_piece() -> impl Strategy<Value = String> {
    prop::sample::select(
        &[
            "/",
            "//",
            "\\",
            "%2F",
            "%5C",
            "\t",
            "\r\n",
            " ",
            "\0",
            "@",
            ":",
            "evil.example",
            "javascript:",
            "https:",
            "\u{ff0f}",
            "\u{3000}",
            "\u{2028}",
            "?",
            "#",
        ][..],
    )
    .prop_map(str::to_owned)
}

/// `next` values shaped like paths on this site (`/a/b.c?x=1#top`, with
/// percent-escapes, characters a URI may not hold, and non-ASCII), most
/// of which latch follows; some behind a hostile prefix; and any string.
fn next_value() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        6 => "[a-zA-Z0-9._~-]{1,10}",
        1 => "%[0-9A-F]{2}",
        1 => "[<>\"`{}|^ ]",
        1 => "[é\u{4e2d}\u{1f600}]",
    ];
    let path = (
        proptest::collection::vec(segment, 1..5),
        prop::option::weighted(0.3, "[a-z]{1,5}=[a-z0-9%]{0,8}"),
        prop::option::weighted(0.2, "[a-z]{0,6}"),
    )
        .prop_map(|(segments, query, fragment)| {
            let mut next = format!("/{}", segments.join("/"));
            if let Some(query) = query {
                next = format!("{next}?{query}");
            }
            if let Some(fragment) = fragment {
                next = format!("{next}#{fragment}");
            }
            next
        });
    let hostile_prefix = prop::sample::select(
        &[
            "/",
            "//evil.example",
            "\\",
            "/\\",
            "https://evil.example",
            "javascript:",
            "\t",
            "%2F",
            " ",
            "\u{ff0f}",
            "@evil.example",
        ][..],
    );
    prop_oneof![
        7 => path.clone(),
        2 => (hostile_prefix, path).prop_map(|(prefix, path)| format!("{prefix}{path}")),
        1 => any::<String>(),
    ]
}

/// What a followed `next` must have percent-encoded in the `Location`:
/// controls, non-ASCII, and what a URI may not hold (RFC 3986), written out
/// here from the RFC, not taken from latch.
#[rustfmt::skip]
const IN_LOCATION: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ').add(b'"').add(b'<').add(b'>').add(b'`')
    .add(b'{').add(b'}').add(b'|').add(b'^').add(b'\\');

/// Whatever `next` says, the login goes to it only if it is a path on this
/// site, and else to the default; it never fails. Most cases are paths
/// latch must follow, so that the check of the followed `Location` runs.
#[test]
fn login_never_redirects_off_site() {
    let reach = run_property(file!(), 128, next_value(), |next| {
        let h = harness();
        let location = h
            .runtime
            .block_on(login_location(&h.app, &next_query(&next)));
        let followed = location != "/";
        if followed {
            // The same path, with what is not ASCII or not allowed in a URI
            // percent-encoded for the header (`%` itself left alone).
            let expected = percent_encoding::utf8_percent_encode(&next, IN_LOCATION).to_string();
            prop_assert_eq!(&location, &expected);
            prop_assert!(location.is_ascii(), "{:?}", location);
        }
        prop_assert_eq!(off_site(&location), None, "{:?}", location);
        Ok(followed)
    });
    reach.assert_at_least(0.5, "a followed next");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// For any string as `next`, the `Location` latch emits after a login
    /// is a same-origin path: it starts with a single `/` (not `//` nor
    /// `/\`), holds no control character, and parses as a URI without a
    /// scheme or an authority.
    #[test]
    fn the_login_location_is_always_a_same_origin_path(
        next in prop_oneof![
            any::<String>(),
            proptest::collection::vec(hostile_piece(), 0..8).prop_map(|pieces| pieces.concat()),
        ]
    ) {
        let h = harness();
        let location = h.runtime.block_on(login_location(&h.app, &next_query(&next)));
        prop_assert_eq!(
            not_a_same_origin_uri(&location), None, "next {:?}: Location {:?}", next, location
        );
    }
}
