//! Regression tests of the outside test's findings (issue 10), through a
//! real `bp-collector` process, real UDP and TCP sockets and a real Redis:
//! counters that wrapped, sampled timers that shifted latency into later
//! ticks, truncated latencies, StatsD forms clients send, invisible kernel
//! drops, configurations Botpress wrote, `monitoring.enabled: false`, and
//! Redis credentials in query parameters.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Collector, DEADLINE, Reader, http, in_phase, send_statsd, val};
use test_support::{RedisServer, wait_until};

fn start(redis: &RedisServer, node: &str) -> Collector {
    Collector::start(
        &[
            "--node",
            node,
            "--interval",
            "1s",
            "--statsd",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ],
        &[("REDIS_URL", &redis.url())],
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn counters_never_wrap_and_sampled_timers_stay_in_their_tick() {
    let redis = RedisServer::start();
    let reader = Reader::connect(&redis.url());
    let mut c = start(&redis, "wrap-1");
    let statsd = c.addr("statsd");
    let web = c.addr("http");

    // 1. HTTP: u64::MAX warnings is refused (400, named), then 2 counts 2.
    let ts = in_phase(1000, 100, 400);
    let (status, body) = http(
        web,
        "POST",
        "/v1/metrics",
        &[],
        r#"{"warnings":18446744073709551615}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("warnings") && body.contains("2^53"), "{body}");
    let (status, body) = http(web, "POST", "/v1/metrics", &[], r#"{"warnings":2}"#);
    assert_eq!(status, 200, "{body}");
    // StatsD: 1e20 twice (refused), then 5.
    send_statsd(statsd, b"bp.errors:1e20|c");
    send_statsd(statsd, b"bp.errors:1e20|c");
    send_statsd(statsd, b"bp.errors:5|c");
    // HTTP latencies: 1e300 refused, then 5.
    let (status, _) = http(web, "POST", "/v1/metrics", &[], r#"{"requests":[1e300]}"#);
    assert_eq!(status, 400);
    let (status, _) = http(web, "POST", "/v1/metrics", &[], r#"{"requests":[5]}"#);
    assert_eq!(status, 200);
    let t = reader.wait_tick("wrap-1", ts);
    assert_eq!(val(&t, "warnings.count"), 2.0);
    assert_eq!(val(&t, "errors.count"), 5.0);
    assert_eq!(val(&t, "requests.count"), 1.0);
    assert_eq!(val(&t, "requests.latency_sum"), 5.0);

    // 2. A sampled 12 ms timer and a 60 s one in one tick; two ticks later
    //    one 12 ms request is 12 ms.
    let ts = in_phase(1000, 100, 400);
    send_statsd(statsd, b"bp.requests:12|ms|@0.3");
    send_statsd(statsd, b"bp.requests:60000|ms");
    let t = reader.wait_tick("wrap-1", ts);
    assert!(
        close(val(&t, "requests.count"), 1.0 / 0.3 + 1.0),
        "{}",
        t.to_json_line()
    );
    assert!(
        close(val(&t, "requests.latency_sum"), 60_040.0),
        "{}",
        t.to_json_line()
    );
    let ts2 = ts + 2000;
    while common::now_ms() < ts2 - 900 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ts2 = in_phase(1000, 100, 400);
    send_statsd(statsd, b"bp.requests:12|ms");
    let t = reader.wait_tick("wrap-1", ts2);
    assert_eq!(val(&t, "requests.count"), 1.0, "{}", t.to_json_line());
    assert_eq!(val(&t, "requests.latency_sum"), 12.0);
    assert_eq!(val(&t, "requests.latency_avg"), 12.0);
    let between = reader.range("wrap-1", ts + 1, ts2 - 1);
    for t in &between {
        assert_eq!(
            val(t, "requests.count"),
            0.0,
            "nothing carried: {}",
            t.to_json_line()
        );
    }

    // 3. Latency precision: 218.59952 ms stays 218.59952 ms.
    let ts = in_phase(1000, 100, 400);
    send_statsd(statsd, b"bp.requests:218.59952|ms");
    let t = reader.wait_tick("wrap-1", ts);
    assert!(
        close(val(&t, "requests.latency_sum"), 218.599_52),
        "{}",
        t.to_json_line()
    );

    // The refusals are counted, with their reasons in the log.
    let (_, health) = http(web, "GET", "/healthz", &[], "");
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["statsd"]["rejected"], 2, "{health}");
    assert_eq!(h["counters"]["tooLarge"], 2, "{health}");
    assert_eq!(h["http"]["rejected"], 2, "{health}");
    assert!(
        c.stderr()
            .iter()
            .any(|l| l.contains("bp.errors:1e20|c") && l.contains("2^53")),
        "{}",
        c.stderr().join("\n")
    );
    c.terminate();
}

#[test]
fn statsd_sets_distributions_decrements_and_refusals() {
    let redis = RedisServer::start();
    let reader = Reader::connect(&redis.url());
    let mut c = start(&redis, "forms-1");
    let statsd = c.addr("statsd");
    let web = c.addr("http");
    let ts = in_phase(1000, 100, 400);
    send_statsd(
        statsd,
        b"custom.users:alice|s\ncustom.users:bob|s\ncustom.users:alice|s\n\
          bp.requests:50|d|#env:prod\ncustom.jobs:5|c\ncustom.jobs:-2|c\nbp.errors:-1|c\n\
          _e{5,4}:title|text\n_sc|my.check|0",
    );
    let t = reader.wait_tick("forms-1", ts);
    assert_eq!(val(&t, "custom.users"), 2.0, "{}", t.to_json_line());
    assert_eq!(val(&t, "custom.jobs"), 3.0);
    assert_eq!(val(&t, "requests.count"), 1.0);
    assert_eq!(val(&t, "requests.latency_sum"), 50.0);
    assert_eq!(val(&t, "errors.count"), 0.0);
    let log = c.stderr().join("\n");
    assert!(log.contains("standard counters only count up"), "{log}");
    let (_, health) = http(web, "GET", "/healthz", &[], "");
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["statsd"]["rejected"], 3, "{health}");
    assert_eq!(h["statsd"]["lines"], 6, "{health}");
    c.terminate();
}

/// Custom instances (`custom.queue[orders]`) arrive over StatsD and HTTP
/// into the stored tick; invalid instances are refused, counted, never
/// stored.
#[test]
fn custom_instances_are_stored_and_bad_ones_refused_and_counted() {
    let redis = RedisServer::start();
    let reader = Reader::connect(&redis.url());
    let mut c = start(&redis, "inst-1");
    let statsd = c.addr("statsd");
    let web = c.addr("http");
    let ts = in_phase(1000, 100, 400);
    send_statsd(
        statsd,
        b"custom.queue[orders]:5|g\ncustom.jobs[C:/x y]:2|c\ncustom.q[a]b]:1|c\n\
          custom.q[bad\x01]:1|g\ncustom.q[]:1|g\ncpu.usage[x]:1|g",
    );
    let (status, body) = http(
        web,
        "POST",
        "/v1/metrics",
        &[("Content-Type", "application/json")],
        r#"{"gauges":{"custom.queue[refunds]":7}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        web,
        "POST",
        "/v1/metrics",
        &[("Content-Type", "application/json")],
        r#"{"gauges":{"custom.queue[a\u0007]":7}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("control character"), "{body}");
    let t = reader.wait_tick("inst-1", ts);
    assert_eq!(val(&t, "custom.queue[orders]"), 5.0, "{}", t.to_json_line());
    assert_eq!(
        val(&t, "custom.queue[refunds]"),
        7.0,
        "{}",
        t.to_json_line()
    );
    assert_eq!(val(&t, "custom.jobs[C:/x y]"), 2.0, "{}", t.to_json_line());
    let customs: Vec<String> = t
        .values()
        .keys()
        .filter(|k| k.field().is_custom())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        customs,
        [
            "custom.jobs[C:/x y]",
            "custom.queue[orders]",
            "custom.queue[refunds]"
        ],
        "nothing else stored"
    );
    let (_, health) = http(web, "GET", "/healthz", &[], "");
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["statsd"]["rejected"], 4, "{health}");
    assert_eq!(h["http"]["rejected"], 1, "{health}");
    c.terminate();
}

/// The kernel's drops are reported: the collector is stopped (SIGSTOP),
/// more datagrams are sent than its small receive buffer holds, it is
/// continued, and `/healthz` shows received + dropped = sent.
#[test]
fn kernel_drops_are_reported_exactly() {
    let mut c = Collector::start(
        &[
            "--node",
            "drops-1",
            "--interval",
            "1s",
            "--statsd",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--statsd-buffer",
            "4096",
        ],
        &[],
    );
    let statsd = c.addr("statsd");
    let web = c.addr("http");
    let (_, health) = http(web, "GET", "/healthz", &[], "");
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    let granted = h["statsd"]["receiveBuffer"].as_u64().unwrap();
    assert!(granted >= 4096, "{health}");
    assert!(
        c.stderr()
            .iter()
            .any(|l| l.contains("receive_buffer_granted=")),
        "{}",
        c.stderr().join("\n")
    );
    let pid = c.pid().to_string();
    let signal = |s: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([s, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 2_000u64;
    for i in 0..sent {
        sock.send_to(format!("custom.burst:{i}|g").as_bytes(), statsd)
            .unwrap();
    }
    signal("-CONT");
    let mut last = serde_json::Value::Null;
    let settled = wait_until(DEADLINE, || {
        let (_, health) = http(web, "GET", "/healthz", &[], "");
        last = serde_json::from_str(&health).unwrap();
        let received = last["statsd"]["datagrams"].as_u64().unwrap();
        let dropped = last["statsd"]["kernelDrops"].as_u64().unwrap();
        received + dropped == sent
    });
    assert!(settled, "received + kernel drops != {sent}: {last}");
    assert!(
        last["statsd"]["kernelDrops"].as_u64().unwrap() > 0,
        "{last}"
    );
    assert!(
        wait_until(DEADLINE, || c
            .stderr()
            .iter()
            .any(|l| l.contains("the kernel dropped statsd datagrams"))),
        "{}",
        c.stderr().join("\n")
    );
    c.terminate();
}

#[test]
fn configurations_botpress_wrote() {
    let dir = tempfile::tempdir().unwrap();
    // Botpress ≤ 12.21.1's default: alerting disabled, `rules: [{}]`, and
    // durations as the `ms` library reads them.
    let path = dir.path().join("botpress.config.json");
    std::fs::write(
        &path,
        r#"{"pro":{"monitoring":{"enabled":true,"collectionInterval":"1 second","retentionPeriod":"10 days","janitorInterval":"15 minutes"},
                   "alerting":{"enabled":false,"watcherInterval":"10s","retentionPeriod":"10d","janitorInterval":"15m","rules":[{}]}}}"#,
    )
    .unwrap();
    let mut c = Collector::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--node",
            "bp-1",
            "--statsd",
            "off",
            "--http",
            "off",
        ],
        &[],
    );
    // A dry run: ticks on stdout, one per second.
    assert!(
        wait_until(DEADLINE, || c.stdout().len() >= 2),
        "stderr:\n{}",
        c.stderr().join("\n")
    );
    assert!(c.is_running());
    c.terminate();

    // monitoring disabled: said clearly, exit 0, nothing collected.
    std::fs::write(
        &path,
        r#"{"pro":{"monitoring":{"enabled":false},"alerting":{"enabled":false,"rules":[{}]}}}"#,
    )
    .unwrap();
    let mut c = Collector::start(&["--config", path.to_str().unwrap(), "--node", "bp-1"], &[]);
    let status = c.wait();
    assert!(status.success(), "{status:?}: {}", c.stderr().join("\n"));
    assert!(c.stdout().is_empty(), "{:?}", c.stdout());
    assert!(
        c.stderr()
            .iter()
            .any(|l| l.contains("monitoring is disabled")),
        "{}",
        c.stderr().join("\n")
    );
}

#[test]
fn redis_credentials_in_query_parameters_never_show() {
    let port = test_support::free_port();
    let url = format!("redis://u@127.0.0.1:{port}?password=qu3ry-s3cret");
    let mut c = Collector::start(
        &[
            "--node",
            "secret-1",
            "--interval",
            "1s",
            "--statsd",
            "off",
            "--http",
            "off",
        ],
        &[("REDIS_URL", &url)],
    );
    // Redis is not there: the collector buffers and says why, repeatedly.
    assert!(
        wait_until(DEADLINE, || c.stderr().len() >= 3
            && c.stderr().iter().any(|l| l.contains("127.0.0.1"))),
        "{}",
        c.stderr().join("\n")
    );
    std::thread::sleep(Duration::from_secs(2));
    c.terminate();
    let log = c.stderr().join("\n");
    assert!(!log.contains("qu3ry-s3cret"), "{log}");
}

/// The exact datagrams three real clients send (captured from Python
/// `statsd` 4.0.1, `datadog` 0.56.0 DogStatsD and npm `hot-shots` 11.4.0;
/// `tests/fixtures/capture/` regenerates them), each client's in one tick,
/// and every resulting tick value — computed here from the calls the
/// clients were asked to make, not from the datagrams.
#[test]
fn datagrams_of_real_statsd_clients() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/statsd_clients.json"))
            .expect("fixture is JSON");
    // (client, requests.count, requests.latency_sum, errors.count,
    //  eventsIn.count, custom.jobs, custom.queue, custom.users, rejected)
    let third = 1.0 / 0.3; // `timing 12 @0.3`: 3.33 requests of 12 ms
    let expected = [
        // a 12, b 218.59952, c 3.33 × 12, n 7; errors d 1 + e 5/0.5 + n 1;
        // queue 17 + 3 − 5; no tags, events or checks in this client.
        (
            "python statsd",
            3.0 + third,
            12.0 + 218.599_52 + 40.0 + 7.0,
            12.0,
            0.0,
            -2.0,
            15.0,
            2.0,
            0,
        ),
        // a, b, c, k 40 (histogram), l 50 (distribution); errors 1 + 10;
        // events_in 1 (tagged); queue 17 (no delta gauge); event and
        // service check refused.
        (
            "python datadog DogStatsd",
            4.0 + third,
            12.0 + 218.599_52 + 40.0 + 40.0 + 50.0,
            11.0,
            1.0,
            -2.0,
            17.0,
            2.0,
            2,
        ),
        // as datadog, plus gauge deltas and the buffered datagram (o):
        // two errors and a 7 ms request.
        (
            "hot-shots",
            5.0 + third,
            12.0 + 218.599_52 + 40.0 + 40.0 + 50.0 + 7.0,
            13.0,
            1.0,
            -2.0,
            15.0,
            2.0,
            2,
        ),
    ];
    let redis = RedisServer::start();
    let reader = Reader::connect(&redis.url());
    let mut c = start(&redis, "clients-1");
    let statsd = c.addr("statsd");
    let web = c.addr("http");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rejected_before = 0;
    for (name, count, latency, errors, events_in, jobs, queue, users, rejected) in expected {
        let client = fixture["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client"] == name)
            .unwrap_or_else(|| panic!("{name} in the fixture"));
        let datagrams: Vec<&str> = client["datagrams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["bytes"].as_str().unwrap())
            .collect();
        let ts = in_phase(1000, 100, 300);
        for d in &datagrams {
            sock.send_to(d.as_bytes(), statsd).unwrap();
        }
        let t = reader.wait_tick("clients-1", ts);
        let line = t.to_json_line();
        assert!(close(val(&t, "requests.count"), count), "{name}: {line}");
        assert!(
            close(val(&t, "requests.latency_sum"), latency),
            "{name}: {line}"
        );
        assert!(
            close(
                val(&t, "requests.latency_avg"),
                (latency / count * 1000.0).round() / 1000.0
            ),
            "{name}: {line}"
        );
        assert_eq!(val(&t, "errors.count"), errors, "{name}: {line}");
        assert_eq!(val(&t, "eventsIn.count"), events_in, "{name}: {line}");
        assert_eq!(val(&t, "custom.jobs"), jobs, "{name}: {line}");
        assert_eq!(val(&t, "custom.queue"), queue, "{name}: {line}");
        assert_eq!(val(&t, "custom.users"), users, "{name}: {line}");
        let (_, health) = http(web, "GET", "/healthz", &[], "");
        let h: serde_json::Value = serde_json::from_str(&health).unwrap();
        let total = h["statsd"]["rejected"].as_u64().unwrap();
        assert_eq!(total - rejected_before, rejected, "{name}: {health}");
        rejected_before = total;
    }
    let log = c.stderr().join("\n");
    assert!(
        log.contains("DogStatsD event") || log.contains("DogStatsD service check"),
        "{log}"
    );
    c.terminate();
}
