//! Entry points for `cargo fuzz` (see `fuzz/`): thin wrappers over crate-private parsers that assert their invariants.

/// The token codec, as `fuzz_targets/token_decode.rs` drives it.
pub mod token {
    pub use crate::crypto::token::{
        check_expiry, decode, encode, Claims, TokenError, Verified, MAX_TOKEN_LEN,
    };
}

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::FutureExt as _;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue, Uri};
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use crate::cookies::{self, Lookup};
use crate::login::next::{self, is_safe_next, MAX_NEXT_LEN};
use crate::remember::revocable::TOKEN_LEN;
use crate::remember::{Consumed, RevocableRemember};
use crate::remember::{RememberStore, Rotation, StoreError, StoredToken};

/// The `Cookie` headers of a request made from `bytes`: one header per
/// line (`\n` never occurs in a header value), lines that are not valid
/// header values left out.
pub fn cookie_headers(bytes: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in bytes.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, value);
        }
    }
    headers
}

/// Looks `name` up in the `Cookie` headers made from `header_bytes` (see
/// [`cookie_headers`]) and checks the answer against a plain RFC 6265
/// reading of the same headers: `Found` only for exactly one cookie of that
/// name (never one of several), its value trimmed and free of `;`.
/// Returns the value found, if any.
pub fn cookie_lookup(header_bytes: &[u8], name: &str) -> Option<String> {
    let headers = cookie_headers(header_bytes);
    let lookup = cookies::find(&headers, name);
    let expected = reference_lookup(&headers, name);
    assert_eq!(lookup, expected, "cookies::find disagrees for {name:?}");
    match lookup {
        Lookup::Found(value) => {
            assert!(!value.contains(';'), "a found value holds ';': {value:?}");
            assert_eq!(value.trim(), value, "a found value is not trimmed");
            assert!(
                headers
                    .get_all(COOKIE)
                    .iter()
                    .any(|h| h.to_str().is_ok_and(|h| h.contains(value.as_str()))),
                "a found value that is in no header: {value:?}"
            );
            Some(value)
        }
        Lookup::Missing | Lookup::Duplicate | Lookup::Unreadable => None,
    }
}

/// The cookie `name` in `headers`, read independently of the `cookie` crate:
/// `;`-separated `name=value` pairs, both sides trimmed, empty names skipped.
fn reference_lookup(headers: &HeaderMap, name: &str) -> Lookup {
    let mut found = Lookup::Missing;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else {
            return Lookup::Unreadable;
        };
        for pair in text.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if key.trim().is_empty() || key.trim() != name {
                continue;
            }
            if found != Lookup::Missing {
                return Lookup::Duplicate;
            }
            found = Lookup::Found(value.trim().to_owned());
        }
    }
    found
}

/// Feeds `input` to the `next` handling, both as a decoded `next` and as a
/// raw query string, and checks what [`is_safe_next`] lets through and the
/// `Location` a login would send (as `Auth::login_user` makes it): a valid header value and URI reference naming a path on
/// this site. Also
/// checks that [`next::login_redirect`] carries `input` back intact.
/// Returns every `Location` made, for further checks by the fuzz target.
pub fn next_redirect(input: &str) -> Vec<String> {
    let mut locations = vec![login_location(input)];
    if let Some(next) = next::from_query(Some(input)) {
        locations.push(login_location(&next));
    }
    let redirect = next::login_redirect("/login", input);
    assert_same_origin(&redirect);
    let (_, query) = redirect
        .split_once('?')
        .expect("a login redirect has a query");
    assert_eq!(
        next::from_query(Some(query)).as_deref(),
        Some(input),
        "next does not survive the login redirect: {redirect:?}"
    );
    locations.push(redirect);
    locations
}

/// The `Location` of a login whose request had `next` (default `/`),
/// after checking `next` against the rules of [`is_safe_next`].
fn login_location(next: &str) -> String {
    if is_safe_next(next) {
        let mut chars = next.chars();
        assert_eq!(chars.next(), Some('/'), "{next:?}");
        assert!(!matches!(chars.next(), Some('/' | '\\')), "{next:?}");
        assert!(!next.contains('\\'), "{next:?}");
        assert!(
            !next.chars().any(|c| c.is_control() || c.is_whitespace()),
            "{next:?}"
        );
        assert!(next.len() <= MAX_NEXT_LEN, "{next:?}");
    }
    // As in `Auth::login_user`.
    let location = next::location(next::safe_or(Some(next), "/"));
    assert_same_origin(&location);
    assert!(
        location.parse::<Uri>().is_ok(),
        "Location is not a URI reference: {location:?}"
    );
    location
}

/// Asserts that `location` is a valid header value and, read as a URI, has
/// no scheme and no authority.
fn assert_same_origin(location: &str) {
    assert!(
        HeaderValue::from_str(location).is_ok(),
        "Location is not a header value: {location:?}"
    );
    if let Ok(uri) = location.parse::<Uri>() {
        assert!(
            uri.scheme().is_none() && uri.authority().is_none(),
            "Location leaves the site: {location:?}"
        );
    }
}

/// Presents `input` as a `_remember` cookie to [`RevocableRemember::consume`]
/// over a store that knows every selector, and checks the crate-private
/// `parse` through it: a token is looked up (and, its validator matching,
/// rotated) exactly when it is 45 characters, `selector.validator`, each
/// part the canonical base64url of 16 bytes; anything else is rejected as
/// malformed before the store is asked. Returns whether it was accepted.
pub fn remember_token(input: &str) -> bool {
    let validator = canonical_token(input);
    let store = ProbeStore {
        validator_hash: Sha256::digest(validator.unwrap_or_default()).into(),
        asked: Mutex::new(None),
        rotated_from: Mutex::new(None),
    };
    let tokens = RevocableRemember::new(store);
    let consumed = tokens
        .consume(input, UNIX_EPOCH + Duration::from_secs(1_000))
        .now_or_never()
        .expect("the probe store is never pending")
        .expect("the probe store never fails");
    let store = tokens.store();
    let asked = store.asked.lock().unwrap().take();
    match validator {
        Some(validator) => {
            assert_eq!(input.len(), TOKEN_LEN, "{input:?}");
            assert_eq!(asked.as_deref(), Some(&input[..22]), "{input:?}");
            assert_eq!(
                *store.rotated_from.lock().unwrap(),
                Some(Sha256::digest(validator).into()),
                "the validator decoded to other bytes: {input:?}"
            );
            let Consumed::Rotated { token, .. } = consumed else {
                panic!("the matching validator was not rotated: {consumed:?}");
            };
            assert!(token.starts_with(&input[..23]), "{token:?}");
            assert!(canonical_token(&token).is_some(), "{token:?}");
        }
        None => {
            assert_eq!(
                asked, None,
                "a malformed token reached the store: {input:?}"
            );
            assert_eq!(consumed, Consumed::Rejected("malformed token"), "{input:?}");
        }
    }
    validator.is_some()
}

/// The validator's bytes if `token` is two canonical 22-character base64url
/// encodings of 16 bytes around a `.`; read here without `revocable::parse`.
fn canonical_token(token: &str) -> Option<[u8; 16]> {
    let (selector, validator) = token.split_once('.')?;
    let decode = |part: &str| -> Option<[u8; 16]> {
        let bytes: [u8; 16] = URL_SAFE_NO_PAD.decode(part).ok()?.try_into().ok()?;
        (part.len() == 22 && URL_SAFE_NO_PAD.encode(bytes) == part).then_some(bytes)
    };
    decode(selector)?;
    decode(validator)
}

/// A remember store that has a token under every selector, whose validator
/// hash is `validator_hash`, and records what it was asked.
struct ProbeStore {
    validator_hash: [u8; 32],
    asked: Mutex<Option<String>>,
    rotated_from: Mutex<Option<[u8; 32]>>,
}

impl RememberStore for ProbeStore {
    async fn insert(&self, _token: &StoredToken) -> Result<(), StoreError> {
        Ok(())
    }

    async fn find(&self, selector: &str) -> Result<Option<StoredToken>, StoreError> {
        *self.asked.lock().unwrap() = Some(selector.to_owned());
        Ok(Some(StoredToken {
            selector: selector.to_owned(),
            validator_hash: self.validator_hash,
            previous_hash: None,
            rotated_at_ms: None,
            confirmed: false,
            user_id: "\"fuzz\"".to_owned(),
            fingerprint: String::new(),
            series: "series".to_owned(),
            days: 30,
            created_at: 0,
            last_used_at: 0,
            expires_at: u64::MAX,
            device: String::new(),
        }))
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<bool, StoreError> {
        *self.rotated_from.lock().unwrap() = Some(*rotation.expected);
        Ok(true)
    }

    async fn confirm(&self, _selector: &str, _current: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn revoke(&self, _selector: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn revoke_series(&self, _user_id: &str, _series: &str) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn revoke_user(&self, _user_id: &str) -> Result<u64, StoreError> {
        Ok(1)
    }

    async fn list(&self, _user_id: &str) -> Result<Vec<StoredToken>, StoreError> {
        Ok(Vec::new())
    }

    async fn purge_expired(&self, _now: u64) -> Result<u64, StoreError> {
        Ok(0)
    }
}
