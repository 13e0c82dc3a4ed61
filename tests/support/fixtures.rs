//! The users most suites log in: susan (`user001`, password hash `hash of
//! hello`) and david (`user002`, `hash of bye`), with string ids, and the
//! routes every app of theirs has.

use super::{Client, TestResponse};
use axum::body::Body;
use axum::extract::{Form, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_latch::{Auth, CurrentUser, Remember, User, UserLoader};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A user whose `auth_hash` is its password hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub hash: String,
}

impl User for Account {
    type Id = String;

    fn id(&self) -> String {
        self.id.clone()
    }

    fn auth_hash(&self) -> &[u8] {
        self.hash.as_bytes()
    }
}

/// susan and david, by id.
pub fn accounts() -> HashMap<String, Account> {
    [
        ("user001", "susan", "hash of hello"),
        ("user002", "david", "hash of bye"),
    ]
    .into_iter()
    .map(|(id, name, hash)| {
        let account = Account {
            id: id.to_owned(),
            name: name.to_owned(),
            hash: hash.to_owned(),
        };
        (id.to_owned(), account)
    })
    .collect()
}

/// The users' "database": susan and david to start with, how often the
/// loader ran, and a switch that makes the loader fail.
pub struct Db {
    users: Mutex<HashMap<String, Account>>,
    loads: AtomicUsize,
    pub fail: AtomicBool,
}

/// What the failing loader says; it must never reach a response.
pub const LOADER_ERROR: &str = "database unreachable at db.internal:5432";

impl Db {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            users: Mutex::new(accounts()),
            loads: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
        })
    }

    pub fn find(&self, id: &str) -> Option<Account> {
        self.users.lock().unwrap().get(id).cloned()
    }

    pub fn put(&self, account: Account) {
        self.users
            .lock()
            .unwrap()
            .insert(account.id.clone(), account);
    }

    /// The user of a login form and its remember-me, or `401`.
    #[allow(clippy::result_large_err)] // a test fixture
    pub fn check(&self, form: &LoginForm) -> Result<(Account, Remember), Response> {
        match self.find(&form.user) {
            Some(user) => Ok((user, form.remember())),
            None => Err((StatusCode::UNAUTHORIZED, "bad credentials").into_response()),
        }
    }

    pub fn remove(&self, id: &str) {
        self.users.lock().unwrap().remove(id);
    }

    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn reset_loads(&self) {
        self.loads.store(0, Ordering::SeqCst);
    }
}

/// The user loader: counts its calls, reads the users, fails on demand.
pub fn loader(db: Arc<Db>) -> impl UserLoader<Account> {
    move |id: String| {
        let db = db.clone();
        async move {
            db.loads.fetch_add(1, Ordering::SeqCst);
            if db.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::other(LOADER_ERROR));
            }
            Ok(db.find(&id))
        }
    }
}

/// The form of an app's `/login`: a user id and remember-me.
#[derive(Deserialize)]
pub struct LoginForm {
    pub user: String,
    /// `on`, `off` (or absent), or a number of days.
    pub remember: Option<String>,
}

impl LoginForm {
    pub fn remember(&self) -> Remember {
        match self.remember.as_deref() {
            None | Some("off") => Remember::Off,
            Some("on") => Remember::On,
            Some(days) => Remember::Days(days.parse().expect("remember is on, off or days")),
        }
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    pub hash: String,
}

/// `POST /login`: logs the form's user in, or answers `401`.
pub async fn log_in_handler(
    State(db): State<Arc<Db>>,
    auth: Auth<Account>,
    Form(form): Form<LoginForm>,
) -> Response {
    match db.check(&form) {
        Ok((user, remember)) => auth.login_user(&user, remember).await.into_response(),
        Err(refused) => refused,
    }
}

/// `GET /`: greets the user.
pub async fn index(CurrentUser(user): CurrentUser<Account>) -> String {
    format!("Hello, {}!", user.name)
}

/// `POST /logout`.
pub async fn logout(auth: Auth<Account>) -> Redirect {
    auth.logout_user().await;
    Redirect::to("/")
}

/// `POST /password`: changes the user's password (its `auth_hash`) and
/// keeps this session.
pub async fn change_password(
    State(db): State<Arc<Db>>,
    CurrentUser(user): CurrentUser<Account>,
    auth: Auth<Account>,
    Form(form): Form<PasswordForm>,
) -> &'static str {
    let updated = Account {
        hash: form.hash,
        ..(*user).clone()
    };
    db.put(updated.clone());
    if auth.update_user(&updated).await {
        "password changed"
    } else {
        "update_user refused the session's own user"
    }
}

/// `/login` (a form, and `login` for its post), `/logout` and `/password`.
pub fn account_routes<H, T>(login: H) -> Router<Arc<Db>>
where
    H: Handler<T, Arc<Db>>,
    T: 'static,
{
    Router::new()
        .route("/login", get(|| async { "the login form" }).post(login))
        .route("/logout", post(logout))
        .route("/password", post(change_password))
}

/// Logs `client` in as `user` through `/login` (with this `User-Agent`, if
/// any), checking that the login worked.
pub async fn log_in_through_the_form(
    client: &mut Client,
    user: &str,
    remember: &str,
    user_agent: Option<&str>,
) -> TestResponse {
    let form = format!("user={user}&remember={remember}");
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend(user_agent.map(|ua| ("user-agent", ua)));
    let res = client
        .request(Method::POST, "/login", &headers, Body::from(form))
        .await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "the login POST answers 303: {}",
        res.body
    );
    assert!(client.has_cookie("session"), "logged in: a session cookie");
    res
}
