//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free
//! loopback port, with a black-hole receiver, killed on drop. Blocking
//! calls (std sockets), fine from async tests too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{START_DEADLINE, free_port, wait_until};

const INSTALL_HINT: &str = "the Alertmanager tests need Alertmanager: apt-get install prometheus-alertmanager \
     (binary /usr/bin/prometheus-alertmanager), or set BP_ALERTMANAGER to its path";

/// The Alertmanager binary: `BP_ALERTMANAGER`, Debian's path, or `PATH`.
///
/// # Panics
/// When none is found, with how to install it (tests never skip).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BP_ALERTMANAGER") {
        return PathBuf::from(path);
    }
    let mut candidates = vec![PathBuf::from("/usr/bin/prometheus-alertmanager")];
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            candidates.push(dir.join("prometheus-alertmanager"));
            candidates.push(dir.join("alertmanager"));
        }
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// An Alertmanager child process, killed on drop.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Starts one and waits until `/-/ready` answers 200.
    ///
    /// # Panics
    /// When it cannot start or does not become ready in time.
    pub fn start() -> Alertmanager {
        let binary = binary();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
        )
        .expect("write alertmanager.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log file");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", binary.display()));
        let am = Alertmanager {
            child,
            dir,
            port,
            url: format!("http://127.0.0.1:{port}"),
        };
        let ready = wait_until(START_DEADLINE, || {
            am.get("/-/ready").is_some_and(|(status, _)| status == 200)
        });
        assert!(
            ready,
            "Alertmanager did not become ready; its log:\n{}",
            am.log()
        );
        am
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// `GET path` over HTTP/1.0: (status, body), `None` when it cannot be
    /// reached.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((status, body))
    }

    /// `GET /api/v2/alerts`, parsed.
    ///
    /// # Panics
    /// When it does not answer 200 with a JSON array.
    pub fn alerts(&self) -> Vec<Value> {
        let (status, body) = self.get("/api/v2/alerts").expect("Alertmanager answers");
        assert_eq!(status, 200, "GET /api/v2/alerts: {body}");
        serde_json::from_str(&body).expect("a JSON array of alerts")
    }

    /// The alert with these `alertname` and `host` labels (and `instance`,
    /// when given), if Alertmanager lists one.
    pub fn find(&self, rule: &str, host: &str, instance: Option<&str>) -> Option<Value> {
        self.alerts().into_iter().find(|a| {
            a["labels"]["alertname"] == rule
                && a["labels"]["host"] == host
                && instance.is_none_or(|i| a["labels"]["instance"] == i)
        })
    }
}
