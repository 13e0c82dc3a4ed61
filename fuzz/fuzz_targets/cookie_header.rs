//! `Cookie` headers: arbitrary bytes, one header per line, first looked up
//! alone, then sent through the whole stack (`Session` over `Login` over a
//! handler that asks who is logged in), once with stateless remember-me
//! tokens and once with revocable ones in a `MemoryStore`.
//!
//! In the input, `$S`, `$R` and `$V` stand for real cookie values made by a
//! real login when the target starts: a session token, a stateless remember
//! token, and a revocable remember token (its selector is always
//! `AAAAAAAAAAAAAAAAAAAAAA`, so the fuzzer can reach the theft path with a
//! wrong validator). They let the fuzzer wrap good cookies in hostile
//! headers. The loader finds a user for every id: only the cookies stand
//! between a request and a login.
//!
//! Invariants: no panic, and nothing waits (every future is ready at once);
//! `cookies::find` agrees with a plain RFC 6265 reading
//! (`axum_latch::fuzzing::cookie_lookup`); a request whose headers hold none of
//! the three real values is never logged in, and gets no `Set-Cookie` but
//! deletions; a request that is logged in is so as the user who logged in;
//! a response sets each cookie at most once, only `session` and
//! `_remember`, and carries `Vary: Cookie`.
#![no_main]

use axum::extract::FromRequestParts;
use axum_latch::remember::{RememberStore, RevocableRemember, StoredToken};
use axum_latch::stores::MemoryStore;
use axum_latch::{
    Auth, CurrentUser, KeyRing, Login, Remember, SecretKey, Session, User, UserLoader,
};
use futures_util::FutureExt as _;
use http::header::{SET_COOKIE, VARY};
use http::{HeaderMap, Request, Response};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::sync::LazyLock;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

const SELECTOR: &str = "AAAAAAAAAAAAAAAAAAAAAA";

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    KeyRing::new(SecretKey::new(b"fuzz-current-key-0123456789abcdef").unwrap())
        .with_previous(SecretKey::new(b"fuzz-previous-key-0123456789abcdef").unwrap())
});

/// Real cookie values, from real logins.
struct Fixtures {
    session: String,
    remember: String,
    revocable: String,
    stored: StoredToken,
}

static FIXTURES: LazyLock<Fixtures> = LazyLock::new(|| {
    let response = serve(Login::new(load), true, HeaderMap::new());
    let session = set_cookie(&response, "session");
    let remember = set_cookie(&response, "_remember");

    let store = MemoryStore::new();
    let login = Login::new(load).remember_tokens(RevocableRemember::new(store.clone()));
    let response = serve(login, true, HeaderMap::new());
    let issued = set_cookie(&response, "_remember");
    let mut stored = now(store.list("\"alice\""))
        .unwrap()
        .pop()
        .expect("the login stored its token");
    stored.selector = SELECTOR.to_owned();
    let (_, validator) = issued.split_once('.').unwrap();
    Fixtures {
        session,
        remember,
        revocable: format!("{SELECTOR}.{validator}"),
        stored,
    }
});

#[derive(Clone, Debug)]
struct Account(Value);

impl User for Account {
    type Id = Value;
    fn id(&self) -> Value {
        self.0.clone()
    }
    fn auth_hash(&self) -> &[u8] {
        b"fuzz-auth-hash"
    }
}

/// Every id is a user.
async fn load(id: Value) -> Result<Option<Account>, Infallible> {
    Ok(Some(Account(id)))
}

/// Who the handler found logged in.
#[derive(Clone)]
struct Seen(Option<Value>);

/// Asks who is logged in; logs `alice` in (remembered) if told to.
#[derive(Clone)]
struct Handler {
    log_in: bool,
}

impl Service<Request<()>> for Handler {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let (mut parts, ()) = request.into_parts();
        let user = now(Option::<CurrentUser<Account>>::from_request_parts(
            &mut parts,
            &(),
        ))
        .expect("the loader never fails");
        if self.log_in {
            let auth = now(Auth::<Account>::from_request_parts(&mut parts, &())).unwrap();
            let _redirect =
                now(auth.login_user(&Account(Value::from("alice")), Remember::On)).unwrap();
        }
        let mut response = Response::new(());
        response
            .extensions_mut()
            .insert(Seen(user.map(|CurrentUser(user)| user.0.clone())));
        ready(Ok(response))
    }
}

fn now<F: Future>(future: F) -> F::Output {
    future.now_or_never().expect("nothing here ever waits")
}

fn serve(
    login: Login<Account, impl UserLoader<Account>>,
    log_in: bool,
    headers: HeaderMap,
) -> Response<()> {
    let mut service = Session::new(RING.clone()).layer(login.layer(Handler { log_in }));
    let mut request = Request::new(());
    *request.headers_mut() = headers;
    now(service.call(request)).unwrap()
}

/// The `Set-Cookie` headers of a response, as (name, value, attributes).
fn set_cookies(response: &Response<()>) -> Vec<(String, String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|header| {
            let text = header.to_str().expect("latch writes ASCII cookies");
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').expect("a cookie has a name");
            (name.to_owned(), value.to_owned(), attributes.to_owned())
        })
        .collect()
}

fn set_cookie(response: &Response<()>, name: &str) -> String {
    set_cookies(response)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("the login set no {name} cookie"))
        .1
}

/// `data` with `$S`, `$R` and `$V` replaced by the real cookie values.
fn substitute(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some((&byte, tail)) = rest.split_first() {
        let value = match (byte, tail.first()) {
            (b'$', Some(b'S')) => Some(&FIXTURES.session),
            (b'$', Some(b'R')) => Some(&FIXTURES.remember),
            (b'$', Some(b'V')) => Some(&FIXTURES.revocable),
            _ => None,
        };
        match value {
            Some(value) => {
                out.extend_from_slice(value.as_bytes());
                rest = &tail[1..];
            }
            None => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn check(response: &Response<()>, real_cookie: bool, data: &[u8]) {
    let Seen(user) = response.extensions().get::<Seen>().cloned().unwrap();
    let shown = String::from_utf8_lossy(data);
    if let Some(user) = &user {
        assert!(real_cookie, "logged in as {user} by {shown:?}");
        assert_eq!(user, "alice", "logged in as another user by {shown:?}");
    }
    let vary = response.headers().get_all(VARY).iter();
    assert!(
        vary.filter_map(|v| v.to_str().ok())
            .any(|v| v.eq_ignore_ascii_case("cookie")),
        "no Vary: Cookie"
    );
    let cookies = set_cookies(response);
    for (i, (name, value, attributes)) in cookies.iter().enumerate() {
        assert!(name == "session" || name == "_remember", "sets {name}");
        assert!(
            cookies[..i].iter().all(|(other, _, _)| other != name),
            "sets {name} twice for {shown:?}"
        );
        if !real_cookie {
            assert!(
                value.is_empty() && attributes.contains("Max-Age=0"),
                "sets {name}={value} for {shown:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let data = substitute(data);
    axum_latch::fuzzing::cookie_lookup(&data, "session");
    axum_latch::fuzzing::cookie_lookup(&data, "_remember");

    let fixtures = &*FIXTURES;
    let real_cookie = [&fixtures.session, &fixtures.remember, &fixtures.revocable]
        .iter()
        .any(|value| contains(&data, value));
    let headers = axum_latch::fuzzing::cookie_headers(&data);

    let response = serve(Login::new(load), false, headers.clone());
    check(&response, real_cookie, &data);

    let store = MemoryStore::new();
    now(store.insert(&fixtures.stored)).unwrap();
    let login = Login::new(load).remember_tokens(RevocableRemember::new(store));
    let response = serve(login, false, headers);
    check(&response, real_cookie, &data);
});
