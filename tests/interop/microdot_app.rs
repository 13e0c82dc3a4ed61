//! latch against the real Microdot: the demo in Microdot interop mode
//! (`MICRODOT_COMPAT=1`) beside a small Microdot app (`tests/microdot/app.py`,
//! the seed example's users and routes) with the same secret key, driven
//! over HTTP by one browser (cookies are per host, not per port, so both
//! apps on 127.0.0.1 see the same cookies, as they would behind one site).
//!
//! Microdot and PyJWT come from PyPI, pinned, into a virtualenv under
//! `target/microdot-venv` that the first test run makes (set
//! `MICRODOT_PYTHON` to use another Python that has them).

use crate::support::demo as demo_support;

use demo_support::*;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The key both apps sign with.
const SECRET: &str = "the secret key Microdot and latch share, 32+ bytes";

/// The versions the interop was checked with.
const PACKAGES: [&str; 2] = ["microdot==2.7.0", "PyJWT==2.15.1"];

/// A Python with Microdot and PyJWT, made once per test run.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(python) = std::env::var_os("MICRODOT_PYTHON") {
            return PathBuf::from(python);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let venv = target.join("microdot-venv");
        let python = venv.join("bin").join("python");
        let ready = venv.join(format!("ready-{}", PACKAGES.join("-")));
        if !ready.exists() {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
            run(Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(PACKAGES));
            std::fs::write(&ready, "").expect("mark the virtualenv ready");
        }
        python
    })
}

fn run(command: &mut Command) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

/// The Microdot app, killed when dropped.
struct Microdot {
    child: Child,
    base: Url,
}

impl Drop for Microdot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_microdot() -> Microdot {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/microdot/app.py");
    let child = Command::new(python())
        .arg(app)
        .env("SECRET_KEY", SECRET)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the Microdot app");
    let microdot = Microdot {
        child,
        base: format!("http://127.0.0.1:{port}/").parse().unwrap(),
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if let Ok(res) = client
            .get(microdot.base.join("/login").unwrap())
            .send()
            .await
        {
            assert_eq!(res.status(), StatusCode::OK);
            return microdot;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Microdot app did not start");
}

/// What the Microdot app answers `path` in this browser: the status and body.
async fn on_microdot(browser: &Browser, microdot: &Microdot, path: &str) -> (StatusCode, String) {
    let res = browser
        .client
        .get(microdot.base.join(path).unwrap())
        .send()
        .await
        .expect("Microdot answers");
    (res.status(), res.text().await.unwrap())
}

async fn microdot_post(browser: &Browser, microdot: &Microdot, path: &str, form: &str) {
    let res = browser
        .client
        .post(microdot.base.join(path).unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("Microdot answers");
    assert_eq!(res.status(), StatusCode::FOUND, "{path}");
}

#[tokio::test]
async fn a_login_on_microdot_is_a_login_on_latch() {
    let microdot = start_microdot().await;
    let demo = start_microdot_compat(SECRET).await;
    let browser = Browser::new(&demo);
    microdot_post(
        &browser,
        &microdot,
        "/login",
        "username=susan&password=hello",
    )
    .await;
    assert_eq!(
        on_microdot(&browser, &microdot, "/").await.1,
        "Hello, susan!"
    );
    // The password login is fresh on Microdot.
    assert_eq!(
        on_microdot(&browser, &microdot, "/fresh").await.1,
        "Fresh, susan!"
    );
    browser.assert_home("susan").await;
    // latch adopts it as a login, never as a fresh one: it cannot tell
    // when (or whether) the password was typed.
    browser.assert_sent_to_login("/fresh").await;
    // latch re-issued the session as its own token; Microdot still reads
    // it, and now sees it is not fresh either.
    assert_eq!(
        on_microdot(&browser, &microdot, "/").await.1,
        "Hello, susan!"
    );
    assert_eq!(
        on_microdot(&browser, &microdot, "/fresh").await.0,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn a_microdot_remember_cookie_restores_a_login_on_latch_that_is_not_fresh() {
    let microdot = start_microdot().await;
    let demo = start_microdot_compat(SECRET).await;
    let browser = Browser::new(&demo);
    let form = "username=david&password=bye&remember_me=on";
    microdot_post(&browser, &microdot, "/login", form).await;
    let restarted = browser.restarted(&demo);
    restarted.assert_home("david").await;
    restarted.assert_sent_to_login("/fresh").await;
    // The remember cookie latch put back still works on Microdot, not fresh there either.
    let microdot_side = restarted.restarted(&demo);
    assert_eq!(
        on_microdot(&microdot_side, &microdot, "/").await.1,
        "Hello, david!"
    );
    let (status, _) = on_microdot(&microdot_side, &microdot, "/fresh").await;
    assert_eq!(status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_login_on_latch_is_a_login_on_microdot() {
    let microdot = start_microdot().await;
    let demo = start_microdot_compat(SECRET).await;
    let browser = Browser::new(&demo);
    browser.log_in("susan", "hello", true).await;
    assert_eq!(
        on_microdot(&browser, &microdot, "/").await.1,
        "Hello, susan!"
    );
    assert_eq!(
        on_microdot(&browser, &microdot, "/fresh").await.1,
        "Fresh, susan!"
    );

    // After a restart, Microdot restores the login from latch's remember cookie.
    let restarted = browser.restarted(&demo);
    assert_eq!(
        on_microdot(&restarted, &microdot, "/").await.1,
        "Hello, susan!"
    );
    let (status, _) = on_microdot(&restarted, &microdot, "/fresh").await;
    assert_eq!(
        status,
        StatusCode::FOUND,
        "a remembered login is not fresh on Microdot"
    );
    restarted.assert_sent_to_login("/fresh").await;
}

#[tokio::test]
async fn a_logout_on_latch_leaves_nothing_microdot_accepts() {
    let microdot = start_microdot().await;
    let demo = start_microdot_compat(SECRET).await;
    let browser = Browser::new(&demo);
    let form = "username=susan&password=hello&remember_me=on";
    microdot_post(&browser, &microdot, "/login", form).await;
    browser.assert_home("susan").await;
    let res = browser.post("/logout", "").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        on_microdot(&browser, &microdot, "/").await.0,
        StatusCode::FOUND
    );
    browser.assert_sent_to_login("/").await;
    assert!(browser.cookie("_remember").is_none());
}

#[tokio::test]
async fn a_logout_on_microdot_leaves_nothing_latch_accepts() {
    let microdot = start_microdot().await;
    let demo = start_microdot_compat(SECRET).await;
    let browser = Browser::new(&demo);
    browser.log_in("david", "bye", true).await;
    assert_eq!(
        on_microdot(&browser, &microdot, "/").await.1,
        "Hello, david!"
    );
    microdot_post(&browser, &microdot, "/logout", "").await;
    assert!(
        browser.cookie("_remember").is_none(),
        "Microdot deletes the remember cookie"
    );
    browser.assert_sent_to_login("/").await;
    assert_eq!(
        on_microdot(&browser, &microdot, "/").await.0,
        StatusCode::FOUND
    );
}

/// Runs Python with PyJWT on a script, returning what it prints.
fn pyjwt(script: &str) -> String {
    let output = Command::new(python())
        .args(["-c", script])
        .output()
        .expect("run Python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn tokens_made_by_pyjwt_verify_in_latch_and_the_other_way_round() {
    let claims = json!({"_user_id": "user001", "_fresh": true, "n": 1.5, "exp": 4_000_000_000u64});
    let made_by_pyjwt = pyjwt(&format!(
        "import jwt, json; print(jwt.encode(json.loads({claims:?}), {SECRET:?}, algorithm='HS256'))",
        claims = claims.to_string()
    ));
    let verified = jwt::decode(made_by_pyjwt.trim(), &[SECRET]).expect("PyJWT's token verifies");
    assert_eq!(Value::Object(verified), claims);

    // The tests' own HS256 (as latch writes it): see tests/support/jwt.rs.
    let made_by_latch = jwt::encode(claims.as_object().unwrap(), SECRET);
    let decoded = pyjwt(&format!(
        "import jwt, json; print(json.dumps(jwt.decode({made_by_latch:?}, {SECRET:?}, algorithms=['HS256'])))"
    ));
    let decoded: Value = serde_json::from_str(&decoded).unwrap();
    assert_eq!(decoded, claims);

    // A token signed with another key is refused by both.
    let other = jwt::encode(
        claims.as_object().unwrap(),
        "some other key, also 32 bytes or more",
    );
    let refused = pyjwt(&format!(
        "import jwt\ntry:\n  jwt.decode({other:?}, {SECRET:?}, algorithms=['HS256']); print('accepted')\nexcept jwt.InvalidSignatureError: print('refused')"
    ));
    assert_eq!(refused.trim(), "refused");
    assert!(jwt::decode(&other, &[SECRET]).is_err());
}
