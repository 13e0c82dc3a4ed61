//! The account page's "Recent activity" over HTTP: latch's events (logins,
//! logouts, wrong passwords, throttled logins, sessions ended, remember-me
//! logins) and the demo's own (a new password), each under its user with
//! its device and address; the last 20 only. On SQLite, and on PostgreSQL
//! where the kit has a server.

use crate::support::demo as demo_support;

use demo_support::*;
use reqwest::StatusCode;
use sqlx::Row;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

#[tokio::test]
async fn recent_activity_records_each_users_own_events_on_sqlite() {
    on_sqlite(own_events).await;
}

#[tokio::test]
async fn recent_activity_records_each_users_own_events_on_postgres() {
    on_postgres(own_events).await;
}

/// Susan logs in after a wrong password, logs a phone out from the account
/// page, logs in and out elsewhere, and someone else tries her password
/// until the throttle stops them: her list has each of these, newest
/// first, with device and address; david's has only his own login.
async fn own_events(demo: &Demo) {
    let laptop = Browser::with_user_agent(demo, FIREFOX);
    let (status, _) = text(laptop.login("/login", "susan", "bye", false).await).await;
    assert_eq!(status, StatusCode::OK);
    laptop.log_in("susan", "hello", true).await;
    let phone = Browser::with_user_agent(demo, SAFARI);
    phone.log_in("susan", "hello", false).await;
    let phones = phone.own_session().await;
    let response = laptop.end_session(&phones.id).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let elsewhere = Browser::new(demo);
    elsewhere.log_in("susan", "hello", false).await;
    let response = elsewhere.post("/logout", "").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    let david = Browser::new(demo);
    david.log_in("david", "bye", false).await;

    // Someone guesses until the throttle refuses them, then tries twice
    // more. (The throttle's first block lasts a second: on a slow machine
    // a later guess may be let through and checked, so what is expected
    // follows what the attacker got.)
    let attacker = Browser::new(demo);
    let mut statuses = Vec::new();
    let mut after_refusal = 0;
    while after_refusal < 3 {
        let response = attacker.login("/login", "susan", "guess", false).await;
        let status = response.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
        if status == StatusCode::TOO_MANY_REQUESTS || after_refusal > 0 {
            after_refusal += 1;
        }
        statuses.push(status);
        assert!(statuses.len() <= 12, "never throttled: {statuses:?}");
    }
    // A username nobody has is on nobody's list.
    attacker.login("/login", "nobody", "guess", false).await;

    // Newest first: a wrong password is a line each, refusals in a row
    // from one address are one line.
    let mut expected = Vec::new();
    let mut refusals = Vec::new();
    for status in statuses.iter().rev() {
        if *status == StatusCode::OK {
            expected.push("login_failed");
        } else if expected.last() == Some(&"throttled") {
            *refusals.last_mut().expect("a count") += 1;
        } else {
            expected.push("throttled");
            refusals.push(1);
        }
    }
    expected.extend([
        "logged_out",
        "logged_in",
        "sessions_ended",
        "logged_in",
        "logged_in",
        "login_failed",
    ]);
    let counted: Vec<String> = refusals
        .iter()
        .map(|&count| match count {
            1 => "Login refused: too many wrong passwords".to_owned(),
            n => format!("Login refused: too many wrong passwords ({n} times)"),
        })
        .collect();
    let refused = |rows: &[ActivityRow]| -> Vec<String> {
        rows.iter()
            .filter(|row| row.kind == "throttled")
            .map(|row| row.what.clone())
            .collect()
    };
    // A merged refusal changes a line's count, not the list's kinds: wait
    // for both.
    let rows = laptop
        .activity_once(|rows| kinds(rows) == expected && refused(rows) == counted)
        .await;
    let at = |n: usize| &rows[rows.len() - 1 - n];
    let (first_wrong, laptop_in, phone_in, ended, elsewhere_in, logged_out) =
        (at(0), at(1), at(2), at(3), at(4), at(5));
    assert_eq!(first_wrong.what, "Wrong password");
    assert_eq!(first_wrong.device.as_deref(), Some("Firefox on Linux"));
    assert!(first_wrong.alert && rows[0].alert, "{rows:#?}");
    assert_eq!(laptop_in.what, "Logged in with the password");
    assert_eq!(laptop_in.device.as_deref(), Some("Firefox on Linux"));
    assert!(laptop_in.this_browser && !laptop_in.alert, "{laptop_in:?}");
    assert_eq!(phone_in.device.as_deref(), Some("Safari on iPhone"));
    assert!(!phone_in.this_browser);
    assert_eq!(ended.what, "Logged out another browser");
    assert!(ended.this_browser, "ended from the laptop: {ended:?}");
    // The test client's own User-Agent, as latch summarises it.
    assert_eq!(elsewhere_in.device.as_deref(), Some("latch-tests"));
    assert_eq!(logged_out.what, "Logged out");
    for row in &rows {
        assert_eq!(row.address.as_deref(), Some("127.0.0.1"), "{row:?}");
        assert!(row.device.is_some(), "{row:?}");
    }
    // The laptop's login, and what it did there, are "This browser".
    assert_eq!(rows.iter().filter(|row| row.this_browser).count(), 2);

    // David's list is his own login, nothing of susan's.
    let davids = david.activity_once(|rows| !rows.is_empty()).await;
    assert_eq!(kinds(&davids), ["logged_in"], "{davids:#?}");

    // The table keeps what latch's events carry: no token, cookie or password.
    let db = database(demo).await;
    let stored = sqlx::query(
        "SELECT user_id, kind, COALESCE(detail, '') AS detail, COALESCE(device, '') AS device,
                COALESCE(client, '') AS client, COALESCE(session_id, '') AS session_id
         FROM activity",
    )
    .fetch_all(&db)
    .await
    .expect("the activity table");
    let secrets = [
        laptop.cookie("session").expect("a session cookie"),
        laptop.cookie("_remember").expect("a remember cookie"),
    ];
    for row in &stored {
        let user: String = row.get("user_id");
        assert!(user == "user001" || user == "user002", "{user}");
        for column in ["detail", "device", "client", "session_id"] {
            let value: String = row.get(column);
            assert!(
                !value.contains("hello") && !value.contains("guess"),
                "{value}"
            );
            for secret in &secrets {
                for part in secret.split('.').filter(|part| part.len() > 8) {
                    assert!(!value.contains(part), "a cookie in {column}: {value}");
                }
            }
        }
    }
    db.close().await;
}

/// A browser restored by "remember me" is recorded as such, with the
/// rotation of its cookie; it is asked for the password for the account
/// page, and a new password is recorded too.
#[tokio::test]
async fn remembered_logins_and_new_passwords_are_recorded() {
    let demo = start().await;
    let laptop = Browser::with_user_agent(&demo, FIREFOX);
    laptop.log_in("david", "bye", true).await;
    // The same browser after a restart: the same User-Agent, and only the
    // remember-me cookie.
    let restarted = Browser::with_user_agent(&demo, FIREFOX);
    let remember = laptop.cookie("_remember").expect("a remember cookie");
    restarted
        .jar
        .add_cookie_str(&format!("_remember={remember}; Path=/"), &demo.base);
    restarted.assert_home("david").await;
    restarted.assert_sent_to_login("/account").await;
    let change = "current_password=bye&new_password=a+new+password";
    let response = laptop.post("/account/password", change).await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    let rows = laptop
        .activity_once(|rows| {
            kinds(rows)
                == [
                    "password_changed",
                    "fresh_login_required",
                    "logged_in_remembered",
                    "remember_rotated",
                    "logged_in",
                ]
        })
        .await;
    assert_eq!(rows[0].what, "Password changed");
    assert!(rows[0].this_browser, "{rows:#?}");
    assert_eq!(rows[1].what, "Asked for the password again");
    assert_eq!(rows[2].what, "Logged in by \u{201c}remember me\u{201d}");
    // The restored login carries on the login of the browser it restores
    // (the same browser, restarted), and so its session id.
    assert!(rows[2].this_browser, "{rows:#?}");
    for row in &rows {
        assert_eq!(row.device.as_deref(), Some("Firefox on Linux"), "{row:?}");
    }
}

/// The list shows the last 20 entries, newest first; older ones stay in
/// the table (for 90 days).
#[tokio::test]
async fn recent_activity_shows_the_last_twenty() {
    let demo = start().await;
    let viewer = Browser::new(&demo);
    viewer.log_in("susan", "hello", false).await;
    let other = Browser::new(&demo);
    for _ in 0..11 {
        other.log_in("susan", "hello", false).await;
        let response = other.post("/logout", "").await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    }
    let db = database(&demo).await;
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM activity WHERE user_id = 'user001'")
                .fetch_one(&db)
                .await
                .expect("a count");
        if count == 23 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{count} entries");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    db.close().await;
    let rows = viewer.activity().await;
    assert_eq!(rows.len(), 20, "{rows:#?}");
    let expected: Vec<&str> = ["logged_out", "logged_in"]
        .into_iter()
        .cycle()
        .take(20)
        .collect();
    assert_eq!(kinds(&rows), expected);
    // The viewer's own login is the oldest entry: no longer shown.
    assert!(rows.iter().all(|row| !row.this_browser), "{rows:#?}");
}
