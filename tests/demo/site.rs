//! The demo (`examples/login`) over real HTTP: each test serves the demo's
//! router on a free port with its own fresh SQLite file, and drives it with
//! `reqwest` clients that keep cookies as a browser does.

use crate::support::demo as demo_support;

use demo_support::*;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::StatusCode;

#[tokio::test]
async fn anonymous_home_redirects_to_login_with_next() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    browser.assert_sent_to_login("/").await;
    browser.assert_sent_to_login("/fresh").await;
    browser.assert_sent_to_login("/account").await;
    // Nothing was logged in, so nothing is stored.
    assert_eq!(browser.cookie("session"), None);
}

#[tokio::test]
async fn login_page_renders_the_form_and_keeps_next() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let (status, body) = text(browser.get("/login").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("<form method=\"post\" action=\"/login\">"),
        "{body}"
    );
    for field in [
        "name=\"username\"",
        "name=\"password\"",
        "type=\"password\"",
        "type=\"checkbox\" name=\"remember_me\"",
    ] {
        assert!(body.contains(field), "{field} missing: {body}");
    }
    assert!(
        !body.contains("checked"),
        "remember me starts unticked: {body}"
    );
    let (_, body) = text(browser.get("/login?next=/fresh").await).await;
    assert!(body.contains("action=\"/login?next=%2Ffresh\""), "{body}");
    // A `next` to another site is not carried into the form.
    let (_, body) = text(browser.get("/login?next=//evil.example/").await).await;
    assert!(body.contains("action=\"/login\""), "{body}");
    assert!(!body.contains("evil"), "{body}");
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_with_a_message() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    for (username, password) in [("susan", "bye"), ("susan", "Hello"), ("nobody", "hello")] {
        let response = browser
            .login("/login?next=/fresh", username, password, true)
            .await;
        assert!(
            set_cookies(&response).is_empty(),
            "no cookie for a failed login"
        );
        let (status, body) = text(response).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("That username and password do not match"),
            "{body}"
        );
        // The form comes back with what was typed (but not the password) and `next`.
        assert!(body.contains(&format!("value=\"{username}\"")), "{body}");
        assert!(!body.contains(&format!("value=\"{password}\"")), "{body}");
        assert!(body.contains("action=\"/login?next=%2Ffresh\""), "{body}");
        assert!(body.contains("name=\"remember_me\" checked"), "{body}");
    }
    browser.assert_sent_to_login("/").await;
}

#[tokio::test]
async fn what_was_typed_is_escaped_when_the_form_comes_back() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let typed = "\"><script>alert(1)</script>";
    let (status, body) = text(browser.login("/login", typed, "x", false).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(
        body.contains("&#34;&#62;&#60;script&#62;") || body.contains("&quot;&gt;&lt;script&gt;"),
        "{body}"
    );
}

#[tokio::test]
async fn garbage_missing_or_repeated_fields_are_never_server_errors() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"username=susan".to_vec(),
        b"password=hello".to_vec(),
        b"username=&password=".to_vec(),
        b"username=susan&password=".to_vec(),
        b"username=susan&username=susan&password=hello".to_vec(),
        b"username=susan&password=hello&password=hello".to_vec(),
        b"username=susan&password=hello&remember_me=on&remember_me=on".to_vec(),
        b"username=susan&password=hello&username=david&password=bye".to_vec(),
        b"%%%&&&===".to_vec(),
        b"username=%ff%fe&password=%c3%28".to_vec(),
        b"\xff\xfe\x00\x01username=susan".to_vec(),
        b"{\"username\":\"susan\",\"password\":\"hello\"}".to_vec(),
        format!("username={}&password=hello", "a".repeat(100_000)).into_bytes(),
        format!("username=susan&password={}", "a".repeat(100_000)).into_bytes(),
    ];
    for body in bodies {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(80)
            .collect::<String>();
        let response = browser.post("/login", body).await;
        let status = response.status();
        assert!(
            status == StatusCode::OK || status.is_client_error(),
            "{status} for {shown:?}"
        );
        assert!(set_cookies(&response).is_empty(), "logged in by {shown:?}");
        let body = response.text().await.expect("a body");
        assert!(
            body.contains("class=\"message error\""),
            "no message for {shown:?}: {body}"
        );
    }
    // A body that is not a form at all, and a repeated `next`.
    let response = browser
        .client
        .post(browser.url("/login?next=/a&next=//evil.example"))
        .header(CONTENT_TYPE, "application/json")
        .body("{\"username\": \"susan\"}")
        .send()
        .await
        .expect("a response");
    assert!(response.status().is_client_error(), "{}", response.status());
    // Cookies that are garbage make an anonymous request, not an error.
    let response = browser
        .client
        .get(browser.url("/"))
        .header("cookie", "session=garbage; _remember=x.y.z; session=again")
        .send()
        .await
        .expect("a response");
    assert_redirect(&response, StatusCode::FOUND, "/login?next=/");
    browser.assert_sent_to_login("/").await;
}

#[tokio::test]
async fn password_login_without_remember_says_hello() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let response = browser
        .login("/login?next=/", "susan", "hello", false)
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    assert!(set_cookies(&response)
        .iter()
        .all(|c| !c.starts_with("_remember=")));
    assert!(browser.cookie("session").is_some());
    assert_eq!(browser.cookie("_remember"), None);
    let (status, body) = text(browser.get("/").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Hello, susan!"), "{body}");
    assert!(body.contains("href=\"/fresh\""), "{body}");
    assert!(body.contains("href=\"/account\""), "{body}");
    assert!(body.contains("action=\"/logout\""), "{body}");
    // The other user has a login of their own.
    let other = Browser::new(&demo);
    other.log_in("david", "bye", false).await;
    other.assert_home("david").await;
    browser.assert_home("susan").await;
}

#[tokio::test]
async fn fresh_page_works_after_a_password_login() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    browser.assert_sent_to_login("/fresh").await;
    let response = browser
        .login("/login?next=%2Ffresh", "susan", "hello", false)
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/fresh");
    let (status, body) = text(browser.get("/fresh").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Hello, susan!"), "{body}");
    assert!(body.contains("needs a fresh login"), "{body}");
}

#[tokio::test]
async fn remembered_login_survives_a_browser_restart_but_is_not_fresh() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let response = browser.login("/login", "susan", "hello", true).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    let remember = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("_remember="))
        .expect("a remember cookie");
    assert!(remember.contains("Max-Age=2592000"), "{remember}");
    assert!(remember.contains("HttpOnly"), "{remember}");

    let restarted = browser.restarted(&demo);
    assert_eq!(restarted.cookie("session"), None);
    restarted.assert_home("susan").await;
    restarted.assert_sent_to_login("/fresh").await;
    restarted.assert_sent_to_login("/account").await;
    // The login page knows who is asked to confirm.
    let (status, body) = text(restarted.get("/login?next=/fresh").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Confirm it's you"), "{body}");
    assert!(body.contains("value=\"susan\""), "{body}");
    assert!(body.contains("name=\"remember_me\" checked"), "{body}");

    let response = restarted
        .login("/login?next=/fresh", "susan", "hello", false)
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/fresh");
    let (status, body) = text(restarted.get("/fresh").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Hello, susan!"), "{body}");
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session_and_remember_cookie() {
    let demo = start().await;
    let here = Browser::new(&demo);
    here.log_in("susan", "hello", true).await;
    let elsewhere = Browser::new(&demo);
    elsewhere.log_in("susan", "hello", true).await;
    let elsewhere_restarted = elsewhere.restarted(&demo);
    let david = Browser::new(&demo);
    david.log_in("david", "bye", true).await;
    elsewhere.assert_home("susan").await;

    let response = here
        .post(
            "/account/password",
            "current_password=hello&new_password=correct+horse",
        )
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    // This browser stays in, still fresh, and forgets its old remember cookie.
    let (status, body) = text(here.get("/account").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Your password is changed"), "{body}");
    let (_, body) = text(here.get("/account").await).await;
    assert!(
        !body.contains("Your password is changed"),
        "the notice shows once: {body}"
    );
    here.assert_home("susan").await;
    assert_eq!(here.get("/fresh").await.status(), StatusCode::OK);
    assert_eq!(here.cookie("_remember"), None);

    // Every other session and remember cookie of susan stops working.
    elsewhere.assert_sent_to_login("/").await;
    elsewhere_restarted.assert_sent_to_login("/").await;
    // Other users are not touched.
    david.assert_home("david").await;

    next_second().await;
    let fresh_browser = Browser::new(&demo);
    let (status, body) = text(fresh_browser.login("/login", "susan", "hello", false).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("do not match"), "{body}");
    fresh_browser.log_in("susan", "correct horse", false).await;
    fresh_browser.assert_home("susan").await;
}

#[tokio::test]
async fn changing_the_password_refuses_bad_forms_and_changes_nothing() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    browser.log_in("susan", "hello", false).await;
    let cases: [(&[u8], StatusCode, &str); 7] = [
        (
            b"current_password=bye&new_password=long+enough",
            StatusCode::OK,
            "not right",
        ),
        (
            b"current_password=hello&new_password=short",
            StatusCode::OK,
            "at least 8",
        ),
        (
            b"current_password=hello",
            StatusCode::BAD_REQUEST,
            "Please enter",
        ),
        (b"", StatusCode::BAD_REQUEST, "Please enter"),
        (
            b"current_password=hello&new_password=long+enough&new_password=other+one",
            StatusCode::BAD_REQUEST,
            "garbled",
        ),
        (
            b"current_password=%ff&new_password=%fe%fe%fe%fe%fe%fe%fe%fe",
            StatusCode::OK,
            "not right",
        ),
        (
            b"\xff\xfe\x00garbage",
            StatusCode::BAD_REQUEST,
            "Please enter",
        ),
    ];
    for (body, expected, message) in cases {
        let shown = String::from_utf8_lossy(body).into_owned();
        let (status, page) = text(browser.post("/account/password", body.to_vec()).await).await;
        assert_eq!(status, expected, "{shown:?}");
        assert!(page.contains(message), "{shown:?}: {page}");
    }
    browser.assert_home("susan").await;
    let other = Browser::new(&demo);
    other.log_in("susan", "hello", false).await;
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_other_session_but_keeps_this_one() {
    let demo = start().await;
    let here = Browser::new(&demo);
    here.log_in("susan", "hello", true).await;
    let elsewhere = Browser::new(&demo);
    elsewhere.log_in("susan", "hello", true).await;
    let elsewhere_restarted = elsewhere.restarted(&demo);
    let david = Browser::new(&demo);
    david.log_in("david", "bye", false).await;
    assert_eq!(here.sessions().await.len(), 2);

    let response = here.post("/account/logout-everywhere", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let (status, body) = text(here.get("/account").await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("This one stays in"), "{body}");
    let rows = session_rows(&body);
    assert!(rows.len() == 1 && rows[0].current, "{rows:?}");
    here.assert_home("susan").await;
    assert_eq!(here.get("/fresh").await.status(), StatusCode::OK);
    // This browser stays remembered, too.
    here.restarted(&demo).assert_home("susan").await;

    elsewhere.assert_sent_to_login("/").await;
    elsewhere_restarted.assert_sent_to_login("/").await;
    david.assert_home("david").await;

    // The password is the same as before, and logs in anew.
    next_second().await;
    elsewhere.log_in("susan", "hello", false).await;
    elsewhere.assert_home("susan").await;
}

#[tokio::test]
async fn account_actions_need_a_fresh_login() {
    let demo = start().await;
    let anonymous = Browser::new(&demo);
    let response = anonymous.post("/account/logout-everywhere", "").await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/account/logout-everywhere",
    );

    let browser = Browser::new(&demo);
    browser.log_in("susan", "hello", true).await;
    let restarted = browser.restarted(&demo);
    restarted.assert_sent_to_login("/account").await;
    let response = restarted
        .post(
            "/account/password",
            "current_password=hello&new_password=something+new",
        )
        .await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/account/password",
    );
    // Coming back there after the login lands on the account page.
    let response = restarted.get("/account/password").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let response = restarted.post("/account/logout-everywhere", "").await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/account/logout-everywhere",
    );
    // Nothing changed: the first browser is still in, with the old password.
    browser.assert_home("susan").await;
    restarted.assert_home("susan").await;
}

#[tokio::test]
async fn logout_deletes_both_cookies_and_home_redirects_again() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    browser.log_in("susan", "hello", true).await;
    assert!(browser.cookie("session").is_some());
    assert!(browser.cookie("_remember").is_some());

    let response = browser.post("/logout", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    let cookies = set_cookies(&response);
    for name in ["session", "_remember"] {
        let deletion = cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} is not deleted: {cookies:?}"));
        assert!(deletion.contains("Max-Age=0"), "{deletion}");
        assert!(deletion.contains("Path=/"), "{deletion}");
    }
    assert_eq!(browser.cookie("session"), None);
    assert_eq!(browser.cookie("_remember"), None);
    browser.assert_sent_to_login("/").await;
    // Logging out again, or without a login, is harmless.
    let response = browser.post("/logout", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
}

#[tokio::test]
async fn login_follows_only_a_safe_next() {
    let demo = start().await;
    let unsafe_nexts = [
        "//evil.example/",
        "https://evil.example/",
        "/%5Cevil.example",
        "/%09/evil.example",
        "javascript:alert(1)",
    ];
    for next in unsafe_nexts {
        let browser = Browser::new(&demo);
        let response = browser
            .login(&format!("/login?next={next}"), "susan", "hello", false)
            .await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    }
    let browser = Browser::new(&demo);
    let response = browser
        .login("/login?next=%2Ffresh%3Ftab%3D1", "susan", "hello", false)
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/fresh?tab=1");
}

#[tokio::test]
async fn next_survives_the_round_trip_through_the_login_form() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let response = browser.get("/fresh?tab=1&x=%2F").await;
    let login_url = "/login?next=/fresh%3Ftab%3D1%26x%3D%252F";
    assert_redirect(&response, StatusCode::FOUND, login_url);
    let (_, body) = text(browser.get(login_url).await).await;
    let action = body
        .split("<form method=\"post\" action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the login form");
    assert_eq!(action, "/login?next=%2Ffresh%3Ftab%3D1%26x%3D%252F");
    let response = browser.login(action, "susan", "hello", false).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/fresh?tab=1&x=%2F");
    assert_eq!(
        browser.get("/fresh?tab=1&x=%2F").await.status(),
        StatusCode::OK
    );
}

/// A `next` with non-ASCII characters arrives decoded; a `Location` must be
/// ASCII (a URI reference), so latch percent-encodes it again.
#[tokio::test]
async fn non_ascii_next_stays_percent_encoded_in_location() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let response = browser
        .login("/login?next=/caf%C3%A9", "susan", "hello", false)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response
        .headers()
        .get(LOCATION)
        .expect("a Location")
        .as_bytes();
    assert!(
        location.is_ascii(),
        "{:?}",
        String::from_utf8_lossy(location)
    );
    assert_eq!(location, b"/caf%C3%A9");
}

#[tokio::test]
async fn unknown_pages_are_a_friendly_404() {
    let demo = start().await;
    let (status, body) = text(Browser::new(&demo).get("/nowhere").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("Page not found"), "{body}");
}

#[test]
fn a_short_secret_key_is_refused_with_latchs_message() {
    let error = app::secret_key_from(Some("top-secret!")).expect_err("too short");
    let message = error.to_string();
    assert!(message.contains("11 bytes"), "{message}");
    assert!(message.contains("at least 32"), "{message}");
    let (_, source) = app::secret_key_from(None).expect("a random key");
    assert_eq!(source, app::KeySource::Generated);
    let (_, source) = app::secret_key_from(Some(&"k".repeat(32))).expect("a key");
    assert_eq!(source, app::KeySource::Environment);
}

#[tokio::test]
async fn a_copy_of_the_remember_cookie_stops_working_after_logout() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    browser.log_in("susan", "hello", true).await;
    let remember = browser.cookie("_remember").expect("a remember cookie");
    // The cookie is an opaque `selector.validator`, not a readable token.
    assert_eq!(remember.len(), 45, "{remember}");
    let copy = Browser::with_remember(&demo, &remember);

    let response = browser.post("/logout", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    copy.assert_sent_to_login("/").await;
}

#[tokio::test]
async fn an_old_copy_replayed_after_the_real_cookie_was_used_revokes_every_remembered_login() {
    let demo = start_with_grace(std::time::Duration::ZERO).await;
    let laptop = Browser::new(&demo);
    laptop.log_in("susan", "hello", true).await;
    let stolen = laptop.cookie("_remember").expect("a remember cookie");
    let phone = Browser::new(&demo);
    phone.log_in("susan", "hello", true).await;
    let david = Browser::new(&demo);
    david.log_in("david", "bye", true).await;

    // The real browser restarts and uses its cookie, which rotates it; its
    // next request shows it holds the new one.
    let restarted = laptop.restarted(&demo);
    restarted.assert_home("susan").await;
    let rotated = restarted.cookie("_remember").expect("a rotated cookie");
    assert_ne!(rotated, stolen);
    // Its next request carries the new cookie: the rotation is confirmed.
    restarted.assert_home("susan").await;

    // With no grace window, the old copy is then refused, as theft ...
    Browser::with_remember(&demo, &stolen)
        .assert_sent_to_login("/")
        .await;
    // ... and every remembered login of susan is revoked, not david's.
    restarted.restarted(&demo).assert_sent_to_login("/").await;
    phone.restarted(&demo).assert_sent_to_login("/").await;
    david.restarted(&demo).assert_home("david").await;
    // The demo then logs susan out everywhere, since whoever used the copy
    // first may hold a session made from it; david stays logged in.
    restarted.assert_sent_to_login("/").await;
    laptop.assert_sent_to_login("/").await;
    david.assert_home("david").await;
}

#[tokio::test]
async fn a_thief_who_used_the_copy_first_loses_the_session_it_made() {
    let demo = start_with_grace(std::time::Duration::ZERO).await;
    let victim = Browser::new(&demo);
    victim.log_in("susan", "hello", true).await;
    let copy = victim.cookie("_remember").expect("a remember cookie");
    // The thief restores a login from the copy first, rotating the token,
    // and its next request shows it holds the new cookie.
    let thief = Browser::with_remember(&demo, &copy);
    thief.assert_home("susan").await;
    thief.assert_home("susan").await;
    // The victim's browser restarts: its cookie was rotated away, so this is theft.
    victim.restarted(&demo).assert_sent_to_login("/").await;
    // The thief's session ends with every other session of susan.
    thief.assert_sent_to_login("/").await;
    thief.restarted(&demo).assert_sent_to_login("/").await;
}

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled_with_retry_after() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    for _ in 0..5 {
        let (status, _) = text(browser.login("/login", "susan", "wrong", false).await).await;
        assert_eq!(status, StatusCode::OK);
    }
    // Over the limit: even the right password waits, with a message and Retry-After.
    let response = browser.login("/login", "susan", "hello", false).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[reqwest::header::RETRY_AFTER]
        .to_str()
        .expect("text")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1, "{retry_after}");
    let body = response.text().await.expect("a body");
    assert!(body.contains("Too many failed logins"), "{body}");
    browser.assert_sent_to_login("/").await;
    // Another user, from the same address, is not locked out.
    Browser::new(&demo).log_in("david", "bye", false).await;
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_same_site_ones_pass() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    let login = |origin: String, site: Option<&'static str>| {
        let mut request = browser
            .client
            .post(browser.url("/login"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ORIGIN, origin)
            .body("username=susan&password=hello");
        if let Some(site) = site {
            request = request.header("sec-fetch-site", site);
        }
        request.send()
    };
    // Login CSRF: a form on another site logging the victim in.
    let response = login("https://evil.example".into(), Some("cross-site"))
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = login("https://evil.example".into(), None)
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(browser.cookie("session"), None);
    // The demo's own form.
    let own = demo.base.origin().ascii_serialization();
    let response = login(own, Some("same-origin")).await.expect("a response");
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    browser.assert_home("susan").await;
}

/// `MICRODOT_COMPAT=1`: a Microdot app's session and remember cookies, made
/// with the same secret key for the seed users, log in to the demo.
#[tokio::test]
async fn microdot_compat_accepts_microdot_logins() {
    const SECRET: &str = "a secret key shared with a Microdot app, 32+ bytes";
    let demo = start_microdot_compat(SECRET).await;
    let sign = |claims: serde_json::Value| jwt::encode(claims.as_object().unwrap(), SECRET);

    // Microdot's session after a login: no expiry, no fingerprint.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let session = sign(serde_json::json!({"_user_id": "user001", "_fresh": true}));
    jar.add_cookie_str(&format!("session={session}; Path=/"), &demo.base);
    Browser::with_jar(&demo, jar).assert_home("susan").await;

    // Microdot's remember cookie (`exp` a float): a remembered login, not fresh.
    let exp = jwt::now() as f64 + 0.5 + 7.0 * 86_400.0;
    let remember = sign(serde_json::json!({"user_id": "user002", "days": 7, "exp": exp}));
    let browser = Browser::with_remember(&demo, &remember);
    browser.assert_home("david").await;
    browser.assert_sent_to_login("/fresh").await;
    // Now a latch remember cookie, in the format Microdot reads.
    let replaced = browser.cookie("_remember").expect("a remember cookie");
    assert_eq!(
        replaced.matches('.').count(),
        2,
        "a JWT, not a selector.validator"
    );
}

/// Microdot's session and remember cookies for `user_id`, made before any
/// password change, signed with `secret` as a Microdot app would.
fn microdot_cookies(secret: &str, user_id: &str) -> (String, String) {
    let sign = |claims: serde_json::Value| jwt::encode(claims.as_object().unwrap(), secret);
    let session = sign(serde_json::json!({"_user_id": user_id, "_fresh": true}));
    let exp = jwt::now() as f64 - 30.0 + 30.0 * 86_400.0;
    let remember = sign(serde_json::json!({"user_id": user_id, "days": 30, "exp": exp}));
    (session, remember)
}

/// A browser with only this Microdot session cookie.
fn with_session(demo: &Demo, session: &str) -> Browser {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(&format!("session={session}; Path=/"), &demo.base);
    Browser::with_jar(demo, jar)
}

/// In interop mode, a copy of a Microdot cookie taken before a password
/// change (or "log out everywhere") must not log in afterwards: a Microdot
/// token carries no fingerprint and no time, so the demo keeps the time of
/// each user's last change, and latch refuses their older Microdot tokens.
#[tokio::test]
async fn a_copied_microdot_cookie_is_refused_after_a_password_change() {
    const SECRET: &str = "a secret key shared with a Microdot app, 32+ bytes";
    let demo = start_microdot_compat(SECRET).await;
    let (session, remember) = microdot_cookies(SECRET, "user001");
    with_session(&demo, &session).assert_home("susan").await;
    Browser::with_remember(&demo, &remember)
        .assert_home("susan")
        .await;

    let owner = Browser::new(&demo);
    owner.log_in("susan", "hello", false).await;
    let response = owner
        .post(
            "/account/password",
            "current_password=hello&new_password=a+new+password",
        )
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    owner.assert_home("susan").await;

    with_session(&demo, &session)
        .assert_sent_to_login("/")
        .await;
    Browser::with_remember(&demo, &remember)
        .assert_sent_to_login("/")
        .await;
}

/// The same after "log out everywhere", which changes no password.
#[tokio::test]
async fn a_copied_microdot_cookie_is_refused_after_logging_out_everywhere() {
    const SECRET: &str = "a secret key shared with a Microdot app, 32+ bytes";
    let demo = start_microdot_compat(SECRET).await;
    let (session, remember) = microdot_cookies(SECRET, "user002");
    with_session(&demo, &session).assert_home("david").await;

    let owner = Browser::new(&demo);
    owner.log_in("david", "bye", false).await;
    let response = owner.post("/account/logout-everywhere", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    owner.assert_home("david").await;

    with_session(&demo, &session)
        .assert_sent_to_login("/")
        .await;
    Browser::with_remember(&demo, &remember)
        .assert_sent_to_login("/")
        .await;
}

/// Forty wrong passwords for one user at the same moment, on forty
/// connections: the throttle counts each attempt before the password is
/// checked, so no more than the limit (5) are checked and the rest get 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_gets_no_more_than_the_limit_checked() {
    let demo = start().await;
    let attempts = (0..40).map(|_| {
        let browser = Browser::new(&demo);
        async move {
            let response = browser.login("/login", "susan", "wrong", false).await;
            response.status()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + throttled, 40, "{statuses:?}");
    assert!(checked <= 5, "{checked} passwords checked: {statuses:?}");
}

/// The account page's "current password" is a password check too: wrong
/// ones count under the user, as failed logins do, so a stolen session
/// cannot guess the password there.
#[tokio::test]
async fn the_change_password_form_is_throttled_under_the_user() {
    let demo = start().await;
    let browser = Browser::new(&demo);
    browser.log_in("susan", "hello", false).await;
    let change = "current_password=wrong&new_password=a+new+password";
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(browser.post("/account/password", change).await.status());
    }
    assert_eq!(statuses[..5], [StatusCode::OK; 5], "{statuses:?}");
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // The same count as the login form's.
    let response = Browser::new(&demo)
        .login("/login", "susan", "hello", false)
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Logins whose clients go away while they wait for a hashing thread give
/// their place in the queue back: after many such cancellations, a login
/// that finds the threads busy still waits its turn rather than getting
/// 503 at once.
#[tokio::test]
async fn logins_cancelled_while_waiting_for_a_hashing_thread_give_their_place_back() {
    let hasher = app::hashing::Hasher::new(1);
    let busy = hasher.turn().await.expect("a free thread");
    for _ in 0..200 {
        let waited = tokio::time::timeout(std::time::Duration::from_millis(2), hasher.turn()).await;
        assert!(waited.is_err(), "still waiting when cancelled");
    }
    let next = tokio::spawn({
        let hasher = hasher.clone();
        async move { hasher.turn().await.map(drop) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!next.is_finished(), "waiting for its turn, not sent away");
    drop(busy);
    assert!(next.await.unwrap().is_ok(), "it waited and got its turn");
}
