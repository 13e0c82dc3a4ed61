//! Attack: replaying a copied `_remember` cookie (taken from a shared
//! computer, a backup, malware) after its owner logged out, or after it was
//! rotated.
//!
//! What latch promises depends on the kind of token:
//!
//! - `StatelessRemember` (the default) keeps no server state: a copy works
//!   until it expires or the user's `auth_hash` changes. Logging out
//!   deletes the owner's cookie but cannot revoke the copy; a password
//!   change (`Auth::update_user`, or any change of `auth_hash`) does.
//! - `RevocableRemember` over a store revokes the token on logout, so a copy
//!   fails at once; and a copy replayed after the real cookie rotated (and
//!   the owner's browser confirmed the new one) is theft, which revokes
//!   every remembered login of the user.
//!
//! These are the short versions; the full suite of revocable remember-me
//! (grace window, devices, store faults, the theft event) is
//! `tests/remember/revocable_login.rs`.

use crate::support;

use axum::http::StatusCode;
use axum::Router;
use axum_latch::Session;
use support::attack::*;
use support::{is_removal, key, Client, TestResponse};

fn stateless_app(users: &Users) -> Router {
    app_with(users, login_layer(users), Session::new(key()))
}

#[cfg(feature = "memory")]
fn revocable_app(users: &Users, grace: std::time::Duration) -> Router {
    revocable_app_and_store(users, grace).0
}

/// The app with revocable tokens, and their store (clones share it).
#[cfg(feature = "memory")]
fn revocable_app_and_store(
    users: &Users,
    grace: std::time::Duration,
) -> (Router, axum_latch::stores::MemoryStore) {
    let store = axum_latch::stores::MemoryStore::new();
    let tokens = axum_latch::remember::RevocableRemember::new(store.clone()).grace(grace);
    let login = login_layer(users).remember_tokens(tokens);
    (app_with(users, login, Session::new(key())), store)
}

/// The owner's browser shows it holds its rotated `cookie` (what its next
/// request confirms), with the cookie's tag: base64url of the first 16
/// bytes of the SHA-256 of the validator.
#[cfg(feature = "memory")]
async fn confirm(store: &axum_latch::stores::MemoryStore, cookie: &str) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use sha2::{Digest, Sha256};

    let (_, validator) = cookie.split_once('.').expect("selector.validator");
    let hash = Sha256::digest(URL_SAFE_NO_PAD.decode(validator).expect("base64url"));
    let tag = URL_SAFE_NO_PAD.encode(&hash[..16]);
    let tokens = axum_latch::remember::RevocableRemember::new(store.clone());
    assert!(tokens
        .confirm(cookie, &tag)
        .await
        .expect("the store answers"));
}

/// Alice logs in with remember-me in her browser, and the attacker copies
/// her `_remember` cookie.
async fn alice_remembered(app: Router) -> (Client, String) {
    let mut alice = Client::new(app);
    let res = alice.post("/login/1").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let copy = alice.cookie("_remember").expect("a remember cookie");
    (alice, copy)
}

/// The attacker's browser, with nothing but the copy.
fn thief(alice: &Client, copy: &str) -> Client {
    let mut thief = alice.another_browser();
    thief.set_cookie("_remember", copy);
    thief
}

/// Asserts `res` is the anonymous answer of `/private`, deleting the
/// remember cookie it was sent.
fn assert_refused_and_deleted(res: &TestResponse, what: &str) {
    assert_eq!(res.status, StatusCode::FOUND, "{what}: anonymous");
    let deleted = res
        .set_cookie("_remember")
        .unwrap_or_else(|| panic!("{what}: the dead remember cookie is deleted"));
    assert!(is_removal(&deleted), "{what}: {deleted}");
}

#[tokio::test]
async fn a_copied_remember_cookie_replayed_after_logout() {
    // (kind, app, whether the copy still logs in after the owner's logout)
    #[cfg_attr(not(feature = "memory"), allow(unused_mut))]
    let mut kinds = vec![("stateless", stateless_app(&Users::new()), true)];
    #[cfg(feature = "memory")]
    kinds.push((
        "revocable",
        revocable_app(&Users::new(), axum_latch::remember::DEFAULT_GRACE),
        false,
    ));
    for (kind, app, copy_outlives_logout) in kinds {
        let (mut alice, copy) = alice_remembered(app).await;
        let res = alice.post("/logout").await;
        let deleted = res.set_cookie("_remember").expect("logout deletes it");
        assert!(is_removal(&deleted), "{kind}: {deleted}");
        assert!(!alice.has_cookie("_remember"));

        let res = thief(&alice, &copy).get("/private").await;
        if copy_outlives_logout {
            // The documented limit of stateless tokens: see the next test
            // for what ends the copy.
            assert_eq!(
                res.body, "private:alice",
                "{kind}: a stateless copy outlives the logout"
            );
        } else {
            assert_refused_and_deleted(&res, &format!("{kind}: the copy after logout"));
        }
    }
}

#[tokio::test]
async fn a_stateless_copy_fails_once_the_password_changes() {
    let users = Users::new();
    let (mut alice, copy) = alice_remembered(stateless_app(&users)).await;
    // The attacker uses the copy first: a session of their own.
    let mut attacker = thief(&alice, &copy);
    assert_eq!(attacker.get("/private").await.body, "private:alice");

    // Alice logs out, logs in again and changes her password.
    alice.post("/logout").await;
    alice.post("/login/1").await;
    let res = alice.post("/password/a-new-password-hash").await;
    assert_eq!(res.body, "password changed");

    assert_refused_and_deleted(
        &thief(&alice, &copy).get("/private").await,
        "the copy after the password change",
    );
    let res = attacker.get("/private").await;
    assert_eq!(
        res.status,
        StatusCode::FOUND,
        "the session the attacker made from the copy has ended too"
    );
    let res = attacker.get("/private").await;
    assert_refused_and_deleted(&res, "the remember cookie rotated for the attacker");
    assert_eq!(alice.get("/private").await.body, "private:alice");
}

#[tokio::test]
async fn a_stateless_copy_fails_once_the_auth_hash_changes_elsewhere() {
    let users = Users::new();
    let (alice, copy) = alice_remembered(stateless_app(&users)).await;
    // A password reset by an admin, say: not through this app's session.
    users.set_hash(1, "reset by an admin");
    assert_refused_and_deleted(
        &thief(&alice, &copy).get("/private").await,
        "the copy after the auth_hash changed",
    );
}

/// Short version of `revocable_login.rs`'s
/// `a_replayed_rotated_cookie_revokes_every_remembered_login_of_the_user`.
#[cfg(feature = "memory")]
#[tokio::test]
async fn a_replayed_rotated_revocable_cookie_revokes_every_remembered_login() {
    let (app, store) = revocable_app_and_store(&Users::new(), std::time::Duration::ZERO);
    let (mut alice, copy) = alice_remembered(app).await;
    // Alice's browser restarts: her cookie is used, and rotated.
    alice.remove_cookie("session");
    assert_eq!(alice.get("/private").await.body, "private:alice");
    let rotated = alice.cookie("_remember").expect("a remember cookie");
    assert_ne!(rotated, copy, "rotated");
    // Her next request shows she holds the new one.
    confirm(&store, &rotated).await;

    assert_refused_and_deleted(
        &thief(&alice, &copy).get("/private").await,
        "the copy replayed after its rotation",
    );
    // Theft revokes every remembered login of the user: hers too.
    alice.remove_cookie("session");
    assert_refused_and_deleted(
        &alice.get("/private").await,
        "the owner's rotated cookie after the theft",
    );
}
