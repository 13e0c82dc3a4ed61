//! Attack: the `Cookie` header itself. Oversized headers and values,
//! duplicated `session` and `_remember` cookies, bytes that are not UTF-8, a
//! session smuggled inside another cookie, odd cookie syntax, and any bytes
//! at all: the request is anonymous, never a panic, never a 5xx. With
//! `Session::host_prefix()`, the cookies are `__Host-session` and
//! `__Host-_remember`, and a plain `session` cookie (which a subdomain can
//! plant) is not latch's. And latch never writes a session cookie that a
//! browser would drop: `SessionData::insert` refuses it with
//! `SessionError::TooLarge`.

use crate::support;

use axum::http::{HeaderValue, StatusCode};
use axum::Router;
use axum_latch::session::MAX_COOKIE_LEN;
use axum_latch::{ConfigError, Session};
use proptest::prelude::*;
use support::attack::*;
use support::{is_removal, key, Client};

/// Makes the cookie-level attacks of `make` on both of alice's cookies, and
/// asserts each is anonymous. `make` gives (name, `Cookie` headers, whether
/// latch can tell it is one bad cookie and delete it).
async fn assert_cookie_attacks_anonymous(
    make: impl Fn(&Target<'_>, &Logins) -> Vec<(String, Vec<HeaderValue>, bool)>,
) {
    assert_cookie_attacks(None, make).await;
}

/// [`assert_cookie_attacks_anonymous`], and latch refuses each for `reason`.
async fn assert_cookie_attacks_refused(
    reason: &'static str,
    make: impl Fn(&Target<'_>, &Logins) -> Vec<(String, Vec<HeaderValue>, bool)>,
) {
    assert_cookie_attacks(Some(reason), make).await;
}

async fn assert_cookie_attacks(
    reason: Option<&'static str>,
    make: impl Fn(&Target<'_>, &Logins) -> Vec<(String, Vec<HeaderValue>, bool)>,
) {
    let (app, logins) = two_logins().await;
    let mut cases = Vec::new();
    for target in logins.alice.targets() {
        for (name, cookies, deletable) in make(&target, &logins) {
            cases.push(Case {
                reason,
                ..Case::empty(
                    format!("{}: {name}", target.cookie),
                    cookies,
                    deletable.then_some(target.cookie),
                )
            });
        }
    }
    assert_all_anonymous(&app, cases).await;
}

fn text(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap()
}

fn bytes(b: Vec<u8>) -> HeaderValue {
    HeaderValue::from_bytes(&b).unwrap()
}

#[tokio::test]
async fn no_cookie_at_all_is_anonymous() {
    let app = app();
    assert_all_anonymous(
        &app,
        vec![
            Case::empty("no Cookie header", vec![], None),
            Case::empty(
                "empty Cookie header",
                vec![HeaderValue::from_static("")],
                None,
            ),
            Case::empty(
                "only semicolons",
                vec![HeaderValue::from_static(";;; ; =; ==")],
                None,
            ),
            Case::empty(
                "other cookies only",
                vec![HeaderValue::from_static("a=1; b=2")],
                None,
            ),
            Case::empty(
                "cookie name in another case",
                vec![HeaderValue::from_static("SESSION=x; _REMEMBER=y")],
                None,
            ),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------
// Oversized
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_oversized_cookie_is_anonymous() {
    assert_cookie_attacks_anonymous(|t, _| {
        let name = t.cookie;
        let many_cookies: String = (0..10_000)
            .map(|i| format!("c{i}=v{i}; "))
            .collect::<String>()
            + &format!("{name}=garbage");
        assert!(many_cookies.len() > 100 * 1024, "a 100 KB header");
        let padded = with(t.claims, "pad", serde_json::json!("x".repeat(10 * 1024)));
        vec![
            (
                "100 KB header of many cookies".into(),
                vec![text(many_cookies)],
                true,
            ),
            (
                "10 KB value of garbage".into(),
                vec![text(format!("{name}={}", "a".repeat(10 * 1024)))],
                true,
            ),
            (
                "10 KB token, correctly signed".into(),
                vec![header(name, &signed_claims(&padded))],
                true,
            ),
        ]
    })
    .await;
}

#[tokio::test]
async fn control_a_good_session_among_100_kb_of_other_cookies_still_logs_in() {
    let app = app();
    let fx = fixtures(&app).await;
    let junk: String = (0..5000).map(|i| format!("c{i}=v{i}; ")).collect();
    let cookie = format!("{junk}session={}; {junk}", fx.session);
    assert!(cookie.len() > 100 * 1024);
    assert_alice(
        &app,
        &[HeaderValue::from_str(&cookie).unwrap()],
        true,
        "100 KB header",
    )
    .await;
}

// ---------------------------------------------------------------------------
// Duplicated cookies: which one is latch's cannot be told
// ---------------------------------------------------------------------------

/// Duplicates of the cookie of `t`, alice's, and bob's of the same kind.
fn duplicates(t: &Target<'_>, logins: &Logins) -> Vec<(String, Vec<HeaderValue>, bool)> {
    let (name, valid) = (t.cookie, t.token);
    let bobs = logins.bobs(t).0;
    [
        (
            "valid twice in one header",
            format!("{name}={valid}; {name}={valid}"),
        ),
        (
            "valid then garbage",
            format!("{name}={valid}; {name}=garbage"),
        ),
        (
            "garbage then valid",
            format!("{name}=garbage; {name}={valid}"),
        ),
        ("valid then empty", format!("{name}={valid}; {name}=")),
        ("empty then valid", format!("{name}=; {name}={valid}")),
        (
            "another user's planted before alice's",
            format!("{name}={bobs}; {name}={valid}"),
        ),
        (
            "another user's planted after alice's",
            format!("{name}={valid}; {name}={bobs}"),
        ),
    ]
    .into_iter()
    .map(|(case, cookie)| (case.to_owned(), vec![text(cookie)], false))
    .chain([
        (
            "valid in two Cookie headers".to_owned(),
            vec![
                text(format!("{name}={valid}")),
                text(format!("{name}={valid}")),
            ],
            false,
        ),
        (
            "valid and garbage in two Cookie headers".to_owned(),
            vec![text(format!("{name}={valid}")), text(format!("{name}=x"))],
            false,
        ),
    ])
    .collect()
}

/// The duplicates of the cookie `name` are anonymous, refused as such
/// (not for whatever is wrong with one of the copies).
async fn assert_duplicates_anonymous(name: &str) {
    assert_cookie_attacks_refused(reasons::DUPLICATED, |t, logins| {
        if t.cookie == name {
            duplicates(t, logins)
        } else {
            Vec::new()
        }
    })
    .await;
}

#[tokio::test]
async fn a_duplicated_session_cookie_is_anonymous() {
    assert_duplicates_anonymous("session").await;
}

#[tokio::test]
async fn a_duplicated_remember_cookie_is_anonymous() {
    assert_duplicates_anonymous("_remember").await;
}

/// The paths of the cookies a browser keeps for `name`, sorted.
fn paths_of(browser: &Client, name: &str) -> Vec<String> {
    let mut paths: Vec<String> = browser
        .cookies()
        .iter()
        .filter(|c| c.name == name)
        .map(|c| c.path.clone())
        .collect();
    paths.sort();
    paths
}

/// A `session` cookie planted at a deeper path (by a sibling subdomain, or a
/// page elsewhere on the site) is sent beside the real one to every page
/// under that path, which makes those pages anonymous. latch cannot tell the
/// two apart, so it deletes the name at every path the request could carry
/// it from: once the user logs in again, the pages work. (`__Host-`
/// cookies cannot be planted at all: see `Session::host_prefix`.)
#[tokio::test]
async fn a_session_cookie_planted_at_another_path_is_cleared() {
    let mut browser = Client::new(app());
    browser.post("/login/1").await;
    // A user who was not remembered (a remember cookie would log them back in).
    browser.remove_cookie("_remember");
    assert_eq!(browser.get("/private").await.status, StatusCode::OK);
    browser.plant_cookie("session", "planted", "/private");
    assert_eq!(paths_of(&browser, "session"), ["/", "/private"]);

    let res = browser.get("/private").await;
    assert_eq!(res.status, StatusCode::FOUND, "duplicated: anonymous");
    assert_eq!(
        paths_of(&browser, "session"),
        Vec::<String>::new(),
        "both deleted: {:?}",
        res.set_cookies()
    );
    browser.post("/login/1").await;
    assert_eq!(
        browser.get("/private").await.status,
        StatusCode::OK,
        "a new login works under the path again"
    );

    // A remembered user is logged back in at once, and the planted cookie
    // goes with the new session cookie.
    browser.plant_cookie("session", "planted", "/private");
    let res = browser.get("/private").await;
    assert_eq!(res.status, StatusCode::OK, "restored from _remember");
    assert_eq!(
        paths_of(&browser, "session"),
        ["/"],
        "{:?}",
        res.set_cookies()
    );
    assert_eq!(browser.get("/private").await.status, StatusCode::OK);
}

/// A sibling subdomain cannot plant a host-only cookie, only one for the
/// whole site (`Domain=example.com`), which the browser sends beside
/// latch's own. latch deletes the name for the request's host and each of
/// its parent domains too, so the user's next login stays.
#[tokio::test]
async fn a_session_cookie_planted_by_a_sibling_subdomain_is_cleared() {
    let mut browser = Client::on_host(app(), "app.example.com");
    // evil.example.com: document.cookie = "session=planted; Domain=example.com; Path=/"
    browser.plant_cookie_for_domain("session", "planted", "example.com", "/");
    browser.post("/login/1").await;
    // Not remembered: a remember cookie would log the user back in.
    browser.remove_cookie("_remember");
    let res = browser.get("/private").await;
    assert_eq!(res.status, StatusCode::FOUND, "duplicated: anonymous");
    assert_eq!(
        paths_of(&browser, "session"),
        Vec::<String>::new(),
        "every copy deleted: {:?}",
        res.set_cookies()
    );
    browser.post("/login/1").await;
    browser.remove_cookie("_remember");
    assert_eq!(
        browser.get("/private").await.status,
        StatusCode::OK,
        "the next login stays"
    );
}

/// The same for the remember cookie, which latch reads when the browser has
/// no session: a planted duplicate would keep the remembered user logged
/// out after every browser restart.
#[tokio::test]
async fn a_remember_cookie_planted_at_another_path_is_cleared() {
    let mut browser = Client::new(app());
    browser.post("/login/1").await;
    browser.remove_cookie("session");
    browser.plant_cookie("_remember", "planted", "/private");
    assert_eq!(paths_of(&browser, "_remember"), ["/", "/private"]);

    let res = browser.get("/private").await;
    assert_eq!(res.status, StatusCode::FOUND, "duplicated: anonymous");
    assert_eq!(
        paths_of(&browser, "_remember"),
        Vec::<String>::new(),
        "both deleted: {:?}",
        res.set_cookies()
    );
}

// ---------------------------------------------------------------------------
// Bytes and syntax
// ---------------------------------------------------------------------------

#[tokio::test]
async fn non_utf8_bytes_in_the_cookie_header_are_anonymous() {
    assert_cookie_attacks_anonymous(|t, _| {
        let (name, valid) = (t.cookie, t.token);
        vec![
            (
                "non-UTF-8 byte after the token".into(),
                vec![bytes(
                    [format!("{name}={valid}").into_bytes(), b"\xff".to_vec()].concat(),
                )],
                false,
            ),
            (
                "non-UTF-8 in another cookie".into(),
                vec![bytes(
                    [
                        b"x=\xc3\x28; ".to_vec(),
                        format!("{name}={valid}").into_bytes(),
                    ]
                    .concat(),
                )],
                false,
            ),
            (
                "non-UTF-8 in a second Cookie header".into(),
                vec![
                    text(format!("{name}={valid}")),
                    bytes(b"x=\xe2\x82".to_vec()),
                ],
                false,
            ),
            (
                "Latin-1 value".into(),
                vec![bytes(
                    [format!("{name}=").into_bytes(), b"caf\xe9".to_vec()].concat(),
                )],
                false,
            ),
        ]
    })
    .await;
}

#[tokio::test]
async fn odd_cookie_syntax_is_anonymous() {
    assert_cookie_attacks_anonymous(|t, _| {
        let (name, valid) = (t.cookie, t.token);
        vec![
            ("empty value".into(), vec![text(format!("{name}="))], true),
            ("name without =".into(), vec![text(name.to_owned())], false),
            (
                "quoted value".into(),
                vec![text(format!("{name}=\"{valid}\""))],
                true,
            ),
            (
                "percent-encoded dots".into(),
                vec![text(format!("{name}={}", valid.replace('.', "%2E")))],
                true,
            ),
            (
                "a percent-encoded name".into(),
                vec![text(format!(
                    "%{:02X}{}={valid}",
                    name.as_bytes()[0],
                    &name[1..]
                ))],
                false,
            ),
            (
                "the name with a suffix".into(),
                vec![text(format!("{name}x={valid}"))],
                false,
            ),
        ]
    })
    .await;
}

/// A `session` (or `_remember`) that is only part of another cookie's
/// value, quoted or not, is not latch's cookie, even with a good token in it.
#[tokio::test]
async fn a_cookie_smuggled_inside_another_cookie_s_value_is_ignored() {
    assert_cookie_attacks_anonymous(|t, _| {
        let (name, valid) = (t.cookie, t.token);
        [
            (
                "inside another cookie's quoted value",
                format!("x=\"{name}={valid}\""),
            ),
            (
                "as another cookie's unquoted value",
                format!("x={name}={valid}"),
            ),
            (
                "after a comma, the RFC 2965 separator",
                format!("x=1, {name}={valid}"),
            ),
            (
                "after a comma inside a quoted value",
                format!("x=\"a,{name}={valid}\""),
            ),
            (
                "after an escaped quote inside a quoted value",
                format!("x=\"a\\\"{name}={valid}\""),
            ),
            (
                "in a quoted value under $Version=1",
                format!("$Version=1; x=\"{name}={valid}\""),
            ),
            (
                "after a space inside a quoted value",
                format!("x=\"a {name}={valid}\""),
            ),
        ]
        .into_iter()
        .map(|(case, cookie)| (case.to_owned(), vec![text(cookie)], false))
        .collect()
    })
    .await;
}

/// The "cookie sandwich": a legacy (RFC 2109) parser would read
/// `x="start; session=…; y=end"` as one quoted value and lose the session
/// in it. latch splits at every `;` as RFC 6265 says, so the session between
/// the quotes (the browser's own cookie, sent by it) is still read, and no
/// other cookie's value is taken for it.
#[tokio::test]
async fn control_the_cookie_sandwich_does_not_hide_the_real_session() {
    let app = app();
    let fx = fixtures(&app).await;
    let sandwich = format!("$Version=1; x=\"start; session={}; y=end\"", fx.session);
    assert_alice(&app, &[text(sandwich)], true, "the cookie sandwich").await;
}

// ---------------------------------------------------------------------------
// The __Host- prefix
// ---------------------------------------------------------------------------

fn host_app() -> Router {
    let users = Users::new();
    let session = Session::new(key())
        .host_prefix()
        .expect("the defaults allow the __Host- prefix");
    app_with(&users, login_layer(&users), session)
}

/// Whether `set_cookie` has what the `__Host-` prefix needs: `Secure`,
/// `Path=/`, no `Domain`.
fn assert_host_attributes(set_cookie: &cookie::Cookie<'_>, context: &str) {
    assert_eq!(set_cookie.secure(), Some(true), "{context}: Secure");
    assert_eq!(set_cookie.path(), Some("/"), "{context}: Path=/");
    assert_eq!(set_cookie.domain(), None, "{context}: no Domain");
}

#[tokio::test]
async fn host_prefix_names_both_cookies_with_secure_path_and_no_domain() {
    let mut client = Client::new(host_app());
    let res = client.post("/login/1").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let mut names: Vec<String> = res
        .set_cookies()
        .iter()
        .map(|set| name_value(set).0)
        .collect();
    names.sort();
    assert_eq!(names, ["__Host-_remember", "__Host-session"]);
    for name in ["__Host-session", "__Host-_remember"] {
        let set = res.set_cookie(name).unwrap();
        assert_host_attributes(&set, name);
        assert!(!is_removal(&set), "{name} is set");
    }
    assert_eq!(client.get("/private").await.body, "private:alice");

    // The prefixed remember cookie alone restores the login, and rotates
    // under its prefixed name.
    client.remove_cookie("__Host-session");
    let res = client.get("/private").await;
    assert_eq!(res.body, "private:alice", "restored from __Host-_remember");
    let rotated = res
        .set_cookie("__Host-_remember")
        .expect("the remember cookie rotates");
    assert_host_attributes(&rotated, "the rotated remember cookie");

    // Logout deletes the remember cookie under its prefixed name, with the
    // attributes it was set with.
    let res = client.post("/logout").await;
    let deleted = res
        .set_cookie("__Host-_remember")
        .expect("logout deletes the remember cookie");
    assert!(is_removal(&deleted), "{deleted}");
    assert_host_attributes(&deleted, "the deletion");
    assert!(
        res.set_cookies()
            .iter()
            .all(|set| name_value(set).0.starts_with("__Host-")),
        "every cookie is prefixed: {:?}",
        res.set_cookies()
    );
}

/// A subdomain (or a plain-HTTP page of the site) can set a cookie called
/// `session` for the whole site, but not one called `__Host-session`. The
/// attacker plants a session of their own (signed with the same key: their
/// own login, login-CSRF style) under the plain names.
#[tokio::test]
async fn with_host_prefix_a_plain_cookie_planted_by_a_subdomain_is_ignored() {
    // The attacker's (bob's) own login, under the plain names.
    let planted = fixtures_of(&app(), 2).await;
    let app = host_app();
    let plant = |name: &str, token: &str| header(name, token);
    assert_all_anonymous(
        &app,
        vec![
            Case::empty(
                "a planted plain session",
                vec![plant("session", &planted.session)],
                None,
            ),
            Case::empty(
                "a planted plain remember cookie",
                vec![plant("_remember", &planted.remember)],
                None,
            ),
            Case::empty(
                "a planted session under a lower-case prefix",
                vec![plant("__host-session", &planted.session)],
                None,
            ),
            Case::empty(
                "a planted remember cookie under a lower-case prefix",
                vec![plant("__host-_remember", &planted.remember)],
                None,
            ),
        ],
    )
    .await;

    // Next to the victim's own prefixed login, the planted cookies change
    // nothing: no duplicate, no switch of user.
    let res = send(&app, "POST", "/login/1", &[]).await;
    let alice = issued(&res, "__Host-session").expect("the prefixed session");
    let cookie = format!(
        "session={}; __Host-session={alice}; _remember={}",
        planted.session, planted.remember
    );
    let res = send(&app, "GET", "/private", &[text(cookie)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res).await, "private:alice");
}

#[test]
fn host_prefix_refuses_the_settings_it_forbids() {
    let refused = |what: &str, result: Result<Session, ConfigError>| match result {
        Err(error @ ConfigError::HostPrefix(_)) => {
            assert!(error.to_string().contains("__Host-"), "{what}: {error}")
        }
        other => panic!("{what}: expected ConfigError::HostPrefix, got {other:?}"),
    };
    refused(
        "secure(false), then host_prefix()",
        Session::new(key()).secure(false).host_prefix(),
    );
    refused(
        "a path, then host_prefix()",
        Session::new(key()).path("/app").unwrap().host_prefix(),
    );
    refused(
        "a domain, then host_prefix()",
        Session::new(key())
            .domain("example.com")
            .unwrap()
            .host_prefix(),
    );
    let prefixed = || Session::new(key()).host_prefix().unwrap();
    refused("host_prefix(), then a path", prefixed().path("/app"));
    refused(
        "host_prefix(), then a domain",
        prefixed().domain("example.com"),
    );
    assert!(prefixed().path("/").is_ok(), "Path=/ is what it needs");
}

#[tokio::test]
async fn secure_false_after_host_prefix_drops_the_prefix() {
    let users = Users::new();
    let session = Session::new(key()).host_prefix().unwrap().secure(false);
    let mut client = Client::new(app_with(&users, login_layer(&users), session));
    let res = client.post("/login/1").await;
    let mut names: Vec<String> = Vec::new();
    for set in res.set_cookies() {
        names.push(name_value(&set).0);
        let cookie = cookie::Cookie::parse(set.clone()).unwrap();
        assert_eq!(cookie.secure(), None, "no Secure: {set}");
    }
    names.sort();
    assert_eq!(names, ["_remember", "session"], "no prefix without Secure");
    assert_eq!(client.get("/private").await.body, "private:alice");
}

// ---------------------------------------------------------------------------
// A session too large for a cookie
// ---------------------------------------------------------------------------

/// The largest `notes` that `POST /notes/{len}` accepts into a session
/// holding `cookies`, and the `name=value` of the session cookie it writes.
async fn largest_accepted(app: &Router, cookies: &[HeaderValue], name: &str) -> (usize, String) {
    let (mut fits, mut too_big) = (0, MAX_COOKIE_LEN);
    while too_big - fits > 1 {
        let len = (fits + too_big) / 2;
        let res = send(app, "POST", &format!("/notes/{len}"), cookies).await;
        match res.status() {
            StatusCode::OK => fits = len,
            StatusCode::PAYLOAD_TOO_LARGE => too_big = len,
            other => panic!("notes of {len} bytes: {other} {}", body_text(res).await),
        }
    }
    let res = send(app, "POST", &format!("/notes/{fits}"), cookies).await;
    let value = issued(&res, name).expect("an accepted value is written");
    (fits, format!("{name}={value}"))
}

/// A value that `insert` accepts comes back on the next request: a session
/// that would not fit in a browser's cookie (about 4 KB) is refused by
/// `insert` with `SessionError::TooLarge`, rather than written out and then
/// dropped by the browser, or refused by latch on the next request.
#[tokio::test]
async fn a_session_too_large_for_a_cookie_is_refused_at_insert() {
    let app = app();
    let res = send(&app, "POST", "/notes/9216", &[]).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(set_cookies(&res).is_empty(), "nothing is written");
    assert_eq!(
        body_text(res).await,
        format!("too large: notes {MAX_COOKIE_LEN}"),
        "TooLarge names the key and the limit"
    );

    for (what, app, name) in [
        ("plain", app.clone(), "session"),
        ("__Host-", host_app(), "__Host-session"),
    ] {
        let (largest, cookie) = largest_accepted(&app, &[], name).await;
        assert!(largest > 2500, "{what}: a few KB fit: {largest}");
        assert!(
            cookie.len() <= MAX_COOKIE_LEN,
            "{what}: the written cookie is {} bytes, over MAX_COOKIE_LEN",
            cookie.len()
        );
        let res = send(&app, "GET", "/notes", &[text(cookie)]).await;
        assert_eq!(
            body_text(res).await,
            largest.to_string(),
            "{what}: the largest accepted session reads back"
        );
    }

    // A refused insert leaves a logged-in session as it was.
    let fx = fixtures(&app).await;
    let session = header("session", &fx.session);
    let res = send(&app, "POST", "/notes/5000", std::slice::from_ref(&session)).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(set_cookies(&res).is_empty(), "the session is not rewritten");
    let outcome = assert_alice(&app, &[session], true, "after a refused insert").await;
    assert_eq!(outcome.data, (StatusCode::OK, "dark".to_owned()));
}

/// `MAX_COOKIE_LEN` is "the largest session cookie latch writes". A login
/// adds latch's own claims (`_user_id`, `_fresh`, `_auth`, `_login_at`) to
/// a session the app has already filled to what `insert` allows: the cookie
/// written must still be within the limit.
#[tokio::test]
async fn a_login_into_a_session_filled_to_the_limit_stays_within_max_cookie_len() {
    let app = app();
    let (largest, _) = largest_accepted(&app, &[], "session").await;
    // Room for the `theme` the login route stores first.
    let res = send(&app, "POST", &format!("/notes/{}", largest - 20), &[]).await;
    let full = header("session", &issued(&res, "session").unwrap());
    let res = send(&app, "POST", "/login/1", &[full]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the login succeeds");
    let cookie = format!("session={}", issued(&res, "session").unwrap());
    assert!(
        cookie.len() <= MAX_COOKIE_LEN,
        "the session cookie written at login is {} bytes, over MAX_COOKIE_LEN ({MAX_COOKIE_LEN})",
        cookie.len()
    );
}

// ---------------------------------------------------------------------------
// Any bytes
// ---------------------------------------------------------------------------

/// Any byte a `HeaderValue` accepts: tab, visible ASCII, space, and every
/// byte from 0x80 up.
fn header_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff]
}

/// Pieces that look like cookies and tokens, to get past the parser.
fn cookie_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("session=".to_owned()),
        Just("_remember=".to_owned()),
        Just("; ".to_owned()),
        Just(";".to_owned()),
        Just("=".to_owned()),
        Just(".".to_owned()),
        Just("\"".to_owned()),
        Just(" ".to_owned()),
        Just("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9".to_owned()),
        Just("eyJhbGciOiJub25lIn0".to_owned()),
        "[A-Za-z0-9_-]{0,60}",
        "[A-Za-z0-9_-]{43}",
        any::<Vec<u8>>().prop_map(b64),
        Just(b64(br#"{"_user_id":1,"exp":9999999999}"#)),
    ]
}

/// A value for the session cookie: junk, something shaped like a token, or
/// a real token with a piece replaced.
fn session_value() -> impl Strategy<Value = String> {
    let shaped = (
        "[A-Za-z0-9_-]{0,40}",
        "[A-Za-z0-9_-]{0,90}",
        "[A-Za-z0-9_-]{0,44}",
    )
        .prop_map(|(h, p, s)| format!("{h}.{p}.{s}"));
    let edited = (any::<prop::sample::Index>(), "[!#-+.-:<-~]{0,4}")
        .prop_map(|(at, piece)| {
            let token = &harness().fixtures.session;
            let at = at.index(token.len());
            format!("{}{piece}{}", &token[..at], &token[at + 1..])
        })
        .prop_filter("the token changed", |value| {
            *value != harness().fixtures.session
        });
    prop_oneof![
        2 => "[!#-+.-:<-~]{0,80}",
        3 => shaped,
        3 => edited,
        // Not text at all, inside the value.
        1 => proptest::collection::vec(0x80u8..=0xff, 1..8)
            .prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02X}")).collect()),
    ]
}

/// A `Cookie` header that names the session cookie, among others, as a
/// browser would send it; now and then with bytes that are not text.
fn cookie_header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let other = ("[a-z_]{1,10}", "[A-Za-z0-9._-]{0,20}").prop_map(|(n, v)| format!("{n}={v}"));
    let readable = (
        proptest::collection::vec(other.clone(), 0..3),
        session_value(),
        proptest::collection::vec(other, 0..3),
        prop::sample::select(&["; ", ";", ";  "][..]),
    )
        .prop_map(|(before, session, after, separator)| {
            let mut pairs = before;
            pairs.push(format!("session={session}"));
            pairs.extend(after);
            pairs.join(separator).into_bytes()
        });
    prop_oneof![
        9 => readable,
        1 => proptest::collection::vec(header_byte(), 0..2048),
    ]
}

/// Any `Cookie` header never panics and never authenticates. The headers
/// are mostly readable and carry a session cookie, so that most cases get
/// past the header's parsing to the session token's own checks.
#[test]
fn arbitrary_cookie_bytes_are_anonymous() {
    let reach = run_property(file!(), 256, cookie_header_bytes(), |bytes| {
        let cookie =
            HeaderValue::from_bytes(&bytes).expect("the strategy makes valid header bytes");
        let (result, rejections) = check_anonymous_why(&[cookie]);
        prop_assert_eq!(result, Ok(()));
        // The session cookie was found and its token checked.
        Ok(rejections.iter().any(|rejection| {
            rejection.starts_with("session cookie rejected") && !rejection.contains("not text")
        }))
    });
    reach.assert_at_least(0.5, "the session token's checks");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_cookie_like_text_is_anonymous(pieces in proptest::collection::vec(cookie_piece(), 0..40)) {
        let text = pieces.concat();
        let cookie = HeaderValue::from_str(&text).expect("pieces are visible ASCII");
        prop_assert_eq!(check_anonymous(&[cookie]), Ok(()));
    }
}

/// A user id too long for any cookie: the login is refused with an error
/// the app sees, and no session cookie the browser would drop is sent.
#[tokio::test]
async fn a_login_whose_user_id_cannot_fit_in_a_cookie_is_refused() {
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum_latch::{Auth, AuthError, Login, Remember, User};

    #[derive(Clone)]
    struct Huge;
    impl User for Huge {
        type Id = String;
        fn id(&self) -> String {
            "x".repeat(MAX_COOKIE_LEN)
        }
        fn auth_hash(&self) -> &[u8] {
            b"hash"
        }
    }
    async fn load(_: String) -> Result<Option<Huge>, std::convert::Infallible> {
        Ok(Some(Huge))
    }
    async fn login(auth: Auth<Huge>) -> axum::response::Response {
        match auth.login_user(&Huge, Remember::On).await {
            Err(AuthError::SessionTooLarge) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            other => other.into_response(),
        }
    }
    let app: Router = Router::new()
        .route("/login", post(login))
        .layer(Login::new(load))
        .layer(Session::new(key()));
    let response = send(&app, "POST", "/login", &[]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(issued(&response, "session"), None, "no session cookie");
    assert_eq!(issued(&response, "_remember"), None, "no remember cookie");
}
