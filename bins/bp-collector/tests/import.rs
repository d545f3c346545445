//! End-to-end: `bp-collector import` into a real `redis-server`.
// "StatsD" is a protocol name in prose (and in --help), not code to put in backticks.
#![allow(clippy::doc_markdown)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{BIN, Reader};
use metrics_model::Tick;
use test_support::RedisServer;

/// Deterministic realistic ticks: `hosts` × `per_host` ticks 10 s apart.
fn ticks(hosts: &[&str], per_host: usize) -> Vec<Tick> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let start = 1_767_225_600_000_i64;
    let mut out = Vec::new();
    for h in hosts {
        let mut cpu: f64 = 20.0;
        for i in 0..per_host {
            cpu = (cpu + (rnd() % 500) as f64 / 100.0 - 2.5).clamp(0.0, 100.0);
            let requests = (rnd() % 20) as f64;
            let sum = (rnd() % 100_000) as f64 / 1000.0 * requests;
            let line = format!(
                r#"{{"host":"{h}","ts":{},"values":{{"cpu.usage":{:.2},"mem.usage":{:.2},"mem.free":{},"uptime":{},"requests.count":{requests},"requests.latency_sum":{:.3},"eventsIn.count":{},"eventsOut.count":{},"errors.count":{},"warnings.count":{}}}}}"#,
                start + i as i64 * 10_000,
                cpu,
                40.0 + (rnd() % 1000) as f64 / 100.0,
                8_000_000 + rnd() % 100_000,
                86_400 + i * 10,
                sum,
                rnd() % 5,
                rnd() % 5,
                rnd() % 2,
                rnd() % 3,
            );
            out.push(Tick::parse_line(&line, 1).unwrap().unwrap());
        }
    }
    out
}

fn shuffle(ticks: &mut [Tick], mut seed: u64) {
    for i in (1..ticks.len()).rev() {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let j = (seed >> 33) as usize % (i + 1);
        ticks.swap(i, j);
    }
}

fn import(url: &str, input: &str, batch: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(["import", "--batch", batch])
        .env("REDIS_URL", url)
        .env_remove("BP_REDIS_SCOPE")
        .env_remove("CLUSTER_ENABLED")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

fn report(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "report not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn lines(ticks: &[Tick]) -> String {
    let mut s = String::new();
    for t in ticks {
        s.push_str(&t.to_json_line());
        s.push('\n');
    }
    s
}

/// A shuffled import stores exactly the ticks of the sorted input; importing
/// again (in another order) adds nothing.
#[test]
fn shuffled_import_gives_the_same_data_and_twice_adds_nothing() {
    let hosts = ["imp-a", "imp-b"];
    let original = ticks(&hosts, 1500);
    let mut shuffled = original.clone();
    shuffle(&mut shuffled, 7);

    let sorted_redis = RedisServer::start();
    let out = import(&sorted_redis.url(), &lines(&original), "1000");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report(&out)["written"], 3000);

    let redis = RedisServer::start();
    let out = import(&redis.url(), &lines(&shuffled), "250");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out);
    assert_eq!(
        (
            r["written"].as_u64(),
            r["duplicates"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(3000), Some(0), Some(0)),
        "{r}"
    );

    let a = Reader::connect(&sorted_redis.url());
    let b = Reader::connect(&redis.url());
    for h in hosts {
        let want: Vec<&Tick> = original.iter().filter(|t| t.host.as_str() == h).collect();
        let from_sorted = a.all(h);
        let from_shuffled = b.all(h);
        assert_eq!(from_shuffled.len(), want.len(), "{h}");
        assert_eq!(
            from_shuffled, from_sorted,
            "{h}: same data whatever the order"
        );
        for (got, want) in from_shuffled.iter().zip(want) {
            assert_eq!(got, want, "{h}: stored as given");
        }
    }

    shuffle(&mut shuffled, 8);
    let out = import(&redis.url(), &lines(&shuffled), "1000");
    assert!(out.status.success());
    let r = report(&out);
    assert_eq!(
        (r["written"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(3000)),
        "{r}"
    );
    assert_eq!(
        b.arrivals().len(),
        3000,
        "nothing added by the second import"
    );
}

/// Bad lines are reported with their line number and skipped; the good
/// ones are stored; the exit status is 1.
#[test]
fn bad_lines_are_reported_skipped_and_fail_the_exit_status() {
    let redis = RedisServer::start();
    let good = ticks(&["imp-c"], 3);
    let input = format!(
        "{}\nnot json\n\n{}\n{{\"host\":\"imp-c\",\"ts\":5,\"values\":{{\"cpu.usage\":\"high\"}}}}\n{}\n",
        good[0].to_json_line(),
        good[1].to_json_line(),
        good[2].to_json_line()
    );
    let out = import(&redis.url(), &input, "2");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: not JSON"), "{stderr}");
    assert!(stderr.contains("line 5: values.cpu.usage"), "{stderr}");
    let r = report(&out);
    assert_eq!(
        (
            r["written"].as_u64(),
            r["rejected"].as_u64(),
            r["lines"].as_u64()
        ),
        (Some(3), Some(2), Some(6)),
        "{r}"
    );
    assert_eq!(Reader::connect(&redis.url()).all("imp-c"), good);
}
