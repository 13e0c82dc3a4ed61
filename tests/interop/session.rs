//! Microdot's `tests/test_session.py`, scenario by scenario, against latch.
//!
//! Differences that hold for every test here: latch refuses secret keys
//! shorter than 32 bytes, so Microdot's `top-secret!` and
//! `some-other-secret` become [`support::KEY`]; and latch saves a changed
//! session by itself when the response goes out, so there is no `save()` to
//! call.

use crate::support;

use axum::routing::{get, post};
use axum::Router;
use axum_latch::rejection::MissingLayer;
use axum_latch::{KeyError, SecretKey, Session, SessionData};
use http::StatusCode;
use support::{key, Client};

/// The name stored in the session, or `None` as Python's `str(None)` prints it.
fn name_or_none(session: &SessionData) -> String {
    session
        .get::<String>("name")
        .unwrap_or_else(|| "None".to_owned())
}

/// Microdot's `test_session_async`: a value set through one handle of the
/// session is seen through another in the same request, a saved value is
/// read back on the next requests (with and without `@with_session`), and a
/// deleted session reads empty again.
///
/// Differences: Microdot's `session_ext.get(req)` and `@with_session` are
/// both the `SessionData` extractor; `session.save()` is automatic, so the
/// `foo` set by `GET /` is kept too (Microdot drops it, as it is never
/// saved); `session.delete()` is `SessionData::clear()`, which deletes the
/// cookie.
#[tokio::test]
async fn test_session_async() {
    async fn index(session: SessionData, session2: SessionData) -> String {
        session2.insert("foo", "bar").expect("a string serializes");
        assert_eq!(
            session.get::<String>("foo").as_deref(),
            Some("bar"),
            "two SessionData extractors of one request share the session"
        );
        name_or_none(&session)
    }
    async fn with(session: SessionData) -> String {
        name_or_none(&session)
    }
    async fn set(session: SessionData) -> &'static str {
        session.insert("name", "joe").expect("a string serializes");
        "OK"
    }
    async fn delete(session: SessionData) -> &'static str {
        session.clear();
        "OK"
    }
    let app = Router::new()
        .route("/", get(index))
        .route("/with", get(with))
        .route("/set", post(set))
        .route("/del", post(delete))
        .layer(Session::new(key()));
    let mut client = Client::new(app);

    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK, "GET / body: {}", res.body);
    assert_eq!(res.body, "None", "a new session has no name");
    let res = client.get("/with").await;
    assert_eq!(res.body, "None", "a new session has no name (/with)");

    let res = client.post("/set").await;
    assert_eq!(res.body, "OK");
    assert!(
        client.has_cookie("session"),
        "saving the session sets the session cookie: {:?}",
        res.set_cookies()
    );

    let res = client.get("/").await;
    assert_eq!(res.body, "joe", "the saved name is read back");
    let res = client.get("/with").await;
    assert_eq!(res.body, "joe", "the saved name is read back (/with)");

    let res = client.post("/del").await;
    assert_eq!(res.body, "OK");
    assert!(
        !client.has_cookie("session"),
        "deleting the session deletes its cookie: {:?}",
        res.set_cookies()
    );

    let res = client.get("/").await;
    assert_eq!(res.body, "None", "a deleted session has no name");
    let res = client.get("/with").await;
    assert_eq!(res.body, "None", "a deleted session has no name (/with)");
}

/// Microdot's `test_session_no_secret_key`: a session without a usable
/// secret key cannot be used.
///
/// Differences: Microdot raises `ValueError` on the first use of a session
/// with no key; latch cannot build a `Session` without a key, and refuses an
/// empty or short one at construction with `KeyError::TooShort`, whose
/// message says how long a key must be and how to make one. The other way
/// to have no key, a router without the `Session` layer, answers a handler
/// that takes `SessionData` with a `500` whose body names the missing layer.
#[tokio::test]
async fn test_session_no_secret_key() {
    for short in ["", "secret", "top-secret!", "some-other-secret"] {
        let err = SecretKey::new(short).expect_err("a short key is refused");
        assert_eq!(
            err,
            KeyError::TooShort { len: short.len() },
            "key {short:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("{} bytes long", short.len()))
                && message.contains(&format!("at least {}", SecretKey::MIN_LEN)),
            "the KeyError message gives the length and the minimum: {message}"
        );
    }
    assert!(
        SecretKey::new("x".repeat(SecretKey::MIN_LEN)).is_ok(),
        "a key of exactly {} bytes is accepted",
        SecretKey::MIN_LEN
    );

    async fn index(session: SessionData) -> String {
        name_or_none(&session)
    }
    let app = Router::new().route("/", get(index));
    let mut client = Client::new(app);
    let res = client.get("/").await;
    assert_eq!(
        res.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "SessionData without the Session layer is a wiring mistake: {}",
        res.body
    );
    assert_eq!(res.body, MissingLayer::Session.to_string());
    assert!(
        res.body.contains("`Session`"),
        "the body names the missing layer: {}",
        res.body
    );
    assert!(
        res.set_cookies().is_empty(),
        "no cookie without a session layer"
    );
}

/// Microdot's `test_session_default_path`: a session saved by `/` is read by
/// `/child`, as the cookie's path defaults to `/`.
///
/// Differences: the key (see the module documentation); `session.save()`
/// is automatic.
#[tokio::test]
async fn test_session_default_path() {
    async fn index(session: SessionData) -> &'static str {
        session.insert("foo", "bar").expect("a string serializes");
        ""
    }
    async fn child(session: SessionData) -> String {
        session
            .get::<String>("foo")
            .unwrap_or_else(|| "None".to_owned())
    }
    let app = Router::new()
        .route("/", get(index))
        .route("/child", get(child))
        .layer(Session::new(key()));
    let mut client = Client::new(app);

    let res = client.get("/").await;
    assert_eq!(res.status, StatusCode::OK);
    let cookie = res
        .set_cookie("session")
        .expect("saving the session sets the session cookie");
    assert_eq!(cookie.path(), Some("/"), "the default cookie path is /");

    let res = client.get("/child").await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.body, "bar", "/child reads the session saved by /");
}

/// Microdot's `test_session_custom_path`: with the cookie path set to
/// `/child`, a session saved by `/child` is read by `/child/foo` but not by
/// `/`.
///
/// Differences: Microdot's `cookie_options={'path': '/child'}` is
/// `Session::path("/child")`; the key; `session.save()` is automatic. The
/// test client honours `Path` as a browser does, and the test also checks
/// the `Path=/child` attribute that makes it so.
#[tokio::test]
async fn test_session_custom_path() {
    async fn foo_or_none(session: SessionData) -> String {
        session
            .get::<String>("foo")
            .unwrap_or_else(|| "None".to_owned())
    }
    async fn child(session: SessionData) -> &'static str {
        session.insert("foo", "bar").expect("a string serializes");
        ""
    }
    let session = Session::new(key())
        .path("/child")
        .expect("/child is a valid cookie path");
    let app = Router::new()
        .route("/", get(foo_or_none))
        .route("/child", get(child))
        .route("/child/foo", get(foo_or_none))
        .layer(session);
    let mut client = Client::new(app);

    let res = client.get("/child").await;
    assert_eq!(res.status, StatusCode::OK);
    let cookie = res
        .set_cookie("session")
        .expect("saving the session sets the session cookie");
    assert_eq!(
        cookie.path(),
        Some("/child"),
        "the cookie carries the custom path"
    );

    let res = client.get("/").await;
    assert_eq!(res.body, "None", "/ is outside the cookie's path");
    let res = client.get("/child/foo").await;
    assert_eq!(res.body, "bar", "/child/foo is inside the cookie's path");
}
