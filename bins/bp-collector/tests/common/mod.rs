//! Helpers of the end-to-end tests: a real `bp-collector` child process, its
//! logs, raw HTTP over a real socket, and a Redis reader.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use metrics_model::time::now_ms;

use metrics_model::store::TickStore;
use metrics_model::{HostName, Tick};
use redis_store::RedisStore;
use test_support::harness::{Client, collector_args};

/// Generous deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_mins(1);

pub const BIN: &str = env!("CARGO_BIN_EXE_bp-collector");

/// A running `bp-collector`; killed on drop.
pub struct Collector {
    child: Option<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn pump(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

impl Collector {
    /// Starts `bp-collector ARGS` with `env` (and no inherited REDIS_URL etc.).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Collector {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("REDIS_URL")
            .env_remove("CLUSTER_ENABLED")
            .env_remove("BP_REDIS_SCOPE")
            .env_remove("BP_NODE_NAME")
            .env_remove("BP_COLLECTOR_TOKEN")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn bp-collector");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        pump(child.stderr.take().unwrap(), stderr.clone());
        pump(child.stdout.take().unwrap(), stdout.clone());
        Collector {
            child: Some(child),
            stderr,
            stdout,
        }
    }

    /// Starts `bp-collector` as node `node` ticking every second, with
    /// StatsD on `statsd` and HTTP ingestion on `http` (`127.0.0.1:0` for a
    /// free port, or `off`), then `extra` arguments; `env` as in
    /// [`Collector::start`].
    pub fn node(
        node: &str,
        statsd: &str,
        http: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Collector {
        let mut args = collector_args(node, statsd, http).to_vec();
        args.extend_from_slice(extra);
        Collector::start(&args, env)
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The address logged as `<what> listening addr=…` (waits for it).
    pub fn addr(&mut self, what: &str) -> SocketAddr {
        let needle = format!("{what} listening addr=");
        let end = Instant::now() + DEADLINE;
        loop {
            let found = self.stderr().iter().find_map(|l| {
                let rest = &l[l.find(&needle)? + needle.len()..];
                rest.split_whitespace().next()?.parse().ok()
            });
            if let Some(a) = found {
                return a;
            }
            assert!(
                self.is_running() && Instant::now() < end,
                "no {what:?} address logged; stderr:\n{}",
                self.stderr().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        self.wait()
    }

    /// Waits for the process to end (within the deadline).
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // let the pumps finish reading
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < end,
                "bp-collector did not exit; stderr:\n{}",
                self.stderr().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until the wall clock is between `from` and `to` ms past a multiple
/// of `interval`, and returns the `ts` of the tick that will hold what is
/// sent now.
pub fn in_phase(interval: i64, from: i64, to: i64) -> i64 {
    loop {
        let now = now_ms();
        let phase = now.rem_euclid(interval);
        if phase >= from && phase <= to {
            return now - phase + interval;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends one UDP datagram.
pub fn send_statsd(addr: SocketAddr, datagram: &[u8]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(datagram, addr).unwrap();
}

/// One HTTP/1.1 request over a real socket; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A Redis reader for assertions.
pub struct Reader {
    pub rt: tokio::runtime::Runtime,
    pub store: RedisStore,
}

impl Reader {
    pub fn connect(url: &str) -> Reader {
        let Client { rt, store } = Client::connect(url).expect("connect to the test redis");
        Reader { rt, store }
    }

    pub fn range(&self, host: &str, from: i64, to: i64) -> Vec<Tick> {
        let host: HostName = host.parse().unwrap();
        self.rt
            .block_on(self.store.range(&host, from, to))
            .expect("range read")
    }

    pub fn all(&self, host: &str) -> Vec<Tick> {
        self.range(host, 0, now_ms() + 86_400_000)
    }

    /// Every tick in arrival order (duplicates would show here).
    pub fn arrivals(&self) -> Vec<Tick> {
        self.rt
            .block_on(self.store.read_new(&redis_store::RedisCursor::default()))
            .expect("read_new")
            .ticks
    }

    pub fn hosts(&self) -> Vec<String> {
        let mut h: Vec<String> = self
            .rt
            .block_on(self.store.hosts())
            .expect("hosts")
            .into_iter()
            .map(|h| h.host.to_string())
            .collect();
        h.sort();
        h
    }

    /// Polls until `host` has a tick at `ts`.
    pub fn wait_tick(&self, host: &str, ts: i64) -> Tick {
        let mut found = None;
        test_support::wait_until(DEADLINE, || {
            found = self.range(host, ts, ts).into_iter().next();
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no tick of {host} at {ts} within {DEADLINE:?}"))
    }
}

/// A field's value in a tick (panics when absent).
pub fn val(t: &Tick, field: &str) -> f64 {
    t.get(&field.parse().unwrap())
        .unwrap_or_else(|| panic!("{field} missing in {}", t.to_json_line()))
}
