//! The quickstart, run: a navigation is sent to the form, the form is
//! served, the right password logs in (keeping `next`), a wrong one does
//! not, and logout ends the session. And the README shows this file.

use super::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

fn users() -> Users {
    let susan = Account {
        id: 1,
        username: "susan".into(),
        password_hash: password_auth::generate_hash("correct horse"),
    };
    Arc::new(HashMap::from([(1, susan)]))
}

/// A browser's request: a navigation, with the cookie it holds.
fn navigate(method: &str, uri: &str, cookie: Option<&str>, form: Option<&str>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("sec-fetch-mode", "navigate")
        .header(header::ACCEPT, "text/html");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    match form {
        Some(form) => request
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned())),
        None => request.body(Body::empty()),
    }
    .unwrap()
}

async fn body(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn session_cookie(response: &Response) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("session="))
        .map(|value| value.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn logs_in_with_a_password_and_out_again() {
    let app = app(SecretKey::generate().unwrap(), users());

    let anonymous = app
        .clone()
        .oneshot(navigate("GET", "/", None, None))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::FOUND);
    assert_eq!(anonymous.headers()[header::LOCATION], "/login?next=/");

    let form = app
        .clone()
        .oneshot(navigate("GET", "/login?next=/", None, None))
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let html = body(form).await;
    assert!(
        html.contains("<form method=post>") && html.contains("name=password"),
        "{html}"
    );

    let wrong = navigate(
        "POST",
        "/login?next=/",
        None,
        Some("username=susan&password=nope"),
    );
    let wrong = app.clone().oneshot(wrong).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        session_cookie(&wrong),
        None,
        "no session for a wrong password"
    );

    let unknown = navigate(
        "POST",
        "/login",
        None,
        Some("username=bob&password=correct+horse"),
    );
    assert_eq!(
        app.clone().oneshot(unknown).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let right = "username=susan&password=correct+horse";
    let right = app
        .clone()
        .oneshot(navigate("POST", "/login?next=/", None, Some(right)))
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[header::LOCATION], "/", "back to next");
    let cookie = session_cookie(&right).expect("a session cookie");

    let home = app
        .clone()
        .oneshot(navigate("GET", "/", Some(&cookie), None))
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::OK);
    assert!(body(home).await.contains("Hello, susan!"));

    let out = app
        .clone()
        .oneshot(navigate("POST", "/logout", Some(&cookie), None))
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = session_cookie(&out).expect("the session cookie is rewritten");
    let after = app
        .clone()
        .oneshot(navigate("GET", "/", Some(&cleared), None))
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::FOUND, "logged out");
}

/// The README's quickstart is this app, word for word (from its first
/// `use` to the end of `main`).
#[test]
fn the_readme_shows_this_app() {
    let source = include_str!("main.rs");
    let start = source.find("use axum::").unwrap();
    let end = source.find("#[cfg(test)]").unwrap();
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&source[start..end]),
        "README.md's quickstart differs from examples/quickstart/main.rs"
    );
}
