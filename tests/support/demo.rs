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
        server,
        _dir: None,
    }
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

    /// Posts the account page's "Log out" form for the session `id`.
    pub async fn end_session(&self, id: &str) -> Response {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("session", id)
            .finish();
        self.post("/account/sessions/end", form).await
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

/// The text between `before` and the next `after` in `text`.
fn between<'a>(text: &'a str, before: &str, after: &str) -> &'a str {
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
