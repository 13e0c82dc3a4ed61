//! What latch's login check costs per request: one whole router call in
//! process (`tower::ServiceExt::oneshot`, no network), next to a bare route
//! and to the same route on axum-login with tower-sessions' memory store.
//!
//! ```text
//! cargo bench --all-features --bench login_check
//! ```
//!
//! Every case answers `GET /` with "Hello, alice!" for user 1, loaded from
//! the same in-memory map; each is checked to answer 200 before it is timed.
//! See BENCHMARKS.md for the figures and what they mean.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, Response, StatusCode};
use latch::stores::MemoryStore;
use latch::{token, Auth, CurrentUser, KeyRing, Login, RevocableRemember, SecretKey, Session};
use std::collections::HashMap;
use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

/// A benchmark key, not for production.
const KEY: &str = "latch benchmark key: not for production use";

#[derive(Clone, Debug)]
pub struct BenchUser {
    id: u64,
    name: String,
    password_hash: Vec<u8>,
}

impl latch::User for BenchUser {
    type Id = u64;
    fn id(&self) -> u64 {
        self.id
    }
    fn auth_hash(&self) -> &[u8] {
        &self.password_hash
    }
}

type Users = Arc<HashMap<u64, BenchUser>>;

fn users() -> Users {
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

fn greeting(user: &BenchUser) -> String {
    format!("Hello, {}!", user.name)
}

fn bare_app(users: Users) -> Router {
    Router::new().route(
        "/",
        get(move || {
            let user = users.get(&1).cloned();
            async move { user.map(|user| greeting(&user)).unwrap_or_default() }
        }),
    )
}

fn latch_app(users: Users, login: Login<BenchUser>) -> Router {
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
        .layer(login)
        .layer(session)
}

fn loader(
    users: Users,
) -> impl Fn(u64) -> std::future::Ready<Result<Option<BenchUser>, Infallible>> + Send + Sync + 'static
{
    move |id| std::future::ready(Ok(users.get(&id).cloned()))
}

mod peer {
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

fn get_request(cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get("/");
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.body(Body::empty()).expect("a valid request")
}

/// The `name=value` pairs of a response's `Set-Cookie` headers, by name.
fn set_cookies<B>(response: &Response<B>) -> HashMap<String, String> {
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

async fn call(app: &Router, request: Request<Body>) -> Response<Body> {
    app.clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {})
}

/// Logs user 1 in through `GET /login` and returns the cookies it set.
async fn log_in(app: &Router) -> HashMap<String, String> {
    let response = call(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let cookies = set_cookies(&response);
    assert!(!cookies.is_empty(), "GET /login set no cookie");
    cookies
}

/// Checks that the request is answered with the greeting before timing it.
async fn check(app: &Router, cookie: Option<&str>) -> Response<Body> {
    let response = call(app, get_request(cookie)).await;
    assert_eq!(response.status(), StatusCode::OK, "cookie {cookie:?}");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"Hello, alice!");
    call(app, get_request(cookie)).await
}

/// A session cookie issued two minutes ago: latch re-issues it (renewal).
fn aged_session(session_cookie: &str) -> String {
    let keys = KeyRing::new(SecretKey::new(KEY).unwrap());
    let mut claims = token::decode(session_cookie, &keys).unwrap().claims;
    claims.insert("iat".into(), (token::now() - 120).into());
    token::encode(&claims, &SecretKey::new(KEY).unwrap())
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let users = users();

    let bare = bare_app(users.clone());
    let stateless = latch_app(users.clone(), Login::new(loader(users.clone())));
    let revocable = latch_app(
        users.clone(),
        Login::new(loader(users.clone()))
            .remember_tokens(RevocableRemember::new(MemoryStore::new())),
    );
    let axum_login = peer::app(users.clone());

    let (session_cookie, remember_cookie, aged_cookie, revocable_remember, peer_cookie) = rt
        .block_on(async {
            let latch_cookies = log_in(&stateless).await;
            let session = format!("session={}", latch_cookies["session"]);
            let remember = format!("_remember={}", latch_cookies["_remember"]);
            let aged = format!("session={}", aged_session(&latch_cookies["session"]));
            let revocable_cookies = log_in(&revocable).await;
            let peer_cookies = log_in(&axum_login).await;
            let peer = format!("id={}", peer_cookies["id"]);

            check(&bare, None).await;
            check(&stateless, Some(&session)).await;
            let restored = check(&stateless, Some(&remember)).await;
            assert!(set_cookies(&restored).contains_key("session"));
            let renewed = check(&stateless, Some(&aged)).await;
            assert!(set_cookies(&renewed).contains_key("session"), "no renewal");
            check(&axum_login, Some(&peer)).await;
            (
                session,
                remember,
                aged,
                revocable_cookies["_remember"].clone(),
                peer,
            )
        });

    let mut group = c.benchmark_group("login_check");
    group.bench_function("bare axum", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(call(&bare, get_request(None)).await) })
    });
    group.bench_function("latch: session cookie", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(call(&stateless, get_request(Some(&session_cookie))).await)
        })
    });
    group.bench_function("latch: session renewal", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(call(&stateless, get_request(Some(&aged_cookie))).await) })
    });
    group.bench_function("latch: remember restore (stateless)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(call(&stateless, get_request(Some(&remember_cookie))).await)
        })
    });
    let current = std::cell::RefCell::new(revocable_remember);
    group.bench_function("latch: remember restore (memory store)", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (revocable, current) = (&revocable, &current);
            async move {
                let mut token = current.take();
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let request = get_request(Some(&format!("_remember={token}")));
                    let start = Instant::now();
                    let response = call(revocable, request).await;
                    timed += start.elapsed();
                    // Each use rotates the token: the next request sends the new one.
                    token = set_cookies(&response)
                        .remove("_remember")
                        .expect("a rotated remember cookie");
                }
                current.replace(token);
                timed
            }
        })
    });
    group.bench_function("axum-login 0.18: session cookie", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(call(&axum_login, get_request(Some(&peer_cookie))).await) })
    });
    group.finish();
}

criterion_group! {
    name = login_check;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(login_check);
