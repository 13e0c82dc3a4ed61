//! The demo (`examples/login`) over real HTTP, for the `demo` and
//! `interop` suites: the demo's router served on a free port, and
//! `reqwest` clients that keep cookies as a browser does.

#[path = "../../examples/login/app.rs"]
pub mod app;

pub use super::jwt;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Response, StatusCode, Url};
use tempfile::TempDir;
use tokio::task::JoinHandle;

/// The demo, served on 127.0.0.1 on a port of its own.
pub struct Demo {
    pub base: Url,
    /// Its user database, for a test that looks at the tables.
    pub database_url: String,
    server: JoinHandle<()>,
    _dir: Option<TempDir>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The demo on its own fresh SQLite file, with a random key.
pub async fn start() -> Demo {
    start_with_grace(axum_latch::remember::DEFAULT_GRACE).await
}

/// [`start`], with this grace window for rotated remember-me cookies.
pub async fn start_with_grace(grace: std::time::Duration) -> Demo {
    let key = axum_latch::SecretKey::generate().expect("a random key");
    start_on_own_database(key, grace, false).await
}

/// The demo in Microdot interop mode (`MICRODOT_COMPAT=1`) with this secret
/// key, on its own fresh SQLite file.
pub async fn start_microdot_compat(secret: &str) -> Demo {
    let key = axum_latch::SecretKey::new(secret).expect("a long enough key");
    start_on_own_database(key, axum_latch::remember::DEFAULT_GRACE, true).await
}

async fn start_on_own_database(
    secret_key: axum_latch::SecretKey,
    grace: std::time::Duration,
    microdot_compat: bool,
) -> Demo {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("users.db").display());
    let config = app::Config {
        secret_key,
        database_url,
        redis_url: None,
        redis_prefix: app::DEFAULT_REDIS_PREFIX.to_owned(),
        remember_grace: grace,
        // Interop mode until a day from now.
        microdot_compat: microdot_compat
            .then(|| std::time::SystemTime::now() + std::time::Duration::from_secs(24 * 60 * 60)),
    };
    let mut demo = serve(config).await;
    demo._dir = Some(dir);
    demo
}

/// The demo with this configuration.
pub async fn serve(config: app::Config) -> Demo {
    let database_url = config.database_url.clone();
    let router = app::build(config).await.expect("the demo builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("the port");
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("the demo serves");
    });
    Demo {
        base: format!("http://{address}/").parse().expect("a URL"),
        database_url,
        server,
        _dir: None,
    }
}

/// Runs `scenario` on the demo with its own fresh SQLite file.
pub async fn on_sqlite(scenario: impl AsyncFnOnce(&Demo)) {
    scenario(&start().await).await;
}

/// Runs `scenario` on the demo with its user database (and its remember-me
/// tokens and sessions) in a PostgreSQL schema of its own, the kit's server
/// (`TEST_POSTGRES_URL`, or its own); the schema is dropped afterwards,
/// pass or fail. Without a server, the test says `SKIPPED`.
pub async fn on_postgres(scenario: impl AsyncFnOnce(&Demo)) {
    use futures_util::FutureExt as _;
    let Some(postgres_url) = super::backend::postgres_url() else {
        return;
    };
    let schema = super::backend::PgSchema::create(&postgres_url, 1).await;
    let name = &schema.name;
    let separator = if postgres_url.contains('?') { '&' } else { '?' };
    let database_url = format!("{postgres_url}{separator}options=-c%20search_path%3D{name}");
    let demo = serve(app::Config {
        secret_key: axum_latch::SecretKey::generate().expect("a random key"),
        database_url,
        redis_url: None,
        redis_prefix: app::DEFAULT_REDIS_PREFIX.to_owned(),
        remember_grace: axum_latch::remember::DEFAULT_GRACE,
        microdot_compat: None,
    })
    .await;
    let outcome = std::panic::AssertUnwindSafe(scenario(&demo))
        .catch_unwind()
        .await;
    drop(demo);
    schema.drop_schema().await;
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

/// A connection pool on the demo's user database, to look at its tables.
pub async fn database(demo: &Demo) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&demo.database_url)
        .await
        .expect("the demo's database")
}

/// `GET path` as a script would send it: no cookies, no browser headers,
/// and this `Authorization` header, if any.
pub async fn api_get(demo: &Demo, path: &str, authorization: Option<&str>) -> Response {
    let mut request = reqwest::Client::new().get(demo.base.join(path).expect("a path"));
    if let Some(value) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, value);
    }
    request.send().await.expect("a response")
}

/// [`api_get`] with `Authorization: Bearer <token>`.
pub async fn with_token(demo: &Demo, path: &str, token: &str) -> Response {
    api_get(demo, path, Some(&format!("Bearer {token}"))).await
}

/// A browser: a cookie jar, and redirects left for the test to follow.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    base: Url,
}

impl Browser {
    pub fn new(demo: &Demo) -> Self {
        Self::with_jar(demo, Arc::new(Jar::default()))
    }

    pub fn with_jar(demo: &Demo, jar: Arc<Jar>) -> Self {
        Self::build(demo, jar, "latch-tests")
    }

    /// A browser that sends this `User-Agent`.
    pub fn with_user_agent(demo: &Demo, user_agent: &str) -> Self {
        Self::build(demo, Arc::new(Jar::default()), user_agent)
    }

    fn build(demo: &Demo, jar: Arc<Jar>, user_agent: &str) -> Self {
        // A browser navigating: latch redirects only navigations to the
        // login page (others get a 401).
        let mut navigation = reqwest::header::HeaderMap::new();
        navigation.insert("sec-fetch-mode", "navigate".parse().unwrap());
        navigation.insert(
            reqwest::header::ACCEPT,
            "text/html,*/*;q=0.8".parse().unwrap(),
        );
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .default_headers(navigation)
            .cookie_provider(jar.clone())
            .redirect(redirect::Policy::none())
            .build()
            .expect("a client");
        Self {
            client,
            jar,
            base: demo.base.clone(),
        }
    }

    /// The same user's browser after a restart: the session cookie is gone,
    /// the `_remember` cookie (which has a Max-Age) is still there.
    pub fn restarted(&self, demo: &Demo) -> Self {
        let remember = self.cookie("_remember").expect("a remember cookie to keep");
        Self::with_remember(demo, &remember)
    }

    /// A browser that has only this `_remember` cookie: a restarted browser,
    /// or one with a copy of another's cookie.
    pub fn with_remember(demo: &Demo, remember: &str) -> Self {
        let jar = Arc::new(Jar::default());
        jar.add_cookie_str(&format!("_remember={remember}; Path=/"), &demo.base);
        Self::with_jar(demo, jar)
    }

    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a path")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("a response")
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Response {
        self.client
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("a response")
    }

    pub async fn login(
        &self,
        path: &str,
        username: &str,
        password: &str,
        remember: bool,
    ) -> Response {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("username", username)
            .append_pair("password", password);
        if remember {
            form.append_pair("remember_me", "on");
        }
        self.post(path, form.finish()).await
    }

    /// Logs in and checks that it worked.
    pub async fn log_in(&self, username: &str, password: &str, remember: bool) {
        let response = self.login("/login", username, password, remember).await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    }

    /// The value of a cookie the browser would send to the demo.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let header = self.jar.cookies(&self.base)?;
        header.to_str().ok()?.split("; ").find_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            (n == name).then(|| v.to_owned())
        })
    }

    /// Checks that `/` greets `username`.
    pub async fn assert_home(&self, username: &str) {
        let response = self.get("/").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.text().await.expect("a body");
        assert!(body.contains(&format!("Hello, {username}!")), "{body}");
    }

    /// Checks that `path` sends the browser to log in, coming back to `path`.
    pub async fn assert_sent_to_login(&self, path: &str) {
        let response = self.get(path).await;
        assert_redirect(&response, StatusCode::FOUND, &format!("/login?next={path}"));
    }

    /// Checks that `path` sends the browser to log in within [`SOON`],
    /// asking again every 20 ms: for an ending made on another instance,
    /// which this one hears of through the store's change feed.
    pub async fn assert_sent_to_login_soon(&self, path: &str) {
        let login = format!("/login?next={path}");
        let deadline = Instant::now() + SOON;
        loop {
            let response = self.get(path).await;
            let location = response.headers().get(LOCATION).cloned();
            if response.status() == StatusCode::FOUND
                && location.as_ref().and_then(|v| v.to_str().ok()) == Some(login.as_str())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} still answers {} after {SOON:?}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A browser that has only a copy of this one's session cookie, as
    /// whoever copied it would.
    pub fn session_copy(&self, demo: &Demo) -> Self {
        let session = self.cookie("session").expect("a session cookie to copy");
        let jar = Arc::new(Jar::default());
        jar.add_cookie_str(&format!("session={session}; Path=/"), &demo.base);
        Self::with_jar(demo, jar)
    }

    /// The rows of "Where you're logged in" on the account page.
    pub async fn sessions(&self) -> Vec<SessionRow> {
        let (status, page) = text(self.get("/account").await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        session_rows(&page)
    }

    /// The sessions list's row for this browser.
    pub async fn own_session(&self) -> SessionRow {
        let rows = self.sessions().await;
        rows.iter()
            .find(|row| row.current)
            .cloned()
            .unwrap_or_else(|| panic!("no row marked This browser: {rows:?}"))
    }

    /// A request made by the page's script (`fetch()`), with the browser's
    /// cookies: not a navigation.
    pub async fn fetch(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("sec-fetch-mode", "cors")
            .header(reqwest::header::ACCEPT, "*/*")
            .send()
            .await
            .expect("a response")
    }

    /// The lines of "Recent activity" on the account page, newest first.
    pub async fn activity(&self) -> Vec<ActivityRow> {
        let (status, page) = text(self.get("/account").await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        activity_rows(&page)
    }

    /// The lines of "Recent activity" once `ready` says they are all there:
    /// latch hands events to the demo's hook in the background, so the
    /// last ones may take a moment to be written. Asks again every 20 ms,
    /// for up to [`SOON`].
    pub async fn activity_once(&self, ready: impl Fn(&[ActivityRow]) -> bool) -> Vec<ActivityRow> {
        let deadline = Instant::now() + SOON;
        loop {
            let rows = self.activity().await;
            if ready(&rows) {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "the activity list is not as expected after {SOON:?}: {rows:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Makes an API token with this name on the account page, and returns
    /// it from the page that shows it once.
    pub async fn make_token(&self, name: &str) -> String {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("name", name)
            .finish();
        let (status, page) = text(self.post("/account/tokens", form).await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        between(&page, "<code id=\"token\">", "</code>").to_owned()
    }

    /// Turns two-step login on from the account page (the browser has a
    /// fresh login): the secret from the page that sets it up, as an
    /// authenticator app would read it (its first code used up), and the
    /// recovery codes shown once.
    pub async fn turn_on_two_step(&self) -> (Authenticator, Vec<String>) {
        let response = self.post("/account/two-step", "").await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/account/two-step");
        let (status, page) = text(self.get("/account/two-step").await).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let mut app = Authenticator::new(between(&page, "<code id=\"secret\">", "</code>"));
        let code = app.next_code().await;
        let (status, page) = text(
            self.post("/account/two-step/enable", code_form(&code))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let codes = recovery_codes(&page);
        assert_eq!(codes.len(), 10, "{page}");
        (app, codes)
    }

    /// The password form, for a user with two-step login on: checks that it
    /// leads to the code page, keeping `next`.
    pub async fn password_step(&self, username: &str, password: &str, next: &str) {
        let response = self
            .login(&format!("/login?next={next}"), username, password, false)
            .await;
        assert_redirect(
            &response,
            StatusCode::SEE_OTHER,
            &format!("/login/two-step?next={next}"),
        );
    }

    /// Posts the code page's form, with `next`.
    pub async fn enter_code(&self, next: &str, code: &str) -> Response {
        self.post(&format!("/login/two-step?next={next}"), code_form(code))
            .await
    }

    /// Logs in with the password and a code, and checks that it worked.
    pub async fn log_in_with_code(&self, username: &str, password: &str, code: &str) {
        self.password_step(username, password, "/").await;
        let response = self.enter_code("/", code).await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/");
    }

    /// Posts the account page's "Log out" form for the session `id`.
    pub async fn end_session(&self, id: &str) -> Response {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("session", id)
            .finish();
        self.post("/account/sessions/end", form).await
    }
}

/// A form with one field, `code`.
pub fn code_form(code: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code)
        .finish()
}

/// The recovery codes on the page that shows them once.
pub fn recovery_codes(page: &str) -> Vec<String> {
    let list = between(page, "<ol class=\"recovery-codes\">", "</ol>");
    list.split("<code>")
        .skip(1)
        .map(|item| item[..item.find("</code>").expect("a code's end")].to_owned())
        .collect()
}

/// An authenticator app for a two-step secret (RFC 6238: SHA-1, 6 digits,
/// 30-second steps), which hands out each step's code once, as the demo
/// accepts each step once.
pub struct Authenticator {
    totp: totp_rs::Totp,
    /// The last step whose code was handed out, and the one before it.
    last: Option<u64>,
    before: Option<u64>,
}

impl Authenticator {
    /// The app for a base32 secret, as a page shows it (spaces allowed).
    pub fn new(secret: &str) -> Self {
        let secret: String = secret.split_whitespace().collect();
        let bytes = totp_rs::Secret::try_from_base32(&secret)
            .unwrap_or_else(|error| panic!("{secret:?} is not base32: {error:?}"));
        let totp = totp_rs::Builder::new()
            .with_secret(bytes)
            .with_digits(6)
            .with_step_duration(30)
            .build()
            .expect("a TOTP");
        Self {
            totp,
            last: None,
            before: None,
        }
    }

    /// The code of a time step.
    pub fn code_at(&self, step: u64) -> String {
        self.totp.generate(step * 30).to_string()
    }

    /// The step of now, and how many seconds of it are gone.
    fn now() -> (u64, u64) {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        (secs / 30, secs % 30)
    }

    /// The step of the last code handed out.
    pub fn last_step(&self) -> u64 {
        self.last.expect("a code handed out")
    }

    /// The last code handed out again: one the demo has used up.
    pub fn last_code(&self) -> String {
        self.code_at(self.last_step())
    }

    /// A code the demo accepts now (within a step of its clock) and that
    /// has not been handed out: the earliest such step after the last one.
    /// The step before now is taken only early in the present step, and
    /// the step after now always is, so that a step boundary passing before
    /// the demo checks the code leaves it within the demo's window. When
    /// all of them are used, waits for the next step.
    pub async fn next_code(&mut self) -> String {
        loop {
            let (now, gone) = Self::now();
            let earliest = if gone <= 20 { now - 1 } else { now };
            let step = self.last.map_or(earliest, |last| (last + 1).max(earliest));
            if step <= now + 1 {
                self.before = self.last.replace(step);
                return self.code_at(step);
            }
            tokio::time::sleep(Duration::from_secs(30 - gone) + Duration::from_millis(50)).await;
        }
    }

    /// Takes the last code handed out back, as one the demo did not use
    /// (it refused the request before checking it): the next one may be it.
    pub fn not_used(&mut self) {
        self.last = self.before.take();
    }

    /// A 6-digit code that is not the code of any step near now.
    pub fn wrong_code(&self) -> String {
        let (now, _) = Self::now();
        let near: Vec<String> = (now - 3..=now + 3).map(|step| self.code_at(step)).collect();
        let right = self.code_at(now);
        (0..10u32)
            .map(|digit| format!("{digit}{}", &right[1..]))
            .find(|code| !near.contains(code))
            .expect("a wrong code")
    }
}

/// How long an ending made on one instance may take to reach another.
pub const SOON: Duration = Duration::from_secs(5);

/// One row of "Where you're logged in".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub device: String,
    pub current: bool,
    pub remembered: bool,
}

/// The rows of "Where you're logged in" in an account page.
pub fn session_rows(page: &str) -> Vec<SessionRow> {
    let Some(start) = page.find("<ul class=\"sessions\">") else {
        return Vec::new();
    };
    let list = &page[start..];
    let list = &list[..list.find("</ul>").expect("the end of the list")];
    list.split("<li>")
        .skip(1)
        .map(|row| SessionRow {
            id: between(row, "name=\"session\" value=\"", "\"").to_owned(),
            device: between(row, "<strong>", "</strong>").to_owned(),
            current: row.contains(">This browser<"),
            remembered: row.contains(">remembered<"),
        })
        .collect()
}

/// One line of "Recent activity".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// The stored kind: latch's event name (`logged_in`, `login_failed`,
    /// ...) or the demo's own (`password_changed`, ...).
    pub kind: String,
    /// What the page says happened.
    pub what: String,
    pub device: Option<String>,
    pub address: Option<String>,
    pub this_browser: bool,
    /// Marked as worth a second look.
    pub alert: bool,
}

/// The lines of "Recent activity" in an account page.
pub fn activity_rows(page: &str) -> Vec<ActivityRow> {
    let Some(start) = page.find("<ol class=\"activity\">") else {
        return Vec::new();
    };
    let list = &page[start..];
    let list = &list[..list.find("</ol>").expect("the end of the list")];
    let optional = |row: &str, class: &str| {
        let before = format!("<span class=\"{class}\">");
        row.contains(&before)
            .then(|| between(row, &before, "</span>").to_owned())
    };
    list.split("<li ")
        .skip(1)
        .map(|row| ActivityRow {
            kind: between(row, "data-kind=\"", "\"").to_owned(),
            what: between(row, "<strong>", "</strong>").to_owned(),
            device: optional(row, "device"),
            address: optional(row, "client"),
            this_browser: row.contains(">This browser<"),
            alert: row.contains("class=\"alert\""),
        })
        .collect()
}

/// The kinds of a list of activity lines, newest first.
pub fn kinds(rows: &[ActivityRow]) -> Vec<&str> {
    rows.iter().map(|row| row.kind.as_str()).collect()
}

/// The text between `before` and the next `after` in `text`.
pub fn between<'a>(text: &'a str, before: &str, after: &str) -> &'a str {
    let from = text
        .find(before)
        .map(|at| at + before.len())
        .unwrap_or_else(|| panic!("no {before} in {text}"));
    let to = text[from..].find(after).expect("an end") + from;
    &text[from..to]
}

/// Waits for the next whole second. The session registry ends "every
/// session of the user" at a whole second, so that a login in the same
/// second as the ending falls under it; a test that logs in again right
/// after one waits for the next second first.
pub async fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let left = Duration::from_secs(1) - Duration::from_nanos(now.subsec_nanos().into());
    tokio::time::sleep(left + Duration::from_millis(20)).await;
}

pub fn assert_redirect(response: &Response, status: StatusCode, location: &str) {
    assert_eq!(response.status(), status, "redirect to {location} expected");
    assert_eq!(
        response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok()),
        Some(location)
    );
}

pub fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().expect("a text cookie").to_owned())
        .collect()
}

pub async fn text(response: Response) -> (StatusCode, String) {
    let status = response.status();
    (status, response.text().await.expect("a body"))
}
