//! `RedisStore` on a Redis Cluster, through the `redis` crate's cluster
//! connection, on the kit's cluster (three masters it starts, or the nodes
//! `TEST_REDIS_CLUSTER_URLS` names; see `support/backend.rs`). Each test
//! keeps to a key prefix of its own, deleted at the end, pass or fail.
//!
//! The shared contracts run on the cluster too: the remember-me store's in
//! `store.rs` (`store::redis_cluster`), the session store's here
//! ([`session_contract`]). What is checked here on top: users whose keys
//! are on every master (a script that touched keys of two hash slots would
//! fail with `CROSSSLOT`, and a purge must reach every master), and the
//! change feed heard through a client of any node.

#![cfg(feature = "redis")]

use crate::support::backend::{self, RedisCluster};

use axum_latch::registry::{Ending, SessionRecord, SessionStore, Wake};
use axum_latch::remember::{RememberStore, Rotation, StoredToken};
use axum_latch::stores::RedisStore;
use redis::cluster_async::ClusterConnection;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: u64 = 24 * 60 * 60;
const WAIT: Duration = Duration::from_secs(5);

/// The shared [`SessionStore`] contract (`session_store.rs`) on the
/// cluster: two cluster connections (two app instances), each with the
/// feed through a client of another node.
mod session_contract {
    use crate::session_store::{Fixture, Subject};
    use crate::support::backend;
    use axum_latch::stores::RedisStore;
    use redis::cluster_async::ClusterConnection;

    async fn open() -> Option<Fixture<RedisStore<ClusterConnection>>> {
        let cluster = backend::redis_cluster().await?;
        let prefix = format!("latch_test_{}:", backend::random_hex());
        let node = |url: &String| redis::Client::open(url.as_str()).expect("a node's URL");
        let first = node(cluster.nodes.first().expect("a node"));
        let last = node(cluster.nodes.last().expect("a node"));
        let other = backend::redis_cluster_connection(&cluster.nodes).await;
        let subject = Subject {
            store: RedisStore::new(cluster.connection.clone())
                .prefix(&prefix)
                .feed(first),
            other: RedisStore::new(other).prefix(&prefix).feed(last),
        };
        let pattern = format!("{prefix}*");
        Some(Fixture {
            subject,
            cleanup: Box::pin(async move { cluster.delete(&pattern).await }),
        })
    }

    crate::session_store::session_contract_tests!(open);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn random_part() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn token(user_id: &str, now: u64) -> StoredToken {
    let mut validator_hash = [0u8; 32];
    getrandom::fill(&mut validator_hash).unwrap();
    StoredToken {
        selector: random_part(),
        validator_hash,
        previous_hash: None,
        rotated_at_ms: None,
        confirmed: false,
        user_id: user_id.to_owned(),
        fingerprint: "fp".to_owned(),
        series: random_part(),
        days: 30,
        created_at: now,
        last_used_at: now,
        expires_at: now + 30 * DAY,
        device: "Firefox on Linux".to_owned(),
    }
}

fn record(user_id: &str, now: u64) -> SessionRecord {
    SessionRecord {
        session_id: random_part(),
        user_id: user_id.to_owned(),
        device: "Firefox on Linux".to_owned(),
        created_at: now - 10,
        last_active_at: now - 10,
        expires_at: now + DAY,
        remembered: false,
    }
}

/// Twelve users, one with braces in its id; on the kit's cluster their
/// keys land on every master ([`assert_on_every_master`] checks it).
fn users() -> Vec<String> {
    let mut users: Vec<String> = (0..11).map(|n| format!("\"user{n}\"")).collect();
    users.push(r#"{"org":"{x}","id":"}7{"}"#.to_owned());
    users
}

/// Every master holds some of the keys under `prefix`.
async fn assert_on_every_master(cluster: &RedisCluster, prefix: &str) {
    let masters = cluster.masters().await;
    assert!(
        masters.len() > 1,
        "a cluster of several masters: {masters:?}"
    );
    for master in masters {
        let keys = cluster.keys_on(&master, &format!("{prefix}*")).await;
        assert!(!keys.is_empty(), "no key of the test's users on {master}");
    }
}

fn store(cluster: &RedisCluster, prefix: &str) -> RedisStore<ClusterConnection> {
    RedisStore::new(cluster.connection.clone()).prefix(prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_tokens_of_users_on_every_master_work_and_purge_reaches_them_all() {
    backend::with_redis_cluster_prefix(async |cluster, prefix| {
        let store = store(&cluster, &prefix);
        let now = unix_now();
        for user in users() {
            let first = token(&user, now);
            let second = token(&user, now);
            store.insert(&first).await.unwrap();
            store.insert(&second).await.unwrap();
            assert_eq!(
                store.find(&first.selector).await.unwrap(),
                Some(first.clone())
            );
            let replacement = [9u8; 32];
            let rotation = Rotation {
                selector: &first.selector,
                expected: &first.validator_hash,
                confirmed: false,
                previous: &first.validator_hash,
                replacement: &replacement,
                now: now + 1,
                rotated_at_ms: (now + 1) * 1000,
                expires_at: now + 31 * DAY,
            };
            assert!(store.rotate(&rotation).await.unwrap());
            assert!(!store.rotate(&rotation).await.unwrap(), "once");
            assert!(store.confirm(&first.selector, &replacement).await.unwrap());
            assert_eq!(RememberStore::list(&store, &user).await.unwrap().len(), 2);
            assert!(store.revoke_series(&user, &second.series).await.unwrap());
            assert_eq!(RememberStore::list(&store, &user).await.unwrap().len(), 1);
            let third = token(&user, now);
            store.insert(&third).await.unwrap();
            assert!(store.revoke(&third.selector).await.unwrap());
            let expiring = StoredToken {
                expires_at: now + 100,
                ..token(&user, now)
            };
            store.insert(&expiring).await.unwrap();
        }
        assert_on_every_master(&cluster, &prefix).await;
        assert_eq!(
            store.purge_expired(now + 100).await.unwrap(),
            users().len() as u64,
            "one expiring token per user, on every master"
        );
        for user in users() {
            assert_eq!(store.revoke_user(&user).await.unwrap(), 1);
            assert_eq!(RememberStore::list(&store, &user).await.unwrap(), vec![]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_records_of_users_on_every_master_are_kept_ended_and_purged() {
    backend::with_redis_cluster_prefix(async |cluster, prefix| {
        let store = store(&cluster, &prefix);
        let now = unix_now();
        for user in users() {
            let kept = record(&user, now);
            let ended = record(&user, now);
            let cut = record(&user, now);
            for r in [&kept, &ended, &cut] {
                store.save(r).await.unwrap();
            }
            store.touch(&kept.session_id, now).await.unwrap();
            assert_eq!(
                SessionStore::list(&store, &user, now).await.unwrap().len(),
                3
            );
            store
                .end(&Ending::Session {
                    session_id: ended.session_id.clone(),
                    user_id: user.clone(),
                    until: now + DAY,
                })
                .await
                .unwrap();
            store
                .end(&Ending::User {
                    user_id: user.clone(),
                    not_before: now,
                    except: Some(kept.session_id.clone()),
                    until: now + DAY,
                })
                .await
                .unwrap();
            store.save(&ended).await.unwrap();
            let listed = SessionStore::list(&store, &user, now).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].last_active_at, now);
        }
        assert_on_every_master(&cluster, &prefix).await;
        assert_eq!(
            store.changes(0, 1000).await.unwrap().len(),
            2 * users().len()
        );
        let purged = store.purge(now + DAY).await.unwrap();
        assert_eq!(
            purged,
            (3 * users().len() + 2 * users().len()) as u64,
            "every record, and every ending"
        );
    })
    .await;
}

/// Whichever master holds the feed's slot, a listener subscribed through
/// a client of any node hears every ending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_is_heard_through_a_client_of_any_node() {
    backend::with_redis_cluster_prefix(async |cluster, prefix| {
        let mut listeners = Vec::new();
        let mut wakes = Vec::new();
        for url in &cluster.nodes {
            let client = redis::Client::open(url.as_str()).unwrap();
            let listening = store(&cluster, &prefix).feed(client);
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            let wake: Wake = Arc::new(move || {
                let _ = sender.send(());
            });
            listeners.push(tokio::spawn(async move { listening.listen(wake).await }));
            wakes.push(receiver);
        }
        for woke in &mut wakes {
            tokio::time::timeout(WAIT, woke.recv())
                .await
                .expect("subscribed")
                .unwrap();
        }
        let now = unix_now();
        store(&cluster, &prefix)
            .end(&Ending::User {
                user_id: "\"someone\"".to_owned(),
                not_before: now,
                except: None,
                until: now + DAY,
            })
            .await
            .unwrap();
        for (url, woke) in cluster.nodes.iter().zip(&mut wakes) {
            tokio::time::timeout(WAIT, woke.recv())
                .await
                .unwrap_or_else(|_| panic!("the ending is not heard through {url}"))
                .unwrap();
        }
        for listener in listeners {
            assert!(!listener.is_finished(), "a listener stopped");
            listener.abort();
        }
    })
    .await;
}
