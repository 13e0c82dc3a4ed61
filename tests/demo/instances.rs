//! Two instances of the demo that share `SECRET_KEY`, the user database and
//! the store of remember-me tokens and sessions share logins, and hear of
//! each other's logouts: each scenario serves the demo twice, on two ports,
//! once with that store on Redis and once on PostgreSQL: the kit's servers
//! (`TEST_REDIS_URL`, `TEST_POSTGRES_URL`, or its own); with neither, a
//! test says `SKIPPED`.

use crate::support::demo as demo_support;

use std::time::Duration;

use crate::support::backend;
use demo_support::*;
use futures_util::FutureExt as _;
use reqwest::StatusCode;

/// The secret key both instances share.
const SHARED_KEY: &str = "two demo instances share this key, which is long enough";

fn config(database_url: &str, redis_url: Option<&str>, prefix: &str) -> app::Config {
    app::Config {
        secret_key: axum_latch::SecretKey::new(SHARED_KEY).expect("a long key"),
        database_url: database_url.to_owned(),
        redis_url: redis_url.map(str::to_owned),
        redis_prefix: prefix.to_owned(),
        // No grace window: a rotated-away cookie is theft from the next second.
        remember_grace: Duration::ZERO,
        microdot_compat: None,
    }
}

/// Waits until the clock has moved past the second a token was rotated in,
/// so that the cookie it replaced is out of the (zero) grace window.
async fn past_the_grace_window() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn two_instances_share_logins_on_redis() {
    on_redis(share_logins).await;
}

#[tokio::test]
async fn two_instances_share_logins_on_postgres() {
    on_postgres(share_logins).await;
}

#[tokio::test]
async fn a_logout_on_one_instance_refuses_copies_on_both_on_redis() {
    on_redis(logout_refuses_copies).await;
}

#[tokio::test]
async fn a_logout_on_one_instance_refuses_copies_on_both_on_postgres() {
    on_postgres(logout_refuses_copies).await;
}

#[tokio::test]
async fn a_browser_logged_out_from_the_account_page_is_out_on_both_on_redis() {
    on_redis(account_page_ends_a_browser_everywhere).await;
}

#[tokio::test]
async fn a_browser_logged_out_from_the_account_page_is_out_on_both_on_postgres() {
    on_postgres(account_page_ends_a_browser_everywhere).await;
}

/// Two instances with the remember-me tokens and the sessions on Redis
/// (under a prefix of the test's own), the users in one SQLite file both
/// open; the prefix's keys are deleted afterwards, pass or fail.
async fn on_redis(scenario: impl AsyncFnOnce(&Demo, &Demo)) {
    let Some(redis_url) = backend::redis_url() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("users.db").display());
    let prefix = format!("latch-test-{}:", backend::random_hex());
    let one = serve(config(&database_url, Some(&redis_url), &prefix)).await;
    let two = serve(config(&database_url, Some(&redis_url), &prefix)).await;
    backend::run_then_clean(scenario(&one, &two), clean_redis(&redis_url, &prefix)).await;
}

/// Two instances with users, tokens and sessions in a PostgreSQL schema of
/// the test's own, dropped afterwards.
async fn on_postgres(scenario: impl AsyncFnOnce(&Demo, &Demo)) {
    let Some(postgres_url) = backend::postgres_url() else {
        return;
    };
    let schema = backend::PgSchema::create(&postgres_url, 1).await;
    let name = &schema.name;
    let separator = if postgres_url.contains('?') { '&' } else { '?' };
    let database_url = format!("{postgres_url}{separator}options=-c%20search_path%3D{name}");
    let one = serve(config(&database_url, None, "")).await;
    let two = serve(config(&database_url, None, "")).await;
    let outcome = std::panic::AssertUnwindSafe(scenario(&one, &two))
        .catch_unwind()
        .await;
    drop((one, two));
    schema.drop_schema().await;
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

/// What two instances sharing a key, users and a remember store must agree on.
async fn share_logins(one: &Demo, two: &Demo) {
    // A login on one is valid on the other. (Cookies are per host, not per
    // port, so one browser talks to both instances as it would through a
    // load balancer.)
    let susan = Browser::new(one);
    susan.log_in("susan", "hello", true).await;
    susan.assert_home("susan").await;
    Browser::with_jar(two, susan.jar.clone())
        .assert_home("susan")
        .await;
    let first = susan.cookie("_remember").expect("a remember cookie");

    // A token rotated on one is rotated for the other: after a restart the
    // browser comes back through `one`, which rotates the cookie ...
    let restarted = Browser::with_remember(one, &first);
    restarted.assert_home("susan").await;
    let second = restarted.cookie("_remember").expect("a rotated cookie");
    assert_ne!(second, first, "the remember cookie is rotated on use");
    // ... and the next restart goes to `two`, which takes the new cookie.
    let again = Browser::with_remember(two, &second);
    again.assert_home("susan").await;
    let third = again.cookie("_remember").expect("rotated again");
    assert_ne!(third, second);

    // A theft seen on one revokes on both: an old copy replayed on `two` ...
    past_the_grace_window().await;
    let thief = Browser::with_remember(two, &first);
    thief.assert_sent_to_login("/").await;
    // ... and the real browser's newest cookie is dead on `one` as well.
    Browser::with_remember(one, &third)
        .assert_sent_to_login("/")
        .await;
    Browser::with_remember(two, &third)
        .assert_sent_to_login("/")
        .await;

    // The account page on either instance lists the browsers logged in on both.
    let laptop = Browser::new(one);
    laptop.log_in("david", "bye", true).await;
    let phone = Browser::new(two);
    phone.log_in("david", "bye", true).await;
    let rows = laptop.sessions().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let on_two = Browser::with_jar(two, laptop.jar.clone()).sessions().await;
    assert_eq!(on_two, rows);

    // "Log out everywhere" on one ends the sessions on the other. (Each
    // check has a jar of its own: a refused session is cleared from the jar
    // that sent it.)
    let phone_copy = phone.session_copy(two);
    let response = laptop.post("/account/logout-everywhere", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    Browser::with_jar(one, phone_copy.jar.clone())
        .assert_sent_to_login("/")
        .await;
    phone.assert_sent_to_login_soon("/").await;
    Browser::with_jar(two, laptop.jar.clone())
        .assert_home("david")
        .await;
    let rows = laptop.sessions().await;
    assert!(rows.len() == 1 && rows[0].current, "{rows:?}");
}

/// A copy of a session cookie taken before a logout (the header's button,
/// `POST /logout`) is refused afterwards: at once on the instance that
/// logged out, and within [`SOON`] on the other, whichever one the browser
/// used.
async fn logout_refuses_copies(one: &Demo, two: &Demo) {
    for (here, there) in [(one, two), (two, one)] {
        let browser = Browser::new(here);
        browser.log_in("susan", "hello", false).await;
        // Two copies: a refused session is cleared from the jar that sent it.
        let copy_here = browser.session_copy(here);
        let copy_there = browser.session_copy(there);
        copy_here.assert_home("susan").await;
        copy_there.assert_home("susan").await;

        let response = browser.post("/logout", "").await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/");
        copy_here.assert_sent_to_login("/").await;
        copy_there.assert_sent_to_login_soon("/").await;
    }
    // A remembered browser's copies too: the session and the remember cookie.
    let browser = Browser::new(one);
    browser.log_in("david", "bye", true).await;
    let copy = browser.session_copy(one);
    let remember = browser.cookie("_remember").expect("a remember cookie");
    let response = browser.post("/logout", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    Browser::with_jar(two, copy.jar.clone())
        .assert_sent_to_login_soon("/")
        .await;
    Browser::with_remember(two, &remember)
        .assert_sent_to_login("/")
        .await;
}

/// The account page on one instance logs out a browser that uses the
/// other: it is out on both within [`SOON`], its remember cookie with it,
/// and every instance lists what is left.
async fn account_page_ends_a_browser_everywhere(one: &Demo, two: &Demo) {
    let laptop = Browser::new(one);
    laptop.log_in("susan", "hello", false).await;
    let phone = Browser::new(two);
    phone.log_in("susan", "hello", true).await;
    // Copies of its cookies, each in a jar of its own: a refused session is
    // cleared from the jar that sent it.
    let phone_restarted = phone.restarted(two);
    let phone_on_one = phone.session_copy(one);
    let rows = laptop.sessions().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let phones = rows.iter().find(|row| !row.current).expect("the phone");
    assert!(phones.remembered, "{rows:?}");

    let response = laptop.end_session(&phones.id).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    // On the instance that ended it, at once; on the other, soon.
    phone_on_one.assert_sent_to_login("/").await;
    phone.assert_sent_to_login_soon("/").await;
    phone_restarted.assert_sent_to_login("/").await;
    for demo in [one, two] {
        let rows = Browser::with_jar(demo, laptop.jar.clone()).sessions().await;
        assert!(rows.len() == 1 && rows[0].current, "{rows:?}");
    }
    laptop.assert_home("susan").await;
}

async fn clean_redis(url: &str, prefix: &str) {
    let mut connection = backend::redis_manager(url).await;
    backend::redis_delete(&mut connection, &format!("{prefix}*")).await;
}
