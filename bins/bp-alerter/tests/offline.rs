//! The offline subcommands through the real binary: JSON lines piped in,
//! output and exit status checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

fn bp_alerter(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bp-alerter starts");
    // The process may exit before reading (bad usage): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Ticks of one host every 10 s over `[from, to)` seconds after T0.
fn lines(host: &str, from: i64, to: i64, values: &Value) -> String {
    let mut out = String::new();
    for s in (from..to).step_by(10) {
        out += &json!({ "host": host, "ts": T0 + s * 1000, "values": values }).to_string();
        out.push('\n');
    }
    out
}

fn replay(rules: &Path, input: &str, extra: &[&str]) -> Output {
    let mut args = vec!["replay", "--rules", rules.to_str().unwrap()];
    args.extend_from_slice(extra);
    bp_alerter(&args, input)
}

/// `(event, at − T0 in s, ruleName, hostName, triggerValue, endTime set)`.
fn summary(out: &str) -> Vec<(String, i64, String, String, f64, bool)> {
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            let i = &v["incident"];
            (
                v["event"].as_str().unwrap().to_owned(),
                (v["at"].as_i64().unwrap() - T0) / 1000,
                i["ruleName"].as_str().unwrap().to_owned(),
                i["hostName"].as_str().unwrap().to_owned(),
                i["triggerValue"].as_f64().unwrap(),
                !i["endTime"].is_null(),
            )
        })
        .collect()
}

fn row(
    e: &str,
    at: i64,
    rule: &str,
    host: &str,
    v: f64,
    ended: bool,
) -> (String, i64, String, String, f64, bool) {
    (e.to_owned(), at, rule.to_owned(), host.to_owned(), v, ended)
}

#[test]
fn replay_reproduces_the_seed_examples() {
    let mut input = String::new();
    // node-a: CPU 30 % for 2 m, 90 % for 2 m, 30 % for 2 m; events throughout.
    input += &lines(
        "node-a",
        0,
        120,
        &json!({ "cpu.usage": 30, "eventsIn.count": 1 }),
    );
    input += &lines(
        "node-a",
        120,
        240,
        &json!({ "cpu.usage": 90, "eventsIn.count": 1 }),
    );
    input += &lines(
        "node-a",
        240,
        360,
        &json!({ "cpu.usage": 30, "eventsIn.count": 1 }),
    );
    // node-b: 2 errors a tick for 50 s, then none; events stop after 60 s.
    input += &lines(
        "node-b",
        0,
        50,
        &json!({ "errors.count": 2, "eventsIn.count": 1 }),
    );
    input += &lines(
        "node-b",
        50,
        360,
        &json!({ "errors.count": 0, "eventsIn.count": 0 }),
    );
    let out = replay(&example("seed-rules.json"), &input, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = summary(&stdout(&out));
    assert_eq!(
        got,
        vec![
            row("opened", 40, "High number of errors", "node-b", 10.0, false),
            row(
                "resolved",
                60,
                "High number of errors",
                "node-b",
                10.0,
                true
            ),
            row("opened", 170, "High CPU Usage", "node-a", 60.0, false),
            row("resolved", 300, "High CPU Usage", "node-a", 60.0, true),
        ]
    );
    // node-b's last event is at 40 s: "No more incoming events" needs 10 m of
    // silence, which this input does not reach.
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[2]["incident"]["id"], lines[3]["incident"]["id"]);
    assert_eq!(
        lines[2]["incident"]["startTime"],
        "2026-01-01T00:02:50.000Z"
    );
    assert_eq!(lines[3]["incident"]["endTime"], "2026-01-01T00:05:00.000Z");
}

#[test]
fn replay_reads_any_order_rfc3339_blank_lines_and_duplicates() {
    let rules = example("seed-rules.json");
    let mut ordered = lines(
        "h",
        0,
        600,
        &json!({ "eventsIn.count": 0, "cpu.usage": 10, "errors.count": null }),
    );
    ordered += &lines("h", 600, 700, &json!({ "eventsIn.count": 0 }));
    let sorted = replay(&rules, &ordered, &[]);
    assert_eq!(sorted.status.code(), Some(0), "{}", stderr(&sorted));
    assert_eq!(
        summary(&stdout(&sorted)),
        vec![row("opened", 0, "No more incoming events", "h", 0.0, false)]
    );

    // Reversed, with RFC 3339 stamps in another offset, blank lines, unknown
    // keys and a duplicate of the first tick (ignored: first seen counts).
    let mut shuffled: Vec<String> = ordered.lines().map(str::to_owned).collect();
    shuffled.reverse();
    shuffled[3] = json!({ "host": "h", "ts": "2026-01-01T01:01:10.000+01:00", "values": { "eventsIn.count": 0 }, "serverId": "x" }).to_string();
    shuffled.push(String::new());
    shuffled.push(json!({ "host": "h", "ts": T0, "values": { "eventsIn.count": 5 } }).to_string());
    let out = replay(&rules, &shuffled.join("\n"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = summary(&stdout(&out));
    // The duplicate at T0 comes last in the input, so it is ignored.
    assert_eq!(got, summary(&stdout(&sorted)));
}

#[test]
fn replay_watcher_interval_from_flag_or_file() {
    let input = lines("h", 5, 60, &json!({ "errors.count": 20 }));
    // Instants every 10 s from 10 s: the first is 10 s.
    let out = replay(&example("seed-rules.json"), &input, &[]);
    assert_eq!(summary(&stdout(&out))[0].1, 10);
    let out = replay(
        &example("seed-rules.json"),
        &input,
        &["--watcher-interval", "1m"],
    );
    assert_eq!(stdout(&out), "", "no multiple of 1m between 5s and 55s");
    let out = replay(
        &example("seed-rules.json"),
        &input,
        &["--watcher-interval", "7s"],
    );
    assert_eq!(summary(&stdout(&out))[0].1, 7);
    // A configuration file works as a rules file, with its watcherInterval.
    let out = replay(&example("botpress.config.json"), &input, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary(&stdout(&out))[0].1, 10);
    let out = replay(
        &example("seed-rules.json"),
        &input,
        &["--watcher-interval", "2x"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn replay_empty_input_prints_nothing() {
    let out = replay(&example("seed-rules.json"), "", &[]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""));
    let out = replay(&example("seed-rules.json"), "\n\n   \n", &[]);
    assert_eq!((out.status.code(), stdout(&out).as_str()), (Some(0), ""));
}

#[test]
fn replay_bad_input_names_the_line() {
    let good = json!({ "host": "a", "ts": T0, "values": { "cpu.usage": 1 } }).to_string();
    for (bad, expected) in [
        ("not json", "line 2: not JSON"),
        (r#"{"ts":1,"values":{}}"#, "line 2: missing \"host\""),
        (r#"{"host":"a","values":{}}"#, "line 2: missing \"ts\""),
        (r#"{"host":"a","ts":1}"#, "line 2: missing \"values\""),
        (
            r#"{"host":"a","ts":"last tuesday","values":{}}"#,
            "line 2: ts:",
        ),
        (
            r#"{"host":"a","ts":1,"values":{"cpu.usage":"high"}}"#,
            "line 2: values.cpu.usage: expected a number or null",
        ),
        (
            r#"{"host":"a","ts":1,"values":{"cpu.usage":1e999}}"#,
            "line 2: not JSON",
        ),
        (
            r#"{"host":"a","ts":1,"values":{"disk.usag":1}}"#,
            "line 2: values.disk.usag: unknown field",
        ),
        (
            r#"{"host":"a","ts":1,"values":{"disk.usage":1}}"#,
            "line 2: values.disk.usage: disk.usage is carried only with an instance in ticks",
        ),
        (
            r#"{"host":"a","ts":1,"values":{"cpu.usage[0]":1}}"#,
            "line 2: values.cpu.usage[0]: cpu.usage takes no instance",
        ),
        (
            r#"{"host":"a","ts":1,"values":{"disk.usage[/a\u0007]":1}}"#,
            "line 2: values.disk.usage[/a\\u{7}]: \"disk.usage[/a\\u{7}]\": an instance must not hold a control character",
        ),
        (
            r#"{"host":"a","ts":1,"values":{"disk.usage[]":1}}"#,
            "an instance must not be empty",
        ),
        (
            r#"{"host":"<script>","ts":1,"values":{}}"#,
            "line 2: host: invalid host name",
        ),
    ] {
        let out = replay(
            &example("seed-rules.json"),
            &format!("{good}\n{bad}\n{good}\n"),
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert_eq!(stdout(&out), "", "{bad}");
        let err = stderr(&out);
        assert!(
            err.contains(expected) && err.lines().count() == 1,
            "{bad}: {err}"
        );
    }
}

#[test]
fn replay_bad_rules_file_exits_2() {
    let out = replay(&example("bad-config.json"), "", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("alerting.rules[1].timeframe"),
        "{}",
        stderr(&out)
    );
    let out = replay(Path::new("/nonexistent/rules.json"), "", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

#[test]
fn check_config_lists_every_problem() {
    let out = bp_alerter(
        &["check-config", example("bad-config.json").to_str().unwrap()],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    for want in [
        "monitoring.collectionInterval: \"10 secondz\" is not a duration",
        "alerting.rules[0]: missing keys: name, field, aggregation, operand, value, timeframe",
        "alerting.rules[1].cooldwon: unknown key",
        "alerting.rules[1].field: unknown field \"cpu.usag\"",
        "alerting.rules[1].aggregation: unknown aggregation \"mean\"",
        "alerting.rules[1].timeframe: \"2x\" is not a duration",
        "alerting.rules[2].operand: unknown operand \"above\"",
        "alerting.rules[2].value: expected a finite number",
        "alerting.rules[2].timeframe: must be greater than 0",
        "alerting.rules[2].cooldown: \"-1s\" is not a duration",
        "alerting.rules[2].name: duplicate rule name after trimming (also alerting.rules[1])",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(want)),
            "{want:?} missing from:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), 11, "{text}");
    // Every rule problem names the rule.
    assert!(
        text.lines()
            .filter(|l| l.contains("rules[1].") || l.contains("rules[2]."))
            .all(|l| l.ends_with("(rule \"High CPU Usage\")"))
    );
}

#[test]
fn check_config_accepts_the_examples() {
    let path = example("botpress.config.json");
    let out = bp_alerter(&["check-config", path.to_str().unwrap()], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));
    // What `scripts/run` uses: its hook directory (written relative to the
    // file) exists, from any working directory.
    for cwd in [root(), std::env::temp_dir()] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
            .current_dir(&cwd)
            .args(["check-config", example("standalone.json").to_str().unwrap()])
            .output()
            .unwrap();
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("hooks from "), "{text}");
        assert!(
            !text.contains("does not exist"),
            "from {}: {text}",
            cwd.display()
        );
    }
}

#[test]
fn check_config_lists_every_rule_with_its_version_2_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.json");
    std::fs::write(
        &path,
        json!({ "alerting": { "rules": [
            { "name": "Disk almost full", "field": "disk.usage", "aggregation": "max",
              "operand": "equalOrMoreThan", "value": 90, "timeframe": "1m",
              "hosts": ["web-*", "!web-3"], "severity": "critical",
              "labels": { "team": "ops" }, "description": "Clean /var/log", "staleAfter": "5m" },
            { "name": "Errors", "field": "errors.count", "aggregation": "sum",
              "operand": "equalOrMoreThan", "value": 100, "timeframe": "1m", "scope": "cluster" }
        ]}})
        .to_string(),
    )
    .unwrap();
    let out = bp_alerter(&["check-config", path.to_str().unwrap()], "");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "  rule \"Disk almost full\": max disk.usage >= 90 over 1m, cooldown 0s, hosts [web-*, !web-3], severity critical, labels {team=ops}, staleAfter 5m, description \"Clean /var/log\"\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "  rule \"Errors\": sum errors.count >= 100 over 1m, cooldown 0s, scope cluster\n"
        ),
        "{text}"
    );
}

#[test]
fn check_config_lists_node_options_and_warns_of_unwatched_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.json");
    std::fs::write(
        &path,
        json!({
            "monitoring": {
                "processes": [{ "name": "botpress", "match": { "comm": "bp" } }],
                "filesystems": { "exclude": ["/boot/*"] }
            },
            "alerting": { "rules": [
                { "name": "Bot down", "field": "process.count[botpress]", "aggregation": "max",
                  "operand": "equalOrLessThan", "value": 0, "timeframe": "30s" },
                { "name": "Nginx down", "field": "process.count[nginx]", "aggregation": "max",
                  "operand": "equalOrLessThan", "value": 0, "timeframe": "30s" }
            ] }
        })
        .to_string(),
    )
    .unwrap();
    let out = bp_alerter(&["check-config", path.to_str().unwrap()], "");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("  process \"botpress\": comm \"bp\"\n"),
        "{text}"
    );
    assert!(
        text.contains("  filesystems: include [], exclude [\"/boot/*\"]\n"),
        "{text}"
    );
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("warning:") && !l.contains("hook directory"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: rule \"Nginx down\" reads process.count[nginx], but monitoring.processes has no entry named \"nginx\": a collector reading this file never reports it"
        ],
        "{text}"
    );
}

#[test]
fn check_config_syntax_error_gives_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\n  \"alerting\": {\n    \"rules\": [,]\n  }\n}\n").unwrap();
    let out = bp_alerter(&["check-config", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("broken.json:3:15: invalid JSON"),
        "{}",
        stdout(&out)
    );
    let out = bp_alerter(&["check-config", "/nonexistent.json"], "");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn test_rules_pass_on_examples_and_fail_with_a_diff() {
    // The seed's rules; version 2: a per-mount disk rule, a cluster-wide
    // rule, a host pattern.
    for (file, passed) in [("seed-rules.test.json", 5), ("version-2.test.json", 4)] {
        let path = example(&format!("rule-tests/{file}"));
        let out = bp_alerter(&["test-rules", path.to_str().unwrap()], "");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains(&format!("test-rules: {passed} passed, 0 failed")),
            "{}",
            stdout(&out)
        );
    }

    let out = bp_alerter(
        &[
            "test-rules",
            example("rule-tests/wrong-expectation.test.json")
                .to_str()
                .unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("FAIL "), "{text}");
    assert!(
        text.contains(
            "- opened   at 1m30s    rule \"High number of errors\" host node-a triggerValue 8"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "+ opened   at 1m40s    rule \"High number of errors\" host node-a triggerValue 10"
        ),
        "{text}"
    );
    assert!(text.contains("    resolved at 2m "), "{text}");
}

#[test]
fn test_rules_bad_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.test.json");
    std::fs::write(&path, r#"{ "rules": [], "tests": [ { "name": "x", "series": { "h": { "cpu.usage": "1x2 7y" } }, "expect": [ { "event": "closed" } ] } ] }"#).unwrap();
    let out = bp_alerter(&["test-rules", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("tests[0].series.h.cpu.usage: item 2 \"7y\""),
        "{err}"
    );
    assert!(
        err.contains("tests[0].expect[0].event: \"closed\" is not opened or resolved"),
        "{err}"
    );
    assert!(err.contains("tests[0].expect[0]: missing key: at"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    // No subcommand means `run` (the default); a bad flag is a usage error.
    assert_eq!(bp_alerter(&["--frobnicate"], "").status.code(), Some(2));
    assert_eq!(
        bp_alerter(&["run", "--listen", "nowhere"], "")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(bp_alerter(&["replay"], "").status.code(), Some(2));
    assert_eq!(bp_alerter(&["frobnicate"], "").status.code(), Some(2));
    assert_eq!(bp_alerter(&["--help"], "").status.code(), Some(0));
    for sub in ["check-config", "replay", "test-rules"] {
        let out = bp_alerter(&[sub, "--help"], "");
        assert_eq!(out.status.code(), Some(0), "{sub}");
    }
}

/// `replay --silences`: the version-1 lines plus `notifyAt`; a maintenance
/// window in a configuration rules file applies too; a bad silence exits 2
/// naming its field, and without silences the lines are unchanged.
#[test]
#[allow(clippy::too_many_lines)] // one scenario, three inputs
fn replay_with_silences_and_maintenance_windows() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        json!([{"name": "High CPU", "field": "cpu.usage", "aggregation": "avg",
                "operand": "equalOrMoreThan", "value": 80, "timeframe": "10s"}])
        .to_string(),
    )
    .unwrap();
    // 2026-01-01T00:00:00Z: high for 60 s, low after; then high again from +300 s.
    let base = T0;
    let input = [
        lines("web-1", 0, 60, &json!({"cpu.usage": 95})),
        lines("web-1", 60, 130, &json!({"cpu.usage": 5})),
        lines("web-1", 300, 360, &json!({"cpu.usage": 95})),
        lines("web-1", 360, 410, &json!({"cpu.usage": 5})),
    ]
    .concat();
    let plain = replay(&rules, &input, &[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert!(!stdout(&plain).contains("notifyAt"));
    let silences = dir.path().join("silences.json");
    // The first incident opens and resolves inside the silence: never
    // notified; the second opens inside it and is notified when it ends.
    std::fs::write(
        &silences,
        json!([{"matchers": {"rule": "High*", "host": "web-?"}, "startsAt": base - 1,
                "endsAt": "2026-01-01T00:05:25Z", "createdBy": "ops", "comment": "reboot"}])
        .to_string(),
    )
    .unwrap();
    let out = replay(&rules, &input, &["--silences", silences.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<(String, i64, Option<i64>)> = stdout(&out)
        .lines()
        .map(|l| {
            assert!(l.starts_with(r#"{"event":"#), "key order: {l}");
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["event"].as_str().unwrap().to_owned(),
                v["at"].as_i64().unwrap() - base,
                v["notifyAt"].as_i64().map(|t| t - base),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("opened".to_owned(), 0, None),
            ("resolved".to_owned(), 60_000, None),
            ("opened".to_owned(), 300_000, Some(330_000)),
            ("resolved".to_owned(), 360_000, Some(360_000)),
        ]
    );
    // The same as a maintenance window of a configuration file (UTC
    // 00:00–00:05 every day): the second incident is not muted.
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"alerting": {
            "rules": serde_json::from_str::<Value>(&std::fs::read_to_string(&rules).unwrap()).unwrap(),
            "maintenance": [{"name": "nightly", "matchers": {"host": "web-*"}, "start": "00:00", "end": "00:05"}]}})
        .to_string(),
    )
    .unwrap();
    let out = replay(&config, &input, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let notify: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["notifyAt"].clone())
        .collect();
    assert_eq!(
        notify,
        [
            json!(null),
            json!(null),
            json!(base + 300_000),
            json!(base + 360_000)
        ]
    );
    // Bad silences: exit 2, named.
    for (bad, want) in [
        (
            json!([{"matchers": {}, "startsAt": 5, "endsAt": 5}]),
            "silences[0].endsAt",
        ),
        (
            json!([{"matchers": {"rack": "a"}, "startsAt": 1, "endsAt": 5}]),
            "silences[0].matchers.rack",
        ),
        (
            json!([{"matchers": {}, "startsAt": 1, "endsAt": 5, "comment": "x".repeat(1025)}]),
            "silences[0].comment",
        ),
        (json!({"matchers": {}}), "expected a JSON array"),
    ] {
        std::fs::write(&silences, bad.to_string()).unwrap();
        let out = replay(&rules, &input, &["--silences", silences.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(stderr(&out).contains(want), "{want}: {}", stderr(&out));
    }
    // A bad time zone in a configuration: exit 2, named.
    std::fs::write(
        &config,
        json!({"alerting": {"maintenance": [{"name": "n", "start": "00:00", "end": "01:00", "timeZone": "Europe/Atlantis"}]}}).to_string(),
    )
    .unwrap();
    let out = bp_alerter(&["check-config", config.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("alerting.maintenance[0].timeZone"),
        "{}",
        stdout(&out)
    );
}

/// `check-config` of notifiers: a template with a syntax error and one
/// using an undocumented variable, each named by notifier, path and line;
/// a valid notifier is listed (its secret never printed).
#[test]
fn check_config_names_bad_notifier_templates_and_lists_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    let write = |notifiers: &Value| {
        std::fs::write(
            &file,
            json!({ "pro": { "alerting": { "externalUrl": "https://bp.example", "notifiers": notifiers } } })
                .to_string(),
        )
        .unwrap();
    };
    write(&json!([
        { "name": "ops-slack", "type": "slack", "url": "https://hooks.slack.example/T/B/SECRETPATH",
          "template": { "title": "{{ incident.ruleName }}", "text": "first line\nsecond\n{{ incident.ruleName | }}" } },
        { "name": "pd", "type": "pagerduty", "routingKey": "k",
          "template": { "title": "{{ incident.ruleName }}\n{{ rule.threshold }}" } }
    ]));
    let out = bp_alerter(&["check-config", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    let line = |needle: &str| text.lines().find(|l| l.contains(needle)).map(str::to_owned);
    let syntax =
        line("pro.alerting.notifiers[0].template.text").unwrap_or_else(|| panic!("{text}"));
    assert!(
        syntax.contains("notifier \"ops-slack\"") && syntax.contains("line 3"),
        "{syntax}"
    );
    let var = line("pro.alerting.notifiers[1].template.title").unwrap_or_else(|| panic!("{text}"));
    assert!(
        var.contains("notifier \"pd\"")
            && var.contains("\"rule.threshold\"")
            && var.contains("line 2"),
        "{var}"
    );
    assert!(!text.contains("SECRETPATH"));

    write(&json!([
        { "name": "ops-slack", "type": "slack", "url": "https://hooks.slack.example/T/B/SECRETPATH",
          "sendResolved": false }
    ]));
    let out = bp_alerter(&["check-config", file.to_str().unwrap()], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("notifier \"ops-slack\": slack to https://hooks.slack.example (opens only)"),
        "{text}"
    );
    assert!(!text.contains("SECRETPATH"), "{text}");
}

/// A tiny HTTP server on loopback: answers every request with `status` and
/// the request itself as the body (as some vendors echo what they got);
/// returns its URL and the requests' first lines and bodies.
fn echo_server(status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, BufReader, Read as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let text = format!("{} {}", first.trim(), String::from_utf8_lossy(&body));
            log.lock().unwrap().push(text.clone());
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = std::io::Write::write_all(&mut stream, reply.as_bytes());
        }
    });
    (url, seen)
}

/// `notify-test`: a test open and resolve through each notifier, bypassing
/// its route; each outcome printed (a vendor's error with the secret
/// removed); exit 1 when one failed, 2 for an unknown notifier.
#[test]
fn notify_test_sends_a_test_incident_and_reports_each_outcome() {
    let (ok_url, ok_seen) = echo_server(200);
    let (bad_url, _) = echo_server(400);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(
        &file,
        json!({ "alerting": { "notifiers": [
            { "name": "chat", "type": "slack", "url": format!("{ok_url}/services/x"),
              "match": { "rule": "never-matches-this" } },
            { "name": "pager", "type": "pagerduty", "url": bad_url, "routingKey": "RK-SECRET-555" }
        ] } })
        .to_string(),
    )
    .unwrap();
    let cfg = file.to_str().unwrap();
    let out = bp_alerter(&["notify-test", "--config", cfg], "");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("chat (slack, http://127.0.0.1:")
            && text.contains("opened: sent (200); resolved: sent (200)"),
        "{text}"
    );
    let pager = text
        .lines()
        .find(|l| l.starts_with("pager (pagerduty"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        pager.contains("opened: failed:") && pager.contains("HTTP 400"),
        "{pager}"
    );
    assert!(
        !text.contains("RK-SECRET-555"),
        "the routing key was printed: {text}"
    );
    let seen = ok_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[0].starts_with("POST /services/x ")
            && seen[0].contains("bp-monitoring test notification"),
        "{seen:?}"
    );

    let out = bp_alerter(&["notify-test", "--config", cfg, "--notifier", "chat"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = bp_alerter(&["notify-test", "--config", cfg, "--notifier", "nope"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no notifier named \"nope\" (configured: chat, pager)"),
        "{}",
        stderr(&out)
    );
}
