//! The `next` URL: arbitrary text as a decoded `next`, as a raw query
//! string, and as the path carried by a login redirect.
//!
//! Invariants (in `axum_latch::fuzzing::next_redirect`): no panic; whatever
//! `is_safe_next` accepts starts with exactly one `/`, not `//` nor `/\`,
//! and has no backslash, whitespace or control character; every `Location`
//! a login would send is a valid header value and a URI reference (it
//! parses as an `http::Uri`) with no scheme and no authority; `next`
//! survives the login redirect's query intact. Here, in addition: resolved by a browser's URL parser (WHATWG,
//! the `url` crate) against a page of the site, every `Location` stays on
//! the site's origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use url::Url;

static BASE: LazyLock<Url> =
    LazyLock::new(|| Url::parse("https://app.example/dir/page?q=1#top").unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for location in axum_latch::fuzzing::next_redirect(input) {
        if let Ok(target) = BASE.join(&location) {
            assert_eq!(
                target.origin(),
                BASE.origin(),
                "{location:?} leads to {target}"
            );
        }
    }
});
