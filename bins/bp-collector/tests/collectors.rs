//! End-to-end: real `bp-collector` processes, real sockets, a real
//! `redis-server`.
// "StatsD" is a protocol name in prose (and in --help), not code to put in backticks.
#![allow(clippy::doc_markdown)]

mod common;

use std::net::SocketAddr;

use common::{Collector, DEADLINE, Reader, http, in_phase, send_statsd, val};
use test_support::{RedisServer, RedisServerOptions, heavy_test_lock, wait_until};

/// One collector per node of `nodes` (1 s interval, StatsD on a free port,
/// no HTTP) writing to `url`: the collectors, their StatsD addresses and a
/// reader, once every node's ticks are readable.
fn statsd_collectors(nodes: &[&str], url: &str) -> (Vec<Collector>, Vec<SocketAddr>, Reader) {
    let mut collectors: Vec<Collector> = nodes
        .iter()
        .map(|&n| Collector::node(n, "127.0.0.1:0", "off", &[], &[("REDIS_URL", url)]))
        .collect();
    let addrs = collectors.iter_mut().map(|c| c.addr("statsd")).collect();
    let reader = Reader::connect(url);
    assert!(
        wait_until(DEADLINE, || reader.hosts().len() == nodes.len()),
        "every node writes ticks; hosts: {:?}",
        reader.hosts()
    );
    (collectors, addrs, reader)
}

/// Three collectors with distinct names and a 1 s interval, one Redis:
/// ticks are readable per host, and StatsD-fed counts land in the tick of
/// the interval they were sent in (and only there).
#[test]
fn three_collectors_one_redis_statsd_counts_in_the_right_ticks() {
    let _heavy = heavy_test_lock();
    let redis = RedisServer::start();
    let url = redis.url();
    let nodes = ["node-a", "node-b", "node-c"];
    let (mut collectors, addrs, reader) = statsd_collectors(&nodes, &url);

    // node-a: 2 requests (10 ms, 20.5 ms), 1 event in, 3 errors;
    // node-b: 5 events out (one line, sample rate 0.2), 1 warning;
    // node-c: 2 criticals, custom.jobs 4, custom.depth gauge 9.
    let datagrams: [&[u8]; 3] = [
        b"bp.requests:10|ms\nbp.requests:20.5|ms|#route:/x\nbp.events_in:1|c\nbp.errors:3|c",
        b"bp.events_out:1|c|@0.2\nbp.warnings:1|c",
        b"bp.criticals:2|c\ncustom.jobs:4|c\ncustom.depth:9|g",
    ];
    let ts = in_phase(1000, 150, 500);
    for (addr, d) in addrs.iter().zip(datagrams) {
        send_statsd(*addr, d);
    }
    let ticks: Vec<_> = nodes.iter().map(|n| reader.wait_tick(n, ts)).collect();
    let (a, b, c) = (&ticks[0], &ticks[1], &ticks[2]);
    assert_eq!(val(a, "requests.count"), 2.0);
    assert_eq!(val(a, "requests.latency_sum"), 30.5);
    assert_eq!(val(a, "requests.latency_avg"), 15.25);
    assert_eq!(val(a, "eventsIn.count"), 1.0);
    assert_eq!(val(a, "errors.count"), 3.0);
    assert_eq!(val(a, "eventsOut.count"), 0.0);
    assert_eq!(val(b, "eventsOut.count"), 5.0);
    assert_eq!(val(b, "warnings.count"), 1.0);
    assert_eq!(val(b, "requests.count"), 0.0);
    assert!(b.get(&"requests.latency_avg".parse().unwrap()).is_none());
    assert_eq!(val(c, "criticals.count"), 2.0);
    assert_eq!(val(c, "custom.jobs"), 4.0);
    assert_eq!(val(c, "custom.depth"), 9.0);
    for t in &ticks {
        for f in ["cpu.usage", "mem.usage", "mem.free", "uptime"] {
            assert!(val(t, f) >= 0.0);
        }
    }
    // The neighbouring ticks did not get those counts (per-interval deltas),
    // and a gauge keeps its value.
    for n in nodes {
        let before = reader.wait_tick(n, ts - 1000);
        let after = reader.wait_tick(n, ts + 1000);
        for t in [&before, &after] {
            for f in [
                "requests.count",
                "eventsIn.count",
                "eventsOut.count",
                "errors.count",
                "warnings.count",
                "criticals.count",
            ] {
                assert_eq!(val(t, f), 0.0, "{n} {} {f}", t.ts);
            }
        }
        if n == "node-c" {
            assert_eq!(val(&after, "custom.jobs"), 0.0);
            assert_eq!(val(&after, "custom.depth"), 9.0);
        }
    }
    assert_eq!(reader.hosts(), nodes);
    for c in &mut collectors {
        let status = c.terminate();
        assert!(
            status.success(),
            "exit {status:?}; stderr:\n{}",
            c.stderr().join("\n")
        );
    }
    // Ticks of every node are consecutive (1 s apart) with no duplicates.
    for n in nodes {
        let all = reader.all(n);
        assert!(all.len() >= 4, "{n}: {} ticks", all.len());
        for w in all.windows(2) {
            assert_eq!(w[1].ts - w[0].ts, 1000, "{n}: gap or duplicate");
        }
    }
}

/// HTTP JSON ingestion through a real socket into Redis, with a token.
#[test]
fn http_ingestion_end_to_end() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut c = Collector::node(
        "web-1",
        "off",
        "127.0.0.1:0",
        &[],
        &[("REDIS_URL", &url), ("BP_COLLECTOR_TOKEN", "t0ken")],
    );
    let addr = c.addr("http");
    let reader = Reader::connect(&url);
    let auth = [("Authorization", "Bearer t0ken")];
    let body = r#"{"requests":[12,8],"eventsIn":2,"eventsOut":1,"errors":1,"criticals":1,"warnings":4,
                   "counters":{"custom.jobs":3},"gauges":{"custom.queue_depth":17}}"#;

    let (status, resp) = http(addr, "POST", "/v1/metrics", &[], body);
    assert_eq!(status, 401, "{resp}");
    let (status, resp) = http(
        addr,
        "POST",
        "/v1/metrics",
        &[("Authorization", "Bearer nope")],
        body,
    );
    assert_eq!(status, 401, "{resp}");

    let ts = in_phase(1000, 150, 500);
    let (status, resp) = http(addr, "POST", "/v1/metrics", &auth, body);
    assert_eq!(status, 200, "{resp}");
    let t = reader.wait_tick("web-1", ts);
    assert_eq!(val(&t, "requests.count"), 2.0);
    assert_eq!(val(&t, "requests.latency_sum"), 20.0);
    assert_eq!(val(&t, "requests.latency_avg"), 10.0);
    assert_eq!(val(&t, "eventsIn.count"), 2.0);
    assert_eq!(val(&t, "eventsOut.count"), 1.0);
    assert_eq!(val(&t, "warnings.count"), 4.0);
    assert_eq!(val(&t, "errors.count"), 1.0);
    assert_eq!(val(&t, "criticals.count"), 1.0);
    assert_eq!(val(&t, "custom.jobs"), 3.0);
    assert_eq!(val(&t, "custom.queue_depth"), 17.0);

    // A malformed body: 400 with a JSON reason, nothing applied.
    let ts = in_phase(1000, 150, 500);
    let (status, resp) = http(
        addr,
        "POST",
        "/v1/metrics",
        &auth,
        r#"{"eventsIn":1,"evnetsOut":2}"#,
    );
    assert_eq!(status, 400);
    let reason: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert!(
        reason["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `evnetsOut`"),
        "{resp}"
    );
    let t = reader.wait_tick("web-1", ts);
    assert_eq!(val(&t, "eventsIn.count"), 0.0);

    let (status, health) = http(addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["http"]["bodies"], 1);
    assert_eq!(h["http"]["rejected"], 1);
    assert_eq!(h["http"]["unauthorized"], 2);
    let status = c.terminate();
    assert!(status.success(), "{status:?}");
    let logs = c.stderr().join("\n");
    assert!(!logs.contains("t0ken"), "the token never shows in logs");
}

/// Malformed StatsD datagrams and HTTP bodies are counted and dropped; the
/// collector keeps running and counting good input. (Dry run: the ticks are
/// read from stdout.)
#[test]
fn malformed_input_is_counted_and_dropped() {
    let mut c = Collector::node(
        "n1",
        "127.0.0.1:0",
        "127.0.0.1:0",
        &["--max-custom-fields", "2"],
        &[],
    );
    let statsd = c.addr("statsd");
    let web = c.addr("http");
    let mut garbage: Vec<Vec<u8>> = vec![
        b"bogus".to_vec(),
        b"bp.errors:|c".to_vec(),
        b"bp.errors:1|x".to_vec(),
        b"bp.errors:NaN|c".to_vec(),
        b"bp.requests:-5|ms".to_vec(),
        b"bp.events_in:1|c|@7".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b":|||@#".to_vec(),
        vec![b'a'; 60_000],
        b"custom.a:1|c\ncustom.b:1|c\ncustom.c:1|c".to_vec(), // c is over the bound
    ];
    garbage.push(b"bp.errors:1|c\n\nbp.errors:x|c".to_vec()); // one good, one bad
    for d in &garbage {
        send_statsd(statsd, d);
    }
    for body in [
        "",
        "{",
        "[1,2]",
        "null",
        r#"{"errors":-1}"#,
        r#"{"gauges":{"custom.x y":1}}"#,
    ] {
        let (status, resp) = http(web, "POST", "/v1/metrics", &[], body);
        assert_eq!(status, 400, "{body:?}: {resp}");
    }
    let mut health = serde_json::Value::Null;
    assert!(
        wait_until(DEADLINE, || {
            let (_, h) = http(web, "GET", "/healthz", &[], "");
            health = serde_json::from_str(&h).unwrap();
            health["statsd"]["rejected"] == 11 && health["statsd"]["lines"] == 3
        }),
        "{health}"
    );
    assert_eq!(health["http"]["rejected"], 6, "{health}");
    assert_eq!(health["custom"]["dropped"], 1, "{health}");
    assert!(c.is_running());
    // Good input after all that still lands in a tick.
    let ts = in_phase(1000, 150, 500);
    send_statsd(statsd, b"bp.events_in:7|c");
    let want = format!("\"ts\":{ts},");
    assert!(
        wait_until(DEADLINE, || c.stdout().iter().any(|l| l.contains(&want))),
        "no tick at {ts}"
    );
    let line = c.stdout().into_iter().find(|l| l.contains(&want)).unwrap();
    let t = metrics_model::Tick::parse_line(&line, 1).unwrap().unwrap();
    assert_eq!(val(&t, "eventsIn.count"), 7.0);
    let status = c.terminate();
    assert!(status.success(), "{status:?}");
    let logs = c.stderr().join("\n");
    assert!(logs.contains("malformed statsd input dropped"), "{logs}");
    assert!(logs.contains("malformed http body dropped"), "{logs}");
}

/// Usage and configuration errors exit with status 2 and a clear message.
#[test]
fn bad_usage_exits_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--interval", "2x"], &[], "\"2x\" is not a duration"),
        (&["--node", "a b"], &[], "invalid host name"),
        (
            &["--node", "n", "--http", "0.0.0.0:0"],
            &[],
            "not a loopback address",
        ),
        (&["--node", "n", "--statsd", "8125"], &[], "--statsd"),
        (
            &["--node", "n", "--config", "/nonexistent/bp.json"],
            &[],
            "cannot read",
        ),
        (&["--bogus-flag"], &[], "unexpected argument"),
        (
            &["--node", "n"],
            &[("REDIS_URL", "http://u:s3cret@h")],
            "REDIS_URL",
        ),
        (
            &["--node", "n"],
            &[("BP_REDIS_SCOPE", "a{b}")],
            "BP_REDIS_SCOPE",
        ),
        (
            &["--node", "n"],
            &[("CLUSTER_ENABLED", "maybe")],
            "CLUSTER_ENABLED",
        ),
        (&["import", "--batch", "0"], &[], "--batch"),
        (
            &["import"],
            &[("REDIS_URL", "redis://u:s3cret@")],
            "REDIS_URL",
        ),
    ];
    for (args, env, part) in cases {
        let mut c = Collector::start(args, env);
        let status = c.wait();
        let err = c.stderr().join("\n");
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(part), "{args:?}: {err}");
        assert!(!err.contains("s3cret"), "{args:?}: {err}");
    }
}

/// Redis goes away for longer than several intervals and comes back on the
/// same port: every tick is stored exactly once, consecutive, no gap.
#[test]
fn outage_loses_nothing_and_duplicates_nothing() {
    let _heavy = heavy_test_lock();
    let mut redis = RedisServer::start_with(RedisServerOptions {
        appendonly: true,
        ..RedisServerOptions::default()
    });
    let url = redis.url();
    let mut c = Collector::node("n-out", "off", "127.0.0.1:0", &[], &[("REDIS_URL", &url)]);
    let web = c.addr("http");
    let health = |key: &str| -> u64 {
        let (_, h) = http(web, "GET", "/healthz", &[], "");
        let v: serde_json::Value = serde_json::from_str(&h).unwrap();
        v["ticks"][key].as_u64().unwrap()
    };
    assert!(
        wait_until(DEADLINE, || health("written") >= 3),
        "ticks before the outage"
    );
    let reader = Reader::connect(&url);
    let before = reader.all("n-out").len();
    drop(reader);

    redis.stop();
    // Down for at least 6 intervals: wait until 6 ticks are buffered.
    assert!(
        wait_until(DEADLINE, || health("buffered") >= 6),
        "ticks buffered during the outage"
    );
    assert!(c.is_running());
    redis.restart();
    assert!(
        wait_until(DEADLINE, || health("buffered") == 0),
        "buffer flushed after the restart"
    );
    let status = c.terminate();
    assert!(status.success(), "{status:?}\n{}", c.stderr().join("\n"));
    let logs = c.stderr().join("\n");
    assert!(logs.contains("store write failed; buffering"), "{logs}");

    let reader = Reader::connect(&url);
    let all = reader.all("n-out");
    assert!(
        all.len() > before + 6,
        "{} ticks, {before} before the outage",
        all.len()
    );
    for w in all.windows(2) {
        assert_eq!(
            w[1].ts - w[0].ts,
            1000,
            "gap or duplicate around {}",
            w[0].ts
        );
    }
    // Exactly once in arrival order too.
    let arrivals = reader.arrivals();
    let mut seen = std::collections::BTreeSet::new();
    for t in &arrivals {
        assert!(
            seen.insert((t.host.to_string(), t.ts)),
            "tick {} stored twice",
            t.ts
        );
    }
    assert_eq!(arrivals.len(), all.len());
}

/// Two collectors write to a three-master Redis Cluster (`redis-cluster://`
/// URL): each node's ticks, with their StatsD counts, are readable.
#[test]
fn collectors_write_to_a_redis_cluster() {
    let _heavy = heavy_test_lock();
    let cluster = test_support::RedisCluster::start();
    let url = cluster.url();
    let nodes = ["cl-a", "cl-b"];
    let (mut collectors, addrs, reader) = statsd_collectors(&nodes, &url);
    let ts = in_phase(1000, 150, 500);
    send_statsd(addrs[0], b"bp.errors:2|c");
    send_statsd(addrs[1], b"bp.events_in:5|c");
    assert_eq!(val(&reader.wait_tick("cl-a", ts), "errors.count"), 2.0);
    assert_eq!(val(&reader.wait_tick("cl-b", ts), "eventsIn.count"), 5.0);
    for c in &mut collectors {
        let status = c.terminate();
        assert!(status.success(), "{status:?}\n{}", c.stderr().join("\n"));
    }
    for n in nodes {
        let all = reader.all(n);
        for w in all.windows(2) {
            assert_eq!(w[1].ts - w[0].ts, 1000, "{n}: gap or duplicate");
        }
    }
}

/// The HTTP endpoint's edges: unknown paths, wrong methods, a declared body
/// over the 1 MiB limit, and chunked bodies on one kept-alive connection.
/// (Dry run: no Redis needed.)
#[test]
fn http_routes_limits_and_keep_alive() {
    use std::io::Write as _;

    let mut c = Collector::node("web-1", "off", "127.0.0.1:0", &[], &[]);
    let addr = c.addr("http");

    let (status, _) = http(addr, "GET", "/nowhere", &[], "");
    assert_eq!(status, 404);
    let (status, _) = http(addr, "GET", "/v1/metrics", &[], "");
    assert_eq!(status, 405);
    let (status, _) = http(addr, "POST", "/healthz", &[], "");
    assert_eq!(status, 405);

    let connect = || {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s
    };

    let mut s = connect();
    s.write_all(b"GET /v1/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, head, _) = read_response(&mut s);
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: post"), "{head}");

    // A declared length over 1 MiB: refused before the body is sent.
    let mut s = connect();
    s.write_all(
        b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048577\r\n\r\n",
    )
    .unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1 MiB"), "{body}");

    // Two chunked bodies on one kept-alive connection.
    let mut s = connect();
    let chunked = |parts: &[&[u8]]| {
        let mut req =
            b"POST /v1/metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for p in parts {
            req.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            req.extend_from_slice(p);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        req
    };
    s.write_all(&chunked(&[b"{\"eventsIn\":", b"2}"])).unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"dropped":0,"ok":true}"#);
    s.write_all(&chunked(&[b"{\"eventsOut\":", b"1}"])).unwrap();
    let (status, _, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");

    let (status, health) = http(addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["http"]["bodies"], 2, "{h}");
    assert_eq!(h["http"]["rejected"], 0, "{h}");
    let status = c.terminate();
    assert!(status.success(), "{status:?}");
}

/// Reads one response: status line, headers, then a body of
/// Content-Length bytes (every response of the collector has one).
fn read_response(s: &mut std::net::TcpStream) -> (u16, String, String) {
    use std::io::Read as _;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (status, head, String::from_utf8(body).unwrap())
}
