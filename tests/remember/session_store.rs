//! The contract every [`SessionStore`] keeps, written once and run unchanged
//! against each backend: memory, SQLite and PostgreSQL here; Redis in
//! `session_store_redis.rs` and Redis Cluster in `redis_cluster.rs`, which
//! reuse it (`session_contract_tests!` and the `pub(crate)` [`Fixture`],
//! [`Subject`] and [`run`]).
//!
//! Every test gets a store of its own (a new memory store, a new SQLite
//! file, a new PostgreSQL schema, dropped at the end) and a second handle on
//! the same data, as another instance of the app would hold it (another
//! pool on the same file or schema). The tests also run two
//! [`SessionRegistry`] instances over each store, as two app instances.
//!
//! Times are relative to the real clock, and whatever must stay stored is
//! in its future (a store may drop data by TTL). Waits are bounded loops on
//! a condition, never a bare sleep; every test is bounded by [`TEST_LIMIT`].

#![cfg(any(
    feature = "memory",
    feature = "sqlite",
    feature = "postgres",
    feature = "redis"
))]

use crate::support::backend;

use axum_latch::registry::{Change, Ending, SessionRecord, SessionRegistry, SessionStore, Wake};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::future::BoxFuture;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// How long one contract test may take before it fails (rather than hangs).
pub(crate) const TEST_LIMIT: Duration = Duration::from_secs(60);

/// The store a test runs against.
pub(crate) struct Subject<S> {
    /// The store the test writes through.
    pub(crate) store: S,
    /// Another handle on the same data (another pool, another connection),
    /// as a second instance of the app holds it.
    pub(crate) other: S,
}

/// A store of its own for one test, and what tidies up after it.
pub(crate) struct Fixture<S> {
    pub(crate) subject: Subject<S>,
    pub(crate) cleanup: BoxFuture<'static, ()>,
}

/// Runs one contract test on a backend's fixture (`None`: skipped), within
/// [`TEST_LIMIT`], then cleans up, whether the test passed or panicked.
pub(crate) async fn run<S, F, Fut>(fixture: Option<Fixture<S>>, test: F)
where
    S: SessionStore + Clone,
    F: FnOnce(Subject<S>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(Fixture { subject, cleanup }) = fixture else {
        return;
    };
    let bounded = async {
        if tokio::time::timeout(TEST_LIMIT, test(subject))
            .await
            .is_err()
        {
            panic!("the test took longer than {TEST_LIMIT:?}");
        }
    };
    backend::run_then_clean(bounded, cleanup).await;
}

/// One `#[tokio::test]` per contract test, on the backend that `$open` (an
/// async fn returning `Option<Fixture<_>>`) makes. Use it inside a module
/// per backend, here or in a sibling module of the `remember` suite (it
/// names the tests by their absolute path, `crate::session_store::...`).
macro_rules! session_contract_tests {
    ($open:path) => {
        $crate::session_store::session_contract_tests!(@stamp $open;
            current_thread:
                save_and_list_round_trip_every_field,
                save_again_keeps_created_at_and_updates_the_rest,
                list_leaves_out_other_users_expired_and_ended_sessions,
                list_is_most_recently_active_first_then_by_session_id,
                touch_only_moves_forward_and_skips_ended_and_unknown_sessions,
                an_ended_session_is_not_recorded_again,
                a_session_ended_before_it_was_recorded_is_not_recorded_later,
                ending_a_user_ends_exactly_their_sessions_up_to_not_before_but_except,
                seqs_increase_and_changes_page_in_order_with_every_field,
                ending_a_session_twice_is_fine,
                times_beyond_i64_do_not_fail,
                purge_drops_what_is_past_and_keeps_the_rest,
                seqs_keep_increasing_after_everything_is_purged,
                listen_wakes_for_changes_made_through_another_handle,
                registry_hears_endings_made_on_another_instance,
                registry_connected_later_loads_the_endings_in_force;
            multi_thread:
                concurrent_ends_get_distinct_seqs_and_a_reader_misses_none;
        );
    };
    (@stamp $open:path;
        current_thread: $($current:ident),* ;
        multi_thread: $($multi:ident),* ;
    ) => {
        $(
            #[tokio::test]
            async fn $current() {
                $crate::session_store::run($open().await, $crate::session_store::$current).await;
            }
        )*
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $multi() {
                $crate::session_store::run($open().await, $crate::session_store::$multi).await;
            }
        )*
    };
}
pub(crate) use session_contract_tests;

#[cfg(feature = "memory")]
mod memory {
    use super::{Fixture, Subject};
    use axum_latch::stores::MemoryStore;

    /// A new memory store; its clone is the other handle (clones share).
    async fn open() -> Option<Fixture<MemoryStore>> {
        let store = MemoryStore::new();
        Some(Fixture {
            subject: Subject {
                other: store.clone(),
                store,
            },
            cleanup: Box::pin(async {}),
        })
    }

    super::session_contract_tests!(open);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::{backend, Fixture, Subject};
    use axum_latch::stores::SqliteStore;

    /// A new database file in a temporary directory, migrated, behind two
    /// pools of several connections each.
    pub(super) async fn open() -> Option<Fixture<SqliteStore>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pool = backend::sqlite_file(dir.path(), 4).await;
        let store = SqliteStore::new(pool.clone());
        store.migrate().await.expect("SqliteStore::migrate");
        let other_pool = backend::sqlite_file(dir.path(), 4).await;
        let other = SqliteStore::new(other_pool.clone());
        Some(Fixture {
            subject: Subject { store, other },
            cleanup: Box::pin(async move {
                other_pool.close().await;
                pool.close().await;
                drop(dir);
            }),
        })
    }

    super::session_contract_tests!(open);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::{backend, Fixture, Subject};
    use axum_latch::stores::PostgresStore;
    use sqlx::postgres::PgPoolOptions;

    /// A new schema, migrated, and two pools whose connections use it.
    pub(super) async fn open() -> Option<Fixture<PostgresStore>> {
        let url = backend::postgres_url()?;
        let schema = backend::PgSchema::create(&url, 10).await;
        let store = PostgresStore::new(schema.pool.clone());
        let other_pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with((*schema.pool.connect_options()).clone())
            .await;
        let migrated = store.migrate().await;
        let cleanup_pool = other_pool.as_ref().ok().cloned();
        let cleanup = Box::pin(async move {
            if let Some(pool) = cleanup_pool {
                pool.close().await;
            }
            schema.drop_schema().await;
        });
        let (other_pool, ()) = match (other_pool, migrated) {
            (Ok(pool), Ok(())) => (pool, ()),
            (Err(error), _) => {
                cleanup.await;
                panic!("a second pool on the test's schema: {error}");
            }
            (_, Err(error)) => {
                cleanup.await;
                panic!("PostgresStore::migrate: {error}");
            }
        };
        Some(Fixture {
            subject: Subject {
                store,
                other: PostgresStore::new(other_pool),
            },
            cleanup,
        })
    }

    super::session_contract_tests!(open);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const HOUR: u64 = 60 * 60;
const DAY: u64 = 24 * HOUR;
/// Users' ids as JSON text: a string, a number, and a string that reads
/// like the number (a different user).
const SUSAN: &str = r#""susan""#;
const NUMBER_42: &str = "42";
const STRING_42: &str = r#""42""#;

/// Seconds since the Unix epoch, now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// A new session id of latch's shape: 22 characters of base64url.
fn session_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("random bytes");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A session id of latch's shape that sorts where `first` says: ids made by
/// this with a smaller `first` sort before (byte order).
fn session_id_sorting(first: char) -> String {
    let id = session_id();
    format!("{first}{}", &id[1..])
}

/// A session of `user_id` that began at `created_at`, last seen then, and
/// valid for a day.
fn record(user_id: &str, created_at: u64) -> SessionRecord {
    SessionRecord {
        session_id: session_id(),
        user_id: user_id.to_owned(),
        device: "Firefox on Linux".to_owned(),
        created_at,
        last_active_at: created_at,
        expires_at: created_at + DAY,
        remembered: false,
    }
}

fn session_ending(record: &SessionRecord) -> Ending {
    Ending::Session {
        session_id: record.session_id.clone(),
        user_id: record.user_id.clone(),
        until: record.expires_at,
    }
}

async fn save<S: SessionStore>(store: &S, record: &SessionRecord) {
    store
        .save(record)
        .await
        .unwrap_or_else(|e| panic!("save {record:?}: {e}"));
}

async fn list<S: SessionStore>(store: &S, user_id: &str, now: u64) -> Vec<SessionRecord> {
    store
        .list(user_id, now)
        .await
        .unwrap_or_else(|e| panic!("list {user_id}: {e}"))
}

/// The ids of what `list` gives, in its order.
async fn listed<S: SessionStore>(store: &S, user_id: &str, now: u64) -> Vec<String> {
    list(store, user_id, now)
        .await
        .into_iter()
        .map(|record| record.session_id)
        .collect()
}

fn ids(records: &[&SessionRecord]) -> Vec<String> {
    records.iter().map(|r| r.session_id.clone()).collect()
}

async fn end<S: SessionStore>(store: &S, ending: &Ending) -> u64 {
    store
        .end(ending)
        .await
        .unwrap_or_else(|e| panic!("end {ending:?}: {e}"))
}

async fn changes<S: SessionStore>(store: &S, after: u64, limit: usize) -> Vec<Change> {
    store
        .changes(after, limit)
        .await
        .unwrap_or_else(|e| panic!("changes after {after}: {e}"))
}

/// Waits, up to `limit`, until `condition` holds; says `what` if it never does.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

/// `save` then `list` gives back every field as saved, on either handle.
pub(crate) async fn save_and_list_round_trip_every_field<S: SessionStore + Clone>(t: Subject<S>) {
    let now = now();
    let laptop = SessionRecord {
        session_id: session_id_sorting('A'),
        user_id: SUSAN.to_owned(),
        device: "Firefox on Linux".to_owned(),
        created_at: now - 3 * DAY,
        last_active_at: now - 10,
        expires_at: now + 27 * DAY,
        remembered: true,
    };
    let phone = SessionRecord {
        session_id: session_id_sorting('B'),
        user_id: SUSAN.to_owned(),
        device: "Safari on iPhone — “Susan’s” 📱".to_owned(),
        created_at: now - 60,
        last_active_at: now - 20,
        expires_at: now + 12 * HOUR,
        remembered: false,
    };
    save(&t.store, &laptop).await;
    save(&t.store, &phone).await;
    let expected = vec![laptop, phone];
    assert_eq!(list(&t.store, SUSAN, now).await, expected);
    assert_eq!(
        list(&t.other, SUSAN, now).await,
        expected,
        "the other handle lists the same"
    );
}

/// Saving a recorded session again updates every field but `created_at`,
/// which stays the first one.
pub(crate) async fn save_again_keeps_created_at_and_updates_the_rest<S: SessionStore + Clone>(
    t: Subject<S>,
) {
    let now = now();
    let first = record(SUSAN, now - HOUR);
    save(&t.store, &first).await;
    let again = SessionRecord {
        session_id: first.session_id.clone(),
        user_id: SUSAN.to_owned(),
        device: "Chrome on Windows".to_owned(),
        created_at: now - 5,
        last_active_at: now - 5,
        expires_at: now + 30 * DAY,
        remembered: true,
    };
    save(&t.other, &again).await;
    assert_eq!(
        list(&t.store, SUSAN, now).await,
        vec![SessionRecord {
            created_at: first.created_at,
            ..again
        }]
    );
}

/// `list` gives only the user's sessions that are not ended nor expired at
/// `now` (one expiring at `now` has expired); users are told apart by their
/// JSON (`42` is not `"42"`).
pub(crate) async fn list_leaves_out_other_users_expired_and_ended_sessions<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    let now = now();
    let live = record(SUSAN, now - HOUR);
    let expiring_next = SessionRecord {
        expires_at: now + 1,
        ..record(SUSAN, now - 2 * HOUR)
    };
    let expiring_now = SessionRecord {
        expires_at: now,
        ..record(SUSAN, now - 3 * HOUR)
    };
    let expired = SessionRecord {
        expires_at: now - 10,
        ..record(SUSAN, now - 4 * HOUR)
    };
    let ended = record(SUSAN, now - 5 * HOUR);
    let number = record(NUMBER_42, now - HOUR);
    let string = record(STRING_42, now - 2 * HOUR);
    for record in [
        &live,
        &expiring_next,
        &expiring_now,
        &expired,
        &ended,
        &number,
        &string,
    ] {
        save(&t.store, record).await;
    }
    end(&t.store, &session_ending(&ended)).await;

    assert_eq!(
        listed(&t.store, SUSAN, now).await,
        ids(&[&live, &expiring_next])
    );
    assert_eq!(listed(&t.store, NUMBER_42, now).await, ids(&[&number]));
    assert_eq!(listed(&t.store, STRING_42, now).await, ids(&[&string]));
    assert!(listed(&t.store, r#""nobody""#, now).await.is_empty());
    assert_eq!(
        listed(&t.other, SUSAN, now + 1).await,
        ids(&[&live]),
        "at now + 1 the next one has expired too"
    );
}

/// `list` orders by `last_active_at`, latest first; ties by session id, in
/// byte order.
pub(crate) async fn list_is_most_recently_active_first_then_by_session_id<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    let now = now();
    let at = |first: char, last_active_at: u64| SessionRecord {
        session_id: session_id_sorting(first),
        last_active_at,
        ..record(SUSAN, now - HOUR)
    };
    // Ids in byte order: '0' < 'A' < 'Z' < '_' < 'a' < 'z'.
    let older = at('0', now - 300);
    let tie_z = at('z', now - 100);
    let tie_big_a = at('A', now - 100);
    let tie_under = at('_', now - 100);
    let tie_small_a = at('a', now - 100);
    let latest = at('Z', now - 5);
    for record in [
        &older,
        &tie_z,
        &tie_big_a,
        &tie_under,
        &tie_small_a,
        &latest,
    ] {
        save(&t.store, record).await;
    }
    assert_eq!(
        listed(&t.store, SUSAN, now).await,
        ids(&[
            &latest,
            &tie_big_a,
            &tie_under,
            &tie_small_a,
            &tie_z,
            &older
        ])
    );
}

/// `touch` moves `last_active_at` forward only, and does nothing for a
/// session that has ended or was never recorded.
pub(crate) async fn touch_only_moves_forward_and_skips_ended_and_unknown_sessions<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    let now = now();
    let session = record(SUSAN, now - HOUR);
    save(&t.store, &session).await;

    t.other.touch(&session.session_id, now - 60).await.unwrap();
    let touched = SessionRecord {
        last_active_at: now - 60,
        ..session.clone()
    };
    assert_eq!(list(&t.store, SUSAN, now).await, vec![touched.clone()]);

    t.store.touch(&session.session_id, now - 600).await.unwrap();
    assert_eq!(
        list(&t.store, SUSAN, now).await,
        vec![touched.clone()],
        "an earlier touch changes nothing"
    );

    let unknown = session_id();
    t.store.touch(&unknown, now).await.unwrap();
    assert_eq!(
        list(&t.store, SUSAN, now).await,
        vec![touched],
        "a touch of an unknown session records nothing"
    );

    end(&t.store, &session_ending(&session)).await;
    t.store.touch(&session.session_id, now).await.unwrap();
    assert!(
        list(&t.store, SUSAN, now).await.is_empty(),
        "a touch does not bring an ended session back"
    );
}

/// An ended session leaves `list`, and a later `save` (a late write from
/// another instance) does not bring it back.
pub(crate) async fn an_ended_session_is_not_recorded_again<S: SessionStore + Clone>(t: Subject<S>) {
    let now = now();
    let ended = record(SUSAN, now - HOUR);
    let kept = record(SUSAN, now - 2 * HOUR);
    save(&t.store, &ended).await;
    save(&t.store, &kept).await;
    end(&t.other, &session_ending(&ended)).await;
    assert_eq!(listed(&t.store, SUSAN, now).await, ids(&[&kept]));

    let late = SessionRecord {
        last_active_at: now,
        expires_at: now + 2 * DAY,
        remembered: true,
        ..ended.clone()
    };
    save(&t.store, &late).await;
    t.store.touch(&ended.session_id, now).await.unwrap();
    assert_eq!(listed(&t.store, SUSAN, now).await, ids(&[&kept]));
    assert_eq!(listed(&t.other, SUSAN, now).await, ids(&[&kept]));
}

/// A session ended before it was ever recorded (its login's `save` failed,
/// or comes late) is not recorded by a later `save` either.
pub(crate) async fn a_session_ended_before_it_was_recorded_is_not_recorded_later<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    let now = now();
    let unrecorded = record(SUSAN, now - HOUR);
    end(&t.other, &session_ending(&unrecorded)).await;
    save(&t.store, &unrecorded).await;
    t.store.touch(&unrecorded.session_id, now).await.unwrap();
    assert_eq!(listed(&t.store, SUSAN, now).await, Vec::<String>::new());
    assert_eq!(listed(&t.other, SUSAN, now).await, Vec::<String>::new());
}

/// `Ending::User` ends the user's sessions created at or before
/// `not_before`, except the one it keeps, and nobody else's.
pub(crate) async fn ending_a_user_ends_exactly_their_sessions_up_to_not_before_but_except<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    let now = now();
    let cutoff = now - HOUR;
    let before = record(SUSAN, cutoff - 100);
    let at_cutoff = record(SUSAN, cutoff);
    let after = record(SUSAN, cutoff + 1);
    let kept = record(SUSAN, cutoff - 200);
    let number = record(NUMBER_42, cutoff - 100);
    let string = record(STRING_42, cutoff - 100);
    for record in [&before, &at_cutoff, &after, &kept, &number, &string] {
        save(&t.store, record).await;
    }
    end(
        &t.other,
        &Ending::User {
            user_id: SUSAN.to_owned(),
            not_before: cutoff,
            except: Some(kept.session_id.clone()),
            until: now + DAY,
        },
    )
    .await;
    let mut left = listed(&t.store, SUSAN, now).await;
    left.sort();
    let mut expected = ids(&[&after, &kept]);
    expected.sort();
    assert_eq!(left, expected);
    assert_eq!(listed(&t.store, NUMBER_42, now).await, ids(&[&number]));
    assert_eq!(listed(&t.store, STRING_42, now).await, ids(&[&string]));

    // With no exception: everything up to the cut-off, of that user only.
    end(
        &t.store,
        &Ending::User {
            user_id: NUMBER_42.to_owned(),
            not_before: cutoff,
            except: None,
            until: now + DAY,
        },
    )
    .await;
    assert!(listed(&t.store, NUMBER_42, now).await.is_empty());
    assert_eq!(listed(&t.store, STRING_42, now).await, ids(&[&string]));
    assert_eq!(listed(&t.store, SUSAN, now).await.len(), 2);
}

// ---------------------------------------------------------------------------
// The change feed
// ---------------------------------------------------------------------------

/// Every `end` gets a larger seq than the one before; `changes(after,
/// limit)` pages through them in order, giving back every field of both
/// kinds of ending, on either handle.
pub(crate) async fn seqs_increase_and_changes_page_in_order_with_every_field<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    let now = now();
    let endings = vec![
        Ending::Session {
            session_id: session_id(),
            user_id: SUSAN.to_owned(),
            until: now + DAY,
        },
        Ending::User {
            user_id: NUMBER_42.to_owned(),
            not_before: now - 10,
            except: None,
            until: now + 30 * DAY,
        },
        Ending::User {
            user_id: STRING_42.to_owned(),
            not_before: now,
            except: Some(session_id()),
            until: now + 400 * DAY,
        },
        Ending::Session {
            session_id: session_id(),
            user_id: r#"{"tenant":"a","id":7}"#.to_owned(),
            until: now + 1,
        },
        Ending::User {
            user_id: r#""Zoë 🙂""#.to_owned(),
            not_before: 0,
            except: Some(session_id()),
            until: now + 2,
        },
    ];
    let mut seqs = Vec::new();
    for (i, ending) in endings.iter().enumerate() {
        let handle = if i % 2 == 0 { &t.store } else { &t.other };
        let seq = end(handle, ending).await;
        if let Some(last) = seqs.last() {
            assert!(seq > *last, "seq {seq} after {last}");
        }
        seqs.push(seq);
    }
    let expected: Vec<Change> = seqs
        .iter()
        .zip(&endings)
        .map(|(seq, ending)| Change {
            seq: *seq,
            ending: ending.clone(),
        })
        .collect();

    let from_start = seqs[0] - 1;
    assert_eq!(changes(&t.store, from_start, 100).await, expected);
    assert_eq!(changes(&t.other, from_start, 100).await, expected);
    assert_eq!(changes(&t.store, 0, 100).await, expected, "after 0: all");

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = changes(&t.other, after, 2).await;
        assert!(page.len() <= 2, "a page of at most 2: {page:?}");
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, expected, "paged by two");

    assert_eq!(
        changes(&t.store, seqs[2], 100).await,
        expected[3..].to_vec()
    );
    assert!(changes(&t.store, seqs[4], 100).await.is_empty());
    assert!(changes(&t.store, u64::MAX, 100).await.is_empty());
    assert!(changes(&t.store, 0, 0).await.is_empty(), "a limit of 0");
}

/// Two instances ending the same session at once: both endings are
/// recorded, with their own seqs, and the session stays ended.
pub(crate) async fn ending_a_session_twice_is_fine<S: SessionStore + Clone>(t: Subject<S>) {
    let now = now();
    let session = record(SUSAN, now - HOUR);
    save(&t.store, &session).await;
    let ending = session_ending(&session);
    let first = end(&t.store, &ending).await;
    let second = end(&t.other, &ending).await;
    assert!(second > first);
    assert_eq!(
        changes(&t.store, 0, 10).await,
        vec![
            Change {
                seq: first,
                ending: ending.clone()
            },
            Change {
                seq: second,
                ending
            },
        ]
    );
    assert!(list(&t.store, SUSAN, now).await.is_empty());
}

/// Times past `i64::MAX` (a session that never expires) are neither an
/// error nor wrapped into the past: the record is listed, stays through a
/// purge, and the ending's `until` reads back at least `i64::MAX`.
pub(crate) async fn times_beyond_i64_do_not_fail<S: SessionStore + Clone>(t: Subject<S>) {
    let now = now();
    let forever = SessionRecord {
        expires_at: u64::MAX,
        ..record(SUSAN, now - HOUR)
    };
    save(&t.store, &forever).await;
    t.store.touch(&forever.session_id, u64::MAX).await.unwrap();
    let listed = list(&t.store, SUSAN, now).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].expires_at >= i64::MAX as u64, "{listed:?}");
    assert!(listed[0].last_active_at >= i64::MAX as u64, "{listed:?}");
    t.store.purge(now).await.unwrap();
    assert_eq!(list(&t.store, SUSAN, now).await.len(), 1);
    assert!(
        list(&t.store, SUSAN, u64::MAX).await.is_empty(),
        "nothing is valid at the end of time"
    );

    let seq = end(
        &t.store,
        &Ending::User {
            user_id: SUSAN.to_owned(),
            not_before: u64::MAX,
            except: None,
            until: u64::MAX,
        },
    )
    .await;
    let read = changes(&t.store, seq - 1, 10).await;
    let [Change {
        seq: read_seq,
        ending: Ending::User {
            not_before, until, ..
        },
    }] = read.as_slice()
    else {
        panic!("one user ending: {read:?}");
    };
    assert_eq!(*read_seq, seq);
    assert!(*not_before >= i64::MAX as u64 && *until >= i64::MAX as u64);
    assert!(
        list(&t.store, SUSAN, now).await.is_empty(),
        "a cut-off at the end of time ends the session"
    );
}

/// `purge(now)` deletes records whose `expires_at` and changes whose
/// `until` is at or before `now`, and keeps the rest as they were.
pub(crate) async fn purge_drops_what_is_past_and_keeps_the_rest<S: SessionStore + Clone>(
    t: Subject<S>,
) {
    let now = now();
    // All in the future of the real clock; the purge is at `purge_at`.
    let purge_at = now + HOUR;
    let with_expiry = |expires_at: u64| SessionRecord {
        expires_at,
        ..record(SUSAN, now - HOUR)
    };
    let past = with_expiry(purge_at - 100);
    let at = with_expiry(purge_at);
    let next = with_expiry(purge_at + 1);
    for record in [&past, &at, &next] {
        save(&t.store, record).await;
    }
    let ending = |until: u64| Ending::User {
        user_id: NUMBER_42.to_owned(),
        not_before: now,
        except: None,
        until,
    };
    let first = end(&t.store, &ending(purge_at - 100)).await;
    let kept_seq = end(&t.store, &ending(purge_at + 1)).await;
    end(&t.store, &ending(purge_at)).await;

    assert_eq!(t.other.purge(purge_at).await.unwrap(), 4);
    assert_eq!(
        changes(&t.store, first - 1, 10).await,
        vec![Change {
            seq: kept_seq,
            ending: ending(purge_at + 1)
        }]
    );
    assert_eq!(listed(&t.store, SUSAN, now).await, ids(&[&next]));
    assert_eq!(t.store.purge(purge_at).await.unwrap(), 0, "nothing left");
}

/// Seqs never go back, even once every change has been purged: instances
/// that have seen the old ones must see the new ones.
pub(crate) async fn seqs_keep_increasing_after_everything_is_purged<S: SessionStore + Clone>(
    t: Subject<S>,
) {
    let now = now();
    let soon = Ending::User {
        user_id: SUSAN.to_owned(),
        not_before: now,
        except: None,
        until: now + 10,
    };
    end(&t.store, &soon).await;
    let last = end(&t.store, &soon).await;
    t.store.purge(now + 10).await.unwrap();
    assert!(changes(&t.store, 0, 10).await.is_empty());
    let next = end(&t.other, &soon).await;
    assert!(next > last, "{next} after {last}");
    assert_eq!(
        changes(&t.store, last, 10).await,
        vec![Change {
            seq: next,
            ending: soon
        }]
    );
}

/// Many instances ending sessions at once: every `end` gets its own seq,
/// and a reader following `changes` meanwhile (as a registry does) misses
/// none: a change is never readable before one with a smaller seq.
pub(crate) async fn concurrent_ends_get_distinct_seqs_and_a_reader_misses_none<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    const ENDS: usize = 60;
    let now = now();
    let sessions: Vec<SessionRecord> = (0..ENDS).map(|_| record(SUSAN, now - HOUR)).collect();
    for session in &sessions {
        save(&t.store, session).await;
    }

    // The reader follows the feed from the start, as a registry would.
    let reader = {
        let store = t.other.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seen = Vec::new();
            let mut after = 0;
            while seen.len() < ENDS && Instant::now() < deadline {
                let page = changes(&store, after, 1000).await;
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                seen.extend(page);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };

    let barrier = Arc::new(tokio::sync::Barrier::new(ENDS));
    let tasks: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, session)| {
            let store = if i % 2 == 0 {
                t.store.clone()
            } else {
                t.other.clone()
            };
            let ending = session_ending(session);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let seq = store.end(&ending).await;
                (seq, ending)
            })
        })
        .collect();
    let mut made = Vec::new();
    for task in tasks {
        let (seq, ending) = task.await.expect("an end task panicked");
        let seq = seq.unwrap_or_else(|e| panic!("a concurrent end failed: {e}"));
        made.push(Change { seq, ending });
    }
    made.sort_by_key(|change| change.seq);
    let distinct: BTreeSet<u64> = made.iter().map(|change| change.seq).collect();
    assert_eq!(distinct.len(), ENDS, "distinct seqs");

    assert_eq!(
        changes(&t.store, 0, 1000).await,
        made,
        "every change, in order"
    );
    let seen = reader.await.expect("the reader panicked");
    assert_eq!(seen, made, "the reader saw every change, in order");
    assert!(list(&t.store, SUSAN, now).await.is_empty());
}

/// A store that pushes changes wakes its listeners for every change made
/// through any handle; one that does not never returns from `listen`.
pub(crate) async fn listen_wakes_for_changes_made_through_another_handle<
    S: SessionStore + Clone,
>(
    t: Subject<S>,
) {
    let now = now();
    let ending = Ending::User {
        user_id: SUSAN.to_owned(),
        not_before: now,
        except: None,
        until: now + HOUR,
    };
    let wakes = Arc::new(AtomicUsize::new(0));
    let wake: Wake = {
        let wakes = wakes.clone();
        Arc::new(move || {
            wakes.fetch_add(1, Ordering::SeqCst);
        })
    };
    if !t.store.pushes_changes() {
        let listening = tokio::time::timeout(Duration::from_millis(200), t.store.listen(wake));
        end(&t.other, &ending).await;
        assert!(
            listening.await.is_err(),
            "listen returns nothing for a store that does not push"
        );
        return;
    }

    let listener = {
        let store = t.store.clone();
        tokio::spawn(async move { store.listen(wake).await })
    };
    // The listener may take a moment to subscribe: end until it hears one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while wakes.load(Ordering::SeqCst) == 0 {
        assert!(
            !listener.is_finished(),
            "listen returned: {:?}",
            listener.await
        );
        assert!(Instant::now() < deadline, "no wake within 10 s");
        end(&t.other, &ending).await;
        let probe = Instant::now();
        while wakes.load(Ordering::SeqCst) == 0 && probe.elapsed() < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Subscribed: each further change wakes it (a late wake from the
    // probes may add one or two, not five).
    let before = wakes.load(Ordering::SeqCst);
    for _ in 0..5 {
        end(&t.other, &ending).await;
    }
    wait_until(Duration::from_secs(10), "five more wakes", || {
        let wakes = wakes.clone();
        async move { wakes.load(Ordering::SeqCst) >= before + 5 }
    })
    .await;
    assert!(!listener.is_finished(), "listen still follows the feed");
    listener.abort();
}

// ---------------------------------------------------------------------------
// Registries over the store
// ---------------------------------------------------------------------------

/// Two app instances, each with a registry over its own handle: endings
/// made on one reach the other through the store's feed (listen or polls).
pub(crate) async fn registry_hears_endings_made_on_another_instance<S: SessionStore + Clone>(
    t: Subject<S>,
) {
    let now = now();
    let period = Duration::from_millis(50);
    let one = SessionRegistry::builder(t.store.clone())
        .poll_every(period)
        .connect()
        .await
        .expect("the first registry connects");
    let two = SessionRegistry::builder(t.other.clone())
        .poll_every(period)
        .connect()
        .await
        .expect("the second registry connects");
    let susan = "susan";
    let laptop = record(SUSAN, now - HOUR);
    let phone = record(SUSAN, now - 2 * HOUR);
    save(&t.store, &laptop).await;
    save(&t.store, &phone).await;
    assert_eq!(two.sessions(&susan).await.unwrap().len(), 2);

    // One session, ended on the first instance.
    assert!(one.end_session(&susan, &laptop.session_id).await.unwrap());
    assert_eq!(one.ended_size().sessions, 1, "at once where it was made");
    wait_until(
        Duration::from_secs(10),
        "the second hears the ending",
        || {
            let two = two.clone();
            async move { two.ended_size().sessions == 1 }
        },
    )
    .await;
    let left: Vec<String> = two
        .sessions(&susan)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec![phone.session_id.clone()]);

    // Every session, ended on the second: the first refuses even a login
    // from before the cut-off that is recorded late.
    two.end_all(&susan).await.unwrap();
    wait_until(
        Duration::from_secs(10),
        "the first hears the cut-off",
        || {
            let one = one.clone();
            async move { one.ended_size().users == 1 }
        },
    )
    .await;
    let late = record(SUSAN, now - 30);
    save(&t.store, &late).await;
    let fresh = record(SUSAN, now + HOUR);
    save(&t.store, &fresh).await;
    let listed: Vec<String> = one
        .sessions(&susan)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![fresh.session_id], "only the later login");
}

/// A registry connected after endings were made loads those still in
/// force before it serves.
pub(crate) async fn registry_connected_later_loads_the_endings_in_force<S: SessionStore + Clone>(
    t: Subject<S>,
) {
    let now = now();
    let first = record(SUSAN, now - HOUR);
    let second = record(NUMBER_42, now - HOUR);
    for record in [&first, &second] {
        end(&t.store, &session_ending(record)).await;
    }
    end(
        &t.store,
        &Ending::User {
            user_id: STRING_42.to_owned(),
            not_before: now,
            except: None,
            until: now + HOUR,
        },
    )
    .await;
    // Past its time: not loaded.
    end(
        &t.store,
        &Ending::User {
            user_id: SUSAN.to_owned(),
            not_before: now - DAY,
            except: None,
            until: now - 10,
        },
    )
    .await;
    let registry = SessionRegistry::builder(t.other.clone())
        .poll_every(Duration::from_secs(60))
        .connect()
        .await
        .expect("the registry connects");
    let size = registry.ended_size();
    assert_eq!((size.sessions, size.users), (2, 1));
}
