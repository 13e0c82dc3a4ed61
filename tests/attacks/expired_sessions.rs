//! Attack: replaying tokens past their time. A token whose `exp` has passed,
//! one that is not valid yet (`iat` or `nbf` in the future), one without a
//! usable `exp`, and a session kept alive past the absolute timeout are all
//! anonymous; and the positive controls: a session is renewed at most about
//! once a minute, renewal pushes `exp` back one idle timeout, and
//! `Login::fresh_within` lets only recent password logins be fresh.
//!
//! Time is driven by hand-signing tokens with older (or newer) `iat`,
//! `exp` and `_login_at`, never by sleeping.

use crate::support;

use axum::http::StatusCode;
use axum::Router;
use axum_latch::Session;
use serde_json::{json, Value};
use std::time::Duration;
use support::attack::*;
use support::jwt::{self, Claims};
use support::{key, Client, KEY};

/// `claims` with `edits` applied, signed with the app's key.
fn signed_with(claims: &Claims, edits: &[(&str, Value)]) -> String {
    let mut claims = claims.clone();
    for (name, value) in edits {
        claims.insert((*name).to_owned(), value.clone());
    }
    signed_claims(&claims)
}

/// The claims of a token the app issued.
fn claims_of(token: &str) -> Claims {
    jwt::decode(token, &[KEY]).expect("the token is signed with the test key")
}

// ---------------------------------------------------------------------------
// exp, iat and nbf: both tokens
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_token_is_anonymous() {
    let now = jwt::now();
    assert_forgeries_refused(reasons::EXPIRED, |t, _| {
        [
            ("exp a second ago", json!(now - 1)),
            ("exp ten seconds ago", json!(now - 10)),
            ("exp half a second ago, as a float", json!(now as f64 - 0.5)),
            ("exp equal to now", json!(now)),
            ("exp in 1970", json!(0)),
            ("exp negative", json!(-1)),
        ]
        .into_iter()
        .map(|(name, exp)| forged(name, signed_with(t.claims, &[("exp", exp)])))
        .collect()
    })
    .await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_anonymous() {
    let now = jwt::now();
    assert_forgeries_refused(reasons::NOT_YET_VALID, |t, _| {
        [
            ("issued an hour ahead", "iat", json!(now + 3600)),
            ("issued a day ahead", "iat", json!(now + DAY)),
            (
                "issued two minutes ahead, past the clock leeway",
                "iat",
                json!(now + 120),
            ),
            ("iat a word", "iat", json!("yesterday")),
            ("not valid before tomorrow", "nbf", json!(now + DAY)),
            (
                "not valid for two minutes, past the clock leeway",
                "nbf",
                json!(now + 120),
            ),
            ("nbf null", "nbf", Value::Null),
        ]
        .into_iter()
        .map(|(name, claim, value)| {
            let exp = json!(now + 2 * DAY);
            forged(name, signed_with(t.claims, &[(claim, value), ("exp", exp)]))
        })
        .collect()
    })
    .await;
}

#[tokio::test]
async fn a_token_without_a_usable_exp_is_anonymous() {
    assert_forgeries_refused(reasons::NO_EXPIRY, |t, _| {
        let mut cases: Vec<Forgery> = [
            ("exp a numeric string", json!("4102444800")),
            ("exp a word", json!("tomorrow")),
            ("exp null", Value::Null),
            ("exp a boolean", json!(true)),
            ("exp an array", json!([4102444800u64])),
        ]
        .into_iter()
        .map(|(name, exp)| forged(name, signed_with(t.claims, &[("exp", exp)])))
        .collect();
        cases.push(forged(
            "exp missing",
            signed_claims(&without(t.claims, "exp")),
        ));
        cases.push(
            forged(
                "exp too big for JSON (1e400)",
                signed_payload(&raw_payload(t.claims, "exp", "1e400")),
            )
            .because(reasons::PAYLOAD),
        );
        cases
    })
    .await;
}

#[tokio::test]
async fn control_an_iat_or_nbf_within_the_clock_leeway_is_accepted() {
    let app = app();
    let fx = fixtures(&app).await;
    let now = jwt::now();
    let soon = json!(now + 30);
    let session = signed_with(&fx.session_claims, &[("iat", soon.clone())]);
    assert_alice(&app, &[header("session", &session)], true, "iat in 30 s").await;
    let remember = signed_with(&fx.remember_claims, &[("nbf", soon)]);
    assert_alice(
        &app,
        &[header("_remember", &remember)],
        false,
        "nbf in 30 s",
    )
    .await;
}

// ---------------------------------------------------------------------------
// The idle timeout and renewal
// ---------------------------------------------------------------------------

/// A session left unused for longer than the idle timeout: its `exp`, one
/// idle timeout after its last renewal, has passed.
#[tokio::test]
async fn an_idle_session_whose_exp_passed_is_anonymous() {
    let users = Users::new();
    let short = app_with(
        &users,
        login_layer(&users),
        Session::new(key()).idle_timeout(Duration::from_secs(600)),
    );
    let default = app();
    let fx = fixtures(&default).await;
    let now = jwt::now();
    let idle = |app_name: &str, timeout: u64, unused_for: u64| {
        let iat = now - unused_for;
        Case::empty(
            format!("{app_name}: unused for {unused_for} s"),
            vec![header(
                "session",
                &signed_with(
                    &fx.session_claims,
                    &[("iat", json!(iat)), ("exp", json!(iat + timeout))],
                ),
            )],
            Some("session"),
        )
        .because(reasons::EXPIRED)
    };
    assert_all_anonymous(
        &default,
        vec![
            idle("default 1 day", DAY, DAY + 60),
            idle("default 1 day", DAY, 2 * DAY),
        ],
    )
    .await;
    assert_all_anonymous(&short, vec![idle("idle timeout 600 s", 600, 700)]).await;
}

#[tokio::test]
async fn control_a_session_used_within_the_idle_timeout_is_renewed_for_another() {
    let app = app();
    let fx = fixtures(&app).await;
    let now = jwt::now();
    let iat = now - DAY + 120;
    let almost_idle = signed_with(
        &fx.session_claims,
        &[("iat", json!(iat)), ("exp", json!(iat + DAY))],
    );
    let outcome = assert_alice(
        &app,
        &[header("session", &almost_idle)],
        true,
        "almost idle",
    )
    .await;
    let renewed = outcome
        .issued("session")
        .expect("a session used after more than a minute is renewed");
    let claims = claims_of(&renewed);
    assert!(
        claims["exp"].as_u64().unwrap() >= now + DAY,
        "renewal pushes exp a full idle timeout from now: {claims:?}"
    );
}

#[tokio::test]
async fn the_session_cookie_is_renewed_at_most_once_a_minute() {
    let mut client = Client::new(app());
    let res = client.post("/login/1").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let original = claims_of(&client.cookie("session").unwrap());
    let issued_at = |seconds_ago: u64| {
        let mut claims = original.clone();
        let iat = jwt::now() - seconds_ago;
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(iat + 86400));
        jwt::encode(&claims, KEY)
    };

    for young in [20, 45] {
        client.set_cookie("session", &issued_at(young));
        let res = client.get("/private").await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.set_cookies().is_empty(), "{young} s old: not re-issued");
    }

    client.set_cookie("session", &issued_at(120));
    let before = jwt::now();
    let res = client.get("/private").await;
    assert_eq!(res.status, StatusCode::OK);
    let renewed = res.set_cookie("session").expect("2 minutes old: re-issued");
    let claims = claims_of(renewed.value());
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat >= before, "renewed now");
    assert_eq!(
        claims["exp"].as_u64().unwrap(),
        iat + 86400,
        "for another idle day"
    );
    assert_eq!(claims["_user_id"], 1);
    assert_eq!(claims["_fresh"], true, "renewal keeps freshness");
    assert_eq!(
        claims["_login_at"], original["_login_at"],
        "and the login time"
    );

    let res = client.get("/private").await;
    assert!(res.set_cookies().is_empty(), "just renewed: not again");
}

// ---------------------------------------------------------------------------
// The absolute timeout
// ---------------------------------------------------------------------------

/// A session renewed by activity (its `iat` is now) whose password login is
/// older than the absolute timeout (default 14 days).
#[tokio::test]
async fn an_active_session_older_than_the_absolute_timeout_is_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let now = jwt::now();
    let cases = [
        ("a login of 15 days ago", json!(now - 15 * DAY)),
        ("a login of exactly 14 days ago", json!(now - 14 * DAY)),
        ("a login in 1970", json!(0)),
    ]
    .into_iter()
    .map(|(name, login_at)| {
        let token = signed_with(
            &fx.session_claims,
            &[("_login_at", login_at), ("iat", json!(now))],
        );
        Case::empty(name, vec![header("session", &token)], Some("session"))
            .because(reasons::ABSOLUTE_TIMEOUT)
    })
    .collect();
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn control_a_session_within_the_absolute_timeout_logs_in() {
    let app = app();
    let fx = fixtures(&app).await;
    let now = jwt::now();
    let token = signed_with(
        &fx.session_claims,
        &[("_login_at", json!(now - 13 * DAY)), ("iat", json!(now))],
    );
    assert_alice(&app, &[header("session", &token)], true, "13 days").await;
}

#[tokio::test]
async fn a_shorter_absolute_timeout_ends_sessions_sooner() {
    let users = Users::new();
    let app = app_with(
        &users,
        login_layer(&users),
        Session::new(key()).absolute_timeout(Duration::from_secs(3600)),
    );
    let fx = fixtures(&app).await;
    let now = jwt::now();
    let logged_in_ago = |seconds: u64| {
        let edits = [("_login_at", json!(now - seconds)), ("iat", json!(now))];
        header("session", &signed_with(&fx.session_claims, &edits))
    };
    assert_alice(
        &app,
        &[logged_in_ago(60)],
        true,
        "a minute into a 1 h timeout",
    )
    .await;
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "a login two hours old with a one-hour absolute timeout",
            vec![logged_in_ago(7200)],
            Some("session"),
        )
        .because(reasons::ABSOLUTE_TIMEOUT)],
    )
    .await;
}

/// Every login latch accepts has a login time, from which the absolute
/// timeout counts. latch always writes `_login_at` with a login; a login
/// without one would skip the absolute timeout, and renewal by activity
/// would keep it alive for ever. Only the login is refused: the session's
/// own data stays.
#[tokio::test]
async fn a_login_without_a_login_time_is_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let now = jwt::now();
    let no_time = without(&fx.session_claims, "_login_at");
    let cases = [
        ("issued now", now),
        ("renewed a minute ago, first issued a month ago", now - 60),
        (
            "issued 20 days ago, past the absolute timeout",
            now - 20 * DAY,
        ),
    ]
    .into_iter()
    .map(|(name, iat)| Case {
        name: format!("no _login_at, {name}"),
        cookies: vec![header(
            "session",
            &signed_with(&no_time, &[("iat", json!(iat)), ("exp", json!(now + DAY))]),
        )],
        deleted: None,
        data: Some("dark"),
        reason: Some(reasons::NO_LOGIN_TIME),
    })
    .collect();
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn a_login_time_that_is_not_a_number_is_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let cases = [
        ("a date string", json!("2024-01-01")),
        ("a word", json!("yesterday")),
        ("null", Value::Null),
        ("an array", json!([0])),
    ]
    .into_iter()
    .map(|(name, login_at)| {
        let token = signed_with(&fx.session_claims, &[("_login_at", login_at)]);
        Case::empty(
            format!("_login_at {name}"),
            vec![header("session", &token)],
            Some("session"),
        )
        .because(reasons::LOGIN_TIME)
    })
    .collect();
    assert_all_anonymous(&app, cases).await;
}

// ---------------------------------------------------------------------------
// fresh_within
// ---------------------------------------------------------------------------

const WINDOW: u64 = 600;

/// The app with `Login::fresh_within(10 minutes)`.
fn sudo_app() -> Router {
    let users = Users::new();
    let login = login_layer(&users).fresh_within(Duration::from_secs(WINDOW));
    app_with(&users, login, Session::new(key()))
}

/// `/fresh` with `cookie`: its status and `Location`.
async fn fresh_page(app: &Router, cookie: &str, token: &str) -> (StatusCode, Option<String>) {
    let response = send(app, "GET", "/fresh", &[header(cookie, token)]).await;
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (response.status(), location)
}

#[tokio::test]
async fn a_password_login_older_than_fresh_within_is_sent_to_log_in_again() {
    let app = sudo_app();
    let fx = fixtures(&app).await;
    let now = jwt::now();
    for (what, edits) in [
        (
            "a login 11 minutes ago",
            vec![("_login_at", json!(now - WINDOW - 60))],
        ),
        (
            "a login 2 days ago",
            vec![("_login_at", json!(now - 2 * DAY))],
        ),
    ] {
        let token = signed_with(&fx.session_claims, &edits);
        assert_eq!(
            fresh_page(&app, "session", &token).await,
            (StatusCode::FOUND, Some("/login?next=/fresh".to_owned())),
            "{what}: FreshUser sends it to log in again"
        );
        assert_alice(&app, &[header("session", &token)], false, what).await;
    }
    // A session with no login time is no login at all (see
    // `a_login_without_a_login_time_is_anonymous`), fresh or not.
    let token = signed_claims(&without(&fx.session_claims, "_login_at"));
    assert_eq!(
        fresh_page(&app, "session", &token).await,
        (StatusCode::FOUND, Some("/login?next=/fresh".to_owned())),
        "no _login_at"
    );
}

#[tokio::test]
async fn control_a_password_login_within_fresh_within_is_fresh() {
    let app = sudo_app();
    let fx = fixtures(&app).await;
    assert_alice(
        &app,
        &[header("session", &fx.session)],
        true,
        "just logged in",
    )
    .await;
    let now = jwt::now();
    let token = signed_with(
        &fx.session_claims,
        &[("_login_at", json!(now - WINDOW + 100))],
    );
    assert_eq!(
        fresh_page(&app, "session", &token).await,
        (StatusCode::OK, None),
        "a login of 8 minutes ago is fresh"
    );
}

#[tokio::test]
async fn a_remembered_login_is_never_fresh() {
    for (what, app) in [("fresh_within", sudo_app()), ("default", app())] {
        let fx = fixtures(&app).await;
        let outcome = assert_alice(
            &app,
            &[header("_remember", &fx.remember)],
            false,
            &format!("{what}: restored from the remember cookie"),
        )
        .await;
        // The session the restore made, with its `_login_at` of now.
        let session = outcome
            .issued("session")
            .expect("the restored login gets a session");
        assert_eq!(claims_of(&session)["_fresh"], false, "{what}");
        assert_alice(
            &app,
            &[header("session", &session)],
            false,
            &format!("{what}: the session of a restored login"),
        )
        .await;
    }
}
