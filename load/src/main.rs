//! A server for end-to-end load tests (`scripts/load`): the same "greet the
//! logged-in user" route with no login, with latch, or with axum-login.
//!
//! ```text
//! cargo run --release --manifest-path load/Cargo.toml -- <bare|latch|axum-login> <port>
//! ```
//!
//! It listens on 127.0.0.1:<port> and answers `GET /` with `Hello, alice!`
//! for a logged-in user 1, and `GET /login` by logging user 1 in (a
//! `Set-Cookie` to send back). Every variant loads users from the same
//! in-memory map, so the only difference between them is the login check.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use axum_latch::registry::{Ending, SessionRegistry, SessionStore};
use axum_latch::stores::MemoryStore;
use axum_latch::{Auth, CurrentUser, Login, Remember, SecretKey, Session};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

/// The key latch signs cookies with. This is a benchmark server: a fixed key
/// is fine here, and never for production (use `SecretKey::generate` or a
/// secret from the environment).
const KEY: &str = "latch bench_server key: a benchmark, not for production";

/// A user as every variant sees it.
#[derive(Clone, Debug)]
struct BenchUser {
    /// The id the session keeps.
    id: u64,
    /// The name the greeting uses.
    name: String,
    /// A password hash, standing in for a real one: latch fingerprints it,
    /// axum-login keeps it in the session.
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

/// The user database: a shared map from id to user.
type Users = Arc<HashMap<u64, BenchUser>>;

/// A few users; user 1, "alice", is the one that logs in.
fn users() -> Users {
    let users = [(1, "alice"), (2, "bob"), (3, "carol")]
        .into_iter()
        .map(|(id, name)| {
            let password_hash = format!("$argon2id$v=19$m=19456,t=2,p=1$bench${name}");
            let user = BenchUser {
                id,
                name: name.to_owned(),
                password_hash: password_hash.into_bytes(),
            };
            (id, user)
        })
        .collect();
    Arc::new(users)
}

/// What `GET /` answers a logged-in user.
fn greeting(user: &BenchUser) -> String {
    format!("Hello, {}!", user.name)
}

/// User 1, whom `GET /login` logs in.
fn alice(users: &Users) -> BenchUser {
    users.get(&1).cloned().expect("user 1 is in the map")
}

/// No login at all: the handler looks user 1 up in the same map and greets
/// them, so it does the loader's work and nothing else.
fn bare_app(users: Users) -> Router {
    Router::new()
        .route(
            "/",
            get(move || {
                let user = users.get(&1).cloned();
                async move {
                    match user {
                        Some(user) => greeting(&user).into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
        .route("/login", get(|| async { StatusCode::OK }))
}

/// latch: a signed session cookie, and the user loaded from the map on every
/// request by `CurrentUser`.
fn latch_app(users: Users, registry: Option<SessionRegistry>) -> Router {
    let loader = {
        let users = users.clone();
        move |id: u64| std::future::ready(Ok::<_, Infallible>(users.get(&id).cloned()))
    };
    let key = SecretKey::new(KEY).expect("the key is long enough");
    Router::new()
        .route(
            "/",
            get(|CurrentUser(user): CurrentUser<BenchUser>| async move { greeting(&user) }),
        )
        .route(
            "/login",
            get(move |auth: Auth<BenchUser>| {
                let user = alice(&users);
                async move {
                    // A 303 to `/` with the session cookie.
                    match auth.login_user(&user, Remember::Off).await {
                        Ok(redirect) => redirect.into_response(),
                        Err(error) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
                        }
                    }
                }
            }),
        )
        .layer(match registry {
            Some(registry) => Login::new(loader).sessions(registry),
            None => Login::new(loader),
        })
        // The load test talks plain HTTP over loopback, so no `Secure`.
        .layer(Session::new(key).secure(false))
}

/// A session registry on the in-memory store that has ended 10,000 sessions
/// of other users and cut off user 2's: the request path checks a set with
/// something in it.
async fn registry_with_endings() -> Result<SessionRegistry, Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 24 * 60 * 60;
    for n in 0..10_000u64 {
        // 16 bytes as 22 characters of base64url: a session id's shape.
        let id = format!("{n:0>21}A");
        let ending = Ending::Session {
            session_id: id,
            user_id: format!("\"other{n}\""),
            until,
        };
        SessionStore::end(&store, &ending).await?;
    }
    let cut_off = Ending::User {
        user_id: "2".to_owned(),
        not_before: until - 24 * 60 * 60,
        except: None,
        until,
    };
    SessionStore::end(&store, &cut_off).await?;
    Ok(SessionRegistry::connect(store).await?)
}

mod peer {
    //! The same routes on axum-login 0.18, with tower-sessions' memory store.

    use super::{alice, greeting, BenchUser, Users};
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

    /// axum-login's view of the user map.
    #[derive(Clone)]
    pub(super) struct Backend(Users);

    impl AuthnBackend for Backend {
        type User = BenchUser;
        /// The id of the user to log in: `GET /login` checks no password.
        type Credentials = u64;
        type Error = Infallible;

        async fn authenticate(&self, id: u64) -> Result<Option<BenchUser>, Infallible> {
            Ok(self.0.get(&id).cloned())
        }

        async fn get_user(&self, id: &UserId<Self>) -> Result<Option<BenchUser>, Infallible> {
            Ok(self.0.get(id).cloned())
        }
    }

    /// Sessions in a server-side memory store, the user loaded from the map
    /// on every request by `AuthSession`; `401` without a login.
    pub(super) fn app(users: Users) -> Router {
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
                    let user = alice(&users);
                    async move {
                        match session.login(&user).await {
                            Ok(()) => StatusCode::OK.into_response(),
                            Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
                                .into_response(),
                        }
                    }
                }),
            )
            .layer(auth)
    }
}

/// Parses `<bare|latch|axum-login> <port>`.
fn parse_args() -> Result<(String, u16), String> {
    let usage = "usage: bench_server <bare|latch|latch-registry|axum-login> <port>";
    let mut args = std::env::args().skip(1);
    let (Some(variant), Some(port), None) = (args.next(), args.next(), args.next()) else {
        return Err(usage.to_owned());
    };
    let port = port
        .parse()
        .map_err(|_| format!("not a port: {port}\n{usage}"))?;
    Ok((variant, port))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (variant, port) = parse_args()?;
    let users = users();
    let app = match variant.as_str() {
        "bare" => bare_app(users),
        "latch" => latch_app(users, None),
        "latch-registry" => latch_app(users, Some(registry_with_endings().await?)),
        "axum-login" => peer::app(users),
        other => return Err(format!("unknown variant {other}: bare, latch, latch-registry or axum-login").into()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
