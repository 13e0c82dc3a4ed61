//! The account page's "Where you're logged in" over HTTP, on one instance
//! with its own SQLite file: the list, logging one browser out, copies of
//! session cookies after a logout, and bad forms; and, on Redis, the page
//! while the store is down.

use crate::support::demo as demo_support;

use std::time::{Duration, Instant};

use crate::support::backend;
use crate::support::outage::Proxy;
use demo_support::*;
use reqwest::header::CONTENT_TYPE;
use reqwest::{StatusCode, Url};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

#[tokio::test]
async fn the_account_page_lists_every_browser_and_logs_one_out() {
    let demo = start().await;
    let laptop = Browser::with_user_agent(&demo, FIREFOX);
    laptop.log_in("susan", "hello", true).await;
    let phone = Browser::with_user_agent(&demo, SAFARI);
    phone.log_in("susan", "hello", true).await;
    let unremembered = Browser::new(&demo);
    unremembered.log_in("susan", "hello", false).await;
    let david = Browser::new(&demo);
    david.log_in("david", "bye", true).await;

    // Every browser of susan, remembered or not; david's are not hers.
    let (status, page) = text(laptop.get("/account").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Where you're logged in"), "{page}");
    let rows = session_rows(&page);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let firefox = rows.iter().find(|row| row.device == "Firefox on Linux");
    let safari = rows.iter().find(|row| row.device == "Safari on iPhone");
    let (Some(firefox), Some(safari)) = (firefox, safari) else {
        panic!("both devices listed: {rows:?}");
    };
    assert!(firefox.current && !safari.current, "{rows:?}");
    assert_eq!(rows.iter().filter(|row| row.current).count(), 1);
    assert_eq!(rows.iter().filter(|row| row.remembered).count(), 2);
    assert!(page.contains("Logged in just now, last active just now"));
    // The page shows session ids, never the cookies' secrets.
    for name in ["session", "_remember"] {
        let cookie = laptop.cookie(name).expect("a cookie");
        for part in cookie.split('.').filter(|part| part.len() > 8) {
            assert!(!page.contains(part), "{name} cookie in the page");
        }
    }

    // Log the phone out: its session and its remember cookie stop working.
    let phone_copy = phone.session_copy(&demo);
    let phone_restarted = phone.restarted(&demo);
    let response = laptop.end_session(&safari.id).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    phone.assert_sent_to_login("/").await;
    phone_copy.assert_sent_to_login("/").await;
    phone_restarted.assert_sent_to_login("/").await;
    let (_, page) = text(laptop.get("/account").await).await;
    assert!(page.contains("That browser is logged out"), "{page}");
    let rows = session_rows(&page);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|row| row.id != safari.id), "{rows:?}");

    // Again: nothing left to end.
    let response = laptop.end_session(&safari.id).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let (_, page) = text(laptop.get("/account").await).await;
    assert!(page.contains("already logged out"), "{page}");

    // Logging this browser out from its own row is a logout, copies included.
    let laptop_copy = laptop.session_copy(&demo);
    let response = laptop.end_session(&firefox.id).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    assert_eq!(laptop.cookie("_remember"), None);
    laptop.assert_sent_to_login("/").await;
    laptop_copy.assert_sent_to_login("/").await;

    // The others are untouched.
    unremembered.assert_home("susan").await;
    let rows = unremembered.sessions().await;
    assert!(rows.len() == 1 && rows[0].current, "{rows:?}");
    david.assert_home("david").await;
    david.restarted(&demo).assert_home("david").await;
}

#[tokio::test]
async fn a_copied_session_cookie_is_refused_after_logout() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    browser.log_in("susan", "hello", false).await;
    let copy = browser.session_copy(&demo);
    copy.assert_home("susan").await;
    let other = Browser::new(&demo);
    other.log_in("susan", "hello", false).await;

    // The header's log-out button.
    let response = browser.post("/logout", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    browser.assert_sent_to_login("/").await;
    copy.assert_sent_to_login("/").await;
    copy.assert_sent_to_login("/account").await;
    // Only that browser's session ended.
    other.assert_home("susan").await;
    let rows = other.sessions().await;
    assert!(rows.len() == 1 && rows[0].current, "{rows:?}");
}

/// Whatever comes in the "Log out" form, the answer is the page again (a
/// `400` with a message) or the usual redirect, never a `5xx`, and only the
/// session the form names, if it is the user's own, ends.
#[tokio::test]
async fn bad_log_out_forms_are_never_server_errors_and_end_nothing() {
    let demo = start().await;
    let laptop = Browser::new(&demo);
    laptop.log_in("susan", "hello", true).await;
    let phone = Browser::new(&demo);
    phone.log_in("susan", "hello", true).await;
    let david = Browser::new(&demo);
    david.log_in("david", "bye", true).await;
    let davids = david.own_session().await;
    let before = laptop.sessions().await;
    assert_eq!(before.len(), 2, "{before:?}");
    let phones = before.iter().find(|row| !row.current).expect("the phone");

    let bodies: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "Please choose"),
        (b"session=".to_vec(), "Please choose"),
        (b"other=1".to_vec(), "Please choose"),
        (
            format!("session={}&session={}", phones.id, phones.id).into_bytes(),
            "garbled",
        ),
        (b"session=%ff%fe".to_vec(), "not a browser in the list"),
        (
            b"session=..%2F..%2Fetc".to_vec(),
            "not a browser in the list",
        ),
        (b"session=<script>".to_vec(), "not a browser in the list"),
        (b"%%%&&&===".to_vec(), "Please choose"),
        (b"\xff\xfe\x00\x01session=x".to_vec(), "Please choose"),
        (
            format!("session={}", "a".repeat(100_000)).into_bytes(),
            "not a browser in the list",
        ),
    ];
    for (body, message) in bodies {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let (status, page) = text(laptop.post("/account/sessions/end", body).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{shown:?}");
        assert!(page.contains(message), "{shown:?}: {page}");
        assert!(page.contains("Where you're logged in"), "{shown:?}");
    }
    // Not a form at all.
    let response = laptop
        .client
        .post(laptop.url("/account/sessions/end"))
        .header(CONTENT_TYPE, "application/json")
        .body(format!("{{\"session\": \"{}\"}}", phones.id))
        .send()
        .await
        .expect("a response");
    assert!(response.status().is_client_error(), "{}", response.status());
    // Ids that are not susan's own sessions: well formed, and end nothing.
    for id in [
        davids.id.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        "not-a-session",
    ] {
        let response = laptop.end_session(id).await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
        let (_, page) = text(laptop.get("/account").await).await;
        assert!(page.contains("already logged out"), "{id}: {page}");
    }
    // A GET of the form's address goes to the account page.
    let response = laptop.get("/account/sessions/end").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");

    // Nothing ended.
    assert_eq!(laptop.sessions().await, before);
    phone.assert_home("susan").await;
    phone.restarted(&demo).assert_home("susan").await;
    david.assert_home("david").await;
    david.restarted(&demo).assert_home("david").await;
}

/// The form needs a fresh login, as the account page does: an anonymous
/// browser, or a copy of the remember cookie, cannot log anyone out.
#[tokio::test]
async fn the_log_out_form_needs_a_fresh_login() {
    let demo = start().await;
    let laptop = Browser::new(&demo);
    laptop.log_in("susan", "hello", true).await;
    let phone = Browser::new(&demo);
    phone.log_in("susan", "hello", false).await;
    let phones = phone.own_session().await;

    let anonymous = Browser::new(&demo);
    let response = anonymous.end_session(&phones.id).await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/account/sessions/end",
    );
    let restored = laptop.restarted(&demo);
    restored.assert_home("susan").await;
    let response = restored.end_session(&phones.id).await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/account/sessions/end",
    );
    phone.assert_home("susan").await;
}

/// With its store (Redis) down, the account page still renders, with a
/// message in place of the list, and the "Log out" form says it could not
/// log the browser out (a `503` with the page), ending nothing. Once Redis
/// is back, both work again.
#[tokio::test]
async fn the_account_page_renders_while_the_store_is_down() {
    let Some(redis_url) = backend::redis_url() else {
        return;
    };
    let mut url: Url = redis_url.parse().expect("a Redis URL");
    let Some(host) = url.host_str().map(str::to_owned) else {
        backend::skip("the Redis URL has no host, which the proxy needs");
        return;
    };
    let mut proxy = Proxy::start((host, url.port().unwrap_or(6379)), 0).await;
    url.set_host(Some("127.0.0.1")).expect("a host");
    url.set_port(Some(proxy.port)).expect("a port");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let prefix = format!("latch-test-{}:", backend::random_hex());
    let demo = serve(app::Config {
        secret_key: axum_latch::SecretKey::generate().expect("a random key"),
        database_url: format!("sqlite://{}", dir.path().join("users.db").display()),
        redis_url: Some(url.to_string()),
        redis_prefix: prefix.clone(),
        remember_grace: axum_latch::remember::DEFAULT_GRACE,
        microdot_compat: None,
    })
    .await;
    let scenario = async {
        let laptop = Browser::new(&demo);
        laptop.log_in("susan", "hello", false).await;
        let phone = Browser::new(&demo);
        phone.log_in("susan", "hello", false).await;
        let phones = phone.own_session().await;

        proxy.stop().await;
        let (status, page) = text(laptop.get("/account").await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("cannot be shown just now"), "{page}");
        assert!(page.contains("Change your password"), "{page}");
        let (status, page) = text(laptop.end_session(&phones.id).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(page.contains("could not be logged out just now"), "{page}");
        phone.assert_home("susan").await;

        proxy.restart().await;
        let deadline = Instant::now() + SOON;
        while text(laptop.get("/account").await)
            .await
            .1
            .contains("cannot be shown")
        {
            assert!(Instant::now() < deadline, "the list is still missing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(laptop.sessions().await.len(), 2);
        let response = laptop.end_session(&phones.id).await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
        phone.assert_sent_to_login("/").await;
    };
    backend::run_then_clean(scenario, async {
        let mut connection = backend::redis_manager(&redis_url).await;
        backend::redis_delete(&mut connection, &format!("{prefix}*")).await;
    })
    .await;
}
