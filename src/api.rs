//! Logins of API clients: a user found from the request's headers (a
//! bearer token, say) when it has no login in a cookie.
//!
//! With [`Login::request_loader`](crate::Login::request_loader), a request
//! that has neither a login in its session nor a remember-me cookie is
//! handed to the app's loader with its headers; the user it returns is the
//! request's user for [`CurrentUser`](crate::CurrentUser),
//! [`Login::required`](crate::Login::required) and the permission checks.
//! Such a login:
//!
//! - lasts for its request only: no cookie is set, nothing is written to
//!   the session, and the [registry](crate::registry) does not list it;
//! - is never fresh: [`FreshUser`](crate::FreshUser) and
//!   [`Login::fresh`](crate::Login::fresh) refuse it with `401` and
//!   `fresh_login_required`, since a token is not a password typed just now;
//! - is refused like any anonymous request when the loader finds no user:
//!   `401`, with `WWW-Authenticate: Bearer` (see
//!   [`Login::challenge`](crate::Login::challenge)), and
//!   `Bearer error="invalid_token"` when the request had an `Authorization`
//!   header;
//! - fails with a `500` only when the loader returns an error: a loader
//!   should answer `Ok(None)` for any token it cannot use (garbage, the
//!   wrong shape, too long, revoked), so that bad tokens are a `401`.
//!
//! Tokens are the app's: latch keeps none, so a new password, "log out
//! everywhere" ([`Auth::end_all_sessions`](crate::Auth::end_all_sessions))
//! and the [registry](crate::registry) leave them working. Revoke a user's
//! tokens where the app keeps them when it should (say so on the page).
//!
//! Keep tokens as hashes (SHA-256 of a random token of 128 bits or more
//! is enough: such a token cannot be guessed, so it needs no slow hash) and
//! look them up by hash: the comparison then reveals nothing through its
//! timing, as a comparison of the token itself might.
//!
//! ```
//! use axum::{routing::get, Json, Router};
//! use axum_latch::api::bearer_token;
//! use axum_latch::{CurrentUser, Login, SecretKey, Session, User};
//! use http::HeaderMap;
//! use std::convert::Infallible;
//!
//! #[derive(Clone)]
//! struct Account { id: u64, name: String }
//! impl User for Account {
//!     type Id = u64;
//!     fn id(&self) -> u64 { self.id }
//!     fn auth_hash(&self) -> &[u8] { b"" }
//! }
//!
//! async fn load(id: u64) -> Result<Option<Account>, Infallible> {
//!     Ok((id == 1).then(|| Account { id, name: "susan".into() }))
//! }
//!
//! // The app's own table of tokens, looked up by the token's SHA-256.
//! async fn account_of_token(token: &str) -> Option<Account> {
//!     (token == "a-long-random-token").then(|| Account { id: 1, name: "susan".into() })
//! }
//!
//! async fn me(CurrentUser(user): CurrentUser<Account>) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "id": user.id, "name": user.name }))
//! }
//!
//! let login = Login::new(load).request_loader(|headers: HeaderMap| async move {
//!     Ok::<_, Infallible>(match bearer_token(&headers) {
//!         Some(token) => account_of_token(token).await,
//!         None => None,
//!     })
//! });
//! let app: Router = Router::new()
//!     .route("/api/me", get(me)) // a cookie login or a token alike
//!     .layer(login)
//!     .layer(Session::new(SecretKey::generate()?));
//! # Ok::<(), axum_latch::KeyError>(())
//! ```

use http::header::AUTHORIZATION;
use http::HeaderMap;

pub use crate::login::request_loader::RequestLoader;

/// The longest bearer token [`bearer_token`] returns, in bytes: longer ones
/// are not tokens an app made, and are refused before any lookup.
pub const MAX_TOKEN: usize = 512;

/// The token of an `Authorization: Bearer <token>` header (RFC 6750), if
/// the request has exactly one such header and the token has the shape
/// the RFC gives it (letters, digits and `-._~+/`, then any `=`), at most
/// [`MAX_TOKEN`] bytes. The scheme's case does not matter.
///
/// ```
/// use axum_latch::api::bearer_token;
/// use http::{header::AUTHORIZATION, HeaderMap};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(AUTHORIZATION, "Bearer abc.DEF-123".parse().unwrap());
/// assert_eq!(bearer_token(&headers), Some("abc.DEF-123"));
///
/// headers.insert(AUTHORIZATION, "Basic c3VzYW46aGVsbG8=".parse().unwrap());
/// assert_eq!(bearer_token(&headers), None);
/// headers.insert(AUTHORIZATION, "Bearer <script>".parse().unwrap());
/// assert_eq!(bearer_token(&headers), None);
/// ```
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_matches(' ');
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty()
        && token.len() <= MAX_TOKEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    well_formed.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_a_well_formed_bearer_token_is_taken() {
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN));
        let too_long = format!("Bearer {}", "a".repeat(MAX_TOKEN + 1));
        let good: &[(&[u8], &str)] = &[
            (b"Bearer abc", "abc"),
            (b"bearer abc", "abc"),
            (b"BEARER a.b-c_d~e+f/g==", "a.b-c_d~e+f/g=="),
            (b"Bearer   abc  ", "abc"),
            (long.as_bytes(), &long[7..]),
        ];
        for (value, token) in good {
            assert_eq!(bearer_token(&with(&[value])), Some(*token), "{value:?}");
        }
        let bad: &[&[u8]] = &[
            b"",
            b"Bearer",
            b"Bearer ",
            b"Bearer ==",
            b"Bearer a b",
            b"Bearer a=b",
            b"Bearer \"abc\"",
            b"Bearer\tabc",
            b"Basic abc",
            b"Bearerabc",
            b"Token abc",
            b"Bearer \xe2\x82\xac",
            too_long.as_bytes(),
        ];
        for value in bad {
            assert_eq!(bearer_token(&with(&[value])), None, "{value:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
        assert_eq!(
            bearer_token(&with(&[b"Bearer abc", b"Bearer abc"])),
            None,
            "two Authorization headers: which one is meant cannot be told"
        );
    }
}
