//! The apps and requests latch's benchmarks share: the same "greet the
//! logged-in user" route bare, on latch, and on axum-login 0.18.

#![allow(dead_code)] // each benchmark uses its own part

#[path = "../../tests/support/jwt.rs"]
pub mod jwt;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use axum_latch::registry::{Ending, SessionRegistry, SessionStore};
use axum_latch::remember::RevocableRemember;
use axum_latch::stores::MemoryStore;
use axum_latch::{Auth, CurrentUser, Login, SecretKey, Session, UserLoader};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use tower::ServiceExt as _;

/// A benchmark key, not for production.
pub const KEY: &str = "latch benchmark key: not for production use";

#[derive(Clone, Debug)]
pub struct BenchUser {
    id: u64,
    name: String,
    password_hash: Vec<u8>,
}

impl axum_latch::User for BenchUser {
    type Id = u64;
    fn id(&self) -> u64 {
        self.id
    }
    fn auth_hash(&self) -> &[u8] {
        &self.password_hash
    }
}

pub type Users = Arc<HashMap<u64, BenchUser>>;

pub fn users() -> Users {
    let mut users = HashMap::new();
    for (id, name) in [(1, "alice"), (2, "bob"), (3, "carol")] {
        users.insert(
            id,
            BenchUser {
                id,
                name: name.to_owned(),
                password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${name}").into_bytes(),
            },
        );
    }
    Arc::new(users)
}

pub fn greeting(user: &BenchUser) -> String {
    format!("Hello, {}!", user.name)
}

pub fn bare_app(users: Users) -> Router {
    Router::new().route(
        "/",
        get(move || {
            let user = users.get(&1).cloned();
            async move { user.map(|user| greeting(&user)).unwrap_or_default() }
        }),
    )
}

/// The bare route behind two layers that do nothing, as latch's two
/// layers sit: what axum's layering costs by itself.
pub fn layered_app(users: Users) -> Router {
    use tower::util::MapRequestLayer;
    bare_app(users)
        .layer(MapRequestLayer::new(|request: Request<Body>| request))
        .layer(MapRequestLayer::new(|request: Request<Body>| request))
}

pub fn latch_app(users: Users, login: Login<BenchUser, impl UserLoader<BenchUser>>) -> Router {
    let session = Session::new(SecretKey::new(KEY).expect("a long enough key"));
    Router::new()
        .route(
            "/",
            get(|CurrentUser(user): CurrentUser<BenchUser>| async move { greeting(&user) }),
        )
        .route(
            "/login",
            get(move |auth: Auth<BenchUser>| {
                let user = users.get(&1).cloned().expect("user 1");
                let remember = true;
                async move { auth.login_user(&user, remember).await.map_err(|_| ()) }
            }),
        )
        .route(
            "/logout",
            axum::routing::post(|auth: Auth<BenchUser>| async move {
                auth.logout_user().await;
                StatusCode::SEE_OTHER
            }),
        )
        .layer(login)
        .layer(session)
}

pub fn loader(
    users: Users,
) -> impl Fn(u64) -> std::future::Ready<Result<Option<BenchUser>, Infallible>> + Send + Sync + 'static
{
    move |id| std::future::ready(Ok(users.get(&id).cloned()))
}

pub mod peer {
    //! The same route on axum-login 0.18 and tower-sessions' memory store.
    use super::{greeting, BenchUser, Users};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use axum::Router;
    use axum_login::tower_sessions::{MemoryStore, SessionManagerLayer};
    use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
    use std::convert::Infallible;

    impl AuthUser for BenchUser {
        type Id = u64;
        fn id(&self) -> u64 {
            self.id
        }
        fn session_auth_hash(&self) -> &[u8] {
            &self.password_hash
        }
    }

    #[derive(Clone)]
    pub struct Backend(pub Users);

    impl AuthnBackend for Backend {
        type User = BenchUser;
        type Credentials = u64;
        type Error = Infallible;

        async fn authenticate(&self, id: u64) -> Result<Option<BenchUser>, Infallible> {
            Ok(self.0.get(&id).cloned())
        }

        async fn get_user(&self, id: &UserId<Self>) -> Result<Option<BenchUser>, Infallible> {
            Ok(self.0.get(id).cloned())
        }
    }

    pub fn app(users: Users) -> Router {
        let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
        let auth = AuthManagerLayerBuilder::new(Backend(users.clone()), sessions).build();
        Router::new()
            .route(
                "/",
                get(|session: AuthSession<Backend>| async move {
                    match session.user {
                        Some(user) => greeting(&user).into_response(),
                        None => StatusCode::UNAUTHORIZED.into_response(),
                    }
                }),
            )
            .route(
                "/login",
                get(move |mut session: AuthSession<Backend>| {
                    let user = users.get(&1).cloned().expect("user 1");
                    async move {
                        match session.login(&user).await {
                            Ok(()) => StatusCode::OK,
                            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
                        }
                    }
                }),
            )
            .layer(auth)
    }
}

pub fn get_request(cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get("/");
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.body(Body::empty()).expect("a valid request")
}

/// The `name=value` pairs of a response's `Set-Cookie` headers, by name.
pub fn set_cookies<B>(response: &Response<B>) -> HashMap<String, String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

pub async fn call(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {})
}

/// Logs user 1 in through `GET /login` and returns the cookies it set.
pub async fn log_in(app: &Router) -> HashMap<String, String> {
    let response = call(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let cookies = set_cookies(&response);
    assert!(!cookies.is_empty(), "GET /login set no cookie");
    cookies
}

/// Checks that the request is answered with the greeting before timing it.
pub async fn check(app: &Router, cookie: Option<&str>) -> Response<Body> {
    let response = call(app, get_request(cookie)).await;
    assert_eq!(response.status(), StatusCode::OK, "cookie {cookie:?}");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"Hello, alice!");
    call(app, get_request(cookie)).await
}

/// A session cookie issued two minutes ago: latch re-issues it (renewal).
pub fn aged_session(session_cookie: &str) -> String {
    let mut claims = jwt::decode(session_cookie, &[KEY]).unwrap();
    claims.insert("iat".into(), (jwt::now() - 120).into());
    jwt::encode(&claims, KEY)
}

/// A session id of latch's shape, made from `n`.
pub fn session_id(n: u64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes[8..].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A store whose change feed holds `count` ended sessions of other users
/// (until a day from now) and a cut-off for user 2: what a registry
/// connected to it loads.
pub async fn store_with_endings(count: u64) -> MemoryStore {
    let store = MemoryStore::new();
    let until = jwt::now() + 24 * 60 * 60;
    for n in 0..count {
        let ending = Ending::Session {
            session_id: session_id(n),
            user_id: format!("\"other{n}\""),
            until,
        };
        SessionStore::end(&store, &ending)
            .await
            .expect("the memory store answers");
    }
    let cut_off = Ending::User {
        user_id: "2".to_owned(),
        not_before: jwt::now(),
        except: None,
        until,
    };
    SessionStore::end(&store, &cut_off)
        .await
        .expect("the memory store answers");
    store
}

/// Every app of the benchmarks, with a cookie for each that logs user 1 in.
pub struct Cases {
    pub bare: Router,
    /// The bare route behind two layers that do nothing.
    pub layered: Router,
    /// latch with stateless remember-me tokens.
    pub stateless: Router,
    /// latch with revocable remember-me tokens in a `MemoryStore`.
    pub revocable: Router,
    /// latch with a session registry holding 10,000 ended sessions and a
    /// cut-off for another user.
    pub registry: Router,
    /// `session=…`, a login recorded by `registry`.
    pub registry_cookie: String,
    pub axum_login: Router,
    /// `session=…`, fresh.
    pub session_cookie: String,
    /// `session=…`, issued two minutes ago: it gets re-issued.
    pub aged_cookie: String,
    /// `_remember=…`, a stateless token.
    pub remember_cookie: String,
    /// The value of a revocable token (it changes at each use).
    pub revocable_token: String,
    /// `id=…`, axum-login's session.
    pub peer_cookie: String,
}

impl Cases {
    /// Builds the apps, logs in on each, and checks every case answers the greeting.
    pub async fn new() -> Self {
        let users = users();
        let bare = bare_app(users.clone());
        let layered = layered_app(users.clone());
        let stateless = latch_app(users.clone(), Login::new(loader(users.clone())));
        let revocable = latch_app(
            users.clone(),
            Login::new(loader(users.clone()))
                .remember_tokens(RevocableRemember::new(MemoryStore::new())),
        );
        let axum_login = peer::app(users.clone());
        let sessions = SessionRegistry::connect(store_with_endings(10_000).await)
            .await
            .expect("the memory store answers");
        let registry = latch_app(
            users.clone(),
            Login::new(loader(users.clone())).sessions(sessions),
        );

        let latch_cookies = log_in(&stateless).await;
        let session_cookie = format!("session={}", latch_cookies["session"]);
        let remember_cookie = format!("_remember={}", latch_cookies["_remember"]);
        let aged_cookie = format!("session={}", aged_session(&latch_cookies["session"]));
        let revocable_token = log_in(&revocable).await["_remember"].clone();
        let peer_cookie = format!("id={}", log_in(&axum_login).await["id"]);
        let registry_cookie = format!("session={}", log_in(&registry).await["session"]);

        check(&bare, None).await;
        check(&layered, None).await;
        check(&stateless, Some(&session_cookie)).await;
        let restored = check(&stateless, Some(&remember_cookie)).await;
        assert!(set_cookies(&restored).contains_key("session"));
        let renewed = check(&stateless, Some(&aged_cookie)).await;
        assert!(set_cookies(&renewed).contains_key("session"), "no renewal");
        check(&axum_login, Some(&peer_cookie)).await;
        check(&registry, Some(&registry_cookie)).await;
        Self {
            bare,
            layered,
            stateless,
            revocable,
            registry,
            registry_cookie,
            axum_login,
            session_cookie,
            aged_cookie,
            remember_cookie,
            revocable_token,
            peer_cookie,
        }
    }

    /// A request with the revocable remember token `token`.
    pub fn revocable_request(token: &str) -> Request<Body> {
        get_request(Some(&format!("_remember={token}")))
    }

    /// The revocable token a response rotated the request's token to.
    pub fn rotated_token(response: &Response<Body>) -> String {
        set_cookies(response)
            .remove("_remember")
            .expect("a rotated remember cookie")
    }
}
