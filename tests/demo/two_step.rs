//! Two-step login over HTTP: turned on from the account page only with a
//! right code, recovery codes shown once and kept as hashes; a password
//! alone then gives a pending login that no page counts as logged in; a
//! right code (from the app, or a recovery code) logs in once, fresh, and
//! follows `next`; used codes, garbage, other users' codes, too many wrong
//! codes, parallel requests with one code, and pending cookies replayed or
//! copied after the login are all refused, never with a `5xx`; turning it
//! off needs a fresh login and a code. On SQLite, and on PostgreSQL where
//! the kit has a server. Codes are computed here from the secret the page
//! shows, as an authenticator app does.

use crate::support::demo as demo_support;

use std::time::Duration;

use demo_support::*;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use sqlx::Row;

#[tokio::test]
async fn turning_on_needs_a_right_code_and_shows_recovery_codes_once_on_sqlite() {
    on_sqlite(turning_on).await;
}

#[tokio::test]
async fn turning_on_needs_a_right_code_and_shows_recovery_codes_once_on_postgres() {
    on_postgres(turning_on).await;
}

#[tokio::test]
async fn a_login_needs_the_code_and_each_code_works_once_on_sqlite() {
    on_sqlite(logging_in).await;
}

#[tokio::test]
async fn a_login_needs_the_code_and_each_code_works_once_on_postgres() {
    on_postgres(logging_in).await;
}

#[tokio::test]
async fn what_is_not_a_code_or_another_users_code_is_refused_on_sqlite() {
    on_sqlite(bad_codes).await;
}

#[tokio::test]
async fn what_is_not_a_code_or_another_users_code_is_refused_on_postgres() {
    on_postgres(bad_codes).await;
}

#[tokio::test]
async fn five_wrong_codes_send_back_to_the_password_for_no_new_tries_on_sqlite() {
    on_sqlite(five_wrong_codes).await;
}

#[tokio::test]
async fn five_wrong_codes_send_back_to_the_password_for_no_new_tries_on_postgres() {
    on_postgres(five_wrong_codes).await;
}

#[tokio::test]
async fn a_pending_cookie_replayed_or_copied_after_the_login_is_refused_on_sqlite() {
    on_sqlite(replayed_and_copied).await;
}

#[tokio::test]
async fn a_pending_cookie_replayed_or_copied_after_the_login_is_refused_on_postgres() {
    on_postgres(replayed_and_copied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_sent_twice_at_once_logs_in_once_on_sqlite() {
    on_sqlite(at_once).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_code_sent_twice_at_once_logs_in_once_on_postgres() {
    on_postgres(at_once).await;
}

#[tokio::test]
async fn turning_off_needs_a_fresh_login_and_a_code_on_sqlite() {
    on_sqlite(turning_off).await;
}

#[tokio::test]
async fn turning_off_needs_a_fresh_login_and_a_code_on_postgres() {
    on_postgres(turning_off).await;
}

/// What the `recovery_codes` table keeps of a code: the SHA-256 of the
/// user's id and the code's letters.
fn recovery_hash(user_id: &str, code: &str) -> String {
    let letters = code.replace('-', "");
    Sha256::digest(format!("{user_id}:{letters}").as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether a recovery code has the demo's shape: `abcd-efgh-jkmn`, 12
/// letters without i, l and o.
fn well_formed(code: &str) -> bool {
    let groups: Vec<&str> = code.split('-').collect();
    groups.len() == 3
        && groups.iter().all(|group| {
            group.len() == 4
                && group
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() && !b"ilo".contains(&b))
        })
}

/// What the page's QR code says, read as a camera would: the SVG's dark
/// rectangles drawn on a bitmap, then found and decoded by `rqrr`.
fn qr_text(page: &str) -> String {
    let svg = between(page, "<svg class=\"qr\"", "</svg>");
    let size = |name: &str| -> usize {
        between(svg, &format!(" {name}=\""), "\"")
            .parse()
            .expect("a size in pixels")
    };
    let (width, height) = (size("width"), size("height"));
    let mut dark = vec![false; width * height];
    // The renderer draws each run of dark modules as `M{left} {top}h{width}v{height}H{left}V{top}`.
    let path = between(svg, "<path fill=\"#000\" d=\"", "\"");
    for rect in path.split('M').skip(1) {
        let numbers: Vec<usize> = rect
            .split(|c: char| c.is_ascii_alphabetic() || c == ' ')
            .filter(|part| !part.is_empty())
            .map(|part| part.parse().expect("a number"))
            .collect();
        let (left, top, w, h) = (numbers[0], numbers[1], numbers[2], numbers[3]);
        for y in top..top + h {
            for x in left..left + w {
                dark[y * width + x] = true;
            }
        }
    }
    let mut image =
        rqrr::PreparedImage::prepare_from_bitmap(width, height, |x, y| dark[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    grids[0].decode().expect("a readable QR code").1
}

/// The user's two-step columns: on, secret, last step, pending secret.
async fn stored(demo: &Demo, user_id: &str) -> (i64, Option<String>, Option<i64>, Option<String>) {
    let db = database(demo).await;
    let row = sqlx::query(
        "SELECT two_step, totp_secret, totp_last_step, totp_pending_secret
         FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_one(&db)
    .await
    .expect("the user's row");
    let columns = (
        row.get("two_step"),
        row.get("totp_secret"),
        row.get("totp_last_step"),
        row.get("totp_pending_secret"),
    );
    db.close().await;
    columns
}

/// How many of the user's recovery codes are stored, and how many unused.
async fn stored_codes(demo: &Demo, user_id: &str) -> (i64, i64) {
    let db = database(demo).await;
    let all: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&db)
        .await
        .expect("the recovery codes");
    let unused: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(&db)
    .await
    .expect("the recovery codes");
    db.close().await;
    (all, unused)
}

/// The account page's count of recovery codes left.
async fn codes_left_shown(browser: &Browser) -> String {
    let (status, page) = text(browser.get("/account").await).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    between(&page, "<strong id=\"recovery-left\">", "</strong>").to_owned()
}

/// Checks that a response is the code page's form again, with `status`,
/// this message, and this many tries left.
async fn assert_code_form(
    response: reqwest::Response,
    status: StatusCode,
    message: &str,
    tries: &str,
) {
    let (got, page) = text(response).await;
    assert_eq!(got, status, "{page}");
    assert!(page.contains("<h1>Enter your code</h1>"), "{page}");
    assert!(page.contains(message), "{message:?} in {page}");
    assert!(page.contains(&format!("{tries}\n")), "{tries:?} in {page}");
}

async fn turning_on(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", true).await;
    let (_, account) = text(susan.get("/account").await).await;
    assert!(
        account.contains("<form method=\"post\" action=\"/account/two-step\">"),
        "{account}"
    );
    // Nothing being set up: the account page.
    let response = susan.get("/account/two-step").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    // A login restored by "remember me" is not fresh: it is asked for the
    // password first.
    let restored = susan.restarted(demo);
    let response = restored.post("/account/two-step", "").await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/account/two-step",
    );
    assert_eq!(stored(demo, "user001").await, (0, None, None, None));

    // The page that sets it up: a QR code and the secret as text, not kept
    // by any cache.
    let response = susan.post("/account/two-step", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account/two-step");
    let response = susan.get("/account/two-step").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let page = response.text().await.expect("a page");
    assert!(page.contains("<svg class=\"qr\""), "{page}");
    assert!(page.contains("<path fill=\"#000\" d=\"M"), "{page}");
    let shown = between(&page, "<code id=\"secret\">", "</code>");
    let secret: String = shown.split_whitespace().collect();
    assert_eq!(secret.len(), 32, "160 bits in base32: {shown:?}");
    assert!(secret
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    // The QR code holds the same secret, for the app to add.
    assert_eq!(
        qr_text(&page),
        format!("otpauth://totp/latch%20demo:susan?secret={secret}&issuer=latch%20demo")
    );
    // Kept on the server until it is confirmed, and in no cookie.
    assert_eq!(
        stored(demo, "user001").await,
        (0, None, None, Some(secret.clone()))
    );
    for cookie in ["session", "_remember"] {
        let value = susan.cookie(cookie).unwrap_or_default();
        assert!(
            !value.contains(&secret),
            "the secret in the {cookie} cookie"
        );
    }

    // A wrong code, and codes of no shape at all, leave it off.
    let mut app = Authenticator::new(shown);
    let response = susan
        .post("/account/two-step/enable", code_form(&app.wrong_code()))
        .await;
    let (status, page) = text(response).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("That code is not right"), "{page}");
    assert!(page.contains(shown), "the same secret again: {page}");
    let overlong = code_form(&"1".repeat(100_000));
    for body in [
        "",
        "code=",
        "code=12345",
        "code=abcdef",
        "code=abcd-efgh-jkmn",
        "code=1&code=2",
        "code=%FF%FE",
        overlong.as_str(),
    ] {
        let (status, page) = text(
            susan
                .post("/account/two-step/enable", body.to_owned())
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:.40}: {page}");
        assert!(page.contains(shown), "the form again: {page}");
    }
    assert_eq!(stored(demo, "user001").await.0, 0);
    let (_, account) = text(susan.get("/account").await).await;
    assert!(
        account.contains("<span class=\"tag quiet\">Off</span>"),
        "{account}"
    );

    // The right code turns it on, and shows ten recovery codes, once.
    let code = app.next_code().await;
    let response = susan
        .post("/account/two-step/enable", code_form(&code))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let page = response.text().await.expect("a page");
    assert!(page.contains("shown only this once"), "{page}");
    let codes = recovery_codes(&page);
    assert_eq!(codes.len(), 10, "{page}");
    assert!(codes.iter().all(|code| well_formed(code)), "{codes:?}");
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "{codes:?}");

    // Stored: on, the secret, the step of the code that turned it on (used
    // up), and a hash of each recovery code, never the code.
    let step = i64::try_from(app.last_step()).expect("a step");
    assert_eq!(
        stored(demo, "user001").await,
        (1, Some(secret.clone()), Some(step), None)
    );
    let db = database(demo).await;
    let rows = sqlx::query(
        "SELECT user_id, code_hash, created_at, used_at FROM recovery_codes ORDER BY code_hash",
    )
    .fetch_all(&db)
    .await
    .expect("the recovery codes");
    db.close().await;
    let mut hashes: Vec<String> = rows.iter().map(|row| row.get("code_hash")).collect();
    let mut expected: Vec<String> = codes
        .iter()
        .map(|code| recovery_hash("user001", code))
        .collect();
    hashes.sort();
    expected.sort();
    assert_eq!(hashes, expected);
    for row in &rows {
        assert_eq!(row.get::<String, _>("user_id"), "user001");
        assert_eq!(row.get::<Option<i64>, _>("used_at"), None);
        let hash: String = row.get("code_hash");
        for code in &codes {
            assert!(
                !hash.contains(&code.replace('-', "")),
                "a code in the table"
            );
        }
    }

    // The account page: on, ten codes left, none of them shown.
    let (_, account) = text(susan.get("/account").await).await;
    assert!(
        account.contains("<span class=\"tag\">On</span>"),
        "{account}"
    );
    assert_eq!(codes_left_shown(&susan).await, "10");
    for code in &codes {
        assert!(
            !account.contains(code.as_str()),
            "a recovery code shown again"
        );
    }
    assert!(!account.contains(shown), "the secret shown again");
    let rows = susan
        .activity_once(|rows| kinds(rows).first() == Some(&"two_step_enabled"))
        .await;
    assert_eq!(rows[0].what, "Two-step login turned on");
    assert!(rows[0].this_browser);

    // Neither the secret nor the codes are shown again, and two-step login
    // cannot be set up anew without turning it off (with a code).
    let response = susan.get("/account/two-step").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let response = susan.post("/account/two-step", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let response = susan
        .post(
            "/account/two-step/enable",
            code_form(&app.next_code().await),
        )
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let (_, account) = text(susan.get("/account").await).await;
    assert!(
        account.contains("Two-step login is on already."),
        "{account}"
    );
    assert_eq!(
        stored(demo, "user001").await,
        (1, Some(secret), Some(step), None)
    );
}

async fn logging_in(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let (mut app, codes) = susan.turn_on_two_step().await;
    susan.post("/logout", "").await;

    // The password alone: the code page, and no login anywhere.
    let response = susan
        .login("/login?next=/account", "susan", "hello", true)
        .await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login/two-step?next=/account",
    );
    susan.assert_sent_to_login("/account").await;
    susan.assert_sent_to_login("/").await;
    susan.assert_sent_to_login("/fresh").await;
    assert_eq!(
        susan.fetch("/api/me").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let response = susan.get("/login/two-step?next=/account").await;
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let (status, page) = text(response).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<strong>susan</strong>"), "{page}");
    assert!(page.contains("5 tries\n"), "{page}");
    assert!(
        page.contains("action=\"/login/two-step?next=%2Faccount\""),
        "the form keeps next: {page}"
    );

    // The code that turned two-step login on is used up.
    let response = susan.enter_code("/account", &app.last_code()).await;
    assert_code_form(
        response,
        StatusCode::OK,
        "That code is not right",
        "4 tries",
    )
    .await;

    // The app's code: logged in, fresh, at `next`, remembered as the
    // password form asked.
    let response = susan.enter_code("/account", &app.next_code().await).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let (status, _) = text(susan.get("/account").await).await;
    assert_eq!(status, StatusCode::OK, "a fresh login");
    assert!(susan.cookie("_remember").is_some());
    let rows = susan
        .activity_once(|rows| kinds(rows).first() == Some(&"logged_in_two_step"))
        .await;
    assert_eq!(
        rows[0].what,
        "Logged in with the password and an authenticator code"
    );
    assert!(rows[0].this_browser && !rows[0].alert);

    // The same code again, in another login within its window: refused.
    susan.post("/logout", "").await;
    susan.password_step("susan", "hello", "/").await;
    let response = susan.enter_code("/", &app.last_code()).await;
    assert_code_form(
        response,
        StatusCode::OK,
        "That code is not right",
        "4 tries",
    )
    .await;
    susan.assert_sent_to_login("/").await;

    // A recovery code, once.
    let response = susan.enter_code("/", &codes[0]).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    let (_, home) = text(susan.get("/").await).await;
    assert!(
        home.contains("You logged in with a recovery code"),
        "{home}"
    );
    assert!(home.contains("9 recovery codes left"), "{home}");
    assert_eq!(codes_left_shown(&susan).await, "9");
    assert_eq!(stored_codes(demo, "user001").await, (10, 9));
    // Newest first: the code was marked used once the login was made.
    let rows = susan
        .activity_once(|rows| {
            kinds(rows).starts_with(&["recovery_code_used", "logged_in_two_step"])
        })
        .await;
    assert_eq!(rows[0].what, "Recovery code used: 9 left");
    assert!(rows[0].alert && rows[0].this_browser);
    assert_eq!(
        rows[1].what,
        "Logged in with the password and a recovery code"
    );
    susan.post("/logout", "").await;
    susan.password_step("susan", "hello", "/").await;
    let response = susan.enter_code("/", &codes[0]).await;
    assert_code_form(
        response,
        StatusCode::OK,
        "That code is not right",
        "4 tries",
    )
    .await;
    susan.assert_sent_to_login("/").await;
    // Another, typed in capitals with spaces: works.
    let typed = codes[1].to_uppercase().replace('-', " ");
    let response = susan.enter_code("/", &typed).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    susan.assert_home("susan").await;
    assert_eq!(codes_left_shown(&susan).await, "8");

    // "Remember me" after a two-step login restores it without a code; a
    // page that needs a fresh login asks for the password and a code again
    // (the remembered login ends with the password).
    susan.post("/logout", "").await;
    let response = susan.login("/login?next=/", "susan", "hello", true).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/login/two-step?next=/");
    let response = susan.enter_code("/", &codes[2]).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    let restored = susan.restarted(demo);
    restored.assert_home("susan").await;
    restored.assert_sent_to_login("/account").await;
    let response = restored
        .login("/login?next=/account", "susan", "hello", true)
        .await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login/two-step?next=/account",
    );
    restored.assert_sent_to_login("/").await;
    let response = restored.enter_code("/account", &codes[3]).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    assert_eq!(codes_left_shown(&restored).await, "6");
    assert!(restored.cookie("_remember").is_some());

    // A user without two-step login is not asked for a code.
    let david = Browser::new(demo);
    david.log_in("david", "bye", false).await;
}

async fn bad_codes(demo: &Demo) {
    let david = Browser::new(demo);
    david.log_in("david", "bye", false).await;
    let (mut davids_app, davids_codes) = david.turn_on_two_step().await;
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let (mut app, _) = susan.turn_on_two_step().await;
    susan.post("/logout", "").await;
    susan.password_step("susan", "hello", "/").await;

    // What is not a code is refused with the form, and costs no try.
    let overlong_digits = code_form(&"1".repeat(100_000));
    let overlong_letters = code_form(&"abcd-".repeat(20_000));
    for body in [
        "",
        "code=",
        "code=+++",
        "code=---",
        "other=123456",
        "code=12345",
        "code=1234567",
        "code=12345a",
        "code=abcdef",
        "code=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96",
        "code=%D9%A1%D9%A2%D9%A3%D9%A4%D9%A5%D9%A6",
        "code=abcd-efgh-ijkl",
        "code=abcd-efgh-jkmn-pqrs",
        "code=%00%00%00%00%00%00",
        "code=%FF%FE%FD",
        "code=123456&code=654321",
        "code=<script>alert(1)</script>",
        overlong_digits.as_str(),
        overlong_letters.as_str(),
    ] {
        let response = susan.post("/login/two-step?next=/", body.to_owned()).await;
        assert_code_form(response, StatusCode::BAD_REQUEST, "", "5 tries").await;
    }
    // Nor is a body that is not a form.
    let response = susan
        .client
        .post(susan.url("/login/two-step?next=/"))
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"code":"123456"}"#)
        .send()
        .await
        .expect("a response");
    assert_code_form(response, StatusCode::BAD_REQUEST, "garbled", "5 tries").await;
    let (_, page) = text(
        susan
            .post("/login/two-step?next=/", "code=%3Cscript%3E")
            .await,
    )
    .await;
    assert!(!page.contains("<script>"), "{page}");

    // David's code, and his recovery code, are wrong for susan: each costs
    // a try, and neither is used up for him.
    let response = susan.enter_code("/", &davids_app.next_code().await).await;
    assert_code_form(
        response,
        StatusCode::OK,
        "That code is not right",
        "4 tries",
    )
    .await;
    let response = susan.enter_code("/", &davids_codes[0]).await;
    assert_code_form(
        response,
        StatusCode::OK,
        "That code is not right",
        "3 tries",
    )
    .await;
    assert_eq!(stored_codes(demo, "user002").await, (10, 10));
    susan.assert_sent_to_login("/").await;
    susan.assert_sent_to_login("/account").await;
    let rows = david.activity().await;
    assert!(
        !kinds(&rows).contains(&"login_failed"),
        "susan's tries are not david's: {rows:?}"
    );

    // Her own code still logs her in, and the activity list calls the
    // wrong ones codes, not passwords.
    let response = susan.enter_code("/", &app.next_code().await).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    susan.assert_home("susan").await;
    let rows = susan
        .activity_once(|rows| {
            kinds(rows).starts_with(&["logged_in_two_step", "login_failed", "login_failed"])
        })
        .await;
    assert_eq!(rows[1].what, "Wrong two-step code");
    assert_eq!(rows[2].what, "Wrong two-step code");
    assert!(rows[1].alert);
}

async fn five_wrong_codes(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let (mut app, codes) = susan.turn_on_two_step().await;
    susan.post("/logout", "").await;
    susan.password_step("susan", "hello", "/").await;
    for tries in ["4 tries", "3 tries", "2 tries", "1 try"] {
        let response = susan.enter_code("/", &app.wrong_code()).await;
        assert_code_form(response, StatusCode::OK, "That code is not right", tries).await;
    }
    // The fifth: back to the login page, which says why.
    let response = susan.enter_code("/", &app.wrong_code()).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/login?next=/");
    let (_, page) = text(susan.get("/login?next=/").await).await;
    assert!(page.contains("Too many wrong codes"), "{page}");
    // The pending login is gone: the code page sends the browser to log
    // in, and a right code does nothing.
    let response = susan.get("/login/two-step?next=/").await;
    assert_redirect(&response, StatusCode::FOUND, "/login?next=/");
    let response = susan.enter_code("/", &codes[0]).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/login?next=/");
    assert_eq!(stored_codes(demo, "user001").await, (10, 10));
    susan.assert_sent_to_login("/").await;

    // Starting over from the password gives no new tries: the wrong codes
    // count under susan in the throttle, which the fifth blocked for a
    // second and the next one blocks for two.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    susan.password_step("susan", "hello", "/").await;
    let response = susan.enter_code("/", &app.wrong_code()).await;
    assert_code_form(
        response,
        StatusCode::OK,
        "That code is not right",
        "4 tries",
    )
    .await;
    let response = susan.enter_code("/", &app.next_code().await).await;
    assert!(response.headers().contains_key(RETRY_AFTER));
    assert_code_form(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "Too many wrong codes",
        "4 tries",
    )
    .await;
    app.not_used();
    // Once the block is over, a right code logs in.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = susan.enter_code("/", &app.next_code().await).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    susan.assert_home("susan").await;
    let rows = susan
        .activity_once(|rows| {
            kinds(rows).first() == Some(&"logged_in_two_step")
                && rows
                    .iter()
                    .filter(|row| row.what == "Wrong two-step code")
                    .count()
                    == 6
        })
        .await;
    assert!(kinds(&rows).contains(&"throttled"), "{rows:?}");
}

async fn replayed_and_copied(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let (mut app, codes) = susan.turn_on_two_step().await;
    susan.post("/logout", "").await;
    susan.password_step("susan", "hello", "/").await;
    let pending = susan.cookie("session").expect("a pending session cookie");
    let copy = Browser::with_user_agent(demo, "Another browser");
    copy.jar
        .add_cookie_str(&format!("session={pending}; Path=/"), &demo.base);

    let response = susan.enter_code("/", &app.next_code().await).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    susan.assert_home("susan").await;

    // Copied to another browser, after the login: the login page, and no
    // code gets through (the recovery code is not even checked).
    let response = copy.get("/login/two-step?next=/").await;
    assert_redirect(&response, StatusCode::FOUND, "/login?next=/");
    copy.jar
        .add_cookie_str(&format!("session={pending}; Path=/"), &demo.base);
    let response = copy.enter_code("/", &codes[0]).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/login?next=/");
    copy.assert_sent_to_login("/").await;
    copy.assert_sent_to_login("/account").await;

    // Replayed in the same browser: the same.
    susan
        .jar
        .add_cookie_str(&format!("session={pending}; Path=/"), &demo.base);
    let response = susan.enter_code("/", &codes[0]).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/login?next=/");
    susan
        .jar
        .add_cookie_str(&format!("session={pending}; Path=/"), &demo.base);
    let response = susan.get("/login/two-step?next=/").await;
    assert_redirect(&response, StatusCode::FOUND, "/login?next=/");
    susan.assert_sent_to_login("/").await;
    assert_eq!(stored_codes(demo, "user001").await, (10, 10));
}

/// Two browsers with a pending login each send the same right code at the
/// same moment: one logs in, the other is told the code is wrong. The same
/// for a recovery code.
async fn at_once(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let (mut app, codes) = susan.turn_on_two_step().await;
    for code in [app.next_code().await, codes[0].clone()] {
        let (first, second) = (Browser::new(demo), Browser::new(demo));
        first.password_step("susan", "hello", "/").await;
        second.password_step("susan", "hello", "/").await;
        let (a, b) = tokio::join!(first.enter_code("/", &code), second.enter_code("/", &code));
        let statuses = [a.status(), b.status()];
        let logged_in = statuses
            .iter()
            .filter(|status| **status == StatusCode::SEE_OTHER)
            .count();
        assert_eq!(logged_in, 1, "{code}: {statuses:?}");
        assert!(statuses.contains(&StatusCode::OK), "{code}: {statuses:?}");
    }
    assert_eq!(stored_codes(demo, "user001").await, (10, 9));
}

async fn turning_off(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", true).await;
    // A browser of hers restored by "remember me": logged in, not fresh.
    let restored = susan.restarted(demo);
    restored.assert_home("susan").await;
    let (mut app, codes) = susan.turn_on_two_step().await;

    let response = restored
        .post("/account/two-step/disable", code_form(&codes[0]))
        .await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/account/two-step/disable",
    );
    // Without a code, or with a wrong one: still on.
    for (body, status, message) in [
        (
            "".to_owned(),
            StatusCode::BAD_REQUEST,
            "Two-step login is still on.",
        ),
        (
            "code=abc".to_owned(),
            StatusCode::BAD_REQUEST,
            "Two-step login is still on.",
        ),
        (
            code_form(&"9".repeat(100_000)),
            StatusCode::BAD_REQUEST,
            "Two-step login is still on.",
        ),
        (
            code_form(&app.wrong_code()),
            StatusCode::OK,
            "That code is not right, so two-step login is still on.",
        ),
    ] {
        let (got, page) = text(susan.post("/account/two-step/disable", body).await).await;
        assert_eq!(got, status, "{page}");
        assert!(page.contains(message), "{page}");
    }
    assert_eq!(stored(demo, "user001").await.0, 1);
    assert_eq!(stored_codes(demo, "user001").await, (10, 10));

    // The app's code: off, the secret and the recovery codes deleted.
    let response = susan
        .post(
            "/account/two-step/disable",
            code_form(&app.next_code().await),
        )
        .await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let (_, account) = text(susan.get("/account").await).await;
    assert!(account.contains("Two-step login is off"), "{account}");
    assert!(
        account.contains("<span class=\"tag quiet\">Off</span>"),
        "{account}"
    );
    assert_eq!(stored(demo, "user001").await, (0, None, None, None));
    assert_eq!(stored_codes(demo, "user001").await, (0, 0));
    let rows = susan
        .activity_once(|rows| kinds(rows).first() == Some(&"two_step_disabled"))
        .await;
    assert_eq!(rows[0].what, "Two-step login turned off");
    assert!(
        rows.iter().any(|row| row.what == "Wrong two-step code"),
        "{rows:?}"
    );

    // The password alone logs in again.
    susan.post("/logout", "").await;
    susan.log_in("susan", "hello", false).await;
    susan.assert_home("susan").await;
}

/// A user database made before two-step login gets its columns and table
/// when the demo opens it; its users log in with their passwords alone,
/// and can turn it on.
#[tokio::test]
async fn an_older_database_gets_two_step_login_turned_off() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("users.db").display());
    let old = sqlx::SqlitePool::connect(&format!("{database_url}?mode=rwc"))
        .await
        .expect("a new SQLite file");
    sqlx::query(
        "CREATE TABLE users (
            id TEXT PRIMARY KEY NOT NULL,
            username TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            auth_changed_at BIGINT,
            is_admin BIGINT NOT NULL DEFAULT 0
        )",
    )
    .execute(&old)
    .await
    .expect("the old users table");
    sqlx::query("INSERT INTO users (id, username, password_hash, is_admin) VALUES ($1, $2, $3, 1)")
        .bind("user001")
        .bind("susan")
        .bind(password_auth::generate_hash("hello"))
        .execute(&old)
        .await
        .expect("a user");
    old.close().await;

    let demo = serve(app::Config {
        secret_key: axum_latch::SecretKey::generate().expect("a random key"),
        database_url,
        redis_url: None,
        redis_prefix: app::DEFAULT_REDIS_PREFIX.to_owned(),
        remember_grace: axum_latch::remember::DEFAULT_GRACE,
        microdot_compat: None,
    })
    .await;
    let susan = Browser::new(&demo);
    susan.log_in("susan", "hello", false).await;
    assert_eq!(stored(&demo, "user001").await, (0, None, None, None));
    let (mut app, _) = susan.turn_on_two_step().await;
    susan.post("/logout", "").await;
    susan
        .log_in_with_code("susan", "hello", &app.next_code().await)
        .await;
    susan.assert_home("susan").await;
    drop(demo);
}
