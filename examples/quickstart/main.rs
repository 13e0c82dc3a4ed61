//! latch's quickstart, as the README shows it: a login form, a password
//! check, a page for logged-in users, and logout.
//!
//! ```text
//! cargo run --example quickstart     # then open http://localhost:3000
//! ```
//!
//! Log in as `susan` with the password `correct horse`.

use axum::extract::{Form, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use axum_latch::{Auth, CurrentUser, Login, Remember, SecretKey, Session, User};
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};

#[derive(Clone)]
struct Account {
    id: u64,
    username: String,
    password_hash: String,
}

impl User for Account {
    type Id = u64;
    fn id(&self) -> u64 {
        self.id
    }
    // Changing this (a new password) ends every session of the user.
    fn auth_hash(&self) -> &[u8] {
        self.password_hash.as_bytes()
    }
}

/// Stands in for your user table.
type Users = Arc<HashMap<u64, Account>>;

async fn home(CurrentUser(user): CurrentUser<Account>) -> Html<String> {
    // Anonymous visitors never get here: latch sends them to /login?next=/.
    Html(format!(
        "<p>Hello, {}!</p>\
         <form method=post action=/logout><button>Log out</button></form>",
        user.username
    ))
}

/// The login form. It has no `action`, so it posts back to the URL it was
/// served at, `next` included: `/login?next=/account` posts to the same.
async fn login_form() -> Html<&'static str> {
    Html(
        "<form method=post>\
         <input name=username placeholder=Username>\
         <input name=password type=password placeholder=Password>\
         <label><input name=remember type=checkbox> Remember me</label>\
         <button>Log in</button></form>",
    )
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    remember: Option<String>,
}

async fn login(
    State(users): State<Users>,
    auth: Auth<Account>,
    Form(form): Form<Credentials>,
) -> Response {
    let user = users
        .values()
        .find(|user| user.username == form.username)
        .cloned();
    // Unknown users are checked against a hash of their own, so that they
    // take as long as known ones.
    let hash = user
        .as_ref()
        .map_or(DUMMY_HASH.clone(), |user| user.password_hash.clone());
    // Password hashing is slow on purpose: keep it off the async threads.
    let checked = tokio::task::spawn_blocking(move || {
        password_auth::verify_password(form.password, &hash).is_ok()
    });
    match (user, checked.await) {
        (Some(user), Ok(true)) => {
            let remember = Remember::from(form.remember.is_some());
            // A 303 to the safe `next` from the query string, or to `/`.
            auth.login_user(&user, remember).await.into_response()
        }
        _ => (
            axum::http::StatusCode::UNAUTHORIZED,
            Html("Wrong username or password. <a href=/login>Try again</a>"),
        )
            .into_response(),
    }
}

async fn logout(auth: Auth<Account>) -> Redirect {
    auth.logout_user().await;
    Redirect::to("/login")
}

/// A hash of a password nobody has, checked when the username is unknown.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| password_auth::generate_hash("nobody"));

fn app(key: SecretKey, users: Users) -> Router {
    let loader = {
        let users = users.clone();
        // Your database look-up goes here.
        move |id: u64| std::future::ready(Ok::<_, Infallible>(users.get(&id).cloned()))
    };
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .with_state(users)
        .layer(Login::new(loader)) // who is logged in
        .layer(Session::new(key)) // the signed session cookie
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In production: SecretKey::new(std::env::var("SECRET_KEY")?)?, at
    // least 32 bytes (`openssl rand -base64 48` makes a good one).
    let key = SecretKey::generate()?;
    let susan = Account {
        id: 1,
        username: "susan".into(),
        password_hash: password_auth::generate_hash("correct horse"),
    };
    let users = Arc::new(HashMap::from([(susan.id, susan)]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app(key, users)).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
