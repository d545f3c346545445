//! Test helpers shared by every bp-monitoring crate: real `redis-server`
//! processes, never mocks.
//!
//! - [`RedisServer`]: one `redis-server` on a free loopback port in its own
//!   temporary directory, with optional password / ACL user and optional
//!   persistence (append-only file) so a test can [`RedisServer::stop`] and
//!   [`RedisServer::restart`] it on the same port and directory. The process
//!   is killed when the value is dropped.
//! - [`RedisCluster`]: three masters joined with
//!   `redis-cli --cluster create … --cluster-replicas 0`, ready once every
//!   node reports `cluster_state:ok`.
//! - [`heavy_test_lock`]: a cross-process file lock so that the heaviest
//!   tests (clusters, many processes) of different test binaries run one at
//!   a time on a small machine.
//! - [`alertmanager::Alertmanager`]: a real Alertmanager on a free port.
//! - [`tls::make_certificates`]: a test CA and a certificate for `127.0.0.1`
//!   (for the TLS server above and for HTTPS tests).
//! - `harness` (feature `harness`): the real-process harness of the
//!   binaries' tests: a tick client over the Redis store, an alerter test
//!   directory with config and recording hook, hook calls, child processes
//!   killed on drop, the collector's usual arguments.
//!
//! When `redis-server` or `redis-cli` is missing, the helpers panic with a
//! message saying how to install it (`apt-get install redis-server`): tests
//! never skip silently. Waiting is always polling a condition with a
//! generous deadline, never a fixed sleep.
//!
//! This crate is for tests only (a dev-dependency); it uses blocking std
//! process and socket calls, which are fine from async tests too.
#![deny(missing_docs)]

pub mod alertmanager;
pub mod fuzz;
#[cfg(feature = "harness")]
pub mod harness;
pub mod tls;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long to wait for a server or a cluster to come up.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "install it: apt-get install redis-server";

/// Options of a [`RedisServer`]. `Default` is a server without password and
/// without persistence.
#[derive(Debug, Clone, Default)]
pub struct RedisServerOptions {
    /// `requirepass` for the default user.
    pub requirepass: Option<String>,
    /// An ACL user `(name, password)` with every permission; when set, the
    /// default user is disabled so only this user can connect.
    pub acl_user: Option<(String, String)>,
    /// Keep data across [`RedisServer::stop`]/[`RedisServer::restart`]: an
    /// append-only file with `appendfsync always` in the server's directory.
    pub appendonly: bool,
    /// Extra `--name value` arguments, e.g. `("maxmemory-policy", "allkeys-lru")`.
    pub extra_args: Vec<(String, String)>,
    /// Also listen with TLS on a second port ([`RedisServer::tls_url`]),
    /// with a certificate for `127.0.0.1` signed by a fresh test CA
    /// ([`RedisServer::ca_file`]), made with the `openssl` command.
    pub tls: bool,
}

/// A `redis-server` child process on `127.0.0.1:<port>`, in a temporary
/// directory. Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls_port: Option<u16>,
    dir: TempDir,
    child: Option<Child>,
    options: RedisServerOptions,
}

impl RedisServer {
    /// Starts a server without password and persistence, and waits until it
    /// answers `PING`.
    ///
    /// # Panics
    /// When `redis-server` is not installed or does not come up in
    /// [`START_DEADLINE`].
    pub fn start() -> RedisServer {
        Self::start_with(RedisServerOptions::default())
    }

    /// Starts a server with `options`, and waits until it answers `PING`.
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_with(options: RedisServerOptions) -> RedisServer {
        check_installed("redis-server");
        let dir = tempfile::Builder::new()
            .prefix("bp-redis-")
            .tempdir()
            .expect("create a temporary directory for redis-server");
        // Another process may take the free port between our probe and the
        // server's bind: try a few ports.
        if options.tls {
            tls::make_certificates(dir.path());
        }
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let tls_port = options.tls.then(free_port);
            match launch(port, tls_port, dir.path(), &options) {
                Ok(child) => {
                    return RedisServer {
                        port,
                        tls_port,
                        dir,
                        child: Some(child),
                        options,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// `redis://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis://user:password@127.0.0.1:<port>` with the given credentials
    /// (`user` may be empty for `requirepass`).
    pub fn url_with_auth(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port, when started with [`RedisServerOptions::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// `rediss://127.0.0.1:<tls port>`.
    ///
    /// # Panics
    /// When the server was started without TLS.
    pub fn tls_url(&self) -> String {
        let port = self
            .tls_port
            .expect("started with RedisServerOptions { tls: true, .. }");
        format!("rediss://127.0.0.1:{port}")
    }

    /// The PEM file of the test CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        tls::Certificates::in_dir(self.dir.path()).ca_cert
    }

    /// The server's working directory (holds its log and, with
    /// persistence, its append-only file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server gracefully (`SIGTERM`, so the append-only file is
    /// flushed) and waits for the process to end. The port and directory
    /// are kept for [`RedisServer::restart`].
    ///
    /// # Panics
    /// When the process does not end within [`START_DEADLINE`] (it is then
    /// killed).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server on port {} ignored SIGTERM", self.port);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and directory (after
    /// [`RedisServer::stop`]); waits until it answers `PING` and has loaded
    /// its data.
    ///
    /// # Panics
    /// When it does not come up within [`START_DEADLINE`].
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        match launch(self.port, self.tls_port, self.dir.path(), &self.options) {
            Ok(child) => self.child = Some(child),
            Err(e) => panic!("redis-server did not restart on port {}: {e}", self.port),
        }
    }

    /// Runs `redis-cli` against this server (with its credentials) and
    /// returns its standard output.
    ///
    /// # Panics
    /// When `redis-cli` cannot run or exits with a failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some((user, pass)) = &self.options.acl_user {
            cmd.args(["--user", user, "--pass", pass]);
        } else if let Some(pass) = &self.options.requirepass {
            cmd.args(["-a", pass]);
        }
        cmd.arg("--no-auth-warning");
        run_cli(cmd, args)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `redis-server` masters forming a Redis Cluster (no replicas), each
/// in its own directory under one temporary directory. Killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    dir: TempDir,
}

#[derive(Debug)]
struct ClusterNode {
    port: u16,
    bus: u16,
    child: Child,
}

/// `redis-server` for cluster node `port`/`bus` in `dir` (no persistence:
/// a restart comes back empty, with its slots from `nodes.conf`).
fn cluster_node_command(port: u16, bus: u16, dir: &Path) -> Command {
    let mut cmd = Command::new("redis-server");
    cmd.arg("--port")
        .arg(port.to_string())
        .arg("--cluster-port")
        .arg(bus.to_string())
        .args(["--bind", "127.0.0.1", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "redis.log", "--save", "", "--appendonly", "no"])
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .args(["--cluster-node-timeout", "5000"]);
    cmd
}

impl RedisCluster {
    /// Starts three masters, joins them with `redis-cli --cluster create`
    /// and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    /// When `redis-server`/`redis-cli` are missing or the cluster does not
    /// form within [`START_DEADLINE`] (twice that for the whole start).
    pub fn start() -> RedisCluster {
        check_installed("redis-server");
        check_installed("redis-cli");
        let dir = tempfile::Builder::new()
            .prefix("bp-redis-cluster-")
            .tempdir()
            .expect("create a temporary directory for the cluster");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for i in 0..3 {
            let port = free_port();
            let bus = free_port();
            let node_dir = cluster.dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&node_dir).expect("create a cluster node directory");
            let cmd = cluster_node_command(port, bus, &node_dir);
            let mut child = spawn(cmd, "redis-server").unwrap_or_else(|e| panic!("{e}"));
            if let Err(e) = wait_ready(port, Some(&mut child), &node_dir.join("redis.log")) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("cluster node {i} did not start: {e}");
            }
            cluster.nodes.push(ClusterNode { port, bus, child });
        }
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &cluster.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", "0", "--cluster-yes"]);
        run_cli(cmd, &[]);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let ok = cluster
                .nodes
                .iter()
                .all(|n| node_cli(n.port, &["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                return cluster;
            }
            assert!(
                Instant::now() <= deadline,
                "the Redis Cluster on ports {:?} did not reach cluster_state:ok within {START_DEADLINE:?}",
                cluster.ports()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The index (0, 1 or 2) of the master serving `key`'s slot.
    ///
    /// # Panics
    /// When no node claims the slot.
    pub fn owner_of(&self, key: &str) -> usize {
        let slot: u32 = node_cli(self.nodes[0].port, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"));
        let table = node_cli(self.nodes[0].port, &["cluster", "nodes"]);
        for line in table.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(port) = f
                .get(1)
                .and_then(|a| a.split('@').next())
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
            else {
                continue;
            };
            let serves = f.iter().skip(8).any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            });
            if serves && let Some(i) = self.nodes.iter().position(|n| n.port == port) {
                return i;
            }
        }
        panic!("no node serves slot {slot} of {key}:\n{table}");
    }

    /// Kills node `i` (`SIGKILL`) and starts it again on the same ports: it
    /// comes back without data (no persistence) but with its slots, as a
    /// master restarted without AOF/RDB does. Waits until every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    /// When the node does not come back within [`START_DEADLINE`].
    pub fn restart_node_empty(&mut self, i: usize) {
        let node_dir = self.dir.path().join(format!("node{i}"));
        let n = &mut self.nodes[i];
        let _ = n.child.kill();
        let _ = n.child.wait();
        let cmd = cluster_node_command(n.port, n.bus, &node_dir);
        let mut child = spawn(cmd, "redis-server").unwrap_or_else(|e| panic!("{e}"));
        if let Err(e) = wait_ready(n.port, Some(&mut child), &node_dir.join("redis.log")) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cluster node {i} did not restart: {e}");
        }
        n.child = child;
        let deadline = Instant::now() + START_DEADLINE;
        while !self
            .nodes
            .iter()
            .all(|n| node_cli(n.port, &["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(
                Instant::now() <= deadline,
                "the cluster did not recover after restarting node {i}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The cluster URL understood by the Redis store:
    /// `redis-cluster://127.0.0.1:<p1>?node=127.0.0.1:<p2>&node=127.0.0.1:<p3>`.
    pub fn url(&self) -> String {
        let mut ports = self.nodes.iter().map(|n| n.port);
        let first = ports.next().unwrap_or_default();
        let rest: Vec<String> = ports.map(|p| format!("node=127.0.0.1:{p}")).collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", rest.join("&"))
    }

    /// Runs `redis-cli -c` against the first node and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args([
            "-c",
            "-h",
            "127.0.0.1",
            "-p",
            &self.nodes[0].port.to_string(),
        ]);
        run_cli(cmd, args)
    }

    /// Runs `redis-cli` against node `i` (0, 1 or 2), without following
    /// redirections, and returns its output.
    pub fn node_cli(&self, i: usize, args: &[&str]) -> String {
        node_cli(self.nodes[i].port, args)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

/// A Redis Sentinel (`redis-server --sentinel`) watching one
/// [`RedisServer`] as master `mymaster`. Killed on drop.
#[derive(Debug)]
pub struct RedisSentinel {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisSentinel {
    /// The master's name.
    pub const MASTER_NAME: &'static str = "mymaster";

    /// Starts a sentinel for `master` and waits until it answers with the
    /// master's address.
    ///
    /// # Panics
    /// When `redis-server` is missing or the sentinel does not come up in
    /// [`START_DEADLINE`].
    pub fn start(master: &RedisServer) -> RedisSentinel {
        check_installed("redis-server");
        let dir = tempfile::Builder::new()
            .prefix("bp-redis-sentinel-")
            .tempdir()
            .expect("create a temporary directory for redis-sentinel");
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile sentinel.log\nsentinel monitor {} 127.0.0.1 {} 1\n",
                dir.path().display(),
                Self::MASTER_NAME,
                master.port()
            ),
        )
        .expect("write sentinel.conf");
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf).arg("--sentinel");
        let child = spawn(cmd, "redis-server --sentinel").unwrap_or_else(|e| panic!("{e}"));
        let mut sentinel = RedisSentinel {
            port,
            child: Some(child),
            dir,
        };
        let log = sentinel.dir.path().join("sentinel.log");
        if let Err(e) = wait_ready(port, sentinel.child.as_mut(), &log) {
            panic!("redis sentinel did not start: {e}");
        }
        let known = wait_until(START_DEADLINE, || {
            node_cli(
                port,
                &["sentinel", "get-master-addr-by-name", Self::MASTER_NAME],
            )
            .contains(&master.port().to_string())
        });
        assert!(
            known,
            "the sentinel on port {port} does not know its master"
        );
        sentinel
    }

    /// The sentinel's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis-sentinel://127.0.0.1:<port>/0?sentinelServiceName=mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={}",
            self.port,
            Self::MASTER_NAME
        )
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A held cross-process lock; released on drop.
#[derive(Debug)]
pub struct HeavyTestGuard {
    _file: File,
}

/// Takes the machine-wide lock of heavy tests (a file lock in the temporary
/// directory), waiting for it. `cargo test` runs test binaries one after
/// another but tests inside a binary in parallel, and several agents or CI
/// jobs may test at once: holding this lock while a cluster runs keeps two
/// clusters from starving each other on a small machine.
///
/// # Panics
/// When the lock file cannot be opened or locked.
pub fn heavy_test_lock() -> HeavyTestGuard {
    let path: PathBuf = std::env::temp_dir().join("bp-monitoring-heavy-tests.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    HeavyTestGuard { _file: file }
}

/// Polls `cond` every 20 ms until it is true or `deadline` passes; returns
/// whether it became true.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// What `df -P PATH` says of the filesystem holding `path`: used / (used +
/// available) × 100. Panics when `df` cannot tell.
pub fn df_used_percent(path: &str) -> f64 {
    let out = std::process::Command::new("df")
        .args(["-P", path])
        .output()
        .expect("df runs");
    assert!(out.status.success(), "df -P {path} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).expect("df prints a line");
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(2)
        .take(2)
        .map(|v| v.parse().expect("df's used and available columns"))
        .collect();
    f[0] / (f[0] + f[1]) * 100.0
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Spawns `redis-server` on `port` in `dir` and waits until it answers;
/// on failure the process is killed.
fn launch(
    port: u16,
    tls_port: Option<u16>,
    dir: &Path,
    options: &RedisServerOptions,
) -> Result<Child, String> {
    let mut cmd = Command::new("redis-server");
    cmd.arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "redis.log", "--save", ""]);
    if options.appendonly {
        cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        cmd.args(["--appendonly", "no"]);
    }
    if let Some(pass) = &options.requirepass {
        cmd.arg("--requirepass").arg(pass);
    }
    if let Some((user, pass)) = &options.acl_user {
        // Each word is its own argument: redis-server joins them into one
        // `user …` directive.
        cmd.args(["--user", user, "on"])
            .arg(format!(">{pass}"))
            .args(["~*", "&*", "+@all", "--user", "default", "off"]);
    }
    if let Some(tls_port) = tls_port {
        let certs = tls::Certificates::in_dir(dir);
        cmd.arg("--tls-port")
            .arg(tls_port.to_string())
            .arg("--tls-cert-file")
            .arg(&certs.cert)
            .arg("--tls-key-file")
            .arg(&certs.key)
            .arg("--tls-ca-cert-file")
            .arg(&certs.ca_cert)
            .args(["--tls-auth-clients", "no"]);
    }
    for (name, value) in &options.extra_args {
        cmd.arg(format!("--{name}")).arg(value);
    }
    let mut child = spawn(cmd, "redis-server")?;
    match wait_ready(port, Some(&mut child), &dir.join("redis.log")) {
        Ok(()) => Ok(child),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

fn check_installed(program: &str) {
    match Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{program} is not installed (not found on PATH); {INSTALL_HINT}")
        }
        Err(e) => panic!("{program} cannot run ({e}); {INSTALL_HINT}"),
    }
}

fn spawn(mut cmd: Command, what: &str) -> Result<Child, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot spawn {what} ({e}); {INSTALL_HINT}"))
}

fn run_cli(mut cmd: Command, args: &[&str]) -> String {
    cmd.args(args);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); {INSTALL_HINT}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn node_cli(port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    run_cli(cmd, args)
}

/// Waits until the server on `port` answers `PING` (or `NOAUTH`, which also
/// means it is up and loaded). Fails early when the process exits.
fn wait_ready(port: u16, mut child: Option<&mut Child>, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(format!(
                "redis-server on port {port} exited ({status}); its log says: {}",
                tail(log)
            ));
        }
        if ping(port) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "redis-server on port {port} did not answer PING within {START_DEADLINE:?}; its log says: {}",
                tail(log)
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => {
            let reply = &buf[..n];
            reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH")
        }
        _ => false,
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_stops_and_restarts_with_data() {
        let mut s = RedisServer::start_with(RedisServerOptions {
            appendonly: true,
            ..RedisServerOptions::default()
        });
        assert_eq!(s.cli(&["set", "k", "v"]).trim(), "OK");
        s.stop();
        assert!(!ping(s.port()));
        s.restart();
        assert_eq!(s.cli(&["get", "k"]).trim(), "v");
    }

    #[test]
    fn tls_port_serves_the_test_ca_certificate() {
        let s = RedisServer::start_with(RedisServerOptions {
            tls: true,
            ..RedisServerOptions::default()
        });
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p"])
            .arg(s.tls_port().expect("a TLS port").to_string())
            .args(["--tls", "--cacert"])
            .arg(s.ca_file());
        assert_eq!(run_cli(cmd, &["ping"]).trim(), "PONG");
    }

    #[test]
    fn acl_user_is_required() {
        let s = RedisServer::start_with(RedisServerOptions {
            acl_user: Some(("alice".into(), "pw-1".into())),
            ..RedisServerOptions::default()
        });
        assert_eq!(s.cli(&["ping"]).trim(), "PONG");
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &s.port().to_string()]);
        assert!(run_cli(cmd, &["ping"]).contains("NOAUTH"));
    }
}
