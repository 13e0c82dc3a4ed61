//! Login throttling, the same behaviour checked against each backend: in
//! memory (always) and on Redis (when `TEST_REDIS_URL` is set; unset: each
//! Redis test prints a note and passes; set but unreachable: it fails).
//!
//! Each test gets counts of its own: a new in-memory throttle, or a new
//! random Redis key prefix whose keys are deleted at the end, pass or fail.
//! Every subject has two throttles sharing counts, as two instances of an
//! app would: clones in memory, two connections with one prefix on Redis.
//!
//! Times are moved by hand through the hidden `*_at` methods, starting from
//! the real clock (Redis keys expire by TTL in real time, which the tests
//! never wait for). The end-to-end tests drive an axum login route with the
//! real clock and a long delay.

use axum::body::Body;
use axum::extract::{ConnectInfo, Form, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::FutureExt as _;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use latch::{Throttle, Throttled};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tower::ServiceExt as _;

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

/// Two throttles with shared counts: two instances of one app.
struct Subject {
    throttle: Throttle,
    other: Throttle,
}

/// A subject of its own for one test, and what tidies up after it.
struct Fixture {
    subject: Subject,
    cleanup: futures_util::future::BoxFuture<'static, ()>,
}

/// Runs one test on a backend's fixture (`None`: skipped), then cleans up,
/// whether the test passed or panicked.
async fn run<F, Fut>(fixture: Option<Fixture>, test: F)
where
    F: FnOnce(Subject) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(Fixture { subject, cleanup }) = fixture else {
        return;
    };
    let outcome = AssertUnwindSafe(test(subject)).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A test per behaviour function, on the backend that `$open` (an async
/// fn returning `Option<Fixture>`) makes.
macro_rules! behaviour_tests {
    ($open:path) => {
        behaviour_tests!(@stamp $open;
            current_thread:
                the_defaults,
                username_limit_then_a_doubling_delay_up_to_the_cap,
                other_usernames_are_unaffected,
                usernames_are_trimmed_and_lowercased,
                the_address_limit_covers_every_username_from_the_address,
                ipv6_counts_per_64_and_mapped_ipv4_as_ipv4,
                without_an_address_only_the_username_counts,
                success_resets_the_username_but_not_the_address,
                failures_are_forgotten_a_window_after_the_last_one,
                a_block_longer_than_the_window_is_served,
                two_instances_share_counts,
                login_route_end_to_end;
            multi_thread:
                concurrent_failures_all_count;
        );
    };
    (@stamp $open:path;
        current_thread: $($current:ident),* ;
        multi_thread: $($multi:ident),* ;
    ) => {
        $(
            #[tokio::test]
            async fn $current() {
                super::run($open().await, super::$current).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $multi() {
                super::run($open().await, super::$multi).await;
            }
        )*
    };
}

mod memory {
    use super::{Fixture, Subject};
    use latch::Throttle;

    async fn open() -> Option<super::Fixture> {
        let throttle = Throttle::in_memory();
        Some(Fixture {
            subject: Subject {
                other: throttle.clone(),
                throttle,
            },
            cleanup: Box::pin(async {}),
        })
    }

    behaviour_tests!(open);
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::ConnectionAddr;
    use std::collections::HashMap;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;
    use tracing_subscriber::layer::SubscriberExt as _;

    fn url() -> Option<String> {
        match std::env::var("TEST_REDIS_URL") {
            Ok(url) if !url.trim().is_empty() => Some(url),
            _ => {
                eprintln!("note: TEST_REDIS_URL is not set; skipping this Redis test");
                None
            }
        }
    }

    async fn connect(client: redis::Client) -> ConnectionManager {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1);
        ConnectionManager::new_with_config(client, config)
            .await
            .unwrap_or_else(|e| panic!("TEST_REDIS_URL is set, but Redis cannot be reached: {e}"))
    }

    async fn manager(url: &str) -> ConnectionManager {
        let client = redis::Client::open(url)
            .unwrap_or_else(|e| panic!("TEST_REDIS_URL={url:?} is not a Redis URL: {e}"));
        connect(client).await
    }

    fn random_prefix() -> String {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        format!("latch_test_{:016x}:", u64::from_le_bytes(bytes))
    }

    /// Deletes every key under `prefix`.
    fn cleanup(
        mut admin: ConnectionManager,
        prefix: String,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            for key in keys(&mut admin, &prefix).await {
                let _: i64 = redis::cmd("DEL")
                    .arg(&key)
                    .query_async(&mut admin)
                    .await
                    .expect("DEL a test key");
            }
        })
    }

    /// Two throttles on two connections, with one new random prefix.
    async fn open() -> Option<Fixture> {
        let url = url()?;
        let first = manager(&url).await;
        let second = manager(&url).await;
        let prefix = random_prefix();
        Some(Fixture {
            subject: Subject {
                throttle: Throttle::redis(first.clone()).prefix(&prefix),
                other: Throttle::redis(second).prefix(&prefix),
            },
            cleanup: cleanup(first, prefix),
        })
    }

    behaviour_tests!(open);

    /// The keys under `prefix`, sorted.
    async fn keys(connection: &mut ConnectionManager, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(connection)
                .await
                .expect("SCAN the test's keys");
            keys.extend(batch);
            if next == 0 {
                keys.sort();
                keys.dedup();
                return keys;
            }
            cursor = next;
        }
    }

    async fn cmd<T: redis::FromRedisValue>(
        connection: &mut ConnectionManager,
        name: &str,
        args: &[&str],
    ) -> T {
        redis::cmd(name)
            .arg(args)
            .query_async(connection)
            .await
            .unwrap_or_else(|e| panic!("{name} {args:?}: {e}"))
    }

    /// Runs a Redis-only test with a manager and a random prefix, then
    /// deletes the prefix's keys.
    async fn with_redis<F, Fut>(test: F)
    where
        F: FnOnce(String, ConnectionManager, String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(url) = url() else { return };
        let manager = manager(&url).await;
        let prefix = random_prefix();
        let outcome = AssertUnwindSafe(test(url, manager.clone(), prefix.clone()))
            .catch_unwind()
            .await;
        cleanup(manager, prefix).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    fn millis(time: SystemTime) -> u64 {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[tokio::test]
    async fn key_layout_fields_and_ttl() {
        with_redis(async |_, mut connection, prefix| {
            let throttle = Throttle::redis(connection.clone())
                .prefix(&prefix)
                .username_limit(2)
                .base_delay(Duration::from_secs(30))
                .window(Duration::from_secs(600));
            let clock = Clock::new(&throttle);
            let now = millis(clock.now());
            let user = format!("{prefix}throttle:user:susan");
            let addr = format!("{prefix}throttle:addr:2001:db8:1:2::/64");

            clock.fail(" Susan", ip("2001:db8:1:2::5")).await;
            assert_eq!(
                keys(&mut connection, &prefix).await,
                vec![addr.clone(), user.clone()]
            );
            for key in [&user, &addr] {
                let kind: String = cmd(&mut connection, "TYPE", &[key]).await;
                assert_eq!(kind, "hash");
                let fields: HashMap<String, String> = cmd(&mut connection, "HGETALL", &[key]).await;
                let expected: HashMap<String, String> = [
                    ("failures", "1".to_owned()),
                    ("last_failure", now.to_string()),
                    ("blocked_until", "0".to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                assert_eq!(fields, expected, "{key}");
                let ttl: i64 = cmd(&mut connection, "PTTL", &[key]).await;
                assert!(
                    (590_000..=600_000).contains(&ttl),
                    "{key}: PTTL {ttl}: the window"
                );
            }

            // Past the limit: blocked_until, by the app's clock.
            clock.fail("susan", None).await;
            let until: String = cmd(&mut connection, "HGET", &[&user, "blocked_until"]).await;
            assert_eq!(until, (now + 30_000).to_string());
            let failures: String = cmd(&mut connection, "HGET", &[&user, "failures"]).await;
            assert_eq!(failures, "2");

            // A block longer than the window keeps its key that long: 2
            // hours, capped at the default 15 minutes, not the window's 10.
            let long = throttle.clone().base_delay(Duration::from_secs(3_600));
            Clock::new(&long).fail("susan", None).await;
            let ttl: i64 = cmd(&mut connection, "PTTL", &[&user]).await;
            assert!((890_000..=900_000).contains(&ttl), "PTTL {ttl}");

            // A good login deletes the username's key, not the address's.
            clock.succeed("SUSAN", ip("2001:db8:1:2::5")).await;
            assert_eq!(keys(&mut connection, &prefix).await, vec![addr.clone()]);

            // IPv4, also when mapped into IPv6.
            clock.fail("david", ip("::ffff:192.0.2.7")).await;
            assert!(keys(&mut connection, &prefix)
                .await
                .contains(&format!("{prefix}throttle:addr:192.0.2.7")));

            // The default prefix.
            let default = format!("{:?}", Throttle::redis(connection.clone()));
            assert!(
                default.contains(r#"backend: "redis, prefix \"latch:\"""#),
                "{default}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn prefixes_isolate_throttles() {
        with_redis(async |_, connection, prefix| {
            // Unescaped, `[a]*:` as a glob would match `a:`'s keys; no
            // command here takes a pattern, but make sure.
            let a = Throttle::redis(connection.clone())
                .prefix(format!("{prefix}[a]*:"))
                .username_limit(1);
            let b = Throttle::redis(connection.clone())
                .prefix(format!("{prefix}a:"))
                .username_limit(1);
            Clock::new(&a).fail("susan", None).await;
            assert!(a.check("susan", None).await.is_err());
            assert!(b.check("susan", None).await.is_ok());
            b.succeeded("susan", None).await;
            assert!(a.check("susan", None).await.is_err());
        })
        .await;
    }

    #[tokio::test]
    async fn corrupt_keys_fail_open_with_an_error_logged() {
        with_redis(async |_, mut connection, prefix| {
            let throttle = Throttle::redis(connection.clone())
                .prefix(&prefix)
                .username_limit(1);
            let user = format!("{prefix}throttle:user:susan");
            let (events, _guard) = capture_events();

            // A key of another type: every call fails, none panics.
            let _: () = cmd(&mut connection, "SET", &[&user, "not a hash"]).await;
            assert_eq!(throttle.check("susan", None).await, Ok(()));
            let logged = events.take();
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert!(logged[0].starts_with("ERROR latch:"), "{logged:?}");
            assert!(
                logged[0].contains("letting the login through"),
                "{logged:?}"
            );
            assert!(logged[0].contains("WRONGTYPE"), "{logged:?}");

            throttle.failed("susan", ip("192.0.2.1")).await;
            let logged = events.take();
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert!(logged[0].starts_with("ERROR latch:"), "{logged:?}");
            assert!(logged[0].contains("failed login not counted"), "{logged:?}");

            // A success deletes whatever the key held: counting works again.
            throttle.succeeded("susan", None).await;
            assert_eq!(events.take(), Vec::<String>::new());
            throttle.failed("susan", None).await;
            assert!(throttle.check("susan", None).await.is_err());
            assert_eq!(events.take(), Vec::<String>::new());

            // A hash with a bad blocked_until.
            let _: i64 = cmd(&mut connection, "HSET", &[&user, "blocked_until", "soon"]).await;
            assert_eq!(throttle.check("susan", None).await, Ok(()));
            let logged = events.take();
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert!(logged[0].contains("blocked_until"), "{logged:?}");
            assert!(logged[0].contains("soon"), "{logged:?}");
        })
        .await;
    }

    /// A TCP proxy in front of the test's Redis, to take Redis away from a
    /// throttle and give it back.
    struct Proxy {
        port: u16,
        task: Option<JoinHandle<()>>,
    }

    impl Proxy {
        async fn start(upstream: (String, u16), port: u16) -> Self {
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind the proxy");
            let port = listener.local_addr().unwrap().port();
            let task = tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    let upstream = upstream.clone();
                    connections.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            Self {
                port,
                task: Some(task),
            }
        }

        /// Closes the listener and every connection through it.
        async fn stop(&mut self) {
            if let Some(task) = self.task.take() {
                task.abort();
                let _ = task.await;
            }
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            if let Some(task) = &self.task {
                task.abort();
            }
        }
    }

    #[tokio::test]
    async fn redis_down_fails_open_and_comes_back() {
        with_redis(async |url, _, prefix| {
            let info = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection_info()
                .clone();
            let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
                eprintln!("note: TEST_REDIS_URL is not plain TCP; skipping the outage test");
                return;
            };
            let upstream = (host, port);
            let mut proxy = Proxy::start(upstream.clone(), 0).await;
            let through = info.set_addr(ConnectionAddr::Tcp("127.0.0.1".into(), proxy.port));
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_millis(500)))
                .set_response_timeout(Some(Duration::from_millis(500)))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            let manager =
                ConnectionManager::new_with_config(redis::Client::open(through).unwrap(), config)
                    .await
                    .expect("connect through the proxy");
            let throttle = Throttle::redis(manager).prefix(&prefix).username_limit(1);
            throttle.failed("susan", None).await;
            assert!(throttle.check("susan", None).await.is_err(), "Redis up");

            proxy.stop().await;
            let (events, guard) = capture_events();
            let started = std::time::Instant::now();
            assert_eq!(
                throttle.check("susan", None).await,
                Ok(()),
                "Redis down: the login goes on"
            );
            throttle.failed("susan", None).await;
            throttle.succeeded("susan", None).await;
            let took = started.elapsed();
            assert!(took < Duration::from_secs(10), "took {took:?}");
            let errors = events.take();
            drop(guard);
            let logged = &errors;
            assert!(
                errors.iter().all(|e| e.starts_with("ERROR latch:")),
                "{logged:?}"
            );
            assert_eq!(errors.len(), 3, "one error per call: {logged:?}");
            assert!(
                errors[0].contains("letting the login through"),
                "{logged:?}"
            );
            assert!(errors[1].contains("failed login not counted"), "{logged:?}");
            assert!(errors[2].contains("not reset"), "{logged:?}");

            // Redis back on the same port: the count kept in Redis is there
            // again, and new failures count (the manager reconnects, and a
            // refused connection is tried once more).
            let _proxy = Proxy::start(upstream, proxy.port).await;
            let mut back = false;
            for _ in 0..50 {
                if throttle.check("susan", None).await.is_err() {
                    back = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(back, "the throttle works again once Redis is back");
            throttle.failed("david", None).await;
            assert!(throttle.check("david", None).await.is_err());
        })
        .await;
    }

    // -----------------------------------------------------------------------
    // Captured tracing events
    // -----------------------------------------------------------------------

    /// Every event, as `LEVEL target: field=value ...`.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<String>>>);

    impl Captured {
        /// The events at `error` since the last call.
        fn take(&self) -> Vec<String> {
            let events = std::mem::take(&mut *self.0.lock().unwrap());
            events
                .into_iter()
                .filter(|event| event.starts_with("ERROR "))
                .collect()
        }
    }

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let meta = event.metadata();
            let mut fields = Fields(format!("{} {}:", meta.level(), meta.target()));
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }

    /// Captures this thread's events until the guard is dropped (the test
    /// runs on one thread: a current-thread runtime). An idle second
    /// dispatcher keeps callsites from being switched off for good by a
    /// thread without this subscriber (as in `tests/remember_faults.rs`).
    fn capture_events() -> (Captured, tracing::subscriber::DefaultGuard) {
        static IDLE: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        IDLE.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(captured.clone());
        (
            captured.clone(),
            tracing::subscriber::set_default(subscriber),
        )
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("an IP address"))
}

/// A throttle and a clock that tests move by hand; clocks made with
/// [`Clock::with`] share the time.
#[derive(Clone)]
struct Clock {
    throttle: Throttle,
    now: Arc<Mutex<SystemTime>>,
}

impl Clock {
    fn new(throttle: &Throttle) -> Self {
        Self {
            throttle: throttle.clone(),
            now: Arc::new(Mutex::new(SystemTime::now())),
        }
    }

    /// Another throttle on the same clock.
    fn with(&self, throttle: &Throttle) -> Self {
        Self {
            throttle: throttle.clone(),
            now: self.now.clone(),
        }
    }

    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap()
    }

    fn advance(&self, by: Duration) {
        *self.now.lock().unwrap() += by;
    }

    async fn check(&self, username: &str, address: Option<IpAddr>) -> Result<(), Throttled> {
        self.throttle.check_at(username, address, self.now()).await
    }

    /// How long the login is blocked for (zero: it is not).
    async fn blocked(&self, username: &str, address: Option<IpAddr>) -> Duration {
        match self.check(username, address).await {
            Ok(()) => Duration::ZERO,
            Err(throttled) => throttled.retry_after,
        }
    }

    async fn fail(&self, username: &str, address: Option<IpAddr>) {
        self.throttle.failed_at(username, address, self.now()).await;
    }

    async fn fail_times(&self, n: u32, username: &str, address: Option<IpAddr>) {
        for _ in 0..n {
            self.fail(username, address).await;
        }
    }

    async fn succeed(&self, username: &str, address: Option<IpAddr>) {
        self.throttle
            .succeeded_at(username, address, self.now())
            .await;
    }
}

// ---------------------------------------------------------------------------
// Behaviour
// ---------------------------------------------------------------------------

/// 5 free failures per username, then 1 s doubling to 15 minutes; 20 per
/// address.
async fn the_defaults(t: Subject) {
    let clock = Clock::new(&t.throttle);
    clock.fail_times(4, "susan", None).await;
    assert_eq!(clock.blocked("susan", None).await, Duration::ZERO);
    let mut got = Vec::new();
    for _ in 0..14 {
        clock.fail("susan", None).await;
        let blocked = clock.blocked("susan", None).await;
        got.push(blocked.as_secs());
        clock.advance(blocked);
    }
    assert_eq!(
        got,
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900]
    );

    for n in 0..19 {
        clock.fail(&format!("user{n}"), ip("192.0.2.1")).await;
    }
    assert!(clock.check("anyone", ip("192.0.2.1")).await.is_ok());
    clock.fail("user19", ip("192.0.2.1")).await;
    assert_eq!(clock.blocked("anyone", ip("192.0.2.1")).await, SECOND);
}

async fn username_limit_then_a_doubling_delay_up_to_the_cap(t: Subject) {
    let throttle = t
        .throttle
        .username_limit(3)
        .base_delay(Duration::from_millis(500))
        .max_delay(Duration::from_secs(5));
    let clock = Clock::new(&throttle);
    for _ in 0..2 {
        clock.fail("susan", None).await;
        assert_eq!(clock.blocked("susan", None).await, Duration::ZERO);
    }
    for expected in [500, 1_000, 2_000, 4_000, 5_000, 5_000] {
        let expected = Duration::from_millis(expected);
        clock.fail("susan", None).await;
        let throttled = clock.check("susan", None).await.unwrap_err();
        assert_eq!(throttled.retry_after, expected);
        clock.advance(Duration::from_millis(300));
        assert_eq!(
            clock.blocked("susan", None).await,
            expected - Duration::from_millis(300),
            "the block counts down"
        );
        clock.advance(expected - Duration::from_millis(300));
        assert!(clock.check("susan", None).await.is_ok(), "and ends");
    }
}

async fn other_usernames_are_unaffected(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2));
    clock.fail_times(10, "susan", ip("192.0.2.1")).await;
    assert!(clock.check("susan", ip("198.51.100.1")).await.is_err());
    assert!(clock.check("susan", None).await.is_err());
    assert!(clock.check("david", None).await.is_ok());
    assert!(clock.check("david", ip("198.51.100.1")).await.is_ok());
    assert!(clock.check("susan2", None).await.is_ok());
}

async fn usernames_are_trimmed_and_lowercased(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(3));
    clock.fail(" Susan ", None).await;
    clock.fail("SUSAN", None).await;
    clock.fail("susan\n", None).await;
    assert!(clock.check("susan", None).await.is_err());
    assert!(clock.check("\tSuSaN", None).await.is_err());
    assert!(clock.check("su san", None).await.is_ok());
    // Unicode: Ä and ä are one name.
    clock.fail_times(2, "JÖRG", None).await;
    clock.fail("jörg", None).await;
    assert!(clock.check("Jörg", None).await.is_err());
}

async fn the_address_limit_covers_every_username_from_the_address(t: Subject) {
    let clock = Clock::new(&t.throttle.address_limit(5).username_limit(3));
    let address = ip("192.0.2.1");
    for n in 0..5 {
        let name = format!("user{n}");
        assert!(clock.check(&name, address).await.is_ok());
        clock.fail(&name, address).await;
    }
    assert_eq!(clock.blocked("someone", address).await, SECOND);
    assert!(clock.check("someone", ip("192.0.2.2")).await.is_ok());
    assert!(clock.check("user0", None).await.is_ok(), "one failure each");
    clock.fail("someone", address).await;
    assert_eq!(clock.blocked("someone else", address).await, 2 * SECOND);
}

async fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4(t: Subject) {
    let clock = Clock::new(&t.throttle.address_limit(3));
    clock.fail("a", ip("2001:db8:1:2::1")).await;
    clock
        .fail("b", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        .await;
    clock.fail("c", ip("2001:db8:1:2:abcd::")).await;
    assert!(clock.check("d", ip("2001:db8:1:2::9")).await.is_err());
    assert!(clock.check("d", ip("2001:db8:1:3::1")).await.is_ok());
    assert!(clock.check("d", ip("2001:db8:1::")).await.is_ok());

    clock.fail("a", ip("::ffff:192.0.2.1")).await;
    clock.fail("b", ip("192.0.2.1")).await;
    clock.fail("c", ip("::ffff:192.0.2.1")).await;
    assert!(clock.check("d", ip("192.0.2.1")).await.is_err());
    assert!(clock.check("d", ip("::ffff:192.0.2.1")).await.is_err());
    assert!(
        clock.check("d", ip("::ffff:192.0.2.2")).await.is_ok(),
        "IPv4 clients of a dual-stack socket are not one /64"
    );
    assert!(clock.check("d", ip("192.0.2.2")).await.is_ok());
}

async fn without_an_address_only_the_username_counts(t: Subject) {
    let clock = Clock::new(&t.throttle.address_limit(1).username_limit(3));
    clock.fail_times(2, "susan", None).await;
    assert!(clock.check("susan", ip("192.0.2.1")).await.is_ok());
    assert!(clock.check("susan", None).await.is_ok());
}

async fn success_resets_the_username_but_not_the_address(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(3).address_limit(5));
    let address = ip("192.0.2.1");
    clock.fail_times(2, "susan", address).await;
    clock.succeed(" Susan", address).await;
    clock.fail_times(2, "susan", address).await;
    assert!(clock.check("susan", None).await.is_ok(), "2 failures since");
    clock.fail("susan", address).await;
    assert_eq!(clock.blocked("susan", None).await, SECOND, "3 since");
    // The address now has 5 failures, and a good login does not reset it:
    // an attacker's own account must not clear the address.
    clock.succeed("susan", address).await;
    assert!(clock.check("susan", None).await.is_ok());
    assert_eq!(clock.blocked("mallory", address).await, SECOND);
    assert_eq!(clock.blocked("susan", address).await, SECOND);
}

async fn failures_are_forgotten_a_window_after_the_last_one(t: Subject) {
    let clock = Clock::new(
        &t.throttle
            .username_limit(3)
            .window(Duration::from_secs(600)),
    );
    clock.fail_times(2, "susan", None).await;
    clock.advance(Duration::from_secs(599));
    clock.fail("susan", None).await;
    assert_eq!(
        clock.blocked("susan", None).await,
        SECOND,
        "within the window"
    );
    clock.advance(Duration::from_secs(599));
    clock.fail("susan", None).await;
    assert_eq!(
        clock.blocked("susan", None).await,
        2 * SECOND,
        "the window runs from the last failure"
    );
    clock.advance(Duration::from_secs(600));
    clock.fail_times(2, "susan", None).await;
    assert!(
        clock.check("susan", None).await.is_ok(),
        "counted from zero"
    );
    clock.fail("susan", None).await;
    assert_eq!(clock.blocked("susan", None).await, SECOND);
}

async fn a_block_longer_than_the_window_is_served(t: Subject) {
    let clock = Clock::new(
        &t.throttle
            .username_limit(1)
            .base_delay(Duration::from_secs(100))
            .window(Duration::from_secs(10)),
    );
    clock.fail("susan", None).await;
    clock.advance(Duration::from_secs(50));
    assert_eq!(clock.blocked("susan", None).await, Duration::from_secs(50));
    clock.fail("susan", None).await; // counted from zero: 100 s again
    clock.advance(Duration::from_secs(60));
    assert_eq!(clock.blocked("susan", None).await, Duration::from_secs(40));
}

async fn two_instances_share_counts(t: Subject) {
    let a = Clock::new(&t.throttle.username_limit(4).address_limit(100));
    let b = a.with(&t.other.username_limit(4).address_limit(100));
    a.fail("susan", ip("192.0.2.1")).await;
    b.fail("Susan", ip("192.0.2.1")).await;
    a.fail("susan", None).await;
    assert!(b.check("susan", None).await.is_ok());
    b.fail("susan", None).await;
    assert_eq!(a.blocked("susan", None).await, SECOND);
    assert_eq!(b.blocked("susan", None).await, SECOND);
    b.succeed("susan", None).await;
    assert!(
        a.check("susan", None).await.is_ok(),
        "a reset on one is seen by the other"
    );
}

/// Many failures at once, from both instances: each is counted once.
async fn concurrent_failures_all_count(t: Subject) {
    const N: u32 = 40;
    let a = Clock::new(&t.throttle.username_limit(N).address_limit(N));
    let b = a.with(&t.other.username_limit(N).address_limit(N));
    let address = ip("192.0.2.1");
    let run = |count: u32| {
        let tasks: Vec<_> = (0..count)
            .map(|n| {
                let clock = if n % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { clock.fail("susan", address).await })
            })
            .collect();
        futures_util::future::join_all(tasks)
    };
    for outcome in run(N - 1).await {
        outcome.expect("a failed() task");
    }
    assert!(a.check("susan", None).await.is_ok(), "{} failures", N - 1);
    assert!(a.check("david", address).await.is_ok());
    for outcome in run(1).await {
        outcome.expect("a failed() task");
    }
    assert_eq!(a.blocked("susan", None).await, SECOND, "exactly {N}");
    assert_eq!(a.blocked("david", address).await, SECOND, "exactly {N}");
}

// ---------------------------------------------------------------------------
// End to end: an axum login route
// ---------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

const ACCOUNTS: [(&str, &str); 2] = [("susan", "correct horse"), ("david", "battery staple")];

/// A login route as an app would write it: check, then the password, then
/// `failed` or `succeeded`.
async fn login(
    State(throttle): State<Throttle>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Form(form): Form<Credentials>,
) -> Result<Response, Throttled> {
    let address = Some(client.ip());
    throttle.check(&form.username, address).await?;
    let known = ACCOUNTS
        .iter()
        .any(|&(name, password)| name == form.username && password == form.password);
    if known {
        throttle.succeeded(&form.username, address).await;
        Ok(format!("Welcome, {}!", form.username).into_response())
    } else {
        throttle.failed(&form.username, address).await;
        Ok((StatusCode::UNAUTHORIZED, "Wrong username or password.").into_response())
    }
}

fn app(throttle: Throttle) -> Router {
    Router::new()
        .route("/login", post(login))
        .with_state(throttle)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// Posts the login form to `app` from `client` (its `ConnectInfo`).
async fn post_login(app: &Router, client: &str, username: &str, password: &str) -> Answer {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("username", username)
        .append_pair("password", password)
        .finish();
    let mut request = Request::post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let address: SocketAddr = format!("{client}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(address));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn login_route_end_to_end(t: Subject) {
    let configure = |throttle: Throttle| {
        throttle
            .username_limit(3)
            .address_limit(6)
            .base_delay(Duration::from_secs(30))
    };
    // Two instances of the app; requests alternate between them.
    let apps = [app(configure(t.throttle)), app(configure(t.other))];
    let mut turn = 0;
    let mut post = async |client: &str, username: &str, password: &str| {
        turn += 1;
        post_login(&apps[turn % 2], client, username, password).await
    };
    let (a, b) = ("192.0.2.10", "198.51.100.20");

    // Two wrong passwords, then the right one: the username starts over.
    for _ in 0..2 {
        assert_eq!(
            post(a, "susan", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let ok = post(a, "susan", "correct horse").await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (StatusCode::OK, "Welcome, susan!")
    );
    for _ in 0..2 {
        assert_eq!(
            post(a, "susan", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The 3rd failure since the login reaches the limit.
    assert_eq!(
        post(a, "Susan", "guess").await.status,
        StatusCode::UNAUTHORIZED
    );
    let throttled = post(a, "susan", "correct horse").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers["retry-after"], "30");
    assert_eq!(
        throttled.body,
        "Too many failed logins. Try again in 30 seconds.\n"
    );
    let elsewhere = post(b, "susan", "correct horse").await;
    assert_eq!(
        elsewhere.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the username is throttled from every address"
    );

    // Another username from the same address still gets through, until the
    // address's 6th failure (5 so far; good logins do not reset it).
    let ok = post(a, "david", "battery staple").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        post(a, "david", "guess").await.status,
        StatusCode::UNAUTHORIZED
    );
    let throttled = post(a, "carol", "anything").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers["retry-after"], "30");
    let throttled = post(a, "david", "battery staple").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);

    // David from another address is fine: one failure of his own.
    assert_eq!(
        post(b, "david", "battery staple").await.status,
        StatusCode::OK
    );
}
