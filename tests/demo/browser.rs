//! The demo (`examples/login`) in a real browser: headless Chromium, driven
//! through ChromeDriver, logs in, is remembered across a restart, logs in
//! freshly, changes the password and logs out; two browsers (two
//! profiles) log in as one user, and one logs the other out from the
//! account page; and an admin reads her recent activity, makes an API
//! token that a script then uses, and ends another user's sessions from
//! the admin page; and a user turns two-step login on, then logs in with
//! an authenticator code and with a recovery code, which works once. Any
//! console error fails a test.

use crate::support::demo as demo_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use demo_support::{app, Demo};
use fantoccini::wd::{TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Url;
use serde_json::{json, Value};
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Fixed, so that a failing run can be replayed with the same cookies.
const SECRET_KEY: &str = "latch browser test: a fixed key of well over 32 bytes";

/// How long any one thing may take: a page, a start, an exit.
const WAIT: Duration = Duration::from_secs(10);
/// Starting Chromium for a new session is slower than a page.
const START_WAIT: Duration = Duration::from_secs(30);
/// The whole scenario, as a last resort against a hung WebDriver call.
const WHOLE_TEST: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(50);

const NEW_PASSWORD: &str = "a longer secret";

/// Chromium's switches: headless, and nothing that reaches for the network
/// beyond the loopback pages under test.
const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// One browser test at a time: each runs Chromium, which is heavy.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_is_remembered_logs_in_freshly_and_logs_out() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(WHOLE_TEST, scenario())
        .await
        .unwrap_or_else(|_| panic!("the browser scenario took over {WHOLE_TEST:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_another_out_from_the_account_page() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(WHOLE_TEST, two_browsers())
        .await
        .unwrap_or_else(|_| panic!("the two-browser scenario took over {WHOLE_TEST:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reads_her_activity_makes_a_token_and_ends_a_users_sessions() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(WHOLE_TEST, admin())
        .await
        .unwrap_or_else(|_| panic!("the admin scenario took over {WHOLE_TEST:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_turns_two_step_login_on_and_logs_in_with_codes() {
    let _turn = ONE_AT_A_TIME.lock().await;
    tokio::time::timeout(WHOLE_TEST, two_step())
        .await
        .unwrap_or_else(|_| panic!("the two-step scenario took over {WHOLE_TEST:?}"));
}

fn assert_installed() {
    for program in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: install Debian's chromium and chromium-driver \
             (.ci/run does)"
        );
    }
}

async fn scenario() {
    assert_installed();
    // Dropped in reverse order: the browser, ChromeDriver, then the profile,
    // which ends any Chromium left behind by a failure.
    let profile = Profile::new();
    let data = tempfile::tempdir().expect("a temporary directory");
    let demo = start_demo(&data).await;
    let blank = BlankPage::serve().await;
    let driver = ChromeDriver::start().await;
    let mut shots = Screenshots::new();

    // 1. An anonymous visit is sent to log in; the user logs in, ticking
    //    "remember me", and comes back to the home page.
    let browser = Browser::open(&driver, &profile, &demo, &blank).await;
    browser.go("/").await;
    browser
        .arrive("/login?next=/", "Please log in", &mut shots, "login")
        .await;
    browser.fill("#username", "susan").await;
    browser.fill("#password", "hello").await;
    browser.tick("input[name=remember_me]").await;
    browser.click("main form button[type=submit]").await;
    browser
        .arrive("/", "Hello, susan!", &mut shots, "home")
        .await;
    let cookies = browser.cookies().await;
    assert!(cookies.contains_key("session"), "{cookies:?}");
    let remember = cookies
        .get("_remember")
        .cloned()
        .unwrap_or_else(|| panic!("no _remember cookie after logging in: {cookies:?}"));

    // 2. The browser restarts with the same profile: the session cookie is
    //    gone, the remember cookie stays and restores the login.
    browser.close(&profile).await;
    let browser = Browser::open(&driver, &profile, &demo, &blank).await;
    // Read on the blank page, beside the demo on the same host, so that the
    // demo has seen no request of the restarted browser yet.
    let cookies = browser.cookies().await;
    assert!(
        !cookies.contains_key("session"),
        "the session cookie outlived the browser: {cookies:?}"
    );
    assert_eq!(
        cookies.get("_remember"),
        Some(&remember),
        "the remember cookie did not outlive the browser: {cookies:?}"
    );
    browser.go("/").await;
    browser
        .arrive("/", "Hello, susan!", &mut shots, "home-remembered")
        .await;
    let cookies = browser.cookies().await;
    assert!(cookies.contains_key("session"), "{cookies:?}");
    let rotated = cookies.get("_remember");
    assert!(
        rotated.is_some_and(|value| *value != remember),
        "a used remember cookie is rotated: {cookies:?}"
    );

    // 3. A restored login is not fresh: the fresh-login page asks for the
    //    password again, then shows.
    browser.go("/fresh").await;
    browser
        .arrive(
            "/login?next=/fresh",
            "Confirm it's you",
            &mut shots,
            "confirm",
        )
        .await;
    let username = browser.find("#username").await.prop("value").await;
    assert_eq!(username.ok().flatten().as_deref(), Some("susan"));
    browser.fill("#password", "hello").await;
    browser.click("main form button[type=submit]").await;
    browser
        .arrive(
            "/fresh",
            "This page needs a fresh login",
            &mut shots,
            "fresh",
        )
        .await;

    // 4. A new password on the account page, then logging out leaves the
    //    browser anonymous.
    browser.go("/account").await;
    browser
        .arrive("/account", "Change your password", &mut shots, "account")
        .await;
    browser.fill("#current_password", "hello").await;
    browser.fill("#new_password", NEW_PASSWORD).await;
    browser
        .click("form[action='/account/password'] button[type=submit]")
        .await;
    browser
        .arrive(
            "/account",
            "Your password is changed.",
            &mut shots,
            "password-changed",
        )
        .await;
    browser.click("form[action='/logout'] button").await;
    browser
        .arrive("/login?next=/", "Please log in", &mut shots, "logged-out")
        .await;
    let cookies = browser.cookies().await;
    assert!(
        !cookies.contains_key("_remember"),
        "a logged-out browser is not remembered: {cookies:?}"
    );
    browser.go("/").await;
    browser
        .arrive("/login?next=/", "Please log in", &mut shots, "anonymous")
        .await;
    browser.close(&profile).await;
}

/// Two browsers, each with a profile of its own, log in as susan; the
/// first sees both on its account page and logs the other out, which is
/// then anonymous at its next request.
async fn two_browsers() {
    assert_installed();
    let (first_profile, second_profile) = (Profile::new(), Profile::new());
    let data = tempfile::tempdir().expect("a temporary directory");
    let demo = start_demo(&data).await;
    let blank = BlankPage::serve().await;
    let driver = ChromeDriver::start().await;
    let mut shots = Screenshots::under("sessions");

    let first = Browser::open(&driver, &first_profile, &demo, &blank).await;
    let second = Browser::open(&driver, &second_profile, &demo, &blank).await;
    for (browser, name) in [(&first, "first"), (&second, "second")] {
        browser.go("/login").await;
        browser
            .arrive(
                "/login",
                "Please log in",
                &mut shots,
                &format!("{name}-login"),
            )
            .await;
        browser.fill("#username", "susan").await;
        browser.fill("#password", "hello").await;
        // The second is remembered: logging it out ends that too.
        if name == "second" {
            browser.tick("input[name=remember_me]").await;
        }
        browser.click("main form button[type=submit]").await;
        browser
            .arrive("/", "Hello, susan!", &mut shots, &format!("{name}-home"))
            .await;
    }

    // The first lists both browsers, itself marked, the second remembered.
    first.go("/account").await;
    first
        .arrive(
            "/account",
            "Where you're logged in",
            &mut shots,
            "two-sessions",
        )
        .await;
    let rows = first.session_rows().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].contains("This browser") != rows[1].contains("This browser"),
        "{rows:?}"
    );
    let other = rows
        .iter()
        .position(|row| !row.contains("This browser"))
        .expect("the other browser's row");
    assert!(rows[other].contains("remembered"), "{rows:?}");
    shots
        .take_element(&first.client, "ul.sessions", "two-sessions-list")
        .await;

    // It logs the other one out.
    let items = first
        .client
        .find_all(Locator::Css("ul.sessions li"))
        .await
        .expect("the list's rows");
    items[other]
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("the row's Log out button")
        .click()
        .await
        .expect("Log out clicked");
    first
        .arrive(
            "/account",
            "That browser is logged out",
            &mut shots,
            "one-session",
        )
        .await;
    let rows = first.session_rows().await;
    assert!(
        rows.len() == 1 && rows[0].contains("This browser"),
        "{rows:?}"
    );
    shots
        .take_element(&first.client, "ul.sessions", "one-session-list")
        .await;

    // The second is anonymous at its next request, remember cookie or not.
    second.go("/").await;
    second
        .arrive(
            "/login?next=/",
            "Please log in",
            &mut shots,
            "second-logged-out",
        )
        .await;
    let cookies = second.cookies().await;
    assert!(
        !cookies.contains_key("_remember"),
        "an ended session's remember cookie is deleted: {cookies:?}"
    );
    first.go("/").await;
    first
        .arrive("/", "Hello, susan!", &mut shots, "first-still-in")
        .await;
    first.close(&first_profile).await;
    second.close(&second_profile).await;
}

/// Susan, an admin, types a wrong password, logs in, and finds both on her
/// account page's "Recent activity"; she makes an API token, which a
/// script (reqwest) then uses for `/api/me`; on the admin page she sees
/// david's two browsers (reqwest clients) and ends their sessions, after
/// which each is sent to log in.
async fn admin() {
    assert_installed();
    let profile = Profile::new();
    let data = tempfile::tempdir().expect("a temporary directory");
    let demo = start_demo(&data).await;
    let blank = BlankPage::serve().await;
    let driver = ChromeDriver::start().await;
    let mut shots = Screenshots::under("admin");

    // David is logged in on a laptop (remembered) and a phone.
    let david_laptop = demo_support::Browser::with_user_agent(
        &demo,
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    );
    david_laptop.log_in("david", "bye", true).await;
    let david_phone = demo_support::Browser::with_user_agent(
        &demo,
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
         (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    );
    david_phone.log_in("david", "bye", false).await;

    // 1. Susan mistypes her password, then logs in.
    let browser = Browser::open(&driver, &profile, &demo, &blank).await;
    browser.go("/login").await;
    browser
        .arrive("/login", "Please log in", &mut shots, "login")
        .await;
    browser.fill("#username", "susan").await;
    browser.fill("#password", "hullo").await;
    browser.click("main form button[type=submit]").await;
    browser
        .arrive(
            "/login",
            "That username and password do not match",
            &mut shots,
            "wrong-password",
        )
        .await;
    browser.fill("#password", "hello").await;
    browser.click("main form button[type=submit]").await;
    browser
        .arrive("/", "Hello, susan!", &mut shots, "home")
        .await;

    // 2. Her account page lists both, newest first. (The hook writes
    //    them in the background: the page is loaded again until it does.)
    let deadline = Deadline::new("both entries in Recent activity", WAIT);
    let rows = loop {
        browser.go("/account").await;
        browser
            .arrive("/account", "Recent activity", &mut shots, "account")
            .await;
        let rows = browser.texts("ol.activity li").await;
        if rows.len() >= 2 {
            break rows;
        }
        deadline.pause(format!("{rows:?}")).await;
    };
    assert!(rows[0].contains("Logged in with the password"), "{rows:?}");
    assert!(rows[0].contains("This browser"), "{rows:?}");
    assert!(rows[1].contains("Wrong password"), "{rows:?}");
    for row in &rows {
        assert!(row.contains("127.0.0.1") && row.contains("Chrom"), "{row}");
    }
    shots
        .take_element(&browser.client, "ol.activity", "recent-activity")
        .await;

    // 3. She makes a token: shown once, on the page that made it.
    browser.fill("#token_name", "Backup script").await;
    browser
        .click("form[action='/account/tokens'] button[type=submit]")
        .await;
    browser
        .arrive(
            "/account/tokens",
            "it is shown only this once",
            &mut shots,
            "token-shown-once",
        )
        .await;
    let token = browser
        .find("#token")
        .await
        .text()
        .await
        .expect("the token's text");
    assert!(
        token.starts_with("latch_") && token.len() == 49,
        "{token:?}"
    );

    // 4. A script uses it.
    let response = demo_support::with_token(&demo, "/api/me", &token).await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let me: Value = response.json().await.expect("JSON");
    assert_eq!(
        me,
        json!({"id": "user001", "username": "susan", "is_admin": true, "via": "token"})
    );

    // 5. Back on the account page, the token is listed by name, used just
    //    now, and not shown.
    browser.click("a[href='/account#tokens']").await;
    browser
        .arrive("/account", "last used just now", &mut shots, "token-listed")
        .await;
    let page = browser.find("body").await.text().await.expect("the page");
    assert!(!page.contains(&token), "the token is shown once only");
    shots
        .take_element(&browser.client, "ul.tokens", "token-list")
        .await;

    // 6. The header's Admin link: both users, and where each is logged in.
    browser.click("header a[href='/admin']").await;
    browser
        .arrive("/admin", "End all sessions", &mut shots, "admin")
        .await;
    let davids = browser
        .texts("section[data-user='user002'] ul.sessions li")
        .await;
    assert_eq!(davids.len(), 2, "{davids:?}");
    assert!(
        davids.iter().any(|row| row.contains("Firefox on Linux"))
            && davids.iter().any(|row| row.contains("Safari on iPhone")),
        "{davids:?}"
    );
    shots
        .take_element(
            &browser.client,
            "section[data-user='user002']",
            "admin-david",
        )
        .await;

    // 7. She ends david's sessions: each of his browsers must log in again.
    browser
        .click("section[data-user='user002'] form button[type=submit]")
        .await;
    browser
        .arrive(
            "/admin",
            "Every session of david is ended",
            &mut shots,
            "admin-ended",
        )
        .await;
    let davids = browser.texts("section[data-user='user002']").await;
    assert!(davids[0].contains("Not logged in anywhere"), "{davids:?}");
    david_laptop.assert_sent_to_login("/").await;
    david_phone.assert_sent_to_login("/").await;
    david_laptop
        .restarted(&demo)
        .assert_sent_to_login("/")
        .await;
    browser.go("/").await;
    browser
        .arrive("/", "Hello, susan!", &mut shots, "susan-still-in")
        .await;
    browser.close(&profile).await;
}

/// Susan turns two-step login on from her account page, scanning nothing:
/// the test reads the key shown beside the QR code, as a person types it
/// into an authenticator app, and computes its codes. She logs out and in
/// with the app's code, then with a recovery code, which is refused the
/// second time.
async fn two_step() {
    assert_installed();
    let profile = Profile::new();
    let data = tempfile::tempdir().expect("a temporary directory");
    let demo = start_demo(&data).await;
    let blank = BlankPage::serve().await;
    let driver = ChromeDriver::start().await;
    let mut shots = Screenshots::under("two-step");

    // 1. Susan logs in with her password, and turns two-step login on.
    let browser = Browser::open(&driver, &profile, &demo, &blank).await;
    browser.go("/login").await;
    browser
        .arrive("/login", "Please log in", &mut shots, "login")
        .await;
    browser.log_in_form("susan", "hello").await;
    browser
        .arrive("/", "Hello, susan!", &mut shots, "home")
        .await;
    browser.go("/account").await;
    browser
        .arrive("/account", "Two-step login", &mut shots, "account")
        .await;
    shots
        .take_element(&browser.client, "#two-step", "two-step-off")
        .await;
    browser
        .click("form[action='/account/two-step'] button[type=submit]")
        .await;
    browser
        .arrive(
            "/account/two-step",
            "Scan this QR code",
            &mut shots,
            "enrolment",
        )
        .await;
    shots
        .take_element(&browser.client, "div.qr", "qr-code")
        .await;
    let size = browser
        .client
        .execute(
            "const box = document.querySelector('svg.qr').getBoundingClientRect(); \
             return [box.width, box.height];",
            Vec::new(),
        )
        .await
        .expect("the QR code's size");
    assert_eq!(size, json!([232, 232]), "the QR code is drawn");
    let key = browser
        .find("#secret")
        .await
        .text()
        .await
        .expect("the key's text");
    let mut app = demo_support::Authenticator::new(&key);

    // 2. A wrong code leaves it off; the app's code turns it on and shows
    //    the recovery codes, once.
    browser.fill("#code", &app.wrong_code()).await;
    browser
        .click("form[action='/account/two-step/enable'] button[type=submit]")
        .await;
    browser
        .arrive(
            "/account/two-step/enable",
            "That code is not right",
            &mut shots,
            "enrolment-wrong-code",
        )
        .await;
    browser.fill("#code", &app.next_code().await).await;
    browser
        .click("form[action='/account/two-step/enable'] button[type=submit]")
        .await;
    browser
        .arrive(
            "/account/two-step/enable",
            "Your recovery codes",
            &mut shots,
            "recovery-codes",
        )
        .await;
    let codes = browser.texts("ol.recovery-codes li").await;
    assert_eq!(codes.len(), 10, "{codes:?}");
    shots
        .take_element(&browser.client, "ol.recovery-codes", "recovery-code-list")
        .await;
    browser.click("a[href='/account#two-step']").await;
    browser
        .arrive(
            "/account",
            "You have 10 recovery codes left",
            &mut shots,
            "account-on",
        )
        .await;
    shots
        .take_element(&browser.client, "#two-step", "two-step-on")
        .await;

    // 3. Out, and in again: the password, then the app's code.
    browser.log_out().await;
    browser.log_in_form("susan", "hello").await;
    browser
        .arrive(
            "/login/two-step?next=/",
            "Enter your code",
            &mut shots,
            "code-page",
        )
        .await;
    browser.fill("#code", &app.next_code().await).await;
    browser.click("main form button[type=submit]").await;
    browser
        .arrive("/", "Hello, susan!", &mut shots, "home-with-code")
        .await;

    // 4. Out, and in with a recovery code.
    browser.log_out().await;
    browser.log_in_form("susan", "hello").await;
    browser
        .arrive(
            "/login/two-step?next=/",
            "Enter your code",
            &mut shots,
            "code-page-again",
        )
        .await;
    browser.fill("#code", &codes[0]).await;
    browser.click("main form button[type=submit]").await;
    browser
        .arrive(
            "/",
            "You logged in with a recovery code",
            &mut shots,
            "home-with-recovery-code",
        )
        .await;
    let deadline = Deadline::new("the logins in Recent activity", WAIT);
    let rows = loop {
        browser.go("/account").await;
        browser
            .arrive(
                "/account",
                "You have 9 recovery codes left",
                &mut shots,
                "account-nine-left",
            )
            .await;
        let rows = browser.texts("ol.activity li").await;
        if rows.len() >= 4 && rows[1].contains("a recovery code") {
            break rows;
        }
        deadline.pause(format!("{rows:?}")).await;
    };
    assert!(rows[0].contains("Recovery code used: 9 left"), "{rows:?}");
    assert!(
        rows.iter()
            .any(|row| row.contains("with the password and an authenticator code")),
        "{rows:?}"
    );
    shots
        .take_element(&browser.client, "ol.activity", "activity")
        .await;

    // 5. Out, and the same recovery code again: refused, and still out.
    browser.log_out().await;
    browser.log_in_form("susan", "hello").await;
    browser
        .arrive(
            "/login/two-step?next=/",
            "Enter your code",
            &mut shots,
            "code-page-third",
        )
        .await;
    browser.fill("#code", &codes[0]).await;
    browser.click("main form button[type=submit]").await;
    browser
        .arrive(
            // The form posts back to its own address, `next` encoded.
            "/login/two-step?next=%2F",
            "That code is not right",
            &mut shots,
            "recovery-code-refused",
        )
        .await;
    assert!(
        browser.texts("#tries").await[0].starts_with("4 tries left"),
        "the tries left are shown"
    );
    browser.go("/").await;
    browser
        .arrive("/login?next=/", "Please log in", &mut shots, "still-out")
        .await;
    browser.close(&profile).await;
}

/// The demo on a fresh SQLite file in `data`, with the fixed key.
async fn start_demo(data: &TempDir) -> Demo {
    let config = app::Config {
        secret_key: axum_latch::SecretKey::new(SECRET_KEY).expect("a long enough key"),
        database_url: format!("sqlite://{}", data.path().join("users.db").display()),
        redis_url: None,
        redis_prefix: app::DEFAULT_REDIS_PREFIX.to_owned(),
        remember_grace: axum_latch::remember::DEFAULT_GRACE,
        microdot_compat: None,
    };
    demo_support::serve(config).await
}

/// A port nobody listens on just now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// A bounded wait: each poll that finds things not ready yet pauses
/// briefly, or panics with what was awaited and last seen once `limit` is up.
struct Deadline {
    what: String,
    limit: Duration,
    at: Instant,
}

impl Deadline {
    fn new(what: impl Into<String>, limit: Duration) -> Self {
        Self {
            what: what.into(),
            limit,
            at: Instant::now() + limit,
        }
    }

    async fn pause(&self, last_seen: impl std::fmt::Display) {
        if Instant::now() >= self.at {
            panic!(
                "waited {:?} for {}; last seen: {last_seen}",
                self.limit, self.what
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// ChromeDriver, a child process on a port of its own, killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {CHROMEDRIVER}: {error}"));
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("a client");
        let status = format!("{}status", driver.url);
        let deadline = Deadline::new("ChromeDriver to answer", WAIT);
        loop {
            if let Ok(Some(exit)) = driver.child.try_wait() {
                panic!("ChromeDriver exited at start: {exit}");
            }
            let body = match client.get(&status).send().await {
                Ok(response) => response.json::<Value>().await.map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match body {
                Ok(body) if body["value"]["ready"] == true => return driver,
                Ok(body) => deadline.pause(body).await,
                Err(error) => deadline.pause(error).await,
            }
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Chromium's profile directory, kept across a restart as a user's is.
struct Profile {
    dir: TempDir,
}

impl Profile {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn arg(&self) -> String {
        format!("--user-data-dir={}", self.dir.path().display())
    }

    /// The processes of a Chromium running on this profile.
    fn chromium_pids(&self) -> Vec<String> {
        let arg = self.arg();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let pid = entry.ok()?.file_name().into_string().ok()?;
                pid.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                cmdline
                    .split(|&b| b == 0)
                    .any(|part| part == arg.as_bytes())
                    .then_some(pid)
            })
            .collect()
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        // Only after a failure is anything left: a closed session's Chromium
        // has exited already.
        for pid in self.chromium_pids() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// A page beside the demo, on the same host but another port: browsers
/// keep cookies per host, so the demo's cookies can be read there without
/// a request to the demo.
struct BlankPage {
    url: Url,
    server: tokio::task::JoinHandle<()>,
}

impl BlankPage {
    async fn serve() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("the port");
        let page = axum::response::Html(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Beside the demo</title></head>\
             <body><p>Not the demo: a blank page for reading cookies.</p></body></html>",
        );
        let router = axum::Router::new().fallback(move || async move { page });
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the page serves");
        });
        Self {
            url: format!("http://{address}/").parse().expect("a URL"),
            server,
        }
    }
}

impl Drop for BlankPage {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The PNGs of the pages visited, numbered in order.
struct Screenshots {
    dir: PathBuf,
    taken: u32,
}

impl Screenshots {
    /// `target/browser-screenshots/`, emptied of an earlier run's PNGs.
    fn new() -> Self {
        Self::at(Self::root())
    }

    /// `target/browser-screenshots/<name>/`, emptied of an earlier run's PNGs.
    fn under(name: &str) -> Self {
        Self::at(Self::root().join(name))
    }

    fn root() -> PathBuf {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory");
        target.join("browser-screenshots")
    }

    fn at(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("the screenshot directory");
        for entry in std::fs::read_dir(&dir).expect("the screenshot directory") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|ext| ext == "png") {
                std::fs::remove_file(&path).expect("an old screenshot removed");
            }
        }
        Self { dir, taken: 0 }
    }

    async fn take(&mut self, client: &Client, name: &str) {
        let png = client.screenshot().await.expect("a screenshot");
        self.save(png, name);
    }

    /// A screenshot of the element `css` alone, such as a list below the
    /// fold: scrolled into view first, since Chromium shoots only what the
    /// window shows.
    async fn take_element(&mut self, client: &Client, css: &str, name: &str) {
        client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'center'})",
                vec![json!(css)],
            )
            .await
            .unwrap_or_else(|error| panic!("{css} not scrolled into view: {error}"));
        let element = client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no {css} on the page: {error}"));
        let png = element.screenshot().await.expect("a screenshot");
        self.save(png, name);
    }

    fn save(&mut self, png: Vec<u8>, name: &str) {
        self.taken += 1;
        let path = self.dir.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, png).expect("the screenshot saved");
    }
}

/// ChromeDriver's log of the browser's console (and of failed loads): the
/// entries since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &Url,
        session_id: Option<&str>,
    ) -> Result<Url, <Url as std::str::FromStr>::Err> {
        let session = session_id.expect("a session");
        base_url.join(&format!("session/{session}/se/log"))
    }

    fn method_and_body(&self, _: &Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// One session of Chromium, looking at the demo.
struct Browser {
    client: Client,
    base: Url,
}

impl Browser {
    /// Starts Chromium on `profile`, and checks on the blank page that its
    /// console errors reach the test. It is left on the blank page.
    async fn open(
        driver: &ChromeDriver,
        profile: &Profile,
        demo: &Demo,
        blank: &BlankPage,
    ) -> Self {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|&arg| arg.to_owned()).collect();
        args.push(profile.arg());
        let Value::Object(capabilities) = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }) else {
            unreachable!("an object")
        };
        let mut builder = ClientBuilder::native();
        let connect = builder.capabilities(capabilities).connect(&driver.url);
        let client = tokio::time::timeout(START_WAIT, connect)
            .await
            .unwrap_or_else(|_| panic!("Chromium did not start within {START_WAIT:?}"))
            .expect("a WebDriver session");
        let timeouts = TimeoutConfiguration::new(Some(WAIT), Some(WAIT), Some(Duration::ZERO));
        client
            .update_timeouts(timeouts)
            .await
            .expect("timeouts set");
        client
            .set_window_size(1000, 1000)
            .await
            .expect("the window sized");
        let browser = Self {
            client,
            base: demo.base.clone(),
        };
        browser
            .client
            .goto(blank.url.as_str())
            .await
            .expect("the blank page");
        let marker = "latch browser test: console check";
        browser
            .client
            .execute("console.error(arguments[0])", vec![json!(marker)])
            .await
            .expect("a script run");
        let mut seen = Vec::new();
        let deadline = Deadline::new("the console check in the browser log", WAIT);
        loop {
            seen.extend(browser.log().await);
            if seen.iter().any(|entry| entry.to_string().contains(marker)) {
                break;
            }
            deadline.pause(format!("{seen:?}")).await;
        }
        let others: Vec<_> = seen
            .iter()
            .filter(|entry| is_error(entry) && !entry.to_string().contains(marker))
            .collect();
        assert!(others.is_empty(), "console errors at start: {others:#?}");
        browser
    }

    /// Ends the session, and waits until Chromium has exited: only then is
    /// its profile (and the cookies in it) written and free.
    async fn close(self, profile: &Profile) {
        self.assert_no_console_errors("closing").await;
        tokio::time::timeout(WAIT, self.client.close())
            .await
            .unwrap_or_else(|_| panic!("the session did not close within {WAIT:?}"))
            .expect("the session closed");
        let deadline = Deadline::new("Chromium to exit", WAIT);
        loop {
            let pids = profile.chromium_pids();
            if pids.is_empty() {
                break;
            }
            deadline.pause(format!("processes {pids:?}")).await;
        }
    }

    /// The log entries since the last read.
    async fn log(&self) -> Vec<Value> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("the browser log");
        match entries {
            Value::Array(entries) => entries,
            other => panic!("the browser log is not a list: {other}"),
        }
    }

    async fn assert_no_console_errors(&self, when: &str) {
        let errors: Vec<Value> = self.log().await.into_iter().filter(is_error).collect();
        assert!(errors.is_empty(), "console errors at {when}: {errors:#?}");
    }

    /// Opens a path of the demo.
    async fn go(&self, path: &str) {
        let url = self.base.join(path).expect("a URL");
        self.client
            .goto(url.as_str())
            .await
            .unwrap_or_else(|error| panic!("{path} did not load: {error}"));
    }

    /// Waits for the demo's page at `path` (with its query) that shows
    /// `text`, checks the console, and takes a screenshot.
    async fn arrive(&self, path: &str, text: &str, shots: &mut Screenshots, name: &str) {
        let deadline = Deadline::new(format!("{path} showing {text:?}"), WAIT);
        while let Err(seen) = self.shows(path, text).await {
            deadline.pause(seen).await;
        }
        self.assert_no_console_errors(path).await;
        shots.take(&self.client, name).await;
    }

    /// Whether the page loaded is `path` and shows `text`; if not, what it is.
    async fn shows(&self, path: &str, text: &str) -> Result<(), String> {
        let url = self.client.current_url().await.map_err(|e| e.to_string())?;
        let here = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let state = self
            .client
            .execute("return document.readyState", Vec::new())
            .await
            .map_err(|e| e.to_string())?;
        let body = match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(error) => error.to_string(),
        };
        if here == path && state == "complete" && body.contains(text) {
            Ok(())
        } else {
            Err(format!("{url} ({state}): {body}"))
        }
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no {css} on the page: {error}"))
    }

    /// Types into a field, as a user does.
    async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("the field cleared");
        field.send_keys(text).await.expect("the text typed");
    }

    /// Fills the login form and sends it (without "remember me").
    async fn log_in_form(&self, username: &str, password: &str) {
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("main form button[type=submit]").await;
    }

    /// The header's "Log out" button: the login page follows.
    async fn log_out(&self) {
        self.click("form[action='/logout'] button").await;
        let deadline = Deadline::new("the login page after logging out", WAIT);
        while let Err(seen) = self.shows("/login?next=/", "Please log in").await {
            deadline.pause(seen).await;
        }
    }

    /// Ticks a checkbox.
    async fn tick(&self, css: &str) {
        let checkbox = self.find(css).await;
        if !checkbox.is_selected().await.expect("the checkbox state") {
            checkbox.click().await.expect("the checkbox clicked");
        }
        assert!(checkbox.is_selected().await.expect("the checkbox state"));
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|error| panic!("{css} not clicked: {error}"));
    }

    /// The text of each row of "Where you're logged in".
    async fn session_rows(&self) -> Vec<String> {
        let items = self
            .client
            .find_all(Locator::Css("ul.sessions li"))
            .await
            .expect("the list's rows");
        let mut rows = Vec::new();
        for item in items {
            rows.push(item.text().await.expect("a row's text"));
        }
        rows
    }

    /// The text of each element `css` finds.
    async fn texts(&self, css: &str) -> Vec<String> {
        let elements = self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css} not found: {error}"));
        let mut texts = Vec::new();
        for element in elements {
            texts.push(element.text().await.expect("an element's text"));
        }
        texts
    }

    /// The cookies the browser keeps for the current page's host, by name.
    async fn cookies(&self) -> std::collections::BTreeMap<String, String> {
        self.client
            .get_all_cookies()
            .await
            .expect("the cookies")
            .into_iter()
            .map(|cookie| (cookie.name().to_owned(), cookie.value().to_owned()))
            .collect()
    }
}

/// A console error, or a failed load, other than the favicon's.
fn is_error(entry: &Value) -> bool {
    entry["level"] == "SEVERE" && !is_missing_favicon(entry)
}

/// The browser asks every site for `/favicon.ico`, which the demo does not
/// have: a 404 that no page of the demo asked for, so not the demo's error.
fn is_missing_favicon(entry: &Value) -> bool {
    let message = entry["message"].as_str().unwrap_or_default();
    entry["source"] == "network"
        && message.contains("/favicon.ico ")
        && message.contains("status of 404")
}
