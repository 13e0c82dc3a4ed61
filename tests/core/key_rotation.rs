//! Key rotation end to end, through the `Session` and `Login` layers.
//!
//! Users log in under key A. The app then runs with a `KeyRing` of current
//! key B and previous key A: the old cookies still log in, and at their next
//! renewal come back signed with B, with the `_auth` fingerprint of the
//! user's `auth_hash` made with B too. Last, the app runs with B alone: what
//! A signed is anonymous (removing a key ends the sessions it signed), what
//! B signed works.
//!
//! `tests/core/session.rs` has the same rules for the session cookie alone.

use crate::support;

use axum::http::{HeaderValue, StatusCode};
use axum::Router;
use axum_latch::{KeyRing, SecretKey, Session};
use serde_json::json;
use support::attack::*;
use support::jwt::{self, Claims};
use support::KEY;

/// Key A, the old one, is the test key (what `fixtures` decodes with).
const A: &str = KEY;
/// Key B, the new one.
const B: &str = "the new key of the key rotation tests, long enough for latch";

fn secret(key: &str) -> SecretKey {
    SecretKey::new(key).expect("the test keys are long enough")
}

/// The claims of `token` if it is signed with `key` (and only then).
fn signed_with(token: &str, key: &str) -> Option<Claims> {
    jwt::decode(token, &[key]).ok()
}

/// What latch puts in `_auth` for `auth_hash` under `key`: the first 16
/// bytes of an HMAC-SHA256 with a context string, in base64url. The test's
/// own oracle, checked against a real login below.
fn fingerprint(key: &str, auth_hash: &str) -> String {
    let data = [
        b"latch auth_hash fingerprint\0".as_slice(),
        auth_hash.as_bytes(),
    ]
    .concat();
    b64(&mac(key, &data)[..16])
}

const ALICE_HASH: &str = "alice's password hash";

/// The apps of a rotation over one user table, and alice's login under A.
struct Rotation {
    /// Current key A.
    a: Fixtures,
    /// Current key B, previous key A.
    during: Router,
    /// Key B alone.
    after: Router,
}

async fn rotation() -> Rotation {
    let users = Users::new();
    let app = |ring: KeyRing| app_with(&users, login_layer(&users), Session::new(ring));
    let before = app(KeyRing::new(secret(A)));
    let a = fixtures(&before).await;
    for (name, token) in [("session", &a.session), ("_remember", &a.remember)] {
        assert!(signed_with(token, B).is_none(), "{name}: signed with A");
    }
    assert_eq!(
        a.session_claims["_auth"],
        fingerprint(A, ALICE_HASH),
        "the fingerprint oracle agrees with latch"
    );
    assert_eq!(a.remember_claims["_auth"], fingerprint(A, ALICE_HASH));
    Rotation {
        a,
        during: app(KeyRing::new(secret(B)).with_previous(secret(A))),
        after: app(KeyRing::new(secret(B))),
    }
}

/// Sends `cookies` to `/private`: the status, and the session and remember
/// cookies set in reply.
async fn private(
    app: &Router,
    cookies: &[HeaderValue],
) -> (StatusCode, Option<String>, Option<String>) {
    let response = send(app, "GET", "/private", cookies).await;
    let session = issued(&response, "session");
    let remember = issued(&response, "_remember");
    (response.status(), session, remember)
}

#[tokio::test]
async fn a_session_of_the_old_key_logs_in_and_is_reissued_with_the_new_key() {
    let r = rotation().await;
    let (status, session, _) = private(&r.during, &[header("session", &r.a.session)]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the old key's session still logs in"
    );
    let session = session.expect("and is re-issued at once");
    let claims = signed_with(&session, B).expect("signed with B");
    assert_eq!(
        claims["_auth"],
        fingerprint(B, ALICE_HASH),
        "_auth moves to B"
    );
    for kept in ["_user_id", "_fresh", "_login_at", "theme"] {
        assert_eq!(claims[kept], r.a.session_claims[kept], "{kept} is kept");
    }

    // Signed with the current key: not re-issued again.
    let (status, again, _) = private(&r.during, &[header("session", &session)]).await;
    assert_eq!((status, again), (StatusCode::OK, None));

    // Once A is gone, the re-issued session still logs in, freshly.
    let outcome = assert_alice(&r.after, &[header("session", &session)], true, "B alone").await;
    assert_eq!(outcome.data, (StatusCode::OK, "dark".to_owned()));
}

#[tokio::test]
async fn a_stateless_remember_cookie_of_the_old_key_is_reissued_with_the_new_key() {
    let r = rotation().await;
    let (status, session, remember) =
        private(&r.during, &[header("_remember", &r.a.remember)]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the old key's remember cookie logs in"
    );
    let session = signed_with(&session.expect("a session for the restored login"), B)
        .expect("the new session is signed with B");
    assert_eq!(session["_auth"], fingerprint(B, ALICE_HASH));
    assert_eq!(session["_fresh"], false, "a restored login is not fresh");
    let remember = remember.expect("the remember cookie is re-issued");
    let claims = signed_with(&remember, B).expect("signed with B");
    assert_eq!(claims["user_id"], json!(1));
    assert_eq!(claims["days"], r.a.remember_claims["days"]);

    // Once A is gone, the re-issued remember cookie still logs in.
    assert_alice(
        &r.after,
        &[header("_remember", &remember)],
        false,
        "the re-issued remember cookie, with B alone",
    )
    .await;
    assert_eq!(
        claims["_auth"],
        fingerprint(B, ALICE_HASH),
        "the remember cookie's _auth moves to B"
    );
}

#[tokio::test]
async fn removing_the_old_key_ends_what_it_signed() {
    let r = rotation().await;
    assert_all_anonymous(
        &r.after,
        vec![
            Case::empty(
                "the session signed with A",
                vec![header("session", &r.a.session)],
                Some("session"),
            )
            .because(reasons::SIGNATURE),
            Case::empty(
                "the remember cookie signed with A",
                vec![header("_remember", &r.a.remember)],
                Some("_remember"),
            )
            .because(reasons::SIGNATURE),
            Case {
                name: "a session signed with B over A's fingerprint".into(),
                cookies: vec![header("session", &jwt::encode(&r.a.session_claims, B))],
                // The token is good; only the login in it is not.
                deleted: None,
                data: Some("dark"),
                reason: Some(reasons::AUTH_HASH_CHANGED),
            },
        ],
    )
    .await;

    // What B signs works: a new login with B alone.
    let response = send(&r.after, "POST", "/login/1", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    for name in ["session", "_remember"] {
        let token = issued(&response, name).expect("both cookies are set");
        let claims = signed_with(&token, B).expect("signed with B");
        assert_eq!(claims["_auth"], fingerprint(B, ALICE_HASH), "{name}");
        let fresh = name == "session";
        assert_alice(&r.after, &[header(name, &token)], fresh, name).await;
    }
}

/// The test app with revocable remember-me tokens in `store`, for a ring
/// of keys: every app made shares the store and the users.
#[cfg(feature = "memory")]
fn revocable_app(store: &axum_latch::stores::MemoryStore) -> impl Fn(KeyRing) -> axum::Router {
    let users = Users::new();
    let store = store.clone();
    move |ring: KeyRing| {
        let tokens = axum_latch::remember::RevocableRemember::new(store.clone());
        app_with(
            &users,
            login_layer(&users).remember_tokens(tokens),
            Session::new(ring),
        )
    }
}

#[cfg(feature = "memory")]
#[tokio::test]
async fn a_revocable_remember_cookie_of_the_old_key_is_reissued_under_the_new_key() {
    let store = axum_latch::stores::MemoryStore::new();
    let app = revocable_app(&store);
    let before = app(KeyRing::new(secret(A)));
    let response = send(&before, "POST", "/login/1", &[]).await;
    let old = issued(&response, "_remember").expect("a remember cookie");
    let during = app(KeyRing::new(secret(B)).with_previous(secret(A)));
    let after = app(KeyRing::new(secret(B)));

    let (status, _, new) = private(&during, &[header("_remember", &old)]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the old key's remember cookie logs in"
    );
    let new = new.expect("a new remember cookie");
    assert_ne!(
        new.split('.').next(),
        old.split('.').next(),
        "a new token, made for the new key's fingerprint"
    );
    assert_eq!(store.len(), 1, "the old key's token is revoked");

    // With A gone, the new cookie still logs in; the old one never will.
    let (status, _, _) = private(&after, &[header("_remember", &new)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = private(&after, &[header("_remember", &old)]).await;
    assert_ne!(status, StatusCode::OK);
}

/// Removing a key ends the revocable remember cookies made under it too:
/// the store keeps a fingerprint made with that key, which no longer
/// matches (as `KeyRing`'s docs say).
#[cfg(feature = "memory")]
#[tokio::test]
async fn removing_the_old_key_ends_a_revocable_remember_cookie_made_under_it() {
    let store = axum_latch::stores::MemoryStore::new();
    let app = revocable_app(&store);
    let before = app(KeyRing::new(secret(A)));
    let response = send(&before, "POST", "/login/1", &[]).await;
    let old = issued(&response, "_remember").expect("a remember cookie");
    assert_eq!(store.len(), 1);

    let (status, _, _) = private(&before, &[header("_remember", &old)]).await;
    assert_eq!(status, StatusCode::OK, "control: it logs in under A");
    let response = send(&before, "POST", "/login/1", &[]).await;
    let unused = issued(&response, "_remember").expect("a remember cookie");

    // A is removed at once, with no rotation in between.
    let after = app(KeyRing::new(secret(B)));
    let (status, session, _) = private(&after, &[header("_remember", &unused)]).await;
    assert_ne!(status, StatusCode::OK, "refused under B alone");
    assert_eq!(session, None, "no login made from it");
}
