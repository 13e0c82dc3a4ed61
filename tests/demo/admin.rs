//! The admin page over HTTP: only susan (an admin, with a fresh login)
//! gets in; david gets the site's own `403` page, or JSON when he asks as
//! a script; anonymous visitors are sent to log in. Susan sees both users
//! and where each is logged in, and ends david's sessions: every browser
//! of his is sent to log in at its next request. On SQLite, and on
//! PostgreSQL where the kit has a server.

use crate::support::demo as demo_support;

use demo_support::*;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

#[tokio::test]
async fn the_admin_page_is_for_admins_only_on_sqlite() {
    on_sqlite(admins_only).await;
}

#[tokio::test]
async fn the_admin_page_is_for_admins_only_on_postgres() {
    on_postgres(admins_only).await;
}

#[tokio::test]
async fn an_admin_ends_every_session_of_a_user_on_sqlite() {
    on_sqlite(ends_a_users_sessions).await;
}

#[tokio::test]
async fn an_admin_ends_every_session_of_a_user_on_postgres() {
    on_postgres(ends_a_users_sessions).await;
}

/// The section of the admin page about one user.
fn user_section<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<section class=\"user\" data-user=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section for {id}: {page}"));
    let section = &page[start..];
    &section[..section.find("</section>").expect("the section's end")]
}

/// The devices listed in a user's section.
fn devices(section: &str) -> Vec<&str> {
    section
        .split("<li>")
        .skip(1)
        .map(|row| between(row, "<strong>", "</strong>"))
        .collect()
}

async fn admins_only(demo: &Demo) {
    // Anonymous: the login page, or a 401 for a script.
    let anonymous = Browser::new(demo);
    anonymous.assert_sent_to_login("/admin").await;
    let response = anonymous.fetch("/admin").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = anonymous.post("/admin/sessions/end", "user=user002").await;
    assert_redirect(
        &response,
        StatusCode::SEE_OTHER,
        "/login?next=/admin/sessions/end",
    );

    // David: the site's own 403 page for a navigation, JSON for a script.
    let david = Browser::new(demo);
    david.log_in("david", "bye", true).await;
    let response = david.get("/admin").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers()[CONTENT_TYPE]
        .to_str()
        .expect("text")
        .starts_with("text/html"));
    let page = response.text().await.expect("a page");
    assert!(page.contains("This page is for admins"), "{page}");
    assert!(
        page.contains("Logged in as <strong>david</strong>"),
        "{page}"
    );
    assert!(page.contains("latch demo"), "the site's own page: {page}");
    assert!(!page.contains("href=\"/admin\""), "no Admin link for david");
    let response = david.fetch("/admin").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(
        response.text().await.expect("a body"),
        r#"{"error":"forbidden"}"#
    );
    // Nor can he post the form: susan's session survives it.
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let response = david.post("/admin/sessions/end", "user=user001").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    susan.assert_home("susan").await;
    // A remembered david is refused at once, not asked for his password first.
    let restored = david.restarted(demo);
    let response = restored.get("/admin").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (_, home) = text(david.get("/").await).await;
    assert!(!home.contains("href=\"/admin\""), "{home}");

    // Susan: the page, with the header's Admin link, once her login is fresh.
    let (_, home) = text(susan.get("/").await).await;
    assert!(home.contains("href=\"/admin\""), "{home}");
    let (status, page) = text(susan.get("/admin").await).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<h1>Admin</h1>"), "{page}");
    let susans = user_section(&page, "user001");
    let davids = user_section(&page, "user002");
    assert!(susans.contains("<strong>susan</strong>") && susans.contains(">you<"));
    assert!(susans.contains(">admin<") && !davids.contains(">admin<"));
    assert!(susans.contains(">This browser<"), "{susans}");
    assert!(!susans.contains("End all sessions"), "{susans}");
    assert!(davids.contains("End all sessions"), "{davids}");
    assert!(!devices(davids).is_empty(), "{davids}");
    // Restored by "remember me", she is asked for her password first.
    let remembered = Browser::new(demo);
    remembered.log_in("susan", "hello", true).await;
    remembered
        .restarted(demo)
        .assert_sent_to_login("/admin")
        .await;
    // A script with susan's cookies gets it too; the JSON API says admin.
    let response = susan.fetch("/admin").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = susan.fetch("/api/me").await.text().await.expect("a body");
    assert!(body.contains("\"is_admin\":true"), "{body}");
}

async fn ends_a_users_sessions(demo: &Demo) {
    let laptop = Browser::with_user_agent(demo, FIREFOX);
    laptop.log_in("david", "bye", true).await;
    let phone = Browser::with_user_agent(demo, SAFARI);
    phone.log_in("david", "bye", false).await;
    let laptop_restarted = laptop.restarted(demo);
    let susan = Browser::new(demo);
    susan.log_in("susan", "hello", false).await;
    let other_susan = Browser::new(demo);
    other_susan.log_in("susan", "hello", false).await;

    let (status, page) = text(susan.get("/admin").await).await;
    assert_eq!(status, StatusCode::OK);
    let mut listed = devices(user_section(&page, "user002"));
    listed.sort_unstable();
    assert_eq!(listed, ["Firefox on Linux", "Safari on iPhone"]);
    assert!(user_section(&page, "user002").contains(">remembered<"));
    assert_eq!(devices(user_section(&page, "user001")).len(), 2);

    let response = susan.post("/admin/sessions/end", "user=user002").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/admin");
    let (_, page) = text(susan.get("/admin").await).await;
    assert!(page.contains("Every session of david is ended"), "{page}");
    assert!(
        user_section(&page, "user002").contains("Not logged in anywhere"),
        "{page}"
    );
    // Every browser of david's is sent to log in at its next request,
    // remembered or not.
    laptop.assert_sent_to_login("/").await;
    phone.assert_sent_to_login("/").await;
    laptop_restarted.assert_sent_to_login("/").await;
    // Susan's own sessions are untouched.
    susan.assert_home("susan").await;
    other_susan.assert_home("susan").await;
    let (_, page) = text(susan.get("/admin").await).await;
    assert_eq!(devices(user_section(&page, "user001")).len(), 2);

    // David can log in again, and his activity says what happened.
    next_second().await;
    laptop.log_in("david", "bye", false).await;
    let rows = laptop
        .activity_once(|rows| kinds(rows).contains(&"ended_by_admin"))
        .await;
    let ended = rows
        .iter()
        .find(|row| row.kind == "ended_by_admin")
        .expect("the ending");
    assert_eq!(ended.what, "Logged out everywhere by an admin (susan)");
    assert!(ended.alert, "{ended:?}");

    // Bad forms: the page again with a message, nothing ended.
    let forms: [(&str, &str); 5] = [
        ("", "Please choose the user"),
        ("user=", "Please choose the user"),
        (
            "user=user001",
            "use \u{201c}Log out everywhere else\u{201d}",
        ),
        ("user=user999", "There is no such user"),
        ("user=a&user=b", "garbled"),
    ];
    for (form, message) in forms {
        let (status, page) = text(susan.post("/admin/sessions/end", form).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert!(page.contains(message), "{form}: {page}");
    }
    let long = format!("user={}", "a".repeat(100_000));
    let (status, _) = text(susan.post("/admin/sessions/end", long).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let response = susan.get("/admin/sessions/end").await;
    assert_redirect(&response, StatusCode::SEE_OTHER, "/admin");
    susan.assert_home("susan").await;
    other_susan.assert_home("susan").await;
    laptop.assert_home("david").await;
}

/// A user database made before the admin page gets the `is_admin` column
/// when the demo opens it, with the seed admin (susan) marked; its users
/// and passwords are kept.
#[tokio::test]
async fn an_older_database_gets_the_admin_column_with_susan_as_admin() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database_url = format!("sqlite://{}", dir.path().join("users.db").display());
    let old = sqlx::SqlitePool::connect(&format!("{database_url}?mode=rwc"))
        .await
        .expect("a new SQLite file");
    sqlx::query(
        "CREATE TABLE users (
            id TEXT PRIMARY KEY NOT NULL,
            username TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            auth_changed_at BIGINT
        )",
    )
    .execute(&old)
    .await
    .expect("the old users table");
    for (id, username, password) in [
        ("user001", "susan", "an older password"),
        ("user002", "david", "bye"),
    ] {
        sqlx::query("INSERT INTO users (id, username, password_hash) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(username)
            .bind(password_auth::generate_hash(password))
            .execute(&old)
            .await
            .expect("a user");
    }
    old.close().await;

    let demo = serve(app::Config {
        secret_key: axum_latch::SecretKey::generate().expect("a random key"),
        database_url,
        redis_url: None,
        redis_prefix: app::DEFAULT_REDIS_PREFIX.to_owned(),
        remember_grace: axum_latch::remember::DEFAULT_GRACE,
        microdot_compat: None,
    })
    .await;
    let susan = Browser::new(&demo);
    susan.log_in("susan", "an older password", false).await;
    let (status, page) = text(susan.get("/admin").await).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let david = Browser::new(&demo);
    david.log_in("david", "bye", false).await;
    assert_eq!(david.get("/admin").await.status(), StatusCode::FORBIDDEN);
    drop(demo);
}
