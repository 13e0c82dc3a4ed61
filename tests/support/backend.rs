// PostgreSQL and Redis for the tests, shared by every suite (through
// `support/mod.rs`). The tests that need a server live in `tests/`, not in
// `src/`.
//
// - `TEST_POSTGRES_URL` / `TEST_REDIS_URL` set: that server, and a test
//   fails when it cannot be reached (CI sets both).
// - Unset: the kit starts a server of its own, once per test binary, on a
//   free port, and stops it when the binary exits: `redis-server` (from
//   `PATH`, or `REDIS_SERVER`) with no persistence, and a throwaway
//   PostgreSQL cluster (`initdb` and `pg_ctl` from `PATH` or
//   `/usr/lib/postgresql/*/bin`, run as `postgres` when the tests run as
//   root).
// - Neither: the test is skipped, visibly. `SKIPPED <test>: <why>` goes
//   straight to the terminal (libtest captures `eprintln!`, not writes to
//   the stderr handle), and the binary says how many it skipped as it
//   exits.
//
// Redis Cluster ([`redis_cluster`]): `TEST_REDIS_CLUSTER_URLS` (node URLs,
// comma-separated) names an existing cluster; else the kit starts one of
// three masters, once per test binary, with `redis-server` and
// `redis-cli --cluster create` (`REDIS_CLI`, or `redis-cli` from `PATH`).
// When that fails, the test is skipped, unless `TEST_REDIS_URL` is set (as
// CI sets it): then Redis is required, and the test fails.
//
// Each server is stopped by a shell that holds it: the shell waits for its
// standard input, a pipe only the test binary writes to, to reach its end,
// which happens when the binary exits, however it exits.

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The URL of the PostgreSQL server for this test, or `None` when there is
/// none (the test is then reported as skipped and must return).
pub fn postgres_url() -> Option<String> {
    static STARTED: OnceLock<Result<String, String>> = OnceLock::new();
    server_url("TEST_POSTGRES_URL", &STARTED, start_postgres)
}

/// The URL of the Redis server for this test, or `None` when there is none
/// (the test is then reported as skipped and must return).
pub fn redis_url() -> Option<String> {
    static STARTED: OnceLock<Result<String, String>> = OnceLock::new();
    server_url("TEST_REDIS_URL", &STARTED, start_redis)
}

fn server_url(
    var: &str,
    started: &OnceLock<Result<String, String>>,
    start: fn() -> Result<String, String>,
) -> Option<String> {
    if let Ok(url) = std::env::var(var) {
        if !url.trim().is_empty() {
            return Some(url);
        }
    }
    match started.get_or_init(start) {
        Ok(url) => Some(url.clone()),
        Err(why) => {
            skip(&format!("{var} is not set and {why}"));
            None
        }
    }
}

/// Reports the running test as skipped, on the terminal, and counts it for
/// the line the binary prints as it exits.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // One write, so that the line is not cut by libtest's own output.
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    static TALLY: OnceLock<Mutex<Option<ChildStdin>>> = OnceLock::new();
    let tally = TALLY.get_or_init(|| {
        // Counts the lines it is sent, and says the count at exit.
        let script = "n=0; while read -r _; do n=$((n+1)); done; \
                      echo \"SKIPPED $n test(s) in $1: no server for them (see the SKIPPED lines)\" >&2";
        let binary = std::env::args().next().unwrap_or_default();
        let name = binary.rsplit('/').next().unwrap_or("this binary").to_owned();
        let child = Command::new("sh")
            .args(["-c", script, "sh", &name])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .ok();
        Mutex::new(child.and_then(|mut child| child.stdin.take()))
    });
    if let Some(stdin) = tally.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = writeln!(stdin, "{test}");
    }
}

/// A port nobody listens on: bind port 0, take what the OS gave, let go.
pub fn spare_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a spare port");
    listener.local_addr().expect("a local address").port()
}

/// 16 random hex digits, for a test's own schema or key prefix.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `redis-server`: `REDIS_SERVER`, else the first on `PATH`, else
/// `/usr/bin/redis-server`, if it is there.
pub fn redis_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    on_path("redis-server").or_else(|| {
        let fallback = PathBuf::from("/usr/bin/redis-server");
        fallback.is_file().then_some(fallback)
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Starts a shell that runs `script` and holds it until the test binary
/// exits, and waits for the line `ready` (and what follows it on the line)
/// on its output; else the reason, from its error output.
fn hold(mut command: Command, what: &str) -> Result<(Child, String), String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what} cannot be started: {e}"))?;
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    while out.read_line(&mut line).map_err(|e| e.to_string())? > 0 {
        if let Some(rest) = line.trim().strip_prefix("ready") {
            return Ok((child, rest.trim().to_owned()));
        }
        line.clear();
    }
    let mut error = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut error);
    }
    let _ = child.wait();
    Err(format!("{what} did not start: {}", error.trim()))
}

/// Keeps a holding shell (and so its server) for the life of the binary.
fn keep(child: Child) {
    static HELD: Mutex<Vec<Child>> = Mutex::new(Vec::new());
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(child);
}

/// Waits until something listens on `port`, as long as the holding shell
/// and the server (process `pid`, if known) live.
fn wait_for_port(port: u16, child: &mut Child, pid: &str, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited ({status})"));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if !pid.is_empty() && (status.is_empty() || status.contains(") Z")) {
            return Err(format!("{what} exited before it listened on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not listen on port {port} within 20 s"))
}

fn start_redis() -> Result<String, String> {
    let binary = redis_server_binary()
        .ok_or("no redis-server is on PATH (or at the path REDIS_SERVER names)")?;
    let port = spare_port();
    let script = "\"$1\" --port \"$2\" --bind 127.0.0.1 --save '' --appendonly no \
                  --logfile '' >/dev/null 2>&1 & pid=$!; echo ready $pid; \
                  read -r _; kill $pid; wait $pid";
    let mut command = Command::new("sh");
    command.args(["-c", script, "sh"]);
    command.arg(&binary).arg(port.to_string());
    let (mut child, pid) = hold(command, "redis-server")?;
    wait_for_port(port, &mut child, &pid, "redis-server")?;
    keep(child);
    Ok(format!("redis://127.0.0.1:{port}"))
}

/// A Redis Cluster for one test: its nodes and a connection to it (started
/// by the kit, or named by `TEST_REDIS_CLUSTER_URLS`). Clones share the
/// connection.
#[derive(Clone)]
pub struct RedisCluster {
    /// A connection to the cluster, which follows its slots and redirects.
    pub connection: ::redis::cluster_async::ClusterConnection,
    /// The nodes' URLs, `redis://127.0.0.1:<port>`: every master, for a
    /// cluster the kit started; as given, for `TEST_REDIS_CLUSTER_URLS`.
    pub nodes: Vec<String>,
}

/// A Redis Cluster for this test, or `None` when there is none (the test
/// is then reported as skipped and must return).
///
/// `TEST_REDIS_CLUSTER_URLS` (node URLs, comma-separated) names a cluster
/// to use. Unset, the kit starts one the first time it is asked, once per
/// test binary: three masters (no replicas) on spare local ports, with all
/// 16384 slots, stopped when the binary exits. If it cannot be started,
/// the test is skipped, or fails when `TEST_REDIS_URL` is set (CI: Redis
/// is required there). Panics when the cluster cannot be reached.
///
/// Each call gives a new connection. Tests share the cluster: keep to keys
/// of your own (a random prefix), and delete them after the test (see
/// [`with_redis_cluster_prefix`]).
pub async fn redis_cluster() -> Option<RedisCluster> {
    static STARTED: OnceLock<Result<Vec<String>, String>> = OnceLock::new();
    let given = std::env::var("TEST_REDIS_CLUSTER_URLS").unwrap_or_default();
    let given: Vec<String> = given
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect();
    let nodes = if !given.is_empty() {
        given
    } else {
        match STARTED.get_or_init(start_redis_cluster) {
            Ok(nodes) => nodes.clone(),
            Err(why) if redis_required() => panic!(
                "TEST_REDIS_URL is set, so the Redis tests must run, but no Redis Cluster: \
                 TEST_REDIS_CLUSTER_URLS is not set and {why}"
            ),
            Err(why) => {
                skip(&format!("TEST_REDIS_CLUSTER_URLS is not set and {why}"));
                return None;
            }
        }
    };
    let connection = redis_cluster_connection(&nodes).await;
    Some(RedisCluster { connection, nodes })
}

/// Whether the Redis tests must run rather than skip: `TEST_REDIS_URL` is
/// set, as it is in CI.
fn redis_required() -> bool {
    std::env::var("TEST_REDIS_URL").is_ok_and(|url| !url.trim().is_empty())
}

/// A new connection to the cluster with these `nodes`; panics when it
/// cannot be reached.
pub async fn redis_cluster_connection(
    nodes: &[String],
) -> ::redis::cluster_async::ClusterConnection {
    let client = ::redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("{nodes:?} are not Redis node URLs: {e}"));
    client
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("the Redis Cluster at {nodes:?} cannot be reached: {e}"))
}

impl RedisCluster {
    /// The URLs of the cluster's masters now, as `CLUSTER NODES` lists them
    /// (through any node).
    pub async fn masters(&self) -> Vec<String> {
        let mut connection = self.connection.clone();
        let listing: String = ::redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut connection)
            .await
            .expect("CLUSTER NODES");
        let mut masters: Vec<String> = listing
            .lines()
            .filter_map(|line| {
                // <id> <ip:port@bus[,hostname]> <flags> <master> ...
                let mut fields = line.split_whitespace();
                let address = fields.nth(1)?;
                let flags = fields.next()?;
                let flags: Vec<&str> = flags.split(',').collect();
                let serving = flags.contains(&"master") && !flags.contains(&"fail");
                let address = address.split(['@', ',']).next()?;
                serving.then(|| format!("redis://{address}"))
            })
            .collect();
        masters.sort();
        masters
    }

    /// The keys that match `pattern`, from every master, sorted.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        for master in self.masters().await {
            keys.extend(self.keys_on(&master, pattern).await);
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// The keys that match `pattern` on the node at `url` (one of
    /// [`masters`](Self::masters)), sorted.
    pub async fn keys_on(&self, url: &str, pattern: &str) -> Vec<String> {
        let client = ::redis::Client::open(url).expect("a node's URL");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|e| panic!("the Redis Cluster node {url} cannot be reached: {e}"));
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .expect("SCAN a node for the test's keys");
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Deletes every key that matches `pattern`, on every master.
    pub async fn delete(&self, pattern: &str) {
        let mut connection = self.connection.clone();
        for key in self.keys(pattern).await {
            let _: i64 = ::redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .expect("DEL a test key in the Redis Cluster");
        }
    }
}

/// Runs `test` with a Redis Cluster and a new random key prefix
/// (`latch_test_<hex>:`), then deletes the prefix's keys, pass or fail.
/// Skipped when there is no cluster (see [`redis_cluster`]).
pub async fn with_redis_cluster_prefix(test: impl AsyncFnOnce(RedisCluster, String)) {
    let Some(cluster) = redis_cluster().await else {
        return;
    };
    let prefix = format!("latch_test_{}:", random_hex());
    let admin = cluster.clone();
    let pattern = format!("{prefix}*");
    run_then_clean(test(cluster, prefix), async move {
        admin.delete(&pattern).await;
    })
    .await;
}

/// `redis-cli`: `REDIS_CLI`, else the first on `PATH`, else
/// `/usr/bin/redis-cli`, if it is there.
fn redis_cli_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_CLI") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    on_path("redis-cli").or_else(|| {
        let fallback = PathBuf::from("/usr/bin/redis-cli");
        fallback.is_file().then_some(fallback)
    })
}

/// A spare port whose cluster bus port (10000 above it, where a cluster
/// node listens for its peers) is spare too.
fn spare_cluster_port(taken: &[u16]) -> u16 {
    loop {
        let port = spare_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if taken.contains(&port) || taken.iter().any(|&other| other + 10_000 == port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
}

/// Starts three cluster-enabled `redis-server`s in a new directory (all
/// removed when the binary exits), joins them into one cluster, and waits
/// until every node says it is `ok`: the masters' URLs.
fn start_redis_cluster() -> Result<Vec<String>, String> {
    let server = redis_server_binary()
        .ok_or("no redis-server is on PATH (or at the path REDIS_SERVER names)")?;
    let cli =
        redis_cli_binary().ok_or("no redis-cli is on PATH (or at the path REDIS_CLI names)")?;
    let mut ports = Vec::new();
    for _ in 0..3 {
        ports.push(spare_cluster_port(&ports));
    }
    // $1: redis-server; then the ports. Prints the directory and the pids.
    let script = r#"
        server=$1; shift
        dir=$(mktemp -d "${TMPDIR:-/tmp}/latch-redis-cluster.XXXXXX") || exit 1
        pids=
        trap 'kill $pids 2>/dev/null; wait; rm -rf "$dir"' EXIT
        for port in "$@"; do
            "$server" --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
                --cluster-config-file "$dir/nodes-$port.conf" --dir "$dir" \
                --save '' --appendonly no --logfile "$dir/redis-$port.log" \
                >"$dir/redis-$port.out" 2>&1 &
            pids="$pids $!"
        done
        echo ready "$dir" $pids
        read -r _
    "#;
    let mut command = Command::new("sh");
    command.args(["-c", script, "sh"]).arg(&server);
    command.args(ports.iter().map(u16::to_string));
    let (mut child, started) = hold(command, "a Redis Cluster")?;
    let mut words = started.split_whitespace();
    let dir = PathBuf::from(words.next().unwrap_or_default());
    let pids: Vec<String> = words.map(str::to_owned).collect();
    let result = form_cluster(&cli, &ports, &pids, &mut child);
    match result {
        Ok(()) => {
            keep(child);
            Ok(ports
                .iter()
                .map(|port| format!("redis://127.0.0.1:{port}"))
                .collect())
        }
        Err(why) => {
            // The servers' own words, before the shell removes them.
            let mut logs = String::new();
            for port in &ports {
                for file in [format!("redis-{port}.out"), format!("redis-{port}.log")] {
                    let text = std::fs::read_to_string(dir.join(&file)).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(3).collect();
                    for line in tail.into_iter().rev() {
                        logs.push_str(&format!("\n  {file}: {line}"));
                    }
                }
            }
            // Its standard input closed, the shell stops the servers.
            drop(child.stdin.take());
            let _ = child.wait();
            Err(format!("{why}{logs}"))
        }
    }
}

/// Waits for the servers on `ports` (processes `pids`), makes them one
/// cluster with `redis-cli --cluster create`, and waits until each says
/// `cluster_state:ok`.
fn form_cluster(
    cli: &std::path::Path,
    ports: &[u16],
    pids: &[String],
    child: &mut Child,
) -> Result<(), String> {
    if pids.len() != ports.len() {
        return Err(format!("the Redis Cluster's shell said {pids:?}"));
    }
    for (port, pid) in ports.iter().zip(pids) {
        wait_for_port(*port, child, pid, "a Redis Cluster node")?;
    }
    let output = Command::new(cli)
        .arg("--cluster")
        .arg("create")
        .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("redis-cli cannot be started: {e}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "redis-cli --cluster create failed ({}): {}",
            output.status,
            tail.join(" / ")
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ports {
        let url = format!("redis://127.0.0.1:{port}");
        loop {
            let last = match cluster_info(&url) {
                Ok(info) if info.lines().any(|line| line.trim() == "cluster_state:ok") => break,
                Ok(info) => info
                    .lines()
                    .find(|line| line.starts_with("cluster_state:"))
                    .unwrap_or("no cluster_state")
                    .trim()
                    .to_owned(),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "the Redis Cluster node on port {port} was not ok within 30 s ({last})"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// `CLUSTER INFO` from the node at `url`.
fn cluster_info(url: &str) -> ::redis::RedisResult<String> {
    let client = ::redis::Client::open(url)?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
    ::redis::cmd("CLUSTER").arg("INFO").query(&mut connection)
}

/// The directory with `initdb` and `pg_ctl`: on `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin`.
fn postgres_bin() -> Option<PathBuf> {
    if let Some(initdb) = on_path("initdb") {
        let dir = initdb.parent()?.to_owned();
        if dir.join("pg_ctl").is_file() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

fn start_postgres() -> Result<String, String> {
    let bin =
        postgres_bin().ok_or("initdb and pg_ctl are not on PATH nor in /usr/lib/postgresql")?;
    let port = spare_port();
    // A cluster in a new directory, trusting local connections, removed at exit.
    let script = r#"
        dir=$(mktemp -d "${TMPDIR:-/tmp}/latch-pg.XXXXXX") || exit 1
        trap '"$1/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"' EXIT
        "$1/initdb" -D "$dir/data" -U postgres -A trust >"$dir/initdb.log" 2>&1 \
            || { tail -n 5 "$dir/initdb.log" >&2; exit 1; }
        "$1/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
            -o "-p $2 -k $dir -c listen_addresses=127.0.0.1 -F" start >/dev/null 2>&1 \
            || { tail -n 5 "$dir/server.log" >&2; exit 1; }
        echo ready
        read -r _
    "#;
    let mut command = if running_as_root() {
        // initdb refuses to run as root.
        let has_user = Command::new("id")
            .args(["-u", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !has_user || on_path("runuser").is_none() {
            return Err(
                "the tests run as root, with no postgres user and runuser to run initdb as"
                    .to_owned(),
            );
        }
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", "sh", "-c", script, "sh"]);
        command
    } else {
        let mut command = Command::new("sh");
        command.args(["-c", script, "sh"]);
        command
    };
    command.arg(&bin).arg(port.to_string()).env_remove("PGDATA");
    let (mut child, _) = hold(command, "a throwaway PostgreSQL cluster")?;
    wait_for_port(port, &mut child, "", "PostgreSQL")?;
    keep(child);
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

// ---------------------------------------------------------------------------
// Redis helpers
// ---------------------------------------------------------------------------

/// A connection manager to `url`; panics when the server cannot be reached.
pub async fn redis_manager(url: &str) -> ::redis::aio::ConnectionManager {
    let client =
        ::redis::Client::open(url).unwrap_or_else(|e| panic!("{url:?} is not a Redis URL: {e}"));
    let config = ::redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(1);
    ::redis::aio::ConnectionManager::new_with_config(client, config)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url:?} cannot be reached: {e}"))
}

/// The keys that match `pattern`, sorted.
pub async fn redis_keys(
    connection: &mut ::redis::aio::ConnectionManager,
    pattern: &str,
) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
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

/// Runs the command `name` with `args`; panics, naming it, when it fails.
pub async fn redis_cmd<T: ::redis::FromRedisValue>(
    connection: &mut ::redis::aio::ConnectionManager,
    name: &str,
    args: &[&str],
) -> T {
    ::redis::cmd(name)
        .arg(args)
        .query_async(connection)
        .await
        .unwrap_or_else(|e| panic!("{name} {args:?}: {e}"))
}

/// Deletes every key that matches `pattern`.
pub async fn redis_delete(connection: &mut ::redis::aio::ConnectionManager, pattern: &str) {
    for key in redis_keys(connection, pattern).await {
        let _: i64 = ::redis::cmd("DEL")
            .arg(&key)
            .query_async(connection)
            .await
            .expect("DEL a test key");
    }
}

// ---------------------------------------------------------------------------
// SQL helpers
// ---------------------------------------------------------------------------

/// A new SQLite database file in `dir`, in WAL mode, behind a pool of
/// `connections` (so that concurrent statements really overlap).
pub async fn sqlite_file(dir: &std::path::Path, connections: u32) -> ::sqlx::SqlitePool {
    use ::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(dir.join("remember.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    SqlitePoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await
        .expect("a SQLite database file in a temporary directory")
}

/// A schema of one test's own, `latch_test_<hex>`, and a pool whose
/// connections use it; [`PgSchema::drop_schema`] removes it.
pub struct PgSchema {
    pub pool: ::sqlx::PgPool,
    pub name: String,
    admin: ::sqlx::PgPool,
}

impl PgSchema {
    /// A new schema on the server at `url`, with a pool of `connections`;
    /// panics when the server cannot be reached.
    pub async fn create(url: &str, connections: u32) -> Self {
        use ::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        let options: PgConnectOptions = url
            .parse()
            .unwrap_or_else(|e| panic!("{url:?} is not a PostgreSQL URL: {e}"));
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url:?} cannot be reached: {e}"));
        let name = format!("latch_test_{}", random_hex());
        ::sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE SCHEMA {name}: {e}"));
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.options([("search_path", name.as_str())]))
            .await
            .unwrap_or_else(|e| panic!("connect with search_path {name}: {e}"));
        Self { pool, name, admin }
    }

    /// Closes the pool and drops the schema with everything in it.
    pub async fn drop_schema(self) {
        self.pool.close().await;
        ::sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&self.admin)
            .await
            .unwrap_or_else(|e| panic!("DROP SCHEMA {}: {e}", self.name));
        self.admin.close().await;
    }
}

/// Runs `test`, then `cleanup`, whether the test passed or panicked (the
/// panic goes on after the cleanup).
pub async fn run_then_clean<T>(
    test: impl std::future::Future<Output = T>,
    cleanup: impl std::future::Future<Output = ()>,
) -> T {
    use ::futures_util::FutureExt as _;
    let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
    cleanup.await;
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `test` with a Redis URL, a connection and a new random key prefix
/// (`latch_test_<hex>:`), then deletes the prefix's keys, pass or fail.
/// Skipped when there is no Redis.
pub async fn with_redis_prefix(
    test: impl AsyncFnOnce(String, ::redis::aio::ConnectionManager, String),
) {
    let Some(url) = redis_url() else { return };
    let manager = redis_manager(&url).await;
    let prefix = format!("latch_test_{}:", random_hex());
    let mut admin = manager.clone();
    let pattern = format!("{prefix}*");
    run_then_clean(test(url, manager, prefix), async move {
        redis_delete(&mut admin, &pattern).await;
    })
    .await;
}
