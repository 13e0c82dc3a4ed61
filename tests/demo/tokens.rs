//! API tokens over HTTP: made on the account page and shown once, kept as
//! a hash, `GET /api/me` for a token and for a cookie alike, every bad
//! token a `401` with a challenge (never a `5xx`), revoked tokens refused
//! at once, and no token reaching a page that needs a fresh login. On
//! SQLite, and on PostgreSQL where the kit has a server.

use crate::support::demo as demo_support;

use demo_support::*;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Row;

#[tokio::test]
async fn a_token_is_shown_once_and_kept_only_as_a_hash_on_sqlite() {
    on_sqlite(shown_once).await;
}

#[tokio::test]
async fn a_token_is_shown_once_and_kept_only_as_a_hash_on_postgres() {
    on_postgres(shown_once).await;
}

#[tokio::test]
async fn api_me_answers_a_token_and_a_cookie_alike_on_sqlite() {
    on_sqlite(token_and_cookie).await;
}

#[tokio::test]
async fn api_me_answers_a_token_and_a_cookie_alike_on_postgres() {
    on_postgres(token_and_cookie).await;
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_challenge_never_5xx_on_sqlite() {
    on_sqlite(bad_tokens).await;
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_challenge_never_5xx_on_postgres() {
    on_postgres(bad_tokens).await;
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether a token has the demo's shape: `latch_` and 256 bits of base64url.
fn well_formed(token: &str) -> bool {
    token.len() == 49
        && token.starts_with("latch_")
        && token[6..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.text().await.expect("a body");
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, value)
}

/// The page that makes a token shows it, and nothing shows it again; the
/// table holds its SHA-256 and never the token.
async fn shown_once(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let response = susan.post("/account/tokens", "name=Backup+script").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert!(
        set_cookies(&response).is_empty(),
        "the token is in no cookie"
    );
    let page = response.text().await.expect("a page");
    assert!(page.contains("shown only this once"), "{page}");
    let token = between(&page, "<code id=\"token\">", "</code>").to_owned();
    assert!(well_formed(&token), "{token}");
    let second = susan.make_token("Deploy").await;
    assert!(well_formed(&second) && second != token);

    // The account page lists both by name, and shows neither.
    let (status, account) = text(susan.get("/account").await).await;
    assert_eq!(status, StatusCode::OK);
    for shown in [&token, &second] {
        assert!(
            !account.contains(shown.as_str()),
            "a token on the account page"
        );
        assert!(
            !account.contains(&shown[6..]),
            "a token on the account page"
        );
    }
    assert!(
        account.contains("<strong>Backup script</strong>"),
        "{account}"
    );
    assert!(account.contains("<strong>Deploy</strong>"), "{account}");
    assert_eq!(account.matches("never used").count(), 2, "{account}");
    // The activity list names them, not their secrets.
    let rows = susan
        .activity_once(|rows| kinds(rows).starts_with(&["token_created", "token_created"]))
        .await;
    assert_eq!(rows[0].what, "API token \u{201c}Deploy\u{201d} created");
    assert_eq!(
        rows[1].what,
        "API token \u{201c}Backup script\u{201d} created"
    );

    // The table: a hash per token, and the token nowhere.
    let db = database(demo).await;
    let stored = sqlx::query(
        "SELECT id, user_id, name, token_hash, created_at FROM api_tokens ORDER BY created_at",
    )
    .fetch_all(&db)
    .await
    .expect("the tokens table");
    assert_eq!(stored.len(), 2);
    let hashes: Vec<String> = stored.iter().map(|row| row.get("token_hash")).collect();
    assert_eq!(hashes, [sha256_hex(&token), sha256_hex(&second)]);
    for row in &stored {
        assert_eq!(row.get::<String, _>("user_id"), "user001");
        for column in ["id", "name", "token_hash"] {
            let value: String = row.get(column);
            for secret in [&token, &second] {
                assert!(!value.contains(&secret[6..]), "a token in {column}");
            }
        }
    }
    db.close().await;
    // Each works.
    for secret in [&token, &second] {
        let response = with_token(demo, "/api/me", secret).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// `/api/me` answers the same JSON for a token and for a cookie login,
/// with `via` telling them apart; a token login sets no cookie; "last
/// used" is written, at most once a minute.
async fn token_and_cookie(demo: &Demo) {
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let token = susan.make_token("CI").await;

    let response = with_token(demo, "/api/me", &token).await;
    assert!(
        set_cookies(&response).is_empty(),
        "a token login sets no cookie"
    );
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "user001", "username": "susan", "is_admin": true, "via": "token"})
    );
    // The scheme's case does not matter.
    let response = api_get(demo, "/api/me", Some(&format!("bearer {token}"))).await;
    assert_eq!(response.status(), StatusCode::OK);

    // A cookie login, by the page's script or by a navigation.
    let (status, body) = json(susan.fetch("/api/me").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"id": "user001", "username": "susan", "is_admin": true, "via": "session"})
    );
    let (status, body) = json(susan.get("/api/me").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["via"], "session");
    // A cookie login wins over a token sent beside it.
    let david = Browser::new(demo);
    david.log_in("david", "bye", false).await;
    let response = david
        .client
        .get(david.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("a response");
    let (_, body) = json(response).await;
    assert_eq!(
        body,
        json!({"id": "user002", "username": "david", "is_admin": false, "via": "session"})
    );

    // "Last used" is now, and is not written again within the minute.
    let (_, account) = text(susan.get("/account").await).await;
    assert!(
        account.contains("Made just now, last used just now"),
        "{account}"
    );
    let db = database(demo).await;
    let last_used = || async {
        sqlx::query("SELECT last_used_at FROM api_tokens")
            .fetch_one(&db)
            .await
            .expect("the token's row")
            .get::<Option<i64>, _>("last_used_at")
    };
    let first = last_used().await.expect("a last use");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let response = with_token(demo, "/api/me", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(last_used().await, Some(first));
    db.close().await;

    // Other paths under /api are JSON too.
    let response = with_token(demo, "/api/nothing", &token).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (_, body) = json(response).await;
    assert_eq!(body, json!({"error": "not_found"}));
}

/// Checks a `401` to an API client: JSON, a Bearer challenge that says
/// `invalid_token` when a credential was sent, and no cookie.
async fn assert_refused(response: Response, credential_sent: bool, what: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .unwrap_or_else(|| panic!("no WWW-Authenticate: {what}"))
        .to_str()
        .expect("text")
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    assert_eq!(
        challenge.contains("error=\"invalid_token\""),
        credential_sent,
        "{what}: {challenge}"
    );
    assert!(response.headers().get(SET_COOKIE).is_none(), "{what}");
    let (_, body) = json(response).await;
    assert_eq!(body["error"], "login_required", "{what}");
}

/// Whatever comes in `Authorization`, a token that is not live is a `401`
/// with `WWW-Authenticate: Bearer error="invalid_token"`: revoked ones
/// (susan's own and david's), garbage, the wrong shape, another scheme,
/// two headers, and a header of 100 KB.
async fn bad_tokens(demo: &Demo) {
    assert_refused(api_get(demo, "/api/me", None).await, false, "no header").await;
    // A browser's navigation to the API is answered as an API, not redirected.
    let (status, _) = text(Browser::new(demo).get("/api/me").await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let revoked = susan.make_token("old").await;
    let live = susan.make_token("live").await;
    let david = Browser::new(demo);
    david.log_in("david", "bye", false).await;
    let davids = david.make_token("david's token").await;
    assert_eq!(
        with_token(demo, "/api/me", &revoked).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        with_token(demo, "/api/me", &davids).await.status(),
        StatusCode::OK
    );

    // Revoked from the account page: refused at once.
    for (browser, token) in [(&susan, &revoked), (&david, &davids)] {
        let (_, page) = text(browser.get("/account").await).await;
        let name = if token == &revoked {
            "old"
        } else {
            "david's token"
        };
        let shown = name.replace('\'', "&#39;");
        let row = page
            .split("<li>")
            .find(|row| row.contains(&format!("<strong>{shown}</strong>")))
            .unwrap_or_else(|| panic!("no row for {name}: {page}"));
        let id = between(row, "name=\"token\" value=\"", "\"").to_owned();
        let response = browser
            .post("/account/tokens/revoke", format!("token={id}"))
            .await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
        let (_, page) = text(browser.get("/account").await).await;
        assert!(page.contains("is revoked: it no longer works"), "{page}");
        assert!(
            !page.contains(&format!("<strong>{name}</strong>")),
            "{page}"
        );
    }

    let random_part = &live[6..];
    let cases: Vec<(String, &str)> = vec![
        (format!("Bearer {revoked}"), "susan's revoked token"),
        (format!("Bearer {davids}"), "david's revoked token"),
        ("Bearer abc".to_owned(), "garbage"),
        ("Bearer latch_".to_owned(), "the prefix alone"),
        (format!("Bearer {}", &live[..48]), "one character short"),
        (format!("Bearer {live}A"), "one character long"),
        (format!("Bearer ghp_{random_part}"), "another prefix"),
        (
            format!("Bearer latch_{}", "A".repeat(43)),
            "the right shape, made up",
        ),
        (
            format!("Bearer latch_{}.", &random_part[..42]),
            "a character base64url has not",
        ),
        (
            format!("Bearer {}", live.to_uppercase()),
            "the token in capitals",
        ),
        (format!("Basic {live}"), "another scheme"),
        (live.clone(), "no scheme"),
        ("Bearer ".to_owned(), "an empty token"),
        ("Bearer \"quoted\"".to_owned(), "quotes"),
        (format!("Bearer {}", "a".repeat(100 * 1024)), "100 KB"),
        (
            format!("Bearer latch_{}", "x".repeat(100 * 1024)),
            "100 KB with the prefix",
        ),
    ];
    for (header, what) in &cases {
        assert_refused(api_get(demo, "/api/me", Some(header)).await, true, what).await;
    }
    // Bytes that are not text.
    let response = reqwest::Client::new()
        .get(demo.base.join("/api/me").expect("a URL"))
        .header(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_bytes(b"Bearer latch_\xff\xfe").expect("bytes"),
        )
        .send()
        .await
        .expect("a response");
    assert_refused(response, true, "not UTF-8").await;
    // Two headers, one of them good: which was meant cannot be told.
    let response = reqwest::Client::new()
        .get(demo.base.join("/api/me").expect("a URL"))
        .header(reqwest::header::AUTHORIZATION, format!("Bearer {live}"))
        .header(reqwest::header::AUTHORIZATION, "Bearer abc")
        .send()
        .await
        .expect("a response");
    assert_refused(response, true, "two headers").await;

    // The live token still works, and the revoked ones stay out of lists.
    let (status, body) = json(with_token(demo, "/api/me", &live).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["via"], "token");
    let rows = susan
        .activity_once(|rows| kinds(rows).first() == Some(&"token_revoked"))
        .await;
    assert_eq!(rows[0].what, "API token \u{201c}old\u{201d} revoked");
}

/// A token is never a fresh login: it cannot open the account page, make
/// or revoke tokens, change the password, log others out or open the
/// admin page (susan is an admin). API clients get `401`, a navigation
/// the login page; nothing changes.
#[tokio::test]
async fn a_token_cannot_reach_pages_that_need_a_fresh_login() {
    let demo = start().await;
    let susan = Browser::new(&demo);
    susan.log_in("susan", "hello", false).await;
    let token = susan.make_token("scripts").await;
    let script = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let posts = [
        ("/account/tokens", "name=another".to_owned()),
        ("/account/tokens/revoke", "token=x".to_owned()),
        (
            "/account/password",
            "current_password=hello&new_password=stolen+password".to_owned(),
        ),
        ("/account/logout-everywhere", String::new()),
        ("/admin/sessions/end", "user=user002".to_owned()),
    ];
    for (path, form) in &posts {
        let response = script
            .post(demo.base.join(path).expect("a URL"))
            .bearer_auth(&token)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await
            .expect("a response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        let (_, body) = json(response).await;
        assert_eq!(body["error"], "fresh_login_required", "{path}");
    }
    for path in ["/account", "/admin"] {
        let response = with_token(&demo, path, &token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        // A browser's navigation with the token is sent to log in.
        let response = script
            .get(demo.base.join(path).expect("a URL"))
            .bearer_auth(&token)
            .header("sec-fetch-mode", "navigate")
            .send()
            .await
            .expect("a response");
        assert!(
            response.status().is_redirection(),
            "{path}: {}",
            response.status()
        );
    }
    // Nothing changed: one token, the old password, david still in.
    let db = database(&demo).await;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
        .fetch_one(&db)
        .await
        .expect("a count");
    assert_eq!(count, 1);
    db.close().await;
    susan.assert_home("susan").await;
    Browser::new(&demo).log_in("susan", "hello", false).await;
    // The refusal is in susan's activity, as a token's.
    let rows = susan
        .activity_once(|rows| kinds(rows).contains(&"fresh_login_required"))
        .await;
    let refused = rows
        .iter()
        .find(|row| row.kind == "fresh_login_required")
        .expect("the refusal");
    assert_eq!(
        refused.what,
        "An API token was refused a page that needs the password"
    );
}

/// The token forms: a name is needed, of a sensible length; ten tokens at
/// most; a revoke form with an id that is not one of the user's live
/// tokens revokes nothing; forms from another site are refused.
#[tokio::test]
async fn the_token_forms_refuse_bad_input_and_change_nothing() {
    let demo = start().await;
    let susan = Browser::new(&demo);
    susan.log_in("susan", "hello", false).await;
    let david = Browser::new(&demo);
    david.log_in("david", "bye", false).await;
    let davids = david.make_token("david's token").await;

    let names: Vec<(String, &str)> = vec![
        (String::new(), "Please give the token a name"),
        ("name=".to_owned(), "Please give the token a name"),
        ("name=+++".to_owned(), "Please give the token a name"),
        (format!("name={}", "a".repeat(65)), "at most 64 characters"),
        ("name=two%0Alines".to_owned(), "at most 64 characters"),
        ("name=a&name=b".to_owned(), "garbled"),
    ];
    for (form, message) in &names {
        let (status, page) = text(susan.post("/account/tokens", form.clone()).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert!(page.contains(message), "{form}: {page}");
        assert!(!page.contains("latch_"), "{form}");
    }
    // A name is escaped where it is shown.
    susan.make_token("<script>alert(1)</script>").await;
    let (_, page) = text(susan.get("/account").await).await;
    assert!(!page.contains("<script>alert"), "{page}");
    for n in 1..10 {
        susan.make_token(&format!("token {n}")).await;
    }
    let (status, page) = text(susan.post("/account/tokens", "name=eleventh").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("You have 10 tokens already"), "{page}");

    // Revoking: david's token's id, made-up ids and garbage revoke nothing.
    let db = database(&demo).await;
    let davids_id: String =
        sqlx::query_scalar("SELECT id FROM api_tokens WHERE user_id = 'user002'")
            .fetch_one(&db)
            .await
            .expect("david's token");
    for id in [davids_id.as_str(), "AAAAAAAAAAAAAAAAAAAAAA"] {
        let response = susan
            .post("/account/tokens/revoke", format!("token={id}"))
            .await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
        let (_, page) = text(susan.get("/account").await).await;
        assert!(page.contains("already revoked"), "{page}");
    }
    for form in ["", "token=", "token=%3Cscript%3E", "token=a&token=b"] {
        let (status, page) = text(susan.post("/account/tokens/revoke", form).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert!(page.contains("API tokens"), "{form}");
    }
    let response = susan
        .post(
            "/account/tokens/revoke",
            format!("token={}", "a".repeat(100_000)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        with_token(&demo, "/api/me", &davids).await.status(),
        StatusCode::OK
    );

    // A form on another site cannot make a token for a logged-in victim.
    let response = susan
        .client
        .post(susan.url("/account/tokens"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ORIGIN, "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .body("name=evil")
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL")
        .fetch_one(&db)
        .await
        .expect("a count");
    assert_eq!(count, 11, "susan's ten and david's one");
    db.close().await;

    // A GET of a form's address goes to the account page.
    for path in ["/account/tokens", "/account/tokens/revoke"] {
        let response = susan.get(path).await;
        assert_redirect(&response, StatusCode::SEE_OTHER, "/account");
    }
}
