//! `RedisStore` on a Redis Cluster: remember-me tokens and a session
//! registry through the `redis` crate's cluster connection, on three
//! primaries the test starts on spare ports (`redis-server` and
//! `redis-cli` from `PATH`, or `REDIS_SERVER` and a `redis-cli` beside it;
//! without them the test says `SKIPPED`).
//!
//! A script that touched keys of two hash slots would fail here (`CROSSSLOT`,
//! or a key of another node): every store method is called, for users whose
//! keys live on different nodes, and the change feed is heard on every node.
//!
//! Needs the `redis` crate's `cluster-async` feature.

#![cfg(feature = "redis")]

use crate::support::backend;

use axum_latch::registry::{Ending, SessionRecord, SessionRegistry, SessionStore, Wake};
use axum_latch::remember::{RememberStore, Rotation, StoredToken};
use axum_latch::stores::RedisStore;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY: u64 = 24 * 60 * 60;
const WAIT: Duration = Duration::from_secs(5);

/// Three `redis-server` primaries in cluster mode, killed when dropped (a
/// failing test included), with their directory.
struct Cluster {
    nodes: Vec<(Child, u16)>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    /// Starts three primaries, makes them a cluster of every slot, and
    /// waits until each says `cluster_state:ok`; `None` (and `SKIPPED`)
    /// without `redis-server` and `redis-cli`.
    fn start() -> Option<Self> {
        let Some(server) = backend::redis_server_binary() else {
            backend::skip("no redis-server to start a cluster with");
            return None;
        };
        let Some(cli) = redis_cli(&server) else {
            backend::skip("no redis-cli to make a cluster with");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            _dir: dir,
        };
        let dir = cluster._dir.path().to_owned();
        for node in 0..3 {
            let port = backend::spare_port();
            let child = Command::new(&server)
                .arg("--port")
                .arg(port.to_string())
                .arg("--bind")
                .arg("127.0.0.1")
                .arg("--cluster-enabled")
                .arg("yes")
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{node}.conf")))
                .arg("--dir")
                .arg(&dir)
                .arg("--save")
                .arg("")
                .arg("--appendonly")
                .arg("no")
                .arg("--daemonize")
                .arg("no")
                .arg("--logfile")
                .arg(dir.join(format!("node-{node}.log")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            cluster.nodes.push((child, port));
        }
        for port in cluster.ports() {
            wait_until(&format!("redis-server on port {port} answers"), || {
                cli_output(&cli, port, &["PING"]).is_some_and(|out| out.trim() == "PONG")
            });
        }
        let addresses: Vec<String> = cluster
            .ports()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let status = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create: {status}");
        for port in cluster.ports() {
            wait_until(&format!("node {port} says cluster_state:ok"), || {
                cli_output(&cli, port, &["CLUSTER", "INFO"])
                    .is_some_and(|out| out.contains("cluster_state:ok"))
            });
        }
        Some(cluster)
    }

    fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes.iter().map(|(_, port)| *port)
    }

    fn urls(&self) -> Vec<String> {
        self.ports()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    async fn connection(&self) -> ClusterConnection {
        ClusterClient::new(self.urls())
            .expect("cluster URLs")
            .get_async_connection()
            .await
            .expect("a connection to the cluster")
    }
}

/// `redis-cli`: beside `redis-server`, else on `PATH`.
fn redis_cli(server: &Path) -> Option<PathBuf> {
    let beside = server.with_file_name("redis-cli");
    if beside.is_file() {
        return Some(beside);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("redis-cli"))
        .find(|candidate| candidate.is_file())
}

fn cli_output(cli: &Path, port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Waits up to 30 seconds for `check`, or panics naming `what`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// User ids whose keys land on every node (a cluster hashes slots to
/// nodes; twelve users miss one of three nodes with odds of about 1 in
/// 2,600), one with braces.
fn users() -> Vec<String> {
    let mut users: Vec<String> = (0..11).map(|n| format!("\"user{n}\"")).collect();
    users.push(r#"{"org":"{x}","id":"}7{"}"#.to_owned());
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_tokens_work_on_a_cluster() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let store = RedisStore::new(cluster.connection().await).prefix("latch_test:");
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
    assert_eq!(
        store.purge_expired(now + 100).await.unwrap(),
        users().len() as u64,
        "one expiring token per user, on every node"
    );
    for user in users() {
        assert_eq!(store.revoke_user(&user).await.unwrap(), 1);
        assert_eq!(RememberStore::list(&store, &user).await.unwrap(), vec![]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_registries_work_on_a_cluster() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let prefix = "latch_test:";
    let store = RedisStore::new(cluster.connection().await).prefix(prefix);
    let now = unix_now();

    // Every method, for users on every node.
    let mut sessions = Vec::new();
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
        sessions.push(kept);
    }
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

    // The feed is heard on every node, whichever holds the feed's slot.
    let mut listeners = Vec::new();
    let mut wakes = Vec::new();
    for url in cluster.urls() {
        let client = redis::Client::open(url).unwrap();
        let listening = RedisStore::new(cluster.connection().await)
            .prefix(prefix)
            .feed(client);
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
    store
        .end(&Ending::User {
            user_id: "\"someone\"".to_owned(),
            not_before: now,
            except: None,
            until: now + DAY,
        })
        .await
        .unwrap();
    for woke in &mut wakes {
        tokio::time::timeout(WAIT, woke.recv())
            .await
            .expect("an ending heard on every node")
            .unwrap();
    }
    for listener in listeners {
        listener.abort();
    }

    // Two registries on the cluster, each hearing the feed on another node.
    let urls = cluster.urls();
    let registry = |url: String| {
        let connection = cluster.connection();
        async move {
            let store = RedisStore::new(connection.await)
                .prefix(prefix)
                .feed(redis::Client::open(url).unwrap());
            SessionRegistry::builder(store).connect().await.unwrap()
        }
    };
    let one = registry(urls[0].clone()).await;
    let two = registry(urls[1].clone()).await;
    let session = record("7", now);
    store.save(&session).await.unwrap();
    assert!(one.end_session(&7, &session.session_id).await.unwrap());
    let started = Instant::now();
    while two.ended_size().sessions == 0 {
        assert!(started.elapsed() < Duration::from_secs(2), "not heard");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    two.end_all(&8).await.unwrap();
    let started = Instant::now();
    while one.ended_size().users == 0 {
        assert!(started.elapsed() < Duration::from_secs(2), "not heard");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seqs: BTreeSet<u64> = store
        .changes(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|change| change.seq)
        .collect();
    assert_eq!(seqs.len(), 3, "{seqs:?}");
}
