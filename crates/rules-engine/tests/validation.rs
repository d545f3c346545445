//! Rule and configuration validation: every problem, by JSON path, at once.

use rules_engine::{Config, ConfigError, RuleSet};
use serde_json::json;

fn problems_of(rules: &serde_json::Value) -> Vec<String> {
    match RuleSet::from_json(rules, "pro.alerting.rules") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems(),
    }
}

/// `check(rules, expected)`: each expected text is found in exactly one
/// problem, and there are as many problems as expected texts.
#[allow(clippy::needless_pass_by_value)] // Called with `json!` literals.
fn check(rules: serde_json::Value, expected: &[&str]) {
    let got = problems_of(&rules);
    for e in expected {
        assert_eq!(
            got.iter().filter(|p| p.contains(e)).count(),
            1,
            "{e:?} not found once in {got:#?}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
}

fn cpu() -> serde_json::Value {
    json!({ "name": " High CPU Usage ", "field": "cpu.usage", "aggregation": "avg",
            "operand": "equalOrMoreThan", "value": 60, "timeframe": "2m", "cooldown": "1m" })
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut r = cpu();
    r[key] = value;
    r
}

#[test]
fn valid_rules() {
    check(json!([cpu()]), &[]);
    check(json!([with("cooldown", json!(null))]), &[]);
    check(json!([with("cooldown", json!("0s"))]), &[]);
    check(
        json!([with("value", json!(-3.5)), with("name", json!("b"))]),
        &[],
    );
    check(json!([with("field", json!("custom.queue_depth"))]), &[]);
    let set = RuleSet::from_json(&json!([cpu()]), "r").unwrap();
    assert_eq!(set.rules()[0].name(), "High CPU Usage");
}

#[test]
fn each_mistake_names_rule_and_key() {
    check(
        json!([with("timeframe", json!("2x"))]),
        &["pro.alerting.rules[0].timeframe: \"2x\" is not a duration"],
    );
    check(
        json!([with("timeframe", json!("0s"))]),
        &["pro.alerting.rules[0].timeframe: must be greater than 0 (rule \"High CPU Usage\")"],
    );
    check(
        json!([with("cooldown", json!("soon"))]),
        &["pro.alerting.rules[0].cooldown: \"soon\" is not a duration"],
    );
    check(
        json!([with("field", json!("cpu.usag"))]),
        &["rules[0].field: unknown field \"cpu.usag\"; valid fields are cpu.usage"],
    );
    check(
        json!([with("aggregation", json!("median"))]),
        &[
            "rules[0].aggregation: unknown aggregation \"median\"; valid aggregations are avg, sum, min, max, last, count",
        ],
    );
    check(
        json!([with("operand", json!(">="))]),
        &[
            "rules[0].operand: unknown operand \">=\"; valid operands are equalOrMoreThan, equalOrLessThan",
        ],
    );
    check(
        json!([with("value", json!("60"))]),
        &["rules[0].value: expected a finite number, got a string"],
    );
    check(
        json!([with("name", json!("   "))]),
        &["rules[0].name: must not be empty"],
    );
    check(
        json!([with("cooldwon", json!("1m"))]),
        &[
            "rules[0].cooldwon: unknown key; valid keys are name, field, aggregation, operand, value, timeframe, cooldown, hosts, scope, severity, labels, description, staleAfter (rule \"High CPU Usage\")",
        ],
    );
    check(
        json!([cpu(), with("name", json!("High CPU Usage\t"))]),
        &["rules[1].name: duplicate rule name after trimming (also pro.alerting.rules[0])"],
    );
    check(
        json!(["x"]),
        &["rules[0]: expected a rule object, got a string"],
    );
    check(
        json!({}),
        &["pro.alerting.rules: expected an array of rules, got an object"],
    );
}

#[test]
fn empty_rule_lists_missing_keys() {
    // The original failed to boot on `"rules": [{}]`.
    check(
        json!([{}]),
        &[
            "pro.alerting.rules[0]: missing keys: name, field, aggregation, operand, value, timeframe",
        ],
    );
}

#[test]
fn every_problem_at_once() {
    let rules = json!([
        with("timeframe", json!("2x")),
        { "name": "b", "field": "nope", "aggregation": "median", "operand": "gt", "value": "x", "timeframe": "-1s", "extra": 1 },
        {},
        with("value", json!(1)),
    ]);
    check(
        rules,
        &[
            "rules[0].timeframe",
            "rules[1].field",
            "rules[1].aggregation",
            "rules[1].operand",
            "rules[1].value",
            "rules[1].timeframe",
            "rules[1].extra",
            "rules[2]: missing keys",
            "rules[3].name: duplicate",
        ],
    );
}

#[test]
fn config_defaults_and_forms() {
    let c = Config::from_json_text("{}", "f").unwrap();
    assert!(c.monitoring.enabled && c.alerting.enabled);
    assert_eq!(c.monitoring.collection_interval.to_string(), "10s");
    assert_eq!(c.monitoring.retention_period.to_string(), "10d");
    assert_eq!(c.monitoring.janitor_interval.to_string(), "15m");
    assert_eq!(c.alerting.watcher_interval.to_string(), "10s");
    assert_eq!(c.alerting.retention_period.to_string(), "10d");
    assert_eq!(c, Config::default());

    let botpress = json!({
        "httpServer": { "port": 3000 }, "appSecret": "ignored",
        "pro": { "enabled": true, "licenseKey": "x",
                 "monitoring": { "enabled": true, "collectionInterval": "5s" },
                 "alerting": { "enabled": false, "watcherInterval": "1m", "rules": [cpu()] } }
    });
    let c = Config::from_json(&botpress).unwrap();
    assert_eq!(c.monitoring.collection_interval.to_string(), "5s");
    assert!(!c.alerting.enabled);
    assert_eq!(c.alerting.rules.len(), 1);

    let short = json!({ "monitoring": { "enabled": false }, "alerting": { "rules": [cpu()] } });
    let c = Config::from_json(&short).unwrap();
    assert!(!c.monitoring.enabled && c.alerting.enabled);
    assert_eq!(c.warnings().len(), 1);
}

#[test]
fn config_errors_name_paths() {
    let text = r#"{ "pro": { "monitoring": { "collectionInterval": "0s", "retentionPeriod": 10, "typo": 1 },
                    "alerting": { "enabled": "yes", "rules": [{}, { "name": "a", "field": "cpu.usage",
                      "aggregation": "avg", "operand": "equalOrMoreThan", "value": 1, "timeframe": "2x" }] } } }"#;
    let e = Config::from_json_text(text, "botpress.config.json").unwrap_err();
    let got = e.problems();
    for want in [
        "pro.monitoring.collectionInterval: must be greater than 0",
        "pro.monitoring.retentionPeriod: expected a string, got a number",
        "pro.monitoring.typo: unknown key; valid keys are enabled, collectionInterval, retentionPeriod, janitorInterval",
        "pro.alerting.enabled: expected true or false, got a string",
        "pro.alerting.rules[0]: missing keys",
        "pro.alerting.rules[1].timeframe: \"2x\" is not a duration",
    ] {
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "{want:?} not in {got:#?}"
        );
    }
    assert_eq!(got.len(), 6, "{got:#?}");
}

#[test]
fn syntax_errors_give_line_and_column() {
    let e = Config::from_json_text("{\n  \"pro\": {\n    \"monitoring\": { ,\n", "cfg.json")
        .unwrap_err();
    match &e {
        ConfigError::Syntax { line, column, .. } => assert_eq!((*line, *column), (3, 21)),
        other @ ConfigError::Invalid(_) => panic!("{other:?}"),
    }
    assert!(
        e.to_string().starts_with("cfg.json:3:21: invalid JSON: "),
        "{e}"
    );
    let e = Config::from_json_text("[1]", "f").unwrap_err();
    assert_eq!(
        e.problems(),
        vec!["$: expected a configuration object, got an array".to_owned()]
    );
}

#[test]
fn version_2_keys_are_valid() {
    check(
        json!([with("field", json!("disk.usage")), with("name", json!("b"))]),
        &[],
    );
    let rule = json!({ "name": "Disk", "field": "disk.usage[/var]", "aggregation": "max",
        "operand": "equalOrMoreThan", "value": 90, "timeframe": "1m",
        "hosts": ["web-*", "!web-3", "db-?"], "scope": "host", "severity": "critical",
        "labels": { "team": "ops", "_x9": "" }, "description": "Clean /var/log",
        "staleAfter": "5m" });
    check(json!([rule]), &[]);
    check(
        json!([with("scope", json!("cluster")), with("name", json!("c"))]),
        &[],
    );
    let set = RuleSet::from_json(&json!([rule]), "r").unwrap();
    let r = &set.rules()[0];
    assert_eq!(r.to_json()["hosts"], json!(["web-*", "!web-3", "db-?"]));
    assert_eq!(r.to_json()["staleAfter"], json!("5m"));
    assert!(r.in_scope(&"web-1".parse().unwrap()));
    assert!(!r.in_scope(&"web-3".parse().unwrap()));
    assert!(r.in_scope(&"db-1".parse().unwrap()));
    assert!(!r.in_scope(&"db-10".parse().unwrap()));
    assert!(!r.in_scope(&"mail".parse().unwrap()));
    // Only exclusions: every other host is in scope.
    let only_not = RuleSet::from_json(&json!([with("hosts", json!(["!db-*"]))]), "r").unwrap();
    assert!(only_not.rules()[0].in_scope(&"web-1".parse().unwrap()));
    assert!(!only_not.rules()[0].in_scope(&"db-1".parse().unwrap()));
}

/// Every invalid form of every version-2 key: rejected, with the rule and
/// the key named.
#[test]
#[allow(clippy::too_many_lines)] // One table.
fn version_2_mistakes_name_rule_and_key() {
    let long = "x".repeat(257);
    let too_long_description = "d".repeat(1025);
    let many: serde_json::Map<String, serde_json::Value> =
        (0..33).map(|i| (format!("l{i}"), json!("v"))).collect();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "field",
            json!("cpu.usage[x]"),
            "field: cpu.usage takes no instance",
        ),
        (
            "field",
            json!("disk.usage[]"),
            "field: \"disk.usage[]\": an instance must not be empty",
        ),
        ("field", json!("disk.usage[a\u{1}]"), "control character"),
        ("field", json!("disk.usage[a]b]"), "must not hold ']'"),
        (
            "field",
            json!("disk.usag[/]"),
            "field: unknown field \"disk.usag\"",
        ),
        ("hosts", json!([]), "hosts: must not be empty"),
        (
            "hosts",
            json!("web-*"),
            "hosts: expected an array of host patterns, got a string",
        ),
        (
            "hosts",
            json!([1]),
            "hosts[0]: expected a host pattern (a string), got a number",
        ),
        (
            "hosts",
            json!([""]),
            "hosts[0]: \"\": a pattern must not be empty",
        ),
        (
            "hosts",
            json!(["!"]),
            "hosts[0]: \"!\": a pattern must not be empty",
        ),
        (
            "hosts",
            json!(["web-1", "web 2"]),
            "hosts[1]: \"web 2\": ' ' is in no host name",
        ),
        (
            "hosts",
            json!(["{a}"]),
            "hosts[0]: \"{a}\": '{' is in no host name",
        ),
        (
            "scope",
            json!("global"),
            "scope: expected \"host\" or \"cluster\", got \"global\"",
        ),
        (
            "scope",
            json!(1),
            "scope: expected \"host\" or \"cluster\", got 1",
        ),
        (
            "severity",
            json!("Critical"),
            "severity: expected 1-32 of a-z 0-9 _ -",
        ),
        (
            "severity",
            json!(""),
            "severity: expected 1-32 of a-z 0-9 _ -",
        ),
        (
            "severity",
            json!("a".repeat(33)),
            "severity: expected 1-32 of a-z 0-9 _ -",
        ),
        (
            "severity",
            json!(3),
            "severity: expected 1-32 of a-z 0-9 _ -",
        ),
        (
            "labels",
            json!("team=ops"),
            "labels: expected an object of strings, got a string",
        ),
        (
            "labels",
            json!({"team": 1}),
            "labels.team: expected a string, got a number",
        ),
        (
            "labels",
            json!({"9team": "a"}),
            "labels.9team: label name \"9team\"",
        ),
        ("labels", json!({"te-am": "a"}), "labels.te-am: label name"),
        (
            "labels",
            json!({"__x": "a"}),
            "labels.__x: label names starting with \"__\" are reserved",
        ),
        (
            "labels",
            json!({"severity": "a"}),
            "labels.severity: \"severity\" is set by bp-monitoring itself",
        ),
        (
            "labels",
            json!({"alertname": "a"}),
            "labels.alertname: \"alertname\" is set by bp-monitoring itself",
        ),
        (
            "labels",
            json!({"host": "a"}),
            "labels.host: \"host\" is set by bp-monitoring itself",
        ),
        (
            "labels",
            json!({"instance": "a"}),
            "labels.instance: \"instance\" is set by bp-monitoring itself",
        ),
        (
            "labels",
            json!({"team": long}),
            "labels.team: 257 bytes, at most 256",
        ),
        (
            "labels",
            serde_json::Value::Object(many),
            "labels: 33 labels, at most 32",
        ),
        (
            "description",
            json!(5),
            "description: expected a string, got a number",
        ),
        (
            "description",
            json!(too_long_description),
            "description: 1025 bytes, at most 1024",
        ),
        (
            "staleAfter",
            json!("0s"),
            "staleAfter: must be greater than 0",
        ),
        (
            "staleAfter",
            json!("soon"),
            "staleAfter: \"soon\" is not a duration",
        ),
        ("staleAfter", json!(5), "staleAfter: expected a string"),
    ];
    for (key, value, expected) in cases {
        let got = problems_of(&json!([with(key, value.clone())]));
        assert_eq!(got.len(), 1, "{key} = {value}: {got:#?}");
        assert!(
            got[0].starts_with("pro.alerting.rules[0].")
                && got[0].contains(expected)
                && got[0].ends_with("(rule \"High CPU Usage\")"),
            "{key} = {value}: {:?} should contain {expected:?} and name the rule",
            got[0]
        );
    }
    // `last` cannot be cluster-wide.
    let mut last = with("scope", json!("cluster"));
    last["aggregation"] = json!("last");
    check(
        json!([last]),
        &["rules[0].scope: \"last\" cannot be used with scope \"cluster\""],
    );
    // Every problem at once, across keys.
    let mut several = with("severity", json!("BAD"));
    several["labels"] = json!({"__a": "x"});
    several["hosts"] = json!([]);
    check(
        json!([several]),
        &[
            "rules[0].severity:",
            "rules[0].labels.__a:",
            "rules[0].hosts:",
        ],
    );
}
