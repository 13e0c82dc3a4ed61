//! Login throttling, the same behaviour checked against each backend: in
//! memory, on Redis (the kit's: `TEST_REDIS_URL`, or a `redis-server` it
//! starts; a Redis test with neither says `SKIPPED`), and on Redis Cluster
//! (`TEST_REDIS_CLUSTER_URLS`, or three masters the kit starts), both with
//! `Throttle::redis_cluster` and with `Throttle::redis` under a prefix with
//! a hash tag.
//!
//! Each test gets counts of its own: a new in-memory throttle, or a new
//! random Redis key prefix whose keys are deleted at the end, pass or fail.
//! Every subject has two throttles sharing counts, as two instances of an
//! app would: clones in memory, two connections with one prefix on Redis.
//!
//! Times are moved by hand on a manual clock (`Throttle::clock`), starting
//! from the real time (Redis keys expire by TTL in real time, which the
//! tests never wait for). There is no way to look at a count without trying
//! a login: every attempt a test makes that goes through is counted as a
//! failure (unless it is answered `succeeded`), and the tests keep track.
//! The end-to-end test drives an axum login route, on a clock that stands
//! still, so that the `Retry-After` it reads is exact.
//!
//! The concurrency tests are the attack the throttle must stop: many
//! wrong-password logins sent at the same moment, all before any password
//! check has finished. Each gets no more attempts through than the limit.

use axum::body::Body;
use axum::extract::{ConnectInfo, Form, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use axum_latch::throttle::{LoginAttempt, Throttle, Throttled};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use std::fmt::Display;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tower::ServiceExt as _;

const SECOND: Duration = Duration::from_secs(1);

/// The account of a username that names none.
const NO_ACCOUNT: Option<u64> = None;
const ZERO: Duration = Duration::ZERO;

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
    crate::support::backend::run_then_clean(test(subject), cleanup).await;
}

/// A test per behaviour function, on the backend that `$open` (an async
/// fn returning `Option<Fixture>`) makes.
macro_rules! behaviour_tests {
    ($open:path) => {
        crate::support::stamp_tests!($open, 2;
            current_thread:
                the_defaults,
                username_limit_then_a_doubling_delay_up_to_the_cap,
                other_usernames_are_unaffected,
                refused_attempts_count_nothing,
                usernames_are_trimmed_normalised_and_lowercased,
                long_usernames_are_cut_at_256_bytes,
                the_address_limit_covers_every_username_from_the_address,
                ipv6_counts_per_64_and_mapped_ipv4_as_ipv4,
                without_an_address_only_the_username_counts,
                success_resets_the_username_but_not_the_address,
                success_lifts_the_address_block_its_attempt_set,
                failed_keeps_the_count,
                an_attempt_not_checked_is_taken_back_from_every_key,
                a_dropped_attempt_counts_as_a_failure,
                accounts_count_apart_from_usernames,
                a_login_counts_under_the_username_and_its_account,
                blocking_a_spelling_does_not_tell_whether_a_username_exists,
                account_ids_with_odd_characters,
                failures_are_forgotten_a_window_after_the_last_one,
                a_block_longer_than_the_window_is_served,
                two_instances_share_counts,
                login_route_end_to_end;
            multi_thread:
                concurrent_failures_all_count,
                concurrent_guesses_for_one_username_get_no_more_than_its_limit,
                concurrent_guesses_from_one_address_get_no_more_than_its_limit,
                concurrent_guesses_over_two_instances_get_no_more_than_the_limit;
        );
    };
}

mod memory {
    use super::{Fixture, Subject};
    use axum_latch::throttle::Throttle;

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
    use crate::support::outage::Proxy;
    use crate::support::{backend, trace};
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::ConnectionAddr;
    use std::collections::HashMap;

    fn random_prefix() -> String {
        format!("latch_test_{}:", backend::random_hex())
    }

    /// Deletes every key under `prefix`.
    fn cleanup(
        mut admin: ConnectionManager,
        prefix: String,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move { backend::redis_delete(&mut admin, &format!("{prefix}*")).await })
    }

    /// Two throttles on two connections, with one new random prefix.
    async fn open() -> Option<Fixture> {
        let url = backend::redis_url()?;
        let first = backend::redis_manager(&url).await;
        let second = backend::redis_manager(&url).await;
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
        backend::redis_keys(connection, &format!("{prefix}*")).await
    }

    use backend::redis_cmd as cmd;

    use backend::with_redis_prefix as with_redis;

    fn millis(time: SystemTime) -> u64 {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    /// A key's fields, as `HGETALL` gives them.
    async fn fields(connection: &mut ConnectionManager, key: &str) -> HashMap<String, String> {
        cmd(connection, "HGETALL", &[key]).await
    }

    /// The fields the throttle writes, with these values.
    fn written(failures: u64, last_failure: u64, blocked_until: u64) -> HashMap<String, String> {
        [
            ("failures", failures),
            ("last_failure", last_failure),
            ("blocked_until", blocked_until),
        ]
        .into_iter()
        .map(|(field, value)| (field.to_owned(), value.to_string()))
        .collect()
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

            // Fullwidth, upper case and spaces: one normalised username.
            clock.fail(" ＳＵＳＡＮ", ip("2001:db8:1:2::5")).await;
            assert_eq!(
                keys(&mut connection, &prefix).await,
                vec![addr.clone(), user.clone()]
            );
            for key in [&user, &addr] {
                let kind: String = cmd(&mut connection, "TYPE", &[key]).await;
                assert_eq!(kind, "hash");
                assert_eq!(fields(&mut connection, key).await, written(1, now, 0));
                let ttl: i64 = cmd(&mut connection, "PTTL", &[key]).await;
                assert!(
                    (590_000..=600_000).contains(&ttl),
                    "{key}: PTTL {ttl}: the window"
                );
            }

            // The limit-th attempt sets blocked_until, by the app's clock.
            clock.fail("susan", None).await;
            assert_eq!(
                fields(&mut connection, &user).await,
                written(2, now, now + 30_000)
            );
            // A refused attempt writes nothing, to either key.
            assert_eq!(
                clock.guess("susan", ip("2001:db8:1:2::5")).await,
                30 * SECOND
            );
            assert_eq!(
                fields(&mut connection, &user).await,
                written(2, now, now + 30_000)
            );
            assert_eq!(fields(&mut connection, &addr).await, written(1, now, 0));

            // A block longer than the window keeps its key that long: 2
            // hours, capped at the default 15 minutes, not the window's 10.
            let long = Clock::new(&throttle.clone().base_delay(Duration::from_secs(3_600)));
            long.fail_times(2, "carol", None).await;
            let carol = format!("{prefix}throttle:user:carol");
            let ttl: i64 = cmd(&mut connection, "PTTL", &[&carol]).await;
            assert!((890_000..=900_000).contains(&ttl), "PTTL {ttl}");

            // A good login deletes the username's key, and takes its own
            // failure off the address's (last_failure stays).
            clock.advance(30 * SECOND);
            let later = millis(clock.now());
            clock.succeed("SUSAN", ip("2001:db8:1:2::5")).await;
            assert_eq!(
                keys(&mut connection, &prefix).await,
                vec![addr.clone(), carol.clone()]
            );
            assert_eq!(fields(&mut connection, &addr).await, written(1, later, 0));

            // An account's key: the id as it displays.
            clock.fail_account(42, None).await;
            let account = format!("{prefix}throttle:account:42");
            assert_eq!(
                fields(&mut connection, &account).await,
                written(1, later, 0)
            );
            let ttl: i64 = cmd(&mut connection, "PTTL", &[&account]).await;
            assert!((590_000..=600_000).contains(&ttl), "PTTL {ttl}");
            clock.succeed_account("42", None).await;
            assert!(!keys(&mut connection, &prefix).await.contains(&account));

            // IPv4, also when mapped into IPv6.
            clock.fail("david", ip("::ffff:192.0.2.7")).await;
            assert!(keys(&mut connection, &prefix)
                .await
                .contains(&format!("{prefix}throttle:addr:192.0.2.7")));

            // A block set by an attempt that succeeds is taken back too.
            let strict = clock.with(&throttle.clone().address_limit(1));
            strict.succeed("erin", ip("198.51.100.9")).await;
            let erin = format!("{prefix}throttle:addr:198.51.100.9");
            assert_eq!(fields(&mut connection, &erin).await, written(0, later, 0));

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
            assert!(a.attempt("susan", NO_ACCOUNT, None).await.is_err());
            let attempt = b
                .attempt("susan", NO_ACCOUNT, None)
                .await
                .expect("b has no failures");
            attempt.succeeded().await;
            assert!(a.attempt("susan", NO_ACCOUNT, None).await.is_err());
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
            let addr = format!("{prefix}throttle:addr:192.0.2.1");
            let (events, _guard) = capture_events();

            // A key of another type: every call fails, none panics.
            let _: () = cmd(&mut connection, "SET", &[&user, "not a hash"]).await;
            let attempt = throttle
                .attempt("susan", NO_ACCOUNT, None)
                .await
                .expect("fails open");
            let logged = events.take_errors();
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert!(logged[0].starts_with("ERROR latch:"), "{logged:?}");
            assert!(
                logged[0].contains("letting the login through"),
                "{logged:?}"
            );
            assert!(logged[0].contains("WRONGTYPE"), "{logged:?}");
            attempt.failed();
            assert_eq!(events.take_errors(), Vec::<String>::new(), "nothing to do");

            let attempt = throttle
                .attempt("susan", NO_ACCOUNT, ip("192.0.2.1"))
                .await
                .expect("fails open");
            assert_eq!(events.take_errors().len(), 1);
            assert!(
                !keys(&mut connection, &prefix).await.contains(&addr),
                "nothing written to the address's key"
            );

            // A success deletes whatever the username's key held: counting
            // works again.
            attempt.succeeded().await;
            assert_eq!(events.take_errors(), Vec::<String>::new());
            throttle
                .attempt("susan", NO_ACCOUNT, None)
                .await
                .unwrap()
                .failed();
            assert!(throttle.attempt("susan", NO_ACCOUNT, None).await.is_err());
            assert_eq!(events.take_errors(), Vec::<String>::new());

            // A hash with a bad blocked_until, or one too large to be a
            // time: nothing is written to either key.
            for bad in ["soon", "99999999999999999999"] {
                let _: i64 = cmd(&mut connection, "HSET", &[&user, "blocked_until", bad]).await;
                let attempt = throttle
                    .attempt("susan", NO_ACCOUNT, ip("192.0.2.1"))
                    .await
                    .expect("fails open");
                drop(attempt);
                let logged = events.take_errors();
                assert_eq!(logged.len(), 1, "{logged:?}");
                assert!(logged[0].contains("corrupt"), "{logged:?}");
                assert!(logged[0].contains("blocked_until"), "{logged:?}");
                assert!(logged[0].contains(bad), "{logged:?}");
                assert!(logged[0].contains(&user), "{logged:?}");
                assert!(!keys(&mut connection, &prefix).await.contains(&addr));
                let failures: String = cmd(&mut connection, "HGET", &[&user, "failures"]).await;
                assert_eq!(failures, "1");
            }
        })
        .await;
    }

    #[tokio::test]
    async fn redis_down_fails_open_and_comes_back() {
        with_redis(async |url, _, prefix| {
            let info = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection_info()
                .clone();
            let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
                backend::skip("the Redis URL is not plain TCP, which the proxy needs");
                return;
            };
            let upstream = (host, port);
            let mut proxy = Proxy::start(upstream, 0).await;
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
            let throttle = Throttle::redis(manager)
                .prefix(&prefix)
                .username_limit(1)
                .base_delay(Duration::from_secs(60));
            throttle
                .attempt("susan", NO_ACCOUNT, None)
                .await
                .expect("Redis up")
                .failed();
            assert!(
                throttle.attempt("susan", NO_ACCOUNT, None).await.is_err(),
                "Redis up"
            );

            proxy.stop().await;
            let (events, guard) = capture_events();
            let started = std::time::Instant::now();
            throttle
                .attempt("susan", NO_ACCOUNT, None)
                .await
                .expect("Redis down: the login goes on")
                .failed();
            throttle
                .attempt("susan", NO_ACCOUNT, None)
                .await
                .expect("Redis down: the login goes on")
                .succeeded()
                .await;
            let took = started.elapsed();
            assert!(took < Duration::from_secs(10), "took {took:?}");
            let errors = events.take_errors();
            drop(guard);
            let logged = &errors;
            assert!(
                errors.iter().all(|e| e.starts_with("ERROR latch:")),
                "{logged:?}"
            );
            assert_eq!(errors.len(), 3, "{logged:?}");
            assert!(
                errors[0].contains("letting the login through"),
                "{logged:?}"
            );
            assert!(
                errors[1].contains("letting the login through"),
                "{logged:?}"
            );
            assert!(errors[2].contains("not reset"), "{logged:?}");

            // Redis back on the same port: the count kept in Redis is there
            // again, and new failures count (the manager reconnects, and a
            // refused connection is tried once more).
            proxy.restart().await;
            let mut back = false;
            for _ in 0..50 {
                match throttle.attempt("susan", NO_ACCOUNT, None).await {
                    Err(_) => {
                        back = true;
                        break;
                    }
                    // Still down: let through, with nothing reserved.
                    Ok(attempt) => attempt.failed(),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(back, "the throttle works again once Redis is back");
            throttle
                .attempt("david", NO_ACCOUNT, None)
                .await
                .expect("Redis is back")
                .failed();
            assert!(throttle.attempt("david", NO_ACCOUNT, None).await.is_err());
        })
        .await;
    }

    fn capture_events() -> (trace::Captured, trace::CaptureGuard) {
        trace::capture()
    }
}

/// The behaviour on Redis Cluster with `Throttle::redis_cluster`: each key
/// counted by a script of its own, on whichever master holds it.
#[cfg(feature = "redis")]
mod redis_cluster_backend {
    use super::*;
    use crate::support::backend::{self, RedisCluster};
    use crate::support::trace;
    use std::collections::HashMap;

    /// Deletes every key under `prefix`, on every master.
    pub(super) fn cleanup(
        cluster: RedisCluster,
        prefix: String,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move { cluster.delete(&format!("{prefix}*")).await })
    }

    /// Two throttles on two connections to the cluster, with one new random
    /// prefix.
    async fn open() -> Option<Fixture> {
        let cluster = backend::redis_cluster().await?;
        let second = backend::redis_cluster_connection(&cluster.nodes).await;
        let prefix = format!("latch_test_{}:", backend::random_hex());
        Some(Fixture {
            subject: Subject {
                throttle: Throttle::redis_cluster(cluster.connection.clone()).prefix(&prefix),
                other: Throttle::redis_cluster(second).prefix(&prefix),
            },
            cleanup: cleanup(cluster, prefix),
        })
    }

    behaviour_tests!(open);

    /// Runs `command` with `args` on the cluster (routed by its key).
    async fn cmd<T: redis::FromRedisValue>(cluster: &RedisCluster, name: &str, args: &[&str]) -> T {
        let mut connection = cluster.connection.clone();
        redis::cmd(name)
            .arg(args)
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|e| panic!("{name} {args:?}: {e}"))
    }

    /// The master that serves `key`'s slot, as `host:port`.
    async fn master_of(cluster: &RedisCluster, key: &str) -> String {
        let slot: i64 = cmd(cluster, "CLUSTER", &["KEYSLOT", key]).await;
        // [[start, end, [host, port, id, ...], replicas...], ...]
        let ranges: Vec<Vec<redis::Value>> = cmd(cluster, "CLUSTER", &["SLOTS"]).await;
        for range in ranges {
            let number = |n: usize| -> i64 { redis::from_redis_value_ref(&range[n]).unwrap() };
            if (number(0)..=number(1)).contains(&slot) {
                let node: Vec<redis::Value> = redis::from_redis_value_ref(&range[2]).unwrap();
                let host: String = redis::from_redis_value_ref(&node[0]).unwrap();
                let port: i64 = redis::from_redis_value_ref(&node[1]).unwrap();
                return format!("{host}:{port}");
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// A username whose key (under `prefix`) is on another master than
    /// `other`'s.
    async fn username_away_from(cluster: &RedisCluster, prefix: &str, other: &str) -> String {
        let there = master_of(cluster, other).await;
        for n in 0.. {
            let name = format!("user{n}");
            let key = format!("{prefix}throttle:user:{name}");
            if master_of(cluster, &key).await != there {
                return name;
            }
        }
        unreachable!()
    }

    fn millis(time: SystemTime) -> u64 {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    /// The fields the throttle writes, with these values.
    fn written(failures: u64, last_failure: u64, blocked_until: u64) -> HashMap<String, String> {
        [
            ("failures", failures),
            ("last_failure", last_failure),
            ("blocked_until", blocked_until),
        ]
        .into_iter()
        .map(|(field, value)| (field.to_owned(), value.to_string()))
        .collect()
    }

    /// An attempt whose username's key and address's key are on two
    /// masters: the same keys and fields as on one server, and a refused
    /// attempt writes nothing.
    #[tokio::test]
    async fn an_attempt_counts_on_keys_of_two_masters() {
        backend::with_redis_cluster_prefix(async |cluster, prefix| {
            let throttle = Throttle::redis_cluster(cluster.connection.clone())
                .prefix(&prefix)
                .username_limit(2)
                .base_delay(Duration::from_secs(30))
                .window(Duration::from_secs(600));
            let clock = Clock::new(&throttle);
            let now = millis(clock.now());
            let address = ip("2001:db8:1:2::5");
            let addr = format!("{prefix}throttle:addr:2001:db8:1:2::/64");
            let name = username_away_from(&cluster, &prefix, &addr).await;
            let user = format!("{prefix}throttle:user:{name}");

            clock.fail(&name.to_uppercase(), address).await;
            let mut expected = vec![addr.clone(), user.clone()];
            expected.sort();
            assert_eq!(cluster.keys(&format!("{prefix}*")).await, expected);
            for key in [&user, &addr] {
                let fields: HashMap<String, String> = cmd(&cluster, "HGETALL", &[key]).await;
                assert_eq!(fields, written(1, now, 0), "{key}");
                let ttl: i64 = cmd(&cluster, "PTTL", &[key]).await;
                assert!((590_000..=600_000).contains(&ttl), "{key}: PTTL {ttl}");
            }

            // The limit-th attempt blocks the username; then an attempt
            // from the address is refused, and writes nothing to either key.
            clock.fail(&name, None).await;
            let blocked = written(2, now, now + 30_000);
            let fields: HashMap<String, String> = cmd(&cluster, "HGETALL", &[&user]).await;
            assert_eq!(fields, blocked);
            assert_eq!(clock.guess(&name, address).await, 30 * SECOND);
            let fields: HashMap<String, String> = cmd(&cluster, "HGETALL", &[&user]).await;
            assert_eq!(fields, blocked);
            let fields: HashMap<String, String> = cmd(&cluster, "HGETALL", &[&addr]).await;
            assert_eq!(fields, written(1, now, 0));

            // A good login deletes the username's key and takes its own
            // failure off the address's.
            clock.advance(30 * SECOND);
            let later = millis(clock.now());
            clock.succeed(&name, address).await;
            assert_eq!(
                cluster.keys(&format!("{prefix}*")).await,
                vec![addr.clone()]
            );
            let fields: HashMap<String, String> = cmd(&cluster, "HGETALL", &[&addr]).await;
            assert_eq!(fields, written(1, later, 0));

            let default = format!("{:?}", Throttle::redis_cluster(cluster.connection.clone()));
            assert!(
                default.contains(r#"backend: "redis cluster, prefix \"latch:\"""#),
                "{default}"
            );
        })
        .await;
    }

    /// Of 40 attempts at one username from 40 addresses at once, those the
    /// username's key refused are taken back from their addresses' keys:
    /// the addresses hold the 5 failures that went through, no more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refused_attempts_are_taken_back_from_their_other_keys() {
        backend::with_redis_cluster_prefix(async |cluster, prefix| {
            const N: usize = 40;
            let throttle = Throttle::redis_cluster(cluster.connection.clone())
                .prefix(&prefix)
                .username_limit(5)
                .base_delay(Duration::from_secs(60));
            let clock = Clock::new(&throttle);
            let (through, refused) = burst(std::slice::from_ref(&clock), N, |n| {
                ("susan".to_owned(), nth_address(n))
            })
            .await;
            assert_eq!((through.len(), refused.len()), (5, N - 5));
            through.into_iter().for_each(LoginAttempt::failed);
            let mut failures = 0;
            for n in 0..N {
                let address = nth_address(n).unwrap();
                let key = format!("{prefix}throttle:addr:{address}");
                let count: Option<u64> = cmd(&cluster, "HGET", &[&key, "failures"]).await;
                failures += count.unwrap_or(0);
            }
            assert_eq!(failures, 5);
        })
        .await;
    }

    /// `Throttle::redis` on a cluster, with a prefix that spreads an
    /// attempt's keys over slots: the cluster refuses its script, and the
    /// throttle fails open, saying what to use instead.
    #[tokio::test]
    async fn one_script_over_slots_fails_open_with_a_hint() {
        backend::with_redis_cluster_prefix(async |cluster, prefix| {
            let throttle = Throttle::redis(cluster.connection.clone()).prefix(&prefix);
            let address = ip("192.0.2.1");
            let addr = format!("{prefix}throttle:addr:192.0.2.1");
            let name = username_away_from(&cluster, &prefix, &addr).await;
            let (events, _guard) = trace::capture();
            let attempt = throttle
                .attempt(&name, NO_ACCOUNT, address)
                .await
                .expect("fails open");
            attempt.failed();
            let logged = events.take_errors();
            assert_eq!(logged.len(), 1, "{logged:?}");
            assert!(
                logged[0].contains("letting the login through"),
                "{logged:?}"
            );
            assert!(logged[0].contains("Throttle::redis_cluster"), "{logged:?}");
            assert_eq!(
                cluster.keys(&format!("{prefix}*")).await,
                Vec::<String>::new()
            );
        })
        .await;
    }
}

/// The behaviour on Redis Cluster with `Throttle::redis` and a prefix with
/// a hash tag, `{latch_test_<hex>}:`: every key in one slot, each attempt
/// in one script.
#[cfg(feature = "redis")]
mod redis_cluster_one_slot {
    use super::{Fixture, Subject};
    use crate::support::backend;
    use axum_latch::throttle::Throttle;

    async fn open() -> Option<Fixture> {
        let cluster = backend::redis_cluster().await?;
        let second = backend::redis_cluster_connection(&cluster.nodes).await;
        let prefix = format!("{{latch_test_{}}}:", backend::random_hex());
        Some(Fixture {
            subject: Subject {
                throttle: Throttle::redis(cluster.connection.clone()).prefix(&prefix),
                other: Throttle::redis(second).prefix(&prefix),
            },
            cleanup: super::redis_cluster_backend::cleanup(cluster, prefix),
        })
    }

    behaviour_tests!(open);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().expect("an IP address"))
}

/// The `n`-th address of 10.0.0.0/8: one client of a botnet.
fn nth_address(n: usize) -> Option<IpAddr> {
    let n = u32::try_from(n).expect("a small n");
    Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n)))
}

/// A throttle on a clock that tests move by hand; clocks made with
/// [`Clock::with`] share the time.
#[derive(Clone)]
struct Clock {
    throttle: Throttle,
    time: axum_latch::clock::Clock,
}

impl Clock {
    fn new(throttle: &Throttle) -> Self {
        let time = axum_latch::clock::Clock::manual(SystemTime::now());
        Self {
            throttle: throttle.clone().clock(time.clone()),
            time,
        }
    }

    /// Another throttle on the same clock.
    fn with(&self, throttle: &Throttle) -> Self {
        Self {
            throttle: throttle.clone().clock(self.time.clone()),
            time: self.time.clone(),
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // the Redis tests read it
    fn now(&self) -> SystemTime {
        self.time.now()
    }

    fn advance(&self, by: Duration) {
        self.time.advance(by);
    }

    async fn attempt(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt, Throttled> {
        self.throttle.attempt(username, NO_ACCOUNT, address).await
    }

    /// A login form's attempt: `username` as typed, naming the account `id`.
    async fn attempt_login(
        &self,
        username: &str,
        id: impl Display,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt, Throttled> {
        self.throttle.attempt(username, Some(id), address).await
    }

    /// [`guess`](Self::guess) with `username` naming the account `id`.
    async fn guess_login(
        &self,
        username: &str,
        id: impl Display,
        address: Option<IpAddr>,
    ) -> Duration {
        outcome(self.attempt_login(username, id, address).await)
    }

    async fn attempt_account(
        &self,
        id: impl Display,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt, Throttled> {
        self.throttle.attempt_account(id, address).await
    }

    /// A wrong password, if the attempt goes through: then zero (and the
    /// attempt counts as a failure); else how long it was refused for.
    async fn guess(&self, username: &str, address: Option<IpAddr>) -> Duration {
        outcome(self.attempt(username, address).await)
    }

    /// [`guess`](Self::guess) for an account.
    async fn guess_account(&self, id: impl Display, address: Option<IpAddr>) -> Duration {
        outcome(self.attempt_account(id, address).await)
    }

    /// A wrong password, from an attempt that must go through.
    async fn fail(&self, username: &str, address: Option<IpAddr>) {
        self.attempt(username, address)
            .await
            .unwrap_or_else(|e| panic!("{username:?} from {address:?}: {e}"))
            .failed();
    }

    async fn fail_times(&self, n: u32, username: &str, address: Option<IpAddr>) {
        for _ in 0..n {
            self.fail(username, address).await;
        }
    }

    async fn fail_account(&self, id: impl Display, address: Option<IpAddr>) {
        let name = id.to_string();
        self.attempt_account(id, address)
            .await
            .unwrap_or_else(|e| panic!("account {name:?} from {address:?}: {e}"))
            .failed();
    }

    /// A right password, from an attempt that must go through.
    async fn succeed(&self, username: &str, address: Option<IpAddr>) {
        self.attempt(username, address)
            .await
            .unwrap_or_else(|e| panic!("{username:?} from {address:?}: {e}"))
            .succeeded()
            .await;
    }

    async fn succeed_account(&self, id: impl Display, address: Option<IpAddr>) {
        let name = id.to_string();
        self.attempt_account(id, address)
            .await
            .unwrap_or_else(|e| panic!("account {name:?} from {address:?}: {e}"))
            .succeeded()
            .await;
    }
}

/// Zero for an attempt that went through (dropped: a failure), else how
/// long it was refused for.
fn outcome(attempt: Result<LoginAttempt, Throttled>) -> Duration {
    match attempt {
        Ok(attempt) => {
            attempt.failed();
            ZERO
        }
        Err(throttled) => throttled.retry_after,
    }
}

/// Starts `n` login attempts at the same moment, spread over `clocks` in
/// turn, `login(i)` giving the `i`-th its username and address. Every
/// attempt that goes through is held until all `n` have been answered, as
/// when every password check is still running; the caller gets them.
async fn burst(
    clocks: &[Clock],
    n: usize,
    login: impl Fn(usize) -> (String, Option<IpAddr>),
) -> (Vec<LoginAttempt>, Vec<Throttled>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let clock = clocks[i % clocks.len()].clone();
            let barrier = barrier.clone();
            let (username, address) = login(i);
            tokio::spawn(async move {
                barrier.wait().await;
                clock.attempt(&username, address).await
            })
        })
        .collect();
    let mut through = Vec::new();
    let mut refused = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        match task.expect("an attempt task") {
            Ok(attempt) => through.push(attempt),
            Err(throttled) => refused.push(throttled),
        }
    }
    (through, refused)
}

// ---------------------------------------------------------------------------
// Behaviour
// ---------------------------------------------------------------------------

/// 5 attempts per username go through, the 5th blocking it for 1 s, then
/// each one after a block doubles it up to 15 minutes; 20 per address.
async fn the_defaults(t: Subject) {
    let clock = Clock::new(&t.throttle);
    clock.fail_times(4, "susan", None).await;
    let mut got = Vec::new();
    for _ in 0..14 {
        assert_eq!(clock.guess("susan", None).await, ZERO, "after {got:?}");
        let blocked = clock.guess("susan", None).await;
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
    assert_eq!(
        clock.guess("user19", ip("192.0.2.1")).await,
        ZERO,
        "the 20th goes through"
    );
    assert_eq!(clock.guess("anyone", ip("192.0.2.1")).await, SECOND);
}

async fn username_limit_then_a_doubling_delay_up_to_the_cap(t: Subject) {
    let throttle = t
        .throttle
        .username_limit(3)
        .base_delay(Duration::from_millis(500))
        .max_delay(Duration::from_secs(5));
    let clock = Clock::new(&throttle);
    clock.fail_times(2, "susan", None).await;
    for expected in [500, 1_000, 2_000, 4_000, 5_000, 5_000] {
        let expected = Duration::from_millis(expected);
        assert_eq!(clock.guess("susan", None).await, ZERO, "goes through");
        let throttled = clock.attempt("susan", None).await.unwrap_err();
        assert_eq!(throttled.retry_after, expected, "and blocks");
        clock.advance(Duration::from_millis(300));
        assert_eq!(
            clock.guess("susan", None).await,
            expected - Duration::from_millis(300),
            "the block counts down"
        );
        clock.advance(expected - Duration::from_millis(300));
    }
    assert_eq!(clock.guess("susan", None).await, ZERO, "and ends");
}

async fn other_usernames_are_unaffected(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2));
    clock.fail_times(2, "susan", ip("192.0.2.1")).await;
    assert_eq!(clock.guess("susan", ip("198.51.100.1")).await, SECOND);
    assert_eq!(clock.guess("susan", None).await, SECOND);
    assert_eq!(clock.guess("david", None).await, ZERO);
    assert_eq!(clock.guess("david", ip("198.51.100.1")).await, ZERO);
    assert_eq!(clock.guess("susan2", None).await, ZERO);
}

async fn refused_attempts_count_nothing(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2).address_limit(3));
    let address = ip("192.0.2.1");
    clock.fail_times(2, "susan", address).await;
    for _ in 0..20 {
        assert_eq!(clock.guess("susan", address).await, SECOND);
    }
    // Neither count moved: the address has its 2 failures...
    assert_eq!(clock.guess("david", address).await, ZERO, "the 3rd");
    assert_eq!(clock.guess("carol", address).await, SECOND);
    // ...and susan's next block is her 3rd failure's.
    clock.advance(SECOND);
    assert_eq!(clock.guess("susan", None).await, ZERO);
    assert_eq!(clock.guess("susan", None).await, 2 * SECOND);
}

async fn usernames_are_trimmed_normalised_and_lowercased(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(3));
    clock.fail(" Susan ", None).await;
    clock.fail("SUSAN", None).await;
    clock.fail("ｓｕｓａｎ", None).await;
    assert_eq!(clock.guess("susan", None).await, SECOND);
    assert_eq!(clock.guess("\tＳｕＳaN\n", None).await, SECOND);
    assert_eq!(clock.guess("su san", None).await, ZERO);
    // Unicode: Ö and ö are one name, composed or not.
    clock.fail("JÖRG", None).await;
    clock.fail("jo\u{308}rg", None).await;
    clock.fail("Jörg", None).await;
    assert_eq!(clock.guess("jörg", None).await, SECOND);
}

async fn long_usernames_are_cut_at_256_bytes(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2));
    let long = "a".repeat(256);
    clock.fail(&format!("{long}x"), None).await;
    clock.fail(&format!("{}Y", long.to_uppercase()), None).await;
    assert_eq!(
        clock.guess(&long, None).await,
        SECOND,
        "one name: its first 256 bytes"
    );
    assert_eq!(clock.guess(&long[1..], None).await, ZERO, "255 bytes");
    // A cut inside a character drops the whole character: "x" and 200
    // two-byte "é" are cut to 255 bytes, "x" and 127 of them.
    clock.fail(&format!("x{}", "é".repeat(200)), None).await;
    clock.fail(&format!("X{}", "É".repeat(127)), None).await;
    assert_eq!(
        clock.guess(&format!("x{}", "é".repeat(128)), None).await,
        SECOND
    );
}

async fn the_address_limit_covers_every_username_from_the_address(t: Subject) {
    let clock = Clock::new(&t.throttle.address_limit(5).username_limit(3));
    let address = ip("192.0.2.1");
    for n in 0..5 {
        clock.fail(&format!("user{n}"), address).await;
    }
    assert_eq!(clock.guess("someone", address).await, SECOND);
    assert_eq!(clock.guess("someone", ip("192.0.2.2")).await, ZERO);
    assert_eq!(clock.guess("user0", None).await, ZERO, "one failure each");
    clock.advance(SECOND);
    assert_eq!(clock.guess("someone", address).await, ZERO, "the 6th");
    assert_eq!(clock.guess("someone else", address).await, 2 * SECOND);
}

async fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4(t: Subject) {
    let clock = Clock::new(&t.throttle.address_limit(3));
    clock.fail("a", ip("2001:db8:1:2::1")).await;
    clock
        .fail("b", ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        .await;
    clock.fail("c", ip("2001:db8:1:2:abcd::")).await;
    assert!(clock.guess("d", ip("2001:db8:1:2::9")).await > ZERO);
    assert_eq!(clock.guess("d", ip("2001:db8:1:3::1")).await, ZERO);
    assert_eq!(clock.guess("d", ip("2001:db8:1::")).await, ZERO);

    clock.fail("a", ip("::ffff:192.0.2.1")).await;
    clock.fail("b", ip("192.0.2.1")).await;
    clock.fail("c", ip("::ffff:192.0.2.1")).await;
    assert!(clock.guess("d", ip("192.0.2.1")).await > ZERO);
    assert!(clock.guess("d", ip("::ffff:192.0.2.1")).await > ZERO);
    assert_eq!(
        clock.guess("d", ip("::ffff:192.0.2.2")).await,
        ZERO,
        "IPv4 clients of a dual-stack socket are not one /64"
    );
    assert_eq!(clock.guess("d", ip("192.0.2.2")).await, ZERO);
}

async fn without_an_address_only_the_username_counts(t: Subject) {
    let clock = Clock::new(&t.throttle.address_limit(1).username_limit(3));
    clock.fail_times(2, "susan", None).await;
    assert_eq!(
        clock.guess("david", ip("192.0.2.1")).await,
        ZERO,
        "no address counted susan's failures"
    );
    assert_eq!(clock.guess("carol", ip("192.0.2.1")).await, SECOND);
    assert_eq!(clock.guess("susan", None).await, ZERO, "the 3rd");
    assert_eq!(clock.guess("susan", None).await, SECOND);
}

async fn success_resets_the_username_but_not_the_address(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(3).address_limit(5));
    let address = ip("192.0.2.1");
    clock.fail_times(2, "susan", address).await;
    clock.succeed(" Susan", address).await;
    clock.fail_times(2, "susan", address).await;
    assert_eq!(
        clock.guess("susan", None).await,
        ZERO,
        "the 3rd since the login"
    );
    assert_eq!(clock.guess("susan", None).await, SECOND);
    clock.advance(SECOND);
    // A right password on the address's 5th attempt: it leaves no block,
    // and the address keeps its 4 failures (an attacker's own account must
    // not clear the address).
    clock.succeed("susan", address).await;
    assert_eq!(
        clock.guess("susan", None).await,
        ZERO,
        "the username starts over"
    );
    assert_eq!(clock.guess("mallory", address).await, ZERO, "the 5th");
    assert_eq!(clock.guess("david", address).await, SECOND);
}

async fn success_lifts_the_address_block_its_attempt_set(t: Subject) {
    let clock = Clock::new(&t.throttle.address_limit(2).username_limit(1));
    let address = ip("192.0.2.1");
    clock.fail("mallory", address).await;
    // Susan's attempt is the address's 2nd and her own 1st: it blocks both
    // while her password is checked...
    let attempt = clock.attempt("susan", address).await.expect("the 2nd");
    assert_eq!(clock.guess("carol", address).await, SECOND);
    assert_eq!(clock.guess("susan", None).await, SECOND);
    // ...and a right password lifts both blocks.
    attempt.succeeded().await;
    assert_eq!(clock.guess("susan", None).await, ZERO);
    assert_eq!(
        clock.guess("david", address).await,
        ZERO,
        "the address is back to 1 failure"
    );
    assert_eq!(clock.guess("erin", address).await, SECOND);
}

async fn failed_keeps_the_count(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2).address_limit(2));
    let address = ip("192.0.2.1");
    clock.attempt("susan", address).await.unwrap().failed();
    clock.attempt("susan", None).await.unwrap().failed();
    assert_eq!(clock.guess("susan", None).await, SECOND);
    assert_eq!(
        clock.guess("david", address).await,
        ZERO,
        "the address's 2nd"
    );
    assert_eq!(clock.guess("carol", address).await, SECOND);
}

async fn a_dropped_attempt_counts_as_a_failure(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(4));
    // Dropped without an answer.
    drop(clock.attempt("susan", None).await.expect("the 1st"));
    // Held by a handler that panics.
    let handler = {
        let clock = clock.clone();
        tokio::spawn(async move {
            let _attempt = clock.attempt("susan", None).await.expect("the 2nd");
            panic!("a handler bug (the test expects this panic)");
        })
    };
    assert!(handler.await.unwrap_err().is_panic());
    // Held by a request whose client went away: its future is dropped while
    // the password is being checked.
    let request = async {
        let _attempt = clock.attempt("susan", None).await.expect("the 3rd");
        std::future::pending::<()>().await;
    };
    let cancelled = tokio::time::timeout(Duration::from_millis(20), request).await;
    assert!(cancelled.is_err());
    // So this is the 4th, which reaches the limit.
    assert_eq!(clock.guess("susan", None).await, ZERO);
    assert_eq!(clock.guess("susan", None).await, SECOND);
}

/// A password the server never checked (its hashing was too busy, and it
/// answered 503) costs nothing: the attempt is taken back from the
/// username, the account and the address, and the blocks it set are
/// lifted, while earlier failures stay counted.
async fn an_attempt_not_checked_is_taken_back_from_every_key(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2).address_limit(2));
    let address = ip("192.0.2.1");
    clock
        .attempt_login("susan", 42, address)
        .await
        .unwrap()
        .failed();
    // The 2nd would block all three keys; it is not checked.
    let attempt = clock.attempt_login("susan", 42, address).await.unwrap();
    assert_eq!(
        clock.guess_account(42, None).await,
        SECOND,
        "blocked meanwhile"
    );
    attempt.not_checked().await;
    assert_eq!(clock.guess("susan", None).await, ZERO, "the username's 2nd");
    assert_eq!(
        clock.guess_account(42, None).await,
        ZERO,
        "the account's 2nd"
    );
    assert_eq!(
        clock.guess("mallory", address).await,
        ZERO,
        "the address's 2nd"
    );
    assert_eq!(clock.guess_login("susan", 42, address).await, SECOND);
}

async fn accounts_count_apart_from_usernames(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2).address_limit(3));
    let address = ip("192.0.2.1");
    clock.fail_account(42, address).await;
    clock.fail("42", None).await;
    assert_eq!(
        clock.guess_account("42", None).await,
        ZERO,
        "account 42's 2nd: any Display that writes 42"
    );
    assert_eq!(clock.guess_account(42_u64, None).await, SECOND);
    assert_eq!(clock.guess("42", None).await, ZERO, "the username 42's 2nd");
    assert_eq!(clock.guess("42", None).await, SECOND);
    assert_eq!(clock.guess_account(43, None).await, ZERO);
    // The address counts attempts of both kinds.
    assert_eq!(clock.guess("susan", address).await, ZERO);
    assert_eq!(clock.guess_account(7, address).await, ZERO, "the 3rd");
    assert_eq!(clock.guess_account(8, address).await, SECOND);
    // A right password resets the account, and no username.
    clock.advance(SECOND);
    clock.succeed_account(42, None).await;
    assert_eq!(clock.guess_account(42, None).await, ZERO);
    assert_eq!(clock.guess("42", None).await, ZERO, "the 3rd");
    assert_eq!(clock.guess("42", None).await, 2 * SECOND);
}

/// A login form's attempt for a username that names an account counts
/// under both: the account's count holds for spellings the throttle does
/// not take together (an e-mail address for the username, say), and a
/// right password resets both.
async fn a_login_counts_under_the_username_and_its_account(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(3));
    clock
        .attempt_login("susan", 42, None)
        .await
        .unwrap()
        .failed();
    clock
        .attempt_login("susan@example.com", 42, None)
        .await
        .unwrap()
        .failed();
    assert_eq!(
        clock.guess_account(42, None).await,
        ZERO,
        "the account's 3rd, whatever the spelling, goes through and blocks it"
    );
    assert_eq!(clock.guess_login("SUSAN", 42, None).await, SECOND);
    assert_eq!(clock.guess("susan", None).await, ZERO, "the username's 2nd");
    clock.advance(SECOND);
    clock
        .attempt_login("Susan", 42, None)
        .await
        .unwrap()
        .succeeded()
        .await;
    // Both counts start again: two more, then the username's 3rd blocks.
    for _ in 0..2 {
        assert_eq!(clock.guess_login("susan", 42, None).await, ZERO);
    }
    assert_eq!(clock.guess("susan", None).await, ZERO, "the username's 3rd");
    assert_eq!(clock.guess_login("susan", 42, None).await, SECOND);
}

/// The username enumeration an account-only key would allow: the app's
/// lookup may not find a spelling that the throttle takes together with
/// a real username (fullwidth letters, say, where the lookup only ignores
/// ASCII case). Blocking that spelling must refuse the real username too,
/// exactly as it would a username that names no account.
async fn blocking_a_spelling_does_not_tell_whether_a_username_exists(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(2));
    for (real, spelling, account) in [
        ("susan", "ｓｕｓａｎ", Some(42)),
        ("nobody", "ｎｏｂｏｄｙ", None),
    ] {
        // The spelling names no account to the app: counted as typed.
        clock.fail_times(2, spelling, None).await;
        let answer = match account {
            Some(id) => clock.guess_login(real, id, None).await,
            None => clock.guess(real, None).await,
        };
        assert_eq!(answer, SECOND, "{real}: refused, account or not");
    }
}

async fn account_ids_with_odd_characters(t: Subject) {
    let clock = Clock::new(&t.throttle.username_limit(1));
    let long = "x".repeat(1_000);
    let ids = [
        "susan",
        "Susan",
        " susan ",
        "ｓｕｓａｎ",
        "user:susan",
        "throttle:user:susan",
        "a b",
        "*",
        "[a]*?",
        "{tag}",
        "ünï",
        "line\nbreak",
        "",
        "0190d5b4-7a62-7c1e-8f0a-2c4f5c9b1e37",
        &long,
    ];
    // Each is an account of its own: not one of them is refused.
    for id in ids {
        clock.fail_account(id, None).await;
    }
    for id in ids {
        assert_eq!(clock.guess_account(id, None).await, SECOND, "{id:?}");
    }
    // Nor is any of them a username.
    assert_eq!(clock.guess("susan", None).await, ZERO);
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
        clock.guess("susan", None).await,
        SECOND,
        "within the window"
    );
    clock.advance(Duration::from_secs(599));
    clock.fail("susan", None).await;
    assert_eq!(
        clock.guess("susan", None).await,
        2 * SECOND,
        "the window runs from the last failure"
    );
    clock.advance(Duration::from_secs(600));
    clock.fail_times(2, "susan", None).await;
    assert_eq!(
        clock.guess("susan", None).await,
        ZERO,
        "counted from zero: the 3rd"
    );
    assert_eq!(clock.guess("susan", None).await, SECOND);
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
    assert_eq!(clock.guess("susan", None).await, Duration::from_secs(50));
    clock.advance(Duration::from_secs(50));
    // Counted from zero: 1 failure, 100 s again (not 200).
    clock.fail("susan", None).await;
    clock.advance(Duration::from_secs(60));
    assert_eq!(clock.guess("susan", None).await, Duration::from_secs(40));
}

async fn two_instances_share_counts(t: Subject) {
    let a = Clock::new(&t.throttle.username_limit(4).address_limit(100));
    let b = a.with(&t.other.username_limit(4).address_limit(100));
    a.fail("susan", ip("192.0.2.1")).await;
    b.fail("Susan", ip("192.0.2.1")).await;
    a.fail("susan", None).await;
    assert_eq!(b.guess("susan", None).await, ZERO, "the 4th");
    assert_eq!(a.guess("susan", None).await, SECOND);
    assert_eq!(b.guess("susan", None).await, SECOND);
    a.advance(SECOND);
    b.succeed("susan", None).await;
    assert_eq!(
        a.guess("susan", None).await,
        ZERO,
        "a reset on one is seen by the other"
    );
}

/// Many failures at once, from both instances: each is counted once.
async fn concurrent_failures_all_count(t: Subject) {
    const N: u32 = 40;
    let a = Clock::new(&t.throttle.username_limit(N).address_limit(N));
    let b = a.with(&t.other.username_limit(N).address_limit(N));
    let address = ip("192.0.2.1");
    let (through, refused) = burst(&[a.clone(), b], N as usize - 1, |_| {
        ("susan".to_owned(), address)
    })
    .await;
    assert_eq!((through.len(), refused.len()), (N as usize - 1, 0));
    through.into_iter().for_each(LoginAttempt::failed);
    assert_eq!(a.guess("susan", address).await, ZERO, "the {N}th");
    assert_eq!(a.guess("susan", None).await, SECOND, "exactly {N}");
    assert_eq!(a.guess("david", address).await, SECOND, "exactly {N}");
}

/// The attack: 40 wrong passwords for one username, sent at once from 40
/// addresses, all before any password check ends. Only the username limit
/// gets through; the rest are refused at once.
async fn concurrent_guesses_for_one_username_get_no_more_than_its_limit(t: Subject) {
    const N: usize = 40;
    let delay = Duration::from_secs(60);
    let clock = Clock::new(&t.throttle.username_limit(5).base_delay(delay));
    let (through, refused) = burst(std::slice::from_ref(&clock), N, |n| {
        ("susan".to_owned(), nth_address(n))
    })
    .await;
    assert_eq!(through.len(), 5, "of {N} at once");
    assert_eq!(refused.len(), N - 5);
    assert!(
        refused.iter().all(|t| t.retry_after == delay),
        "{refused:?}"
    );
    drop(through);
    assert_eq!(
        clock.guess("susan", None).await,
        delay,
        "5 failures counted"
    );
}

/// The attack on many accounts from one address (password spraying), all
/// at once: only the address limit gets through.
async fn concurrent_guesses_from_one_address_get_no_more_than_its_limit(t: Subject) {
    const N: usize = 40;
    let delay = Duration::from_secs(60);
    let clock = Clock::new(&t.throttle.address_limit(10).base_delay(delay));
    let address = ip("192.0.2.1");
    let (through, refused) = burst(std::slice::from_ref(&clock), N, |n| {
        (format!("user{n}"), address)
    })
    .await;
    assert_eq!(through.len(), 10, "of {N} at once");
    assert_eq!(refused.len(), N - 10);
    through.into_iter().for_each(LoginAttempt::failed);
    assert_eq!(clock.guess("anyone", address).await, delay);
}

/// Both attacks, each split over two instances of the app sharing counts
/// (on Redis: two connections, one prefix).
async fn concurrent_guesses_over_two_instances_get_no_more_than_the_limit(t: Subject) {
    const N: usize = 40;
    let delay = Duration::from_secs(60);
    let configure = |throttle: Throttle| {
        throttle
            .username_limit(5)
            .address_limit(10)
            .base_delay(delay)
    };
    let a = Clock::new(&configure(t.throttle));
    let b = a.with(&configure(t.other));
    let instances = [a.clone(), b.clone()];

    let (through, refused) = burst(&instances, N, |n| ("susan".to_owned(), nth_address(n))).await;
    assert_eq!((through.len(), refused.len()), (5, N - 5), "one username");
    drop(through);

    let address = ip("192.0.2.1");
    let (through, refused) = burst(&instances, N, |n| (format!("user{n}"), address)).await;
    assert_eq!((through.len(), refused.len()), (10, N - 10), "one address");
    drop(through);

    assert_eq!(a.guess("susan", None).await, delay);
    assert_eq!(b.guess("anyone", address).await, delay);
}

// ---------------------------------------------------------------------------
// End to end: an axum login route
// ---------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

/// Id, username and password.
const ACCOUNTS: [(i64, &str, &str); 2] = [
    (1, "susan", "correct horse"),
    (2, "david", "battery staple"),
];

/// A login route as an app would write it: look the username up, reserve
/// an attempt (for the username and the account it names), then check the password,
/// then `succeeded` or `failed`.
async fn login(
    State(throttle): State<Throttle>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Form(form): Form<Credentials>,
) -> Result<Response, Throttled> {
    let address = Some(client.ip());
    // The app's own lookup rule: ASCII case and surrounding spaces ignored.
    let account = ACCOUNTS
        .iter()
        .find(|(_, name, _)| name.eq_ignore_ascii_case(form.username.trim()));
    let id = account.map(|(id, _, _)| id);
    let attempt = throttle.attempt(&form.username, id, address).await?;
    match account {
        Some((_, name, password)) if *password == form.password => {
            attempt.succeeded().await;
            Ok(format!("Welcome, {name}!").into_response())
        }
        _ => {
            attempt.failed();
            Ok((StatusCode::UNAUTHORIZED, "Wrong username or password.").into_response())
        }
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
    let time = axum_latch::clock::Clock::manual(SystemTime::now());
    let configure = |throttle: Throttle| {
        throttle
            .clock(time.clone())
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
    let (a, b, c) = ("192.0.2.10", "198.51.100.20", "203.0.113.30");

    // Two wrong passwords, then the right one: the account starts over.
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
    // The 3rd failure since the login reaches the limit; "SUSAN" is the
    // same account to the app, so it counts for susan.
    assert_eq!(
        post(a, "SUSAN", "guess").await.status,
        StatusCode::UNAUTHORIZED
    );
    let throttled = post(a, "susan", "correct horse").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers["retry-after"], "30");
    assert_eq!(
        throttled.body,
        "Too many failed logins. Try again in 30 seconds.\n"
    );
    let elsewhere = post(b, " Susan", "correct horse").await;
    assert_eq!(
        elsewhere.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the account is throttled from every address"
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

    // A username with no account is throttled just the same.
    for _ in 0..3 {
        assert_eq!(
            post(c, "carol", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let throttled = post(c, "Carol", "guess").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers["retry-after"], "30");
}
